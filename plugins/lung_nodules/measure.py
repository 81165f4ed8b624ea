"""One lung nodule, measured: a 3D segmentation grown from its centre, and the figures a lung
screening read needs (Lung-RADS diameters, volume, HU, type, calcification, side, lobe region).

The segmentation works in a local box around the centre (grown until the nodule no longer touches
its border):

1. the box is smoothed lightly (in-plane Gaussian) and the seed is moved to the densest voxel near
   the given centre, so a centre that lands on the ground-glass edge still finds the core;
2. the threshold is adaptive: ``LEVEL`` (0.6) of the way from the surrounding lung parenchyma (the
   median of the box's air-filled voxels) to the nodule's core (a high percentile in a small ball
   round the seed), clamped to -700..-300 HU; a second, ground-glass level (150 HU above the
   parenchyma) is kept instead when it adds real ground glass (a part-solid nodule), see
   ``_segment_box``;
3. the lung: a local lung region is made from the box's air, with ``lung_mask`` when given, by a
   3D rolling-ball closing of radius about the nodule's measured size (so a juxtapleural nodule's
   bite out of the lung is filled, even where the lung mask left it out), then holes filled: the
   chest wall and mediastinum stay outside;
4. vessels: a morphological opening with a ball of about half the nodule's inscribed radius
   (Euclidean, in mm, so thick slices are handled) cuts the vessels that touch it; the component
   at the seed is kept and grown back inside the thresholded voxels by the same radius.

Diameters are measured as Lung-RADS asks: on the axial slice where the nodule's area is largest,
the long axis (the largest in-plane distance across the segmentation's pixels, edge to edge) and
the short axis (the widest extent perpendicular to it); the mean of the two is rounded to 0.1 mm.
"""

from __future__ import annotations

import math

import numpy as np

SOLID_HU = -300.0  # voxels at or above: solid (soft tissue); -750..-300: ground glass
GGO_HU = -750.0
CALCIFIED_HU = 200.0
LUNG_HU = -850.0  # fallback parenchyma value when a box holds too little air
MAX_RADIUS_MM = 60.0
LEAK_FILL = 0.2  # hold_to_size: a segmentation filling less of the ball of its reach is a leak (see measure_nodule)
RIGHT_LABEL, LEFT_LABEL = 1, 2  # lungmask.py's labels
# the ground-glass level above the parenchyma, and the ground glass (beyond the solid segmentation's
# rim, less than 10 % of it solid) it must add, relative to the solid segmentation, to be kept
GGO_LEVEL_HU, GGO_EXTRA = 150.0, 1.0
LEVEL = 0.6  # the threshold's place between the parenchyma (0) and the nodule's core (1)
CLOSING_FRACTION = 1.1  # the pleural closing's radius, times the nodule's measured size
CLOSING_MAX_MM = 25.0  # without a lung mask: at most this (a larger one can bridge a thin chest wall to the air
# outside the body, which is then taken for lung)
OPEN_FRACTION, OPEN_MAX_MM = 0.5, 5.0  # vessel-cutting opening: this fraction of the inscribed radius


def _edt(mask: np.ndarray, spacing) -> np.ndarray:
    from scipy import ndimage

    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    return ndimage.distance_transform_edt(mask, sampling=spacing).astype(np.float32)


def _dilate(mask: np.ndarray, r: float, spacing) -> np.ndarray:
    return _edt(~mask, spacing) <= r


def _erode(mask: np.ndarray, r: float, spacing) -> np.ndarray:
    return _edt(mask, spacing) > r


def _component_at(mask: np.ndarray, seed) -> np.ndarray:
    """The connected component of ``mask`` at ``seed`` (or the one nearest to it)."""
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, bool)
    s = tuple(int(v) for v in seed)
    if lab[s]:
        return lab == lab[s]
    idx = np.argwhere(lab > 0)
    near = idx[np.argmin(((idx - np.asarray(s)) ** 2).sum(1))]
    return lab == lab[tuple(near)]


