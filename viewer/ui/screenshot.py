"""Developer tool: open a study in the viewer, wait until it is loaded, save a screenshot.

    xvfb-run -a -s "-screen 0 1920x1080x24" python -m viewer.ui.screenshot PATH \
        --out docs/screenshot-2x2.png [--layout 2x2] [--size 1600x1000] [--preset 2] [--ai ct-denoising]
        [--compare] [--heatmap 0.4] [--no-crosshair] [--zoom 1.3] [--only-docks "AI results"]

docs/screenshot-denoise.png: ``../shared/data/chest-ct --preset 1 --ai ct-denoising --compare --heatmap 0.4
--no-crosshair --zoom 1.3 --only-docks "AI results" --size 1600x1000 --out docs/screenshot-denoise.png``.

The window is captured with QScreen.grabWindow, which sees the OpenGL views under X11 (QWidget.grab()
does not).  Settings go to a temporary folder, so the user's own layout is untouched.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from viewer.paths import use_temporary_data_dir


def wait_until(app, predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def open_window(path: str | None, size: str, layout: str = "2x2"):
    """(app, window): a themed main window of ``size`` ('WxH') in ``layout`` with ``path`` (or the demo
    study) opened and loaded, its settings in a temporary folder; window is None (and the reason on
    stderr) when the study did not load within two minutes."""
    use_temporary_data_dir("hounsfield-shot-")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from viewer.ui.mainwindow import MainWindow
    from viewer.ui.theme import apply_theme

    apply_theme(app)
    window = MainWindow()
    w, h = (int(x) for x in size.split("x"))
    window.resize(w, h)
    window.model.set_layout(layout)
    window.show()
    if path:
        window.open_path(path)
    else:
        window.open_demo()
    if not wait_until(app, lambda: window.model.series and not window.session.jobs, 120):
        print("the study did not finish loading", file=sys.stderr)
        return app, None
    return app, window


def show_comparison(window, entry) -> None:
    """``--compare``: the AI result beside its original, the original active.  A result on the
    original's scale (the denoised CT) takes the original's window and preset, so the two compare;
    another (MR-to-CT's synthetic CT) keeps its own: given the MR's W 852 L 469 it showed bone alone."""
    from viewer.core.ai_results import same_scale

    window.features.ai.controller.compare(entry)
    window.model.set_active(0)
    source = window.model.series[entry.source_key]
    derived = window.model.series[entry.derived_keys[0]]
    if same_scale(source.volume, derived.volume):
        derived.set_window(*source.window, preset=source.preset)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", nargs="?", help="study folder or file (default: the demo study)")
    p.add_argument("--out", required=True)
    p.add_argument("--layout", default="2x2", choices=("1x1", "1x3", "2x2"))
    p.add_argument("--size", default="1600x1000")
    p.add_argument("--preset", help="number key of a window/level preset to apply")
    p.add_argument("--voxel", help="crosshair point as a voxel index 'i,j,k'")
    p.add_argument("--ai", metavar="PLUGIN", help="run this AI plugin on the study and show its results")
    p.add_argument("--compare", action="store_true",
                   help="with --ai: its result beside the original (1 x 3, the original's coronal on the right)")
    p.add_argument("--heatmap", type=float, metavar="THRESHOLD",
                   help="with --ai: its first heatmap shown over the original, values below THRESHOLD not drawn")
    p.add_argument("--no-crosshair", action="store_true", help="hide the crosshair")
    p.add_argument("--zoom", type=float, help="zoom of the active view (1 = one image pixel per screen pixel)")
    p.add_argument("--only-docks", nargs="+", metavar="TITLE", help="hide every dock but these (by title)")
    args = p.parse_args(argv)
    app, window = open_window(args.path, args.size, args.layout)
    if window is None:
        return 1
    if args.preset:
        window.cmd_preset(args.preset)
    if args.voxel:
        state = window.model.active_state
        ijk = [float(x) for x in args.voxel.split(",")]
        window.model.set_point(state.key, state.volume.index_to_lps(ijk))
    if args.ai:
        ai = window.features.ai.controller
        if ai.start(args.ai) is None or not wait_until(app, lambda: bool(ai.entries), 600):
            print(f"the AI run gave no result: {window.message_bar.text()}", file=sys.stderr)
            return 1
        entry = ai.entries[-1]
        if args.compare:
            show_comparison(window, entry)
        if args.heatmap is not None and entry.heatmaps:
            entry.heatmaps[0].set(visible=True, threshold=args.heatmap)
    if args.no_crosshair:
        window.model.set_crosshair_visible(False)
    if args.zoom:
        window.model.set_zoom(window.model.active, args.zoom)
    if args.only_docks:
        from PySide6.QtWidgets import QDockWidget

        for dock in window.findChildren(QDockWidget):
            dock.setVisible(dock.windowTitle() in args.only_docks)
    wait_until(app, lambda: False, 1.5)  # thumbnails, the index, last renders
    for view in window.grid.visible_views():
        view.render_now()
    app.processEvents()
    shot = window.screen().grabWindow(window.winId())
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    shot.save(args.out)
    print(f"saved {args.out} ({shot.width()}x{shot.height()})")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
