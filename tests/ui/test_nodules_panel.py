"""The Nodules panel on the real chest CT, driven with real mouse events and keys.

The lung-nodule run is a plugin ``Results`` put into the window through the AI feature's path
(``Workspace.apply``): the right-lung tumour (about k 77, j 252, i 168) and two false positives,
each measured by ``plugins.lung_nodules.measure.measure_nodule`` as the plugin does, with the
nodule label map.  Rows are clicked (the views go to the nodule), one detection is rejected, the
tumour accepted and its marker moved with the marker tool (it is measured again, edited by a
person), a missed nodule is added with one click in the axial view, the operating point hides rows,
and the report's SR read back holds the accepted and added nodules with the right edited flags.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import drag, open_study_window, qt_pos, settle

pytestmark = pytest.mark.gui

TUMOUR, FP1, FP2 = (77, 252, 168), (89, 263, 224), (70, 300, 380)  # k, j, i: the tumour, a hilar vessel, a vessel
MISSED = (42, 281, 360)  # an 8 mm solid nodule inserted into the left lower lobe, which the "AI" did not report
SCORES = (0.93, 0.41, 0.22)


@pytest.fixture(scope="module")
def nodule_window(qapp, tmp_path_factory):
    needs_display()
    win = open_study_window(qapp, tmp_path_factory.mktemp("nodules"), data_path("chest-ct"), size=(1800, 1000))
    yield win
    win.close()


def _insert_missed(state) -> None:
    """An 8 mm solid nodule (plugins.lung_nodules.synth, fixed seed) put into the loaded CT's left
    lower lobe: the chest CT has one real lesion, and the AI's run below holds it."""
    from plugins.lung_nodules import synth

    vol = state.volume
    assert vol.array.dtype == np.int16 and tuple(vol.rescale) == (1.0, 0.0)
    hu = vol.array.astype(np.float32)
    synth.insert_nodule(hu, np.asarray(vol.spacing[::-1], float), MISSED, 8.0, "solid", "round",
                        np.random.default_rng(0), 20.0)
    vol.array[...] = np.rint(hu).astype(np.int16)
    state.data_changed.emit(None)


def _results(volume):
    """The Results the lung-nodule plugin returns for three detections: attributes measured as the
    plugin measures them (its lung mask, measure_nodule), the nodule and lung label maps."""
    from plugins.lung_nodules import lungmask
    from plugins.lung_nodules.measure import measure_nodule, paste_mask
    from plugins.lung_nodules.plugin import LUNG_CODES, NODULE_CODE, _jsonable
    from viewer.ai.api import Detection, LabelMap, Results, Segment

    hu = volume.real_values()
    sp = np.asarray(volume.spacing[::-1], float)
    lungs = lungmask.lung_mask(hu, sp, volume.affine)
    labels = np.zeros(volume.shape, np.uint8)
    res = Results()
    segments = []
    for n, (c, score) in enumerate(zip((TUMOUR, FP1, FP2), SCORES, strict=True), 1):
        m = measure_nodule(hu, sp, c, lungs, affine=volume.affine)
        mask = paste_mask(m, volume.shape)
        labels[mask & (labels == 0)] = n
        segments.append(Segment(n, f"Nodule {n}", (255, 200, 0), f"Nodule {n}, score {score:.2f}", NODULE_CODE))
        attrs = {"number": n, "score_rule": "network peak probability", "lung": m["side"],
                 **{k: _jsonable(v) for k, v in m.items() if k not in ("mask", "bbox") and _jsonable(v) is not None}}
        size = tuple(max(4.0, float(m["mean_diameter_mm"])) for _ in range(3))
        res.detections.append(Detection(tuple(volume.index_to_lps(np.asarray(c, float)[::-1])), size, score,
                                        "nodule", f"Nodule {n}", attrs))
    res.label_maps.append(LabelMap(labels, volume.affine.copy(), segments, "Nodules"))
    res.label_maps.append(LabelMap(lungs, volume.affine.copy(), [Segment(1, "Right lung", (128, 174, 128), "",
                                                                         LUNG_CODES[1]),
                                                                 Segment(2, "Left lung", (241, 214, 145), "",
                                                                         LUNG_CODES[2])], "Lungs"))
    res.provenance = {"plugin_id": "lung-nodules", "plugin_name": "Lung nodules", "plugin_version": "0.1.0",
                      "froc": {"thresholds": {"1.0": 0.6, "2.0": 0.35, "4.0": 0.15}}}
    return res


