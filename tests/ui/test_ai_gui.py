"""AI in the real window: the denoiser runs through the real worker on the real chest CT, its
result opens side by side, linked, flickers in place, and its removed-noise heatmap draws over the
original (checked by rendered pixels); Cancel and a crashing plugin leave the viewer working.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import open_study_window, settle

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def ai_window(qapp, tmp_path_factory):
    needs_display()
    from tests.ai.fake_plugins import info as fake_info
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost

    def cpu_host(win):
        registry = Registry(models=Path("/nonexistent-models"), entry_points=False)
        for name in ("crash", "slow", "threshold"):
            registry.add(fake_info(name))
        win.features.ai.controller._host = AIHost(registry, device="cpu", threads=2, stall_timeout=120)

    win = open_study_window(qapp, tmp_path_factory.mktemp("ai"), data_path("chest-ct"), size=(1500, 900),
                            before_show=cpu_host)
    yield win
    win.close()


@pytest.fixture(scope="module")
def denoised(ai_window, qapp):
    """Run the real denoiser once for the module; the result it produced (a workspace Applied)."""
    win = ai_window
    win.model.set_active(0)
    handle = win.features.ai.controller.start("ct-denoising", {"heatmap": True})
    assert handle is not None, win.message_bar.text()
    end = time.monotonic() + 300
    while not win.features.ai.controller.entries and time.monotonic() < end:
        qapp.processEvents()
        time.sleep(0.02)
        assert not win.message_bar.text(), win.message_bar.text()
    assert win.features.ai.controller.entries, "the denoiser gave no result in time"
    for _ in range(5):
        qapp.processEvents()
    return win.features.ai.controller.entries[-1]


def _coloured(img: np.ndarray) -> int:
    rgb = img[..., :3].astype(int)
    return int(((rgb[..., 0] - rgb[..., 2]) > 40).sum())


def test_the_ai_menu_offers_the_denoiser_for_ct_and_the_form_follows_its_parameters(ai_window):
    from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QTextBrowser

    from viewer.ui.ai.dialog import RunDialog

    win = ai_window
    win.features.ai.fill_menu()
    acts = {a.text(): a for a in win.features.ai.menu.actions()}
    assert acts["CT denoising..."].isEnabled()
    info = win.features.ai.controller.host.get("ct-denoising")
    dialog = RunDialog(info, "chest CT")
    dose = dialog.findChild(QDoubleSpinBox, "param_dose")
    assert dose.value() == 0.0 and dose.minimum() == 0.0 and dose.maximum() == 1.0  # 0: blind (measured)
    assert dialog.findChild(QCheckBox, "param_heatmap").isChecked()
    dose.setValue(0.5)
    assert dialog.values() == {"dose": 0.5, "ensemble": 0, "heatmap": True}
    card = dialog.findChild(QTextBrowser, "model_card").toPlainText()
    assert "Intended use" in card and "ct-aorta" in card and "PSNR" in card
    dialog.deleteLater()


def test_the_denoised_series_opens_beside_its_source_linked_and_less_noisy(ai_window, denoised, qtbot):
    win, m = ai_window, ai_window.model
    src_key, out_key = denoised.source_key, denoised.derived_keys[0]
    src, out = m.series[src_key], m.series[out_key]
    assert m.layout == "1x3"
    assert [(vp.series, vp.plane) for vp in m.viewports[:3]] == [
        (src_key, "axial"), (out_key, "axial"), (src_key, "coronal")]  # the original's coronal beside them
    assert out.volume.shape == src.volume.shape and np.allclose(out.volume.affine, src.volume.affine)
    assert out.frame_of_reference == src.frame_of_reference and "AI" in \
        out.volume.source.series_description
    assert denoised.provenance["plugin_id"] == "ct-denoising" and not denoised.provenance["edited_by_person"]
    # linked: scrolling the original moves the result
    before = out.point.copy()
    m.step(0, 5)
    assert out.point[2] != before[2] and np.isclose(out.point[2], src.point[2])
    # rendered: in the same view (flicker keeps zoom and pan), soft tissue is smoother in the result
    nk, nj, ni = src.volume.shape
    for state in (src, out):
        state.set_window(40, 400)
    m.set_point(src_key, src.volume.index_to_lps([ni // 2, nj // 2, nk // 2]))
    denoised.heatmaps[0].set(visible=False)
    m.set_crosshair_visible(False)
    m.set_active(0)
    m.set_layout("1x1")
    settle(qtbot, 100)
    a = win.grid.views[0].capture()
    win.features.ai.controller.flicker()
    assert m.viewports[0].series == out_key
    settle(qtbot, 100)
    b = win.grid.views[0].capture()
    win.features.ai.controller.flicker()
    m.set_crosshair_visible(True)
    m.set_layout("1x3")
    ga, gb = a[..., 0].astype(float), b[..., 0].astype(float)
    tissue = (ga > 60) & (ga < 200) & (gb > 60) & (gb < 200)  # soft tissue at W 400 L 40 in both

    def roughness(g):
        lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
        return float(np.median(lap[tissue[1:-1, 1:-1]]))

    assert tissue.sum() > 20000
    assert roughness(gb) < 0.7 * roughness(ga), (roughness(ga), roughness(gb))


def test_the_removed_noise_heatmap_draws_over_the_original_and_follows_its_controls(ai_window, denoised, qtbot):
    win = ai_window
    layer = denoised.heatmaps[0]
    assert layer.volume.array.dtype == np.float32
    assert layer in win.model.series[denoised.source_key].open_series.heatmaps
    view = win.grid.views[0]
    layer.set(visible=False)
    settle(qtbot, 100)
    base = _coloured(view.capture())  # crosshair and orientation letters are coloured too
    layer.set(visible=True, opacity=0.8, threshold=0.05)
    settle(qtbot, 100)
    shown = _coloured(view.capture()) - base
    assert shown > 2000, shown
    layer.set(threshold=1.0)  # little reaches full scale (100 HU removed): almost nothing drawn
    settle(qtbot, 100)
    assert _coloured(view.capture()) - base < shown / 10
    layer.set(threshold=0.05, visible=False)
    settle(qtbot, 100)
    assert abs(_coloured(view.capture()) - base) < 50  # the colour bar goes too
    # the panel's controls drive the layer
    box = win.features.ai.panel.boxes[0]
    controls = box.heatmap_controls[0]
    controls.visible.setChecked(True)
    controls.opacity.setValue(30)
    assert layer.visible and layer.opacity == pytest.approx(0.3)
    # the result's view has no heatmap of its own
    assert not win.model.series[denoised.derived_keys[0]].open_series.heatmaps


def test_screenshot_of_the_ai_feature(ai_window, denoised, qtbot, tmp_path):
    """docs/screenshot-ai.png (with HOUNSFIELD_SCREENSHOTS=1; else a temporary file): the original
    with its removed-noise map, the result beside it, and the colour bar's title whole in the view."""
    import os

    from viewer.render.overlays import text_box

    win, m = ai_window, ai_window.model
    m.set_layout("1x3")
    m.set_active(0)
    m.show_series(0, denoised.source_key)
    layer = denoised.heatmaps[0]
    layer.set(visible=True, opacity=0.7, threshold=0.3)
    settle(qtbot, 150)
    view = win.grid.views[0]
    pipeline = next(hp for hp in view.heatmaps if hp.layer is layer)
    box = text_box(pipeline.title, view.renderer)
    w, _h = view.size_px()
    assert pipeline.title.GetInput() == f"{layer.name} (HU)" and 0 <= box[0] and box[1] <= w
    for v in win.grid.visible_views():
        v.render_now()
    qtbot.wait(100)
    docs = os.environ.get("HOUNSFIELD_SCREENSHOTS") == "1"
    out = (Path(__file__).resolve().parents[2] / "docs" if docs else tmp_path) / "screenshot-ai.png"
    assert win.screen().grabWindow(win.winId()).save(str(out))
    layer.set(visible=False)


