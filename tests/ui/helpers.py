"""Helpers shared by the GUI tests: waiting for loads, and mapping LPS points to view pixels."""

from __future__ import annotations

import numpy as np


def wait_loaded(qtbot, win, timeout: int = 60000) -> None:
    """Wait until every load job of the window has ended and a series is shown."""
    qtbot.waitUntil(lambda: bool(win.model.series) and not win.session.jobs, timeout=timeout)
    settle(qtbot)


def settle(qtbot, ms: int = 30) -> None:
    """Let queued signals and coalesced renders run."""
    qtbot.wait(ms)


def display_of(view, lps) -> tuple[float, float]:
    """Display pixel (VTK: origin bottom-left) of an LPS point in a 2D view."""
    view.update_scene()
    return view.view2d.to_display(*view.pipeline.geometry.from_lps(lps))


def qt_pos(view, lps):
    """Qt widget position (logical, top-left origin) of an LPS point in a 2D view."""
    from PySide6.QtCore import QPointF

    x, y = display_of(view, lps)
    _, h = view.size_px()
    dpr = view.size_px()[0] / view.width()
    return QPointF(x / dpr, (h - y) / dpr)


def pixels_at(image: np.ndarray, view, lps_points) -> np.ndarray:
    """Captured RGB values (N, 3) of a view at LPS points (image row 0 is the top)."""
    out = []
    h = image.shape[0]
    for p in lps_points:
        x, y = display_of(view, p)
        out.append(image[h - 1 - int(round(y)), int(round(x))])
    return np.asarray(out)


def open_study_window(qapp, settings_dir, path, size=(1400, 900), layout: str = "2x2", before_show=None):
    """A MainWindow with private settings in ``settings_dir``, shown, with the study at ``path``
    loaded completely (for module-scoped fixtures that share one loaded window)."""
    import time

    from PySide6.QtCore import QSettings

    from viewer.ui.mainwindow import MainWindow

    settings = QSettings(str(settings_dir / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings)
    if before_show is not None:
        before_show(win)
    win.resize(*size)
    win.model.set_layout(layout)
    win.show()
    win.open_path(str(path))
    end = time.monotonic() + 60
    while (not win.model.series or win.session.jobs) and time.monotonic() < end:
        qapp.processEvents()
        time.sleep(0.01)
    assert win.model.series and not win.session.jobs, f"{path} did not load"
    win.activateWindow()  # keyboard shortcuts need an active window (no window manager under Xvfb)
    return win



def open_pair_window(qapp, settings_dir, pair, size=(1800, 900)):
    """A window (1 x 3) with the synthetic pair of tests/followup.py loaded: the baseline first, the
    follow-up in the second view."""
    import time

    win = open_study_window(qapp, settings_dir, pair.baseline_dir, size=size, layout="1x3")
    win.open_path(str(pair.followup_dir), slots=[1])
    end = time.monotonic() + 60
    while (len(win.model.series) < 2 or win.session.jobs) and time.monotonic() < end:
        qapp.processEvents()
        time.sleep(0.01)
    assert len(win.model.series) == 2, "the follow-up did not open"
    return win

def drag(qtbot, view, a, b, steps: int = 6) -> None:
    """A left-button drag in a 2D view from LPS point a to LPS point b, with intermediate moves."""
    from PySide6.QtCore import QPoint, Qt

    pa, pb = qt_pos(view, a).toPoint(), qt_pos(view, b).toPoint()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=pa)
    for t in np.linspace(0, 1, steps)[1:]:
        qtbot.mouseMove(view, QPoint(int(round(pa.x() + t * (pb.x() - pa.x()))),
                                     int(round(pa.y() + t * (pb.y() - pa.y())))))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=pb)
    settle(qtbot)


def ready_window(win, qtbot, layout: str = "2x2") -> None:
    """Start a test on a shared module window: active, in ``layout``, first view active, Home pressed."""
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)
    win.model.set_layout(layout)
    win.model.set_active(0)
    win.model.reset()


def clear_measurements(win) -> None:
    """Remove every measurement of a shared window, so a test starts with none."""
    ctl = win.features.measure.controller
    for _key, meas in list(ctl.all()):
        ctl.remove(meas.uid)


def chest_ct_with_gap(chest_ct_dir, folder, missing=range(60, 64)):
    """A copy of the chest CT in ``folder`` without the files of slices ``missing`` (counted from the
    lowest z): a series with a gap, whose slots load blank."""
    import shutil

    import pydicom

    by_z = sorted(chest_ct_dir.iterdir(), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True)
                                                              .ImagePositionPatient[2]))
    folder.mkdir()
    for i, f in enumerate(by_z):
        if i not in missing:
            shutil.copy(f, folder / f.name)
    return folder


def open_chest_ct_with_gap(make_window, qtbot, chest_ct_dir, tmp_path, monkeypatch):
    """A 2x2 window (its own data folder) with the chest CT missing four slices active."""
    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path / "data"))
    folder = chest_ct_with_gap(chest_ct_dir, tmp_path / "gap")
    win = make_window("2x2")
    win.open_path(str(folder))
    wait_loaded(qtbot, win)
    win.model.set_active(0)
    return win


def open_brain_mr_1x3(make_window, qtbot, tmp_path, monkeypatch):
    """The brain MR DICOM in the 1 x 3 layout of a 1400 x 900 window (panes of about 217 px)."""
    from tests.conftest import data_path

    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path / "data"))
    win = make_window(layout="1x3", size=(1400, 900))
    win.open_path(str(data_path("brain-mr-t1")))
    wait_loaded(qtbot, win)
    settle(qtbot)
    return win

