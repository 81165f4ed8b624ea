"""Lesion change over time: a prior study's segments and measurements carried onto the current study
through a registration, lesions matched across the two time points, and per lesion the diameters,
volume, change and volume doubling time; the RECIST 1.1 target-lesion sum and a suggested response
(no Qt, no VTK, no torch).

    cmp = Comparison(prior_series, current_series, registration)   # OpenSeries of viewer.core.workspace
    carried = cmp.carry()                 # the prior's segments (nearest neighbour) and measurements
    cmp.fit(carried)                      # optional: each carried segment fitted to the current image
    rows = cmp.update()                   # one LesionChange per tracked lesion
    resp = cmp.response()                 # Response("PD", rule="...") -- a suggestion

Direction: a :class:`~viewer.core.registration.Registration` maps fixed LPS points to moving ones.
The comparison needs *current -> prior* (current fixed, prior moving: the prior's label maps are
resampled onto the current grid); a registration made the other way round is inverted
(:func:`oriented`, ``Registration.inverse``).

Tracking: each lesion has a tracking identifier ("Lesion 1", or the prior segment's name) and a
tracking UID, shared by its observation at both time points (DICOM TID 1500's TrackingIdentifier and
TrackingUniqueIdentifier).  A carried segment is linked to the segment it came from; other segments
are matched by overlap after carrying (Hungarian assignment on the overlap), then by the nearest
centroid within ``match_mm``.  The tracking UID is derived from the prior segmentation's UID and
segment number, so it is the same each time the same prior is compared.

Figures (per lesion): long and short axis in the axial plane (``viewer.core.measurements.segment_stats``:
the largest in-slice diameter and the largest extent perpendicular to it), volume (mL), absolute and
percent change, and the volume doubling time VDT = dt * ln 2 / ln(V2 / V1) in days from the two
StudyDates; a lesion that did not grow has no VDT ("not growing").

RECIST 1.1 (Eisenhauer 2009): at most 5 target lesions, at most 2 per organ, measurable at baseline
(non-nodal long axis >= 10 mm; a lymph node's short axis >= 15 mm); the sum of diameters uses the long
axis of non-nodal lesions and the short axis of nodes.  CR: every target lesion gone (nodes < 10 mm
short axis); PR: >= 30 % decrease of the sum from baseline; PD: >= 20 % increase from the nadir (the
smallest sum so far, baseline included) and >= 5 mm absolute, or a new lesion; SD otherwise.
Non-target lesions are not assessed here: the response is a suggestion for the reader.
"""

from __future__ import annotations

import datetime as _dt
import math
import uuid
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from viewer.core.codes import AlgorithmType
from viewer.core.errors import HounsfieldError
from viewer.core.measurements import Measurement, compute, segment_stats
from viewer.core.registration import Registration
from viewer.core.segmentation import Segmentation, bbox_of
from viewer.core.volume import Volume

MATCH_MM = 15.0  # the farthest two unmatched lesions' centroids may lie apart and still be one lesion
_NAMESPACE = uuid.UUID("6f1d4c3e-0b7a-5a39-9c61-2f8e1d0a4b77")


def tracking_uid(seed: str) -> str:
    """A DICOM UID (2.25 form) derived from ``seed``: the same seed gives the same UID."""
    return f"2.25.{uuid.uuid5(_NAMESPACE, seed).int}"


def study_date(volume: Volume) -> _dt.date | None:
    """The StudyDate of the volume's study, or None when it has none (or a malformed one)."""
    text = (volume.source.study_date or "").strip()
    try:
        return _dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


ANATOMICAL_STRUCTURE = "123037004"  # SNOMED CT: a segment of this category is an organ, not a lesion


def is_lesion(segment) -> bool:
    """Whether a segment stands for a lesion to follow: not an organ (category Anatomical Structure,
    by its code or its name's terminology entry: the AI's lungs, a liver outline)."""
    from viewer.core.segmentation import terminology

    if segment.category.value == ANATOMICAL_STRUCTURE:
        return False
    entry = terminology().get(segment.name.lower())
    return not (entry and entry["category"].value == ANATOMICAL_STRUCTURE)


# ------------------------------------------------------------------------------------------------
# registration direction and carrying


def invert(reg: Registration) -> Registration:
    """The same registration with fixed and moving swapped (``Registration.inverse``; a deformable one's
    B-spline inverted as a displacement field)."""
    return reg.inverse()


