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

GUI mode (``--gui``, under ``xvfb-run -a -s "-screen 0 1920x1080x24"``): the same session with real
mouse clicks in the axial view of the real window (2x2 layout with the 3D view, rendered in
software on the same CPU; ``--layout 1x3`` without it), timed from the click to: the mask in the
segmentation, the last of the three 2D planes drawn with it, the 3D view drawn with its new surface,
the measurements panel's statistics, and the longest the window stayed busy in the 3 s after the
click (the longest a next click would wait).  Beside it, in the same run, the display path before
(``ClickSegmenter.quick_3d = False`` and whole-volume statistics): the 3D view re-meshed after its
300 ms editing pause and a refined ray-cast frame after every click, the statistics after the
panel's 400 ms pause over the whole volume; and the plugin's own seconds (in the worker) and the
host's run (the crop there and the mask back) of every click, the floor of any display path.  The
first click comes after the tool was chosen and its model loaded (as while a reader finds the
lesion); ``--method network`` for the network (its uncertainty band is drawn too).
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
    ap.add_argument("--gui", action="store_true", help="time the clicks in the real window (needs a display)")
    ap.add_argument("--layout", default="2x2", help="--gui: the window's layout (2x2 has the 3D view)")
    ap.add_argument("--method", default="", help="--gui: the tool's method (default: the card's best)")
    args = ap.parse_args(argv)
    if args.gui:
        return gui_main(args)
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