def _distance_to_air(image_hu: np.ndarray, spacing: np.ndarray, c: np.ndarray) -> float:
    """mm from ``c`` to the nearest air-filled voxel (< -600 HU) within 60 mm (60 if none)."""
    half = np.ceil(MAX_RADIUS_MM / spacing).astype(int)
    lo, hi = np.maximum(c - half, 0), np.minimum(c + half + 1, image_hu.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    air = np.asarray(image_hu[box]) < -600
    if not air.any():
        return MAX_RADIUS_MM
    return float(min(MAX_RADIUS_MM, _edt(~air, spacing)[tuple(c - lo)]))


def _ball(shape, center, r_mm, spacing) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, center, spacing, strict=True))
    return d2 <= r_mm * r_mm


def _local_lung(hu_s: np.ndarray, spacing, radius_mm: float, lung: np.ndarray | None = None) -> np.ndarray:
    """The lung in a box: the lung mask (or without one the air-filled voxels) closed in 3D with a
    ball of ``radius_mm`` (a nodule on the pleura bites into the lung; the closing fills the bite),
    then each slice's holes filled.  The box's border is padded with its edge, so a lung cut by it
    stays open there."""
    from scipy import ndimage

    # with a lung mask, the mask alone: the air outside the body (or in the bowel) must not be
    # bridged to the lung across a thin chest wall by a large closing
    air = np.asarray(lung, bool) if lung is not None else hu_s < -500
    pad = [int(math.ceil(radius_mm / s)) + 1 for s in spacing]
    p = np.pad(air, [(q, q) for q in pad], mode="edge")
    inner = tuple(slice(q, -q) for q in pad)
    out = _erode(_dilate(p, radius_mm, spacing), radius_mm, spacing)[inner] | air
    for k in range(out.shape[0]):
        out[k] = ndimage.binary_fill_holes(out[k])
    return out


def _grow(fg: np.ndarray, seed, spacing, near_seed: np.ndarray) -> tuple[np.ndarray, float]:
    """The nodule in the thresholded voxels ``fg``: the component at the seed, opened to cut the
    vessels that touch it, the seed's part grown back inside ``fg``, holes filled."""
    from scipy import ndimage

    comp = _component_at(fg, seed)
    inscribed = float(_edt(comp, spacing)[near_seed].max())
    r_open = float(np.clip(OPEN_FRACTION * inscribed, min(spacing[1:]) * 1.01, OPEN_MAX_MM))
    opened = _dilate(_erode(comp, r_open, spacing), r_open, spacing) & comp
    mask = comp
    if opened.any():
        kept = _component_at(opened, seed)
        mask = _component_at(comp & _dilate(kept, 0.5 * r_open, spacing), seed)
    return ndimage.binary_fill_holes(mask), r_open