def rigid_part(reg: Registration) -> Registration | None:
    """The rigid transform inside a deformable registration (``register`` makes [rigid, B-spline]; its
    inverse [B-spline^-1, rigid^-1]) as a registration of its own, or ``reg`` itself when it is rigid;
    None when there is none."""
    if reg.kind in ("identity", "rigid"):
        return reg
    stack = [reg.transform]
    while stack:
        t = stack.pop(0)
        if t.GetName() == "CompositeTransform":
            comp = sitk.CompositeTransform(t)
            stack[:0] = [comp.GetNthTransform(n) for n in range(comp.GetNumberOfTransforms())]
        elif t.GetName() in ("Euler3DTransform", "VersorRigid3DTransform"):
            return Registration(reg.fixed_uid, reg.moving_uid, "rigid", sitk.Euler3DTransform(t), reg.metric)
    return None


def oriented(reg: Registration, current: Volume, prior: Volume) -> Registration:
    """``reg`` as current (fixed) -> prior (moving), inverted when it was made the other way."""
    cur, pri = current.source.series_instance_uid, prior.source.series_instance_uid
    if reg.fixed_uid == cur and reg.moving_uid == pri:
        return reg
    if reg.fixed_uid == pri and reg.moving_uid == cur:
        return invert(reg)
    if reg.kind == "identity" or not (reg.fixed_uid or reg.moving_uid):
        return reg
    raise HounsfieldError("The registration is between other series; register the prior to the current series.")


def sub_volume(volume: Volume, box) -> Volume:
    """A geometry-only volume for the part ``box`` ([k, j, i] slices) of ``volume``'s grid."""
    start = np.array([box[2].start, box[1].start, box[0].start], np.float64)
    affine = volume.affine.copy()
    affine[:3, 3] = volume.index_to_lps(start)
    shape = tuple(s.stop - s.start for s in box)
    return Volume(np.broadcast_to(np.zeros(1, np.uint8), shape), affine, volume.modality, source=volume.source)


def _mapped_box(reg: Registration, prior: Volume, box, current: Volume, margin_mm: float):
    """The box of ``current``'s grid that holds the prior's ``box`` after the registration, grown by
    ``margin_mm``; None when it misses the current volume."""
    lo = np.array([b.start for b in box[::-1]], np.float64) - 0.5  # the box's outer faces, (i, j, k)
    hi = np.array([b.stop for b in box[::-1]], np.float64) - 0.5
    corners = np.array([np.where(bits, hi, lo) for bits in np.ndindex(2, 2, 2)])
    pts = reg.to_fixed(prior.index_to_lps(corners))
    idx = current.lps_to_index(pts)
    margin = margin_mm / current.spacing
    lo = np.floor(idx.min(0) - margin).astype(int)
    hi = np.ceil(idx.max(0) + margin).astype(int) + 1
    size = np.array(current.shape[::-1])
    lo, hi = np.clip(lo, 0, size), np.clip(hi, 0, size)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))


def carry_labels(reg: Registration, prior: Volume, labels: np.ndarray, current: Volume,
                 margin_mm: float = 10.0) -> np.ndarray:
    """A label map on ``prior``'s grid carried onto ``current``'s grid through ``reg`` (current -> prior),
    nearest neighbour; only the region around the labels is resampled."""
    out = np.zeros(current.shape, labels.dtype)
    box = bbox_of(labels != 0, 1)
    if box is None:
        return out
    target = _mapped_box(reg, prior, box, current, margin_mm)
    if target is None:
        return out
    out[target] = reg.resample(prior, sub_volume(current, target), array=labels, nearest=True, default=0)
    return out


