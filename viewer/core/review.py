"""How much of an AI result a person changed: agreement between the model's original and what is
on the series now (no Qt, no VTK, no torch).

Segmentations (``segment_agreement``): Dice, the 95% Hausdorff distance in mm (the larger of the two
directed 95th percentiles of surface-to-surface distances, as MONAI's ``compute_hausdorff_distance``
with ``percentile=95``), the volume of both and its change (mL and %), and the slices (k indices)
where the two differ.  Everything is computed on the bounding box of the union of both masks (grown
by one voxel), with the volume's spacing, so a small lesion in a large CT costs little.

Detections (``detection_review``): how many the radiologist accepted, rejected or left pending, how
many were moved (and by how many mm from where the AI proposed them) or resized, and how many a
person added (the AI's misses).

``review_applied`` gathers both for one ``viewer.core.workspace.Applied`` (one AI run), and
``ResultReview.flags`` says per finding whether it was accepted as the algorithm produced it or
edited by a person: the exports and the audit log (``viewer.core.audit``) read these.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from viewer.core.segmentation import bbox_of
from viewer.logs import log

MOVE_TOLERANCE_MM = 0.5  # a marker moved less than this (a click's jitter) counts as not moved
SIZE_TOLERANCE_MM = 0.5


@dataclass
class SegmentAgreement:
    name: str
    number: int
    dice: float
    hd95_mm: float | None  # None when one of the two is empty
    volume_ai_ml: float
    volume_ml: float
    edited_slices: list[int] = field(default_factory=list)

    @property
    def volume_change_ml(self) -> float:
        return self.volume_ml - self.volume_ai_ml

    @property
    def volume_change_pct(self) -> float | None:
        return None if self.volume_ai_ml <= 0 else 100.0 * self.volume_change_ml / self.volume_ai_ml

    @property
    def edited(self) -> bool:
        return bool(self.edited_slices)

    @property
    def status(self) -> str:
        """"accepted" (as the algorithm produced it) or "edited" (by a person)."""
        return "edited" if self.edited else "accepted"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(volume_change_ml=self.volume_change_ml, volume_change_pct=self.volume_change_pct,
                 status=self.status)
        return d

    def text(self) -> str:
        hd = "-" if self.hd95_mm is None else f"{self.hd95_mm:.1f} mm"
        pct = "" if self.volume_change_pct is None else f" ({self.volume_change_pct:+.1f}%)"
        slices = _ranges(self.edited_slices) or "none"
        return (f"{self.name}: Dice {self.dice:.3f}, HD95 {hd}, volume {self.volume_ai_ml:.2f} -> "
                f"{self.volume_ml:.2f} mL{pct}; slices edited: {slices}")


def _ranges(ks: list[int]) -> str:
    out, start, prev = [], None, None
    for k in ks:
        if start is None:
            start = prev = k
        elif k == prev + 1:
            prev = k
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = k
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)


def surface(mask: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` on its 3D surface (those with a 6-neighbour outside it)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff95(a: np.ndarray, b: np.ndarray, sampling) -> float | None:
    """The symmetric 95% Hausdorff distance (mm) between two boolean masks of one grid, ``sampling``
    the spacing along each array axis; None when either is empty, 0 when both are."""
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return None
    sa, sb = surface(a), surface(b)
    to_b = ndimage.distance_transform_edt(~sb, sampling=sampling)
    to_a = ndimage.distance_transform_edt(~sa, sampling=sampling)
    return float(max(np.percentile(to_b[sa], 95), np.percentile(to_a[sb], 95)))


def segment_agreement(original: np.ndarray, current: np.ndarray, spacing_kji, *, name: str = "",
                      number: int = 0, k0: int = 0) -> SegmentAgreement:
    """Agreement of two boolean masks of one grid [k, j, i] (``spacing_kji`` in mm); the masks may be
    a crop of the grid starting at slice ``k0`` (with a voxel of margin around both masks)."""
    original, current = np.asarray(original, bool), np.asarray(current, bool)
    voxel_ml = float(np.prod(spacing_kji)) / 1000.0
    box = bbox_of(original | current, margin=1)
    if box is None:
        return SegmentAgreement(name, number, 1.0, 0.0, 0.0, 0.0)
    a, b = original[box], current[box]
    na, nb = int(a.sum()), int(b.sum())
    inter = int((a & b).sum())
    dice = 2.0 * inter / (na + nb) if na + nb else 1.0
    diff_k = np.flatnonzero((a != b).any(axis=(1, 2))) + box[0].start + k0
    return SegmentAgreement(name, number, dice, hausdorff95(a, b, spacing_kji), na * voxel_ml, nb * voxel_ml,
                            [int(k) for k in diff_k])


def _union(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _grown(box, shape, margin: int = 1):
    return tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(box, shape))


def _original_boxes(editable) -> dict:
    """Each label's bounding box in the original (+1 voxel), computed once (the original never changes)."""
    boxes = getattr(editable, "_review_original_boxes", None)
    if boxes is None:
        orig = editable.original
        boxes = {}
        labels = orig if orig.dtype.kind in "iu" else orig.astype(np.int32)
        for n, sl in enumerate(ndimage.find_objects(labels) if orig.any() else [], start=1):
            if sl is not None:
                boxes[n] = _grown(sl, orig.shape)
        editable._review_original_boxes = boxes
    return boxes


