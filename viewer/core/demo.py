"""The built-in demo study: a procedurally generated chest CT phantom.

``demo_volume()`` returns a ``Volume`` that the viewer opens when it is started without a study, and
that tests use as a fixture.  It is drawn from simple shapes in realistic Hounsfield units: body wall,
lungs with airways and branching vessels, heart and great vessels, spine, ribs, sternum, clavicles,
scapulae, upper abdomen, and a handful of lung nodules whose ground truth is ``DEMO_NODULES``.

Everything is deterministic.  Generation takes a fraction of a second (each structure touches only
its bounding box); the result is also cached in the user cache directory as ``demo-<version>.npy``
(set ``HOUNSFIELD_NO_CACHE=1`` to bypass that file) and in-process.  Bump ``DEMO_VERSION`` whenever
the phantom changes, so that stale cache files are not read.

Geometry: a standard axial stack (direction = identity, orientation ``LPS``): +i points to the
patient's left, +j posterior, +k superior; the volume's centre is near LPS (0, 0, 0).  Below, all
coordinates are LPS millimetres: x < 0 is the patient's right, y < 0 anterior, z > 0 superior.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from viewer.core.volume import SourceInfo, Volume, affine_from
from viewer.paths import cache_dir

__all__ = ["DEMO_NODULES", "DEMO_SHAPE", "DEMO_SPACING", "DEMO_VERSION", "DemoNodule", "demo_volume",
           "generate_demo_array"]

DEMO_VERSION = 1  # bump whenever the phantom's pixels change (names the cache file)
DEMO_SHAPE = (120, 256, 256)  # (k, j, i)
DEMO_SPACING = (1.4, 1.4, 2.5)  # (si, sj, sk) mm
_ORIGIN = tuple(-(n - 1) / 2 * s for n, s in zip(DEMO_SHAPE[::-1], DEMO_SPACING))  # centre at (0, 0, 0)
_NO_CACHE_ENV = "HOUNSFIELD_NO_CACHE"
_SEED = 20240611
_EDGE = 1.0  # mm over which shape edges blend into their surroundings (partial volume)


@dataclass(frozen=True)
class DemoNodule:
    """Ground truth for one nodule drawn in the demo phantom.

    ``diameter_mm`` is the whole nodule (for a part-solid one, its ground-glass halo);
    ``solid_diameter_mm`` is the solid part (equal to ``diameter_mm`` for a solid nodule).
    """

    center_lps: tuple[float, float, float]
    diameter_mm: float
    kind: Literal["solid", "part-solid"]
    solid_diameter_mm: float | None = None

    @property
    def solid_diameter(self) -> float:
        return self.diameter_mm if self.solid_diameter_mm is None else self.solid_diameter_mm


DEMO_NODULES: tuple[DemoNodule, ...] = (
    DemoNodule((-60.0, -20.0, 95.0), 7.0, "solid"),           # right upper lobe
    DemoNodule((75.0, -38.0, 62.0), 11.0, "solid"),           # left upper lobe
    DemoNodule((-92.0, 42.0, -38.0), 15.0, "solid"),          # right lower lobe
    DemoNodule((100.0, 25.0, -22.0), 5.0, "solid"),           # left lower lobe
    DemoNodule((-88.0, -36.0, 28.0), 18.0, "part-solid", 7.0),  # right upper lobe, anterior
    DemoNodule((62.0, 52.0, 8.0), 13.0, "part-solid", 5.0),   # left lower lobe, superior segment
)

_SOLID_HU, _GGO_HU = 40.0, -500.0


def _uid(name: str) -> str:
    """A fixed UID under the 2.25 (UUID) root, derived from a name."""
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://hounsfield.invalid/demo/{name}").int)


_STUDY_UID = _uid("study")
_SERIES_UID = _uid("series")


# ---------------------------------------------------------------------------------------------------
# public entry points

def demo_volume() -> Volume:
    """The demo chest CT as a new ``Volume`` (its array is a private copy; mutate it freely)."""
    use_disk = os.environ.get(_NO_CACHE_ENV, "").strip() in ("", "0")
    array = _demo_array(use_disk).copy()
    source = SourceInfo(
        patient_name="Demo^Phantom",
        patient_id="HOUNSFIELD-DEMO",
        study_instance_uid=_STUDY_UID,
        study_description="Hounsfield demo",
        series_instance_uid=_SERIES_UID,
        series_number=1,
        series_description="Chest CT phantom",
        frame_of_reference_uid=_uid("frame-of-reference"),
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
        sop_instance_uids=tuple(f"{_SERIES_UID}.{k + 1}" for k in range(DEMO_SHAPE[0])),
        manufacturer="Hounsfield",
    )
    affine = affine_from(DEMO_SPACING, _ORIGIN, np.eye(3))
    return Volume(array, affine, modality="CT", units="HU", rescale=(1.0, 0.0), source=source,
                  window=(40.0, 400.0))


def generate_demo_array() -> np.ndarray:
    """Draw the phantom: an int16 HU array indexed [k, j, i], bypassing every cache."""
    c = _Canvas()
    _body(c)
    _abdomen(c)
    _lungs(c)
    _mediastinum(c)
    _bronchovascular_trees(c)
    _spine(c)
    _ribs(c)
    _other_bones(c)
    _nodules(c)
    _noise(c)
    return c.vol


# ---------------------------------------------------------------------------------------------------
# caching

def _cache_path() -> Path:
    return cache_dir() / f"demo-{DEMO_VERSION}.npy"


@functools.lru_cache(maxsize=2)
def _demo_array(use_disk: bool) -> np.ndarray:
    if not use_disk:
        return generate_demo_array()
    path = _cache_path()
    try:
        array = np.load(path, allow_pickle=False)
        if array.shape == DEMO_SHAPE and array.dtype == np.int16:
            return array
    except (OSError, ValueError, EOFError):
        pass
    array = generate_demo_array()
    _write_atomically(path, array)
    return array


def _write_atomically(path: Path, array: np.ndarray) -> None:
    """Save ``array`` to ``path`` via a temporary file and a rename; a failure only skips the cache."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".demo-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------------
