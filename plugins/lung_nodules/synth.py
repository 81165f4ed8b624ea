"""Synthetic lung nodules inserted into real CT (training data and the benchmark's truth).

Everything works in place on a float32 HU array ``[k, j, i]`` with spacings ``(sk, sj, si)`` mm.

A nodule is an occupancy field built in millimetres around its centre: a radius that depends on the
direction (round: a slightly uneven ellipsoid; lobulated: a few broad bumps; spiculated: many thin
spikes; perifissural: a flat lens), smoothed by the scanner's point spread (in plane) and the slice
profile (along k, the native slice thickness), then blended into the scan over what was there:
``new = bg (1 - occ) + occ max(bg, nodule HU)`` so that vessels and the chest wall it touches stay.
Nodule HU: solid about 0 to +50 HU, ground-glass -700 to -450 HU, part-solid a ground-glass nodule
with a solid core of 30-70% of its diameter; each with a smooth texture.  Noise of the scan's own
level (measured in the lung) is added where the blend took the scan's noise away.

``insert_random_nodules`` places them: isolated (deep in the lung, away from vessels),
juxtapleural (centre within one radius of the pleura), juxtavascular (touching a vessel),
perifissural (lens-shaped; fissures are not located, so they are placed like isolated ones).
``vessel_bifurcations`` gives hard negatives (branch points of the vessel tree).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

TYPES = ("solid", "part-solid", "ground-glass")
SHAPES = ("round", "lobulated", "spiculated")
LOCATIONS = ("isolated", "juxtapleural", "juxtavascular", "perifissural")
MAX_DENSE_INSIDE = 0.25  # a touching juxtavascular nodule: at most this share of its sphere already vessel


@dataclass
class Nodule:
    center_kji: tuple[float, float, float]  # voxel index (float)
    diameter_mm: float
    kind: str  # solid | part-solid | ground-glass
    shape: str
    location: str
    solid_diameter_mm: float = 0.0
    box: tuple[slice, slice, slice] | None = None  # where ``mask`` lies in the volume
    mask: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"center_kji": [float(c) for c in self.center_kji], "diameter_mm": float(self.diameter_mm),
                "type": self.kind, "shape": self.shape, "location": self.location,
                "solid_diameter_mm": float(self.solid_diameter_mm)}


def noise_sigma(hu: np.ndarray, lung: np.ndarray) -> float:
    """The scan's noise (HU) from the lung parenchyma: a robust spread of the in-plane high-pass."""
    hp = _highpass(hu)
    sel = lung & (hu > -980) & (hu < -700)
    if sel.sum() < 100:
        sel = hu < -900
    vals = hp[sel]
    if vals.size > 400_000:
        vals = vals[:: vals.size // 400_000]
    return float(1.4826 * np.median(np.abs(vals - np.median(vals)))) or 10.0


def _highpass(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    return a - ndimage.uniform_filter(a, size=(1, 3, 3))


def _noise_field(shape, rng, sigma_hu: float) -> np.ndarray:
    """Correlated noise whose in-plane high-pass spread equals ``sigma_hu`` (the scan's measure)."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), (0.0, 0.6, 0.6))
    hp = _highpass(n)
    scale = 1.4826 * np.median(np.abs(hp - np.median(hp)))
    return n * (sigma_hu / max(scale, 1e-6))


def _random_dirs(rng, n):
    d = rng.standard_normal((n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def nodule_occupancy(spacing_kji, diameter_mm: float, shape: str, rng, thickness_mm: float | None = None,
                     location: str = "isolated"):
    """Soft occupancy (float32 in [0, 1], blurred by the slice profile) of a nodule on a box centred
    at the origin, the box's half size in voxels (the centre is at voxel ``half``) and the nodule's
    true extent (the shape before blurring, the truth mask)."""
    sk, sj, si = spacing_kji
    radius = diameter_mm / 2.0
    ext = radius * (2.4 if shape == "spiculated" else 1.5) + 3.0
    half = np.array([int(np.ceil(ext / s)) for s in spacing_kji])
    z, y, x = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing_kji)], indexing="ij")
    pts = np.stack([z, y, x], -1).astype(np.float32)
    # a random orientation
    q = np.linalg.qr(rng.standard_normal((3, 3)))[0].astype(np.float32)
    p = pts @ q
    if location == "perifissural":
        axes = np.array([1.0, 1.0, rng.uniform(0.35, 0.55)], np.float32)
    else:
        axes = rng.uniform(0.85, 1.15, 3).astype(np.float32)
        axes /= np.cbrt(np.prod(axes))
    pe = p / axes
    r = np.linalg.norm(pe, axis=-1)
    u = pe / np.maximum(r, 1e-6)[..., None]
    rad = np.ones(r.shape, np.float32)
    if shape == "lobulated":
        for d in _random_dirs(rng, int(rng.integers(4, 8))):
            rad += rng.uniform(0.12, 0.28) * np.clip(u @ d.astype(np.float32), 0, None) ** 4
        rad /= 1.0 + 0.1
    elif shape == "spiculated":
        for d in _random_dirs(rng, int(rng.integers(6, 14))):
            width = rng.uniform(0.8, 1.8)  # mm, spike width
            theta = width / (2 * radius)
            power = max(8.0, 1.386 / theta ** 2)
            rad += rng.uniform(0.5, 1.3) * np.clip(u @ d.astype(np.float32), 0, None) ** power
    sdf = r - radius * rad
    h = float(min(sj, si))
    sharp = np.clip(0.5 - sdf / h, 0.0, 1.0)
    sig_k = (thickness_mm or sk) / 2.355 / sk
    occ = ndimage.gaussian_filter(sharp, (max(sig_k, 0.3), 0.5, 0.5))
    return occ.astype(np.float32), half, sharp >= 0.5


def nodule_hu(kind: str, occ_shape, spacing_kji, diameter_mm, rng, half):
    """The nodule's own HU on its box (texture included) and its solid core size (part-solid)."""
    texture = ndimage.gaussian_filter(rng.standard_normal(occ_shape).astype(np.float32), 1.2)
    texture /= max(float(texture.std()), 1e-6)
    solid = 0.0
    if kind == "solid":
        vals = rng.uniform(-10, 50) + 18.0 * texture
    elif kind == "ground-glass":
        vals = rng.uniform(-700, -450) + 45.0 * texture
    else:
        vals = rng.uniform(-650, -450) + 45.0 * texture
        solid = diameter_mm * rng.uniform(0.3, 0.7)
        off = _random_dirs(rng, 1)[0] * (diameter_mm - solid) / 2 * rng.uniform(0, 0.6)
        z, y, x = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing_kji)], indexing="ij")
        d = np.sqrt((z - off[0]) ** 2 + (y - off[1]) ** 2 + (x - off[2]) ** 2)
        core = np.clip(0.5 - (d - solid / 2) / min(spacing_kji[1:]), 0, 1)
        core = ndimage.gaussian_filter(core, 0.5)
        vals = vals * (1 - core) + (rng.uniform(0, 40) + 15.0 * texture) * core
    return vals.astype(np.float32), solid


