"""Cine benchmark: frames per second playing the real chest CT (512x512x141) in a 512x512 axial view.

Baselines measured in the same run, on the same volume and view size:

- the bare VTK reslice pipeline (``bench_scroll.bare_vtk_fps``: vtkImageReslice -> vtkImageActor in a
  plain 512x512 vtkRenderWindow, one slice per frame, as fast as it renders);
- the viewer scrolled by real wheel events, each followed by the event loop until the view has drawn
  it (``bench_scroll.viewer_fps``): the step rate a reader gets by scrolling.

Then cine in the main window (1x1 layout, axial view resized to 512x512), started with a real Space
key press, at 20, 30 and 60 frames per second requested: slices stepped per second and renders of the
view per second over a few seconds of playback (loop mode, so it runs through the whole stack).

    python tests/benchmarks/bench_cine.py [--seconds 4]

It starts its own Xvfb.  Target (issue 19): >= 20 frames per second of the chest CT in a 512x512 view.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("VIEWER_TEST_DATA", REPO.parent / "shared" / "data"))
SIZE = 512


def pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def cine_fps(win, app, fps: int, seconds: float) -> tuple[float, float]:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    player, view = win.features.priors.cine, win.grid.views[0]
    player.fps_box.setValue(fps)
    view.setFocus()
    pump(app, 0.1)
    frames0 = view.frames
    QTest.keyClick(view, Qt.Key.Key_Space)
    assert player.playing, "Space did not start cine"
    t0 = time.perf_counter()
    pump(app, seconds)
    QTest.keyClick(view, Qt.Key.Key_Space)
    dt = time.perf_counter() - t0
    assert not player.playing, "Space did not stop cine"
    return player.frames / dt, (view.frames - frames0) / dt


def measure(seconds: float) -> None:
    import tempfile

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from tests.benchmarks import bench_scroll

    os.environ.setdefault("HOUNSFIELD_DATA_DIR", tempfile.mkdtemp(prefix="hounsfield-bench-"))
    app = QApplication(sys.argv[:1])
    from viewer.ui.mainwindow import MainWindow
    from viewer.ui.theme import apply_theme

    apply_theme(app)
    settings = QSettings(os.path.join(os.environ["HOUNSFIELD_DATA_DIR"], "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings)
    win.model.set_layout("1x1")
    win.browser_dock.hide()
    win.features.priors.dock.hide()
    win.resize(900, 800)
    win.show()
    win.activateWindow()
    win.open_path(str(DATA / "chest-ct"))
    end = time.monotonic() + 120
    while (not win.model.series or win.session.jobs) and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.005)
    axial = win.grid.views[0]
    for _ in range(5):  # the axial view exactly 512 x 512
        win.resize(win.width() + SIZE - axial.width(), win.height() + SIZE - axial.height())
        pump(app, 0.2)
    vol = win.model.active_state.volume
    frames = int(40 * seconds)
    print(f"chest CT {vol.shape[2]}x{vol.shape[1]}x{vol.shape[0]} {vol.array.dtype}; axial view "
          f"{axial.size_px()[0]}x{axial.size_px()[1]} px; {seconds:g} s of cine per rate; CPU rendering (llvmpipe)")
    bench_scroll.SIZE = SIZE
    bare = max(bench_scroll.bare_vtk_fps(vol, frames) for _ in range(2))
    wheel = max(bench_scroll.viewer_fps(win, app, 0, frames)[0] for _ in range(2))
    rows = []
    for fps in (20, 30, 60):
        stepped, rendered = cine_fps(win, app, fps, seconds)
        rows.append((fps, stepped, rendered))
    print(f"{'':58s}{'slices/s':>10s}{'renders/s':>11s}")
    print(f"  {'bare VTK reslice pipeline, 512x512 (baseline)':56s}{bare:10.1f}{bare:11.1f}")
    print(f"  {'Hounsfield, wheel scrolling, 512x512 (baseline)':56s}{wheel:10.1f}{wheel:11.1f}")
    for fps, stepped, rendered in rows:
        label = f"Hounsfield cine at {fps} fps requested (Space)"
        print(f"  {label:56s}{stepped:10.1f}{rendered:11.1f}")
    best = max(r[2] for r in rows)
    met = rows[0][2] >= 19.0 and best >= 20  # 20 asked: 19.7 measured (the first frame comes one interval in)
    print(f"target >= 20 frames per second: {'met' if met else 'NOT met'} (best {best:.1f} renders/s)")
    win.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=4.0)
    args = p.parse_args()
    if not (DATA / "chest-ct").exists():
        print(f"skipped: real data {DATA / 'chest-ct'} is absent")
        return 0
    if os.environ.get("HOUNSFIELD_BENCH_CHILD"):
        measure(args.seconds)
        return 0
    env = dict(os.environ, HOUNSFIELD_BENCH_CHILD="1")
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1920x1080x24", sys.executable, __file__, "--seconds", str(args.seconds)]
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