class EditRegion:
    """The box holding every voxel of a segmentation changed since it started watching (``box``; None:
    nothing yet), so that the agreement is computed there and on the original's box only.  ``whole``
    when that cannot be known (segments renumbered or moved between layers, or edited before)."""

    def __init__(self, editable):
        self.seg = editable.segmentation
        self.box = None
        self.whole = any(s.edited for s in self.seg.segments)
        self._layout = self._key()
        self.seg.changed.connect(self._on_changed)
        self.seg.segments_changed.connect(self._on_meta)
        self.seg.layers_changed.connect(self._on_layers)

    def _key(self):
        return tuple((s.number, s.layer) for s in self.seg.segments)

    def _on_changed(self, _layer, box) -> None:
        self.box = _union(self.box, tuple(slice(int(b.start or 0), int(b.stop if b.stop is not None else n))
                                          for b, n in zip(box, self.seg.shape)))

    def _on_meta(self) -> None:
        if self._key() != self._layout:
            self.whole = True

    def _on_layers(self) -> None:
        self.whole = True

    @property
    def region(self):
        """What ``segmentation_agreement`` takes: "whole", or the changed box (None: no change)."""
        return "whole" if self.whole else self.box

    def close(self) -> None:
        for sig, fn in ((self.seg.changed, self._on_changed), (self.seg.segments_changed, self._on_meta),
                        (self.seg.layers_changed, self._on_layers)):
            try:
                sig.disconnect(fn)
            except (ValueError, RuntimeError):
                pass


def segmentation_agreement(editable, region="whole") -> list[SegmentAgreement]:
    """Per segment of an ``EditableSegmentation`` with an ``original``: its agreement with the
    model's label map (segments are matched by number, which is the label value).  ``region``: the
    box holding every voxel changed since the original (``EditRegion.region``; None: none changed),
    or "whole" to compare the whole grid."""
    orig = editable.original
    if orig is None:
        return []
    seg = editable.segmentation
    spacing = seg.spacing[::-1]  # affine columns are i, j, k; arrays are [k, j, i]
    out = []
    numbers = {s.number for s in seg.segments}
    boxes = _original_boxes(editable)
    for s in seg.segments:
        if region == "whole":
            crop = (slice(0, orig.shape[0]), slice(0, orig.shape[1]), slice(0, orig.shape[2]))
        else:
            crop = _union(boxes.get(s.number), None if region is None else _grown(region, orig.shape))
        if crop is None:
            out.append(segment_agreement(np.zeros((1, 1, 1), bool), np.zeros((1, 1, 1), bool), spacing,
                                         name=s.name, number=s.number))
            continue
        out.append(segment_agreement(orig[crop] == s.number, seg.layers[s.layer][crop] == s.number, spacing,
                                     name=s.name, number=s.number, k0=crop[0].start))
    for lab in (n for n in _original_boxes(editable) if n not in numbers):  # a segment removed
        out.append(segment_agreement(orig == lab, np.zeros(orig.shape, bool), spacing, name=f"Label {lab} (removed)",
                                     number=lab))
    return out


