"""Simulated reading sessions on held-out lesions, and the baselines' tuning on training lesions.

    python plugins/lesion_segmentation/evaluate.py --tune     # grid-search the baselines (training lesions)
    python tests/benchmarks/bench_lesion_seg.py               # the table (held-out lesions)

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


def main(argv=None) -> int:
    import argparse

    from plugins.lesion_segmentation import baselines

    ap = argparse.ArgumentParser()
    ap.add_argument("--tune", action="store_true")
    args = ap.parse_args(argv)
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
