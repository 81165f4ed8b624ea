"""Opening studies in the real window: progressive loading, cancel, errors in one sentence, the MR,
the demo, the study browser, drag-and-drop, linked series and settings that persist."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from tests.ui.helpers import settle, wait_loaded
from viewer.ui.sliceview import SERIES_MIME

pytestmark = pytest.mark.gui


def drop_on(widget, mime: QMimeData, pos: QPointF | None = None) -> bool:
    """Drag ``mime`` onto ``widget`` and drop it there; True when the widget accepted the drag."""
    pos = pos if pos is not None else QPointF(50, 50)
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(pos.toPoint(), *args)  # QDragEnterEvent takes a QPoint, QDropEvent a QPointF
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    QApplication.sendEvent(widget, QDropEvent(pos, *args))
    return True


def one_sentence(text: str) -> bool:
    return bool(text) and text.endswith(".") and len(re.findall(r"[.!?](\s|$)", text)) == 1


def test_series_appears_with_its_first_slice_while_the_rest_loads(make_window, qtbot, chest_ct_dir):
    win = make_window("2x2")
    seen = {}

    def on_first(key):
        state = win.model.series[key]
        axial = win.grid.slice_views[0]
        seen["loaded"] = None if state.loaded is None else (int(state.loaded.sum()), state.loaded.size)
        seen["progress_visible"] = win.progress.isVisible()
        k = int(round(state.volume.lps_to_index(state.point)[2]))
        seen["middle_loaded"] = bool(state.loaded[k])
        seen["pixels"] = axial.capture()
        seen["notice"] = axial.notice.actor.GetInput()

    win.session.first_slice.connect(on_first)
    win.open_path(str(chest_ct_dir))
    qtbot.waitUntil(lambda: "loaded" in seen, timeout=30000)
    done, total = seen["loaded"]
    assert total == 141 and 1 <= done <= total  # shown before the whole series was in
    assert seen["progress_visible"]
    assert seen["middle_loaded"]  # the middle slice is decoded first and is what the axial view shows
    assert seen["pixels"].std() > 20 and not seen["notice"]
    wait_loaded(qtbot, win)
    state = next(iter(win.model.series.values()))
    assert state.loaded is None and not win.progress.isVisible()
    assert "Loading" not in win.grid.slice_views[0].corners.text("top_right")


def test_cancel_keeps_what_was_loaded_usable(make_window, qtbot, chest_ct_dir, monkeypatch):
    import threading

    from viewer.core.dicom import decode

    # The chest CT decodes in under 0.1 s, often before the UI thread sees it open: after the first
    # slices, decoding waits until the window's Cancel has been pressed (or 20 s have passed).
    cancelled, calls, real_read = threading.Event(), [], decode.read_native

    def gated_read(header):
        calls.append(1)
        if len(calls) > 3:
            cancelled.wait(20)
        return real_read(header)

    monkeypatch.setattr(decode, "read_native", gated_read)
    win = make_window("1x3")

    def cancel(_key):
        win.cmd_cancel_load()
        cancelled.set()

    win.session.series_opened.connect(cancel)
    win.open_path(str(chest_ct_dir))
    wait_loaded(qtbot, win)
    state = next(iter(win.model.series.values()))
    assert state.loaded is not None and state.loaded.sum() < 141  # cancelled part-way
    assert one_sentence(win.message_bar.text()) and "cancelled" in win.message_bar.text()
    axial = win.grid.slice_views[0]
    k0 = int(round(state.volume.lps_to_index(state.point)[2]))
    win.model.step(0, 3)
    settle(qtbot)
    assert int(round(state.volume.lps_to_index(state.point)[2])) == k0 - 3
    missing = int(np.flatnonzero(~state.loaded)[0])
    win.model.set_point(state.key, state.volume.index_to_lps([256, 256, missing]))
    settle(qtbot)
    axial.capture()
    assert axial.notice.actor.GetInput() == "Loading this slice..."
    assert np.all(state.volume.array[missing] == -1024)  # never stale memory on screen
    # slices a decoder was already writing when Cancel came are whole and counted as loaded
    assert np.all(state.volume.array[~state.loaded] == -1024)


def test_an_unreadable_folder_shows_one_sentence_and_the_open_study_stays(make_window, qtbot, tmp_path):
    win = make_window("2x2")
    win.open_demo()
    wait_loaded(qtbot, win)
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "image.dcm").write_bytes(b"DICM" + b"\x00" * 300)
    win.open_path(str(bad))
    qtbot.waitUntil(lambda: bool(win.message_bar.text()), timeout=20000)
    assert one_sentence(win.message_bar.text())
    win.open_path(str(tmp_path / "does-not-exist"))
    qtbot.waitUntil(lambda: "no file or folder" in win.message_bar.text(), timeout=20000)
    assert one_sentence(win.message_bar.text())
    state = win.model.active_state
    assert state is not None and state.volume.shape == (120, 256, 256)  # the demo is still shown
    k0 = int(round(state.volume.lps_to_index(state.point)[2]))
    win.model.step(0, 2)
    assert int(round(state.volume.lps_to_index(state.point)[2])) == k0 - 2
    assert win.grid.slice_views[0].capture().std() > 10


def test_brain_mr_auto_window_from_the_histogram(make_window, qtbot, brain_mr_dir):
    from PySide6.QtCore import QPoint

    from viewer.core.windowing import auto_window, window_saturates

    win = make_window("1x3")
    win.open_path(str(brain_mr_dir))
    wait_loaded(qtbot, win)
    state = win.model.active_state
    vol = state.volume
    assert vol.modality == "MR"
    axial = win.grid.slice_views[0]
    assert [axial.labels.text(e) for e in ("left", "right", "top", "bottom")] == ["R", "L", "A", "P"]
    # the study's own window (210/502) would burn out most of the brain: the histogram's is used
    assert vol.window == (210.0, 502.0) and window_saturates(vol, vol.window)
    assert state.window == pytest.approx(auto_window(vol))
    start = QPoint(axial.width() // 2, axial.height() // 2)
    qtbot.mousePress(axial, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(axial, start + QPoint(-120, 80))
    qtbot.mouseRelease(axial, Qt.MouseButton.LeftButton, pos=start + QPoint(-120, 80))
    assert state.window[1] < auto_window(vol)[1] - 100
    dragged = axial.capture()
    axial.setFocus()
    qtbot.keyClick(axial, Qt.Key.Key_1)
    assert state.preset.startswith("Auto") and state.window == pytest.approx(auto_window(vol))
    center, width = state.window
    assert 0 < center < vol.array.max() and width > 50
    after = axial.capture()
    assert np.abs(after.astype(int) - dragged).mean() > 1
    sag = win.grid.slice_views[2]
    assert sag.capture().std() > 10 and "Sagittal" in sag.corners.text("bottom_left")


def test_demo_study_browser_and_drop_onto_a_view(make_window, qtbot, chest_ct_dir):
    win = make_window("2x2")
    win.open_path(str(chest_ct_dir))
    wait_loaded(qtbot, win)
    ct_key = win.model.viewports[0].series
    tree = win.browser.tree
    items = win.browser._series_items
    qtbot.waitUntil(lambda: any(it.text(2) == "141" for it in items.values()), timeout=10000)
    item = next(it for it in win.browser._series_items.values() if it.text(2) == "141")
    assert item.text(1) == "CT"
    qtbot.waitUntil(lambda: not item.icon(0).isNull(), timeout=15000)  # a thumbnail arrives
    demo_payload = tree.mimeData([tree.topLevelItem(0).child(0)]).data(SERIES_MIME)
    assert json.loads(bytes(demo_payload).decode()) == {"demo": True}
    mime = QMimeData()
    mime.setData(SERIES_MIME, demo_payload)
    coronal = win.grid.slice_views[1]
    assert drop_on(coronal, mime)
    qtbot.waitUntil(lambda: win.model.viewports[1].series not in (None, ct_key), timeout=20000)
    settle(qtbot, 100)
    assert win.model.viewports[0].series == ct_key  # only the view it was dropped on changed
    assert win.model.state(1).volume.shape == (120, 256, 256)
    assert "Chest CT phantom" in coronal.corners.text("top_right")


def test_a_folder_dropped_on_a_view_opens_in_the_window(make_window, qtbot, chest_ct_dir):
    win = make_window("1x1")
    win.open_demo()
    wait_loaded(qtbot, win)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(chest_ct_dir))])
    assert drop_on(win.grid.slice_views[0], mime)  # a view passes folders on to the window
    qtbot.waitUntil(lambda: len(win.session.images) == 1 and not win.session.jobs, timeout=60000)
    assert win.model.active_state.volume.shape == (141, 512, 512)
    assert len(win.model.series) == 1  # the demo, no longer shown anywhere, was closed
    assert not win.message_bar.text()
    assert win.recent_menu.actions()[0].text() == str(chest_ct_dir)


def test_series_of_the_same_frame_of_reference_can_be_linked(make_window, qtbot, chest_ct_dir):
    import viewer
    from viewer.core.volume import Volume

    win = make_window("1x3")
    win.open_path(str(chest_ct_dir))
    wait_loaded(qtbot, win)
    ct = win.model.active_state
    vol = ct.volume

    def cropped():  # a second series on the same frame of reference: a sub-volume at its true place
        aff = vol.affine.copy()
        aff[:3, 3] = vol.index_to_lps([100, 100, 20])
        part = np.ascontiguousarray(vol.array[20:120, 100:400, 100:400])
        return Volume(part, aff, modality="CT", units="HU",
                      source=viewer.SourceInfo(frame_of_reference_uid=vol.source.frame_of_reference_uid,
                                               series_instance_uid="1.2.3.crop", series_description="Crop"))

    win.session.open_builtin(cropped, "crop", slots=[2])
    qtbot.waitUntil(lambda: "1.2.3.crop" in win.model.series and not win.session.jobs, timeout=20000)
    crop = win.model.series["1.2.3.crop"]
    target = vol.index_to_lps([250, 260, 60])
    win.model.set_point(ct.key, target)
    assert np.allclose(crop.point, ct.point)
    assert np.allclose(crop.volume.lps_to_index(crop.point), [150, 160, 40])
    settle(qtbot)
    win.grid.slice_views[2].capture()
    assert "Im: 151 / 300" in win.grid.slice_views[2].corners.text("bottom_left")  # its own sagittal slice
    win.commands["link"].trigger()
    assert not win.model.link_series
    win.model.set_point(ct.key, vol.index_to_lps([200, 200, 50]))
    assert np.allclose(crop.volume.lps_to_index(crop.point), [150, 160, 40])


def test_settings_and_layout_persist_between_runs(make_window, qtbot, tmp_path):
    path = str(tmp_path / "persist.ini")
    win = make_window("2x2", settings_path=path)
    win.cmd_layout_1x3()
    win.commands["crosshair"].trigger()
    win.commands["tool_zoom"].trigger()
    win.browser_dock.hide()
    win.resize(1200, 800)
    win.close()
    again = make_window(None, settings_path=path)
    assert again.model.layout == "1x3" and not again.model.crosshair_visible and again.model.tool == "zoom"
    assert sum(f.isVisible() for f in again.grid.frames) == 3
    assert not again.browser_dock.isVisible()
    assert again.commands["tool_zoom"].isChecked() and not again.commands["crosshair"].isChecked()


def test_f1_opens_the_shortcut_sheet(make_window, qtbot):
    win = make_window("1x1")
    qtbot.keyClick(win, Qt.Key.Key_F1)
    qtbot.waitUntil(lambda: win.sheet is not None and win.sheet.isVisible(), timeout=3000)
    from viewer.ui.shortcuts import sheet_html

    html = sheet_html()
    for words in ("Window/level", "Scroll slices", "PgDown", "Rotate the crosshair axes", "Home"):
        assert words in html
    # the features' own menus are listed too: what the window shows is what the sheet says
    from PySide6.QtWidgets import QTextBrowser

    shown = win.sheet.findChild(QTextBrowser).toPlainText()
    for words in ("Brush", "Length (ruler)", "Undo", "Flicker original / AI result", "Query/Retrieve"):
        assert words in shown, words
    win.sheet.close()


def test_the_whole_folder_of_a_half_opened_series_replaces_it(make_window, qtbot, chest_ct_dir, tmp_path,
                                                              monkeypatch):
    """30 of the chest CT's 141 files (a transfer cut short) opened first, then the whole folder: the
    same SeriesInstanceUID, so the 30-slice copy used to stay on screen without a word.  The whole
    series replaces it in every view; opening the whole folder once more opens nothing new."""
    import shutil

    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path / "data"))
    half = tmp_path / "half"
    half.mkdir()
    for f in sorted(chest_ct_dir.iterdir())[:30]:
        shutil.copy(f, half / f.name)
    win = make_window("2x2")
    win.open_path(str(half))
    wait_loaded(qtbot, win)
    assert [s.volume.shape[0] for s in win.model.series.values()] == [30]
    win.open_path(str(chest_ct_dir))
    qtbot.waitUntil(lambda: not win.session.jobs and all(
        win.model.series[vp.series].volume.shape[0] == 141 for vp in win.model.viewports if vp.series), timeout=60000)
    settle(qtbot, 100)
    assert [s.volume.shape[0] for s in win.model.series.values()] == [141]  # the half copy is closed
    keys = list(win.model.series)
    win.open_path(str(chest_ct_dir))
    wait_loaded(qtbot, win)
    assert list(win.model.series) == keys  # the same images: the open copy is shown, nothing reloaded