def _segment_box(hu: np.ndarray, spacing, seed, lung: np.ndarray | None, size_mm: float | None,
                 threshold_hu: float | None) -> tuple[np.ndarray, dict]:
    """Segment the nodule at ``seed`` in the box ``hu`` (float HU); returns the mask and details.

    Two levels: the adaptive one (half-way between core and parenchyma) and a ground-glass one
    (``GGO_LEVEL_HU`` above the parenchyma).  The ground-glass segmentation is kept when it adds
    ground glass beyond the first's partial-volume rim, at least as much as the first holds and
    hardly any of it solid (a part-solid nodule); else the first (vessels and partial-volume halo
    reached at the lower level are not ground glass)."""
    from scipy import ndimage

    sigma = [0.0] + [max(0.0, 0.5 / s) if s < 1.0 else 0.0 for s in spacing[1:]]
    hu_s = ndimage.gaussian_filter(hu, sigma) if any(sigma) else hu
    # the seed: the centre when it lies on the nodule, else the densest smoothed voxel within a
    # small ball round it (a centre in the lung beside a small nodule; near the pleura the densest
    # voxel may be chest wall, so a centre on nodule tissue is never moved)
    if hu_s[seed] < GGO_HU:
        r_seed = max(2.0, 0.25 * size_mm) if size_mm else 3.0
        near = _ball(hu.shape, seed, r_seed, spacing)
        inside = near & _local_lung(hu_s, spacing, 13.0, lung)  # not the chest wall beside it
        near = inside if inside.any() else near
        cand = np.argwhere(near)
        seed = tuple(cand[int(np.argmax(hu_s[near]))])
    core_ball = _ball(hu.shape, seed, max(1.5, min(3.0, 0.2 * size_mm)) if size_mm else 2.0, spacing)
    core = float(np.percentile(hu_s[core_ball], 75))
    air = hu_s < -600
    if lung is not None:
        air &= lung
    bg = float(np.median(hu_s[air])) if air.sum() > 50 else LUNG_HU
    fixed = threshold_hu is not None
    if not fixed:
        threshold_hu = float(np.clip(bg + LEVEL * (core - bg), -700.0, -300.0))
    fg = hu_s >= threshold_hu
    near_seed = _ball(hu.shape, seed, 15.0, spacing)
    inscribed = float(_edt(_component_at(fg, seed), spacing)[near_seed].max())
    est_size = 2.0 * inscribed  # measured, not the caller's size: a detector's box of a mass on the
    # chest wall is bigger than its bite into the lung, and too big a closing swallows the mediastinum
    # a given lung mask is closed the same way: a mask that leaves a large juxtapleural mass out
    # (a lung mask's own pleural closing is sized for small nodules) gets the bite back
    radius = CLOSING_FRACTION * max(13.0, est_size)
    lung = _local_lung(hu_s, spacing, radius if lung is not None else min(radius, CLOSING_MAX_MM), lung)
    lung[seed] = True
    info = {"threshold_hu": threshold_hu, "core_hu": core, "background_hu": bg, "seed": seed, "open_mm": 0.0}
    fg &= lung
    if not fg[seed]:
        return np.zeros(hu.shape, bool), info
    mask, info["open_mm"] = _grow(fg, seed, spacing, near_seed)
    low = float(max(-700.0, bg + GGO_LEVEL_HU))
    if not fixed and low < threshold_hu - 50:
        mask_low, r_low = _grow((hu_s >= low) & lung, seed, spacing, near_seed)
        extra = mask_low & ~_dilate(mask, max(1.5, 1.01 * min(spacing[1:])), spacing)
        n_extra = int(extra.sum())
        if (n_extra >= GGO_EXTRA * mask.sum() and n_extra * float(np.prod(spacing)) >= 10.0
                and float((hu_s[extra] >= SOLID_HU).mean()) < 0.1):
            mask, info["open_mm"], info["threshold_hu"] = mask_low, r_low, low
    return mask, info


# ------------------------------------------------------------------------------- diameters


def _pixel_corners(jj: np.ndarray, ii: np.ndarray, sj: float, si: float) -> np.ndarray:
    """The four corners (mm, in-plane: row, column) of each pixel, for edge-to-edge distances."""
    y, x = jj * sj, ii * si
    off = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]) * [sj, si]
    return (np.stack([y, x], 1)[:, None, :] + off[None]).reshape(-1, 2)


