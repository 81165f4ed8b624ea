"""Editing a segmentation, with undo/redo that stores only the changed box (no Qt, no VTK).

An ``Editor`` applies operations to one ``Segmentation`` (its volume supplies intensities for
threshold painting, flood fill and region growing):

- ``brush``: paint or erase a stroke of a round brush, a disc in the view plane (``normal`` given:
  voxels within half a slice of the plane, any plane orientation) or a sphere; radius in mm,
  measured through the affine; optionally limited to an intensity (HU) range,
- ``flood_fill``: the connected region around a seed within an intensity range or a tolerance
  around the seed's value (SimpleITK ConnectedThreshold), in the view plane or in 3D,
- ``fill_between_slices``: interpolate a segment drawn on a few slices through the gaps
  (shape-based interpolation of signed distance maps); drawn slices are left as they are,
- ``smooth`` (median, closing, opening), ``islands`` (keep the largest, remove small ones),
- ``logical`` (union, subtract, intersect with another segment), ``polygon`` (lasso fill or cut
  in a view plane),
- segment addition and removal, so that those are undone too.

Every step (an operation, a stroke between ``begin`` and ``end``, an undo, a redo) is announced by
``step_begun`` and ``step_ended``: the crash journal writes what changed in between as one record.

Protection: a locked segment never changes, and with ``overwrite="empty"`` painting only fills
voxels that no segment of the layer holds; with ``"all"`` (default) it takes voxels from other,
unlocked segments of the same layer.  Erasing only ever removes the edited segment's voxels.

History: each step keeps, per touched layer, the smallest box around the voxels that changed,
before and after (a brush stroke is one step however many dabs it has).  Steps are kept without
a count limit while their total stays under ``limit_bytes`` (256 MB); the oldest go first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.core.codes import AlgorithmType
from viewer.core.polygons import inside_polygon
from viewer.core.segmentation import Box, Segment, Segmentation, bbox_of
from viewer.core.signals import Signal
from viewer.core.volume import Volume

OVERWRITE_MODES = ("all", "empty")
LIMIT_BYTES = 256 * 1024 * 1024


@dataclass
class Change:
    layer: int
    box: Box
    before: np.ndarray
    after: np.ndarray


@dataclass
class Step:
    name: str
    changes: list[Change] = field(default_factory=list)
    meta_before: dict | None = None
    meta_after: dict | None = None

    @property
    def nbytes(self) -> int:
        return sum(c.before.nbytes + c.after.nbytes for c in self.changes) + 512


class History:
    """Undo/redo steps under a memory cap (no count limit)."""

    def __init__(self, limit_bytes: int = LIMIT_BYTES):
        self.limit_bytes = int(limit_bytes)
        self.steps: list[Step] = []
        self.index = 0  # steps[:index] are applied

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.steps)

    def push(self, step: Step) -> None:
        del self.steps[self.index:]
        self.steps.append(step)
        total = self.nbytes
        while total > self.limit_bytes and len(self.steps) > 1:
            total -= self.steps.pop(0).nbytes
        self.index = len(self.steps)

    def can_undo(self) -> bool:
        return self.index > 0

    def can_redo(self) -> bool:
        return self.index < len(self.steps)


def union_box(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _shift(box: Box, inner: Box) -> Box:
    """``inner`` (absolute) relative to ``box``'s corner."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for o, i in zip(box, inner))


class _Pending:
    """The step being built: per layer the growing box and what it held before the step."""

    def __init__(self, name: str, meta: dict):
        self.name, self.meta_before = name, meta
        self.boxes: dict[int, Box] = {}
        self.before: dict[int, np.ndarray] = {}
        self.depth = 1

    def record(self, seg: Segmentation, layer: int, box: Box) -> None:
        """Remember ``layers[layer][box]`` as it was before the step (call before writing)."""
        old = self.boxes.get(layer)
        new = union_box(old, box)
        if old == new:
            return
        data = seg.layers[layer][new].copy()  # outside the old box nothing has changed yet
        if old is not None:
            data[_shift(new, old)] = self.before[layer]
        self.boxes[layer], self.before[layer] = new, data