@pytest.fixture(scope="module")
def nodule_run(nodule_window, qapp):
    from viewer.ui.ai.results import apply_results

    win = nodule_window
    state = win.model.active_state
    _insert_missed(state)
    entry = apply_results(win, state.key, _results(state.volume))
    win.features.ai.controller.result_added.emit(entry)
    for _ in range(5):
        qapp.processEvents()
    return entry


def _click_row(qtbot, panel, row):
    from PySide6.QtCore import Qt

    t = panel.table
    r = panel.table_row_of(row)
    rect = t.visualItemRect(t.item(r, 1))
    qtbot.mouseClick(t.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    settle(qtbot)


def _row(ctl, number):
    return next(r for r in ctl.rows if r.number == number)


def _wait_measured(qtbot, ctl):
    qtbot.waitUntil(lambda: not ctl.busy, timeout=30000)
    settle(qtbot, 50)


def test_the_nodules_panel_reviews_adds_and_reports(nodule_window, nodule_run, qtbot, tmp_path):
    from PySide6.QtCore import QPoint, Qt

    from plugins.lung_nodules.report import read_nodule_sr

    win = nodule_window
    feat = win.features.nodules
    ctl, panel = feat.controller, feat.panel
    state = win.model.active_state
    vol = state.volume
    assert feat.dock.isVisible()
    assert [r.number for r in ctl.rows] == [1, 2, 3]
    assert panel.table.item(panel.table_row_of(_row(ctl, 1)), 2).text() == \
        f"{_row(ctl, 1).attrs['mean_diameter_mm']:.1f}"
    assert _row(ctl, 1).attrs["mean_diameter_mm"] > 20 and _row(ctl, 1).attrs.get("lungrads") is None
    assert panel.table.item(panel.table_row_of(_row(ctl, 1)), 5).text() == "4B"  # suggested from the size
    # the operating point's expected false positives come from the run's FROC figures
    assert "FP/scan" in panel.fp_label.text() and "not measured" not in panel.fp_label.text()
    # the panel opens at the run's 1 FP/scan operating point (0.6 here): the two low scores are hidden,
    # rows and markers, until the reader lowers it (to 0 with the mouse and Page Down: every detection)
    assert ctl.threshold == pytest.approx(0.6) and panel.slider.value() == 60
    assert "1.0 FP/scan" in panel.fp_label.text() or "1 FP/scan" in panel.fp_label.text(), panel.fp_label.text()
    assert [panel.row_at(i).number for i in range(panel.table.rowCount()) if panel.table.isRowHidden(i)] == [2, 3]
    assert panel.summary.text().startswith("3 nodules, 1 shown")
    # their segments are hidden with them: not drawn, not listed in the Measurements panel
    nod_seg = ctl.nodule_segmentation(_row(ctl, 1).marker_set).segmentation
    measured = win.features.measure.controller.segment_rows

    def listed():
        return sorted(r.segment.name for r in measured.rows() if r.seg is nod_seg)

    assert [s.visible for s in nod_seg.segments] == [True, False, False] and listed() == ["Nodule 1"]
    slider = panel.slider
    qtbot.mouseClick(slider, Qt.MouseButton.LeftButton, pos=QPoint(3, slider.height() // 2))  # a page step down
    while slider.value() > 0:
        qtbot.keyClick(slider, Qt.Key.Key_PageDown)
    settle(qtbot)
    assert ctl.threshold == 0.0 and not any(panel.table.isRowHidden(i) for i in range(panel.table.rowCount()))
    assert all(s.visible for s in nod_seg.segments) and listed() == ["Nodule 1", "Nodule 2", "Nodule 3"]

    # sorting by score (descending) puts the tumour first; rows still map to their nodules
    panel.table.sortByColumn(6, Qt.SortOrder.DescendingOrder)
    assert panel.row_at(0) is _row(ctl, 1) and panel.row_at(2) is _row(ctl, 3)

    # clicking a row takes every view to the nodule
    for number, kji in ((2, FP1), (1, TUMOUR)):
        _click_row(qtbot, panel, _row(ctl, number))
        idx = vol.lps_to_index(state.point)
        assert np.allclose(idx[::-1], kji, atol=1.0), (number, idx)
    assert win.grid.views[0].pipeline.geometry is not None

    # reject the second (button), accept the tumour (key Y)
    _click_row(qtbot, panel, _row(ctl, 2))
    qtbot.mouseClick(panel.buttons["reject"], Qt.MouseButton.LeftButton)
    assert _row(ctl, 2).marker.status == "rejected"
    _click_row(qtbot, panel, _row(ctl, 1))
    win.grid.views[0].setFocus()
    qtbot.keyClick(win.grid.views[0], Qt.Key.Key_Y)
    settle(qtbot)
    assert _row(ctl, 1).marker.status == "accepted" and not _row(ctl, 1).marker.edited
    _click_row(qtbot, panel, _row(ctl, 3))
    qtbot.mouseClick(panel.buttons["accept"], Qt.MouseButton.LeftButton)
    assert _row(ctl, 3).marker.status == "accepted"

    # edit: move the tumour's marker 3 mm with the marker tool; it is measured again, by a person
    _click_row(qtbot, panel, _row(ctl, 1))
    qtbot.mouseClick(panel.buttons["edit"], Qt.MouseButton.LeftButton)
    assert win.model.tool == "marker"
    view = win.grid.views[0]
    assert view.plane == "axial"
    tumour = _row(ctl, 1).marker
    start = tumour.center.copy()
    ai_size = _row(ctl, 1).attrs["mean_diameter_mm"]
    drag(qtbot, view, start, start + np.array([3.0, 0.0, 0.0]))
    assert tumour.edited and np.allclose(tumour.proposed[0], start)
    _wait_measured(qtbot, ctl)
    attrs = _row(ctl, 1).attrs
    assert attrs["measured_by"] == "person" and attrs["ai_measurement"]["mean_diameter_mm"] == ai_size
    assert abs(attrs["mean_diameter_mm"] - ai_size) < 5.0  # still the tumour
    assert "edited" in panel.table.item(panel.table_row_of(_row(ctl, 1)), 7).text()
    win.model.set_tool("wl")

    # add the missed nodule: the Add button, then one click on it in the axial view
    target = vol.index_to_lps(np.asarray(MISSED, float)[::-1])
    win.model.set_point(state.key, target)
    settle(qtbot, 50)
    qtbot.mouseClick(panel.buttons["add"], Qt.MouseButton.LeftButton)
    assert win.model.tool == "nodule_add"
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=qt_pos(view, target).toPoint())
    _wait_measured(qtbot, ctl)
    assert win.model.tool == "wl"
    assert len(ctl.rows) == 4, win.message_bar.text()
    added = ctl.rows[-1]
    assert added.marker.origin == "person" and added.marker.status == "accepted" and added.number == 4
    assert 6.5 < added.attrs["mean_diameter_mm"] < 10.0 and added.attrs["lobe"] == "left lower lobe"
    assert panel.table.item(panel.table_row_of(added), 5).text() == "4A"  # solid 8-15 mm
    r = panel.table_row_of(added)
    assert panel.table.item(r, 2).text() == f"{added.attrs['mean_diameter_mm']:.1f}"
    assert panel.table.item(r, 6).text() == "person"
    seg = ctl.nodule_segmentation(added.marker_set).segmentation
    assert seg.count(seg.by_name("Nodule 4")) > 0  # its mask is a segment the segment tools can correct

    # the operating point hides rows below it (never deletes them); accepted and added rows stay
    slider = panel.slider
    fp_before = panel.fp_label.text()
    slider.setFocus()
    qtbot.mouseClick(slider, Qt.MouseButton.LeftButton, pos=slider.rect().center())  # a page step toward 0.5
    while slider.value() < 50:
        qtbot.keyClick(slider, Qt.Key.Key_PageUp)
    assert ctl.threshold >= 0.45
    hidden = [panel.row_at(i).number for i in range(panel.table.rowCount()) if panel.table.isRowHidden(i)]
    assert hidden == [2] and len(ctl.rows) == 4 and panel.fp_label.text() != fp_before
    low = _row(ctl, 2)  # and its marker with it, in the views
    win.model.set_point(state.key, low.marker.center)
    settle(qtbot, 50)
    assert (low.marker_set, low.index) not in {(d.marker_set, d.index) for d in view.markers.drawn}
    slider.setValue(0)
    settle(qtbot, 50)
    assert (low.marker_set, low.index) in {(d.marker_set, d.index) for d in view.markers.drawn}

    # the report: SR with the accepted and the added nodules, SEG and CSV
    out = tmp_path / "report"
    feat.report(str(out))
    qtbot.waitUntil(lambda: ctl.report_thread is None, timeout=60000)
    assert ctl.last_report is not None, win.message_bar.text()
    assert {Path(p[0]).name for p in ctl.last_report.values()} == {"nodules-sr.dcm", "nodules-seg.dcm",
                                                                  "nodules.csv"}
    groups = {g["number"]: g for g in read_nodule_sr(ctl.last_report["sr"][0])}
    assert sorted(groups) == [1, 3, 4]
    assert groups[1]["Provenance"].endswith("edited by a person")
    assert "edited" not in groups[3]["Provenance"] and "Lung nodules" in groups[3]["Provenance"]
    assert groups[4]["Provenance"] == "proposed by person; edited by a person"
    assert groups[1]["Mean diameter"] == pytest.approx(attrs["mean_diameter_mm"], abs=0.05)
    assert groups[1]["Lung-RADS v2022 category (suggested)"] == "Lung-RADS 4B"
    assert groups[4]["Mean diameter"] == pytest.approx(added.attrs["mean_diameter_mm"], abs=0.05)
    assert groups[1]["laterality"] == "Right" and groups[4]["laterality"] == "Left"
    csv = (out / "nodules.csv").read_text().splitlines()
    assert len(csv) == 4 and "edited" in csv[0]

    # a person corrects nodule 3's segmentation (the brush of the segment tools): the next report
    # measures it from the corrected mask and marks it edited
    ed = ctl.nodule_segmentation(_row(ctl, 3).marker_set)
    assert ed.name.startswith("Nodules") and ed.original is not None  # the run's, the model's map kept
    row3 = _row(ctl, 3)
    before = (row3.attrs["volume_ml"], row3.attrs["mean_diameter_mm"])
    ed.brush(row3.marker.center, 3.0, segment="Nodule 3")
    # the row follows the corrected mask (after the pause that ends a stroke): larger, edited by a person
    qtbot.waitUntil(lambda: _row(ctl, 3).attrs["volume_ml"] > before[0] + 0.02, timeout=10000)
    assert _row(ctl, 3).attrs["mean_diameter_mm"] > before[1] and _row(ctl, 3).marker.edited
    assert _row(ctl, 3).attrs["measured_by"] == "person"
    table = panel.table
    texts = [table.item(i, c).text() for i in range(table.rowCount()) for c in range(table.columnCount())
             if table.item(i, c) is not None and panel.row_at(i).number == 3]
    assert any("edited" in t for t in texts), texts
    feat.report(str(tmp_path / "again"))
    qtbot.waitUntil(lambda: ctl.report_thread is None, timeout=60000)
    again = {g["number"]: g for g in read_nodule_sr(ctl.last_report["sr"][0])}
    assert again[3]["Provenance"].endswith("edited by a person") and _row(ctl, 3).marker.edited
    assert again[3]["Volume"] > groups[3]["Volume"] + 20.0
    assert again[3]["Volume"] == pytest.approx(_row(ctl, 3).attrs["volume_ml"] * 1000.0, rel=0.01)  # as listed
    assert again[1]["Volume"] == pytest.approx(groups[1]["Volume"])


def test_screenshot_of_the_nodules_panel(nodule_window, nodule_run, qtbot, tmp_path):
    """docs/screenshot-nodules.png (with HOUNSFIELD_SCREENSHOTS=1; else a temporary file): the
    panel beside the chest CT with the tumour selected and the views on it."""
    win = nodule_window
    feat = win.features.nodules
    ctl, panel = feat.controller, feat.panel
    win.model.set_layout("2x2")
    win.model.set_active(0)
    tumour = _row(ctl, 1)
    _click_row(qtbot, panel, tumour)
    state = win.model.active_state
    assert np.allclose(state.volume.lps_to_index(state.point)[::-1], TUMOUR, atol=5.0)  # its marker was moved 3 mm
    state.set_window(-600, 1500)  # lung window
    for ed in state.open_series.segmentations:  # the lung masks would hide the parenchyma
        if ed.name.startswith("Lungs"):
            ed.segmentation.set_style(visible=False)
    settle(qtbot, 150)
    table = win.features.measure.panel.table

    def stats_done() -> bool:  # every segment's statistics in (not "computing..." in the shot)
        return not any(table.item(r, c) is not None and "computing" in table.item(r, c).text()
                       for r in range(table.rowCount()) for c in range(table.columnCount()))

    qtbot.waitUntil(stats_done, timeout=30000)
    for v in win.grid.visible_views():
        v.render_now()
    qtbot.wait(100)
    docs = os.environ.get("HOUNSFIELD_SCREENSHOTS") == "1"
    out = (Path(__file__).resolve().parents[2] / "docs" if docs else tmp_path) / "screenshot-nodules.png"
    assert win.screen().grabWindow(win.winId()).save(str(out))
    assert out.stat().st_size > 10000


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "plugins" / "lung_nodules" / "weights.pt").is_file(),
                    reason="the lung-nodule detector's weights are not in plugins/lung_nodules/ yet")
