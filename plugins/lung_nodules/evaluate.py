"""Evaluation of nodule detectors: matching, FROC by size band and type, and the CAD's tuning.

    python plugins/lung_nodules/evaluate.py --tune-cad     # fit the CAD's rules on training CTs

A detection is a hit on a truth nodule when its centre lies within max(radius, 3 mm) of the
nodule's centre (LUNA16 uses the radius); several hits on one nodule count once and are not false
positives; a detection on an "ignore" region (a real lesion of the scan) is neither.  Sensitivity
at F false positives per scan is taken at the lowest score threshold whose false positives over
all scans, divided by the number of scans, stay at or below F; subgroups (size band, type) are
read at that same threshold (one operating point for all nodules, as a reader would set it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parents[1]))

from plugins.lung_nodules import cad  # noqa: E402

SIZE_BANDS = ((3.0, 6.0), (6.0, 10.0), (10.0, 30.01))
FP_RATES = (1.0, 2.0, 4.0)
CAD_PARAMS = HERE / "cad_params.json"


@dataclass
class ScanResult:
    """One scan: its truths (dicts with center_kji, diameter_mm, type), detections (center_kji,
    score) and ignore regions (centre_kji, radius_mm) on a grid of ``spacing``."""

    spacing: np.ndarray
    truths: list[dict]
    detections: list[dict]
    ignore: list[tuple] = field(default_factory=list)


def match(scan: ScanResult):
    """Per detection: the index of the truth it hits, -1 for a false positive, -2 for ignored."""
    sp = np.asarray(scan.spacing, float)
    tc = np.array([t["center_kji"] for t in scan.truths], float).reshape(-1, 3) * sp
    tr = np.array([max(t["diameter_mm"] / 2, 3.0) for t in scan.truths])
    out = []
    for d in scan.detections:
        c = np.asarray(d["center_kji"], float) * sp
        if len(tc):
            dist = np.linalg.norm(tc - c, axis=1)
            hits = np.nonzero(dist <= tr)[0]
            if len(hits):
                out.append(int(hits[np.argmin(dist[hits])]))
                continue
        if any(np.linalg.norm(np.asarray(ic, float) * sp - c) <= r for ic, r in scan.ignore):
            out.append(-2)
            continue
        out.append(-1)
    return out


def froc(scans: list[ScanResult], rates=FP_RATES, groups=None):
    """Sensitivity at each FP rate, overall and per group; ``groups`` maps a name to a predicate on
    a truth dict.  Returns {"thresholds": {rate: t}, "overall": {rate: s}, name: {rate: (s, n)}}."""
    best = []  # per truth: best hit score (or -inf), with the truth
    fps = []
    for s in scans:
        m = match(s)
        b = np.full(len(s.truths), -np.inf)
        for d, idx in zip(s.detections, m):
            if idx >= 0:
                b[idx] = max(b[idx], d["score"])
            elif idx == -1:
                fps.append(d["score"])
        best += list(zip(b, s.truths))
    fps = np.sort(np.asarray(fps))[::-1]
    n_scans = max(len(scans), 1)
    out = {"thresholds": {}, "overall": {}, "fp_scores": fps.tolist()}
    for rate in rates:
        allowed = int(np.floor(rate * n_scans))
        # the lowest threshold with at most ``allowed`` false positives at or above it
        t = float(fps[allowed]) + 1e-9 if allowed < len(fps) else 0.0
        out["thresholds"][rate] = t
        out["overall"][rate] = float(np.mean([b >= t for b, _ in best])) if best else 0.0
    for name, pred in (groups or {}).items():
        sel = [(b, tr) for b, tr in best if pred(tr)]
        out[name] = {rate: (float(np.mean([b >= out["thresholds"][rate] for b, _ in sel])) if sel else float("nan"),
                            len(sel)) for rate in rates}
    return out


def standard_groups():
    def band(lo, hi):
        return lambda t: lo <= t["diameter_mm"] < hi

    def kind_is(k):
        return lambda t: t["type"] == k

    g = {f"{lo:g}-{min(hi, 30):g} mm": band(lo, hi) for lo, hi in SIZE_BANDS}
    for kind in ("solid", "part-solid", "ground-glass"):
        g[kind] = kind_is(kind)
    g["solid >= 6 mm"] = lambda t: t["type"] == "solid" and t["diameter_mm"] >= 6.0
    return g


# ---------------------------------------------------------------------------------------------
# the CAD's rules, tuned on training CTs


def load_cad_params() -> cad.CADParams:
    if CAD_PARAMS.exists():
        d = json.loads(CAD_PARAMS.read_text())
        d["scales_mm"] = tuple(d["scales_mm"])
        return cad.CADParams(**{k: v for k, v in d.items() if k in cad.CADParams.__dataclass_fields__})
    return cad.CADParams()


def permissive() -> cad.CADParams:
    return cad.CADParams(min_hu=-800.0, max_elongation=0.0, min_score=0.01, max_candidates=3000)


def apply_rules(cands: list[dict], params: cad.CADParams, spacing) -> list[dict]:
    kept = [c for c in cands if c["hu"] >= params.min_hu and c["elongation"] >= params.max_elongation
            and c["score"] >= params.min_score]
    return kept[: params.max_candidates]


def tune_cad(seed: int = 7, log=print) -> dict:
    """Grid search of the CAD's rules on training CTs with inserted nodules (never the held-out CT):
    the rules that maximise the mean sensitivity at 1, 2 and 4 false positives per scan."""
    from plugins.lung_nodules import train

    rng = np.random.default_rng(seed)
    raw = []
    for name in ("radiomics-lung1", "radiomics-lung2", "ct-aorta"):
        case = train.load_case(name)
        for _ in range(2):
            hu, target, centres = train.realise(case, rng)
            truths = [{"center_kji": list(c), "diameter_mm": d, "type": "solid"} for c, d in centres]
            cands, _ = cad.candidates(hu.astype(np.float32), case.spacing, case.lung, permissive())
            raw.append((case.spacing, truths, cands))
            log(f"{name}: {len(truths)} nodules, {len(cands)} raw candidates")
    best = None
    for min_hu in (-800, -750, -700, -650, -600, -500, -400):
        for elong in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
            p = cad.CADParams(min_hu=float(min_hu), max_elongation=float(elong), min_score=0.01, max_candidates=3000)
            scans = [ScanResult(sp, t, apply_rules(c, p, sp)) for sp, t, c in raw]
            f = froc(scans)
            value = float(np.mean(list(f["overall"].values())))
            if best is None or value > best[0]:
                best = (value, p, f["overall"])
    value, p, overall = best
    log(f"tuned CAD: min_hu {p.min_hu}, max_elongation {p.max_elongation}: mean sensitivity {value:.3f} {overall}")
    d = p.to_dict()
    d["tuned_on"] = "radiomics-lung1, radiomics-lung2, ct-aorta with inserted nodules (2 copies each, seed 7)"
    d["mean_sensitivity_1_2_4"] = round(value, 4)
    CAD_PARAMS.write_text(json.dumps(d, indent=2))
    return d


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tune-cad", action="store_true")
    a = ap.parse_args(argv)
    if a.tune_cad:
        tune_cad(log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main()
