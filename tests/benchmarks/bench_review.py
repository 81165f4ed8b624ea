"""AI review figures: time to recompute a result's agreement after a brush stroke on the real chest CT
(512x512x141), the way the results panel does it (only the original's box and the edited box,
``EditRegion``) against the baseline of the whole grid, plus writing the original beside the
journal.  Both give the same figures (checked here).

    python tests/benchmarks/bench_review.py [--repeat 5]

Target: well under the panel's 250 ms debounce, so the figures follow the radiologist's edits.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    os.environ["HOUNSFIELD_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-review-")
    import viewer
    from tests.conftest import DATA
    from tests.core.test_workspace import plugin_results
    from viewer.core.review import EditRegion, save_original, segmentation_agreement

    ct = viewer.load(DATA / "chest-ct")
    ws = viewer.Workspace()
    s = ws.add(ct)
    results = plugin_results(ct)
    step = ws.apply(results, series=s)
    ai = step.segmentations[0]
    region = EditRegion(ai)
    voxel = np.argwhere(results.label_maps[0].array)[0][::-1]
    ai.brush(ct.index_to_lps(voxel), 5.0, segment="Bone", erase=True)
    ai.brush(ct.index_to_lps(voxel + [0, 0, 12]), 5.0, segment="Bone")
    fast = segmentation_agreement(ai, region.region)[0]
    whole = segmentation_agreement(ai, "whole")[0]
    assert np.isclose(fast.dice, whole.dice) and np.isclose(fast.hd95_mm, whole.hd95_mm)
    t_fast = best(lambda: segmentation_agreement(ai, region.region), args.repeat)
    t_whole = best(lambda: segmentation_agreement(ai, "whole"), args.repeat)
    tmp = tempfile.mkdtemp()
    t_save = best(lambda: (save_original(os.path.join(tmp, f"x{time.perf_counter_ns()}"), ai.original)), args.repeat)
    print(f"chest CT {ct.shape}, AI segment {int((ai.original == 1).sum())} voxels, Dice {fast.dice:.4f}, "
          f"HD95 {fast.hd95_mm:.2f} mm (best of {args.repeat})")
    print(f"{'what':48s} {'ms':>8s}")
    print(f"{'agreement, whole grid (baseline)':48s} {1000 * t_whole:8.1f}")
    print(f"{'agreement, original box + edited box (panel)':48s} {1000 * t_fast:8.1f}")
    print(f"{'keep the original beside the journal (npz)':48s} {1000 * t_save:8.1f}")
    ws.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