# drawing machinery

class _Canvas:
    """The int16 volume plus its 1D voxel-centre coordinates (mm) and region-limited drawing."""

    def __init__(self) -> None:
        nk, nj, ni = DEMO_SHAPE
        self.vol = np.empty(DEMO_SHAPE, np.int16)
        self.x = (_ORIGIN[0] + DEMO_SPACING[0] * np.arange(ni)).astype(np.float32)
        self.y = (_ORIGIN[1] + DEMO_SPACING[1] * np.arange(nj)).astype(np.float32)
        self.z = (_ORIGIN[2] + DEMO_SPACING[2] * np.arange(nk)).astype(np.float32)
        self.x2, self.y2 = self.x[None, :], self.y[:, None]  # in-plane (j, i) grids by broadcasting

    def box(self, lo, hi):
        """Slices and broadcastable x, y, z coordinates of the voxels inside [lo, hi] (mm)."""
        spans = []
        for axis, coords in enumerate((self.x, self.y, self.z)):
            s, o = DEMO_SPACING[axis], _ORIGIN[axis]
            a = max(0, math.ceil((lo[axis] - o) / s))
            b = min(len(coords), math.floor((hi[axis] - o) / s) + 1)
            if a >= b:
                return None
            spans.append(slice(a, b))
        si, sj, sk = spans
        return ((sk, sj, si), self.x[None, None, si], self.y[None, sj, None], self.z[sk, None, None])

    def blend(self, sl, w, value, mode: str = "over") -> None:
        """Mix ``value`` into the region with weights ``w`` (0..1).

        mode "over" paints over anything, "lung" changes only aerated voxels (< -300 HU), "soft"
        spares contrast-filled vessels and bone (>= 100 HU), and "max" only raises values (so that a
        ground-glass halo keeps the vessels that run through it).
        """
        old = self.vol[sl].astype(np.float32)
        new = old + (np.float32(value) - old) * w
        if mode == "lung":
            new = np.where(old < -300, new, old)
        elif mode == "soft":
            new = np.where(old < 100, new, old)
        elif mode == "max":
            np.maximum(new, old, out=new)
        self.vol[sl] = np.rint(new)

    def tube(self, p0, p1, r0, r1, value, mode: str = "over") -> None:
        """A straight tube (capsule) from p0 to p1 whose radius tapers from r0 to r1."""
        p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
        pad = max(r0, r1) + _EDGE
        region = self.box(np.minimum(p0, p1) - pad, np.maximum(p0, p1) + pad)
        if region is None:
            return
        sl, x, y, z = region
        v = p1 - p0
        vv = max(float(v @ v), 1e-9)
        dx, dy, dz = x - np.float32(p0[0]), y - np.float32(p0[1]), z - np.float32(p0[2])
        s = (dx * np.float32(v[0]) + dy * np.float32(v[1])) + dz * np.float32(v[2])  # (p - p0) . v
        d2 = (dx * dx + dy * dy) + dz * dz  # |p - p0|^2
        t = np.clip(s * np.float32(1 / vv), 0, 1)  # where along the axis the closest point lies
        d2 -= t * (2 * s - t * np.float32(vv))  # squared distance to that point
        dist = np.sqrt(np.maximum(d2, 0, out=d2), out=d2)
        w = t * np.float32((r1 - r0) / _EDGE)
        w += np.float32(r0 / _EDGE + 0.5)
        w -= dist * np.float32(1 / _EDGE)
        np.clip(w, 0, 1, out=w)
        self.blend(sl, w, value, mode)

    def ellipsoid(self, center, radii, value, rotation=None, mode: str = "over") -> None:
        """An ellipsoid; ``rotation``'s columns are its axes in LPS (identity when None)."""
        c = np.asarray(center, np.float64)
        radii = np.asarray(radii, np.float64)
        rot = np.eye(3) if rotation is None else np.asarray(rotation, np.float64)
        half = np.sqrt((rot * radii[None, :]) ** 2 @ np.ones(3)) + _EDGE  # axis-aligned half extents
        region = self.box(c - half, c + half)
        if region is None:
            return
        sl, x, y, z = region
        d = (x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2]))
        q = None
        for axis in range(3):
            u = sum(d[n] * np.float32(rot[n, axis] / radii[axis]) for n in range(3) if rot[n, axis] != 0)
            q = u * u if q is None else q + u * u
        # (1 - |u|) * smallest radius: a signed distance, exact for spheres, close enough otherwise
        w = (np.float32(1) - np.sqrt(q)) * np.float32(radii.min() / _EDGE) + np.float32(0.5)
        np.clip(w, 0, 1, out=w)
        self.blend(sl, w, value, mode)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------------------------------
# anatomy: shapes shared by several structures (all take broadcastable LPS coordinates in mm)