def axial_diameters(mask2d: np.ndarray, sj: float, si: float) -> dict:
    """Long axis (largest distance across the pixels, edge to edge) and short axis (the widest
    extent perpendicular to it) of one axial slice of a mask; mm, with their end points in
    (row, column) pixel coordinates."""
    from viewer.core.measurements import _farthest_pair

    jj, ii = np.nonzero(mask2d)
    if len(jj) == 0:
        return {"long_mm": 0.0, "short_mm": 0.0, "long_ends": None, "short_ends": None}
    pts = _pixel_corners(jj, ii, sj, si)
    long_mm, a, b = _farthest_pair(pts)
    pa, pb = pts[a], pts[b]
    d = (pb - pa) / max(long_mm, 1e-9)
    e = np.array([-d[1], d[0]])
    t, s = (pts - pa) @ d, (pts - pa) @ e
    # the widest chord perpendicular to the long axis: pixels in bands one pixel wide along it
    band = min(sj, si)
    bins = np.floor(t / band).astype(int)
    order = np.argsort(bins, kind="stable")
    b_sorted, s_sorted, t_sorted = bins[order], s[order], t[order]
    starts = np.r_[0, np.nonzero(np.diff(b_sorted))[0] + 1]
    lo, hi = np.minimum.reduceat(s_sorted, starts), np.maximum.reduceat(s_sorted, starts)
    w = hi - lo
    best = int(np.argmax(w))
    tm = float(t_sorted[starts[best]:(starts[best + 1] if best + 1 < len(starts) else None)].mean())
    short_mm = float(w[best])
    if short_mm > long_mm:  # cannot happen for the true long axis; keep the order anyway
        short_mm = long_mm
    ends_s = np.stack([pa + tm * d + lo[best] * e, pa + tm * d + hi[best] * e])
    scale = np.array([sj, si])
    return {"long_mm": float(long_mm), "short_mm": short_mm,
            "long_ends": np.stack([pa, pb]) / scale, "short_ends": ends_s / scale}


def lung_rads_mean(long_mm: float, short_mm: float) -> float:
    """Lung-RADS mean diameter: (long + short) / 2, rounded to one decimal (half up)."""
    return math.floor((long_mm + short_mm) / 2.0 * 10.0 + 0.5) / 10.0


def mask_measurements(mask: np.ndarray, spacing_kji) -> dict:
    """Diameters and volume of a boolean mask [k, j, i] with voxel spacing (sk, sj, si) mm: the
    axial slice of largest area (ties: the one with the longer long axis) carries the diameters."""
    sk, sj, si = (float(s) for s in spacing_kji)
    areas = mask.reshape(mask.shape[0], -1).sum(1)
    best = None
    for k in np.nonzero(areas == areas.max())[0] if areas.max() else []:
        d = axial_diameters(mask[k], sj, si)
        if best is None or d["long_mm"] > best[1]["long_mm"]:
            best = (int(k), d)
    if best is None:
        return {"long_mm": 0.0, "short_mm": 0.0, "mean_diameter_mm": 0.0, "volume_ml": 0.0, "axial_k": None,
                "long_ends": None, "short_ends": None}
    k, d = best
    return {"long_mm": round(d["long_mm"], 2), "short_mm": round(d["short_mm"], 2),
            "mean_diameter_mm": lung_rads_mean(d["long_mm"], d["short_mm"]),
            "volume_ml": float(mask.sum()) * sk * sj * si / 1000.0, "axial_k": k,
            "long_ends": d["long_ends"], "short_ends": d["short_ends"]}


# ------------------------------------------------------------------------------- type and place


