"""Classical baselines from the same prompts and the same windows as the network (segmenter.py):
region growing (SimpleITK ConfidenceConnected) and a graph method, a geodesic seed competition
(GrowCut-like: every voxel goes to the seed set that reaches it by the cheaper path, scikit-image
``MCP_Geometric``; the lesion's path cost grows with the distance of the intensity from the
clicked intensity and with the image gradient, the background's with the likeness to it).  The
window's border and the negative clicks seed the background.  A random walker (scikit-image) was
tried first: from one click it gave Dice below 0.15 on the training lesions at 5-9 s per window,
so the stronger graph method replaced it.

Both are stateless: every click recomputes from all the clicks so far (the previous mask only
places the window, as for the network).  Region growing drops the voxels nearer a negative click
than any positive one.
Their parameters (``TUNED``) were chosen by ``tune`` on the training lesions (data.py), 1-click
Dice, over the grids in ``GRIDS``.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from plugins.lesion_segmentation.network import geodesic_distances, normalise
from plugins.lesion_segmentation.segmenter import WindowSegmenter

GRIDS = {
    "region-growing": {"multiplier": (1.0, 1.5, 2.0, 2.5, 3.0, 4.0), "radius": (1, 2, 3), "iterations": (0, 1, 3),
                       "smooth": (0.0, 1.0)},
    "geodesic": {"alpha": (1.0, 3.0, 10.0, 30.0), "beta": (0.0, 3.0, 10.0), "tol": (0.75, 1.5), "smooth": (1.0,)},
}
TUNED = {  # tune() on the training lesions (evaluate.py --tune); see tuning_log.json
    "region-growing": {"multiplier": 3.0, "radius": 2, "iterations": 0, "smooth": 0.0},
    "geodesic": {"alpha": 10.0, "beta": 3.0, "tol": 0.75, "smooth": 1.0},
}


def _seed_ball(shape, pts, radius=2):
    out = np.zeros(shape, bool)
    for p in pts:
        c = np.rint(p).astype(int)
        if np.any(c < 0) or np.any(c >= np.array(shape)):
            continue
        lo, hi = np.maximum(c - radius, 0), np.minimum(c + radius + 1, shape)
        g = np.indices(hi - lo).reshape(3, -1).T + lo
        d = ((g - p) ** 2).sum(1) <= radius * radius
        out[tuple(g[d].T)] = True
    return out


class _Classical(WindowSegmenter):
    p: dict

    def _prepare(self, w, image, modality, pos, neg):
        """The window's image, normalised as the network sees it and smoothed as tuned, and the clicks
        in window coordinates."""
        x = normalise(w.sample(image), modality)
        if self.p["smooth"]:
            x = ndimage.gaussian_filter(x, self.p["smooth"])
        return x, [w.to_window(p) for p in pos], [w.to_window(p) for p in neg]


class RegionGrowing(_Classical):
    def __init__(self, **params):
        self.p = {**TUNED["region-growing"], **params}

    def _window_prob(self, w, image, modality, pos, neg, prev):
        import SimpleITK as sitk

        x, pos_w, neg_w = self._prepare(w, image, modality, pos, neg)
        seeds = [tuple(int(v) for v in np.clip(np.rint(p), 0, w.roi - 1))[::-1] for p in pos_w]
        img = sitk.GetImageFromArray(x.astype(np.float32))
        out = sitk.ConfidenceConnected(img, seedList=seeds, numberOfIterations=int(self.p["iterations"]),
                                       multiplier=float(self.p["multiplier"]),
                                       initialNeighborhoodRadius=int(self.p["radius"]), replaceValue=1)
        mask = sitk.GetArrayFromImage(out) > 0
        if neg_w:
            g = np.indices(mask.shape).reshape(3, -1).T.astype(np.float32)
            dpos = np.min([((g - p) ** 2).sum(1) for p in pos_w], axis=0)
            dneg = np.min([((g - p) ** 2).sum(1) for p in neg_w], axis=0)
            mask &= (dpos <= dneg).reshape(mask.shape)
        return mask.astype(np.float32), pos_w


class Geodesic(_Classical):
    def __init__(self, **params):
        self.p = {**TUNED["geodesic"], **params}

    def _window_prob(self, w, image, modality, pos, neg, prev):
        x, pos_w, neg_w = self._prepare(w, image, modality, pos, neg)
        fg = _seed_ball(x.shape, pos_w)
        if not fg.any():
            return np.zeros(x.shape, np.float32), pos_w
        bg = _seed_ball(x.shape, neg_w) & ~fg
        bg[[0, -1]] = bg[:, [0, -1]] = bg[:, :, [0, -1]] = True
        d = np.abs(x - float(x[fg].mean())) / (float(x.std()) + 1e-6)
        dist_fg, dist_bg = geodesic_distances(x, d, np.argwhere(fg), np.argwhere(bg), self.p)
        return (dist_fg < dist_bg).astype(np.float32), pos_w


METHODS = {"region-growing": RegionGrowing, "geodesic": Geodesic}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def one_click_dice(method, case_image, vox, modality, truth) -> float:
    from plugins.lesion_segmentation.data import interior_point

    c = interior_point(truth, vox)
    sl, _, m = method.segment(case_image, vox, modality, [c])
    out = np.zeros(truth.shape, bool)
    out[sl] = m
    return dice(out, truth)


def tune(lesions, log=print) -> dict:
    """The best parameters per method (mean 1-click Dice) on ``lesions``: (image, vox, modality, truth)."""
    best = {}
    for name, grid in GRIDS.items():
        keys = list(grid)
        scores = []
        for values in itertools.product(*(grid[k] for k in keys)):
            params = dict(zip(keys, values))
            m = METHODS[name](**params)
            d = float(np.mean([one_click_dice(m, *les) for les in lesions]))
            scores.append((d, params))
            log(f"{name} {params} {d:.3f}")
        best[name] = max(scores, key=lambda t: t[0])
    return best
