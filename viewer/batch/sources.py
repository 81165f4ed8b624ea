"""What a batch runs over: one ``Item`` per image series, found in a folder tree, a list file or a PACS.

Planning reads headers only (the DICOM scanner and the study index, or a PACS query); no pixel
data moves here.  Each item names its results folder, ``<hashed study>/<series>``, which is also
its key in the summary: the same series always gets the same key, so a rerun finds its results.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from viewer.core.errors import HounsfieldError, shown
from viewer.core.formats import VOLUME_SUFFIXES, is_volume_file

# series that hold no image a plugin could run on (a PACS lists them beside the images)
NON_IMAGE = {"SR", "SEG", "KO", "PR", "RTSTRUCT", "RTPLAN", "RTDOSE", "DOC", "REG", "OT", "PLAN"}


@dataclass(frozen=True)
class Item:
    """One series to process: where it comes from and where its results go (``key``)."""

    key: str  # "<study hash>/<series name>": results folder under DIR and the summary's row
    kind: str  # "dicom" (viewer.load(path, series=series)), "volume" (a NIfTI/NRRD/MHA file) or "pacs"
    path: str = ""  # dicom: the folder (or file, DICOMDIR) holding the series; volume: the file
    series: str = ""  # the series id (dicom: as the scanner gives it) or SeriesInstanceUID (pacs)
    study_uid: str = ""
    label: str = ""  # the source as the summary shows it
    node: object = field(default=None, compare=False)  # pacs: the PacsNode to retrieve from
    local: object = field(default=None, compare=False)  # pacs: our LocalAE

    @property
    def study_key(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def series_uid(self) -> str:
        return self.series.split(":", 1)[0] if self.kind != "volume" else ""


def study_hash(text: str) -> str:
    """A study's folder name: a hash of its StudyInstanceUID (UIDs can identify a patient's visit)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def safe_part(text: str, limit: int = 80) -> str:
    """``text`` as one folder name: UIDs and plain stems stay as they are, anything else is cleaned and
    tagged with a short hash so two different names never meet."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "series"
    if clean == text and len(clean) <= limit:
        return clean
    tag = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{clean[:limit - 9]}-{tag}"


def volume_stem(path: str) -> str:
    name = os.path.basename(path)
    low = name.lower()
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if low.endswith(suffix):
            return name[:-len(suffix)]
    return name


def _unique(items: list[Item]) -> list[Item]:
    """Items with distinct keys (the same series listed twice runs once; two files with one stem in one
    folder, a.nii.gz and a.nrrd, get their suffix added)."""
    out: dict[str, Item] = {}
    for item in items:
        if item.key in out:
            if out[item.key].path == item.path and out[item.key].series == item.series:
                continue
            tag = hashlib.sha256(f"{item.path}|{item.series}".encode("utf-8", "surrogatepass")).hexdigest()[:8]
            item = Item(f"{item.key}-{tag}", item.kind, item.path, item.series, item.study_uid, item.label,
                        item.node, item.local)
        out[item.key] = item
    return list(out.values())


def _volume_item(path: str) -> Item:
    path = os.path.abspath(path)
    study = study_hash("folder:" + os.path.dirname(path))  # no study UID: the folder stands for the study
    return Item(f"{study}/{safe_part(volume_stem(path))}", "volume", path, label=path)


def _series_folder(series) -> str:
    """The deepest folder holding every file of a scanned series."""
    dirs = {os.path.dirname(h.path) for h in series.instances}
    return os.path.commonpath(sorted(dirs)) if dirs else ""


def dicom_items(path: str, *, exclude: str | None = None) -> list[Item]:
    """Every image series the DICOM scanner finds under ``path`` (a folder tree, file or DICOMDIR)."""
    from viewer.core.loader import scan

    result = scan(path)
    items = []
    for s in result.image_series:
        folder = _series_folder(s)
        if exclude and _inside(folder, exclude):
            continue
        study = s.first.study_uid or f"no-study:{folder}"
        name = f"series {s.number if s.number is not None else '?'} {shown(s.description, 40)}".strip()
        # a part of a split series (uid:N) is a part only among the files scanned here: its own folder,
        # scanned alone in the task, may not split the same way (a partial copy beside the whole series)
        where = folder if s.id == s.uid else os.path.abspath(path)
        items.append(Item(f"{study_hash(study)}/{safe_part(s.id)}", "dicom", where, s.id, s.first.study_uid,
                          f"{folder} ({name})"))
    return items


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == os.path.abspath(folder)
    except ValueError:  # different drives
        return False


def volume_files(root: str, *, exclude: str | None = None) -> list[str]:
    """NIfTI/NRRD/MHA files under ``root`` (hidden folders and ``exclude``, the results folder, left out)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not (exclude and _inside(os.path.join(dirpath, d), exclude)))
        out += [os.path.join(dirpath, n) for n in sorted(filenames) if not n.startswith(".") and is_volume_file(n)]
    return out