class Editor:
    """Edits of one segmentation with undo/redo; ``volume`` gives intensities (HU for CT)."""

    def __init__(self, seg: Segmentation, volume: Volume | None = None, limit_bytes: int = LIMIT_BYTES):
        self.seg, self.volume = seg, volume
        self.history = History(limit_bytes)
        self.overwrite = "all"
        self._pending: _Pending | None = None
        self.history_changed = Signal()  # undo/redo availability changed
        # around every step (an edit, an undo, a redo): what the journal writes as one record
        self.step_begun = Signal()  # (name)
        self.step_ended = Signal()

    # steps
    def begin(self, name: str) -> None:
        """Start a step (a brush stroke); nested begin/end pairs make one step."""
        if self._pending is not None:
            self._pending.depth += 1
            return
        self._pending = _Pending(name, self.seg.meta())
        self.step_begun.emit(name)

    def end(self) -> Step | None:
        p = self._pending
        if p is None:
            return None
        p.depth -= 1
        if p.depth > 0:
            return None
        self._pending = None
        try:
            return self._finish(p)
        finally:
            self.step_ended.emit()

    def _finish(self, p: _Pending) -> Step | None:
        meta_after = self.seg.meta()
        changes = []
        for layer, box in p.boxes.items():
            after = self.seg.layers[layer][box]
            before = p.before[layer]
            diff = bbox_of(before != after)  # only what really changed
            if diff is None:
                continue
            absolute = tuple(slice(b.start + d.start, b.start + d.stop) for b, d in zip(box, diff))
            changes.append(Change(layer, absolute, before[diff].copy(), after[diff].copy()))
        meta_changed = meta_after != p.meta_before
        if not changes and not meta_changed:
            return None
        step = Step(p.name, changes, p.meta_before if meta_changed else None, meta_after if meta_changed else None)
        self.history.push(step)
        self.history_changed.emit()
        return step

    def undo(self) -> bool:
        h = self.history
        if self._pending is not None or not h.can_undo():
            return False
        h.index -= 1
        step = h.steps[h.index]
        self.step_begun.emit("Undo " + step.name)
        try:
            for c in reversed(step.changes):
                self.seg.write(c.layer, c.box, c.before)
            if step.meta_before is not None:
                self.seg.set_meta(step.meta_before)
        finally:
            self.step_ended.emit()
        self.history_changed.emit()
        return True

    def redo(self) -> bool:
        h = self.history
        if self._pending is not None or not h.can_redo():
            return False
        step = h.steps[h.index]
        h.index += 1
        self.step_begun.emit("Redo " + step.name)
        try:
            if step.meta_after is not None:
                self.seg.set_meta(step.meta_after)
            for c in step.changes:
                self.seg.write(c.layer, c.box, c.after)
        finally:
            self.step_ended.emit()
        self.history_changed.emit()
        return True

    # the one primitive every operation goes through
    def apply(self, seg: Segment, box: Box, paint: np.ndarray | None = None, erase: np.ndarray | None = None) -> bool:
        """In ``box``: give ``seg`` the voxels of ``paint`` (where allowed) and take it off those of
        ``erase``.  Returns whether any voxel changed."""
        if seg.locked:
            return False
        layer = self.seg.layers[seg.layer]
        cur = layer[box]
        new = cur.copy()
        v = seg.number
        if erase is not None:
            new[erase & (cur == v)] = 0
        if paint is not None:
            allowed = paint.copy()
            locked = [s.number for s in self.seg.segments if s.locked and s.layer == seg.layer]
            if locked:
                allowed &= ~np.isin(cur, locked)
            if self.overwrite == "empty":
                allowed &= (cur == 0) | (cur == v)
            new[allowed] = v
        diff = bbox_of(new != cur)
        if diff is None:
            return False
        absolute = tuple(slice(b.start + d.start, b.start + d.stop) for b, d in zip(box, diff))
        self.begin("Edit")
        try:
            self._pending.record(self.seg, seg.layer, absolute)
            self._mark_edited(seg)
            self.seg.write(seg.layer, absolute, new[diff])
        finally:
            self.end()
        return True

    def _mark_edited(self, seg: Segment) -> None:
        if seg.algorithm_type != AlgorithmType.MANUAL and not seg.edited:
            seg.edited = True
            if seg.algorithm_type == AlgorithmType.AUTOMATIC:
                seg.algorithm_type = AlgorithmType.SEMIAUTOMATIC
            self.seg.segments_changed.emit()

    def set_mask(self, seg: Segment, box: Box, mask: np.ndarray) -> bool:
        """Make ``seg`` equal ``mask`` inside ``box`` (smoothing, islands, logical operations)."""
        return self.apply(seg, box, paint=mask, erase=~mask)

    # segments
    def add_segment(self, name: str | None = None, color=None, **kw) -> Segment:
        self.begin("Add segment")
        try:
            s = self.seg.add_segment(name, color, **kw)
            self.seg.set_active(s.number)
        finally:
            self.end()
        return s

    def remove_segment(self, seg: Segment) -> None:
        self.begin("Delete segment")
        try:
            box = self.seg.bbox(seg)
            if box is not None:
                was_locked, seg.locked = seg.locked, False
                self.apply(seg, box, erase=np.ones(tuple(s.stop - s.start for s in box), bool))
                seg.locked = was_locked
            self.seg.segments.remove(seg)
            if self.seg.active == seg.number:
                self.seg.active = self.seg.segments[0].number if self.seg.segments else None
            self.seg.segments_changed.emit()
        finally:
            self.end()

    # geometry helpers
    def _centres(self, box: Box) -> np.ndarray:
        """LPS centres (nk, nj, ni, 3) of the voxels of ``box``."""
        a = self.seg.affine
        k, j, i = (np.arange(s.start, s.stop, dtype=np.float64) for s in box)
        return (a[:3, 3] + i[None, None, :, None] * a[:3, 0] + j[None, :, None, None] * a[:3, 1]
                + k[:, None, None, None] * a[:3, 2])

    def _box_around(self, points, reach: np.ndarray) -> Box | None:
        """The index box holding LPS ``points`` grown by ``reach`` index units per (i, j, k) axis."""
        inv = np.linalg.inv(self.seg.affine)
        idx = np.asarray(points, np.float64) @ inv[:3, :3].T + inv[:3, 3]
        lo = np.floor(idx.min(axis=0) - reach).astype(int)
        hi = np.ceil(idx.max(axis=0) + reach).astype(int) + 1
        nk, nj, ni = self.seg.shape
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, [ni, nj, nk])
        if np.any(hi <= lo):
            return None
        return tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))

    def _half_slice(self, normal) -> float:
        """Half the distance between slices along ``normal`` (a plane's voxels lie within it)."""
        inv = np.linalg.inv(self.seg.affine[:3, :3])
        return 0.5 / float(np.abs(inv @ np.asarray(normal, float)).max()) + 1e-4

    def _in_range(self, box: Box, hu_range) -> np.ndarray:
        if self.volume is None:
            raise ValueError("threshold painting needs the segmented volume")
        values = self.volume.real_values(box)
        return (values >= hu_range[0]) & (values <= hu_range[1])

    # operations
    def brush_mask(self, p0, p1, radius_mm: float, normal=None) -> tuple[Box, np.ndarray] | None:
        """The voxels a round brush covers moving from ``p0`` to ``p1`` (LPS): a disc in the plane of
        ``normal`` or, without one, a sphere."""
        p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
        r = float(radius_mm)
        inv = np.linalg.inv(self.seg.affine[:3, :3])
        reach = r * np.linalg.norm(inv, axis=1) + 0.5  # sphere's half extent per index axis
        box = self._box_around([p0, p1], reach)
        if box is None:
            return None
        x = self._centres(box) - p0
        d = p1 - p0
        if normal is not None:
            n = np.asarray(normal, np.float64) / np.linalg.norm(normal)
            depth = x @ n
            x = x - depth[..., None] * n
            d = d - (d @ n) * n
        dd = float(d @ d)
        t = np.clip((x @ d) / dd, 0.0, 1.0)[..., None] if dd > 1e-12 else 0.0
        mask = np.sum((x - t * d) ** 2, axis=-1) <= r * r
        if normal is not None:
            mask &= np.abs(depth) <= self._half_slice(n)
        return box, mask

    def brush(self, seg: Segment, p0, p1=None, radius_mm: float = 5.0, normal=None, erase: bool = False,
              hu_range=None) -> bool:
        """One dab (or the segment of a stroke from ``p0`` to ``p1``) of a round brush."""
        found = self.brush_mask(p0, p0 if p1 is None else p1, radius_mm, normal)
        if found is None:
            return False
        box, mask = found
        if hu_range is not None and not erase:
            mask &= self._in_range(box, hu_range)
        return self.apply(seg, box, erase=mask) if erase else self.apply(seg, box, paint=mask)

    def flood_fill(self, seg: Segment, seed_lps, tolerance: float | None = 100.0, hu_range=None,
                   normal=None, erase: bool = False) -> bool:
        """Fill the region connected to ``seed_lps`` whose values lie in ``hu_range`` (default: the
        seed's value +- ``tolerance``); in the plane of ``normal`` when given, else in 3D."""
        import SimpleITK as sitk

        if self.volume is None:
            raise ValueError("flood fill needs the segmented volume")
        nk, nj, ni = self.seg.shape
        seed = np.round(np.linalg.inv(self.seg.affine)[:3] @ np.append(seed_lps, 1.0)).astype(int)
        if not (0 <= seed[0] < ni and 0 <= seed[1] < nj and 0 <= seed[2] < nk):
            return False
        if hu_range is None:
            v = float(self.volume.real_values(np.s_[seed[2], seed[1], seed[0]]))
            hu_range = (v - tolerance, v + tolerance)
        box = (slice(0, nk), slice(0, nj), slice(0, ni))
        axis = None
        if normal is not None:
            m = np.abs(np.linalg.inv(self.seg.affine[:3, :3]) @ np.asarray(normal, float))
            m /= m.max()
            if np.sort(m)[1] < 1e-3:  # a grid-aligned plane: fill in that slice only
                axis = 2 - int(np.argmax(m))  # array axis (k=0, j=1, i=2)
                box = list(box)
                box[axis] = slice(int(seed[2 - axis]), int(seed[2 - axis]) + 1)
                box = tuple(box)
        values = np.ascontiguousarray(self.volume.real_values(box))
        image = sitk.GetImageFromArray(values)
        local = [int(seed[a] - box[2 - a].start) for a in range(3)]
        region = sitk.ConnectedThreshold(image, seedList=[tuple(local)], lower=float(hu_range[0]),
                                         upper=float(hu_range[1]), replaceValue=1)
        mask = sitk.GetArrayViewFromImage(region).astype(bool)
        if normal is not None and axis is None:  # oblique plane: the region's cut by the plane
            n = np.asarray(normal, float) / np.linalg.norm(normal)
            sub = bbox_of(mask)
            if sub is None:
                return False
            box = tuple(slice(b.start + s.start, b.start + s.stop) for b, s in zip(box, sub))
            mask = mask[sub] & (np.abs((self._centres(box) - np.asarray(seed_lps, float)) @ n)
                                <= self._half_slice(n))
        self.begin("Flood fill")
        try:
            return self.apply(seg, box, erase=mask) if erase else self.apply(seg, box, paint=mask)
        finally:
            self.end()

    def fill_between_slices(self, seg: Segment, axis: int | None = None) -> bool:
        """Interpolate ``seg`` through the empty slices between those drawn on (array ``axis``:
        0 = k, 1 = j, 2 = i; default: the axis along which the drawing has gaps).

        Shape-based interpolation (Raya and Udupa): each drawn slice becomes a signed distance map
        in mm (negative inside), maps of consecutive drawn slices are blended linearly across the
        gap and the blend's negative part is the interpolated shape.  Drawn slices stay as drawn.
        (SimpleITK's wheels lack ITK's morphological contour interpolator.)"""
        from scipy import ndimage

        box = self.seg.bbox(seg, margin=2)
        if box is None:
            return False
        mask = self.seg.mask(seg, box)
        filled = {a: mask.any(axis=tuple(b for b in range(3) if b != a)) for a in range(3)}
        if axis is None:
            gaps = {a: int((~f[np.argmax(f):len(f) - np.argmax(f[::-1])]).sum()) for a, f in filled.items()}
            axis = max(gaps, key=gaps.get)
            if gaps[axis] == 0:
                return False
        m = np.moveaxis(mask, axis, 0)  # drawn slices along the first axis
        sp = self.seg.spacing[::-1]  # (sk, sj, si)
        sampling = [sp[a] for a in range(3) if a != axis]
        drawn = np.flatnonzero(filled[axis])

        def sdf(sl):
            return ndimage.distance_transform_edt(~sl, sampling) - ndimage.distance_transform_edt(sl, sampling)

        new = np.zeros_like(m)
        maps = {}
        for a, b in zip(drawn, drawn[1:]):
            if b - a < 2:
                continue
            da = maps.pop(a, None)
            da = sdf(m[a]) if da is None else da
            db = maps[b] = sdf(m[b])
            for x in range(a + 1, b):
                t = (x - a) / (b - a)
                new[x] = (1 - t) * da + t * db < 0
        if not new.any():
            return False
        self.begin("Fill between slices")
        try:
            return self.apply(seg, box, paint=np.moveaxis(new, 0, axis))
        finally:
            self.end()

    def _radius_vox(self, radius_mm: float) -> np.ndarray:
        sp = self.seg.spacing  # (si, sj, sk)
        return np.maximum(np.round(radius_mm / sp[::-1]).astype(int), 0)  # (rk, rj, ri)

    def _ball(self, radius_mm: float) -> np.ndarray:
        r = self._radius_vox(radius_mm)
        grids = np.ogrid[tuple(slice(-x, x + 1) for x in r)]
        return sum((g / max(x, 1)) ** 2 for g, x in zip(grids, r)) <= 1.0

    def smooth(self, seg: Segment, method: str = "median", radius_mm: float = 2.0) -> bool:
        """Median, closing (fills small holes and gaps) or opening (removes thin spurs)."""
        from scipy import ndimage

        r = self._radius_vox(radius_mm)
        box = self.seg.bbox(seg, margin=int(r.max()) + 1)
        if box is None:
            return False
        mask = self.seg.mask(seg, box)
        if method == "median":
            new = ndimage.median_filter(mask.astype(np.uint8), size=tuple(2 * r + 1)).astype(bool)
        elif method == "closing":
            new = ndimage.binary_closing(np.pad(mask, [(x, x) for x in r]), self._ball(radius_mm))
            new = new[tuple(slice(x, x + n) for x, n in zip(r, mask.shape))]
        elif method == "opening":
            new = ndimage.binary_opening(mask, self._ball(radius_mm))
        else:
            raise ValueError(f"unknown smoothing method {method!r}")
        self.begin(f"Smooth ({method})")
        try:
            return self.set_mask(seg, box, new)
        finally:
            self.end()

    def islands(self, seg: Segment, keep_largest: bool = True, min_voxels: int = 0) -> bool:
        """Keep only the largest connected piece, or remove pieces smaller than ``min_voxels``."""
        from scipy import ndimage

        box = self.seg.bbox(seg)
        if box is None:
            return False
        mask = self.seg.mask(seg, box)
        labels, n = ndimage.label(mask)
        if n <= 1 and not min_voxels:
            return False
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = np.zeros(n + 1, bool)
        if keep_largest:
            keep[int(np.argmax(sizes))] = True
        else:
            keep[sizes >= min_voxels] = True
            keep[0] = False
        self.begin("Islands")
        try:
            return self.set_mask(seg, box, keep[labels])
        finally:
            self.end()

    def logical(self, seg: Segment, op: str, other: Segment) -> bool:
        """``seg`` becomes seg | other ("union"), seg & ~other ("subtract") or seg & other ("intersect")."""
        a, b = self.seg.bbox(seg), self.seg.bbox(other)
        if b is None and op != "intersect":
            return False
        box = (b if a is None else union_box(a, b)) if op == "union" else a
        if box is None:
            return False
        ma, mb = self.seg.mask(seg, box), self.seg.mask(other, box)
        new = {"union": ma | mb, "subtract": ma & ~mb, "intersect": ma & mb}.get(op)
        if new is None:
            raise ValueError(f"unknown logical operation {op!r}")
        self.begin(f"Logical {op}")
        try:
            return self.set_mask(seg, box, new)
        finally:
            self.end()

    def polygon(self, seg: Segment, points_lps, normal, erase: bool = False, hu_range=None) -> bool:
        """Fill (or cut, ``erase``) the voxels of the view plane inside a closed polygon (lasso)."""
        pts = np.asarray(points_lps, np.float64)
        if len(pts) < 3:
            return False
        n = np.asarray(normal, np.float64) / np.linalg.norm(normal)
        u = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
        u /= np.linalg.norm(u)
        v = np.cross(n, u)
        origin = pts[0]
        half = self._half_slice(n)
        inv = np.linalg.inv(self.seg.affine[:3, :3])
        box = self._box_around(pts, half * np.abs(inv @ n) + 0.5)
        if box is None:
            return False
        x = self._centres(box) - origin
        mask = np.abs(x @ n) <= half
        poly = np.column_stack([(pts - origin) @ u, (pts - origin) @ v])
        mask &= inside_polygon(x @ u, x @ v, poly)
        if hu_range is not None and not erase:
            mask &= self._in_range(box, hu_range)
        self.begin("Lasso cut" if erase else "Lasso fill")
        try:
            return self.apply(seg, box, erase=mask) if erase else self.apply(seg, box, paint=mask)
        finally:
            self.end()


