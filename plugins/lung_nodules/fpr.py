"""Second-stage false-positive reduction: the network's candidates, scored again by a small classifier.

    cands = candidates(prob, spacing, where)                  # local maxima of the heatmap, low threshold
    x = features(hu, prob, lung, spacing, cands)              # (n, N_FEATURES) float32
    scores = Classifier.load().score(x)                        # nodule probability per candidate

What it adds to the network (classical CAD pipelines do the same): the heatmap is read at a low
threshold (high sensitivity: a weak response still makes a candidate) and each candidate is
described by what a reader looks at, measured on the CT around it:

* the network: its peak (as a logit), the mean probability within 3 mm, the size of its response;
* the image: the multi-scale Hessian at the candidate (Gaussian scales 1-5.5 mm, scale-normalised
  eigenvalues: a blob has three strongly negative ones, a vessel one near zero, a wall two), the
  mean HU in spheres of 2, 4 and 7 mm, the dense fraction (> -500 HU) in spheres and shells up to
  11 mm, the HU spread;
* the dense object under it (voxels > -500 HU connected to the centre within 12 mm): its volume, how
  much of it leaves the 12 mm box (a vessel runs on, a nodule ends) and its elongation;
* the lung: the distance to the lung's edge and the lung fraction within 7 mm (pleura, hilum).

A candidate's extent is the region above half-way between the scan's background probability (the
median in the lung) and its peak, so a weak peak is not smeared over the background plateau and
swallowed by a neighbour in the non-maximum suppression.

The classifier is a one-hidden-layer perceptron (torch, 16 units) on standardised features,
trained by ``train.py --stage fpr`` only on the training CTs with inserted nodules (the held-out
chest CT never); its parameters are a JSON file of a few kB (``PARAMS``); numpy evaluates it.

Status: a candidate, NOT shipped.  On the held-out benchmark (tests/benchmarks/bench_nodules.py
--fpr PARAMS) it ranked worse than the network's own peaks (solid >= 6 mm at 1 FP/scan 75% against
83%): its training candidates come from the CTs the network itself was trained on, where the
network's false positives had already been trained away, so it learned to trust the network's score
more than it deserves on an unseen CT; the features of the image alone separated vessels from
nodules less well still (46%).  See train.py's stage 3 for how to reproduce it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from plugins.lung_nodules.cad import nms

PARAMS = Path(__file__).resolve().parent / "fpr.json"
SCALES_MM = (1.0, 2.0, 3.5, 5.5)
BOX_MM = 12.0  # half size of the box read around each candidate
DENSE_HU = -500.0
CAND_MARGIN = 0.02  # candidates: peaks at least this far above the scan's background probability
MAX_CANDIDATES = 400
BLOB_SIGMA_MM = 1.5
BLOB_MIN_HU = -450.0
MAX_BLOBS = 400
SCORE_RULE = "second-stage classifier on the network's candidate (heatmap, Hessian, HU, shape, lung features)"
FEATURES = (
    ["net_logit", "net_mean3", "net_log_volume", "net_rel_peak"]
    + [f"hess{s:g}_l{n}" for s in SCALES_MM for n in (1, 2, 3)]
    + ["hu_mean2", "hu_mean4", "hu_mean7", "hu_std4", "hu_max3"]
    + ["dense_r3", "dense_r5", "dense_r7", "dense_shell7_11"]
    + ["obj_log_volume", "obj_leaves_box", "obj_elongation"]
    + ["lung_edge_mm", "lung_frac7"]
)
N_FEATURES = len(FEATURES)


def background(prob: np.ndarray, where: np.ndarray) -> float:
    v = prob[where]
    if v.size > 2_000_000:
        v = v[:: v.size // 1_000_000]
    return float(np.median(v)) if v.size else 0.0


def candidates(prob: np.ndarray, spacing_kji, where: np.ndarray, floor: float | None = None,
               margin: float = CAND_MARGIN, max_n: int = MAX_CANDIDATES) -> list[dict]:
    """Local maxima (3 mm) of ``prob`` inside ``where`` at least ``margin`` above the background
    ``floor``; each one's extent the region above half-way from the floor to its peak; NMS."""
    sp = np.asarray(spacing_kji, float)
    if floor is None:
        floor = background(prob, where)
    size = [max(3, 2 * int(round(3.0 / s)) + 1) for s in sp]
    mx = ndimage.maximum_filter(prob, size=size)
    pts = np.argwhere((prob == mx) & (prob >= floor + margin) & where)
    pts = pts[np.argsort(-prob[tuple(pts.T)], kind="stable")][: 3 * max_n]
    half = np.ceil(20.0 / sp).astype(int)
    out = []
    for p in pts:
        score = float(prob[tuple(p)])
        sl = tuple(slice(max(0, a - h), a + h + 1) for a, h in zip(p, half))
        sub = prob[sl] >= floor + 0.5 * (score - floor)
        lab, _ = ndimage.label(sub)
        local = tuple(a - s.start for a, s in zip(p, sl))
        region = lab == lab[local]
        idx = np.argwhere(region)
        w = prob[sl][region] - floor
        centre = (idx * w[:, None]).sum(0) / max(w.sum(), 1e-9) + np.array([s.start for s in sl])
        extent = (idx.max(0) - idx.min(0) + 1) * sp
        vol_mm3 = float(region.sum() * np.prod(sp))
        out.append({"center_kji": [float(c) for c in centre], "peak_kji": [int(c) for c in p], "score": score,
                    "net_score": score, "extent_kji_mm": [float(e) for e in extent], "volume_mm3": vol_mm3,
                    "diameter_mm": float(2 * (3 * vol_mm3 / (4 * np.pi)) ** (1 / 3)), "source": "network"})
    out.sort(key=lambda d: -d["score"])
    return nms(out, sp)[:max_n]