def carry_segmentation(reg: Registration, prior: Volume, seg: Segmentation, current: Volume,
                       name: str | None = None, *, keep_shape: bool = True,
                       segments: list | None = None) -> tuple[Segmentation, dict[int, int]]:
    """``seg`` (on the prior's grid) as a new segmentation on ``current``'s grid: the same segments
    (name, colour, codes), each layer carried with nearest neighbour.  ``keep_shape`` (through a
    deformable registration): each segment keeps the shape the rigid part gives it and is placed where
    the whole registration puts its centroid, so the carried lesion is the prior's lesion, not one the
    deformation has already grown or shrunk towards the current image.  ``segments``: only these
    (default: all).  Returns it and {new segment number: prior segment number} (the same numbers)."""
    date = study_date(prior)
    chosen = list(seg.segments if segments is None else segments)
    wanted = {s.number for s in chosen}
    out = Segmentation.for_volume(current, name or f"{seg.name} (from prior)")
    while len(out.layers) < len(seg.layers):
        out.add_layer()
    rigid = rigid_part(reg) if keep_shape else None
    for n, layer in enumerate(seg.layers):
        if len(wanted) < len(seg.segments):
            layer = np.where(np.isin(layer, list(wanted)), layer, 0).astype(layer.dtype)
        if rigid is None or rigid is reg:
            out.layers[n] = carry_labels(reg, prior, layer, current)
            continue
        # the shape through the rigid part (a deformable registration can absorb a lesion's growth),
        # the place through the whole registration: each segment moved by its centroid's difference
        shaped = carry_labels(rigid, prior, layer, current)
        for s in chosen:
            if s.layer != n:
                continue
            box = seg.bbox(s, 0)
            mine = shaped == s.number
            if box is None or not mine.any():
                continue
            c = prior.index_to_lps(np.argwhere(seg.mask(s, box)).mean(0)[::-1]
                                   + np.array([box[2].start, box[1].start, box[0].start]))
            there = current.lps_to_index(reg.to_fixed(c[None])[0])
            here = current.lps_to_index(rigid.to_fixed(c[None])[0])
            shift = np.round((there - here)[::-1]).astype(int)  # (k, j, i) voxels
            moved = np.zeros_like(mine)
            src = tuple(slice(max(0, -d), n_ - max(0, d)) for d, n_ in zip(shift, mine.shape, strict=True))
            dst = tuple(slice(max(0, d), n_ - max(0, -d)) for d, n_ in zip(shift, mine.shape, strict=True))
            moved[dst] = mine[src]
            out.layers[n][moved & (out.layers[n] == 0)] = s.number
    for s in chosen:
        t = out.add_segment(s.name, s.color, category=s.category, type=s.type, number=s.number,
                            algorithm_type=AlgorithmType.SEMIAUTOMATIC if s.algorithm_type != AlgorithmType.MANUAL
                            else AlgorithmType.MANUAL, algorithm_name=s.algorithm_name,
                            algorithm_version=s.algorithm_version,
                            description=(f"Carried from the prior of {date.isoformat()}" if date
                                         else "Carried from the prior") + f" ({reg.kind} registration)")
        t.layer = s.layer
    out.active = seg.active if seg.active in wanted else min(wanted, default=None)
    return out, {s.number: s.number for s in chosen}


def carry_measurement(reg: Registration, m: Measurement, current: Volume) -> Measurement:
    """A prior measurement's points carried onto the current study (the plane's normal and right
    direction turned with the registration; the points put back into one plane)."""
    pts = reg.to_fixed(m.points)
    centre = pts.mean(axis=0)
    # the plane turns with the transform's local rotation: carry two direction ends and take the difference
    ends = reg.to_fixed(np.stack([m.points.mean(0) + 10 * m.normal, m.points.mean(0) + 10 * m.u]))
    base = reg.to_fixed(m.points.mean(0)[None])[0]
    normal, u = ends[0] - base, ends[1] - base
    # keep an axial (or coronal, sagittal) measurement in its standard plane: a radiologist reads it there
    axis = int(np.argmax(np.abs(m.normal)))
    if abs(m.normal[axis]) > 0.999:
        normal, u = m.normal.copy(), m.u.copy()
    normal = normal / np.linalg.norm(normal)
    pts = pts - np.outer((pts - centre) @ normal, normal)
    out = Measurement(m.kind, pts, normal, u, label=m.label, series_uid=current.source.series_instance_uid,
                      frame_of_reference_uid=current.source.frame_of_reference_uid)
    compute(out, current)
    return out


def outline_threshold(hu: np.ndarray, mask: np.ndarray) -> tuple[float, bool]:
    """The threshold at which an outline ``mask`` sits on the image ``hu`` (the same grid), and whether
    the lesion is brighter than its surroundings: the level with as many of the outline's voxels on the
    surroundings' side of it as voxels of its one-voxel outer ring on the lesion's side (thresholding the
    outline's edge there keeps its volume), kept within the middle half between the lesion's median and
    its 3-voxel shell's median.  Fitting with it puts the edge where the reader put it on the prior, so
    the change is read with one convention at both time points (halfway between the medians would lie
    inside a partial-volume edge a reader outlines generously, or outside a tight one)."""
    from scipy import ndimage as ndi

    shell = ndi.binary_dilation(mask, iterations=3) & ~mask
    inside = float(np.median(hu[mask]))
    outside = float(np.median(hu[shell])) if shell.any() else -1000.0
    brighter = inside >= outside
    lo, hi = sorted((inside, outside))
    lo, hi = lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo)
    ring = ndi.binary_dilation(mask) & ~mask
    if not ring.any() or hi <= lo:
        return 0.5 * (inside + outside), brighter
    sign = 1.0 if brighter else -1.0  # a darker lesion: the same count on negated values
    ins, out = np.sort(sign * hu[mask]), np.sort(sign * hu[ring])
    levels = np.unique(np.clip(np.concatenate([ins, out]), *sorted((sign * lo, sign * hi))))
    below = np.searchsorted(ins, levels, "left")  # outline voxels under the level
    above = out.size - np.searchsorted(out, levels, "left")  # ring voxels at or over it
    return float(sign * levels[int(np.argmin(np.abs(below - above)))]), brighter


