"""A patient's other studies (the priors) for an opened series: from the local study index, and
from a PACS on request.  No Qt.

A prior is the same patient's study: same PatientID and same IssuerOfPatientID (both absent counts as
the same issuer).  Names are never matched (two patients share names; one patient's name is spelt
differently in two hospitals), and an empty PatientID matches nothing: anonymous studies are not one
patient.  Studies are grouped by study date, newest first.

    studies = local_priors(volume.source)            # PriorStudy list, newest first
    for date, group in by_date(studies): ...
    series = best_series(studies[0], volume.source)  # the prior's series to compare with
    remote = pacs_priors(pacs.query(node, Query(patient_id=...)), volume.source, node.name)
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

from viewer.core.volume import SourceInfo


@dataclass(frozen=True)
class PriorSeries:
    uid: str
    modality: str
    number: int | None
    description: str
    images: int  # files of the series in the index


@dataclass
class PriorStudy:
    study_uid: str
    date: str  # YYYYMMDD ("" unknown)
    time: str = ""
    description: str = ""
    accession_number: str = ""
    modalities: tuple[str, ...] = ()
    root: str = ""  # the indexed folder the study was scanned under ("" on a PACS only)
    series: list[PriorSeries] = field(default_factory=list)
    body_part: str = ""
    node: str = ""  # the PACS node it was found on ("" local)

    @property
    def local(self) -> bool:
        return bool(self.root)

    @property
    def label(self) -> str:
        mods = "/".join(self.modalities) or "?"
        what = self.description or "Study"
        n = len(self.series)
        count = f"{n} series" if n else ""
        return "  ".join(x for x in (mods, what, count) if x)


@dataclass(frozen=True)
class StudyAttributes:
    """Attributes the index does not keep, read from one file of a study."""

    issuer: str = ""
    body_part: str = ""


def study_attributes(path: str) -> StudyAttributes:
    """IssuerOfPatientID and BodyPartExamined of the file at ``path`` (empty when unreadable)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                             specific_tags=["IssuerOfPatientID", "BodyPartExamined"])
    except Exception:  # noqa: BLE001 - a file that vanished or broke: nothing known
        return StudyAttributes()
    return StudyAttributes(str(ds.get("IssuerOfPatientID", "") or "").strip(),
                           str(ds.get("BodyPartExamined", "") or "").strip().upper())


@dataclass
class PatientStudies:
    """The opened series' own study and its priors, from the local index."""

    current: PriorStudy | None  # the opened series' study as the index has it (None: not indexed)
    priors: list[PriorStudy]  # newest first
    issuer: str = ""


def _studies(rows) -> tuple[dict[str, PriorStudy], dict[str, str]]:
    """PriorStudy per study uid from the index's (root, count, header) rows, and one file path of each."""
    studies: dict[str, PriorStudy] = {}
    paths: dict[str, str] = {}
    mods: dict[str, list[str]] = defaultdict(list)
    for root, count, h in sorted(rows, key=lambda r: (r[2].series_number is None, r[2].series_number or 0)):
        st = studies.get(h.study_uid)
        if st is None:
            st = studies[h.study_uid] = PriorStudy(h.study_uid, h.study_date, "", h.study_description,
                                                   h.accession_number, root=root)
            paths[h.study_uid] = h.path
        if h.is_image:
            st.series.append(PriorSeries(h.series_uid, h.modality, h.series_number, h.series_description, count))
        if h.modality and h.modality not in mods[h.study_uid]:
            mods[h.study_uid].append(h.modality)
    for uid, st in studies.items():
        st.modalities = tuple(mods[uid])
    return studies, paths


def patient_studies(source: SourceInfo, index=None) -> PatientStudies:
    """The opened series' study and the same patient's other studies in the local index."""
    from viewer.core.dicom.index import StudyIndex

    own = index is None
    index = StudyIndex() if own else index
    try:
        rows = index.series_of_patient(source.patient_id)
    finally:
        if own:
            index.close()
    studies, paths = _studies(rows)
    attrs = {uid: study_attributes(paths[uid]) for uid in studies}
    for uid, st in studies.items():
        st.body_part = attrs[uid].body_part
    current = studies.pop(source.study_instance_uid, None)
    if current is not None:
        issuer = attrs[current.study_uid].issuer
    else:  # not in the index (a folder scanned elsewhere): read the series' own folder
        issuer = _issuer_in(source.path)
    priors = [st for uid, st in studies.items() if attrs[uid].issuer == issuer and st.series]
    return PatientStudies(current, newest_first(priors), issuer)


def _issuer_in(folder: str) -> str:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return ""
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return study_attributes(path).issuer
    return ""


def local_priors(source: SourceInfo, index=None) -> list[PriorStudy]:
    """The same patient's other studies in the local index, newest first."""
    return patient_studies(source, index).priors


def newest_first(studies: list[PriorStudy]) -> list[PriorStudy]:
    return sorted(studies, key=lambda s: (s.date or "", s.time or ""), reverse=True)


def by_date(studies: list[PriorStudy]) -> list[tuple[str, list[PriorStudy]]]:
    """(date, studies of that date) newest first; studies without a date come last under ""."""
    groups: dict[str, list[PriorStudy]] = defaultdict(list)
    for st in newest_first(studies):
        groups[st.date].append(st)
    dated = sorted((d for d in groups if d), reverse=True)
    return [(d, groups[d]) for d in dated] + ([("", groups[""])] if "" in groups else [])


def best_series(study: PriorStudy, current: SourceInfo | None = None, modality: str = "") -> PriorSeries | None:
    """The prior's series to compare with the current one: the same modality, the same description
    (then the same series number), else the one with the most images."""
    if not study.series:
        return None

    def score(s: PriorSeries):
        same_mod = not modality or s.modality == modality
        same_desc = current is not None and bool(current.series_description) and (
            s.description.strip().lower() == current.series_description.strip().lower())
        same_number = current is not None and current.series_number is not None and s.number == current.series_number
        return (same_mod, same_desc, same_number, s.images)

    return max(study.series, key=score)


def pacs_priors(results, source: SourceInfo, node_name: str = "") -> list[PriorStudy]:
    """The patient's other studies among a PACS's study-level answers (``viewer.pacs.QueryResult``s of
    a query by PatientID, made on a worker thread by the caller), newest first.  The issuer is not part
    of the query (PACS answers do not carry it reliably): the PatientID is what matches, exactly."""
    if not source.patient_id:
        return []
    out = []
    for r in results:
        if r.study_uid == source.study_instance_uid or r.patient_id != source.patient_id:
            continue  # a server that matches loosely (wildcards, case) must not hand us another patient
        mods = tuple(m.strip() for m in r.modalities.split(",") if m.strip())
        out.append(PriorStudy(r.study_uid, r.study_date, r.study_time, r.study_description, r.accession_number,
                              mods, node=node_name))
    return newest_first(out)