@dataclass
class DetectionReview:
    proposed: int = 0  # detections the AI returned
    accepted: int = 0
    rejected: int = 0
    pending: int = 0
    moved: int = 0
    moved_mm: list[float] = field(default_factory=list)  # how far each moved one went
    resized: int = 0
    added: int = 0  # added by a person: the AI missed them

    @property
    def acceptance_rate(self) -> float | None:
        decided = self.accepted + self.rejected
        return None if decided == 0 else self.accepted / decided

    @property
    def mean_move_mm(self) -> float:
        return float(np.mean(self.moved_mm)) if self.moved_mm else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(acceptance_rate=self.acceptance_rate, mean_move_mm=self.mean_move_mm)
        return d

    def text(self) -> str:
        move = f" (mean {self.mean_move_mm:.1f} mm)" if self.moved else ""
        return (f"{self.proposed} proposed: {self.accepted} accepted, {self.rejected} rejected, "
                f"{self.pending} pending; {self.moved} moved{move}, {self.resized} resized; "
                f"{self.added} added by a person")


def marker_flags(m) -> dict:
    """One detection's review: status, whether moved/resized, by how many mm."""
    moved_mm, resized = 0.0, False
    if m.proposed is not None:
        moved_mm = float(np.linalg.norm(np.asarray(m.center) - np.asarray(m.proposed[0])))
        resized = bool(np.max(np.abs(np.asarray(m.size_mm) - np.asarray(m.proposed[1]))) > SIZE_TOLERANCE_MM)
    moved = moved_mm > MOVE_TOLERANCE_MM
    if m.origin == "person":
        by = "added by a person"
    elif m.status == "rejected":
        by = "rejected by a person"
    elif moved or resized:
        by = "edited by a person"
    else:
        by = "produced by an algorithm" if m.status == "pending" else "accepted as is"
    return {"status": m.status, "origin": m.origin, "moved": moved, "moved_mm": moved_mm if moved else 0.0,
            "resized": resized, "review": by}


def detection_review(markers) -> DetectionReview:
    r = DetectionReview()
    for m in markers:
        if m.origin == "person":
            r.added += 1
            continue
        r.proposed += 1
        setattr(r, m.status, getattr(r, m.status) + 1)
        f = marker_flags(m)
        if f["moved"]:
            r.moved += 1
            r.moved_mm.append(f["moved_mm"])
        r.resized += int(f["resized"])
    return r


@dataclass
class ResultReview:
    """The review of one AI run: per segmentation its segments' agreement, and its detections."""

    plugin_id: str
    plugin_name: str
    plugin_version: str
    segments: list[SegmentAgreement] = field(default_factory=list)
    detections: DetectionReview | None = None

    @property
    def dice(self) -> float | None:
        """The mean Dice of the run's segments (None without segments)."""
        return float(np.mean([s.dice for s in self.segments])) if self.segments else None

    def to_dict(self) -> dict:
        return {"plugin_id": self.plugin_id, "plugin_name": self.plugin_name, "plugin_version": self.plugin_version,
                "segments": [s.to_dict() for s in self.segments],
                "detections": None if self.detections is None else self.detections.to_dict()}

    def text(self) -> str:
        lines = [s.text() for s in self.segments]
        if self.detections is not None:
            lines.append("Detections: " + self.detections.text())
        return "\n".join(lines)


def review_applied(step, regions: dict | None = None) -> ResultReview:
    """The review of an ``Applied`` (one AI run on a series) as it stands now; ``regions``: {id of an
    EditableSegmentation: EditRegion} to compare only where it changed (the whole grid without)."""
    p = step.provenance or {}
    out = ResultReview(str(p.get("plugin_id", "")), str(p.get("plugin_name", "AI")), str(p.get("plugin_version", "")))
    for ed in step.segmentations:
        r = (regions or {}).get(id(ed))
        out.segments += segmentation_agreement(ed, "whole" if r is None else r.region)
    if step.marker_sets:
        out.detections = detection_review([m for ms in step.marker_sets for m in ms.markers])
    return out


def segment_review(editable, segment) -> dict:
    """What an export says about one segment: produced by an algorithm and accepted as is, edited
    by a person (with the agreement figures), or drawn by a person."""
    from viewer.core.codes import AlgorithmType

    if segment.algorithm_type == AlgorithmType.MANUAL:
        return {"review": "drawn by a person"}
    algo = {"algorithm_name": segment.algorithm_name, "algorithm_version": segment.algorithm_version}
    orig = getattr(editable, "original", None)
    if orig is None:
        return {"review": "edited by a person" if segment.edited else "accepted as is", **algo}
    seg = editable.segmentation
    a = segment_agreement(orig == segment.number, seg.mask(segment), seg.spacing[::-1], name=segment.name,
                          number=segment.number)
    return {"review": "edited by a person" if a.edited else "accepted as is", "dice": a.dice,
            "hd95_mm": a.hd95_mm, "volume_ai_ml": a.volume_ai_ml, "volume_change_ml": a.volume_change_ml,
            "volume_change_pct": a.volume_change_pct, "edited_slices": len(a.edited_slices), **algo}