def fit_to_image(reg: Registration, prior: Volume, prior_mask: np.ndarray, current: Volume,
                 carried: np.ndarray, margin_mm: float = 12.0) -> np.ndarray:
    """A carried lesion mask fitted to the current image: the voxels near it (within ``margin_mm``) on
    the lesion's side of the prior outline's own threshold (``outline_threshold``: where the reader put
    the edge on the prior), connected to the carried mask, leaving out tissue that was outside the lesion
    in the prior but already on that side of the threshold there (the chest wall a lung lesion touches
    stays out).  A growing lesion gains the voxels it took from its surroundings; a shrinking one loses
    them."""
    from scipy import ndimage as ndi

    pbox = bbox_of(prior_mask, 0)
    if pbox is None or not carried.any():
        return carried.copy()
    grow = [slice(max(0, b.start - 4), b.stop + 4) for b in pbox]
    thr, brighter = outline_threshold(prior.real_values(tuple(grow)).astype(np.float32), prior_mask[tuple(grow)])
    box = bbox_of(carried, 0)
    margin = np.ceil(margin_mm / current.spacing[::-1]).astype(int)
    box = tuple(slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, margin, current.shape,
                                                                                     strict=True))
    sub = sub_volume(current, box)
    chu = current.real_values(box).astype(np.float32)
    prior_here = reg.resample(prior, sub).astype(np.float32)  # the prior image on this part of the current grid
    c = carried[box]
    on_side = (chu >= thr) if brighter else (chu < thr)
    was_other = ((prior_here >= thr) if brighter else (prior_here < thr)) & ~c
    # a one-voxel band at the carried edge may be a registration error, not other tissue: keep it open
    was_other &= ~ndi.binary_dilation(c, iterations=1)
    sp = current.spacing[::-1]
    dist = ndi.distance_transform_edt(~c, sampling=sp)
    cand = on_side & ~was_other & (dist <= margin_mm)
    lab, _ = ndi.label(cand)
    keep = np.unique(lab[c & cand])
    keep = keep[keep != 0]
    out = np.zeros(current.shape, bool)
    if keep.size:
        out[box] = np.isin(lab, keep)
    return out


# ------------------------------------------------------------------------------------------------
# observations, tracks and changes


@dataclass
class Observation:
    """One lesion at one time point: from a segment (volume and diameters) or a caliper measurement
    (a length: long axis; a bidirectional: long and short axis)."""

    ref: tuple  # ("segment", segmentation uid, segment number) or ("measurement", uid)
    name: str
    centroid: np.ndarray  # LPS mm
    long_mm: float
    short_mm: float
    volume_ml: float | None = None
    long_points: np.ndarray | None = None
    short_points: np.ndarray | None = None
    plane: str = ""  # a caliper drawn off the axial plane: "coronal", "sagittal" or "oblique"

    @property
    def present(self) -> bool:
        return (self.volume_ml or 0.0) > 0.0 or self.long_mm > 0.0


@dataclass
class Track:
    """A lesion followed across time points."""

    uid: str  # TrackingUniqueIdentifier
    identifier: str  # TrackingIdentifier (its name)
    organ: str = ""
    nodal: bool = False
    target: bool | None = None  # None: chosen automatically


@dataclass
class LesionChange:
    """One row of the lesion table: a tracked lesion at the prior and the current time point."""

    track: Track
    prior: Observation | None
    current: Observation | None
    days: int | None  # between the two StudyDates
    matched_by: str = ""  # "carried", "overlap", "distance", or "" (only at one time point)
    target: bool = False

    @property
    def volume_change_ml(self) -> float | None:
        a, b = self._volumes()
        return None if a is None or b is None else b - a

    @property
    def volume_change_pct(self) -> float | None:
        a, b = self._volumes()
        return None if a is None or b is None or a <= 0 else 100.0 * (b - a) / a

    @property
    def vdt_days(self) -> float | None:
        """Volume doubling time (days); None when it cannot be said (no interval, no volume) or the
        lesion did not grow (see ``vdt_text``)."""
        a, b = self._volumes()
        if a is None or b is None or a <= 0 or b <= a or not self.days or self.days <= 0:
            return None
        return self.days * math.log(2.0) / math.log(b / a)

    @property
    def vdt_text(self) -> str:
        a, b = self._volumes()
        if a is None or b is None:
            return "no volume" if self.prior and self.current else ("new" if self.prior is None else "gone")
        if not self.days or self.days <= 0:
            return "no interval"
        if a <= 0:
            return "new"
        if b <= a:
            return "not growing"
        return f"{self.vdt_days:.0f} d"

    @property
    def status(self) -> str:
        if self.prior is None or not self.prior.present:
            return "new"
        if self.current is None or not self.current.present:
            return "gone"
        return "followed"

    def _volumes(self) -> tuple[float | None, float | None]:
        a = None if self.prior is None else self.prior.volume_ml
        b = None if self.current is None else self.current.volume_ml
        if self.prior is not None and self.current is None and a is not None:
            b = 0.0
        if self.current is not None and self.prior is None and b is not None:
            a = 0.0
        return a, b

    def diameter(self, which: str) -> float:
        """The RECIST diameter at ``which`` ("prior"/"current"): short axis for a node, long otherwise."""
        obs = getattr(self, which)
        if obs is None:
            return 0.0
        return obs.short_mm if self.track.nodal else obs.long_mm