def gui_main(args) -> int:
    """Seconds per click in the real window: the display path now beside the one before."""
    import tempfile

    import numpy as np
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from plugins.lesion_segmentation.data import CHEST_TUMOUR_SEED_KJI
    from tests.conftest import DATA
    from tests.ui.helpers import open_study_window, qt_pos
    from viewer.core.measurements import segment_stats
    from viewer.ui.measure import segment_rows

    path = DATA / "chest-ct"
    if not path.exists():
        print(f"no chest CT at {path} (set VIEWER_TEST_DATA)")
        return 1
    app = QApplication.instance() or QApplication(sys.argv)
    events: list[tuple[str, float, float]] = []  # (what, start, end)

    def pump(seconds: float) -> float:
        """Run the event loop for ``seconds``; the longest single pass (the window busy)."""
        end, longest = time.perf_counter() + seconds, 0.0
        while time.perf_counter() < end:
            t = time.perf_counter()
            app.processEvents()
            longest = max(longest, time.perf_counter() - t)
            time.sleep(0.002)
        return longest

    win = open_study_window(app, Path(tempfile.mkdtemp()), path, size=(1500, 950), layout=args.layout)
    m = win.model
    pump(2.0)
    state = m.active_state
    vol = state.volume
    k, j, i = CHEST_TUMOUR_SEED_KJI
    m.set_point(state.key, vol.index_to_lps([float(i), float(j), float(k)]))
    for slot in range(3):
        geom = state.geometry(m.viewports[slot].plane)
        x, y = geom.from_lps(state.point)
        m.set_zoom(slot, 2.0)
        m.set_pan(slot, (x - (geom.extent[0] + geom.extent[1]) / 2, y - (geom.extent[2] + geom.extent[3]) / 2))
    clicker = win.features.segments.click
    m.set_tool("seg_click")  # loads the plugin and its model in the worker
    if args.method:
        clicker.widgets["method"].setCurrentText(args.method)
    t = time.perf_counter()
    while clicker.run is not None and time.perf_counter() - t < 120:
        pump(0.05)
    pump(3.0)

    # timestamps of what the views draw, the 3D re-meshing and the statistics (instrumentation only)
    def timed(name, fn):
        def wrapper(*a):
            t0 = time.perf_counter()
            fn(*a)
            events.append((name, t0, time.perf_counter()))
        return wrapper

    for v in win.grid.views:
        render = v.render_now

        def render_now(v=v, render=render):
            t0, f0 = time.perf_counter(), v.frames
            render()
            if v.frames != f0:
                events.append(("3d" if hasattr(v, "layers") else f"2d{v.slot}", t0, time.perf_counter()))
        v.render_now = render_now
        if hasattr(v, "layers"):
            layers = v.layers
            flush = layers.flush

            def mesh(layers=layers, flush=flush):
                t0, dirty = time.perf_counter(), bool(layers._dirty)
                flush()
                if dirty:
                    events.append(("mesh", t0, time.perf_counter()))
            layers.flush = mesh
            layers._timer.timeout.disconnect()
            layers._timer.timeout.connect(mesh)
    rows = win.features.measure.controller.segment_rows
    rows._computed.connect(lambda *_a: events.append(("stats", time.perf_counter(), time.perf_counter())))
    in_box = segment_rows._stats_in_box

    axial = win.grid.slice_views[0]
    session = [(i, j, k, True), (i, j + 3, k, True), (i + 22, j, k, False)]  # as the plugin path above
    results = {}  # path -> list of per-click dicts

    def run_session(quick: bool) -> None:
        clicker.quick_3d = quick
        segment_rows._stats_in_box = in_box if quick else (lambda layer, n, volume: segment_stats(layer == n, volume))
        out = results.setdefault(quick, [])
        clicker.timings.clear()
        for n, (ci, cj, ck, positive) in enumerate(session):
            pos = qt_pos(axial, vol.index_to_lps([float(ci), float(cj), float(ck)])).toPoint()
            events.clear()
            t0 = time.perf_counter()
            QTest.mouseClick(axial, Qt.MouseButton.LeftButton if positive else Qt.MouseButton.RightButton,
                             Qt.KeyboardModifier.NoModifier, pos)
            stall = 0.0
            while clicker.busy and time.perf_counter() - t0 < 60:
                stall = max(stall, pump(0.01))
            landed = time.perf_counter()
            stall = max(stall, pump(max(3.0 - (landed - t0), 1.0)))
            while time.perf_counter() - t0 < 8 and not any(s == "stats" and b >= landed for s, b, _e in events):
                stall = max(stall, pump(0.05))
            c = clicker.timings[-1]
            landed = c.t0 + c.seconds  # the mask in the segmentation
            first2d = [min((e for s, b, e in events if s == f"2d{slot}" and b >= landed - 0.05), default=np.nan)
                       for slot in range(3)]
            meshed = min((e for s, b, e in events if s == "mesh" and b >= landed - 0.05), default=None)
            shown3d = np.nan
            if meshed is not None:
                shown3d = min((e for s, b, e in events if s == "3d" and b >= meshed), default=np.nan)
            stats = min((b for s, b, e in events if s == "stats" and b >= landed), default=np.nan)
            out.append({"n": n, "plugin": c.plugin_seconds, "run": c.run_seconds, "mask": c.seconds,
                        "2d": max(first2d) - c.t0, "3d": shown3d - c.t0, "stats": stats - c.t0,
                        "stall": stall})
        clicker.discard()
        pump(3.0)

    for _rep in range(max(args.repeats, 1)):
        for quick in (False, True):  # alternating, so that the load of the machine falls on both
            run_session(quick)
    segment_rows._stats_in_box = in_box
    clicker.quick_3d = True
    has3d = any(hasattr(v, "layers") for v in win.grid.visible_views())
    win.close()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nClick to segment in the window ({args.layout}{' with the 3D view' if has3d else ', no 3D view'}, "
          f"Xvfb, software OpenGL), {clicker.method}, chest CT tumour, {args.repeats} session(s) of 3 clicks per path; "
          f"CPU, load average {load:.1f}. Seconds from the click.")
    cols = ("plugin", "run", "mask", "2d", "3d", "stats", "stall")
    heads = ("plugin", "host run", "mask in seg", "2D planes", "3D surface", "statistics", "longest busy")
    print(f"{'path':<44} {'click':<6} " + " ".join(f"{h:>12}" for h in heads))
    names = {True: "now: 3D meshed at once, held interactive", False: "before: 3D after 300 ms + refined frame"}
    for quick in (False, True):
        rs = results[quick]
        for label, sel in (("first", [r for r in rs if r["n"] == 0]), ("next", [r for r in rs if r["n"] > 0])):
            vals = [[r[c] for r in sel if np.isfinite(r[c])] for c in cols]
            print(f"{names[quick]:<44} {label:<6} " + " ".join(f"{np.mean(v):>12.2f}" if v else f"{'-':>12}"
                                                              for v in vals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
