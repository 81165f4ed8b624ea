"""The classical CAD baseline: a multi-scale Hessian "dot" filter inside the lung mask.

Li, Sone and Doi's dot enhancement filter (Med. Phys. 2003): at scale s the Hessian of the
Gaussian-smoothed image has eigenvalues l1 <= l2 <= l3; a bright blob has all three negative and
alike, a vessel one near zero, a wall two near zero.  The dot response is
``s^2 |l3|^2 / |l1|`` where l3 < 0 (else 0), normalised across scales, so its maximum over scales
peaks at blob centres with a scale that tracks their radius.  Candidates are its local maxima
inside the lung; simple false-positive rules then drop what is not nodule-like:

* ``min_hu``: the smoothed HU at the centre (ground-glass nodules are -700 HU and up);
* ``max_elongation``: l3 / l1 too small means a tube (a vessel) at the best scale;
* ``min_response``: the response itself (the operating point scans this).

The score in [0, 1] is a logistic of the response; ``tune`` fits the rules on training volumes
with inserted nodules (the same data the network is trained on), maximising the sensitivity at
2 false positives per scan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

SCALES_MM = (1.0, 1.6, 2.5, 4.0, 6.0)


@dataclass
class CADParams:
    scales_mm: tuple[float, ...] = SCALES_MM
    min_hu: float = -650.0
    max_elongation: float = 0.25  # l3/l1 below this: a tube
    response_scale: float = 60.0  # the response (HU/mm^2 units) that scores 0.5
    min_score: float = 0.05
    max_candidates: int = 400

    def to_dict(self):
        return asdict(self)


def hessian_eigenvalues(img: np.ndarray, sigma_mm: float, spacing_kji, where: np.ndarray,
                        min_smoothed: float | None = None):
    """Eigenvalues (ascending; HU/mm^2) of the Hessian of ``img`` smoothed by a Gaussian of
    ``sigma_mm``, at the voxels of ``where`` (shape ``(n, 3)``), and ``where`` itself, narrowed to
    voxels whose smoothed value is at least ``min_smoothed`` when given (saves the time spent on
    empty lung)."""
    spacing = np.asarray(spacing_kji, float)
    g = ndimage.gaussian_filter(img, sigma_mm / spacing)
    if min_smoothed is not None:
        where = where & (g >= min_smoothed)
    h = np.empty((int(where.sum()), 3, 3), np.float32)
    for a in range(3):
        ga = np.gradient(g, spacing[a], axis=a)
        for b in range(a, 3):
            d = np.gradient(ga, spacing[b], axis=b)[where]
            h[:, a, b] = d
            h[:, b, a] = d
    return np.linalg.eigvalsh(h), where


def dot_response(hu: np.ndarray, spacing_kji, mask: np.ndarray, params: CADParams):
    """Max over scales of the dot response inside ``mask``, the winning scale (mm) and l3/l1 there."""
    img = np.clip(np.asarray(hu, np.float32), -1000, 400)
    best = np.zeros(img.shape, np.float32)
    scale = np.zeros(img.shape, np.float32)
    ratio = np.zeros(img.shape, np.float32)
    mask = mask.astype(bool)
    for s in params.scales_mm:
        ev, where = hessian_eigenvalues(img, s, spacing_kji, mask, params.min_hu - 150.0)
        l1, l3 = ev[:, 0], ev[:, 2]
        resp = np.where(l3 < 0, (l3 * l3) / np.maximum(np.abs(l1), 1e-6), 0.0).astype(np.float32) * (s * s)
        b = best[where]
        better = resp > b
        idx = tuple(a[better] for a in np.nonzero(where))
        best[idx] = resp[better]
        scale[idx] = s
        ratio[idx] = (l3 / np.minimum(l1, -1e-6))[better]
    return best, scale, ratio


def candidates(hu: np.ndarray, spacing_kji, lung: np.ndarray, params: CADParams | None = None):
    """CAD detections as dicts: ``center_kji``, ``diameter_mm`` (about 2.8 x the best scale), ``score``,
    ``response``, ``elongation``, ``hu``; and the response map scaled to [0, 1] (the explanation)."""
    params = params or CADParams()
    lung = lung.astype(bool)
    resp, scale, ratio = dot_response(hu, spacing_kji, lung, params)
    spacing = np.asarray(spacing_kji, float)
    size = [max(3, int(2 * np.ceil(2.0 / s) + 1)) for s in spacing]
    peaks = (resp == ndimage.maximum_filter(resp, size=size)) & (resp > 0) & lung
    pts = np.argwhere(peaks)
    smooth = ndimage.gaussian_filter(np.asarray(hu, np.float32), 1.0 / spacing)
    out = []
    for p in pts:
        t = tuple(p)
        r = float(resp[t])
        score = 1.0 / (1.0 + (params.response_scale / max(r, 1e-6)) ** 2)
        el = float(ratio[t])
        h = float(smooth[t])
        if score < params.min_score or h < params.min_hu or el < params.max_elongation:
            continue
        out.append({"center_kji": [float(x) for x in p], "diameter_mm": float(2.8 * scale[t]), "score": score,
                    "response": r, "elongation": el, "hu": h, "source": "cad"})
    out.sort(key=lambda d: -d["score"])
    out = nms(out, spacing)[: params.max_candidates]
    heat = (resp / (resp + params.response_scale)).astype(np.float32)
    return out, heat


def nms(dets: list[dict], spacing_kji, overlap: float = 0.5) -> list[dict]:
    """Greedy non-maximum suppression in 3D: a detection whose centre lies within ``overlap`` x the
    radius of a higher-scoring one (or that one within its own) is dropped.  ``dets`` sorted by score."""
    spacing = np.asarray(spacing_kji, float)
    kept: list[dict] = []
    for d in dets:
        c = np.asarray(d["center_kji"]) * spacing
        ok = True
        for e in kept:
            dist = float(np.linalg.norm(c - np.asarray(e["center_kji"]) * spacing))
            if dist < overlap * max(d["diameter_mm"], e["diameter_mm"]) + 1.0:
                ok = False
                break
        if ok:
            kept.append(d)
    return kept