_BODY_A, _BODY_B, _BODY_P = 165.0, 112.0, 2.3  # superellipse half width, half depth, exponent
_CAV_A, _CAV_B = 130.0, 84.0  # thoracic cavity (pleural surface) ellipse
_RIB_A, _RIB_B = 137.0, 91.0  # centre line of the ribs
_SPINE_Y = 50.0  # vertebral body centre (y); the canal is behind it at y = 78
_PARASPINAL = ((-35.0, 90.0), (35.0, 90.0), 25.0, 14.0)


def _superellipse(x, y, a, b, p=_BODY_P):
    return (np.abs(x) / a) ** p + (np.abs(y) / b) ** p


def _dome(x, y):
    """z (mm) of the diaphragm surface: the right hemidiaphragm sits higher than the left."""
    ky = np.where(y > -5, 25.0, 12.0)
    back = ((y + 5) / 50) ** 2 * ky
    right = -50 - ((x + 65) / 45) ** 2 * 15 - back
    left = -62 - ((x - 65) / 45) ** 2 * 15 - back
    return np.maximum(right, left)


def _paraspinal(x, y):
    (lx, ly), (rx, ry), a, b = _PARASPINAL
    return (((x - lx) / a) ** 2 + ((y - ly) / b) ** 2 < 1) | (((x - rx) / a) ** 2 + ((y - ry) / b) ** 2 < 1)


def _cavity_scale(z):
    """The thorax is a truncated cone: its cross-section narrows above z = +30 mm."""
    return 1 - 0.2 * np.clip((np.asarray(z, np.float32) - 30) / 120, 0, 1)


def _mediastinum_2d(x, y):
    """In-plane footprint of the central mediastinum, spine and paravertebral muscles (never lung)."""
    central = np.abs(x) < 12 + 8 * np.clip((y + 60) / 40, 0, 1)  # narrower in front
    return central | ((x / 34) ** 2 + ((y - 62) / 30) ** 2 < 1) | _paraspinal(x, y)


def _lung_inside(x, y, z):
    """True inside either lung (works on grids by broadcasting and on arrays of points)."""
    s = _cavity_scale(z)
    cavity = (x / _CAV_A) ** 2 + (y / _CAV_B) ** 2 < s * s
    apex_z = np.where(x < 0, 138.0, 135.0)
    # above z = 40 the lungs taper to their apices, at (+-55, 20) (this ellipse holds the cavity at 40)
    q = ((np.abs(x) - 55) / 85) ** 2 + ((y - 20) / 110) ** 2
    s2 = (1 - ((np.maximum(z, 40) - 40) / (apex_z - 40)) ** 2) ** 2
    great_vessels = np.abs(x) < 14 + 13 * np.clip((z - 35) / 35, 0, 1)
    vessels = great_vessels | (((x - 27) ** 2 + (y - 34) ** 2 < 17**2) & (z < 75))  # + descending aorta
    return cavity & ~_mediastinum_2d(x, y) & ~vessels & ((q < s2) | (z <= 40)) & (z > _dome(x, y) + 0.5)


def _heart_axes() -> np.ndarray:
    """Columns: the heart's long axis (towards the patient's left, front and down) and two others."""
    ang = math.radians(35)
    u = _unit((math.cos(ang), -math.sin(ang), -0.35))
    v = _unit(np.cross((0, 0, 1), u))
    return np.column_stack((u, v, np.cross(u, v)))


_HEART_CENTRE, _HEART_RADII = (18.0, -28.0, -30.0), (60.0, 42.0, 44.0)


def _lung_point(p) -> np.ndarray:
    """For (n, 3) points: inside a lung and clear of the heart (which is drawn over the lungs)."""
    p = np.asarray(p, np.float64)
    local = (p - _HEART_CENTRE) @ _heart_axes() / (np.asarray(_HEART_RADII) + 3)
    return _lung_inside(p[:, 0], p[:, 1], p[:, 2]) & ((local**2).sum(axis=1) > 1)


# ---------------------------------------------------------------------------------------------------
# anatomy: structures, drawn in order (later ones paint over earlier ones)

def _body(c: _Canvas) -> None:
    """Air, skin, subcutaneous fat, chest-wall muscle, and fat filling the thoracic cavity."""
    x, y = c.x2, c.y2 - np.float32(3)  # body centre slightly posterior
    plane = np.full((DEMO_SHAPE[1], DEMO_SHAPE[2]), -1000, np.int16)
    plane[_superellipse(x, y, _BODY_A, _BODY_B) < 1] = 30  # skin
    plane[_superellipse(x, y, _BODY_A - 2, _BODY_B - 2) < 1] = -100  # subcutaneous fat
    plane[_superellipse(x, y, _BODY_A - 16, _BODY_B - 13) < 1] = 45  # muscle
    c.vol[:] = plane
    sl, x, y, z = c.box((-_CAV_A, -_CAV_B, -1000), (_CAV_A, _CAV_B, 1000))
    cavity = (x / _CAV_A) ** 2 + (y / _CAV_B) ** 2 < _cavity_scale(z) ** 2
    c.vol[sl][cavity] = -90  # mediastinal and extrapleural fat
    c.vol[:, _paraspinal(c.x2, c.y2)] = 50