def image_candidates(hu: np.ndarray, prob: np.ndarray, spacing_kji, lung: np.ndarray, taken: list[dict],
                     sigma_mm: float = BLOB_SIGMA_MM, min_hu: float = BLOB_MIN_HU,
                     max_n: int = MAX_BLOBS) -> list[dict]:
    """Blob candidates from the image itself, for nodules the network hardly responds to: local maxima
    (5 mm) of the CT smoothed at ``sigma_mm`` inside the lung, dense enough, with a blob-shaped Hessian
    (all three eigenvalues negative at 2 or 3.5 mm), not within 5 mm of a network candidate (``taken``)."""
    sp = np.asarray(spacing_kji, float)
    g = ndimage.gaussian_filter(np.clip(hu, -1000, 400).astype(np.float32), sigma_mm / sp)
    size = [max(3, 2 * int(round(2.5 / s)) + 1) for s in sp]
    pts = np.argwhere((g == ndimage.maximum_filter(g, size=size)) & (g >= min_hu) & lung)
    if len(pts) == 0:
        return []
    pts = pts[np.argsort(-g[tuple(pts.T)], kind="stable")]
    tc = np.array([d["center_kji"] for d in taken], float).reshape(-1, 3) * sp
    half = np.ceil(BOX_MM / sp).astype(int)
    kernels = _kernels(sp, half)[1:3]
    out = []
    for p in pts:
        if len(tc) and np.min(np.linalg.norm(tc - p * sp, axis=1)) < 5.0:
            continue
        h = np.clip(_crop(hu, p, half, -1000.0).astype(np.float32), -1000.0, 400.0)
        blob = False
        for ks in kernels:
            hv = np.tensordot(ks, h, axes=3)
            m = np.array([[hv[0], hv[1], hv[2]], [hv[1], hv[3], hv[4]], [hv[2], hv[4], hv[5]]])
            blob |= bool(np.linalg.eigvalsh(m)[2] < 0)
        if not blob:
            continue
        s = float(prob[tuple(p)])
        out.append({"center_kji": [float(c) for c in p], "peak_kji": [int(c) for c in p], "score": s, "net_score": s,
                    "extent_kji_mm": [6.0, 6.0, 6.0], "volume_mm3": 0.0, "diameter_mm": 6.0, "source": "image"})
        if len(out) >= max_n:
            break
    return out


