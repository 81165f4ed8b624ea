"""Reading-room defects (issue 12, items 6, 14, 15, 16) in the real window with real events: a failed
open leaves the open study alone, the corner text names the DICOM image number, the keyboard focus
stays on the views after a layout change, and the HU read-out follows keyboard scrolling."""

from __future__ import annotations

import re

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from tests.conftest import data_path
from tests.ui.helpers import open_chest_ct_with_gap, qt_pos, ready_window, settle, wait_loaded

pytestmark = pytest.mark.gui


def one_sentence(text: str) -> bool:
    return bool(text) and text.endswith(".") and len(re.findall(r"[.!?](\s|$)", text)) == 1


# item 6: a failed open must leave what was open exactly as it was

@pytest.mark.parametrize("series", ["same", "other"])
def test_a_truncated_file_leaves_the_open_study_as_it_was(make_window, qtbot, brain_mr_dir, tmp_path, series):
    """A copy of one of the study's files, cut short in its pixels (``other``: in another series)."""
    win = make_window("2x2")
    win.open_path(str(brain_mr_dir))
    wait_loaded(qtbot, win)
    m = win.model
    key = m.viewports[0].series
    m.set_plane(1, "axial")  # a view the user arranged: a failed open must not reset it
    m.set_zoom(0, 2.0)
    m.set_tool("zoom")
    before = [(vp.series, vp.plane, vp.zoom, vp.pan) for vp in m.viewports]
    source = sorted(p for p in brain_mr_dir.iterdir() if p.is_file())[60]
    truncated = tmp_path / "truncated.dcm"
    if series == "other":
        ds = pydicom.dcmread(source)
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(truncated)
        source = truncated
    data = source.read_bytes()
    truncated.write_bytes(data[: len(data) - len(data) // 3])  # the header is whole, the pixels are cut
    win.open_path(str(truncated))
    qtbot.waitUntil(lambda: bool(win.message_bar.text()) and not win.session.jobs, timeout=30000)
    settle(qtbot, 100)
    assert one_sentence(win.message_bar.text()), win.message_bar.text()
    assert [(vp.series, vp.plane, vp.zoom, vp.pan) for vp in m.viewports] == before
    assert list(m.series) == [key] and list(win.session.images) == [key] and list(win.workspace.series) == [key]
    assert m.tool == "zoom"
    for view in win.grid.slice_views:
        assert view.state is m.series[key]
        pixels = view.capture()
        assert np.count_nonzero(pixels) > 1000 and pixels.std() > 5
        assert view.notice.actor.GetInput() == ""


# one chest CT window for the items below (loaded once); each test starts from Home

@pytest.fixture
def win(ct_window, qtbot):
    m = ct_window.model
    ready_window(ct_window, qtbot, "2x2")
    m.set_tool("wl")
    ct_window.browser.filter.clear()
    state = m.active_state
    nk, nj, ni = state.volume.shape
    m.set_point(state.key, state.volume.index_to_lps([ni // 2, nj // 2, nk // 2]))
    settle(qtbot, 50)
    return ct_window


def voxel_of(readout: str) -> tuple[int, int, int]:
    i, j, k = (int(x) for x in readout.split("voxel (")[1].rstrip(")").split(","))
    return i, j, k


def k_of(state) -> int:
    return int(round(state.volume.lps_to_index(state.point)[2]))


# item 14: "Im" is the DICOM InstanceNumber of the slice shown, as on PACS

def test_image_number_is_the_dicom_instance_number(win, qtbot):
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    by_z = {}
    for path in data_path("chest-ct").iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_z[round(float(ds.ImagePositionPatient[2]), 1)] = int(ds.InstanceNumber)
    for k in (10, 40, 130):
        nk, nj, ni = state.volume.shape
        win.model.set_point(state.key, state.volume.index_to_lps([ni // 2, nj // 2, k]))
        settle(qtbot)
        axial.capture()
        text = axial.corners.text("bottom_left")
        z = round(float(state.volume.index_to_lps([0, 0, k])[2]), 1)
        expected = by_z[z]
        assert expected != k + 1  # the chest CT numbers its images from the head: index and number differ
        assert f"Im: {expected} / 141" in text, text
        assert f"Pos: {z:.1f} mm" in text, text


# item 15: after maximise or a layout change the keyboard stays with the views

def test_focus_stays_on_the_views_after_maximise_and_layout_change(win, qtbot):
    coronal = win.grid.slice_views[1]
    filter_box = win.browser.filter
    qtbot.mouseClick(coronal, Qt.MouseButton.LeftButton, pos=QPoint(40, 40))
    qtbot.mouseDClick(coronal, Qt.MouseButton.LeftButton, pos=QPoint(40, 40))
    settle(qtbot)
    assert win.model.visible_slots() == [1]
    assert QApplication.focusWidget() is coronal
    state = win.model.state(1)
    j0 = int(round(state.volume.lps_to_index(state.point)[1]))
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Down)  # a view shortcut: next slice
    settle(qtbot)
    assert filter_box.text() == ""
    assert int(round(state.volume.lps_to_index(state.point)[1])) != j0
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_F)  # back to the layout (a view shortcut)
    settle(qtbot)
    assert filter_box.text() == "" and win.model.visible_slots() == [0, 1, 2, 3]
    assert QApplication.focusWidget() is coronal
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot)
    assert win.model.layout == "1x3"
    assert QApplication.focusWidget() is coronal
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot)
    assert win.model.visible_slots() == [1]
    assert QApplication.focusWidget() is coronal
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot)
    assert QApplication.focusWidget() is coronal and filter_box.text() == ""


# item 16: the HU read-out follows the slice under the parked cursor

def test_readout_follows_keyboard_scrolling_under_the_parked_cursor(win, qtbot):
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    k0 = k_of(state)
    target = state.volume.index_to_lps((200, 300, k0))  # in the right lung's edge
    pos = qt_pos(axial, target).toPoint()
    qtbot.mouseClick(axial, Qt.MouseButton.LeftButton, pos=pos)  # focus, and the crosshair goes there
    qtbot.mouseMove(axial, pos)
    settle(qtbot)
    i, j, k = voxel_of(win.readout.text())
    assert k == k0
    for _ in range(6):
        qtbot.keyClick(axial, Qt.Key.Key_Down)
    settle(qtbot)
    k1 = k_of(state)
    assert k1 != k0
    text = win.readout.text()
    assert voxel_of(text) == (i, j, k1), text
    assert text.startswith(f"HU: {int(state.volume.array[k1, j, i])} "), text


def test_a_number_key_without_a_preset_says_which_presets_there_are(make_window, qtbot, brain_mr_dir):
    """An MR has one preset (1, auto from the histogram): pressing 2, as for the CT's lung window, did
    nothing and said nothing.  The window stays; the status bar names the presets there are."""
    win = make_window("2x2")
    win.open_path(str(brain_mr_dir))
    wait_loaded(qtbot, win)
    win.model.set_active(0)
    state = win.model.active_state
    before = state.window
    axial = win.grid.slice_views[0]
    axial.setFocus()
    qtbot.keyClick(axial, Qt.Key.Key_2)
    assert state.window == before
    said = win.statusBar().currentMessage()
    assert "No window preset on key 2 for MR" in said and "1 Auto (histogram)" in said, said
    qtbot.keyClick(axial, Qt.Key.Key_1)
    assert state.preset == "Auto (histogram)"


def test_a_slice_missing_from_the_series_says_so_in_the_view(make_window, qtbot, chest_ct_dir, tmp_path,
                                                             monkeypatch):
    """Four of the chest CT's files left out: their slots load blank, and scrolling onto one showed a
    black view with only 'Im: -' (the status bar's note had gone); the view now says why it is empty."""
    win = open_chest_ct_with_gap(make_window, qtbot, chest_ct_dir, tmp_path, monkeypatch)
    state = win.model.active_state
    blank = state.volume.source.blank_slices
    assert len(blank) == 4 and all(state.volume.array[k].max() == state.volume.array[k].min() for k in blank)
    axial = win.grid.slice_views[0]
    nk, nj, ni = state.volume.shape
    for k, said in ((blank[1], True), (blank[-1] + 1, False)):
        win.model.set_point(state.key, state.volume.index_to_lps([ni // 2, nj // 2, k]))
        settle(qtbot)
        axial.update_scene()
        text = axial.notice.actor.GetInput() if axial.notice.actor.GetVisibility() else ""
        assert ("missing from the series" in text) == said, (k, text)
    coronal = win.grid.slice_views[1]
    coronal.update_scene()
    assert not coronal.notice.actor.GetVisibility()  # a reformat shows the gap as a band, not a notice
