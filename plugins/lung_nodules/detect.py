"""Nodule detection with the trained network: lung mask, sliding window in the lung box, peaks, NMS.

    det = Detector(weights)
    out = det.run(hu, spacing_kji, affine)       # DetectionResult
    out.detections                                # dicts, best first (center_kji on hu's grid, LPS, ...)
    out.probability                               # float32 [0, 1] on hu's grid (the heatmap)

Steps: the lung mask (lungmask.py) on the input grid; the lungs' bounding box (plus a margin) is
cut out and brought to the network's 2 x 1 x 1 mm grid (axes already within 20% of it are left as
they are); the network runs tile by tile over that box only (a little context around each tile);
the sigmoid of its logits over ``TEMPERATURE`` (so that peaks do not saturate and tie at 1.0) is
the nodule probability.  Candidates are the local maxima of the probability within ``WALL_MM``
(15 mm) of the lung mask; each one's extent is the connected region above half its peak;
overlapping candidates are merged by greedy non-maximum suppression (cad.nms); its side is that of
the nearest lung.  The margin is half the largest nodule size: the lung mask's pleural closing
(lungmask.CLOSING_MM) keeps juxtapleural nodules up to about 20 mm inside, a larger one against the
chest wall or diaphragm is cut out of the mask, and with the 4 mm margin used up to version 0.2.0
its centre, outside the margin, was never searched (a 28 mm juxtapleural nodule at a lung base in
the benchmark, probability 0 at its centre; with 15 mm it scores 0.98 and no new false positive
reaches 0.6 there).  A detection's score is its peak probability.

Second stage, optional and NOT the shipped default (fpr.py; ``Detector(fpr_params=PATH)``): the
heatmap is read again at a low threshold (peaks just above the scan's background probability),
blob-shaped dense spots of the CT itself the network hardly responded to are added, and every
candidate is scored by a small classifier on features of the heatmap, the image and the lung around
it; that score replaces the peak probability (``net_score`` keeps the network's own).  On the
held-out benchmark it did not beat the network's own peaks (train.py stage 3 has the figures), so
the plugin runs without it.

Second look, optional and NOT the default (``Detector(look=True)``, the plugin's ``second_look``
parameter): candidates whose 1 mm response is smaller than 6 mm are read again by the same network on
a 16 x 24 x 24 mm patch magnified twice, and their score becomes the mean of the two readings
(``net_score`` and ``look_score`` keep both); see ``second_look`` and docs/lung-nodules.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from plugins.lung_nodules import fpr, lungmask
from plugins.lung_nodules.cad import nms
from plugins.lung_nodules.network import GRID_MM, MULTIPLE, normalise

WEIGHTS = Path(__file__).resolve().parent / "weights.pt"
LOW_SCORE = 0.02  # candidates below this peak probability are not reported at all
TILE = (64, 192, 192)  # largest tile core (voxels on the working grid)
HALO = np.array([6, 16, 16])  # context read around each tile core (12 x 16 x 16 mm)
MARGIN_MM = 10.0
TEMPERATURE = 4.0  # logits are divided by this before the sigmoid: with 1 the peaks saturate at 1.0 and tie
SCORE_RULE = "peak nodule probability of the 3D U-Net (network)"
WALL_MM = 15.0  # peaks up to this far outside the lung mask count (the side is the nearest lung's)
# The second look (opt-in: ``Detector(look=True)``, the plugin's ``second_look`` parameter; off by default):
# candidates whose 1 mm response is small are read again by the same network with the image magnified
# twice, and their score becomes the mean of the two readings.  Every choice here was fixed on training
# CTs with inserted nodules (radiomics-lung1, -lung2 and the TotalSegmentator example, two copies each),
# never on the held-out chest CT: training_log.json ``second_look`` has that table and the held-out
# benchmark, where it raised all nodules, 3-6 mm and ground-glass but lost one stress-row nodule at
# 2 FP/scan, which is why it is not the default.
LOOK_ZOOM = 2  # the patch is resampled this many times finer before the network reads it
LOOK_MM = (16.0, 24.0, 24.0)  # the patch's size (k, j, i) in mm around a candidate (24 x 32 x 32 read the same)
LOOK_RADIUS_MM = 3.0  # the magnified response's peak is read within this distance of the candidate
LOOK_BELOW_MM = 6.0  # only candidates whose 1 mm response (region above half its peak) is smaller than this
LOOK_MIN = 0.1  # ... and whose 1 mm score is at least this
LOOK_MAX = 300  # at most this many candidates per scan (best first)
LOOK_BATCH = 8
LOOK_RULE = ("mean of the 3D U-Net's peak nodule probability and its second look at the candidate magnified "
             "twice (network, small response)")


@dataclass
class DetectionResult:
    detections: list[dict]
    probability: np.ndarray  # on the input grid
    lungs: np.ndarray  # uint8 lung labels on the input grid
    timings: dict = field(default_factory=dict)
    plain: list[dict] | None = None  # with ``plain=True``: the network's peaks without the second stage


def working_spacing(spacing_kji) -> np.ndarray:
    sp = np.asarray(spacing_kji, float)
    grid = np.asarray(GRID_MM, float)
    return np.where((sp >= 0.8 * grid) & (sp <= 1.25 * grid), sp, grid)


def lung_box(lungs: np.ndarray, spacing_kji, margin_mm: float = MARGIN_MM):
    pts = np.argwhere(lungs > 0)
    if len(pts) == 0:
        return None
    m = np.ceil(margin_mm / np.asarray(spacing_kji, float)).astype(int)
    lo = np.maximum(pts.min(0) - m, 0)
    hi = np.minimum(pts.max(0) + m + 1, lungs.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def find_peaks(prob: np.ndarray, spacing_kji, where: np.ndarray, low: float = LOW_SCORE) -> list[dict]:
    """Local maxima of ``prob`` inside ``where``, each with its extent (region above half its peak)."""
    sp = np.asarray(spacing_kji, float)
    size = [max(3, 2 * int(round(3.0 / s)) + 1) for s in sp]
    mx = ndimage.maximum_filter(prob, size=size)
    pts = np.argwhere((prob == mx) & (prob >= low) & where)
    out = []
    half = np.ceil(20.0 / sp).astype(int)
    for p in pts:
        score = float(prob[tuple(p)])
        sl = tuple(slice(max(0, a - h), a + h + 1) for a, h in zip(p, half))
        sub = prob[sl] >= max(0.5 * score, low)
        lab, _ = ndimage.label(sub)
        local = tuple(a - s.start for a, s in zip(p, sl))
        region = lab == lab[local]
        idx = np.argwhere(region)
        w = prob[sl][region]
        centre = (idx * w[:, None]).sum(0) / w.sum() + np.array([s.start for s in sl])
        extent = (idx.max(0) - idx.min(0) + 1) * sp
        vol_mm3 = float(region.sum() * np.prod(sp))
        out.append({"center_kji": [float(c) for c in centre], "peak_kji": [int(c) for c in p], "score": score,
                    "extent_kji_mm": [float(e) for e in extent],
                    "diameter_mm": float(2 * (3 * vol_mm3 / (4 * np.pi)) ** (1 / 3)), "source": "network"})
    out.sort(key=lambda d: -d["score"])
    return out


def nearest_lung(lungs: np.ndarray, p, spacing_kji, radius_mm: float) -> int:
    """The label of the lung voxel nearest to voxel ``p`` (searched within ``radius_mm``; 0 if none)."""
    sp = np.asarray(spacing_kji, float)
    half = np.ceil(radius_mm / sp).astype(int) + 1
    sl = tuple(slice(max(0, a - h), a + h + 1) for a, h in zip(p, half))
    sub = lungs[sl]
    pts = np.argwhere(sub > 0)
    if not len(pts):
        return 0
    d = np.linalg.norm((pts + [s.start for s in sl] - np.asarray(p)) * sp, axis=1)
    return int(sub[tuple(pts[np.argmin(d)])])


def _pad_to(a: np.ndarray, multiple, minimum) -> tuple[np.ndarray, tuple]:
    target = [max(m0, int(np.ceil(n / m) * m)) for n, m, m0 in zip(a.shape, multiple, minimum)]
    pad = [(0, t - n) for n, t in zip(a.shape, target)]
    return np.pad(a, pad, mode="edge"), tuple(slice(0, n) for n in a.shape)


class Detector:
    def __init__(self, weights: Path = WEIGHTS, temperature: float | None = None, fpr_params: Path | None = None,
                 wall_mm: float | None = None, look: bool = False):
        """``fpr_params``: the second stage's classifier parameters (a JSON file written by train.py
        --stage fpr); None, the shipped default: the network's peaks alone.  ``wall_mm``: how far
        outside the lung mask a peak may lie (default ``WALL_MM``).  ``look``: the magnified second
        look at small candidates (``second_look``; off by default)."""
        self.weights = Path(weights)
        self.wall_mm = WALL_MM if wall_mm is None else float(wall_mm)
        self.temperature = TEMPERATURE if temperature is None else float(temperature)
        self.classifier = fpr.Classifier.load(fpr_params) if fpr_params is not None else None
        self.look = bool(look)
        self._net = None
        self._device = None

    def network(self, device: str = "cpu"):
        from plugins.lung_nodules.network import NoduleNet
        from viewer.ai.models import load_state_dict

        if self._net is None:
            self._net = NoduleNet.from_state_dict(load_state_dict(self.weights)).eval()
        if self._device != device:
            self._net = self._net.to(device)
            self._device = device
        return self._net

    def probability(self, hu_grid: np.ndarray, device: str = "cpu", context=None):
        """Nodule probability on ``hu_grid`` (already on the network's grid), tile by tile.

        Tiles of at most ``TILE`` voxels, each read with a ``HALO`` of context around it, cover the
        box with little overlap (a fraction of what a half-overlapping sliding window computes);
        the network's batch norm is fixed at inference, so a tile's output does not depend on what
        else the tile holds beyond its receptive field."""
        import contextlib

        import torch

        net = self.network(device)
        x = normalise(hu_grid)
        shape = np.array(x.shape)
        n_tiles = np.ceil(shape / np.array(TILE)).astype(int)
        core = np.ceil(shape / n_tiles).astype(int)
        out = np.zeros(x.shape, np.float32)
        starts = [range(0, s, c) for s, c in zip(shape, core)]
        tiles = [(a, b, c) for a in starts[0] for b in starts[1] for c in starts[2]]
        for n, start in enumerate(tiles):
            if context is not None:
                context.check_cancelled()
            start = np.array(start)
            stop = np.minimum(start + core, shape)
            lo = np.maximum(start - HALO, 0)
            hi = np.minimum(stop + HALO, shape)
            tile, crop = _pad_to(x[tuple(slice(a, b) for a, b in zip(lo, hi))], MULTIPLE, (8, 8, 8))
            xt = torch.from_numpy(np.ascontiguousarray(tile))[None, None].to(device)
            ctx = context.autocast() if context is not None else contextlib.nullcontext()
            with torch.inference_mode(), ctx:
                p = torch.sigmoid(net(xt).float() / self.temperature)[0, 0].cpu().numpy()[crop]
            inner = tuple(slice(a - b, a - b + (c - a)) for a, b, c in zip(start, lo, stop))
            out[tuple(slice(a, b) for a, b in zip(start, stop))] = p[inner]
            if context is not None:
                context.progress(0.1 + 0.8 * (n + 1) / len(tiles), "detecting nodules")
        return out

    def second_look(self, grid: np.ndarray, gs, dets: list[dict], device: str = "cpu", context=None,
                    min_score: float = LOOK_MIN, max_n: int = LOOK_MAX, zoom: int = LOOK_ZOOM,
                    below_mm: float = LOOK_BELOW_MM) -> None:
        """The magnified network score of each candidate in ``dets`` (centres on the working grid
        ``grid`` of spacing ``gs``) whose score is at least ``min_score`` and whose response is
        smaller than ``below_mm``, as ``d["look_score"]`` (None where not looked at).

        A ``LOOK_MM`` patch around the candidate is resampled ``zoom`` times finer (trilinear) and run
        through the same network, so that a nodule appears ``zoom`` times larger; the score is the
        peak of that probability within ``LOOK_RADIUS_MM`` of the candidate."""
        import contextlib

        import torch
        import torch.nn.functional as F

        for d in dets:
            d["look_score"] = None
        todo = [d for d in dets if d["score"] >= min_score and d["diameter_mm"] < below_mm][:max_n]
        if not todo:
            return
        net = self.network(device)
        gs = np.asarray(gs, float)
        unit = np.array(MULTIPLE) // np.gcd(np.array(MULTIPLE), zoom)  # working voxels whose zoom is a multiple
        n_vox = (np.ceil(np.asarray(LOOK_MM) / gs / unit) * unit).astype(int)
        fine = (gs / zoom)
        zz, yy, xx = np.meshgrid(*[(np.arange(n * zoom) - (n * zoom - 1) / 2) * f for n, f in zip(n_vox, fine)],
                                 indexing="ij")
        for start in range(0, len(todo), LOOK_BATCH):
            if context is not None:
                context.check_cancelled()
            chunk = todo[start:start + LOOK_BATCH]
            patches, offsets = [], []
            for d in chunk:
                c = np.asarray(d["center_kji"], float)
                lo = np.rint(c - (n_vox - 1) / 2).astype(int)
                src = tuple(slice(max(0, a), min(s, a + n)) for a, n, s in zip(lo, n_vox, grid.shape))
                pad = [(max(0, -a), max(0, a + n - s)) for a, n, s in zip(lo, n_vox, grid.shape)]
                patches.append(np.pad(grid[src], pad, mode="edge"))
                # the candidate's position in the magnified patch, relative to its centre (mm)
                offsets.append((c - lo - (n_vox - 1) / 2) * gs)
            x_norm = torch.from_numpy(normalise(np.stack(patches)))[:, None].to(device)
            ctx = context.autocast() if context is not None else contextlib.nullcontext()
            with torch.inference_mode(), ctx:
                xz = F.interpolate(x_norm, scale_factor=zoom, mode="trilinear", align_corners=False)
                p = torch.sigmoid(net(xz).float() / self.temperature)[:, 0].cpu().numpy()
            for d, off, pp in zip(chunk, offsets, p):
                r2 = (zz - off[0]) ** 2 + (yy - off[1]) ** 2 + (xx - off[2]) ** 2
                d["look_score"] = float(pp[r2 <= LOOK_RADIUS_MM ** 2].max())

    def run(self, hu: np.ndarray, spacing_kji, affine, device: str = "cpu", context=None,
            lungs: np.ndarray | None = None, low: float = LOW_SCORE, plain: bool = False) -> DetectionResult:
        timings = {}
        t0 = time.perf_counter()
        sp = np.asarray(spacing_kji, float)
        if lungs is None:
            lungs = lungmask.lung_mask(hu, sp, affine)
        timings["lung_mask_s"] = time.perf_counter() - t0
        prob_full = np.zeros(hu.shape, np.float32)
        box = lung_box(lungs, sp)
        if box is None:
            return DetectionResult([], prob_full, lungs, timings)
        t1 = time.perf_counter()
        ws = working_spacing(sp)
        crop = np.asarray(hu[box], np.float32)
        grid, gs = lungmask.resample(crop, sp, ws, order=1)
        lung_g, _ = lungmask.resample(lungs[box], sp, ws, order=0, shape=grid.shape)
        prob = self.probability(grid, device, context)
        timings["network_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        if self.wall_mm > 4.0:  # a distance map (a ball this large would make the dilation slow)
            near = ndimage.distance_transform_edt(lung_g == 0, sampling=gs) <= self.wall_mm
        else:
            near = ndimage.binary_dilation(lung_g > 0, structure=lungmask.ball(self.wall_mm, gs))
        prob *= near
        plain_dets = nms(find_peaks(prob, gs, near, low), gs) if plain or self.classifier is None else None
        if self.classifier is not None:
            lung_in = lung_g > 0
            floor = fpr.background(prob, lung_in)
            cands = fpr.candidates(prob, gs, near, floor)
            cands += fpr.image_candidates(grid, prob, gs, lung_in, cands)
            x = fpr.features(grid, prob, lung_in, gs, cands, temperature=self.temperature, floor=floor)
            dets = [d for d in fpr.rescore(cands, self.classifier.score(x)) if d["score"] >= low]
        else:
            dets = plain_dets
        if self.look and self.classifier is None:
            t3 = time.perf_counter()
            self.second_look(grid, gs, dets, device, context)
            for d in dets:
                if d["look_score"] is not None:
                    d["net_score"] = d["score"]  # the 1 mm score alone (version 0.2.1's)
                    d["score"] = 0.5 * (d["score"] + d["look_score"])
                    d["score_rule"] = LOOK_RULE
            dets.sort(key=lambda d: -d["score"])
            timings["second_look_s"] = time.perf_counter() - t3
        # back to the input grid: index g on the working grid is at lo + (g + 0.5) * scale - 0.5
        scale = gs / sp
        lo = np.array([s.start for s in box], float)
        for d in dets + (plain_dets if plain and self.classifier is not None else []):
            g = np.clip(np.rint(d["center_kji"]).astype(int), 0, np.array(lung_g.shape) - 1)
            c = lo + (np.asarray(d["center_kji"]) + 0.5) * scale - 0.5
            d["center_kji"] = [float(v) for v in c]
            d["center_lps"] = [float(v) for v in (np.asarray(affine) @ np.array([c[2], c[1], c[0], 1.0]))[:3]]
            k, j, i = np.clip(np.rint(c).astype(int), 0, np.array(hu.shape) - 1)
            side = int(lungs[k, j, i]) or (nearest_lung(lung_g, g, gs, self.wall_mm + 5.0) if self.wall_mm > 4.0
                                           else 0)
            d["lung"] = lungmask.SIDE_NAMES.get(side, "")
            d.setdefault("score_rule", SCORE_RULE)
        # a peak whose centre is outside the lungs (oesophagus, mediastinum) is not a lung nodule
        dets = [d for d in dets if d["lung"]]
        if plain:
            plain_dets = [d for d in plain_dets if d["lung"]]
        if prob.shape == crop.shape:
            prob_full[box] = prob
        else:
            back, _ = lungmask.resample(prob, gs, sp, order=1, shape=crop.shape)
            prob_full[box] = np.clip(back, 0, 1)
        timings["peaks_s"] = time.perf_counter() - t2
        return DetectionResult(dets, prob_full, lungs, timings, plain_dets if plain else None)
