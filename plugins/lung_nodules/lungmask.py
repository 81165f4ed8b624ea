"""Lung mask of the nodule plugin: both lungs labelled, trachea and main bronchi excluded.

numpy/scipy only (no torch), arrays ``[k, j, i]``, spacings ``(sk, sj, si)`` in mm.

    labels = lung_mask(hu, spacing_kji, affine)   # 0 outside, RIGHT_LUNG = 1, LEFT_LUNG = 2
    lung_volumes_ml(labels, spacing_kji)           # {"right": ..., "left": ...}

The mask is computed on a coarse grid (about 2 mm) and brought back to the input grid:

1. body: the largest component above -500 HU, its holes filled slice by slice;
2. air inside the body below -400 HU; components that touch the image border, are small (the
   oesophagus) or nearly pure air (median below -950 HU: bowel and stomach gas) are dropped;
3. airways: the trachea is found in the top slices (a small round air region near the midline) and
   followed down slice by slice until its branches open into the lung; it is removed with a margin;
4. holes filled (vessels inside) and a closing with a ball of ``CLOSING_MM`` along the pleura, so
   that juxtapleural nodules stay inside the lung they sit on;
5. left and right: the two largest components, or, where the lungs touch at the anterior
   junction, the two parts that survive an erosion, grown back by nearest distance.  The side
   comes from the LPS x of each part's centre (x grows towards the patient's left).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

RIGHT_LUNG, LEFT_LUNG = 1, 2
SIDE_NAMES = {RIGHT_LUNG: "right", LEFT_LUNG: "left"}
COARSE_MM = 2.0
CLOSING_MM = 10.0  # ball radius of the pleural closing (keeps juxtapleural nodules up to ~20 mm inside)
AIR_HU, BODY_HU = -400.0, -500.0
AIRWAY_HU = -900.0
GAS_MEDIAN_HU = -950.0  # an air component with a median below this is gas, not lung


# ---------------------------------------------------------------------------------------------
# grids


def resample(array: np.ndarray, spacing_kji, new_spacing_kji, order: int = 1, shape=None):
    """``array`` on a grid of ``new_spacing_kji`` covering the same extent (voxel centres kept
    centred); returns ``(array, actual_spacing_kji)``.  ``shape`` forces the output shape."""
    spacing = np.asarray(spacing_kji, float)
    if shape is None:
        shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(array.shape, spacing, new_spacing_kji))
    actual = np.asarray(array.shape) * spacing / np.asarray(shape)
    if tuple(shape) == array.shape:
        return array.copy(), spacing
    scale = actual / spacing
    offset = 0.5 * scale - 0.5
    out_dtype = array.dtype if order == 0 else np.float32
    src = array if order == 0 else array.astype(np.float32, copy=False)
    out = ndimage.affine_transform(src, scale, offset=offset, output_shape=tuple(shape), order=order,
                                   mode="nearest", output=out_dtype)
    return out, actual


def grid_affine(affine: np.ndarray, spacing_kji, new_spacing_kji) -> np.ndarray:
    """The affine of ``resample``'s output grid."""
    spacing = np.asarray(spacing_kji, float)[::-1]  # (si, sj, sk)
    new = np.asarray(new_spacing_kji, float)[::-1]
    scale = new / spacing
    out = np.array(affine, float)
    out[:3, :3] = affine[:3, :3] * scale[None, :]
    out[:3, 3] = affine[:3, :3] @ (0.5 * scale - 0.5) + affine[:3, 3]
    return out


def ball(radius_mm: float, spacing_kji) -> np.ndarray:
    r = [max(0, int(np.floor(radius_mm / s))) for s in spacing_kji]
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    s = spacing_kji
    return (zz * s[0]) ** 2 + (yy * s[1]) ** 2 + (xx * s[2]) ** 2 <= radius_mm ** 2 + 1e-6


