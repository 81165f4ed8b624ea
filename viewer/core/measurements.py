"""Measurements: plain data with LPS millimetre points, and what they measure (no Qt, no VTK).

A ``Measurement`` is drawn in a view plane: its ``u`` (screen right) and ``normal`` give the plane,
its ``points`` are LPS mm and lie in that plane.  Per kind, the points are

- ``length``: [a, b];
- ``angle``: [a, vertex, c] (the angle at the vertex, 0-180 degrees);
- ``ellipse``: [centre, end of the first semi-axis, end of the second semi-axis] (perpendicular);
- ``polygon``: the corners of a closed freehand or polygon outline, in order;
- ``point``: [p] (the value of the voxel nearest p);
- ``bidirectional``: [long0, long1, short0, short1] (RECIST: the short axis perpendicular to the long).

Lengths and angles are computed from the LPS points, so they are right on oblique planes and on
anisotropic voxels alike.

Which voxels an ROI (ellipse, polygon) holds
--------------------------------------------
- Plane aligned with the voxel grid (its normal runs along one index axis): the ROI is put on the
  slice of voxels nearest its plane, and a voxel belongs to the ROI when its centre lies inside the
  outline (ellipse equation; even-odd rule for polygons).  Statistics use those voxels' stored
  values (rescaled to HU or real units), no interpolation.
- Oblique plane: the plane is sampled on a square grid of the finest voxel spacing, anchored at
  the ROI's first point; a sample belongs to the ROI when it lies inside the outline and inside the
  volume, and its value is trilinearly interpolated (as the view shows it).
``area_mm2`` is the exact area of the outline (pi a b; the shoelace formula), ``sample_area_mm2``
the area the counted voxels or samples cover.

Segment statistics take a boolean mask (the volume's ``[k, j, i]`` shape) and the ``Volume``, so
they work with any segmentation model.  Diameters there run between voxel centres.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

import numpy as np

from viewer.core.polygons import inside_polygon, polygon_area
from viewer.core.volume import Volume

KINDS = ("length", "angle", "ellipse", "polygon", "point", "bidirectional")
KIND_TITLES = {"length": "Length", "angle": "Angle", "ellipse": "Ellipse ROI", "polygon": "Polygon ROI",
               "point": "Point", "bidirectional": "Bidirectional"}
ROI_KINDS = ("ellipse", "polygon")
_POINT_COUNTS = {"length": 2, "angle": 3, "ellipse": 3, "point": 1, "bidirectional": 4}


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


@dataclass
class Measurement:
    kind: str
    points: np.ndarray  # (N, 3) LPS mm
    normal: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    u: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    label: str = ""
    series_uid: str = ""
    frame_of_reference_uid: str = ""
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)
    values: dict = field(default_factory=dict)  # name -> number, filled by ``compute``

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown measurement kind {self.kind!r}")
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
        self.normal = _unit(self.normal)
        u = np.asarray(self.u, dtype=np.float64)
        self.u = _unit(u - (u @ self.normal) * self.normal)
        need = _POINT_COUNTS.get(self.kind)
        if need is not None and len(self.points) != need:
            raise ValueError(f"a {self.kind} measurement needs {need} points, got {len(self.points)}")
        if self.kind == "polygon" and len(self.points) < 3:
            raise ValueError("a polygon ROI needs at least 3 points")

    @property
    def v(self) -> np.ndarray:
        return np.cross(self.normal, self.u)

    @property
    def title(self) -> str:
        return self.label or KIND_TITLES[self.kind]

    def centre(self) -> np.ndarray:
        return self.points[0].copy() if self.kind == "ellipse" else self.points.mean(axis=0)

    def plane_xy(self, points=None) -> np.ndarray:
        """Points (default: this measurement's) in this plane's (u, v) mm, from the first point."""
        p = self.points if points is None else np.asarray(points, dtype=np.float64)
        d = p - self.points[0]
        return np.stack([d @ self.u, d @ self.v], axis=-1)

    def distance_to_plane(self, origin, n) -> float:
        """Distance (mm) of this measurement's plane from the plane through ``origin`` with normal ``n``;
        inf when the planes are not parallel."""
        n = _unit(n)
        if abs(float(n @ self.normal)) < 0.999:
            return math.inf
        return abs(float((self.centre() - np.asarray(origin, dtype=np.float64)) @ n))

    def moved(self, delta) -> None:
        self.points = self.points + np.asarray(delta, dtype=np.float64)

    # (de)serialisation: plain JSON types
    def to_dict(self) -> dict:
        return {"kind": self.kind, "points": self.points.round(4).tolist(), "normal": self.normal.tolist(),
                "u": self.u.tolist(), "label": self.label, "series_uid": self.series_uid,
                "frame_of_reference_uid": self.frame_of_reference_uid, "uid": self.uid,
                "values": {k: float(v) for k, v in self.values.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> Measurement:
        return cls(kind=d["kind"], points=np.asarray(d["points"], float), normal=np.asarray(d["normal"], float),
                   u=np.asarray(d["u"], float), label=d.get("label", ""), series_uid=d.get("series_uid", ""),
                   frame_of_reference_uid=d.get("frame_of_reference_uid", ""), uid=d.get("uid") or uuid.uuid4().hex,
                   values=dict(d.get("values", {})))


# ---------------------------------------------------------------------------------------------
# lengths and angles

def length_mm(a, b) -> float:
    return float(np.linalg.norm(np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)))


def angle_deg(a, vertex, c) -> float:
    d1 = np.asarray(a, dtype=np.float64) - vertex
    d2 = np.asarray(c, dtype=np.float64) - vertex
    n1, n2 = np.linalg.norm(d1), np.linalg.norm(d2)
    if n1 == 0 or n2 == 0:
        return 0.0
    return float(np.degrees(np.arccos(np.clip(d1 @ d2 / (n1 * n2), -1.0, 1.0))))


def ellipse_axes(m: Measurement) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, first semi-axis vector, second semi-axis vector); the second is made perpendicular
    to the first, in the plane."""
    c, a_end, b_end = m.points
    a = a_end - c
    b = b_end - c
    an = _unit(a)
    b_dir = np.cross(m.normal, an) if np.linalg.norm(a) > 0 else _unit(b)
    b = (b @ b_dir) * b_dir
    return c, a, b


def outline(m: Measurement, segments: int = 96) -> np.ndarray:
    """The LPS outline of an ROI (closed: the first point is not repeated)."""
    if m.kind == "ellipse":
        c, a, b = ellipse_axes(m)
        t = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
        return c + np.cos(t)[:, None] * a + np.sin(t)[:, None] * b
    return m.points.copy()


def inside_roi(m: Measurement, lps: np.ndarray) -> np.ndarray:
    """Which LPS points (N, 3), projected on the ROI's plane, lie inside its outline."""
    lps = np.asarray(lps, dtype=np.float64).reshape(-1, 3)
    if m.kind == "ellipse":
        c, a, b = ellipse_axes(m)
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na == 0 or nb == 0:
            return np.zeros(len(lps), bool)
        d = lps - c
        return ((d @ a) / na**2) ** 2 + ((d @ b) / nb**2) ** 2 <= 1.0
    if m.kind == "polygon":
        xy = m.plane_xy(lps)
        return inside_polygon(xy[:, 0], xy[:, 1], m.plane_xy())
    raise ValueError(f"a {m.kind} measurement is not an ROI")


def roi_area_mm2(m: Measurement) -> float:
    if m.kind == "ellipse":
        _, a, b = ellipse_axes(m)
        return float(np.pi * np.linalg.norm(a) * np.linalg.norm(b))
    return polygon_area(m.plane_xy())


# ---------------------------------------------------------------------------------------------
# sampling a volume on an ROI's plane

def grid_axis(volume: Volume, direction, tol: float = 1e-4) -> int | None:
    """The index axis (0=i, 1=j, 2=k) that ``direction`` runs along alone, or None."""
    m = np.abs(np.linalg.inv(volume.affine[:3, :3]) @ np.asarray(direction, dtype=np.float64))
    m = m / m.max()
    axis = int(np.argmax(m))
    return axis if np.sort(m)[1] < tol else None


@dataclass
class RoiSamples:
    values: np.ndarray  # real values (HU for CT)
    lps: np.ndarray  # (N, 3) where they were taken
    method: str  # "voxels" (grid-aligned plane) or "trilinear" (oblique plane)
    sample_area_mm2: float  # area one sample stands for
    ijk: np.ndarray | None = None  # (N, 3) integer voxel indices, for "voxels"


def roi_samples(m: Measurement, volume: Volume) -> RoiSamples:
    """The voxels (aligned plane) or plane samples (oblique plane) inside an ROI: see the module doc."""
    ring = outline(m)
    axes = [grid_axis(volume, d) for d in (m.u, m.v, m.normal)]
    nk, nj, ni = volume.shape
    size = np.array([ni, nj, nk])
    if None not in axes and len(set(axes)) == 3:
        idx = volume.lps_to_index(ring)
        centre_idx = volume.lps_to_index(m.centre())
        lo = np.clip(np.floor(idx.min(axis=0)).astype(int), 0, size - 1)
        hi = np.clip(np.ceil(idx.max(axis=0)).astype(int), 0, size - 1)
        nax = axes[2]
        s = int(round(centre_idx[nax]))
        if not 0 <= s < size[nax]:
            return RoiSamples(np.zeros(0, np.float32), np.zeros((0, 3)), "voxels", 0.0, np.zeros((0, 3), int))
        lo[nax] = hi[nax] = s
        grids = np.meshgrid(*[np.arange(lo[d], hi[d] + 1) for d in range(3)], indexing="ij")
        ijk = np.stack([g.ravel() for g in grids], axis=-1)
        lps = volume.index_to_lps(ijk)
        keep = inside_roi(m, lps)
        ijk, lps = ijk[keep], lps[keep]
        raw = volume.array[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
        slope, intercept = volume.rescale
        values = raw.astype(np.float64) * slope + intercept
        sp = volume.spacing
        return RoiSamples(values, lps, "voxels", float(sp[axes[0]] * sp[axes[1]]), ijk)
    step = float(volume.spacing.min())
    xy = m.plane_xy(ring)
    xs = np.arange(np.floor(xy[:, 0].min() / step), np.ceil(xy[:, 0].max() / step) + 1) * step
    ys = np.arange(np.floor(xy[:, 1].min() / step), np.ceil(xy[:, 1].max() / step) + 1) * step
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    lps = m.points[0] + gx.ravel()[:, None] * m.u + gy.ravel()[:, None] * m.v
    keep = inside_roi(m, lps)
    idx = volume.lps_to_index(lps)
    keep &= np.all((idx >= -1e-6) & (idx <= size - 1 + 1e-6), axis=1)
    lps, idx = lps[keep], np.clip(idx[keep], 0, size - 1)
    slope, intercept = volume.rescale
    values = trilinear(volume.array, idx) * slope + intercept
    return RoiSamples(values, lps, "trilinear", step * step)


def trilinear(arr: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of ``arr[k, j, i]`` at continuous (i, j, k) points inside the grid."""
    ijk = np.asarray(ijk, dtype=np.float64)
    if len(ijk) == 0:
        return np.zeros(0)
    top = np.array(arr.shape[::-1]) - 1
    lo = np.clip(np.floor(ijk).astype(int), 0, top)
    f = ijk - lo
    hi = np.minimum(lo + 1, top)
    out = np.zeros(len(ijk))
    for di in (0, 1):
        i = hi[:, 0] if di else lo[:, 0]
        wi = f[:, 0] if di else 1 - f[:, 0]
        for dj in (0, 1):
            j = hi[:, 1] if dj else lo[:, 1]
            wj = f[:, 1] if dj else 1 - f[:, 1]
            for dk in (0, 1):
                k = hi[:, 2] if dk else lo[:, 2]
                wk = f[:, 2] if dk else 1 - f[:, 2]
                out += wi * wj * wk * arr[k, j, i]
    return out


def value_stats(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    return {"count": int(values.size), "mean": float(values.mean()), "sd": float(values.std()),
            "min": float(values.min()), "max": float(values.max())}


def roi_stats(m: Measurement, volume: Volume) -> dict:
    """Area (exact outline and sampled), voxel/sample count, mean, SD (population), min, max."""
    s = roi_samples(m, volume)
    out = {"area_mm2": roi_area_mm2(m), "sample_area_mm2": s.sample_area_mm2 * len(s.values)}
    out.update(value_stats(s.values))
    return out


def point_value(m: Measurement, volume: Volume) -> dict:
    idx = np.round(volume.lps_to_index(m.points[0])).astype(int)
    nk, nj, ni = volume.shape
    i, j, k = (int(x) for x in idx)
    if not (0 <= i < ni and 0 <= j < nj and 0 <= k < nk):
        return {}
    slope, intercept = volume.rescale
    return {"value": float(volume.array[k, j, i]) * slope + intercept}


def compute(m: Measurement, volume: Volume | None = None) -> dict:
    """Fill ``m.values`` (lengths in mm, angles in degrees, ROI statistics in the volume's units)."""
    p = m.points
    if m.kind == "length":
        values = {"length_mm": length_mm(p[0], p[1])}
    elif m.kind == "angle":
        values = {"angle_deg": angle_deg(p[0], p[1], p[2])}
    elif m.kind == "bidirectional":
        values = {"long_mm": length_mm(p[0], p[1]), "short_mm": length_mm(p[2], p[3])}
    elif m.kind == "point":
        values = point_value(m, volume) if volume is not None else {}
    else:
        values = roi_stats(m, volume) if volume is not None else {"area_mm2": roi_area_mm2(m)}
    m.values = values
    return values


def summary(m: Measurement, units: str = "") -> str:
    """One line for labels and tables, e.g. 'Length 23.4 mm' or 'Mean 41.2 HU, SD 8.1, area 3.2 cm2'."""
    v, u = m.values, (f" {units}" if units else "")
    if m.kind == "length":
        return f"{v.get('length_mm', 0):.1f} mm"
    if m.kind == "angle":
        return f"{v.get('angle_deg', 0):.1f}\N{DEGREE SIGN}"
    if m.kind == "bidirectional":
        return f"{v.get('long_mm', 0):.1f} x {v.get('short_mm', 0):.1f} mm"
    if m.kind == "point":
        return f"{v['value']:.0f}{u}" if "value" in v else "outside"
    if not v.get("count"):
        return f"area {v.get('area_mm2', 0) / 100:.2f} cm\N{SUPERSCRIPT TWO}"
    return (f"mean {v['mean']:.1f}{u}  SD {v['sd']:.1f}\nmin {v['min']:.0f}  max {v['max']:.0f}  "
            f"area {v['area_mm2'] / 100:.2f} cm\N{SUPERSCRIPT TWO}")


# ---------------------------------------------------------------------------------------------
# segment statistics (boolean mask + volume)

@dataclass
class SegmentStats:
    voxel_count: int
    volume_ml: float
    mean: float
    sd: float
    min: float
    max: float
    centroid_lps: np.ndarray
    longest_diameter_mm: float
    longest_diameter_points: np.ndarray  # (2, 3) LPS
    axial_long_mm: float
    axial_long_points: np.ndarray  # (2, 3)
    axial_short_mm: float
    axial_short_points: np.ndarray  # (2, 3)

    def to_dict(self) -> dict:
        out = {}
        for k, v in self.__dict__.items():
            out[k] = v.round(4).tolist() if isinstance(v, np.ndarray) else v
        return out


def _farthest_pair(points: np.ndarray) -> tuple[float, int, int]:
    """Largest distance between any two of ``points`` (N, D) and their indices (convex hull first)."""
    n = len(points)
    if n < 2:
        return 0.0, 0, 0
    cand = np.arange(n)
    if n > 8:
        try:
            from scipy.spatial import ConvexHull

            cand = ConvexHull(points).vertices
        except Exception:  # degenerate (flat) sets or no scipy: all points, in chunks
            cand = np.arange(n)
    pts = points[cand]
    best, bi, bj = -1.0, 0, 0
    for start in range(0, len(pts), 512):
        block = pts[start:start + 512]
        d2 = ((block[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
        flat = int(np.argmax(d2))
        r, c = divmod(flat, d2.shape[1])
        if d2[r, c] > best:
            best, bi, bj = float(d2[r, c]), int(cand[start + r]), int(cand[c])
    return math.sqrt(best), bi, bj


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with a 6-neighbour outside it (the mask itself where it is thin)."""
    inner = mask.copy()
    for axis in range(3):
        for shift in (1, -1):
            rolled = np.roll(mask, shift, axis=axis)
            edge = [slice(None)] * 3
            edge[axis] = 0 if shift == 1 else -1
            rolled[tuple(edge)] = False
            inner &= rolled
    return mask & ~inner


def segment_stats(mask: np.ndarray, volume: Volume) -> SegmentStats:
    """Volume, value statistics, centroid and diameters of a boolean mask on ``volume``'s grid.

    The longest 3D diameter is the largest distance between surface voxel centres (convex hull,
    then every pair of hull vertices).  The axial diameters are taken on the slices across the
    index axis nearest patient S-I: the long axis is the largest in-slice distance over all slices,
    the short axis the largest extent of that slice's voxels perpendicular to it, measured across
    bins one voxel wide along the long axis.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != volume.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the volume's {volume.shape}")
    kji = np.argwhere(mask)
    count = len(kji)
    zero2 = np.zeros((2, 3))
    if count == 0:
        return SegmentStats(0, 0.0, math.nan, math.nan, math.nan, math.nan, np.full(3, math.nan),
                            0.0, zero2, 0.0, zero2, 0.0, zero2)
    voxel_ml = abs(float(np.linalg.det(volume.affine[:3, :3]))) / 1000.0
    slope, intercept = volume.rescale
    values = volume.array[mask].astype(np.float64) * slope + intercept
    ijk = kji[:, ::-1].astype(np.float64)
    centroid = volume.index_to_lps(ijk.mean(axis=0))
    surf = np.argwhere(_surface(mask))[:, ::-1].astype(np.float64)
    surf_lps = volume.index_to_lps(surf)
    d3, a, b = _farthest_pair(surf_lps)
    # axial: slices across the index axis nearest to S-I
    inv = np.linalg.inv(volume.affine[:3, :3])
    axis = int(np.argmax(np.abs(inv @ np.array([0.0, 0.0, 1.0]))))
    all_lps = volume.index_to_lps(ijk)
    best = (-1.0, None, None, None)
    for s in np.unique(surf[:, axis]):
        sel = surf[:, axis] == s
        d, i, j = _farthest_pair(_in_plane(surf_lps[sel]))
        if d > best[0]:
            best = (d, surf_lps[sel][i], surf_lps[sel][j], s)
    long_mm, la, lb, s = best
    short_mm, sp = _short_axis(all_lps[ijk[:, axis] == s], la, lb, float(volume.spacing.min()))
    return SegmentStats(count, count * voxel_ml, float(values.mean()), float(values.std()), float(values.min()),
                        float(values.max()), centroid, d3, np.stack([surf_lps[a], surf_lps[b]]),
                        long_mm, np.stack([la, lb]), short_mm, sp)


def _in_plane(points: np.ndarray) -> np.ndarray:
    """Points of one slice in 2D coordinates of their own plane (distances kept)."""
    if len(points) < 3:
        return points
    c = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:2].T


def _short_axis(points: np.ndarray, a, b, bin_mm: float) -> tuple[float, np.ndarray]:
    d = _unit(b - a)
    if len(points) < 2 or np.linalg.norm(b - a) == 0:
        return 0.0, np.stack([a, a])
    c = points - a
    # the in-plane perpendicular: the slice's normal from its spread, crossed with d
    _, _, vt = np.linalg.svd(points - points.mean(axis=0), full_matrices=False)
    n = vt[2] if len(points) >= 3 else np.array([0.0, 0.0, 1.0])
    e = _unit(np.cross(n, d))
    t, s = c @ d, c @ e
    bins = np.floor(t / bin_mm).astype(int)
    best, ends = 0.0, np.stack([a, a])
    for bval in np.unique(bins):
        sel = bins == bval
        lo, hi = s[sel].min(), s[sel].max()
        if hi - lo > best:
            tm = float(t[sel].mean())
            best, ends = float(hi - lo), np.stack([a + tm * d + lo * e, a + tm * d + hi * e])
    return best, ends
