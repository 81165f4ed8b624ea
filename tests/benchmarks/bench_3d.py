"""3D benchmark: GPU ray-cast volume rendering of the real chest CT (512x512x141) in the 3D view,
maximised to a 512x512 viewport.

Printed:
- interactive frames per second while the camera rotates (real left-drag mouse events through the
  VTK interactor, level of detail on: the "interactive" quality), target >= 10 fps;
- the refined still frame (drawn once the mouse is released), target <= 2 s;
- the full-quality frame (screenshots), no target;
- memory added by opening 3D, as a ratio to the volume's size, target <= 10 %, against the
  baseline "2D only": the same window with the CT open in the 1x3 layout (three 2D views drawn,
  the 3D view never drawn), measured in the same run just before; and split at a second
  baseline, "3D context": the 3D view drawn with the volume hidden.  On this machine the GPU is
  Mesa's llvmpipe, whose "GPU memory" is process memory: the volume texture the ray caster needs
  is counted in the process growth, and printed apart.

    python tests/benchmarks/bench_3d.py [--frames 60] [--screenshots docs]

It starts its own Xvfb.  With --screenshots it also writes docs/screenshot-3d-bone.png and
docs/screenshot-3d-lung.png (anterior view, full quality).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIEWER_TEST_DATA", REPO.parent / "shared" / "data"))
SIZE = 512


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def pump(app, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.005)


def size_view(win, app, view, width: int, height: int) -> None:
    for _ in range(6):
        dw, dh = width - view.width(), height - view.height()
        if dw == 0 and dh == 0:
            break
        win.resize(win.width() + dw, win.height() + dh)
        pump(app, 0.2)


def drag_fps(app, view, frames: int) -> tuple[float, int]:
    """Rotate the camera with real mouse events; every move renders one frame (the interactor)."""
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent

    centre = QPointF(view.width() / 2, view.height() / 2)

    def send(kind, pos, button, buttons):
        ev = QMouseEvent(kind, pos, view.mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier)
        app.sendEvent(view, ev)

    left = Qt.MouseButton.LeftButton
    send(QEvent.Type.MouseButtonPress, centre, left, left)
    rendered = [0]
    obs = view.render_window.AddObserver("EndEvent", lambda *_: rendered.__setitem__(0, rendered[0] + 1))
    t0 = time.perf_counter()
    for f in range(frames):
        pos = QPointF(centre.x() + 4 * ((f % 40) - 20), centre.y())
        send(QEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton, left)
    elapsed = time.perf_counter() - t0
    send(QEvent.Type.MouseButtonRelease, centre, left, Qt.MouseButton.NoButton)
    view.render_window.RemoveObserver(obs)
    return rendered[0] / elapsed, rendered[0]


def timed_render(view, quality: str, repeats: int = 2) -> float:
    view._refine_timer.stop()
    view.volume.set_quality(quality)
    view.render_window.Render()  # settles shaders of this quality
    best = float("inf")
    for _ in range(repeats):
        view.renderer.GetActiveCamera().Azimuth(3)
        t0 = time.perf_counter()
        view.render_window.Render()
        best = min(best, time.perf_counter() - t0)
    return best


def save_png(pixels, path: str) -> None:
    from PySide6.QtGui import QImage

    h, w, _ = pixels.shape
    img = QImage(pixels.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888)
    img.save(path)


def measure(frames: int, shots: str | None) -> None:
    import tempfile

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    os.environ.setdefault("HOUNSFIELD_DATA_DIR", tempfile.mkdtemp(prefix="hounsfield-bench-"))
    app = QApplication(sys.argv[:1])
    from viewer.ui.mainwindow import MainWindow
    from viewer.ui.theme import apply_theme

    apply_theme(app)
    settings = QSettings(os.path.join(os.environ["HOUNSFIELD_DATA_DIR"], "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings)
    win.model.set_layout("1x3")
    win.browser_dock.hide()
    win.resize(1200, 800)
    win.show()
    win.open_path(str(DATA / "chest-ct"))
    end = time.monotonic() + 120
    while (not win.model.series or win.session.jobs) and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.005)
    pump(app, 1.0)
    vol = win.model.active_state.volume
    view = win.grid.views[3]
    # baseline "2D only": the CT open and drawn in three 2D views, the 3D view never drawn
    for v in win.grid.slice_views:
        v.render_now()
    pump(app, 0.5)
    base = rss_mb()
    view.volume.actor.SetVisibility(False)
    win.model.toggle_maximise(3)
    pump(app, 0.5)
    size_view(win, app, view, SIZE, SIZE)
    view.capture_still("refined")  # the 3D view's OpenGL context, orientation cube, no volume yet
    pump(app, 0.5)
    base_ctx = rss_mb()
    view.volume.actor.SetVisibility(True)
    view.capture_still("refined")  # first volume frame: texture upload, ray-cast shaders
    pump(app, 0.5)
    added = rss_mb() - base
    added_volume = rss_mb() - base_ctx
    texture_mb = vol.nbytes / 2**20  # one 16-bit texel per voxel
    w, h = view.size_px()
    caps = [line for line in view.render_window.ReportCapabilities().splitlines() if "renderer string" in line]
    print(f"chest CT {vol.shape[2]}x{vol.shape[1]}x{vol.shape[0]} {vol.array.dtype} ({vol.nbytes / 2**20:.0f} MB); "
          f"3D view {w}x{h} px; {caps[0].strip() if caps else ''}")
    print(f"  volume shared with VTK (no CPU copy): "
          f"{'yes' if win.session.vtk_volume(win.model.active_state.key).shares_memory() else 'NO'}")

    view.set_preset("CT bone")
    timed_render(view, "refined", 1)
    fps, rendered = drag_fps(app, view, frames)
    lod = "interactive"
    refined = timed_render(view, "refined")
    full = timed_render(view, "full", 1)
    view.volume.set_quality("full")
    fps_nolod, _ = drag_fps_fixed(app, view, "full", max(3, frames // 20))
    print(f"  rotation with level of detail ({lod} quality while dragging) "
          f"{fps:6.1f} fps  ({rendered} frames)   target >= 10")
    print(f"  rotation without level of detail (full quality)          {fps_nolod:6.2f} fps")
    print(f"  refined still frame (after release)                      {refined:6.2f} s    target <= 2")
    print(f"  full-quality frame                                       {full:6.2f} s")
    print(f"  memory added by opening 3D vs baseline '2D only' ({base:.0f} MB): {added:.1f} MB = "
          f"{100 * added / (vol.nbytes / 2**20):.0f} % of the volume   target <= 10 %")
    print(f"    the 3D view's OpenGL context and scene without the volume: {base_ctx - base:.1f} MB; "
          f"the volume rendering itself: {added_volume:.1f} MB = {100 * added_volume / texture_mb:.0f} %")
    print(f"    of which the llvmpipe volume texture (GPU memory on a real GPU): about {texture_mb:.0f} MB; "
          f"the rest: {added - texture_mb:.1f} MB = {100 * (added - texture_mb) / texture_mb:.0f} % of the volume")
    if shots:
        os.makedirs(shots, exist_ok=True)
        size_view(win, app, view, 800, 800)
        view.set_mode("composite")
        for preset, name in (("CT bone", "bone"), ("CT lung", "lung")):
            view.set_preset(preset)
            view.standard_view("anterior")
            path = os.path.join(shots, f"screenshot-3d-{name}.png")
            save_png(view.capture_still("full"), path)
            print(f"  wrote {path}")
    win.close()


def drag_fps_fixed(app, view, quality: str, frames: int) -> tuple[float, int]:
    """Like drag_fps, with the level of detail switched off (the quality held fixed)."""
    view.lod_enabled = False
    view.volume.set_quality(quality)
    try:
        return drag_fps(app, view, frames)
    finally:
        view.lod_enabled = True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--screenshots", default=None, help="folder for screenshot-3d-bone.png and -lung.png")
    args = p.parse_args()
    if not (DATA / "chest-ct").exists():
        print(f"skipped: real data {DATA / 'chest-ct'} is absent")
        return 0
    if os.environ.get("HOUNSFIELD_BENCH_CHILD"):
        measure(args.frames, args.screenshots)
        return 0
    env = dict(os.environ, HOUNSFIELD_BENCH_CHILD="1")
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1920x1080x24", sys.executable, __file__, "--frames", str(args.frames)]
    if args.screenshots:
        cmd += ["--screenshots", args.screenshots]
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
