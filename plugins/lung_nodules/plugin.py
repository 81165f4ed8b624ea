"""Lung nodule detection: the plugin code (runs in the AI worker; declared in plugin.json).

Lung mask (lungmask.py) -> the trained 3D detector inside the lungs' box (detect.py) -> one
detection per nodule above the score threshold, each measured by ``measure.measure_nodule`` when
that module is present (per-nodule segmentation, diameters, volume, type, Lung-RADS), and the
network's nodule probability map as the explanation heatmap.  Every detection says which score put
it there (``score_rule``) and which lung it lies in.
"""

from __future__ import annotations

import logging

import numpy as np

from viewer.ai.api import Detection, Heatmap, LabelMap, Results, Segment
from viewer.core.codes import Code

log = logging.getLogger(__name__)

NODULE_CODE = Code("27925004", "SCT", "Nodule")
LUNG_CODES = {1: Code("3341006", "SCT", "Right lung"), 2: Code("44029006", "SCT", "Left lung")}
TISSUE = Code("85756007", "SCT", "Tissue")


def _measure():
    """``measure_nodule`` of the measurement half, or None while it is not there."""
    try:
        from plugins.lung_nodules.measure import measure_nodule
    except (ImportError, AttributeError):
        return None
    return measure_nodule


def _jsonable(v):
    if isinstance(v, (str, bool, int, float)) or v is None:
        return v if not isinstance(v, float) or np.isfinite(v) else None
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return _jsonable(v.item())
    if isinstance(v, (list, tuple)) and len(v) <= 64:
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray) and v.size <= 64:
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items() if _jsonable(x) is not None or x is None}
    return None


class LungNodules:
    def __init__(self):
        from plugins.lung_nodules.detect import Detector

        self.detector = Detector()

    def run(self, inputs, params, context) -> Results:
        from plugins.lung_nodules import lungmask

        vol = inputs["image"]
        threshold = float(params.get("score_threshold", 0.5))
        max_n = int(params.get("max_detections", 30))
        hu = vol.real_values()
        sp = np.asarray(vol.spacing[::-1], float)
        context.progress(0.0, "finding the lungs")
        lungs = lungmask.lung_mask(hu, sp, vol.affine)
        context.check_cancelled()
        volumes = lungmask.lung_volumes_ml(lungs, sp)
        results = Results()
        results.notes.append(f"Lungs: right {volumes['right']:.0f} mL, left {volumes['left']:.0f} mL.")
        if not lungs.any():
            results.notes.append("No lung was found in this image, so no nodule was searched for.")
        context.progress(0.1, "detecting nodules")
        self.detector.look = bool(params.get("second_look", False))
        found = self.detector.run(hu, sp, vol.affine, context.device, context, lungs=lungs)
        kept = [d for d in found.detections if d["score"] >= threshold][:max_n]
        context.progress(0.9, "measuring nodules")
        labels = np.zeros(vol.shape, np.uint8)
        measure = _measure()
        segments = []
        for n, d in enumerate(kept, 1):
            context.check_cancelled()
            attrs = {"number": n, "score_rule": d["score_rule"], "lung": d["lung"],
                     "center_kji": [round(c, 2) for c in d["center_kji"]],
                     "detector_diameter_mm": round(d["diameter_mm"], 1)}
            if d.get("look_score") is not None:  # the two readings the score was made of (detect.second_look)
                attrs["net_score"] = round(float(d["net_score"]), 3)
                attrs["look_score"] = round(float(d["look_score"]), 3)
            size = tuple(float(s) for s in d["extent_kji_mm"][::-1])  # (x, y, z) extents
            mask = None
            if measure is not None:
                try:
                    m = measure(hu, sp, tuple(d["center_kji"]), lungs, size_mm=d["diameter_mm"], affine=vol.affine,
                                hold_to_size=True)
                except Exception as exc:  # the measurement half must not lose the detection
                    log.exception("nodule measurement failed")
                    results.notes.append(f"Nodule {n} could not be measured ({type(exc).__name__}).")
                    m = {}
                m = dict(m or {})
                box, part = m.pop("bbox", None), m.pop("mask", None)
                if isinstance(part, np.ndarray) and part.any() and box is not None and len(box) == 6:
                    mask = np.zeros(vol.shape, bool)
                    mask[box[0]:box[1], box[2]:box[3], box[4]:box[5]] = part
                    attrs["bbox_kji"] = [int(b) for b in box]
                for k, v in m.items():
                    j = _jsonable(v)
                    if j is not None and k not in ("score", "number"):
                        attrs[k] = j
            if mask is None:
                mask = self._region(found.probability, d)
            name = f"Nodule {n}"
            if mask is not None and n <= 255 and (mask & (labels == 0)).any():
                labels[mask & (labels == 0)] = n
                segments.append(Segment(n, name, (255, 200, 0), f"{name}, score {d['score']:.2f}", NODULE_CODE))
            where = f"{d['lung']} lung" if d["lung"] else "near the lungs"
            held = ("; its outline ran into neighbouring structures and was held to 1.5 times the detector's size: "
                    "check it" if attrs.get("held_to_size") else "")
            results.detections.append(Detection(
                tuple(d["center_lps"]), size, float(d["score"]), "nodule",
                f"{name}: {where}, about {d['diameter_mm']:.0f} mm; {d['score_rule']} {d['score']:.2f}{held}", attrs))
        if segments:
            results.label_maps.append(LabelMap(labels, vol.affine.copy(), segments, "Nodules"))
        if params.get("lung_labels", True) and lungs.any():
            segs = [Segment(s, f"{side.capitalize()} lung", c, f"{volumes[side]:.0f} mL", LUNG_CODES[s])
                    for s, side, c in ((1, "right", (128, 174, 128)), (2, "left", (241, 214, 145)))]
            results.label_maps.append(LabelMap(lungs, vol.affine.copy(), segs, "Lungs", visible=False))
        if params.get("heatmap", True):
            results.heatmaps.append(Heatmap(found.probability, vol.affine.copy(), "Nodule probability", "probability",
                                            "The detector's per-voxel nodule probability (objectness); a detection "
                                            "is a local peak of it, its score the peak value (for a small peak, the "
                                            "mean of that and the network's second look magnified twice)."))
        results.notes.append(f"{len(kept)} nodule(s) at a score of {threshold:g} or more "
                             f"({len(found.detections)} candidates in all).")
        results.provenance["lung_volumes_ml"] = {k: round(v, 1) for k, v in volumes.items()}
        results.provenance["timings_s"] = {k: round(v, 2) for k, v in found.timings.items()}
        context.progress(1.0, "done")
        return results

    @staticmethod
    def _region(prob: np.ndarray, d: dict):
        """The detection's region: voxels above half its peak, connected to the peak."""
        from scipy import ndimage

        c = np.clip(np.rint(d["center_kji"]).astype(int), 0, np.array(prob.shape) - 1)
        half = np.array([20, 40, 40])
        sl = tuple(slice(max(0, a - h), a + h + 1) for a, h in zip(c, half))
        sub = prob[sl] >= 0.5 * d["score"]
        lab, _ = ndimage.label(sub)
        local = tuple(a - s.start for a, s in zip(c, sl))
        v = lab[local]
        if v == 0:
            return None
        out = np.zeros(prob.shape, bool)
        out[sl] = lab == v
        return out