def test_the_real_plugin_run_from_the_gui_fills_the_panel(make_window, qtbot):
    """The lung-nodule plugin through the real worker on a crop of the chest CT around the tumour,
    started as the AI menu starts it: its detections become the panel's rows, measured."""
    import viewer
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost

    chest = viewer.load(data_path("chest-ct"))
    k0, j0, i0 = 62, 100, 40
    affine = chest.affine.copy()
    affine[:3, 3] = chest.index_to_lps([i0, j0, k0])
    crop = viewer.Volume(np.ascontiguousarray(chest.array[k0:96, j0:400, i0:262]), affine, modality="CT")
    win = make_window("1x3", size=(1600, 900))
    host = AIHost(Registry(models=Path("/nonexistent-models"), entry_points=False), device="cpu", threads=2,
                  stall_timeout=300)
    win.features.ai.controller._host = host
    win.session.add_volume(crop, "chest-crop", slots=[0, 1, 2])
    win.model.set_active(0)
    settle(qtbot, 50)
    ai, feat = win.features.ai.controller, win.features.nodules
    assert not feat.controller.rows and not feat.panel.info.isHidden()
    ended = []  # the controller's slot for the finished run has run (the handle is done before that)
    ai.ended.connect(lambda: ended.append(True))
    assert ai.start("lung-nodules", {"score_threshold": 0.3}) is not None, win.message_bar.text()
    qtbot.waitUntil(lambda: bool(ended), timeout=300000)  # ends in a result or an error
    assert ai.entries, win.message_bar.text()
    entry = ai.entries[-1]
    markers = entry.marker_sets[0].markers if entry.marker_sets else []
    settle(qtbot, 50)
    assert feat.dock.isVisible() and len(feat.controller.rows) == len(markers)
    if markers:  # every row is a measured detection of the run, and a click goes to it
        assert all(r.attrs.get("mean_diameter_mm") is not None for r in feat.controller.rows)
        t = feat.panel.table
        assert t.item(0, 1).text() and t.item(0, 6).text().replace(".", "").isdigit()
        row = feat.panel.row_at(0)
        _click_row(qtbot, feat.panel, row)
        state = win.model.active_state
        assert np.linalg.norm(state.point - state.clamp(row.marker.center)) < 1e-3
    host.shutdown()