def nodule_type(hu_in_mask: np.ndarray, mask: np.ndarray, hu: np.ndarray, spacing) -> dict:
    """Solid, part-solid (with its solid component) or ground-glass, from the HU inside the mask.

    The solid component is the voxels >= -300 HU (smoothed), less its partial-volume rim; the
    ground glass is what lies -750..-300 HU farther than about one voxel from the solid part (a
    solid nodule's blurred edge is not ground glass)."""
    from scipy import ndimage

    sigma = [0.0] + [0.5 / s if s < 1.0 else 0.0 for s in spacing[1:]]
    hu_s = ndimage.gaussian_filter(hu, sigma) if any(sigma) else hu
    solid = mask & (hu_s >= SOLID_HU)
    if solid.any():
        solid = ndimage.binary_opening(solid, np.ones((1, 2, 2), bool)) | (solid & (hu_s >= 0))
    rim = max(1.5, 1.01 * min(spacing[1:]))
    near_solid = _dilate(solid, rim, spacing) if solid.any() else np.zeros_like(mask)
    ggo = mask & ~near_solid & (hu_s >= GGO_HU) & (hu_s < SOLID_HU)
    n = max(int(mask.sum()), 1)
    solid_frac, ggo_frac = float(solid.sum()) / n, float(ggo.sum()) / n
    sm = mask_measurements(solid, spacing) if solid.any() else {"long_mm": 0.0, "mean_diameter_mm": 0.0,
                                                                  "volume_ml": 0.0}
    if solid_frac >= 0.8 or ggo_frac < 0.1:
        kind = "solid"
    elif sm["long_mm"] < 2.0 * max(spacing[1:]) or solid_frac < 0.05:
        kind = "ground-glass"
    else:
        kind = "part-solid"
    return {"type": kind, "solid_fraction": round(solid_frac, 3), "ggo_fraction": round(ggo_frac, 3),
            "solid_long_mm": round(float(sm["long_mm"]), 2) if kind != "ground-glass" else 0.0,
            "solid_mean_diameter_mm": float(sm["mean_diameter_mm"]) if kind != "ground-glass" else 0.0,
            "solid_volume_ml": float(sm["volume_ml"]) if kind != "ground-glass" else 0.0}


LOBES = {("right", "upper"): "right upper lobe", ("right", "middle"): "right middle lobe",
         ("right", "lower"): "right lower lobe", ("left", "upper"): "left upper lobe",
         ("left", "lower"): "left lower lobe"}


def side_and_lobe(center_kji, shape, lung_mask: np.ndarray | None, affine: np.ndarray | None) -> dict:
    """Which lung (from patient x: LPS +x is the patient's left) and a lobe region by height.

    A labelled lung mask (1 right, 2 left, as lungmask.py makes) says the side directly.  Else the
    midline is the middle of the lungs' extent across (the lung mask's), else x = 0 with an affine,
    else the middle column.  The lobe is an estimate from the height within that lung
    (no fissures are found): right: upper third upper, middle third middle, lower third lower;
    left: upper half upper (with the lingula), lower half lower."""
    c = np.asarray(center_kji, float)
    a = np.eye(4) if affine is None else np.asarray(affine, float)
    lps = a[:3, :3] @ c[::-1] + a[:3, 3]
    mid_i = (shape[2] - 1) / 2.0
    if lung_mask is not None and lung_mask.any():
        cols = np.nonzero(lung_mask.any(axis=(0, 1)))[0]
        mid_i = 0.5 * (cols[0] + cols[-1])
    elif affine is not None:
        mid_i = float(np.linalg.solve(a[:3, :3], -a[:3, 3])[0])
    x_dir = float(np.sign(a[0, 0])) if affine is not None else 1.0
    left = (c[2] - mid_i) * (x_dir or 1.0) > 0
    labelled = lung_mask is not None and lung_mask.dtype != bool and int(lung_mask.max()) == LEFT_LABEL
    if labelled:  # the plugin's lung mask: 1 right lung, 2 left; the label nearest the centre says
        ci = tuple(np.clip(np.rint(c).astype(int), 0, np.array(shape) - 1))
        if lung_mask[ci] in (RIGHT_LABEL, LEFT_LABEL):
            left = int(lung_mask[ci]) == LEFT_LABEL
    side = "left" if left else "right"
    lobe = None
    if lung_mask is not None and lung_mask.any():
        if labelled:
            side_lung = lung_mask == (LEFT_LABEL if left else RIGHT_LABEL)
        else:
            i_half = np.arange(shape[2]) > mid_i if x_dir >= 0 else np.arange(shape[2]) < mid_i
            cols = i_half if left else ~i_half
            side_lung = np.zeros(shape, bool)
            side_lung[:, :, cols] = lung_mask[:, :, cols] > 0
        if not side_lung.any():
            side_lung = lung_mask > 0
        ks = np.nonzero(side_lung.any(axis=(1, 2)))[0]
        if len(ks):
            z = a[2, 2] if affine is not None else 1.0  # k grows toward the head when a[2, 2] > 0
            top, bottom = (ks[-1], ks[0]) if z >= 0 else (ks[0], ks[-1])
            frac = (top - c[0]) / (top - bottom) if top != bottom else 0.5  # 0 at the apex, 1 at the base
            if left:
                zone = "upper" if frac < 0.5 else "lower"
            else:
                zone = "upper" if frac < 1 / 3 else "middle" if frac < 2 / 3 else "lower"
            lobe = LOBES[(side, zone)]
    return {"side": side, "lobe": lobe, "center_lps": lps.tolist() if affine is not None else None}