def insert_nodule(hu: np.ndarray, spacing_kji, center_kji, diameter_mm: float, kind: str, shape: str,
                  rng: np.random.Generator, sigma_hu: float, thickness_mm: float | None = None,
                  location: str = "isolated") -> Nodule:
    """Insert one nodule into ``hu`` (float32, in place) and return its truth (mask on its box)."""
    occ, half, sharp = nodule_occupancy(spacing_kji, diameter_mm, shape, rng, thickness_mm, location)
    vals, solid = nodule_hu(kind, occ.shape, spacing_kji, diameter_mm, rng, half)
    c = np.rint(np.asarray(center_kji)).astype(int)
    lo, hi = c - half, c + half + 1
    src = tuple(slice(max(0, -a), occ.shape[d] - max(0, b - hu.shape[d])) for d, (a, b) in enumerate(zip(lo, hi)))
    dst = tuple(slice(max(0, a), min(hu.shape[d], b)) for d, (a, b) in enumerate(zip(lo, hi)))
    o, v = occ[src], vals[src]
    bg = hu[dst]
    noise = _noise_field(o.shape, rng, sigma_hu)
    new = bg * (1 - o) + o * np.maximum(bg, v)
    new += noise * np.sqrt(np.clip(1 - (1 - o) ** 2, 0, 1))
    hu[dst] = new
    return Nodule(tuple(float(x) for x in c), float(diameter_mm), kind, shape, location, float(solid),
                  box=dst, mask=sharp[src])


def vessel_mask(hu: np.ndarray, lung: np.ndarray) -> np.ndarray:
    return lung & (hu > -500)