def folder_items(root: str, *, exclude: str | None = None) -> list[Item]:
    """Every image series under a folder tree: DICOM series (scanner + study index) and volume files."""
    if not os.path.exists(root):
        raise HounsfieldError(f"There is no file or folder at {root}; check the path.")
    if os.path.isfile(root):
        return _unique([_volume_item(root)] if is_volume_file(root) else dicom_items(root))
    items = [_volume_item(p) for p in volume_files(root, exclude=exclude)]
    try:
        items += dicom_items(root, exclude=exclude)
    except HounsfieldError:
        if not items:
            raise
    return _unique(items)


def list_items(list_file: str, *, exclude: str | None = None) -> list[Item]:
    """The series of every path in a text file (one path a line; blank lines and '#' comments skipped;
    relative paths are read from the file's folder).  A path that is missing or holds no images still
    becomes an item, so its one-sentence error lands in the summary instead of vanishing."""
    base = os.path.dirname(os.path.abspath(list_file))
    try:
        lines = Path(list_file).read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError as exc:
        raise HounsfieldError(f"The list {list_file} could not be read ({exc.strerror}).") from None
    items: list[Item] = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        path = os.path.normpath(os.path.join(base, os.path.expanduser(text)))
        found: list[Item] = []
        if os.path.exists(path):
            try:
                found = folder_items(path, exclude=exclude)
            except HounsfieldError:
                found = []
        if not found:  # the load in the task says what is wrong with it, in one sentence
            found = [Item(f"{study_hash('folder:' + os.path.dirname(path))}/{safe_part(os.path.basename(path))}",
                          "volume" if is_volume_file(path) else "dicom", path, label=path)]
        items += found
    if not items:
        raise HounsfieldError(f"The list {list_file} names no paths; write one file or folder a line.")
    return _unique(items)


def pacs_items(node, local, *, modality: str = "", date_from: str = "", date_to: str = "", patient_id: str = "",
               accession: str = "", study_uid: str = "") -> list[Item]:
    """The image series of the studies a PACS query finds (headers only: C-FIND or QIDO-RS)."""
    from viewer.pacs import Query, query

    if study_uid:
        studies = [study_uid]
    else:
        found = query(node, Query("STUDY", patient_id=patient_id, date_from=date_from, date_to=date_to,
                                  modality=modality, accession_number=accession), local)
        studies = list(dict.fromkeys(r.study_uid for r in found if r.study_uid))
    want = modality.strip().upper()
    items = []
    for uid in studies:
        for s in query(node, Query("SERIES", study_uid=uid), local):
            mod = (s.modalities or "").upper()
            if not s.series_uid or mod in NON_IMAGE or (want and mod != want):
                continue
            label = f"{node.name}: series {s.series_number if s.series_number is not None else '?'} " \
                    f"{shown(s.series_description, 40)} of study {shown(uid, 64)}"
            items.append(Item(f"{study_hash(uid)}/{safe_part(s.series_uid)}", "pacs", "", s.series_uid, uid,
                              label.strip(), node, local))
    return _unique(items)
