"""Comparison benchmark (issue 19, GUI side): how the window behaves while it registers, and how fast
linked scrolling through a registration and fusion draw, on the real chest CT and its synthetic
follow-up (``tests/followup.py``, full resolution 512x512x141).

1. Rigid registration of the pair (follow-up fixed, baseline moving) with a 10 ms timer ticking on the
   event loop: wall time and the longest gap between ticks (the UI's longest freeze).  Baseline in the
   same run: the same ``register()`` called on the UI thread (what a plain call would do).
2. Wheel scrolling in the follow-up's view of a 1 x 3 window (baseline | follow-up | baseline coronal),
   each notch followed by the event loop until the view has drawn it (``bench_scroll.viewer_fps``):
   steps per second.  Baselines: the same window with linking off (only the scrolled view redraws), and
   the follow-up in all three views (three views redraw per step, nothing to map); then linked through
   the registration (the baseline's two views follow through it), then with the follow-up fused over
   the baseline (blend, Hot iron 50 %), then as a checkerboard.

    python tests/benchmarks/bench_compare.py [--frames 80]

It starts its own Xvfb.  CPU only here (llvmpipe, 2 shared cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("VIEWER_TEST_DATA", REPO.parent / "shared" / "data"))


def pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def gaps_while(app, run) -> tuple[float, float, float]:
    """(seconds, longest gap ms, 99th percentile gap ms) of a 10 ms timer while ``run(done)`` works."""
    from PySide6.QtCore import QTimer

    ticks, state = [], {"done": False}
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    t0 = time.perf_counter()
    ticks.append(t0)
    run(lambda *_a: state.update(done=True))
    while not state["done"]:
        app.processEvents()
        time.sleep(0.001)
    seconds = time.perf_counter() - t0
    timer.stop()
    ticks.append(time.perf_counter())
    gaps = sorted(b - a for a, b in zip(ticks, ticks[1:]))
    return seconds, 1000 * gaps[-1], 1000 * gaps[int(0.99 * (len(gaps) - 1))]


def measure(frames: int) -> None:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from tests.benchmarks import bench_scroll
    from tests.followup import make_followup

    os.environ.setdefault("HOUNSFIELD_DATA_DIR", tempfile.mkdtemp(prefix="hounsfield-bench-"))
    pair = make_followup(Path(tempfile.gettempdir()) / "hounsfield-bench-followup-s1")
    app = QApplication(sys.argv[:1])
    from viewer.core.registration import register
    from viewer.ui.mainwindow import MainWindow
    from viewer.ui.theme import apply_theme

    apply_theme(app)
    settings = QSettings(os.path.join(os.environ["HOUNSFIELD_DATA_DIR"], "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings)
    win.model.set_layout("1x3")
    win.resize(1640, 640)
    win.show()
    win.activateWindow()
    win.open_path(str(pair.baseline_dir))
    end = time.monotonic() + 120
    while (not win.model.series or win.session.jobs) and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.005)
    win.open_path(str(pair.followup_dir), slots=[1])
    while (len(win.model.series) < 2 or win.session.jobs) and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.005)
    base_key, fu_key = pair.baseline_series_uid, pair.followup_series_uid
    m, ctl = win.model, win.features.compare.controller
    m.compare(base_key, fu_key)
    from PySide6.QtWidgets import QDockWidget

    for dock in win.findChildren(QDockWidget):  # the three views only
        dock.hide()
    pump(app, 0.5)
    fixed, moving = m.series[fu_key].volume, m.series[base_key].volume
    view = win.grid.views[1]
    print(f"chest CT pair {fixed.shape[2]}x{fixed.shape[1]}x{fixed.shape[0]} (baseline + synthetic follow-up); "
          f"views {view.size_px()[0]}x{view.size_px()[1]} px; CPU only (llvmpipe), shared 2-core machine")

    # 1. registering: on the UI thread (baseline) and on the worker thread
    def on_ui_thread(done):
        register(fixed, moving, "rigid")
        done()

    ui = gaps_while(app, on_ui_thread)
    out = {}

    def on_worker(done):
        thread = ctl.start_registration(fu_key, base_key, "rigid")
        thread.finished.connect(done)
        ctl.registered.connect(lambda reg: out.setdefault("reg", reg))

    worker = gaps_while(app, on_worker)
    pump(app, 0.2)
    reg = out.get("reg") or m.registration(fu_key, base_key)
    tre = pair.tre(reg.to_moving)
    print(f"{'rigid registration':52s}{'seconds':>9s}{'longest UI gap':>16s}{'p99 gap':>10s}")
    print(f"  {'register() on the UI thread (baseline)':50s}{ui[0]:9.1f}{ui[1]:13.0f} ms{ui[2]:7.0f} ms")
    print(f"  {'Compare > Register to... (worker thread)':50s}{worker[0]:9.1f}{worker[1]:13.0f} ms{worker[2]:7.0f} ms")
    print(f"  landmark TRE after the rigid registration: median {float(sorted(tre)[len(tre) // 2]):.2f} mm, "
          f"max {float(max(tre)):.2f} mm (a rigid fit of a deformed pair)")

    # 2. scrolling the follow-up's view
    rows = []
    m.set_link_series(False)
    rows.append(("no linking (baseline)", bench_scroll.viewer_fps(win, app, 1, frames)[0]))
    m.set_link_series(True)
    m.show_series(0, fu_key, keep_view=True)  # all three views move: the follow-up in slots 0-2
    m.show_series(2, fu_key, keep_view=True)
    pump(app, 0.2)
    rows.append(("three views of one series redrawn (baseline)", bench_scroll.viewer_fps(win, app, 1, frames)[0]))
    m.compare(base_key, fu_key)
    pump(app, 0.2)
    rows.append(("linked through the registration", bench_scroll.viewer_fps(win, app, 1, frames)[0]))
    f = ctl.defaults(base_key, fu_key)
    ctl.set_fusion(f)
    pump(app, 0.2)
    rows.append(("linked + follow-up fused over the baseline (blend)", bench_scroll.viewer_fps(win, app, 1, frames)[0]))
    ctl.update(mode="checkerboard")
    pump(app, 0.2)
    rows.append(("linked + checkerboard", bench_scroll.viewer_fps(win, app, 1, frames)[0]))
    ctl.set_fusion(None)
    print(f"{'wheel scrolling in the follow-up view':52s}{'steps/s':>9s}")
    for label, fps in rows:
        print(f"  {label:50s}{fps:9.1f}")
    win.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=80)
    args = p.parse_args()
    if not (DATA / "chest-ct").exists():
        print(f"skipped: real data {DATA / 'chest-ct'} is absent")
        return 0
    if os.environ.get("HOUNSFIELD_BENCH_CHILD"):
        measure(args.frames)
        return 0
    env = dict(os.environ, HOUNSFIELD_BENCH_CHILD="1")
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1920x1080x24", sys.executable, __file__, "--frames", str(args.frames)]
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