# ---------------------------------------------------------------------------------------------
# the mask


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    out = np.empty_like(mask)
    for k in range(mask.shape[0]):
        out[k] = ndimage.binary_fill_holes(mask[k])
    return out


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _airways(hu: np.ndarray, air: np.ndarray, spacing) -> np.ndarray:
    """Trachea and main bronchi: found in the top slices, followed down until they open into lung."""
    sk, sj, si = spacing
    px_area = sj * si
    depth, rows, cols = hu.shape
    low = hu < AIRWAY_HU
    out = np.zeros_like(air)
    # the top of the volume is the slice of largest LPS z; callers pass arrays with k towards head
    # or feet, so start at the end whose lungs are smallest (the apex)
    per_slice = air.reshape(depth, -1).sum(1)
    order = range(depth) if per_slice[: depth // 4 + 1].sum() <= per_slice[-(depth // 4 + 1):].sum() \
        else range(depth - 1, -1, -1)
    order = list(order)
    prev = None
    max_area = 600.0  # mm^2: a trachea is 1.5-5 cm^2, a main bronchus about 1-2 cm^2
    for k in order:
        lab, n = ndimage.label(low[k])
        if n == 0:
            if prev is not None:
                break
            continue
        areas = ndimage.sum_labels(np.ones_like(lab), lab, np.arange(1, n + 1)) * px_area
        if prev is None:
            # start: a round air region of trachea size near the middle of the body, not lung
            body_c = np.array([rows / 2, cols / 2])
            best = None
            coms = ndimage.center_of_mass(low[k], lab, np.arange(1, n + 1))
            for idx, (a, c) in enumerate(zip(areas, coms)):
                if 80 <= a <= max_area and abs(c[1] - body_c[1]) * si < 40:
                    bb = ndimage.find_objects((lab == idx + 1).astype(np.int8))[0]
                    h, w = (bb[0].stop - bb[0].start) * sj, (bb[1].stop - bb[1].start) * si
                    if max(h, w) < 2.2 * min(h, w) and (best is None or a > best[0]):
                        best = (a, idx + 1)
            if best is None:
                continue
            cur = lab == best[1]
        else:
            grown = ndimage.binary_dilation(prev, iterations=2)
            hit = np.unique(lab[grown & (lab > 0)])
            hit = [h for h in hit if areas[h - 1] <= max_area * 0.6 or areas[h - 1] <= 1.6 * prev.sum() * px_area]
            if not hit:
                break
            cur = np.isin(lab, hit)
        out[k] = cur
        prev = cur
    return out


def lung_mask(hu: np.ndarray, spacing_kji, affine: np.ndarray | None = None, coarse_mm: float = COARSE_MM):
    """Label map (uint8) of the lungs on ``hu``'s grid: RIGHT_LUNG, LEFT_LUNG, 0 elsewhere."""
    spacing = np.asarray(spacing_kji, float)
    target = np.maximum(spacing, coarse_mm)
    small, cs = resample(np.asarray(hu), spacing, target, order=1)
    labels_small = _lung_mask_coarse(small, cs, affine, spacing)
    if labels_small.shape == hu.shape:
        return labels_small
    out, _ = resample(labels_small, cs, spacing, order=0, shape=hu.shape)
    return out.astype(np.uint8)


def _lung_mask_coarse(hu: np.ndarray, spacing, affine, full_spacing) -> np.ndarray:
    voxel_ml = float(np.prod(spacing)) / 1000.0
    body = _largest(hu > BODY_HU)
    body = _fill_slices(body)
    air = (hu < AIR_HU) & body
    # outside air that slipped in through gaps (the table, an open slice edge) touches the border
    lab, n = ndimage.label(air)
    if n == 0:
        return np.zeros(hu.shape, np.uint8)
    sizes = np.bincount(lab.ravel()).astype(float) * voxel_ml
    sizes[0] = 0
    border = np.zeros(n + 1, bool)
    for sl in (np.s_[:, 0, :], np.s_[:, -1, :], np.s_[:, :, 0], np.s_[:, :, -1]):
        border[np.unique(lab[sl])] = True
    keep_min = max(0.02 * sizes.max(), 3.0 if hu.shape[0] * spacing[0] > 60 else 0.5)
    keep = (sizes >= keep_min) & ~border
    keep[0] = False
    # bowel and stomach gas is nearly pure air; lung parenchyma (vessels, interstitium) is denser
    ids = np.nonzero(keep)[0]
    if len(ids):
        med = np.asarray(ndimage.median(hu, lab, ids))
        keep[ids[med < GAS_MEDIAN_HU]] = False
    lungs = keep[lab]
    airway = _airways(hu, lungs, spacing)
    if airway.any():
        lungs &= ~ndimage.binary_dilation(airway, structure=ball(2.5, spacing))
        lungs = _drop_small(lungs, voxel_ml, 0.02)
    # holes (vessels) and the pleural closing (juxtapleural nodules)
    halves = _split(lungs, spacing, affine)
    out = np.zeros(hu.shape, np.uint8)
    pad = [int(np.ceil(CLOSING_MM / s)) + 1 for s in spacing]
    st = ball(CLOSING_MM, spacing)
    for lab_id, part in halves.items():
        if not part.any():
            continue
        bb = ndimage.find_objects(part.astype(np.int8))[0]
        sl = tuple(slice(max(0, b.start - p), min(n, b.stop + p)) for b, p, n in zip(bb, pad, part.shape))
        sub = np.pad(part[sl], [(p, p) for p in pad])
        closed = ndimage.binary_closing(sub, structure=st)
        closed = closed[tuple(slice(p, -p) for p in pad)]
        closed = _fill_slices(closed) & body[sl]
        if airway.any():
            closed &= ~airway[sl]
        region = out[sl]
        region[closed & (region == 0)] = lab_id
    return out


def _drop_small(mask, voxel_ml, frac):
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel()).astype(float)
    sizes[0] = 0
    return (sizes >= frac * sizes.max())[lab] & mask