@dataclass
class Response:
    """A suggested RECIST 1.1 response and the rule that produced it."""

    category: str  # CR, PR, SD, PD, or NE (not evaluable)
    rule: str
    baseline_sum: float = 0.0
    nadir_sum: float = 0.0
    current_sum: float = 0.0
    targets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return f"Suggested response: {self.category} ({self.rule})"


def recist_response(sums: list[float], *, new_lesions: list[str] | tuple = (), all_gone: bool = False,
                    nodes_normal: bool = True) -> Response:
    """RECIST 1.1 from the target-lesion sums in time order (``sums[0]`` the baseline, ``sums[-1]`` now,
    the nadir the smallest before now), ``new_lesions`` (names) and whether every target lesion is gone
    (``all_gone``; ``nodes_normal``: every nodal target's short axis under 10 mm)."""
    if len(sums) < 2:
        raise ValueError("a response needs a baseline and a later sum")
    base, now = float(sums[0]), float(sums[-1])
    nadir = float(min(sums[:-1]))
    r = dict(baseline_sum=base, nadir_sum=nadir, current_sum=now)
    if new_lesions:
        return Response("PD", "new lesion: " + ", ".join(new_lesions), **r)
    if base <= 0:
        return Response("NE", "no measurable target lesion at baseline", **r)
    rise = now - nadir
    if all_gone and nodes_normal:
        return Response("CR", "every target lesion has disappeared", **r)
    if nadir > 0 and rise >= 0.2 * nadir and rise >= 5.0:
        return Response("PD", f"sum {now:.1f} mm is {100 * rise / nadir:.0f}% (+{rise:.1f} mm) above the nadir "
                        f"{nadir:.1f} mm: >= 20% and >= 5 mm", **r)
    if nadir <= 0 and rise >= 5.0:
        return Response("PD", f"sum rose {rise:.1f} mm from a nadir of 0: >= 5 mm", **r)
    fall = base - now
    if fall >= 0.3 * base:
        return Response("PR", f"sum {now:.1f} mm is {100 * fall / base:.0f}% below the baseline {base:.1f} mm: "
                        ">= 30% decrease", **r)
    change = 100.0 * (now - base) / base
    why = (f"sum {now:.1f} mm, {change:+.0f}% from baseline {base:.1f} mm and "
           f"{(100 * rise / nadir if nadir > 0 else 0):+.0f}% from the nadir {nadir:.1f} mm: "
           "neither a 30% decrease nor a 20% and 5 mm increase")
    return Response("SD", why, **r)


def choose_targets(changes: list[LesionChange], limit: int = 5, per_organ: int = 2) -> list[LesionChange]:
    """RECIST 1.1 target lesions: those a person chose (``track.target`` True), else the measurable ones
    at baseline (non-nodal long axis >= 10 mm, node short axis >= 15 mm), largest first, at most 2 per
    organ and 5 in all.  Lesions without an organ count as one organ each."""
    chosen = [c for c in changes if c.track.target]
    if chosen:
        return chosen[:limit]
    measurable = [c for c in changes if c.prior is not None and c.track.target is not False
                  and (c.prior.short_mm >= 15.0 if c.track.nodal else c.prior.long_mm >= 10.0)]
    measurable.sort(key=lambda c: -c.diameter("prior"))
    out, per = [], {}
    for c in measurable:
        organ = c.track.organ.strip().lower() or f"?{c.track.uid}"
        if per.get(organ, 0) >= per_organ:
            continue
        per[organ] = per.get(organ, 0) + 1
        out.append(c)
        if len(out) == limit:
            break
    return out


def observe_mask(volume: Volume, mask: np.ndarray, box, ref: tuple, name: str) -> Observation:
    """The observation of a mask given on the part ``box`` of ``volume``'s grid."""
    st = segment_stats(mask, sub_volume_values(volume, box))
    return Observation(ref, name, st.centroid_lps, st.axial_long_mm, st.axial_short_mm, st.volume_ml,
                       st.axial_long_points, st.axial_short_points)