def _kernels(spacing_kji, half):
    """Scale-normalised second-derivative-of-Gaussian kernels (s^2 d2G/da db) on the box, per scale."""
    sp = np.asarray(spacing_kji, float)
    axes = [np.arange(-h, h + 1) * s for h, s in zip(half, sp)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    pos = (z, y, x)
    out = []
    for s in SCALES_MM:
        g = np.exp(-(z * z + y * y + x * x) / (2 * s * s))
        g /= g.sum()
        ks = np.empty((6,) + g.shape, np.float32)
        n = 0
        for a in range(3):
            for b in range(a, 3):
                k = g * (pos[a] * pos[b] / s**4 - (1.0 / s**2 if a == b else 0.0))
                ks[n] = k * s * s
                n += 1
        out.append(ks)
    return out


def _sphere_masks(spacing_kji, half):
    sp = np.asarray(spacing_kji, float)
    axes = [np.arange(-h, h + 1) * s for h, s in zip(half, sp)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return np.sqrt(z * z + y * y + x * x)


def _crop(a, centre, half, fill):
    lo = np.asarray(centre, int) - half
    hi = lo + 2 * half + 1
    src = tuple(slice(max(0, l_), min(n, h)) for l_, h, n in zip(lo, hi, a.shape))
    pad = [(max(0, -l_), max(0, h - n)) for l_, h, n in zip(lo, hi, a.shape)]
    out = a[src]
    if any(p != (0, 0) for p in pad):
        out = np.pad(out, pad, mode="constant", constant_values=fill)
    return out


def features(hu: np.ndarray, prob: np.ndarray, lung: np.ndarray, spacing_kji, cands: list[dict],
             temperature: float = 4.0, floor: float = 0.0) -> np.ndarray:
    """Per candidate the ``FEATURES`` row, all on one grid (the network's working grid)."""
    sp = np.asarray(spacing_kji, float)
    half = np.ceil(BOX_MM / sp).astype(int)
    kernels = _kernels(sp, half)
    r = _sphere_masks(sp, half)
    balls = {k: r <= k for k in (2.0, 3.0, 4.0, 5.0, 7.0)}
    shell = (r > 7.0) & (r <= 11.0)
    iu = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    out = np.zeros((len(cands), N_FEATURES), np.float32)
    for n, d in enumerate(cands):
        c = np.clip(np.rint(d["peak_kji"] if "peak_kji" in d else d["center_kji"]).astype(int), 0,
                    np.array(hu.shape) - 1)
        h = np.clip(_crop(hu, c, half, -1000.0).astype(np.float32), -1000.0, 400.0)
        p = _crop(prob, c, half, 0.0).astype(np.float32)
        lg = _crop(lung, c, half, 0).astype(bool)
        peak = float(np.clip(d.get("net_score", d["score"]), 1e-6, 1 - 1e-6))
        row = [temperature * np.log(peak / (1 - peak)), float(p[balls[3.0]].mean()),
               np.log1p(d.get("volume_mm3", 0.0)), (peak - floor) / max(1 - floor, 1e-6)]
        for ks in kernels:
            hv = np.tensordot(ks, h, axes=3)
            m = np.zeros((3, 3))
            for (a, b), v in zip(iu, hv):
                m[a, b] = m[b, a] = v
            row += list(np.linalg.eigvalsh(m) / 100.0)  # ascending: l1 <= l2 <= l3
        row += [h[balls[2.0]].mean() / 1000, h[balls[4.0]].mean() / 1000, h[balls[7.0]].mean() / 1000,
                h[balls[4.0]].std() / 1000, h[balls[3.0]].max() / 1000]
        dense = h > DENSE_HU
        row += [dense[balls[3.0]].mean(), dense[balls[5.0]].mean(), dense[balls[7.0]].mean(), dense[shell].mean()]
        # the dense object under the candidate: the component of dense voxels nearest the centre
        lab, _ = ndimage.label(dense)
        ctr = tuple(half)
        v = lab[ctr]
        if v == 0 and dense[balls[3.0]].any():
            near = np.argwhere(dense & balls[3.0])
            dist = np.linalg.norm((near - half) * sp, axis=1)
            v = lab[tuple(near[np.argmin(dist)])]
        if v:
            obj = lab == v
            vol = float(obj.sum() * np.prod(sp))
            border = np.zeros(obj.shape, bool)
            border[[0, -1], :, :] = border[:, [0, -1], :] = border[:, :, [0, -1]] = True
            leaves = float((obj & border).sum()) / max(float(obj.sum()), 1.0) * 10.0
            pts = np.argwhere(obj & balls[7.0]) * sp
            if len(pts) >= 4:
                ev = np.linalg.eigvalsh(np.cov(pts.T) + 1e-3 * np.eye(3))
                elong = float(np.sqrt(ev[0] / ev[2]))
            else:
                elong = 1.0
            row += [np.log1p(vol), leaves, elong]
        else:
            row += [0.0, 0.0, 1.0]
        inside = lg[ctr]
        if lg.all():
            edge = BOX_MM
        else:
            dt = ndimage.distance_transform_edt(lg if inside else ~lg, sampling=sp)
            edge = float(dt[ctr]) * (1.0 if inside else -1.0)
        row += [min(edge, BOX_MM) / 10.0, float(lg[balls[7.0]].mean())]
        out[n] = np.asarray(row, np.float32)
    return out


class Classifier:
    """The shipped perceptron: standardise, hidden layer (tanh), logistic output."""

    def __init__(self, params: dict):
        self.mean = np.asarray(params["mean"], np.float32)
        self.std = np.asarray(params["std"], np.float32)
        self.w1 = np.asarray(params["w1"], np.float32)
        self.b1 = np.asarray(params["b1"], np.float32)
        self.w2 = np.asarray(params["w2"], np.float32)
        self.b2 = float(params["b2"])
        self.params = params
        if list(params.get("features", FEATURES)) != FEATURES:
            raise ValueError("The false-positive classifier was trained on other features; retrain it with train.py.")

    @classmethod
    def load(cls, path: Path = PARAMS) -> Classifier | None:
        path = Path(path)
        return cls(json.loads(path.read_text())) if path.exists() else None

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float32) - self.mean) / self.std
        hdn = np.tanh(z @ self.w1 + self.b1)
        return hdn @ self.w2 + self.b2

    def score(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0, np.float32)
        return (1.0 / (1.0 + np.exp(-self.logits(x)))).astype(np.float32)


def rescore(cands: list[dict], scores: np.ndarray) -> list[dict]:
    """The candidates with the classifier's score as their score (net_score kept), best first."""
    for d, s in zip(cands, scores):
        d["score"] = float(s)
        d["score_rule"] = SCORE_RULE
    return sorted(cands, key=lambda d: -d["score"])