def vessel_bifurcations(hu: np.ndarray, lung: np.ndarray, spacing_kji, n: int, rng,
                        min_mm: float = 2.0) -> np.ndarray:
    """Up to ``n`` branch points of the lung's vessel tree (voxel ``[k, j, i]`` rows): vessel voxels
    with a locally thick cross-section where three or more branches meet, a classical false
    positive of nodule detectors."""
    ves = vessel_mask(hu, lung)
    ves = ndimage.binary_opening(ves, structure=ndimage.generate_binary_structure(3, 1))
    dist = ndimage.distance_transform_edt(ves, sampling=spacing_kji)
    # local maxima of the vessel's thickness (centres of the vessel's widest places) ...
    mx = ndimage.maximum_filter(dist, size=3)
    cand = (dist >= min_mm / 2) & (dist == mx)
    pts = np.argwhere(cand)
    if len(pts) == 0:
        return np.zeros((0, 3), int)
    # ... where the vessel leaves a sphere of twice its radius in three or more places
    out = []
    order = rng.permutation(len(pts))
    for idx in order:
        if len(out) >= n:
            break
        p = pts[idx]
        r = float(dist[tuple(p)]) * 2.5 + 1.5
        half = [int(np.ceil(r / s)) + 1 for s in spacing_kji]
        sl = tuple(slice(max(0, a - h), a + h + 1) for a, h in zip(p, half))
        sub = ves[sl]
        z, y, x = np.meshgrid(*[(np.arange(s.start, s.start + m) - a) * sp for s, m, a, sp in
                                zip(sl, sub.shape, p, spacing_kji)], indexing="ij")
        d = np.sqrt(z * z + y * y + x * x)
        shell = sub & (d > r - 1.2) & (d <= r)
        _, branches = ndimage.label(shell, structure=np.ones((3, 3, 3)))
        if branches >= 3:
            out.append(p)
    return np.array(out, int).reshape(-1, 3)


def random_spec(rng, size_mm=(3.0, 30.0)):
    """A random nodule description: diameter (log-uniform), type, shape and location."""
    d = float(np.exp(rng.uniform(np.log(size_mm[0]), np.log(size_mm[1]))))
    kind = str(rng.choice(TYPES, p=[0.6, 0.2, 0.2]))
    shape = str(rng.choice(SHAPES, p=[0.5, 0.3, 0.2])) if d >= 6 else str(rng.choice(SHAPES[:2]))
    location = str(rng.choice(LOCATIONS, p=[0.4, 0.25, 0.25, 0.1]))
    return d, kind, shape, location