def test_the_comparison_zooms_and_pans_together_and_its_colour_bar_says_hu(ai_window, denoised, qtbot):
    """Original and result, side by side in 1 x 3, zoom and pan as one (right- and middle-drag in
    the original): their rendered bodies coincide; the third pane is the original's coronal; the
    removed-noise colour bar counts HU (1.0 in the map = the plugin's full scale of HU removed)."""
    from PySide6.QtCore import QPoint, Qt

    win, m = ai_window, ai_window.model
    src_key, out_key = denoised.source_key, denoised.derived_keys[0]
    win.features.ai.controller.compare(denoised)
    layer = denoised.heatmaps[0]
    layer.set(visible=False)
    for state in (m.series[src_key], m.series[out_key]):
        state.set_window(40, 400)
    m.set_crosshair_visible(False)
    settle(qtbot, 100)
    assert [(vp.series, vp.plane) for vp in m.viewports[:3]] == [
        (src_key, "axial"), (out_key, "axial"), (src_key, "coronal")]
    original, result = win.grid.views[0], win.grid.views[1]
    c = QPoint(original.width() // 2, original.height() // 2)
    qtbot.mousePress(original, Qt.MouseButton.RightButton, pos=c)
    qtbot.mouseMove(original, c - QPoint(0, 80))
    qtbot.mouseRelease(original, Qt.MouseButton.RightButton, pos=c - QPoint(0, 80))
    qtbot.mousePress(original, Qt.MouseButton.MiddleButton, pos=c)
    qtbot.mouseMove(original, c + QPoint(60, 40))
    qtbot.mouseRelease(original, Qt.MouseButton.MiddleButton, pos=c + QPoint(60, 40))
    settle(qtbot, 100)
    a, b = m.viewports[0], m.viewports[1]
    assert a.zoom > 2.0 and a.pan[0] < 0
    assert (b.zoom, b.pan) == (a.zoom, a.pan)
    assert m.viewports[2].zoom == 1.0  # another plane: not linked
    shots = [v.capture()[..., 0] > 30 for v in (original, result)]  # soft tissue and bone at W 400 L 40
    h, w = min(s.shape[0] for s in shots), min(s.shape[1] for s in shots)  # the panes may differ by a pixel
    body_a, body_b = (s[(s.shape[0] - h) // 2:][:h, (s.shape[1] - w) // 2:][:, :w][h // 5:h - h // 5]
                      for s in shots)  # the middle, without the corner texts (they differ)
    overlap = (body_a & body_b).sum() / max((body_a | body_b).sum(), 1)
    assert body_a.mean() > 0.2 and overlap > 0.9, overlap  # the same anatomy at the same place
    # the colour bar of the removed-noise map: numbers in HU, titled with its unit
    layer.set(visible=True)
    settle(qtbot, 100)
    original.capture()
    hp = next(hp for hp in original.heatmaps if hp.layer is layer)
    from plugins.ct_denoising.plugin import HEATMAP_FULL_SCALE_HU  # light: no torch at import

    assert layer.unit == "HU" and layer.full_scale == pytest.approx(HEATMAP_FULL_SCALE_HU)
    assert hp.title.GetInput() == "Removed noise (HU)"
    assert tuple(hp.colour_bar.GetLookupTable().GetRange()) == pytest.approx((0.0, HEATMAP_FULL_SCALE_HU))
    layer.set(visible=False)
    m.reset()
    m.set_crosshair_visible(True)


def test_flicker_swaps_original_and_result_in_place(ai_window, denoised, qtbot):
    win, m = ai_window, ai_window.model
    m.set_active(0)
    m.show_series(0, denoised.source_key)
    m.set_zoom(0, 2.0)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)
    qtbot.keyClick(win.grid.views[0], "T")
    assert m.viewports[0].series == denoised.derived_keys[0] and m.viewports[0].zoom == 2.0
    qtbot.keyClick(win.grid.views[0], "T")
    assert m.viewports[0].series == denoised.source_key and m.viewports[0].zoom == 2.0
    win.features.ai.controller.compare(denoised)
    assert m.viewports[1].series == denoised.derived_keys[0]


def test_cancel_stops_a_run_and_the_viewer_goes_on(ai_window, denoised, qtbot):
    win, m = ai_window, ai_window.model
    m.set_active(0)
    count = len(win.features.ai.controller.entries)
    handle = win.features.ai.controller.start("test-slow", {})
    assert handle is not None
    qtbot.waitUntil(lambda: handle.state == "running", timeout=60000)
    assert win.features.ai.cancel_button.isVisible()
    t0 = time.monotonic()
    win.features.ai.controller.cancel()
    qtbot.waitUntil(handle.done, timeout=5000)
    assert time.monotonic() - t0 < 2.0
    qtbot.waitUntil(lambda: not win.features.ai.cancel_button.isVisible(), timeout=2000)
    assert len(win.features.ai.controller.entries) == count and not win.message_bar.text()
    m.step(0, 1)  # still reading


def test_a_crashing_plugin_shows_one_sentence_and_the_next_run_works(ai_window, denoised, qtbot):
    win, m = ai_window, ai_window.model
    m.set_active(0)
    handle = win.features.ai.controller.start("test-crash", {})
    assert handle is not None
    qtbot.waitUntil(lambda: bool(win.message_bar.text()), timeout=60000)
    text = win.message_bar.text()
    assert "Traceback" not in text and text.endswith(".") and text.count(". ") == 0, text
    win.message_bar.dismiss()
    again = win.features.ai.controller.start("test-slow", {})
    assert again is not None
    qtbot.waitUntil(lambda: again.state == "running", timeout=60000)
    win.features.ai.controller.cancel()
    qtbot.waitUntil(again.done, timeout=5000)
    assert again.worker_restarted or again.state == "cancelled"


def test_removing_a_result_takes_its_series_and_heatmap_away(ai_window, denoised, qtbot):
    win, m = ai_window, ai_window.model
    win.features.ai.controller.remove(denoised)
    assert denoised.derived_keys[0] not in m.series
    assert not m.series[denoised.source_key].open_series.heatmaps
    assert denoised not in win.workspace.results and denoised.derived_keys[0] not in win.workspace.series
    assert not win.features.ai.panel.boxes


def _status_pixels(img: np.ndarray, status: str) -> int:
    r, g, b = (img[..., c].astype(int) for c in range(3))
    if status == "pending":  # yellow
        return int(((r > 200) & (g > 170) & (b < 90)).sum())
    return int(((g > 180) & (r < 120) & (b < 140)).sum())  # accepted: green


def test_detections_become_markers_to_accept_reject_move_and_resize(ai_window, qtbot, qapp):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QPushButton

    from tests.ui.helpers import qt_pos

    win, m = ai_window, ai_window.model
    m.set_layout("2x2")
    m.restore_planes()
    src_key = next(k for k in m.series if "#ai" not in k)
    for slot in range(3):
        m.show_series(slot, src_key)
    m.set_active(0)
    count = len(win.features.ai.controller.entries)
    handle = win.features.ai.controller.start("test-threshold", {})
    assert handle is not None, win.message_bar.text()
    qtbot.waitUntil(lambda: len(win.features.ai.controller.entries) > count, timeout=120000)
    entry = win.features.ai.controller.entries[-1]
    ms = entry.marker_sets[0]
    marker = ms.markers[0]
    assert ms in m.series[src_key].open_series.marker_sets and marker.status == "pending" and not marker.edited
    # the label map is an editable segmentation with the model's provenance
    seg = entry.segmentations[0].segmentation
    assert seg in [ed.segmentation for ed in m.series[src_key].open_series.segmentations]
    (segment,) = seg.segments
    assert segment.name == "above zero" and segment.algorithm_type == "AUTOMATIC"
    assert segment.algorithm_name == "Test threshold" and not segment.edited
    labels = seg.layers[segment.layer]
    assert np.array_equal(labels == segment.number, m.series[src_key].volume.array > 0)
    editor = win.features.segments.controller.editor(seg)
    air = m.series[src_key].volume.index_to_lps([10, 10, 70])  # outside the body: not in the segment
    editor.brush(segment, air, radius_mm=3.0)
    assert labels[70, 10, 10] == segment.number
    assert entry.segmentations[0].original[70, 10, 10] == 0  # the model's own label map is kept as it was
    assert segment.edited and segment.algorithm_type == "SEMIAUTOMATIC"
    marker.size_mm = np.array([40.0, 40.0, 40.0])  # the fake plugin's 10 mm is small to grab; not an edit
    ms.changed.emit()
    m.set_layout("1x1")
    m.set_active(0)
    view = win.grid.views[0]
    box = next(b for b in win.features.ai.panel.boxes if b.entry is entry)
    table = box.detection_tables[0]
    table.table.selectRow(0)
    table.findChild(QPushButton, "detections_go_to").click()
    state = m.series[src_key]
    assert np.allclose(state.point[:2], marker.center[:2], atol=0.5)
    assert abs(state.point[2] - marker.center[2]) <= state.volume.spacing[2] / 2 + 1e-6
    m.set_crosshair_visible(False)
    for layer in entry.heatmaps:  # the fake plugin's heatmap has yellow too
        layer.set(visible=False)
    settle(qtbot, 100)
    pending = _status_pixels(view.capture(), "pending")
    assert pending > 100, pending
    table.findChild(QPushButton, "detections_accept").click()
    assert marker.status == "accepted" and table.table.item(0, 3).text() == "accepted"
    settle(qtbot, 100)
    shot = view.capture()
    assert _status_pixels(shot, "accepted") > 100 and _status_pixels(shot, "pending") < pending / 5
    # move: drag from inside the marker by 20 mm to the patient's left (+x, screen right)
    m.set_tool("marker")
    centre = marker.center.copy()
    a = qt_pos(view, centre)
    b = qt_pos(view, centre + np.array([20.0, 0, 0]))
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=a.toPoint())
    qtbot.mouseMove(view, b.toPoint())
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=b.toPoint())
    moved = marker.center - centre
    mm = view.mm_per_pixel_logical()
    assert abs(moved[0] - 20.0) < 2 * mm and abs(moved[1]) < 2 * mm and abs(moved[2]) < 1e-6, moved
    assert marker.edited and "edited" in table.table.item(0, 3).text()
    # resize: drag the rim outwards from 20 mm to 30 mm from the centre
    cut_centre, radius = marker.cut(state.point, view.pipeline.geometry.n)
    rim = qt_pos(view, cut_centre + np.array([radius, 0, 0]))
    out = qt_pos(view, cut_centre + np.array([radius * 1.5, 0, 0]))
    size_before = marker.size_mm.copy()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=rim.toPoint())
    qtbot.mouseMove(view, out.toPoint())
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=out.toPoint())
    assert np.allclose(marker.size_mm / size_before, 1.5, atol=0.1), marker.size_mm
    # a click away from every marker still moves the crosshair
    away = qt_pos(view, cut_centre + np.array([-80.0, 0, 0]))
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=away.toPoint())
    assert state.point[0] == pytest.approx(cut_centre[0] - 80.0, abs=2 * mm)
    table.table.selectRow(0)
    table.findChild(QPushButton, "detections_reject").click()
    assert marker.to_dict()["status"] == "rejected" and marker.to_dict()["edited_by_person"]
    m.set_tool("wl")
    m.set_crosshair_visible(True)
    win.features.ai.controller.remove(entry)
    assert not state.open_series.marker_sets