def test_the_operating_point_reads_the_plugins_froc_figures():
    """FP/scan beside the slider: from the model card's "Score threshold for F FP/scan" figures or a
    run's provenance, interpolated between them; "not measured" without any."""
    from viewer.ai.api import Figure, ModelCard
    from viewer.ui.nodules.controller import expected_fp, froc_points

    card = ModelCard(evaluation=(Figure("Sensitivity at 1 FP/scan, network (ours)", 0.5),
                                 Figure("Score threshold for 1 FP/scan", 0.7),
                                 Figure("Score threshold for 4 FP/scan", 0.2),
                                 Figure("Score threshold for 2 FP/scan", 0.4)))
    pts = froc_points(card)
    assert pts == [(0.2, 4.0), (0.4, 2.0), (0.7, 1.0)]
    assert expected_fp(pts, 0.55) == "≈ 1.5 FP/scan"
    assert expected_fp(pts, 0.9) == "≤ 1 FP/scan" and expected_fp(pts, 0.1) == "≥ 4 FP/scan"
    assert froc_points(None, {"froc": {"thresholds": {"1.0": 0.6, "4.0": 0.1}}}) == [(0.1, 4.0), (0.6, 1.0)]
    assert expected_fp(froc_points(ModelCard()), 0.5) == "FP/scan: not measured"
