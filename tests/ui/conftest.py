"""Fixtures for GUI tests: real widgets under an X server (run the suite under xvfb-run).

VTK inside Qt needs X; without $DISPLAY these tests skip with a reason.  Each window gets its own
settings file; every window is closed and its VTK windows finalised at the end of its test.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def as_the_app_looks(request):
    """The GUI tests run in the app's own theme (viewer.ui.app applies it at start), so what they check
    and the README screenshots some of them take are what a user sees; without a display, nothing."""
    if os.environ.get("DISPLAY"):
        from viewer.ui.theme import apply_theme

        apply_theme(request.getfixturevalue("qapp"))
    yield


def needs_display() -> None:
    if not os.environ.get("DISPLAY"):
        pytest.skip("GUI test: needs an X server (run under xvfb-run -a -s '-screen 0 1920x1080x24')")


@pytest.fixture
def make_window(qtbot, tmp_path):
    """make_window(layout="2x2", size=(1400, 900)) -> a shown MainWindow with private settings."""
    needs_display()
    from PySide6.QtCore import QSettings

    from viewer.ui.mainwindow import MainWindow

    windows = []

    def make(layout: str | None = "2x2", size=(1400, 900), settings_path=None):
        path = settings_path or str(tmp_path / f"settings-{len(windows)}.ini")
        win = MainWindow(settings=QSettings(path, QSettings.Format.IniFormat))
        if layout is not None:  # None: keep what the settings restored
            win.model.set_layout(layout)
        win.resize(*size)
        win.show()
        qtbot.waitExposed(win)
        win.activateWindow()  # keyboard shortcuts need an active window (no window manager under Xvfb)
        qtbot.waitUntil(win.isActiveWindow, timeout=3000)
        windows.append(win)
        return win

    yield make
    for win in windows:
        win.session.close_all()
        if win.isVisible():
            win.close()


@pytest.fixture(scope="module")
def ct_window(qapp, tmp_path_factory):
    """The real chest CT loaded once in a window shared by one module's tests (each resets it)."""
    needs_display()
    from tests.conftest import data_path
    from tests.ui.helpers import open_study_window

    win = open_study_window(qapp, tmp_path_factory.mktemp("ct"), data_path("chest-ct"))
    yield win
    win.close()

