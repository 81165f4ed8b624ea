"""Lesion segmentation: the plugin code (runs in the AI worker; declared in plugin.json).

Prompts come in ``context.prompts`` (LPS mm, checked by the host).  The points are replayed in the
order given, as a reader clicks them: the first positive point (or the box) segments, each later
point refines the mask of the one before (segmenter.py).  An optional second input ``previous``
(a label map on the image's grid) is the mask to refine, so a viewer can send only the new click.

Automatic mode: the ``detections`` parameter (a detections.json written by ``hounsfield run`` of a
detection plugin, or the same JSON inline) segments each detection from a box around it (its size
times 1.3) and a click at its centre; each becomes its own label.

Results: the label map ("Lesion", or "Lesion 1..n"), the probability heatmap, and a boundary-
uncertainty heatmap (1 - |2p - 1| where 0.2 < p < 0.8: where the next click helps most).

The network method is two networks (segmenter.RoutedSegmenter): 1.2.0, and on MR the whole-tumour
expert (for the first click of a large lesion, and for corrective clicks); which one drew each mask
is in the segment's description and in the provenance ("network": {segment name: NETWORK or
EXPERT}), and a note says when the expert drew it.  The expert is loaded by the first MR run (the
viewer's warm-up on an MR series), since every MR corrective click uses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from viewer.ai.api import Heatmap, LabelMap, Results, Segment
from viewer.core.codes import Code
from viewer.core.errors import HounsfieldError

LESION_CODE = Code("52988006", "SCT", "Lesion")
BAND = (0.2, 0.8)
DETECTION_BOX_SCALE = 1.3
AIR_HU = -950.0  # a positive CT click whose 3x3x3 neighbourhood is darker than this is on air


def uncertainty_band(prob: np.ndarray, band=BAND) -> np.ndarray:
    """1 - |2p - 1| inside ``band`` (peaks at p = 0.5), 0 elsewhere."""
    u = 1.0 - np.abs(2.0 * prob - 1.0)
    return np.where((prob > band[0]) & (prob < band[1]), u, 0.0).astype(np.float32)


def read_detections(text: str) -> list[dict]:
    """Detections from a detections.json path or inline JSON (a list of {center_lps_mm, size_mm})."""
    text = (text or "").strip()
    if not text:
        return []
    try:
        raw = json.loads(text) if text[:1] in "[{" else json.loads(Path(text).read_text())
    except FileNotFoundError:
        raise HounsfieldError(f"The detections file {text} does not exist; give the detections.json a "
                              "detection plugin wrote.") from None
    except (OSError, ValueError) as exc:
        raise HounsfieldError(f"The detections could not be read as JSON ({str(exc)[:80]}).") from None
    if isinstance(raw, dict):
        raw = raw.get("detections", [raw])
    out = []
    try:
        for d in raw:
            c = [float(v) for v in d.get("center_lps_mm", d.get("center_lps"))]
            s = [float(v) for v in d.get("size_mm", (10.0, 10.0, 10.0))]
            if len(c) != 3 or len(s) != 3 or not np.all(np.isfinite(c + s)):
                raise ValueError
            out.append({"center": c, "size": s, "label": str(d.get("label", "lesion"))})
    except (TypeError, ValueError, AttributeError):
        raise HounsfieldError("Each detection needs a center_lps_mm and a size_mm of three numbers "
                              "(the format of detections.json).") from None
    return out


class LesionSegmenter:
    def __init__(self):
        self._seg = None

    def _segmenter(self, device: str, method: str = "network"):
        if method != "network":  # the classical methods of the benchmark, on the same windows
            try:
                from plugins.lesion_segmentation import baselines
            except ImportError:  # scikit-image is optional
                raise HounsfieldError(f"The {method} method needs scikit-image; install it or use the network.") \
                    from None
            return baselines.METHODS[method]()
        from plugins.lesion_segmentation.segmenter import RoutedSegmenter

        if self._seg is None:
            self._seg = RoutedSegmenter(device=device)
        return self._seg.to(device)

    def run(self, inputs, params, context) -> Results:
        from plugins.lesion_segmentation.network import lps_to_index, voxel_spacing
        from plugins.lesion_segmentation.segmenter import EXPERT

        vol = inputs["image"]
        modality = "CT" if vol.modality.upper() == "CT" else "MR"
        threshold = float(params.get("threshold", 0.5))
        prompts = getattr(context, "prompts", None)
        detections = read_detections(str(params.get("detections", "") or ""))
        if not detections and not prompts:
            raise HounsfieldError("Lesion segmentation needs a click on the lesion (--point X,Y,Z), a box, "
                                  "or detections to segment.")
        image = vol.real_values()
        vox = voxel_spacing(vol.affine)
        method = str(params.get("method", "network"))
        seg = self._segmenter(context.device, method)
        if method == "network" and modality == "MR" and getattr(seg, "expert_weights", None) is not None:
            _ = seg.expert  # loaded with the first MR run (every MR corrective click uses it), not inside a click
        context.progress(0.05, "segmenting")
        jobs = []  # (name, (index, positive) points, box) in index space
        if prompts:
            pts = [(lps_to_index(vol.affine, p.lps), p.positive) for p in prompts.points]
            if modality == "CT":  # a positive click on air (outside the body, in a bronchus) segments nothing
                on_air = [n for n, (p, positive) in enumerate(pts) if positive and _local_mean(image, p) < AIR_HU]
                for n in on_air:
                    where = ", ".join(f"{c:.1f}" for c in prompts.points[n].lps)
                    context.note(f"The click at ({where}) mm is on air, so it was ignored; click inside the lesion.")
                pts = [q for n, q in enumerate(pts) if n not in on_air]
            box = None
            if prompts.box is not None:
                box = self._box_index(vol.affine, prompts.box.lo_lps, prompts.box.hi_lps, image.shape)
            jobs.append(("Lesion", pts, box))
        for n, d in enumerate(detections, 1):
            c, s = np.asarray(d["center"]), np.asarray(d["size"]) * DETECTION_BOX_SCALE / 2
            box = self._box_index(vol.affine, c - s, c + s, image.shape)
            jobs.append((f"Lesion {n}", [(lps_to_index(vol.affine, c), True)], box))
        if len(jobs) == 1 and detections:
            jobs[0] = ("Lesion", *jobs[0][1:])
        labels = np.zeros(image.shape, np.uint8 if len(jobs) < 256 else np.uint16)
        prob_full = np.zeros(image.shape, np.float32)
        segments = []
        drawn_by = {}  # segment name -> the network that drew its mask
        previous = inputs.get("previous")
        for n, (name, pts, box) in enumerate(jobs, 1):
            context.check_cancelled()
            prev = None
            if previous is not None and n == 1:
                prev = np.asarray(previous.array) > 0
                if prev.shape != image.shape:
                    raise HounsfieldError("The previous mask is not on the image's grid; send it on the same grid.")
            mask, prob = self._replay(seg, image, vox, modality, pts, box, prev, threshold, context)
            if mask is None:
                context.note(f"{name}: nothing was found at the prompts; click inside the lesion.")
                continue
            sl, p, m = mask
            prob_full[sl] = np.maximum(prob_full[sl], p)
            labels[sl][m] = n
            how = "lesion segmented from prompts" if prompts and n == 1 else "lesion segmented from a detection"
            net = getattr(seg, "last_network", None)
            if net is not None:
                drawn_by[name] = net
                how += f" (network {net})"
            segments.append(Segment(n, name, (255, 64, 32) if n == 1 else _colour(n), how, LESION_CODE))
            context.progress(0.1 + 0.8 * n / len(jobs), "segmenting")
        if not segments:
            context.note("No lesion was segmented.")
        results = Results(label_maps=[LabelMap(labels, vol.affine.copy(), segments, "Lesion")])
        if params.get("heatmaps", True):
            results.heatmaps.append(Heatmap(prob_full, vol.affine.copy(), "Lesion probability", "probability",
                                            "The network's lesion probability around the prompts."))
            results.heatmaps.append(Heatmap(uncertainty_band(prob_full), vol.affine.copy(), "Boundary uncertainty",
                                            "uncertainty", f"1 - |2p - 1| where {BAND[0]:g} < p < {BAND[1]:g}: "
                                            "where the boundary is unsure and the next click helps most."))
        results.provenance["voxels"] = {s.name: int((labels == s.label).sum()) for s in segments}
        results.provenance["method"] = method
        if drawn_by:  # which network drew each mask (segmenter.RoutedSegmenter: 1.2.0 or the whole-tumour expert)
            results.provenance["network"] = drawn_by
            experts = [k for k, v in drawn_by.items() if v == EXPERT]
            if experts:
                context.note(f"{', '.join(experts)}: drawn by the whole-tumour network ({EXPERT}).")
        context.progress(1.0, "done")
        return results

    @staticmethod
    def _box_index(affine, lo_lps, hi_lps, shape):
        from plugins.lesion_segmentation.network import lps_to_index

        corners = np.array([lps_to_index(affine, (x, y, z)) for x in (lo_lps[0], hi_lps[0])
                            for y in (lo_lps[1], hi_lps[1]) for z in (lo_lps[2], hi_lps[2])])
        lo = np.clip(corners.min(0), 0, np.array(shape) - 1)
        hi = np.clip(corners.max(0), 0, np.array(shape) - 1)
        return lo, hi

    @staticmethod
    def _replay(seg, image, vox, modality, pts, box, prev, threshold, context):
        """The points in order: the first positive one segments, each later one refines."""
        pos, neg = [], []
        result = None
        if prev is not None:  # refine a given mask with all the points at once
            pos = [p for p, s in pts if s]
            neg = [p for p, s in pts if not s]
            if not pos and box is None and not prev.any():
                return None, None
            newest = bool(pts[-1][1]) if pts and prev.any() else None  # the reader's latest click
            sl, p, m = seg.segment(image, vox, modality, pos, neg, box, prev, threshold, newest=newest)
            return (sl, p, m), p
        steps = []
        for p, positive in pts:
            (pos if positive else neg).append(p)
            if pos or box is not None:
                steps.append((list(pos), list(neg), bool(positive)))
        if not steps and box is not None:
            steps = [([], [], None)]
        if not steps:
            return None, None
        full = None
        for n, (pos_n, neg_n, newest) in enumerate(steps):
            context.check_cancelled()
            sl, p, m = seg.segment(image, vox, modality, pos_n, neg_n, box if n == 0 or box is not None else None,
                                   full, threshold, newest=newest if n else None)
            full = np.zeros(image.shape, bool) if full is None else full
            full[sl] = m
            result = (sl, p, m)
        sl, p, m = result
        if not full.any():
            return None, None
        idx = np.argwhere(full)  # the whole mask, where earlier steps reached beyond the last window
        lo, hi = idx.min(0), idx.max(0) + 1
        sl_all = tuple(slice(min(int(a), s.start), max(int(b), s.stop)) for a, b, s in zip(lo, hi, sl))
        p_all = np.zeros([s.stop - s.start for s in sl_all], np.float32)
        p_all[tuple(slice(s.start - a.start, s.stop - a.start) for s, a in zip(sl, sl_all))] = p
        return (sl_all, p_all, full[sl_all]), p_all


def _local_mean(image: np.ndarray, kji) -> float:
    c = np.clip(np.rint(kji).astype(int), 0, np.array(image.shape) - 1)
    lo, hi = np.maximum(c - 1, 0), c + 2
    return float(np.mean(image[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]))


def _colour(n: int) -> tuple[int, int, int]:
    palette = [(255, 64, 32), (32, 160, 255), (64, 220, 64), (255, 200, 0), (200, 64, 255), (0, 220, 200)]
    return palette[(n - 1) % len(palette)]
