"""Group instance headers into patients, studies and series, and series into stackable volumes.

A DICOM series is split into several ``SeriesInfo`` when it mixes orientations, image sizes,
or repeats positions across acquisitions/echoes/phases (each part stacks into one volume).
Non-image objects (SR, SEG, RTSTRUCT, presentation states...) are listed, never stacked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from viewer.core.dicom.geometry import finite, frame_position, slice_normal
from viewer.core.dicom.header import FrameHeader, InstanceHeader


@dataclass
class FrameRef:
    """One 2D frame to stack: which file, which frame in it, and where it lies."""

    instance: InstanceHeader
    frame: FrameHeader


@dataclass
class SeriesInfo:
    uid: str
    id: str  # uid, or uid plus ":n" when the DICOM series was split into several volumes
    modality: str
    number: int | None
    description: str
    frames: list[FrameRef] = field(default_factory=list)  # image frames (unsorted)
    objects: list[InstanceHeader] = field(default_factory=list)  # non-image objects
    split_reason: str = ""

    @property
    def is_image(self) -> bool:
        return bool(self.frames)

    @property
    def first(self) -> InstanceHeader:
        return self.frames[0].instance if self.frames else self.objects[0]

    @property
    def instances(self) -> list[InstanceHeader]:
        seen, out = set(), []
        for ref in self.frames:
            if ref.instance.path not in seen:
                seen.add(ref.instance.path)
                out.append(ref.instance)
        return out or list(self.objects)

    @property
    def size(self) -> tuple[int, int, int]:
        """(columns, rows, frames) as a person reads image dimensions."""
        h = self.first
        return (h.columns, h.rows, len(self.frames))

    @property
    def sop_class_name(self) -> str:
        return self.first.sop_class_name


@dataclass
class StudyInfo:
    uid: str
    date: str
    description: str
    accession_number: str
    series: list[SeriesInfo] = field(default_factory=list)


@dataclass
class PatientInfo:
    id: str
    name: str
    birth_date: str
    sex: str
    studies: list[StudyInfo] = field(default_factory=list)


def _orientation_key(frame: FrameHeader) -> tuple:
    o = finite(frame.orientation, 6)  # a damaged orientation (NaN never equals itself) groups as none
    if o is None:
        return ()
    return tuple(np.round(o, 3).tolist())


def _slice_keys(frames: list[FrameRef]) -> list:
    """Where along the stack each frame lies (rounded), None for a frame without a valid position."""
    normal = slice_normal(frames)
    out = []
    for f in frames:
        p = frame_position(f.frame)
        if p is None:
            out.append(None)
        else:  # without any orientation, frames at the same point are the ones that repeat
            out.append(round(float(p @ normal), 2) if normal is not None else tuple(np.round(p, 2).tolist()))
    return out


def _has_repeated_positions(frames: list[FrameRef]) -> bool:
    if all(f.frame.orientation is None for f in frames):
        return False
    keys = [k for k in _slice_keys(frames) if k is not None]
    return len(set(keys)) < len(keys)


def _split_repeats(frames: list[FrameRef]) -> tuple[list[list[FrameRef]], str]:
    """Split frames that revisit the same positions into separate stacks."""
    for reason, key in (
        ("acquisition", lambda f: f.instance.acquisition_number),
        ("echo/phase", lambda f: f.frame.stack),
        ("file", lambda f: f.instance.path if f.frame.index is not None else None),
    ):
        groups: dict = defaultdict(list)
        for f in frames:
            groups[key(f)].append(f)
        if len(groups) > 1 and not any(_has_repeated_positions(g) for g in groups.values()):
            return [groups[k] for k in sorted(groups, key=lambda k: (k is None, str(k)))], reason
    # Nothing tells the repeats apart: the n-th frame at each position goes to volume n (frames
    # without a valid position go along, and are left out with a warning when stacked).
    order = sorted(range(len(frames)), key=lambda i: (frames[i].instance.instance_number or 0,
                                                      frames[i].frame.index or 0))
    keys = _slice_keys(frames)
    seen: dict = defaultdict(int)
    stacks: dict = defaultdict(list)
    for i in order:
        stacks[seen[keys[i]]].append(frames[i])
        seen[keys[i]] += 1
    return [stacks[n] for n in sorted(stacks)], "repeated positions"


def split_series(uid: str, frames: list[FrameRef]) -> list[tuple[list[FrameRef], str]]:
    """Split one DICOM series' frames into stackable parts, each with the reason for splitting."""
    parts: dict = defaultdict(list)
    for f in frames:
        key = (f.instance.rows, f.instance.columns, _orientation_key(f.frame))
        parts[key].append(f)
    # Frames whose orientation is damaged (present but not numbers) join the largest stack of their
    # image size: one NaN must not split a slice off its series (geometry warns about it).
    for key in [k for k in parts if k[2] == ()]:
        damaged = [f for f in parts[key] if f.frame.orientation is not None]
        sound = [k for k in parts if k[2] != () and k[:2] == key[:2]]
        if damaged and sound:
            parts[max(sound, key=lambda k: len(parts[k]))].extend(damaged)
            parts[key] = [f for f in parts[key] if f.frame.orientation is None]
            if not parts[key]:
                del parts[key]
    reason = ""
    if len(parts) > 1:
        sizes = {k[:2] for k in parts}
        reason = "image size" if len(sizes) > 1 else "orientation"
    out = []
    for group in sorted(parts.values(), key=len, reverse=True):
        if _has_repeated_positions(group):
            for sub, why in zip(*_split_with_reason(group)):
                out.append((sub, why or reason))
        else:
            out.append((group, reason))
    return out


def _split_with_reason(group):
    subs, why = _split_repeats(group)
    return subs, [why] * len(subs)


def group_headers(headers: list[InstanceHeader]) -> list[PatientInfo]:
    """Build the patient / study / series tree, splitting series into stackable parts."""
    by_series: dict[str, list[InstanceHeader]] = defaultdict(list)
    for h in headers:
        by_series[h.series_uid or f"(no series uid) {h.path}"].append(h)

    patients: dict[tuple, PatientInfo] = {}
    studies: dict[str, StudyInfo] = {}
    for uid, items in by_series.items():
        first = items[0]
        pkey = (first.patient_id, first.patient_name)
        patient = patients.get(pkey)
        if patient is None:
            patient = patients[pkey] = PatientInfo(first.patient_id, first.patient_name,
                                                   first.patient_birth_date, first.patient_sex)
        study = studies.get(first.study_uid)
        if study is None:
            study = studies[first.study_uid] = StudyInfo(first.study_uid, first.study_date,
                                                         first.study_description, first.accession_number)
            patient.studies.append(study)
        images = [FrameRef(h, fr) for h in items if h.is_image for fr in h.frames]
        objects = [h for h in items if not h.is_image]
        parts = split_series(uid, images) if images else []
        for n, (frames, reason) in enumerate(parts):
            sid = uid if len(parts) == 1 else f"{uid}:{n + 1}"
            study.series.append(SeriesInfo(uid, sid, first.modality, first.series_number,
                                           first.series_description, frames, [], reason))
        if objects:
            sid = uid if not parts else f"{uid}:objects"
            study.series.append(SeriesInfo(uid, sid, objects[0].modality, objects[0].series_number,
                                           objects[0].series_description, [], objects))
    for study in studies.values():
        study.series.sort(key=lambda s: (s.number is None, s.number or 0, s.id))
    return list(patients.values())
