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

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from viewer.core.segmentation import bbox_of

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


def save_original(journal_path: str, original: np.ndarray) -> None:
    """Keep the model's label map beside the journal at ``journal_path`` (written once: it never changes)."""
    import os

    path = original_path(journal_path)
    if os.path.exists(path):
        return
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, original=np.asarray(original))
        os.replace(tmp, path)
    except OSError:
        from viewer.logs import log

        log.warning("the AI original could not be kept beside the journal", exc_info=True)


def load_original(journal_path: str) -> np.ndarray | None:
    path = original_path(journal_path)
    try:
        with np.load(path) as z:
            return z["original"]
    except (OSError, KeyError, ValueError):
        return None


def discard_original(journal_path: str) -> None:
    import os

    try:
        os.remove(original_path(journal_path))
    except OSError:
        pass
