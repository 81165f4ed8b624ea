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


def brush(qtbot, win, ia, ib):
    """Paint with the brush (key B) in the axial view from voxel ``ia`` to ``ib``."""
    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    axial.setFocus()
    qtbot.keyClick(axial, Qt.Key.Key_B)
    assert win.model.tool == "seg_brush"
    drag(qtbot, axial, vol.index_to_lps(ia), vol.index_to_lps(ib))
    win.model.set_tool("wl")


def answer_dialogs(qtbot, answers: list):
    """Answer the next modal dialogs as they open: a QMessageBox by the object name of a button, a
    QFileDialog by a path.  Returns the list of what was answered (to assert on)."""
    import time

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QAbstractButton, QApplication, QFileDialog, QMessageBox

    todo, seen = list(answers), []
    end = time.monotonic() + 20  # never left polling into later tests

    def poll():
        if not todo or time.monotonic() > end:
            return
        w = QApplication.activeModalWidget()
        if isinstance(w, QMessageBox) and isinstance(todo[0], str) and not todo[0].startswith("/"):
            seen.append((w.text(), w.informativeText()))
            w.findChild(QAbstractButton, todo.pop(0)).click()
        elif isinstance(w, QFileDialog):
            w.selectFile(str(todo.pop(0)))
            w.accept()
            seen.append("file")
        QTimer.singleShot(20, poll)

    QTimer.singleShot(20, poll)
    return seen


def quit_with_keys(qtbot, win) -> None:
    """Ctrl+Q, as the user quits."""
    qtbot.keyClick(win.grid.slice_views[0], Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
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


def test_quitting_asks_about_a_segmentation_never_exported(make_window, qtbot, private_data, tmp_path):
    from viewer.core import journal
    from viewer.core.export.seg_dicom import read_dicom_seg

    ct = data_path("chest-ct")
    win = open_window(make_window, qtbot, ct)
    brush(qtbot, win, [200, 300, 70], [260, 300, 70])
    seg = win.segments.segmentation()
    painted = seg.layers[0].copy()
    assert painted.any()
    series = journal.series_id(win.model.active_state.volume)
    # Cancel: the window stays
    seen = answer_dialogs(qtbot, ["quit_cancel"])
    quit_with_keys(qtbot, win)
    assert seen and win.isVisible()
    text = " ".join(seen[0])
    assert "never exported" in text and "stay only on this computer" in text and "1 segment" in text
    # Quit without exporting: the window goes, the edits are offered when the series opens again
    seen = answer_dialogs(qtbot, ["quit_keep"])
    quit_with_keys(qtbot, win)
    assert seen and not win.isVisible()
    assert [r.segments for r in journal.recoverable(series)] == [[seg.segments[0].name]]
    again = open_window(make_window, qtbot, ct)
    bar = again.segments.restore_bar
    qtbot.waitUntil(bar.isVisible, timeout=3000)
    qtbot.mouseClick(bar.restore_button, Qt.MouseButton.LeftButton)
    restored = again.segments.segmentation()
    assert np.array_equal(restored.layers[0], painted)
    # Export...: a DICOM SEG is written, then the window closes; nothing is offered any more
    out = tmp_path / "quit.seg.dcm"
    vol = again.model.active_state.volume
    seen = answer_dialogs(qtbot, ["quit_export", out])
    quit_with_keys(qtbot, again)
    assert seen == [seen[0], "file"] and not again.isVisible() and out.exists()
    assert np.array_equal(read_dicom_seg(str(out), vol).layers[0] > 0, painted > 0)
    assert journal.recoverable(series) == []
    third = open_window(make_window, qtbot, ct)
    settle(qtbot, 100)
    assert not third.segments.restore_bar.isVisible()
    # Discard: the edits are deleted for good; a window without unexported work just closes
    brush(qtbot, third, [200, 200, 70], [230, 200, 70])
    seen = answer_dialogs(qtbot, ["quit_discard"])
    quit_with_keys(qtbot, third)
    assert seen and not third.isVisible() and journal.recoverable(series) == []
    fourth = open_window(make_window, qtbot, ct)
    quit_with_keys(qtbot, fourth)
    assert not fourth.isVisible()  # nothing to ask about