def _abdomen(c: _Canvas) -> None:
    """Diaphragm, liver, spleen and stomach (with a gas bubble) below the domes."""
    region = c.box((-_CAV_A, -_CAV_B, -1000), (_CAV_A, _CAV_B, -45))
    if region is None:
        return
    sl, x, y, z = region
    x2, y2 = x[0], y[0]
    dome = _dome(x2, y2).astype(np.float32)
    organs = np.full(dome.shape, -90, np.int16)
    organs[x2 < 10 - 0.4 * y2] = 60  # liver, its left lobe reaching across anteriorly
    organs[(x2 >= 10 - 0.4 * y2) & (y2 > 10)] = 48  # spleen
    inside = (x2 / _CAV_A) ** 2 + (y2 / _CAV_B) ** 2 < 1
    below = (z < dome) & inside
    sub = c.vol[sl]
    sub[below] = 42  # diaphragm muscle
    organ = below & (z < dome - 4)
    sub[organ] = np.broadcast_to(organs, sub.shape)[organ]
    # stomach under the left dome: wall, fluid, and gas on top of the fluid (anterior: the patient is supine)
    q = ((x - 60) / 40) ** 2 + ((y + 10) / 38) ** 2 + ((z + 102) / 40) ** 2
    sub[organ & (q < 1)] = 40
    lumen = organ & (q < 0.81)
    sub[lumen] = 15
    sub[lumen & (y < -22)] = -1000