def sub_volume_values(volume: Volume, box) -> Volume:
    """The part ``box`` of ``volume`` (its voxels, a view) with its own affine."""
    geo = sub_volume(volume, box)
    return Volume(volume.array[box], geo.affine, volume.modality, volume.units, volume.rescale, volume.source)


def caliper_plane(normal) -> str:
    """"" for a caliper drawn in the axial plane (within 10 degrees), else "coronal", "sagittal" or
    "oblique": RECIST 1.1 measures CT lesions axially, so the response says when one was not."""
    n = np.abs(np.asarray(normal, np.float64))
    n = n / (np.linalg.norm(n) or 1.0)
    near = math.cos(math.radians(10.0))
    return "" if n[2] >= near else "coronal" if n[1] >= near else "sagittal" if n[0] >= near else "oblique"


def observe_measurements(measurements: list[Measurement]) -> list[Observation]:
    """Length and bidirectional measurements as caliper observations (no volume)."""
    out = []
    for m in measurements:
        plane = caliper_plane(m.normal)
        if m.kind == "length":
            out.append(Observation(("measurement", m.uid), m.title, m.points.mean(0), float(m.values.get(
                "length_mm", np.linalg.norm(m.points[1] - m.points[0]))), 0.0, None, m.points[:2].copy(),
                plane=plane))
        elif m.kind == "bidirectional":
            long = float(np.linalg.norm(m.points[1] - m.points[0]))
            short = float(np.linalg.norm(m.points[3] - m.points[2]))
            out.append(Observation(("measurement", m.uid), m.title, m.points.mean(0), long, short, None,
                                   m.points[:2].copy(), m.points[2:].copy(), plane=plane))
    return out


def guess_organ(volume: Volume, mask: np.ndarray, box) -> str:
    """"lung" when a CT lesion is mostly surrounded by aerated lung (its 3 mm shell's median below
    -500 HU); "" otherwise (the reader names the organ)."""
    if volume.modality != "CT":
        return ""
    from scipy import ndimage as ndi

    grow = tuple(slice(max(0, b.start - 3), b.stop + 3) for b in box)
    full = np.zeros(volume.shape, bool)
    full[box] = mask
    m = full[grow]
    shell = ndi.binary_dilation(m, iterations=3) & ~m
    if not shell.any():
        return ""
    return "lung" if float(np.median(volume.real_values(grow)[shell])) < -500 else ""


def _overlaps(prior_labels: dict, current_masks: dict) -> np.ndarray:
    """Dice of each carried prior mask (rows) with each current mask (columns); masks as (box, array)."""
    out = np.zeros((len(prior_labels), len(current_masks)))
    for i, (pbox, pm) in enumerate(prior_labels.values()):
        for j, (cbox, cm) in enumerate(current_masks.values()):
            lo = [max(a.start, b.start) for a, b in zip(pbox, cbox, strict=True)]
            hi = [min(a.stop, b.stop) for a, b in zip(pbox, cbox, strict=True)]
            if any(h <= lo_ for lo_, h in zip(lo, hi, strict=True)):
                continue
            inter = 0
            sl_p = tuple(slice(lo_ - b.start, h - b.start) for lo_, h, b in zip(lo, hi, pbox, strict=True))
            sl_c = tuple(slice(lo_ - b.start, h - b.start) for lo_, h, b in zip(lo, hi, cbox, strict=True))
            inter = int(np.count_nonzero(pm[sl_p] & cm[sl_c]))
            if inter:
                out[i, j] = 2.0 * inter / (pm.sum() + cm.sum())
    return out


def _assign(score: np.ndarray, maximise: bool) -> list[tuple[int, int]]:
    from scipy.optimize import linear_sum_assignment

    if score.size == 0:
        return []
    rows, cols = linear_sum_assignment(-score if maximise else score)
    return list(zip(rows.tolist(), cols.tolist(), strict=True))


