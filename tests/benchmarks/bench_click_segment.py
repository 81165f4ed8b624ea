"""Click to segment: seconds per click through the AI host's persistent worker on the real chest CT
tumour, the path the viewer's tool takes, beside the plain AI run path as the baseline.

    python tests/benchmarks/bench_click_segment.py [--threads 2] [--repeats 3]

Path "crop" (viewer.ai.interactive, what Segment > Click to segment does): each click sends a crop
around the prompts and the mask so far (``previous``) to the worker, which keeps the plugin and its
network loaded; the plugin refines the mask in one pass; the label map of the crop comes back.
Baseline "whole volume" (what AI > Lesion segmentation with prompts does, ``AIHost.run`` on the
series): the whole CT goes to the worker, the plugin replays every click so far (one pass per click;
the first click two), and a whole-volume label map comes back.

A session: a click at the tumour's seed (data.CHEST_TUMOUR_SEED_KJI), then a positive click 3 voxels
off it, then a negative click in the lung beside the tumour.  First click: in a worker that has
torch imported but not the plugin (its imports, for the network MONAI and the weights, load then);
"next": the mean of the later clicks.  Wall seconds on this CPU with whatever else it runs (the load
average is printed); the Dice of the last mask against data.chest_ct_reference.
The GUI adds little to this: the GUI test prints its own per-click seconds (pytest -s
tests/ui/test_click_segment_gui.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="sessions per path and method (first click: once)")
    args = ap.parse_args(argv)
    import numpy as np

    import viewer
    from plugins.lesion_segmentation.data import CHEST_TUMOUR_SEED_KJI, chest_ct_reference
    from tests.conftest import DATA
    from viewer.ai import interactive as ia
    from viewer.ai.api import Point, Prompts
    from viewer.ai.host import AIHost
    from viewer.core.segmentation import bbox_of

    path = DATA / "chest-ct"
    if not path.exists():
        print(f"no chest CT at {path} (set VIEWER_TEST_DATA)")
        return 1
    vol = viewer.load(path)
    ref = chest_ct_reference(np.asarray(vol.real_values(), np.float32))
    k, j, i = CHEST_TUMOUR_SEED_KJI
    clicks = [Point(tuple(vol.index_to_lps([i, j, k])), True), Point(tuple(vol.index_to_lps([i, j + 3, k])), True),
              Point(tuple(vol.index_to_lps([i + 22, j, k])), False)]  # lung beside the tumour

    def dice(a):
        return 2 * (a & ref).sum() / (a.sum() + ref.sum())

    def session_crop(host, method):
        prev, out = None, []
        for n in range(len(clicks)):
            t = time.perf_counter()
            prompts = Prompts(tuple(clicks[:n + 1]))
            box = ia.prompt_crop(vol, prompts, None if prev is None else bbox_of(prev))
            r = host.run_sync("lesion-segmentation", ia.crop_inputs(vol, box, prev),
                              {"method": method, "heatmaps": False}, prompts=prompts)
            full = np.zeros(vol.shape, bool)
            full[box] = ia.result_mask(r, box)
            prev = full
            out.append(time.perf_counter() - t)
        return out, dice(prev)

    def session_whole(host, method):
        out, m = [], None
        for n in range(len(clicks)):
            t = time.perf_counter()
            r = host.run_sync("lesion-segmentation", vol, {"method": method, "heatmaps": False},
                              prompts=Prompts(tuple(clicks[:n + 1])))
            m = np.asarray(r.label_maps[0].array) > 0
            out.append(time.perf_counter() - t)
        return out, dice(m)

    rows = []
    for method in ("geodesic", "network"):
        for name, fn in (("crop + previous mask (the tool)", session_crop),
                         ("whole volume, replayed (baseline)", session_whole)):
            host = AIHost(threads=args.threads)
            host.devices()  # the worker up, torch imported: the first click then loads only the plugin
            first, nexts, d = None, [], 0.0
            for rep in range(max(args.repeats, 1)):
                secs, d = fn(host, method)
                if rep == 0:
                    first = secs[0]
                    nexts += secs[1:]
                else:
                    nexts += secs
            host.shutdown()
            rows.append((method, name, first, float(np.mean(nexts)), float(np.max(nexts)), d))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nClick to segment on the chest CT tumour ({vol.shape[2]}x{vol.shape[1]}x{vol.shape[0]}), "
          f"{args.threads} torch threads, CPU; load average {load:.1f}")
    print(f"{'method':<10} {'path':<36} {'first click s':>13} {'next clicks s':>13} {'max s':>6} {'Dice':>6}")
    for method, name, first, nxt, mx, d in rows:
        print(f"{method:<10} {name:<36} {first:>13.2f} {nxt:>13.2f} {mx:>6.2f} {d:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