class Placer:
    """Picks centres for nodules of a given location kind in one lung mask, avoiding ``taken``.

    ``touch_vessels``: a juxtavascular nodule must touch a vessel without sitting inside one (at most
    ``MAX_DENSE_INSIDE`` of its sphere already dense, some dense tissue within 1.5 mm of its
    surface).  Without it (the benchmark's placement, kept so that its copies do not change) the
    centre is one radius from a random vessel voxel, which on a thick hilar artery still lies inside
    the vessel: a solid nodule there is invisible (``max(bg, nodule)`` keeps the vessel)."""

    def __init__(self, hu, lung, spacing_kji, taken=None, touch_vessels: bool = False):
        self.touch_vessels = bool(touch_vessels)
        self.hu, self.lung, self.spacing = hu, lung.astype(bool), np.asarray(spacing_kji, float)
        self.depth = ndimage.distance_transform_edt(self.lung, sampling=self.spacing).astype(np.float32)
        self.vessels = vessel_mask(hu, self.lung) & (self.depth > 3)
        self.taken = np.zeros(lung.shape, bool) if taken is None else taken.astype(bool).copy()
        self._lung_pts = np.argwhere(self.lung)
        self._ves_pts = np.argwhere(self.vessels)

    def _free(self, p, radius):
        half = [int(np.ceil((radius + 4) / s)) for s in self.spacing]
        sl = tuple(slice(max(0, a - h), a + h + 1) for a, h in zip(p, half))
        return not self.taken[sl].any()

    def _mark(self, p, radius):
        half = [int(np.ceil((radius + 4) / s)) for s in self.spacing]
        sl = tuple(slice(max(0, a - h), a + h + 1) for a, h in zip(p, half))
        self.taken[sl] = True

    def touches_without_overlap(self, p, radius) -> bool:
        """Dense tissue (> -500 HU) fills at most ``MAX_DENSE_INSIDE`` of the sphere of ``radius`` mm
        around ``p`` and is present in the 1.5 mm shell around it."""
        half = [int(np.ceil((radius + 1.5) / s)) for s in self.spacing]
        sl = tuple(slice(max(0, a - h), min(n, a + h + 1)) for a, h, n in zip(p, half, self.hu.shape))
        z, y, x = np.meshgrid(*[(np.arange(s_.start, s_.stop) - a) * sp for s_, a, sp in
                                zip(sl, p, self.spacing)], indexing="ij")
        d = np.sqrt(z * z + y * y + x * x)
        dense = self.hu[sl] > -500
        inside = d <= radius
        shell = (d > radius) & (d <= radius + 1.5)
        return (float(dense[inside].mean()) <= MAX_DENSE_INSIDE) and bool(dense[shell].any())

    def place(self, rng, radius, location, tries=300):
        for _ in range(tries):
            if location == "juxtavascular" and len(self._ves_pts):
                v = self._ves_pts[rng.integers(len(self._ves_pts))]
                if self.touch_vessels:  # from the vessel's surface outwards, then checked
                    u = _random_dirs(rng, 1)[0]
                    step = np.min(self.spacing)
                    q = v.astype(float)
                    for _ in range(int(15.0 / step)):  # walk out of the vessel (at most 15 mm)
                        q = q + u * step / self.spacing
                        qi = np.rint(q).astype(int)
                        if np.any(qi < 0) or np.any(qi >= self.hu.shape) or self.hu[tuple(qi)] <= -500:
                            break
                    off = u * (radius + 0.3) / self.spacing
                    p = np.rint(q + off).astype(int)
                else:
                    off = _random_dirs(rng, 1)[0] * (radius + 0.5) / self.spacing
                    p = np.rint(v + off).astype(int)
            else:
                p = self._lung_pts[rng.integers(len(self._lung_pts))]
            if np.any(p < 0) or np.any(p >= self.lung.shape) or not self.lung[tuple(p)]:
                continue
            depth = float(self.depth[tuple(p)])
            if location == "juxtapleural":
                ok = 0.2 * radius <= depth <= 0.7 * radius + 1.0
            elif location == "juxtavascular":
                ok = depth >= radius + 1.0
                if ok and self.touch_vessels:
                    ok = self.touches_without_overlap(p, radius)
            else:  # isolated, perifissural: inside, and little vessel in the sphere
                ok = depth >= radius + 2.0
                if ok:
                    half = [int(np.ceil(radius / s)) for s in self.spacing]
                    sl = tuple(slice(max(0, a - h), a + h + 1) for a, h in zip(p, half))
                    ok = float(self.vessels[sl].mean()) < 0.08
            if ok and self._free(p, radius):
                self._mark(p, radius)
                return p
        return None


def insert_random_nodules(hu: np.ndarray, lung: np.ndarray, spacing_kji, n: int, rng, *,
                          thickness_mm: float | None = None, taken: np.ndarray | None = None,
                          size_mm=(3.0, 30.0), specs=None, touch_vessels: bool = False) -> list[Nodule]:
    """Insert ``n`` random nodules into ``hu`` (float32, in place) inside ``lung``; their truths.

    ``taken``: voxels to keep clear (real lesions).  ``specs``: explicit (diameter, type, shape,
    location) tuples instead of random ones.  ``touch_vessels``: see ``Placer``."""
    sigma = noise_sigma(hu, lung)
    placer = Placer(hu, lung, spacing_kji, taken, touch_vessels)
    out = []
    specs = list(specs) if specs is not None else [random_spec(rng, size_mm) for _ in range(n)]
    for d, kind, shape, location in specs:
        p = placer.place(rng, d / 2.0, location)
        if p is None and location != "isolated":
            location = "isolated"
            p = placer.place(rng, d / 2.0, location)
        if p is None:
            continue
        out.append(insert_nodule(hu, spacing_kji, p, d, kind, shape, rng, sigma, thickness_mm, location))
    return out


def truth_mask(shape, nodules: list[Nodule]) -> np.ndarray:
    """Label map of the inserted nodules (1, 2, ... in order)."""
    out = np.zeros(shape, np.uint16 if len(nodules) > 255 else np.uint8)
    for n, nod in enumerate(nodules, 1):
        region = out[nod.box]
        region[nod.mask & (region == 0)] = n
    return out