def export_review(series, editable=None) -> tuple[dict, list]:
    """What ``viewer.core.io.report.export_report`` takes as ``review`` (per segment number of
    ``editable``) and ``detections`` (every detection of the series' marker sets, as reviewed)."""
    review = {}
    if editable is not None:
        review = {s.number: segment_review(editable, s) for s in editable.segments}
    detections = []
    for ms in series.marker_sets:
        for m in ms.markers:
            f = marker_flags(m)
            f["algorithm"] = ms.provenance if m.origin == "ai" else ""
            detections.append((m.label, np.asarray(m.center, np.float64), f))
    return review, detections


# ---------------------------------------------------------------------------------------------
# the model's original, kept beside a segmentation's journal so that it survives a restart

ORIGINAL_SUFFIX = ".original.npz"


def original_path(journal_path: str) -> str:
    return str(journal_path) + ORIGINAL_SUFFIX


def _save_npz(path: str, original: np.ndarray, meta: dict) -> None:
    """``original`` and ``meta`` (JSON) in one compressed file, written to a temporary file and renamed."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, original=np.asarray(original), meta=np.array(json.dumps(meta, default=str)))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _load_npz(path: str) -> tuple[np.ndarray, dict] | None:
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            return z["original"], meta if isinstance(meta, dict) else {}
    except (OSError, KeyError, ValueError, TypeError):
        return None


def save_original(journal_path: str, original: np.ndarray, provenance: dict | None = None) -> None:
    """Keep the model's label map (and the run's ``provenance``) beside the journal at ``journal_path``
    (written once: it never changes)."""
    path = original_path(journal_path)
    if os.path.exists(path):
        return
    try:
        _save_npz(path, original, {"provenance": provenance or {}})
    except OSError:
        log.warning("the AI original could not be kept beside the journal", exc_info=True)


def load_original(journal_path: str) -> np.ndarray | None:
    found = _load_npz(original_path(journal_path))
    return None if found is None else found[0]


def load_provenance(journal_path: str) -> dict:
    """The provenance of the run whose original is kept beside the journal ({} when none)."""
    found = _load_npz(original_path(journal_path))
    return {} if found is None else dict(found[1].get("provenance") or {})


def discard_original(journal_path: str) -> None:
    for path in (original_path(journal_path), detections_path(journal_path)):
        try:
            os.remove(path)
        except OSError:
            pass


DETECTIONS_SUFFIX = ".detections.json"


def detections_path(journal_path: str) -> str:
    return str(journal_path) + DETECTIONS_SUFFIX


def save_detections(editable) -> None:
    """The detections of ``editable``'s AI run as reviewed (status, moves, resizes, added), beside its
    journal when the series closes, so that restoring the journal brings the decisions back with the
    run (beside each of the run's segmentations: whichever is restored; ``Workspace.reopened`` shows
    them once)."""
    step = applied_of(editable)
    if editable.journal is None or step is None or not step.marker_sets:
        return
    path = detections_path(editable.journal.path)
    sets = [{"name": ms.name, "provenance": ms.provenance, "markers": [_marker_dict(m) for m in ms.markers]}
            for ms in step.marker_sets]
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(sets, f, default=str)
        os.replace(tmp, path)
    except OSError:
        log.warning("the reviewed detections could not be kept beside the journal", exc_info=True)
        with contextlib.suppress(OSError):
            os.remove(tmp)


def load_detections(journal_path: str) -> list:
    try:
        with open(detections_path(journal_path), encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, ValueError):
        return []
    return found if isinstance(found, list) else []


# ---------------------------------------------------------------------------------------------
# the model's original kept after an export as DICOM SEG, so that the study and its SEG opened again
# (in any later session) still have it: ``<data dir>/ai-originals/``, one file per export (the
# original numbered as the SEG numbers its segments, the run's provenance, each segment's edited
# flag, the run's detections as reviewed) and ``index.json``, which finds it by the SEG's SOP
# Instance UID or by one of its segments' Tracking UIDs (the same for every export of a segment).

KEPT_FOLDER = "ai-originals"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass
class Kept:
    """An AI original found for a reopened SEG."""

    original: np.ndarray  # labelled with the reopened segmentation's segment numbers
    provenance: dict
    edited: dict  # segment number -> whether a person had edited it
    detections: list  # [{"name", "provenance", "markers": [marker dicts]}] as reviewed at the export
    audit_key: str
    source: str  # the SEG file's name when it was written


def kept_folder() -> str:
    from viewer.paths import data_dir

    return os.path.join(data_dir(), KEPT_FOLDER)


def _read_index(folder: str) -> dict:
    try:
        with open(os.path.join(folder, "index.json"), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    for key in ("sop", "tracking"):
        if not isinstance(data.get(key), dict):
            data[key] = {}
    return data


def _write_index(folder: str, data: dict) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, os.path.join(folder, "index.json"))


def _relabel(labels: np.ndarray, lut: dict[int, int]) -> np.ndarray:
    if all(a == b for a, b in lut.items()):
        return labels
    top = max([int(labels.max()) if labels.size else 0, *lut.values()])
    table = np.zeros(max(int(labels.max()) if labels.size else 0, *lut) + 1, np.uint16 if top > 255 else np.uint8)
    for a, b in lut.items():
        table[a] = b
    return table[labels]


def _marker_dict(m) -> dict:
    return {"center": [float(c) for c in m.center], "size_mm": [float(c) for c in m.size_mm], "score": float(m.score),
            "label": m.label, "description": m.description, "status": m.status, "edited": bool(m.edited),
            "attributes": m.attributes, "origin": m.origin,
            "proposed": None if m.proposed is None else [[float(c) for c in m.proposed[0]],
                                                         [float(c) for c in m.proposed[1]]]}


def _marker(d: dict):
    from viewer.core.layers import Marker

    p = d.get("proposed")
    return Marker(np.asarray(d["center"], np.float64), np.asarray(d["size_mm"], np.float64), float(d["score"]),
                  str(d["label"]), str(d.get("description", "")), str(d.get("status", "pending")),
                  bool(d.get("edited", False)), dict(d.get("attributes") or {}), str(d.get("origin", "ai")),
                  None if p is None else (np.asarray(p[0], np.float64), np.asarray(p[1], np.float64)))


def applied_of(editable):
    """The AI run (``viewer.core.workspace.Applied``) an editable segmentation belongs to, if any."""
    ws = editable.series.workspace
    return next((step for step in ws.results if any(ed is editable for ed in step.segmentations)), None)


def run_key(provenance: dict, series_uid: str = "") -> str:
    """The audit log's key of one run: the same for the run and the result reopened from it (its
    journal or its SEG), so that recording it again updates its row instead of adding a case."""
    import hashlib
    import uuid

    if not provenance.get("started"):
        return uuid.uuid4().hex
    text = json.dumps(provenance, sort_keys=True, default=str) + "|" + series_uid
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _series_key(series) -> str:
    src = series.volume.source
    return src.series_instance_uid or src.path


def keep_exported(editable, path) -> str | None:
    """After ``editable`` (with an AI original) was written as the DICOM SEG at ``path``: keep its
    original, provenance, segments' edited flags and its run's detections where reopening that SEG
    finds them (``find_kept``); returns the kept file.  Never raises: keeping it is a by-product."""
    orig = editable.original
    if orig is None:
        return None
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if str(getattr(ds, "SOPClassUID", "")) != SEG_STORAGE:
            return None
        items, segs = list(ds.SegmentSequence), list(editable.segments)
        if [str(it.SegmentLabel) for it in items] != [s.name[:64] for s in segs]:
            return None  # the file holds something else than this segmentation now
        numbers = {s.number: int(it.SegmentNumber) for s, it in zip(segs, items)}
        free = max(numbers.values(), default=0) + 1
        lut = {}
        for lab in sorted(_original_boxes(editable)):  # a removed segment gets a number of its own
            lut[lab] = numbers.get(lab) or free
            free += lab not in numbers
        step = applied_of(editable)
        prov = dict(editable.provenance or (step.provenance if step is not None else {}) or {})
        if step is not None and not getattr(step, "audit_key", None):
            step.audit_key = run_key(prov, _series_key(editable.series))
        detections = [] if step is None else [
            {"name": ms.name, "provenance": ms.provenance, "markers": [_marker_dict(m) for m in ms.markers]}
            for ms in step.marker_sets]
        sop = str(ds.SOPInstanceUID)
        meta = {"version": 1, "sop_instance_uid": sop, "source": os.path.basename(str(path)), "provenance": prov,
                "audit_key": getattr(step, "audit_key", "") or run_key(prov, _series_key(editable.series)),
                "segments": [{"number": int(it.SegmentNumber), "name": s.name, "edited": bool(s.edited),
                              "tracking_uid": str(getattr(it, "TrackingUID", ""))} for s, it in zip(segs, items)],
                "detections": detections, "labels": sorted(set(lut.values()))}
        folder = kept_folder()
        os.makedirs(folder, exist_ok=True)
        import hashlib

        name = hashlib.sha1(sop.encode()).hexdigest()[:24] + ".npz"
        _save_npz(os.path.join(folder, name), _relabel(orig, lut), meta)
        index = _read_index(folder)
        index["sop"][sop] = name
        for s in meta["segments"]:
            if s["tracking_uid"]:
                index["tracking"][s["tracking_uid"]] = name
        _write_index(folder, index)
        return os.path.join(folder, name)
    except Exception:  # a damaged file, a full disk: the export itself succeeded
        log.warning("the AI original could not be kept with the exported SEG", exc_info=True)
        return None


def find_kept(seg) -> Kept | None:
    """The AI original kept when the DICOM SEG ``seg`` was read from (``Segmentation.dicom_uids``) was
    exported, renumbered to its segments; None when there is none (or it does not fit)."""
    uids = getattr(seg, "dicom_uids", None) or {}
    if not uids.get("sop_instance_uid"):
        return None
    folder = kept_folder()
    index = _read_index(folder)
    tracking = uids.get("tracking_uids") or {}
    name = index["sop"].get(uids["sop_instance_uid"]) or next(
        (index["tracking"][u] for u in tracking.values() if u in index["tracking"]), None)
    if not name or os.path.basename(name) != name:
        return None
    found = _load_npz(os.path.join(folder, name))
    if found is None:
        return None
    original, meta = found
    if tuple(original.shape) != tuple(seg.shape):
        return None
    # the stored numbers are those of the SEG written; a copy found by Tracking UID may number them otherwise
    by_uid = {u: n for n, u in tracking.items()}
    lut, edited = {}, {}
    for s in meta.get("segments", []):
        n = by_uid.get(s.get("tracking_uid")) if s.get("tracking_uid") in by_uid else int(s["number"])
        lut[int(s["number"])] = n
        edited[n] = bool(s.get("edited"))
    known = {s.number for s in seg.segments}
    if not set(edited) <= known:
        return None
    taken = set(lut.values())
    free = max([*known, *taken, 0]) + 1
    present = meta.get("labels")  # the labels in the file (scanning a whole CT's grid takes seconds)
    if not isinstance(present, list):
        present = [int(v) for v in np.flatnonzero(np.bincount(original.ravel()))]
    for lab in (int(v) for v in present if v and int(v) not in lut):  # segments removed before the export
        while free in taken:
            free += 1
        lut[lab], free = free, free + 1
    try:
        return Kept(_relabel(original, lut), dict(meta.get("provenance") or {}), edited,
                    list(meta.get("detections") or []), str(meta.get("audit_key", "")), str(meta.get("source", "")))
    except (KeyError, TypeError, ValueError):
        return None


def reopened_result(series, editable):
    """A segmentation with an AI original brought back (from its journal after a restart, or from a
    SEG whose original was kept) as one result of the AI results panel, so the review goes on: an
    ``Applied`` with the run's provenance, the segmentation, and the run's detections as they were
    reviewed (a SEG's); the caller puts the detections on the series."""
    from viewer.core.ai_results import Converted, title_of
    from viewer.core.layers import MarkerSet
    from viewer.core.workspace import Applied

    prov = dict(editable.provenance or {})
    kept = getattr(editable, "kept", None)
    where = f"the DICOM SEG {kept.source}" if kept is not None and kept.source else "its journal"
    note = f"Reopened from {where}: the AI original was kept on this computer, so the figures go on."
    step = Applied(series, Converted(title_of(prov) or "AI result", None, notes=[note], provenance=prov),
                   overlays=[editable])
    if kept is not None:
        sets = kept.detections
    else:  # restored from its journal: the detections as reviewed when its series closed
        sets = load_detections(editable.journal.path) if editable.journal is not None else []
    for d in sets:
        step.overlays.append(MarkerSet(str(d.get("name", "Detections")), [_marker(m) for m in d.get("markers", [])],
                                       provenance=str(d.get("provenance", ""))))
    step.audit_key = (kept.audit_key if kept is not None else "") or run_key(prov, _series_key(series))
    return step