def _side_of(part: np.ndarray, affine, shape) -> int:
    com = np.array(ndimage.center_of_mass(part))  # (k, j, i)
    if affine is None:
        x = com[2] - shape[2] / 2.0
    else:
        # only the sign matters: the LPS x direction of the offset from the grid's centre
        x = float(np.asarray(affine)[0, :3] @ np.array([com[2] - shape[2] / 2.0, com[1] - shape[1] / 2.0,
                                                         com[0] - shape[0] / 2.0]))
    return LEFT_LUNG if x > 0 else RIGHT_LUNG


def _split(lungs: np.ndarray, spacing, affine) -> dict[int, np.ndarray]:
    """Two lungs: the two largest components, or the two parts left after eroding a bridge."""
    lab, n = ndimage.label(lungs)
    if n == 0:
        return {}
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    if n >= 2 and sizes[order[1]] > 0.25 * sizes[order[0]]:
        parts = [lab == order[0], lab == order[1]]
        rest = lungs & ~(parts[0] | parts[1])
    else:
        main = lab == order[0]
        parts = None
        er = main
        for _ in range(8):
            er = ndimage.binary_erosion(er, structure=ndimage.generate_binary_structure(3, 1))
            el, en = ndimage.label(er)
            if en >= 2:
                s = np.bincount(el.ravel())
                s[0] = 0
                o = np.argsort(s)[::-1]
                if s[o[1]] > 0.25 * s[o[0]]:
                    seeds = np.zeros(main.shape, np.uint8)
                    seeds[el == o[0]] = 1
                    seeds[el == o[1]] = 2
                    _, idx = ndimage.distance_transform_edt(seeds == 0, sampling=spacing, return_indices=True)
                    nearest = seeds[tuple(idx)]
                    parts = [main & (nearest == 1), main & (nearest == 2)]
                    break
            if not er.any():
                break
        if parts is None:
            parts = [main]
        rest = lungs & ~main
    out: dict[int, np.ndarray] = {}
    for p in parts:
        side = _side_of(p, affine, lungs.shape)
        out[side] = out[side] | p if side in out else p
    if len(parts) == 2 and len(out) == 1:  # both on one side of the centre: order by x instead
        xs = [float(np.asarray(affine if affine is not None else np.eye(4))[0, 0]) * ndimage.center_of_mass(p)[2]
              for p in parts]
        a, b = (parts[0], parts[1]) if xs[0] < xs[1] else (parts[1], parts[0])
        out = {RIGHT_LUNG: a, LEFT_LUNG: b}
    # small leftover pieces (separate lobes in a thin slab) join the nearer side
    if rest.any():
        seeds = np.zeros(lungs.shape, np.uint8)
        for side, p in out.items():
            seeds[p] = side
        _, idx = ndimage.distance_transform_edt(seeds == 0, sampling=spacing, return_indices=True)
        nearest = seeds[tuple(idx)]
        for side in list(out):
            out[side] = out[side] | (rest & (nearest == side))
    return out


def lung_volumes_ml(labels: np.ndarray, spacing_kji) -> dict[str, float]:
    voxel_ml = float(np.prod(spacing_kji)) / 1000.0
    counts = np.bincount(labels.ravel(), minlength=3)
    return {SIDE_NAMES[s]: float(counts[s]) * voxel_ml for s in (RIGHT_LUNG, LEFT_LUNG)}