# ------------------------------------------------------------------------------- the entry point


def measure_nodule(image_hu: np.ndarray, spacing_kji: tuple, center_kji: tuple, lung_mask: np.ndarray | None = None,
                   *, size_mm: float | None = None, affine: np.ndarray | None = None,
                   threshold_hu: float | None = None, hold_to_size: bool = False) -> dict:
    """Segment and measure the nodule at ``center_kji`` (voxel indices, may be fractional).

    ``image_hu`` [k, j, i] in HU, ``spacing_kji`` (sk, sj, si) mm, ``lung_mask`` a boolean/label map
    of the lungs on the same grid (optional), ``size_mm`` an approximate diameter (optional; sets the
    first box and the seed search), ``affine`` the (i, j, k) -> LPS matrix (optional: gives
    ``center_lps`` and the side by patient x), ``threshold_hu`` a fixed threshold instead of the
    adaptive one.  ``hold_to_size``: ``size_mm`` is a detector's estimate, and a segmentation that
    reaches more than 2.5 times it (and 15 mm more) along an axis while filling less than LEAK_FILL
    of the ball of that reach (a tree, not a mass) has run into vessels or parenchyma: it is held to a
    ball of 1.5 times that size around the seed and ``held_to_size`` says so.  On the real CTs such
    leaks measured vessel trees of false detections as 40-117 mm "nodules" with Lung-RADS 4B; they
    filled 0.03-0.12 of their ball, the radiomics-lung2 mass, which the detector sizes at 18 mm for
    its 46 mm, 0.41.

    Returns a dict: ``center_kji`` (centre of mass), ``long_mm``, ``short_mm``,
    ``mean_diameter_mm`` (Lung-RADS, 0.1 mm), ``volume_ml``, ``mean_hu``, ``type``
    (solid | part-solid | ground-glass), ``solid_long_mm``/``solid_mean_diameter_mm`` (part-solid),
    ``calcified`` (core >= 200 HU), ``side``, ``lobe`` (estimate or None), ``bbox`` (k0, k1, j0, j1,
    i0, i1; half-open) and ``mask`` (bool array of the bbox), plus the segmentation's details
    (threshold, seed, axial slice and end points of the axes in voxel indices).  An empty ``mask``
    (``found`` False) means nothing above the threshold was found at the centre."""
    spacing = np.asarray(spacing_kji, float)
    shape = image_hu.shape
    c = np.clip(np.rint(np.asarray(center_kji, float)).astype(int), 0, np.array(shape) - 1)
    r = max(15.0, 1.5 * size_mm) if size_mm else max(20.0, 2.5 * _distance_to_air(image_hu, spacing, c))
    while True:
        half = np.ceil(r / spacing).astype(int)
        half[0] = max(half[0], 1)
        lo = np.maximum(c - half, 0)
        hi = np.minimum(c + half + 1, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        hu = np.asarray(image_hu[box], np.float32)
        lung = None if lung_mask is None else np.asarray(lung_mask[box]) > 0
        mask, info = _segment_box(hu, spacing, tuple(c - lo), lung, size_mm, threshold_hu)
        touches = any(mask[tuple(slice(None) if a != ax else e for a in range(3))].any()
                      for ax in (1, 2) for e in (0, -1)
                      if (lo[ax] > 0 if e == 0 else hi[ax] < shape[ax]))
        if not touches or r >= MAX_RADIUS_MM:
            break
        r = min(MAX_RADIUS_MM, r * 1.6)
    held = False
    if hold_to_size and size_mm and mask.any():
        idx = np.argwhere(mask)
        extent = float(((idx.max(0) - idx.min(0) + 1) * spacing).max())
        fill = float(mask.sum()) * float(np.prod(spacing)) / (math.pi / 6.0 * extent ** 3)
        if extent > max(2.5 * size_mm, size_mm + 15.0) and fill < LEAK_FILL:
            seed = tuple(int(v) for v in np.asarray(info["seed"]))
            mask = _component_at(mask & _ball(mask.shape, seed, 0.75 * size_mm, spacing), seed)
            held, touches = True, False
    found = bool(mask.any())
    out: dict = {"found": found, "threshold_hu": round(info["threshold_hu"], 1), "held_to_size": held,
                 "core_hu": round(info["core_hu"], 1), "background_hu": round(info["background_hu"], 1),
                 "open_mm": round(info["open_mm"], 2), "seed_kji": [int(v) for v in np.asarray(info["seed"]) + lo],
                 "truncated": bool(found and touches)}
    if not found:
        out.update({"center_kji": [float(v) for v in c], "long_mm": 0.0, "short_mm": 0.0, "mean_diameter_mm": 0.0,
                    "volume_ml": 0.0, "mean_hu": math.nan, "type": "unknown", "calcified": False,
                    "bbox": (0, 0, 0, 0, 0, 0), "mask": np.zeros((0, 0, 0), bool)})
        out.update(side_and_lobe(c, shape, lung_mask, affine))
        return out
    idx = np.argwhere(mask)
    k0, j0, i0 = idx.min(0)
    k1, j1, i1 = idx.max(0) + 1
    tight = mask[k0:k1, j0:j1, i0:i1]
    centre = idx.mean(0) + lo
    m = mask_measurements(tight, spacing)
    vals = hu[mask]
    inner = _edt(mask, spacing)
    core = vals[inner[mask] >= 0.5 * inner.max()] if inner.max() > 0 else vals
    out.update({"center_kji": [float(v) for v in centre], "long_mm": m["long_mm"], "short_mm": m["short_mm"],
                "mean_diameter_mm": m["mean_diameter_mm"], "volume_ml": round(m["volume_ml"], 4),
                "mean_hu": round(float(vals.mean()), 1), "core_hu_mean": round(float(core.mean()), 1),
                "calcified": bool(np.median(core) >= CALCIFIED_HU),
                "calcified_fraction": round(float((vals >= CALCIFIED_HU).mean()), 3),
                "axial_k": int(m["axial_k"] + k0 + lo[0]),
                "long_ends_kji": _ends(m["long_ends"], m["axial_k"] + k0 + lo[0], j0 + lo[1], i0 + lo[2]),
                "short_ends_kji": _ends(m["short_ends"], m["axial_k"] + k0 + lo[0], j0 + lo[1], i0 + lo[2]),
                "bbox": (int(k0 + lo[0]), int(k1 + lo[0]), int(j0 + lo[1]), int(j1 + lo[1]), int(i0 + lo[2]),
                         int(i1 + lo[2])),
                "mask": tight})
    out.update(nodule_type(vals, tight, hu[k0:k1, j0:j1, i0:i1], spacing))
    out.update(side_and_lobe(centre, shape, lung_mask, affine))
    return out


def _ends(ends, k, j0, i0):
    if ends is None:
        return None
    return [[float(k), float(p[0] + j0), float(p[1] + i0)] for p in ends]


def paste_mask(result: dict, shape) -> np.ndarray:
    """The nodule's mask from ``measure_nodule`` on the whole grid ``shape``."""
    full = np.zeros(shape, bool)
    k0, k1, j0, j1, i0, i1 = result["bbox"]
    if k1 > k0:
        full[k0:k1, j0:j1, i0:i1] = result["mask"]
    return full
