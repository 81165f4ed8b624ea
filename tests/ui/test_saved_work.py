"""Nothing the radiologist made is lost between sessions (issue 12, items 2 and 18): saved
measurements come back when the study is reopened and survive the next edit; quitting asks about
a segmentation that was never exported; Home keeps the window level; RT structure sets, SEG and
SR files open with their images.  Real windows, real mouse and key events."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from tests.conftest import data_path
from tests.ui.helpers import drag, settle, wait_loaded

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
    from PySide6.QtWidgets import QAbstractButton, QApplication, QFileDialog, QLineEdit, QMessageBox

    todo, seen = list(answers), []
    end = time.monotonic() + 20  # never left polling into later tests

    def poll():
        if not todo or time.monotonic() > end:
            return
        w = QApplication.activeModalWidget()
        if isinstance(w, QMessageBox) and isinstance(todo[0], str) and not todo[0].startswith("/"):
            seen.append((w.text(), w.informativeText()))
            w.findChild(QAbstractButton, todo.pop(0)).click()
        elif isinstance(w, QFileDialog):  # the path typed into its file name box, then Return
            edit = w.findChild(QLineEdit, "fileNameEdit")
            edit.setText(str(todo.pop(0)))
            qtbot.keyClick(edit, Qt.Key.Key_Return)
            seen.append("file")
        QTimer.singleShot(20, poll)

    QTimer.singleShot(20, poll)
    return seen


def quit_with_keys(qtbot, win) -> None:
    """Ctrl+Q, as the user quits (in the active window: no window manager activates it after a dialog)."""
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)
    qtbot.keyClick(win.grid.slice_views[0], Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot)


def ruler(qtbot, win, ia, ib):
    """Draw a ruler with the mouse in the axial view between voxel indices ``ia`` and ``ib``."""
    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_tool("measure_length")
    drag(qtbot, axial, vol.index_to_lps(ia), vol.index_to_lps(ib))


def panel_rows(win) -> list[str]:
    t = win.features.measure.panel.table
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
    drawn = [m.uid for m in win.features.measure.controller.measurements()]
    assert len(drawn) == 3 and [m.uid for m in load_measurements(uid)] == drawn
    win.close()

    again = open_window(make_window, qtbot, ct)
    settle(qtbot, 100)
    assert [m.uid for m in again.features.measure.controller.measurements()] == drawn  # back in the controller
    assert panel_rows(again) == ["Length"] * 3  # and listed in the panel
    overlay = again.features.measure.controller.overlays[0]
    state = again.model.active_state
    again.model.set_point(state.key, state.volume.index_to_lps([256, 256, 78]))
    settle(qtbot)
    again.grid.slice_views[0].update_scene()
    assert len(overlay.drawn) == 3  # and drawn on their slice
    ruler(qtbot, again, [150, 320, 78], [260, 330, 78])
    assert len(load_measurements(uid)) == 4  # the new one joins the saved three
    assert [m.uid for m in load_measurements(uid)][:3] == drawn
    assert panel_rows(again) == ["Length"] * 4


def test_two_windows_on_one_study_lose_none_of_each_others_measurements(make_window, qtbot, private_data):
    """Two windows on the same CT, rulers drawn with the mouse in each in turn: each window's rulers are
    its own, the store keeps all of them (each window's save used to replace the other's), and the study
    reopened lists them all."""
    from viewer.core.measurement_store import load_measurements

    ct = data_path("chest-ct")
    first = open_window(make_window, qtbot, ct, layout="1x1")
    second = open_window(make_window, qtbot, ct, layout="1x1")
    uid = first.model.active_state.volume.source.series_instance_uid
    for win in (first, second):
        state = win.model.active_state
        win.model.set_point(state.key, state.volume.index_to_lps([256, 256, 78]))
        settle(qtbot)
    ruler(qtbot, first, [150, 200, 78], [260, 210, 78])
    ruler(qtbot, second, [150, 260, 78], [260, 270, 78])
    ruler(qtbot, first, [150, 320, 78], [260, 330, 78])
    # each window's rulers are its own (the second window's tools used to serve the first one's views)
    assert [len(w.workspace.current.measurements) for w in (first, second)] == [2, 1]
    drawn = [m.uid for w in (first, second) for m in w.workspace.current.measurements]
    assert sorted(m.uid for m in load_measurements(uid)) == sorted(drawn)
    first.close()
    second.close()
    again = open_window(make_window, qtbot, ct, layout="1x1")
    settle(qtbot, 100)
    assert sorted(m.uid for m in again.features.measure.controller.measurements()) == sorted(drawn)
    assert panel_rows(again) == ["Length"] * 3


def test_a_measurement_that_cannot_be_saved_is_said_and_kept(make_window, qtbot, private_data):
    """The store cannot be written (its file name is taken by a folder, as a full disk fails a write):
    the message bar says so in one sentence, the ruler stays in the window and its panel, and the next
    change once the store is writable again saves it."""
    import os
    import shutil

    from viewer.core.measurement_store import load_measurements, store_path

    win = open_window(make_window, qtbot, data_path("chest-ct"), layout="1x1")
    state = win.model.active_state
    win.model.set_point(state.key, state.volume.index_to_lps([256, 256, 78]))
    settle(qtbot)
    os.makedirs(store_path())
    ruler(qtbot, win, [150, 200, 78], [260, 210, 78])
    settle(qtbot)
    text = win.message_bar.text()
    assert text.startswith("The measurements could not be saved") and "Traceback" not in text
    assert panel_rows(win) == ["Length"]
    shutil.rmtree(store_path())
    ruler(qtbot, win, [150, 260, 78], [260, 270, 78])
    settle(qtbot)
    assert not win.message_bar.text().startswith("The measurements could not be saved")
    uid = state.volume.source.series_instance_uid
    assert len(load_measurements(uid)) == 2 and panel_rows(win) == ["Length"] * 2


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
    from viewer.core.io.seg_dicom import read_dicom_seg

    ct = data_path("chest-ct")
    win = open_window(make_window, qtbot, ct)
    brush(qtbot, win, [200, 300, 70], [260, 300, 70])
    seg = win.features.segments.controller.segmentation()
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
    bar = again.features.segments.restore_bar
    qtbot.waitUntil(bar.isVisible, timeout=3000)
    qtbot.mouseClick(bar.restore_button, Qt.MouseButton.LeftButton)
    restored = again.features.segments.controller.segmentation()
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
    assert not third.features.segments.restore_bar.isVisible()
    # Discard: the edits are deleted for good; a window without unexported work just closes
    brush(qtbot, third, [200, 200, 70], [230, 200, 70])
    seen = answer_dialogs(qtbot, ["quit_discard"])
    quit_with_keys(qtbot, third)
    assert seen and not third.isVisible() and journal.recoverable(series) == []
    fourth = open_window(make_window, qtbot, ct)
    quit_with_keys(qtbot, fourth)
    assert not fourth.isVisible()  # nothing to ask about


def _browser_item(win, path):
    from viewer.ui.browser import ROLE

    tree = win.browser.tree
    items = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    while items:
        item = items.pop()
        payload = item.data(0, ROLE)
        if isinstance(payload, dict) and payload.get("root") == str(path):
            return item
        items += [item.child(i) for i in range(item.childCount())]
    return None


def test_an_rtstruct_opens_as_segments_from_the_browser_and_as_a_file(make_window, qtbot, private_data):
    from viewer.core.rtstruct import read_rtstruct

    folder = data_path("dicom-objects", "dicompyler-rt")
    rtss = folder / "rtss.dcm"
    names = ["BODY", "Areola", "Borders", "Breast", "Heart", "Lt Lung", "Nodes", "Scar", "Tumor Bed",
             "Tumor Bed Block"]
    # the folder is opened (its CT shows); the structure set is listed: a double-click shows it
    win = open_window(make_window, qtbot, folder)
    state = win.model.active_state
    expected, _ = read_rtstruct(rtss, state.volume)
    qtbot.waitUntil(lambda: _browser_item(win, rtss) is not None, timeout=5000)
    item = _browser_item(win, rtss)
    assert not item.isDisabled() and "RT" in item.text(1)
    tree = win.browser.tree
    tree.scrollToItem(item)
    rect = tree.visualItemRect(item)
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: bool(state.open_series.segmentations), timeout=10000)
    seg = state.open_series.segmentations[-1].segmentation
    assert [s.name for s in seg.segments] == names
    assert seg.segments[0].color == (154, 155, 100)
    assert np.array_equal(seg.mask(seg.segments[0]), expected.mask(expected.segments[0]))
    assert seg.count(seg.segments[0]) > 30000  # the body outline on the one slice there is
    assert "rtss.dcm" in win.statusBar().currentMessage()
    # opening the file itself in a new window opens its CT first
    other = make_window()
    other.open_path(str(rtss))
    wait_loaded(qtbot, other)
    qtbot.waitUntil(lambda: bool(other.model.active_state.open_series.segmentations), timeout=10000)
    st = other.model.active_state
    assert st.volume.source.series_instance_uid == state.volume.source.series_instance_uid
    assert [s.name for s in st.open_series.segmentations[-1].segments] == names
    assert np.array_equal(st.open_series.segmentations[-1].segmentation.layers[0], seg.layers[0])


def test_a_seg_file_opens_with_its_images_beside_it(make_window, qtbot, private_data, tmp_path):
    from viewer.core.io.seg_dicom import read_dicom_seg

    seg_path = data_path("dicom-objects", "dcmqi-liver", "liver-seg.dcm")
    win = make_window()
    win.open_path(str(seg_path))  # the images are in ct-3slice/ beside it
    wait_loaded(qtbot, win)
    qtbot.waitUntil(lambda: bool(win.model.active_state.open_series.segmentations), timeout=10000)
    state = win.model.active_state
    assert state.volume.shape[0] == 3 and state.volume.source.path.endswith("ct-3slice")
    seg = state.open_series.segmentations[-1].segmentation
    expected = read_dicom_seg(str(seg_path), state.volume)
    assert [s.name for s in seg.segments] == [s.name for s in expected.segments]
    assert seg.count(seg.segments[0]) > 0
    assert np.array_equal(seg.layers[0], expected.layers[0])
    assert not win.message_bar.isVisible()
    # a SEG whose images are nowhere near: one sentence, and the open study stays
    import shutil

    lone = tmp_path / "lone" / "liver-seg.dcm"
    lone.parent.mkdir()
    shutil.copy(seg_path, lone)
    other = make_window()
    other.open_path(str(lone))
    qtbot.waitUntil(lambda: not other.session.jobs, timeout=20000)
    settle(qtbot)
    assert other.message_bar.isVisible()
    assert "not in its folder or the folder above" in other.message_bar.label.text()


def test_an_sr_file_opens_with_its_images_and_its_measurements(make_window, qtbot, private_data, tmp_path):
    import shutil

    import viewer
    from viewer.core.io.sr import write_sr
    from viewer.core.measurements import Measurement, compute

    study = tmp_path / "study"
    shutil.copytree(data_path("dicom-objects", "dcmqi-liver", "ct-3slice"), study / "ct")
    vol = viewer.load(study / "ct")
    a, b = vol.index_to_lps([100, 200, 1]), vol.index_to_lps([300, 260, 1])
    m = Measurement("length", np.stack([a, b]), np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]),
                    label="liver span", series_uid=vol.source.series_instance_uid,
                    frame_of_reference_uid=vol.source.frame_of_reference_uid)
    compute(m, vol)
    write_sr(study / "report.dcm", [m], vol.source)
    win = make_window()
    win.open_path(str(study / "report.dcm"))  # its images are in ct/ beside it
    wait_loaded(qtbot, win)
    qtbot.waitUntil(lambda: len(win.features.measure.controller.measurements()) == 1, timeout=10000)
    (got,) = win.features.measure.controller.measurements()
    assert got.kind == "length" and got.label == "liver span"
    assert got.values["length_mm"] == pytest.approx(m.values["length_mm"], rel=1e-6)
    assert panel_rows(win) == ["Length"]
    state = win.model.active_state
    win.model.set_point(state.key, vol.index_to_lps([200, 230, 1]))
    settle(qtbot)
    win.grid.slice_views[0].update_scene()
    assert [d.measurement for d in win.features.measure.controller.overlays[0].drawn] == [got]  # drawn on its slice


def test_another_tools_sr_in_image_coordinates_is_listed_and_drawn(make_window, qtbot, private_data):
    """highdicom's example SR gives its regions in pixel coordinates (SCOORD) of the CT image beside
    it: a circle and a polyline, placed on that image."""
    sr = data_path("dicom-objects", "highdicom", "sr_document_with_multiple_groups.dcm")
    win = make_window()
    win.open_path(str(sr))
    wait_loaded(qtbot, win)
    qtbot.waitUntil(lambda: len(win.features.measure.controller.measurements()) == 2, timeout=10000)
    circle, polyline = win.features.measure.controller.measurements()
    assert (circle.kind, circle.label, polyline.kind, polyline.label) == (
        "ellipse", "LungNodule0001", "polygon", "Aorta0001")
    vol = win.model.active_state.volume
    # the circle's centre is pixel (45, 55) (column, row from the image's corner), its radius 10 pixels
    assert np.allclose(vol.lps_to_index(circle.points[0]), [44.5, 54.5, 0], atol=1e-6)
    assert np.linalg.norm(circle.points[1] - circle.points[0]) == pytest.approx(10 * vol.spacing[0])
    assert panel_rows(win) == ["Ellipse ROI", "Polygon ROI"]
    win.grid.slice_views[0].update_scene()
    assert len(win.features.measure.controller.overlays[0].drawn) == 2
