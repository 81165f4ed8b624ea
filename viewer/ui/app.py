"""Start the Qt application and the main window.

Developer switches (environment variables, so that ``hounsfield PATH`` stays the one command):

- ``HOUNSFIELD_STARTUP_PROBE=1``: when the first decoded slice has been rendered, print
  ``HOUNSFIELD_FIRST_SLICE <unix time> <heavy modules imported>`` and quit (bench_startup.py).
- ``HOUNSFIELD_LAYOUT=1x1|1x3|2x2``: start in that layout.
"""

from __future__ import annotations

import os
import sys
import time

HEAVY_MODULES = ("torch", "monai", "SimpleITK", "pyvista", "pyvistaqt", "scipy", "matplotlib")


def _install_excepthook(window) -> None:
    """An exception escaping a Qt slot goes to the log and one sentence to the window, never a crash."""
    from viewer.logs import log, log_path

    def hook(kind, value, tb):
        log.error("unexpected error", exc_info=(kind, value, tb))
        try:
            window.show_error(f"Something went wrong ({kind.__name__}); details are in {log_path()}.")
        except Exception:
            pass

    sys.excepthook = hook


def _probe_first_slice(window, app) -> None:
    """Report when a decoded slice is on screen, then quit (the startup benchmark reads it)."""

    def on_first(_key: str) -> None:
        view = window.grid.views[0]
        view.render_now()
        heavy = ",".join(m for m in HEAVY_MODULES if m in sys.modules) or "-"
        print(f"HOUNSFIELD_FIRST_SLICE {time.time():.6f} {heavy}", flush=True)
        app.quit()

    window.session.first_slice.connect(on_first)


def run_viewer(path: str | None = None, *, series: str | None = None) -> int:
    """Open the main window on ``path`` (None: the built-in demo study); return the exit code."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from viewer.logs import setup_logging

    setup_logging()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Hounsfield")
    app.setOrganizationName("Hounsfield")
    app.setAttribute(Qt.ApplicationAttribute.AA_DontCreateNativeWidgetSiblings)
    from viewer.ui.theme import apply_theme

    apply_theme(app)
    job = None
    if path is not None:  # start scanning now, while VTK is imported and the window is built
        from viewer.ui.loading import LoadJob

        job = LoadJob(os.path.abspath(os.path.expanduser(path)), series)
        job.start(hold=True)
    from viewer.ui.mainwindow import MainWindow

    window = MainWindow()
    layout = os.environ.get("HOUNSFIELD_LAYOUT")
    if layout:
        window.model.set_layout(layout)
    _install_excepthook(window)
    if os.environ.get("HOUNSFIELD_STARTUP_PROBE"):
        _probe_first_slice(window, app)
    if job is None:
        window.open_demo()
    else:
        window.adopt_job(job)
    window.show()
    return app.exec()