class Comparison:
    """The prior and the current series of one patient, the registration between them, and the lesions
    tracked across them.  ``prior`` and ``current`` are ``OpenSeries`` (viewer.core.workspace)."""

    def __init__(self, prior, current, registration: Registration | None = None, *, match_mm: float = MATCH_MM):
        if prior is current:
            raise HounsfieldError("Choose two different series to compare.")
        self.prior, self.current = prior, current
        self.match_mm = match_mm
        self.reg = oriented(registration, current.volume, prior.volume) if registration is not None else None
        self.tracks: dict[tuple, Track] = {}  # observation ref -> its track (both time points)
        self.links: dict[tuple, tuple] = {}  # current ref -> prior ref it was carried from
        self.changes: list[LesionChange] = []
        self._names = 0

    # dates
    @property
    def days(self) -> int | None:
        a, b = study_date(self.prior.volume), study_date(self.current.volume)
        return None if a is None or b is None else (b - a).days

    def _need_reg(self) -> Registration:
        if self.reg is None:
            raise HounsfieldError("The two series are not registered; register the prior to the current series first.")
        return self.reg

    # carrying
    def carry(self, *, measurements: bool = True):
        """Carry the lesions (``is_lesion``) of every segmentation and the (length, bidirectional)
        measurements of the prior onto the current series, linked to where they came from (what was
        carried before and is still there is not carried again); returns the new EditableSegmentations."""
        reg = self._need_reg()
        out = []
        present = {ed.segmentation.uid for ed in self.current.segmentations}
        done = {src[1] for ref, src in self.links.items() if ref[0] == "segment" and ref[1] in present}
        for ed in self.prior.segmentations:
            lesions = [s for s in ed.segments if is_lesion(s) and ed.segmentation.count(s)]
            if ed.segmentation.uid in done or not lesions:
                continue  # already carried (and still there), or no lesion in it
            seg, numbers = carry_segmentation(reg, self.prior.volume, ed.segmentation, self.current.volume,
                                              segments=lesions)
            new = self.current.add_segmentation(seg, exported=False)
            for n_new, n_old in numbers.items():
                self.links[("segment", seg.uid, n_new)] = ("segment", ed.segmentation.uid, n_old)
            out.append(new)
        if measurements:
            here = {m.uid for m in self.current.measurements}
            done = {src[1] for ref, src in self.links.items() if ref[0] == "measurement" and ref[1] in here}
            for m in self.prior.measurements:
                if m.kind not in ("length", "bidirectional") or m.uid in done:
                    continue
                c = carry_measurement(reg, m, self.current.volume)
                self.current.add_overlay(c)
                self.links[("measurement", c.uid)] = ("measurement", m.uid)
        return out

    def fit(self, editable, margin_mm: float = 12.0) -> None:
        """Fit each segment of a carried segmentation (``editable``, an EditableSegmentation on the current
        series) to the current image (``fit_to_image``), one undoable edit per segment."""
        reg = self._need_reg()
        seg = editable.segmentation
        for s in seg.segments:
            prior_ref = self.links.get(("segment", seg.uid, s.number))
            if prior_ref is None:
                continue
            pseg = self._prior_segmentation(prior_ref[1])
            carried = seg.mask(s)
            if pseg is None or not carried.any():
                continue
            pmask = pseg.mask(pseg.segment(prior_ref[2]))
            fitted = fit_to_image(reg, self.prior.volume, pmask, self.current.volume, carried, margin_mm)
            box = bbox_of(fitted | carried, 0)
            editable.editor.begin("Fit to the current image")
            try:
                editable.editor.set_mask(s, box, fitted[box])
            finally:
                editable.editor.end()

    def _prior_segmentation(self, uid: str) -> Segmentation | None:
        return next((ed.segmentation for ed in self.prior.segmentations if ed.segmentation.uid == uid), None)

    # matching
    def _observe(self, series) -> tuple[list[Observation], dict]:
        obs, masks = [], {}
        for ed in series.segmentations:
            seg = ed.segmentation
            for s in seg.segments:
                box = seg.bbox(s, 1) if is_lesion(s) else None
                if box is None:
                    continue
                m = seg.mask(s, box)
                o = observe_mask(series.volume, m, box, ("segment", seg.uid, s.number), s.name)
                obs.append(o)
                masks[o.ref] = (box, m)
        obs += observe_measurements(series.measurements)
        return obs, masks

    def update(self) -> list[LesionChange]:
        """Observe both series, match their lesions, and return the table (``self.changes``)."""
        pobs, pmasks = self._observe(self.prior)
        cobs, cmasks = self._observe(self.current)
        pairs: dict[int, tuple[int, str]] = {}  # current index -> (prior index, how)
        pidx = {o.ref: n for n, o in enumerate(pobs)}
        for j, o in enumerate(cobs):  # 1. carried: linked to their source
            src = self.links.get(o.ref)
            if src in pidx:
                pairs[j] = (pidx[src], "carried")
        used = {i for i, _ in pairs.values()}
        free_p = [i for i, o in enumerate(pobs) if i not in used and o.ref[0] == "segment"]
        free_c = [j for j, o in enumerate(cobs) if j not in pairs and o.ref[0] == "segment"]
        if self.reg is not None and free_p and free_c:  # 2. overlap after carrying
            carried = {}
            for i in free_p:
                box, m = pmasks[pobs[i].ref]
                full = np.zeros(self.prior.volume.shape, np.uint8)
                full[box] = m
                lab = carry_labels(self.reg, self.prior.volume, full, self.current.volume, margin_mm=2.0)
                cb = bbox_of(lab != 0, 0)
                carried[i] = (cb, lab[cb] != 0) if cb is not None else ((slice(0, 0),) * 3, np.zeros((0, 0, 0), bool))
            dice = _overlaps({i: carried[i] for i in free_p}, {j: cmasks[cobs[j].ref] for j in free_c})
            for a, b in _assign(dice, maximise=True):
                if dice[a, b] > 0:
                    pairs[free_c[b]] = (free_p[a], "overlap")
        used = {i for i, _ in pairs.values()}
        free_p = [i for i in range(len(pobs)) if i not in used]
        free_c = [j for j in range(len(cobs)) if j not in pairs]
        if free_p and free_c:  # 3. nearest centroid within match_mm (prior centroids carried)
            pc = np.array([pobs[i].centroid for i in free_p])
            if self.reg is not None:
                pc = self.reg.to_fixed(pc)
            cc = np.array([cobs[j].centroid for j in free_c])
            dist = np.linalg.norm(pc[:, None] - cc[None], axis=-1)
            for a, b in _assign(np.where(dist <= self.match_mm, dist, 1e6), maximise=False):
                same_kind = pobs[free_p[a]].ref[0] == cobs[free_c[b]].ref[0]
                if dist[a, b] <= self.match_mm and same_kind:
                    pairs[free_c[b]] = (free_p[a], "distance")
        days = self.days
        rows, seen = [], set()
        for j, (i, how) in sorted(pairs.items(), key=lambda kv: kv[1][0]):
            t = self._track(pobs[i], cobs[j], pmasks.get(pobs[i].ref))
            rows.append(LesionChange(t, pobs[i], cobs[j], days, how))
            seen |= {i}
        for i, o in enumerate(pobs):
            if i not in seen:
                rows.append(LesionChange(self._track(o, None, pmasks.get(o.ref)), o, None, days))
        for j, o in enumerate(cobs):
            if j not in pairs:
                rows.append(LesionChange(self._track(None, o, cmasks.get(o.ref), current=True), None, o, days))
        targets = {id(c) for c in choose_targets(rows)}
        for c in rows:
            c.target = id(c) in targets
        self.changes = rows
        return rows

    def _track(self, p: Observation | None, c: Observation | None, mask=None, current: bool = False) -> Track:
        t = (self.tracks.get(p.ref) if p is not None else None) or (self.tracks.get(c.ref) if c is not None else None)
        if t is None:
            first = p or c
            seed = "/".join(str(x) for x in first.ref)
            t = Track(tracking_uid(seed), first.name or self._next_name())
            if mask is not None:
                vol = (self.current if current else self.prior).volume
                t.organ = guess_organ(vol, mask[1], mask[0])
            t.nodal = any(w in t.identifier.lower() for w in ("node", "lymph"))
        for o in (p, c):
            if o is not None:
                self.tracks[o.ref] = t
        return t

    def _next_name(self) -> str:
        self._names += 1
        return f"Lesion {self._names}"

    # RECIST
    def targets(self) -> list[LesionChange]:
        return [c for c in self.changes if c.target]

    def response(self, earlier_sums: list[float] | tuple = ()) -> Response:
        """The suggested RECIST 1.1 response of the current study against the prior as baseline
        (``earlier_sums``: target sums of time points between them, for the nadir)."""
        targets = self.targets()
        names = [c.track.identifier for c in targets]
        base = sum(c.diameter("prior") for c in targets)
        now = sum(c.diameter("current") for c in targets)
        new = [c.track.identifier for c in self.changes if c.status == "new" and c.current is not None]
        gone = bool(targets) and all(c.current is None or not c.current.present for c in targets
                                     if not c.track.nodal)
        nodes_ok = all(c.current is None or c.current.short_mm < 10.0 for c in targets if c.track.nodal)
        if not targets:
            r = Response("NE", "no measurable target lesion at baseline (a long axis of 10 mm or more)")
            r.notes.append("choose target lesions, or segment or measure the lesions on the prior")
            return r
        r = recist_response([base, *earlier_sums, now], new_lesions=new, all_gone=gone, nodes_normal=nodes_ok)
        r.targets = names
        if any(not c.track.organ for c in targets):
            r.notes.append("organs not named: the 2-per-organ limit counts each such lesion as its own organ")
        for c in targets:
            for when, o in (("prior", c.prior), ("current", c.current)):
                if o is not None and o.plane:
                    r.notes.append(f"{c.track.identifier} on the {when} study was drawn in the {o.plane} plane, "
                                   "summed as drawn: RECIST 1.1 measures in the axial plane")
        r.notes.append("non-target lesions are not assessed: a suggestion for the reader to confirm")
        return r