def _smooth_noise_2d(rng, shape, sigma_px: float) -> np.ndarray:
    """Band-limited 2D noise with unit standard deviation (Gaussian filter applied via FFT)."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    field = np.fft.irfft2(np.fft.rfft2(white) * np.exp(-2 * (np.pi * sigma_px) ** 2 * (fx**2 + fy**2)),
                          s=shape)
    return field / field.std()


def _lungs(c: _Canvas) -> None:
    """Aerated lung (~-850 HU, denser posteriorly) with a faint parenchymal texture."""
    region = c.box((-_CAV_A, -_CAV_B, -140), (_CAV_A, _CAV_B, 140))
    sl, x, y, z = region
    inside = _lung_inside(x, y, z)
    # texture: each slice reads the same 2D field at its own random offset (cheap, and uncorrelated
    # from slice to slice, which suits 2.5 mm slices)
    rng = np.random.default_rng(_SEED + 1)
    nk, nj, ni = DEMO_SHAPE
    tex = (_smooth_noise_2d(rng, (nj + 64, ni + 64), 1.5) * 12).astype(np.int16)
    offsets = rng.integers(0, 64, (nk, 2))
    (k0, k1), (j0, j1), (i0, i1) = ((d.start, d.stop) for d in sl)
    block = np.stack([tex[oj + j0:oj + j1, oi + i0:oi + i1] for oj, oi in offsets[k0:k1]])
    density = (-847 + 28 * (c.y2 / _CAV_B)).astype(np.int16)  # dependent (posterior) lung is denser
    lung = block + density[sl[1]]
    sub = c.vol[sl]
    sub[inside] = lung[inside]


def _mediastinum(c: _Canvas) -> None:
    """Heart with contrast-filled chambers, aorta, pulmonary trunk, caval veins and oesophagus."""
    rot = _heart_axes()
    u, v = rot[:, 0], rot[:, 1]
    centre = _HEART_CENTRE
    c.ellipsoid(centre, _HEART_RADII, 45, rot)  # myocardium
    c.ellipsoid(centre, (49, 32, 34), 170, rot)  # blood pool (contrast)
    c.tube(np.add(centre, -40 * u + 4 * v), np.add(centre, 30 * u + 4 * v), 4.5, 4.5, 45)  # septum
    c.ellipsoid((6.0, 12.0, -10.0), (26, 14, 18), 170)  # left atrium, behind
    # aorta: root, ascending, arch (left of the trachea, over the left main bronchus), descending
    aorta = [(2, -22, -8), (-16, -38, 52), (-8, -32, 70), (4, -24, 80), (20, -10, 80), (28, 10, 72),
             (28, 32, 56), (28, 36, 10), (22, 38, -70), (8, 42, -150)]
    radii = [14, 15, 14, 13, 12, 12, 12, 12, 11, 11]
    for p0, p1, r0, r1 in zip(aorta, aorta[1:], radii, radii[1:]):
        c.tube(p0, p1, r0, r1, 190)
    for p0, p1, r in (((-4, -28, 80), (-28, -20, 155), 6.5),  # brachiocephalic trunk
                      ((8, -20, 84), (10, -15, 155), 4.5),  # left common carotid
                      ((18, -10, 84), (24, 0, 155), 5.0)):  # left subclavian
        c.tube(p0, p1, r, r, 190)
    # pulmonary trunk and arteries (the right one passes behind the ascending aorta)
    for p0, p1, r in (((22, -52, -2), (18, -36, 30), 14), ((18, -36, 30), (36, -14, 40), 11),
                      ((36, -14, 40), (48, 8, 30), 10), ((18, -36, 30), (2, -12, 33), 11),
                      ((2, -12, 33), (-40, -5, 25), 10)):
        c.tube(p0, p1, r, r, 170)
    # veins: superior vena cava with the left brachiocephalic vein, inferior vena cava
    c.tube((-36, -26, 5), (-34, -22, 155), 10, 10, 120)
    c.tube((55, -36, 118), (-30, -24, 108), 6, 6, 120)
    c.tube((-20, 8, -150), (-16, 2, -55), 13, 13, 90)
    # oesophagus with a little air in its lumen
    eso = [(4, 20, 155), (5, 24, 20), (14, 18, -80), (35, 5, -110)]
    for p0, p1 in zip(eso, eso[1:]):
        c.tube(p0, p1, 8, 8, 40)
    c.tube(eso[0], eso[1], 2, 2, -1000)


# --- bronchovascular trees -------------------------------------------------------------------------

_CARINA = (0.0, 8.0, 40.0)
_RIGHT_MAIN = (-26.0, 10.0, 20.0)
_LEFT_MAIN = (36.0, 14.0, 8.0)
_INTERMEDIUS = (-32.0, 12.0, -2.0)
_MIN_VESSEL_RADIUS = 0.65
_OUTWARD = 0.35
_RPA_END, _LPA_END = (-40.0, -5.0, 25.0), (48.0, 8.0, 30.0)
# lobes: bronchus origin, direction, length, radius, where its artery comes from, segmental branches
_LOBES = (
    (_RIGHT_MAIN, (-0.7, -0.1, 0.7), 14, 4.5, _RPA_END, 8),  # right upper
    (_INTERMEDIUS, (-0.45, -0.8, -0.4), 16, 3.5, _RPA_END, 3),  # right middle
    (_INTERMEDIUS, (-0.3, 0.45, -0.85), 14, 4.5, _RPA_END, 8),  # right lower
    (_LEFT_MAIN, (0.45, -0.45, 0.75), 14, 4.5, _LPA_END, 8),  # left upper
    (_LEFT_MAIN, (0.4, -0.85, -0.35), 16, 3.5, _LPA_END, 3),  # lingula
    (_LEFT_MAIN, (0.3, 0.45, -0.85), 14, 4.5, _LPA_END, 8),  # left lower
)
# pulmonary veins: entry into the left atrium, hilar branch point, lobes drained, branches
_VEINS = (
    ((-8, 8, -4), (-46, -8, 4), (0, 1), 5),
    ((-8, 14, -20), (-44, 16, -30), (2,), 5),
    ((20, 6, -4), (54, -8, 8), (3, 4), 5),
    ((20, 14, -20), (52, 20, -30), (5,), 5),
)


def _lobe(x, y, z):
    """Lobe number (0-2 right upper, middle, lower; 3-5 left upper, lingula, lower) of lung points."""
    lower = z < -10 + 0.75 * y  # behind and below the oblique fissure
    right = np.where(lower, 2, np.where(z > 15, 0, 1))  # horizontal fissure
    left = np.where(lower, 5, np.where((z < -5) & (y < -10), 4, 3))
    return np.where(x < 0, right, left)


def _segment_targets(rng, lobes, counts):
    """Spread-out points inside the given lobes (farthest-point sampling): where branches head."""
    pts = rng.uniform((-_CAV_A, -_CAV_B, -140), (_CAV_A, _CAV_B, 140), (6000, 3))
    pts = pts[_lung_point(pts)]
    pts = pts[np.isin(_lobe(pts[:, 0], pts[:, 1], pts[:, 2]), lobes)]
    chosen = [pts[0]]
    dist = np.linalg.norm(pts - pts[0], axis=1)
    while len(chosen) < counts:
        chosen.append(pts[int(np.argmax(dist))])
        dist = np.minimum(dist, np.linalg.norm(pts - chosen[-1], axis=1))
    return chosen


def _units(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _grow_trees(rng, roots) -> dict[str, np.ndarray]:
    """Grow vessel trees inside the lungs, one generation at a time for all trees together.

    ``roots`` holds (start, direction, radius, artery_start or None) per tree.  Each node ends a
    segment whose trunk goes on (slightly turned) and gives off two thinner branches.  When
    ``artery_start`` is given the tree is a bronchus with its artery running beside it.
    Returns arrays over all segments: p0, p1 (ends), r0, r1 (radii), depth, bundle (a bronchus with
    its artery, or a lone vessel) and a0, a1: the vessel's ends (beside the bronchus in a bundle).
    """
    p0 = np.array([r[0] for r in roots], np.float64)
    direction = _units(np.array([r[1] for r in roots], np.float64))
    radius = np.array([r[2] for r in roots], np.float64)
    a0 = np.array([p if p is not None else s for s, _d, _r, p in roots], np.float64)
    bundle = np.array([p is not None for *_x, p in roots], np.float64)
    bias = direction.copy()
    hilum = p0.copy()
    side = _units(np.cross(direction, (0.0, 0.0, 1.0)) + 1e-3)
    names = ("p0", "p1", "r0", "r1", "depth", "bundle", "a0", "a1")
    segments = {name: [] for name in names}
    for depth in range(20):
        keep = radius >= _MIN_VESSEL_RADIUS
        p0, direction, radius, a0, bundle, bias, side, hilum = (
            v[keep] for v in (p0, direction, radius, a0, bundle, bias, side, hilum))
        if not len(p0):
            break
        length = (4 + 5 * radius)[:, None]
        p1 = np.full_like(p0, np.nan)
        for scale in (0.35, 0.6, 1.0):  # the longest step that stays inside the lung
            trial = p0 + direction * length * scale
            mid = (p0 + trial) / 2
            ok = _lung_point(trial) & (_lung_point(mid) | (depth == 0))
            p1[ok] = trial[ok]
        keep = ~np.isnan(p1[:, 0])
        p0, p1, direction, radius, a0, bundle, bias, side, hilum = (
            v[keep] for v in (p0, p1, direction, radius, a0, bundle, bias, side, hilum))
        end_radius = radius * 0.97
        off = _units(np.cross(p1 - p0, side) + 1e-6) * (radius + 1.8)[:, None] * 0.95 * bundle[:, None]
        a1 = p1 + off
        if depth == 0:
            a0 = np.where(bundle[:, None] > 0, a0, p0)
        values = (p0, p1, radius, end_radius, np.full(len(p0), depth), bundle > 0, a0, a1)
        for name, value in zip(names, values):
            segments[name].append(value)
        n = len(p0)
        axis = _units(np.cross(direction, rng.standard_normal((n, 3))))
        other = np.cross(direction, axis)
        turns = ((axis, rng.uniform(4, 16, n), 0.92), (axis, -rng.uniform(35, 60, n), 0.62),
                 (other, rng.choice((-1, 1), n) * rng.uniform(40, 70, n), 0.52))
        pull = 0.15 * bias + _OUTWARD * _units(p1 - hilum + 1e-6)  # spread away from the hilum
        children = []
        for about, degrees, ratio in turns:
            angle = np.radians(degrees)[:, None]
            turned = direction * np.cos(angle) + np.cross(about, direction) * np.sin(angle)
            children.append((p1, _units(turned + pull), end_radius * ratio, a1, bundle, bias, side, hilum))
        p0, direction, radius, a0, bundle, bias, side, hilum = (np.concatenate(v) for v in zip(*children))
    return {name: np.concatenate(parts) for name, parts in segments.items()}


def _vessel_hu(r: float) -> float:
    """Contrast in big hilar vessels, partial-volume soft tissue (~40 HU) in the small ones."""
    return 40 + 130 * min(1.0, max(0.0, (r - 1.5) / 4.0))


def _bronchovascular_trees(c: _Canvas) -> None:
    """Airways, the pulmonary arteries running beside them, and the pulmonary veins."""
    rng = np.random.default_rng(_SEED)
    walls, lumens, vessels = [], [], []
    # central airways: trachea, main bronchi, bronchus intermedius
    for p0, p1, r in (((0, -2, 160), _CARINA, 9.0), (_CARINA, _RIGHT_MAIN, 7.0),
                      (_CARINA, _LEFT_MAIN, 6.0), (_RIGHT_MAIN, _INTERMEDIUS, 5.5)):
        walls.append((p0, p1, r + 2, r + 2, "over"))
        lumens.append((p0, p1, r, r, "over"))
    roots = []
    for number, (origin, direction, length, radius, artery, count) in enumerate(_LOBES):
        d = _unit(direction)
        end = np.add(origin, d * length)
        off = _unit(np.cross(d, np.cross(d, (0, 0, 1)))) * (radius + 2.5)  # artery beside the bronchus
        vessels.append((np.asarray(artery, np.float64), end + off, radius, radius))
        walls.append((origin, end, radius * 1.25 + 0.5, radius * 1.25 + 0.5, "over"))
        lumens.append((origin, end, radius, radius, "over"))
        for target in _segment_targets(rng, [number], count):
            roots.append((end, _unit(target - end), 3.0, end + off))
    for atrium, branch, lobes, count in _VEINS:
        c.tube(atrium, branch, 6, 5.5, 170)
        for target in _segment_targets(rng, list(lobes), count):
            roots.append((branch, _unit(target - np.asarray(branch)), 3.0, None))
    for a0, a1, r0, r1 in vessels:
        c.tube(a0, a1, r0, r1, _vessel_hu(r0), "soft")
    tree = _grow_trees(rng, roots)
    for n in np.nonzero(tree["bundle"] & (tree["r0"] >= 2.0))[0]:  # smaller bronchi are not seen on CT
        p0, p1, r0, r1 = tree["p0"][n], tree["p1"][n], tree["r0"][n], tree["r1"][n]
        walls.append((p0, p1, r0 * 1.25 + 0.5, r1 * 1.25 + 0.5, "soft"))
        lumens.append((p0, p1, r0, r1, "soft"))
    r0, r1 = tree["r0"] * 0.95, tree["r1"] * 0.95
    thin = r0 <= _THIN
    for n in np.nonzero(~thin)[0]:  # the first segment of a tree may start outside the lung
        mode = "soft" if tree["depth"][n] == 0 else "lung"
        c.tube(tree["a0"][n], tree["a1"][n], r0[n], r1[n], _vessel_hu(r0[n]), mode)
    _thin_vessels(c, tree["a0"][thin], tree["a1"][thin], r0[thin], r1[thin], _vessel_hu(_THIN))
    for p0, p1, r0, r1, mode in walls:
        c.tube(p0, p1, r0, r1, 30, mode)
    for p0, p1, r0, r1, mode in lumens:
        c.tube(p0, p1, r0, r1, -1000, mode)


_THIN = 1.5  # mm: vessels up to this radius are drawn in one batch


def _thin_vessels(c: _Canvas, p0, p1, r0, r1, value: float) -> None:
    """Draw many thin tubes at once (into aerated lung only).

    Each tube is cut into pieces of at most 1.4 mm; every piece is evaluated on the 5 x 5 x 3 voxels
    around its midpoint (enough for radii up to ``_THIN``), and a voxel takes its largest weight.
    """
    if not len(p0):
        return
    count = np.maximum(1, np.ceil(np.linalg.norm(p1 - p0, axis=1) / 1.4)).astype(np.int64)
    seg = np.repeat(np.arange(len(p0)), count)
    step = np.arange(seg.size) - np.repeat(np.cumsum(count) - count, count)
    t0, t1 = step / count[seg], (step + 1) / count[seg]
    a = p0[seg] + (p1 - p0)[seg] * t0[:, None]
    b = p0[seg] + (p1 - p0)[seg] * t1[:, None]
    radius = (r0[seg] + (r1 - r0)[seg] * (t0 + t1) / 2).astype(np.float32)
    # evaluate the 5 x 5 x 3 stencil around each piece, in chunks that stay in the CPU cache
    stencil = [o.ravel() for o in np.meshgrid(np.arange(-2, 3), np.arange(-2, 3), np.arange(-1, 2),
                                              indexing="ij")]
    strides = (1, DEMO_SHAPE[2], DEMO_SHAPE[1] * DEMO_SHAPE[2])
    flats, weights = [], []
    for start in range(0, len(a), 4096):
        pa, pb, pr = a[start:start + 4096], b[start:start + 4096], radius[start:start + 4096, None]
        flat = np.zeros((len(pa), stencil[0].size), np.int32)
        rel, ab = [], []
        for axis in range(3):
            o, spacing, n = _ORIGIN[axis], DEMO_SPACING[axis], DEMO_SHAPE[2 - axis]
            centre = np.rint(((pa[:, axis] + pb[:, axis]) / 2 - o) / spacing).astype(np.int32)
            index = np.clip(centre[:, None] + stencil[axis][None, :].astype(np.int32), 0, n - 1)
            flat += index * np.int32(strides[axis])
            offset = index.astype(np.float32)
            offset *= np.float32(spacing)
            offset += (o - pa[:, axis, None]).astype(np.float32)
            rel.append(offset)  # stencil voxel minus piece start, mm
            ab.append((pb[:, axis] - pa[:, axis]).astype(np.float32)[:, None])
        t = rel[0] * ab[0]
        t += rel[1] * ab[1]
        t += rel[2] * ab[2]
        t /= np.maximum(ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2], np.float32(1e-6))
        np.clip(t, 0, 1, out=t)
        dist2 = np.zeros_like(t)
        for r, v in zip(rel, ab):
            r -= t * v
            r *= r
            dist2 += r
        w = pr - np.sqrt(dist2, out=dist2)
        w *= np.float32(1 / _EDGE)
        w += np.float32(0.5)
        keep = w > 0
        flats.append(flat[keep])
        weights.append(np.minimum(w[keep], 1))
    flat, w = np.concatenate(flats), np.concatenate(weights)
    order = np.argsort(flat, kind="stable")
    flat, w = flat[order], w[order]
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    flat, w = flat[starts], np.maximum.reduceat(w, starts)
    vol = c.vol.reshape(-1)
    old = vol[flat].astype(np.float32)
    new = np.where(old < -300, old + (np.float32(value) - old) * w, old)
    vol[flat] = np.rint(new)


# --- bones -----------------------------------------------------------------------------------------

_LEVEL_HEIGHT = 24.0  # mm per thoracic vertebra (body + disc)
_T1_Z = 135.0


def _spine(c: _Canvas) -> None:
    """Vertebral bodies (cortex, cancellous bone, endplates), discs and posterior elements."""
    region = c.box((-48, _SPINE_Y - 22, -1000), (48, 112, 1000))
    sl, x, y, z = region
    x2, y2 = x[0], y[0]
    body = (x2 / 18) ** 2 + ((y2 - _SPINE_Y) / 15) ** 2
    canal = x2**2 + (y2 - 78) ** 2 < 9.5**2
    arch = ((x2**2 + (y2 - 78) ** 2 < 15.5**2) & (y2 > 70)) | ((np.abs(x2) > 8) & (np.abs(x2) < 14) & (
        y2 > 60) & (y2 < 78))  # laminae and pedicles
    arch |= (np.abs(x2) < 3.5) & (y2 > 88) & (y2 < 104)  # spinous process
    arch |= (np.abs(x2) > 10) & (np.abs(x2) < 44) & (np.abs(y2 - 66 - 0.4 * np.abs(x2)) < 4.5)  # transverse
    keep = np.int16(-32768)
    vertebra = np.full(body.shape, keep, np.int16)
    vertebra[arch] = 500
    vertebra[body < 1] = 420
    vertebra[body < 0.8] = 230
    vertebra[canal] = 25
    endplate, disc = vertebra.copy(), np.full(body.shape, keep, np.int16)
    endplate[body < 1] = 420
    disc[body < 1] = 85
    disc[canal] = 25
    # position within the level: 0 at a disc centre; the body spans 5..24 mm, endplates at its ends
    pos = (_T1_Z + 12 - z[:, 0, 0]) % _LEVEL_HEIGHT
    kinds = np.where(pos < 2.5, 2, np.where((pos < 5) | (pos > 21.5), 1, 0))
    sub = c.vol[sl]
    for kind, plane in enumerate((vertebra, endplate, disc)):
        ks = np.nonzero(kinds == kind)[0]
        block = sub[ks]
        sub[ks] = np.where(plane != keep, plane, block)


def _ribs(c: _Canvas) -> None:
    """Twelve pairs of ribs sloping down from the spine to the front, with costal cartilages."""
    x2, y2 = c.x2, c.y2
    rn = np.sqrt((x2 / _RIB_A) ** 2 + (y2 / _RIB_B) ** 2)
    rows, cols = np.nonzero((rn > 0.76) & (rn < 1.06))  # candidates for every level of the cone
    x, y, rn = c.x[cols], c.y[rows], rn[rows, cols]
    phi = np.arctan2(np.abs(x) / _RIB_A, y / _RIB_B)  # 0 behind the spine, pi at the sternum
    local = np.sqrt((_RIB_A * np.sin(phi)) ** 2 + (_RIB_B * np.cos(phi)) ** 2)
    phi0 = 0.33
    for n in range(1, 13):
        # the rib falls steeply behind, flattens at the side; its cartilage rises again to the sternum
        bone_end = {11: 1.9, 12: 1.5}.get(n, math.pi - 0.55 if n <= 7 else math.pi - 0.85)
        cart_end = {11: 1.9, 12: 1.5}.get(n, math.pi - 0.1 if n <= 7 else math.pi - 0.5)
        z_back = _T1_Z - (n - 1) * _LEVEL_HEIGHT
        z_low = z_back - (50.0 if n == 1 else 60.0)
        g = np.clip((phi - phi0) / (bone_end - phi0), 0, 1)
        rise = np.clip((phi - bone_end) / max(cart_end - bone_end, 1e-6), 0, 1)
        zc = np.where(phi <= bone_end, z_back - (z_back - z_low) * (1 - (1 - g) ** 1.6), z_low + 12 * rise)
        radial = (rn - _cavity_scale(zc)) * local  # in-plane distance (mm) from the centre line, roughly
        sel = np.nonzero((np.abs(radial) < 4) & (phi >= phi0) & (phi <= cart_end))[0]
        if sel.size == 0:
            continue
        zs = zc[sel].astype(np.float32)
        k0 = max(0, math.floor((zs.min() - 7 - _ORIGIN[2]) / DEMO_SPACING[2]))
        k1 = min(DEMO_SHAPE[0], math.ceil((zs.max() + 7 - _ORIGIN[2]) / DEMO_SPACING[2]) + 1)
        if k0 >= k1:
            continue
        dz = c.z[k0:k1, None] - zs[None, :]
        d = np.sqrt((radial[sel].astype(np.float32) / 3.2) ** 2 + (dz / 4.5) ** 2)  # 6.4 x 9 mm
        w = np.clip((1 - d) * 3.2 / _EDGE + 0.5, 0, 1)
        value = np.where(phi[sel] <= bone_end, np.where(d > 0.6, 700.0, 280.0), 120.0).astype(np.float32)
        r, q = rows[sel], cols[sel]
        old = c.vol[k0:k1, r, q].astype(np.float32)
        c.vol[k0:k1, r, q] = np.rint(old + (value - old) * w)


def _other_bones(c: _Canvas) -> None:
    """Sternum, clavicles and scapulae (each in its muscle where it would otherwise sit in fat)."""
    # sternum: manubrium, body and xiphoid, cortex around marrow
    for (z0, z1, half_w) in ((58, 96, 24), (-62, 55, 15), (-84, -62, 8)):
        c.ellipsoid((0, -92, (z0 + z1) / 2), (half_w, 7, (z1 - z0) / 2), 600)
        c.ellipsoid((0, -92, (z0 + z1) / 2), (half_w - 2.5, 4.5, (z1 - z0) / 2 - 2), 250)
    for s in (-1, 1):
        # clavicle: from the manubrium out and back to the shoulder
        pts = [(s * 22, -96, 100), (s * 80, -102, 114), (s * 138, -72, 128)]
        for p0, p1 in zip(pts, pts[1:]):
            c.tube(p0, p1, 7, 7, 650)
        for p0, p1 in zip(pts, pts[1:]):
            c.tube(p0, p1, 4.5, 4.5, 300)
        # scapula: a thin oblique plate behind the ribs, wrapped in muscle
        medial, lateral = (s * 70.0, 97.0), (s * 128.0, 58.0)
        _plate(c, medial, lateral, 10, 132, 11, 45)
        _plate(c, medial, lateral, 10, 132, 2.2, 600)


def _plate(c: _Canvas, a, b, z0, z1, half_thickness, value) -> None:
    """A vertical slab around the in-plane segment a-b, for z in [z0, z1], narrower at its bottom."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    pad = half_thickness + _EDGE
    region = c.box((min(a[0], b[0]) - pad, min(a[1], b[1]) - pad, z0),
                   (max(a[0], b[0]) + pad, max(a[1], b[1]) + pad, z1))
    if region is None:
        return
    sl, x, y, z = region
    v = b - a
    t = ((x - np.float32(a[0])) * np.float32(v[0]) + (y - np.float32(a[1])) * np.float32(v[1])) / np.float32(
        v @ v)
    tc = np.clip(t, 0, 1)
    dist = np.sqrt((x - np.float32(a[0]) - tc * np.float32(v[0])) ** 2
                   + (y - np.float32(a[1]) - tc * np.float32(v[1])) ** 2)
    w2 = np.clip((half_thickness - dist) / _EDGE + 0.5, 0, 1)
    # the inferior angle: the plate narrows towards its medial end below z0 + 40 mm
    reach = np.clip((z - np.float32(z0)) / 40.0, 0.35, 1.0)
    w = w2 * (t <= reach)
    c.blend(sl, w.astype(np.float32), value)


def _nodules(c: _Canvas) -> None:
    for nodule in DEMO_NODULES:
        if nodule.kind == "part-solid":
            c.ellipsoid(nodule.center_lps, (nodule.diameter_mm / 2,) * 3, _GGO_HU, mode="max")
        c.ellipsoid(nodule.center_lps, (nodule.solid_diameter / 2,) * 3, _SOLID_HU)


def _noise(c: _Canvas) -> None:
    """Gaussian noise (sigma 12 HU) inside the body, by table look-up (much faster than drawing normals)."""
    rng = np.random.default_rng(_SEED + 2)
    table = np.rint(np.sort(rng.standard_normal(65536)) * 12).astype(np.int16)
    body = _superellipse(c.x2, c.y2 - np.float32(3), _BODY_A, _BODY_B) < 1
    rows, cols = np.nonzero(body.any(axis=1))[0], np.nonzero(body.any(axis=0))[0]
    sj, si = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    sub = c.vol[:, sj, si]
    noise = table[rng.integers(0, 65536, size=sub.shape, dtype=np.uint16)]
    noise *= body[sj, si]
    sub += noise
    np.maximum(sub, -1024, out=sub)
