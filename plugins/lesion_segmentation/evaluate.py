"""Simulated reading sessions on held-out lesions, and the baselines' tuning on training lesions.

    python plugins/lesion_segmentation/evaluate.py --tune     # grid-search the baselines (training lesions)
    python tests/benchmarks/bench_lesion_seg.py               # the table (held-out lesions)
    python plugins/lesion_segmentation/evaluate.py --validate W1.pt W2.pt ...   # choose among candidates

The validation set (``validation_volumes``) is not the held-out bench: synthetic lesions inserted
into the training volumes with seeds no training run used, and the largest real training lesions;
candidates are compared there before the bench is looked at (train.py, "Weight averages").

A session: the first click at the lesion's most interior point (largest distance to its boundary,
in mm), then up to ``CORRECTIONS`` corrective clicks, each at the most interior point of the largest
error region of the current mask (positive in a miss, negative in a false positive).  Dice on the
volume's own grid against the reference.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parents[1]))

from plugins.lesion_segmentation import data  # noqa: E402
from plugins.lesion_segmentation.baselines import dice  # noqa: E402

CORRECTIONS = 3


def session(method, image, vox, modality, truth, corrections: int = CORRECTIONS, cpu: list | None = None):
    """(Dice after each click, wall seconds per click) of one simulated reading session; ``cpu``, when
    given, receives the CPU seconds (all threads of this process) per click."""
    pos = [data.interior_point(truth, vox)]
    neg: list = []
    full = None
    dices, seconds = [], []
    for n in range(corrections + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        sl, _, m = method.segment(image, vox, modality, list(pos), list(neg), None, full)
        seconds.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
        full = np.zeros(truth.shape, bool) if full is None else full
        full[sl] = m
        dices.append(dice(full, truth))
        if n == corrections:
            break
        click = data.corrective_click(truth, full, vox)
        if click is None:
            break
        (pos if click[1] else neg).append(click[0])
    return dices, seconds


def training_lesions(max_per_case: int = 3):
    """(image, vox, modality, truth) of the real training lesions, largest first per case."""
    out = []
    for c in data.training_cases():
        for m in sorted(c.lesions, key=lambda m: -int(m.sum()))[:max_per_case]:
            out.append((c.image, c.vox, c.modality, m))
    return out


def validation_volumes(plain: int = 24, necrotic: int = 16, real_per_case: int = 3):
    """(set, name, image, vox, modality, truth) of the validation sessions: ``plain`` synthetic lesions
    (train.Sampler at the fitted window scale, seed 4242, a quarter extra lung lesions) and ``necrotic``
    synthetic bright-rimmed, dark-cored MR lesions (seed 4343, the MR training volumes without
    lesions), each cut out as a 128^3 volume at its window spacing and wholly inside it, and the
    ``real_per_case`` largest real lesions of each training case."""
    from plugins.lesion_segmentation.train import SEED, Sampler

    class _Sampler(Sampler):
        def spacing(self, extent):
            self.last = super().spacing(extent)
            return self.last

    cases = data.training_cases(SEED)
    out = []
    for kind, share, n, seed in (("plain", 0.0, plain, 4242), ("necrotic", 1.0, necrotic, 4343)):
        pool = cases if kind == "plain" else [c for c in cases if c.modality == "MR" and not c.lesions]
        s = _Sampler(pool, np.random.default_rng(seed), wide=False, max_extent=110, coarse_share=0.0,
                     lung_share=0.25 if kind == "plain" else 0.0, necrotic=share)
        while sum(o[0] == kind for o in out) < n:
            img, gt, modality = s.window(128)
            if gt.sum() < 30 or gt[[0, -1]].any() or gt[:, [0, -1]].any() or gt[:, :, [0, -1]].any():
                continue
            out.append((kind, f"{kind}{sum(o[0] == kind for o in out)}", img.astype(np.float32),
                        np.array([s.last] * 3), modality, gt))
    for c in data.training_cases():
        for i, m in enumerate(sorted(c.lesions, key=lambda m: -int(m.sum()))[:real_per_case]):
            out.append(("real training", f"{c.name}#{i}", c.image, c.vox, c.modality, m))
    return out


def validate(weights: list[str], log=print) -> dict:
    """Mean Dice after 1 click and after 3 corrective clicks, per validation set and over all sessions."""
    from plugins.lesion_segmentation.segmenter import Segmenter

    vols = validation_volumes()
    res = {}
    for w in weights:
        seg = Segmenter(w)
        per: dict = {}
        for kind, _, img, vox, modality, truth in vols:
            dices, _ = session(seg, img, vox, modality, truth)
            per.setdefault(kind, []).append((dices[0], dices[-1]))
        allv = [d for v in per.values() for d in v]
        res[w] = {k: [round(float(np.mean([d[i] for d in v])), 3) for i in (0, 1)] for k, v in per.items()}
        res[w]["all"] = [round(float(np.mean([d[i] for d in allv])), 3) for i in (0, 1)]
        log(f"{w}: " + ", ".join(f"{k} ({len(per.get(k, allv))}) {v[0]:.3f} / {v[1]:.3f}" for k, v in res[w].items()))
    return res


def main(argv=None) -> int:
    import argparse

    from plugins.lesion_segmentation import baselines

    ap = argparse.ArgumentParser()
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--validate", nargs="+", metavar="WEIGHTS",
                    help="Dice after 1 / 3 clicks of these weights on the validation set (not the bench)")
    args = ap.parse_args(argv)
    if args.validate:
        import torch

        torch.set_num_threads(1)
        validate(args.validate)
    if args.tune:
        lesions = training_lesions()
        lines = []
        best = baselines.tune(lesions, log=lambda s: (print(s, flush=True), lines.append(s)))
        print(json.dumps(best, indent=1))
        log_path = HERE / "tuning_log.json"
        log = json.loads(log_path.read_text()) if log_path.exists() else {}
        log["baselines"] = {"tuned_on": f"{len(lesions)} training lesions (1-click Dice)", "grid": lines,
                            "best": {k: {"dice": round(v[0], 4), "params": v[1]} for k, v in best.items()}}
        log_path.write_text(json.dumps(log, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
