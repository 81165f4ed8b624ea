"""The AI review loop in the real window, on the real chest CT: a plugin (run through the real
worker) returns a label map, detections and a probability map; the radiologist brushes its segment
and the panel's Dice and volume change follow and match numpy on the same masks; rejecting and
moving detections changes the counts; the export's SR and SEG carry the flags and figures; two runs
gather in the audit log and AI > Performance and ``hounsfield audit`` show the same cells; the
Parametric Map opens again as a heatmap; a segmentation restored from its journal is a result of the
panel again.  The real plugins, and reopening an exported SEG in a new window:
test_review_real_plugins.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import open_study_window, qt_pos, settle
from viewer.ai.api import Detection, Heatmap, LabelMap, PluginInfo, Results, Segment, Task

pytestmark = pytest.mark.gui
K = 70


class ReviewBlob:
    """A 'lesion' model: soft tissue in a 20 mm ball beside the spine, two detections, a probability map."""

    def run(self, inputs, params, context):
        vol = inputs["image"]
        hu = np.asarray(vol.real_values(), np.float32)
        kk, jj, ii = np.ogrid[:vol.shape[0], :vol.shape[1], :vol.shape[2]]
        sp = vol.spacing  # i, j, k
        d2 = ((ii - 256) * sp[0]) ** 2 + ((jj - 300) * sp[1]) ** 2 + ((kk - K) * sp[2]) ** 2
        ball = d2 < 20.0 ** 2
        labels = (ball & (hu > -200)).astype(np.uint8)
        prob = np.clip(1.0 - np.sqrt(d2) / 30.0, 0, 1).astype(np.float32)
        c = vol.index_to_lps([256, 300, K])
        return Results(label_maps=[LabelMap(labels, vol.affine, [Segment(1, "Lesion", (230, 80, 60))], name="lesion")],
                       detections=[Detection(tuple(c), (40.0, 40.0, 40.0), 0.9, "lesion"),
                                   Detection(tuple(c + [60.0, 0, 0]), (10.0, 10.0, 10.0), 0.3, "lesion")],
                       heatmaps=[Heatmap(prob, vol.affine, "lesion probability", kind="probability")])


@pytest.fixture(scope="module")
def window(qapp, tmp_path_factory):
    needs_display()
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost

    def host(win):
        registry = Registry(models=Path("/nonexistent-models"), entry_points=False)
        registry.add(PluginInfo(id="test-review-blob", name="Review blob", version="0.3", task=Task.SEGMENTATION,
                                entry="tests.ui.test_review_gui:ReviewBlob", source="test"))
        win.features.ai.controller._host = AIHost(registry, device="cpu", threads=2, stall_timeout=120)

    win = open_study_window(qapp, tmp_path_factory.mktemp("review"), data_path("chest-ct"), size=(1500, 950),
                            before_show=host)
    yield win
    win.close()


def run_plugin(win, qtbot):
    ctl = win.features.ai.controller
    n = len(ctl.entries)
    win.model.set_active(0)
    assert ctl.start("test-review-blob", {}) is not None, win.message_bar.text()
    qtbot.waitUntil(lambda: len(ctl.entries) > n, timeout=120000)
    entry = ctl.entries[-1]
    box = next(b for b in win.features.ai.panel.boxes if b.entry is entry)
    qtbot.waitUntil(lambda: box.review.idle, timeout=20000)
    return entry, box


def brush(win, qtbot, view, vol, points_ijk, erase=False):
    from PySide6.QtCore import Qt

    win.model.set_tool("seg_eraser" if erase else "seg_brush")
    pts = [qt_pos(view, vol.index_to_lps([float(i), float(j), float(K)])).toPoint() for i, j in points_ijk]
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=pts[0])
    for p in pts[1:]:
        qtbot.mouseMove(view, p)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=pts[-1])
    settle(qtbot)


def test_the_review_loop_from_brush_to_audit(window, qtbot, tmp_path):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QPushButton

    from viewer.core.io.sr import read_reviews

    win, m = window, window.model
    m.set_layout("2x2")
    m.set_active(0)
    state = m.active_state
    vol = state.volume
    m.set_point(state.key, vol.index_to_lps([256, 300, K]))
    entry, box = run_plugin(win, qtbot)
    ed = entry.segmentations[0]
    rv = box.review
    assert rv.review.segments[0].dice == 1.0 and "Dice 1.000" in rv.figures.text()
    assert rv.review.detections.pending == 2

    # the radiologist erases a bite of the AI's segment and paints past its edge, with the mouse
    win.features.segments.controller.set_setting(brush_mm=5.0, sphere=False)
    view = win.grid.slice_views[0]
    brush(win, qtbot, view, vol, [(256, 300), (262, 300)], erase=True)
    brush(win, qtbot, view, vol, [(256, 322), (266, 326)])
    orig = ed.original == 1
    now = ed.mask("Lesion")
    assert not np.array_equal(orig, now) and (now & ~orig).any() and (orig & ~now).any()
    qtbot.waitUntil(lambda: rv.idle and rv.review.segments[0].dice < 1.0, timeout=20000)
    a = rv.review.segments[0]
    dice = 2 * (orig & now).sum() / (orig.sum() + now.sum())
    voxel_ml = float(np.prod(vol.spacing)) / 1000
    change = (now.sum() - orig.sum()) * voxel_ml
    assert a.dice == pytest.approx(dice) and a.volume_change_ml == pytest.approx(change)
    assert a.edited_slices == [K]
    text = rv.figures.text()
    assert f"Dice {dice:.3f}" in text and f"{100 * change / (orig.sum() * voxel_ml):+.1f}%" in text

    # the AI original's outline beside the corrected segment
    rv.outline_toggle.setChecked(True)
    (outline,) = [h for h in state.open_series.heatmaps if h.name.startswith("AI original")]
    assert (outline.volume.array > 0).sum() < orig.sum() and not (outline.volume.array[~orig] > 0).any()

    # the probability map: only the voxels the model was unsure about
    (unsure_box,) = rv.unsure_toggles
    unsure_box.setChecked(True)
    (unsure,) = [h for h in state.open_series.heatmaps if h.name.endswith("(unsure only)")]
    p, u = entry.heatmaps[0].volume.array, unsure.volume.array
    assert not entry.heatmaps[0].visible and np.array_equal(u > 0, (p > 0.2) & (p < 0.8))
    unsure_box.setChecked(False)
    assert entry.heatmaps[0].visible and unsure not in state.open_series.heatmaps

    # detections: reject the second with the panel's button, move the first with the marker tool
    table = box.detection_tables[0]
    table.table.selectRow(1)
    table.findChild(QPushButton, "detections_reject").click()
    ms = entry.marker_sets[0]
    m.set_tool("marker")
    centre = ms.markers[0].center.copy()
    p0, p1 = qt_pos(view, centre).toPoint(), qt_pos(view, centre + [8.0, 0, 0]).toPoint()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=p0)
    qtbot.mouseMove(view, p1)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=p1)
    m.set_tool("wl")
    qtbot.waitUntil(lambda: rv.idle and rv.review.detections.moved == 1 and rv.review.detections.rejected == 1,
                    timeout=20000)
    d = rv.review.detections
    assert (d.proposed, d.rejected, d.pending, d.moved) == (2, 1, 1, 1)
    assert d.moved_mm[0] == pytest.approx(float(np.linalg.norm(ms.markers[0].center - centre)))
    assert "1 rejected" in rv.figures.text() and "1 moved" in rv.figures.text()
    settle(qtbot, 100)
    if os.environ.get("HOUNSFIELD_SCREENSHOT"):  # the README's picture of the panel after a correction
        screenshot(win, qtbot, box, vol)

    # export as the Measure > Export dialog does: SEG and SR carry the flags and figures
    import pydicom

    from viewer.ui.measure.export import prepare

    task = prepare(win, str(tmp_path / "out"), key_images=False)
    out = task.run()
    task.after(win, out)
    sd = pydicom.dcmread(out["seg"][0]).SegmentSequence[0]
    assert sd.SegmentAlgorithmType == "SEMIAUTOMATIC" and sd.SegmentAlgorithmName == "Review blob"
    groups = read_reviews(out["sr"][0])
    assert groups[0]["review"] == "edited by a person" and groups[0]["AIDICE"] == pytest.approx(dice)
    assert [g["review"] for g in groups[1:]] == ["edited by a person", "rejected by a person"]

    # the probability map as a Parametric Map, opened again on its series
    maps = rv.export_heatmaps(str(tmp_path / "maps"))
    before = len(state.open_series.heatmaps)
    win.open_path(maps["pm"][0])
    qtbot.waitUntil(lambda: len(state.open_series.heatmaps) > before, timeout=20000)
    back = state.open_series.heatmaps[-1]
    assert np.allclose(back.volume.array, entry.heatmaps[0].volume.array, atol=1e-6)

    # a second run, accepted as is and exported: two cases in the audit log
    entry2, box2 = run_plugin(win, qtbot)
    for row in range(2):
        entry2.marker_sets[0].set_status(row, "accepted")
    win.features.segments.controller.set_setting(brush_mm=5.0)
    task = prepare(win, str(tmp_path / "out2"), key_images=False)
    task.after(win, task.run())
    dialog = win.features.ai.show_performance()
    cells = dialog.cells()
    assert len(cells) == 1 and cells[0][:3] == ["test-review-blob", "0.3", "2"]
    assert cells[0][3] == f"{np.median([dice, 1.0]):.3f}" and cells[0][4] == f"{2 / 3:.0%}"
    csv_path = dialog.export_csv(str(tmp_path / "perf.csv"))
    assert "test-review-blob" in Path(csv_path).read_text()
    dialog.close()
    cli = subprocess.run([sys.executable, "-m", "viewer.cli", "audit", "--plugin", "test-review-blob"],
                         capture_output=True, text=True, env=dict(os.environ), timeout=60, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines()[1].split() == cells[0]

    # the AI original survives: a corrected, unexported segmentation closed and restored (as the
    # Restore bar does when the study is opened again) still has the model's label map
    ed2 = entry2.segmentations[0]
    brush(win, qtbot, view, vol, [(250, 290), (254, 290)], erase=True)
    assert ed2.unexported and not np.array_equal(ed2.label_map(), ed2.original)
    original2 = ed2.original.copy()
    state.open_series.remove_overlay(ed2)  # its journal is closed and kept
    (rec,) = [r for r in state.open_series.recoverable() if r.segments == ["Lesion"]]
    restored = win.features.segments.controller.restore(state.key, rec)
    again = next(e for e in state.open_series.segmentations if e.segmentation is restored)
    assert again.original is not None and np.array_equal(again.original, original2)
    # ... and its run is a result of the panel again, with its provenance and its figures
    box3 = next(b for b in win.features.ai.panel.boxes if again in b.entry.segmentations)
    assert box3.entry.provenance["plugin_id"] == "test-review-blob" and "journal" in box3.entry.notes[0]
    qtbot.waitUntil(lambda: box3.review.idle, timeout=20000)
    assert box3.review.review.segments[0].dice < 1.0 and box3.review.outline_toggle is not None


def screenshot(win, qtbot, box, vol) -> None:
    """docs/screenshot-ai-review.png: one axial view at the corrected lesion, the AI original's outline
    beside the corrected segment, and the results panel with its figures (QScreen.grabWindow sees the
    OpenGL views; QWidget.grab does not)."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDockWidget

    m = win.model
    hidden = [d for d in win.findChildren(QDockWidget) if d.isVisible()
              and d not in (win.features.ai.dock, win.features.segments.dock)]
    for d in hidden:
        d.hide()
    m.set_layout("1x1")
    m.set_active(0)
    m.set_point(m.active_state.key, vol.index_to_lps([256, 300, K]))
    m.set_crosshair_visible(False)
    win.features.ai.dock.show()
    win.resizeDocks([win.features.ai.dock], [560], Qt.Orientation.Horizontal)
    win.resizeDocks([win.features.ai.dock, win.features.segments.dock], [640, 260], Qt.Orientation.Vertical)
    settle(qtbot, 300)
    win.features.ai.panel.ensureWidgetVisible(box.review)
    m.set_zoom(0, 2.2)  # the lesion is near the middle of the slice
    for layer in box.entry.heatmaps:  # the probability map would hide the outline
        layer.set(visible=False)
    settle(qtbot, 400)
    win.screen().grabWindow(win.winId()).save(str(REPO / "docs" / "screenshot-ai-review.png"))
    for d in hidden:
        d.show()
    for layer in box.entry.heatmaps:
        layer.set(visible=True)
    m.set_crosshair_visible(True)
    m.set_layout("2x2")
    settle(qtbot, 100)
