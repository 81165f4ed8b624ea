"""The AI review loop with the REAL plugins, run from the window through the real worker, on a slab of
the real chest CT (17 slices around the right-lung tumour, as a DICOM folder):

- the lung-nodule detector: one detection rejected with the panel's button, another moved with the
  marker tool; the panel's counts follow;
- the lesion segmentation, run through the AI feature's run path with a click on the tumour given in
  code (the click tool is another feature): its segment edited with the brush; Dice and volume change
  in the panel match numpy on the same masks;
- the export (SR + SEG) read back carries the flags and figures; the audit log has both runs, and
  AI > Performance and ``hounsfield audit`` show the same cells;
- the window closed, a new window opens the slab and the exported SEG: the AI original is back, the
  panel shows the same Dice and volume change, and the original's outline (without a colour bar).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import viewer
from tests.conftest import REPO, data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import open_study_window, qt_pos, settle

pytestmark = pytest.mark.gui
TUMOUR_KJI = (77, 252, 168)  # the chest-ct right-lung tumour's centre


@pytest.fixture(scope="module")
def slab(tmp_path_factory):
    """(folder, tumour centre in LPS): the chest-ct slices within 16 mm of the tumour, as DICOM files."""
    import pydicom

    src = data_path("chest-ct")
    full = viewer.load(src)
    centre = full.index_to_lps(np.array(TUMOUR_KJI, float)[::-1])
    folder = tmp_path_factory.mktemp("chest-slab")
    for f in sorted(src.glob("*.dcm")):
        if abs(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) - centre[2]) <= 16:
            shutil.copy(f, folder / f.name)
    return folder, centre


def _host(win):
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost

    registry = Registry(models=Path("/nonexistent-models"), entry_points=False)  # the built-in plugins only
    win.features.ai.controller._host = AIHost(registry, device="cpu", threads=2, stall_timeout=300)


def _run(win, qtbot, plugin_id, params, prompts=None):
    """Start a plugin from the window (the AI feature's path) and wait for its result box."""
    ctl = win.features.ai.controller
    n = len(ctl.entries)
    win.model.set_active(0)
    assert ctl.start(plugin_id, params, prompts=prompts) is not None, win.message_bar.text()
    qtbot.waitUntil(lambda: not ctl.running and len(ctl.entries) > n, timeout=240000)
    entry = ctl.entries[-1]
    assert entry.provenance["plugin_id"] == plugin_id
    box = next(b for b in win.features.ai.panel.boxes if b.entry is entry)
    qtbot.waitUntil(lambda: box.review.idle, timeout=30000)
    return entry, box


def _stroke(win, qtbot, view, vol, k, points_ij, erase=False):
    from PySide6.QtCore import Qt

    win.model.set_tool("seg_eraser" if erase else "seg_brush")
    pts = [qt_pos(view, vol.index_to_lps([float(i), float(j), float(k)])).toPoint() for i, j in points_ij]
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=pts[0])
    for p in pts[1:]:
        qtbot.mouseMove(view, p)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=pts[-1])
    settle(qtbot)
    win.model.set_tool("wl")


def _version(package: str) -> str:
    """The plugin version its manifest declares (what the audit log records for each run)."""
    import json

    return json.loads((REPO / "plugins" / package / "plugin.json").read_text())["version"]


def _cells(win, plugin_id):
    dialog = win.features.ai.show_performance()
    try:
        return next(c for c in dialog.cells() if c[0] == plugin_id)
    finally:
        dialog.close()


def test_real_plugins_reviewed_exported_audited_and_reopened(qapp, qtbot, slab, tmp_path):
    import pydicom
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QPushButton

    from viewer.ai.api import Point, Prompts
    from viewer.core.io.sr import read_reviews
    from viewer.core.review import surface
    from viewer.ui.measure.export import prepare

    needs_display()
    folder, centre = slab
    win = open_study_window(qapp, tmp_path / "w1", folder, size=(1500, 950), before_show=_host)
    m = win.model
    state = m.active_state
    vol = state.volume
    kt = int(round(vol.lps_to_index(centre)[2]))
    m.set_point(state.key, centre)

    # 1. the lung-nodule detector: reject one detection, move another
    nod, nbox = _run(win, qtbot, "lung-nodules", {"score_threshold": 0.5, "heatmap": False})
    ms = nod.marker_sets[0]
    assert len(ms.markers) >= 2 and nbox.review.review.detections.pending == len(ms.markers)
    table = nbox.detection_tables[0]
    table.table.selectRow(1)
    table.findChild(QPushButton, "detections_reject").click()
    first = ms.markers[0]
    start = first.center.copy()
    m.set_point(state.key, start)
    view = win.grid.slice_views[0]
    m.set_tool("marker")
    p0, p1 = qt_pos(view, start).toPoint(), qt_pos(view, start + [6.0, 0, 0]).toPoint()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=p0)
    qtbot.mouseMove(view, p1)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=p1)
    m.set_tool("wl")
    nrv = nbox.review
    qtbot.waitUntil(lambda: nrv.idle and nrv.review.detections.moved == 1, timeout=30000)
    d = nrv.review.detections
    assert (d.proposed, d.rejected, d.accepted, d.moved) == (len(ms.markers), 1, 0, 1)
    assert d.pending == len(ms.markers) - 1 and ms.markers[1].status == "rejected"
    assert d.moved_mm[0] == pytest.approx(float(np.linalg.norm(first.center - start)))
    assert "1 rejected" in nrv.figures.text() and "1 moved" in nrv.figures.text()

    # 2. the lesion segmentation from a click on the tumour; the brush edits its segment
    les, lbox = _run(win, qtbot, "lesion-segmentation", {"heatmaps": False},
                     prompts=Prompts((Point(tuple(float(c) for c in centre)),)))
    assert les.provenance["algorithm_type"] == "SEMIAUTOMATIC" and len(les.provenance["prompts"]["points"]) == 1
    (ed,) = les.segmentations
    assert win.features.segments.controller.editable() is ed  # the segmentation the brush paints
    orig = ed.original == ed.segment().number
    assert orig[kt].sum() > 50 and lbox.review.review.segments[0].dice == 1.0
    m.set_point(state.key, centre)
    win.features.segments.controller.set_setting(brush_mm=3.0, sphere=False)
    i, j = TUMOUR_KJI[2], TUMOUR_KJI[1]
    _stroke(win, qtbot, view, vol, kt, [(i - 2, j), (i + 2, j)], erase=True)
    _stroke(win, qtbot, view, vol, kt, [(i + 14, j + 2), (i + 20, j + 2)])
    now = ed.mask()
    assert (now & ~orig).any() and (orig & ~now).any()
    lrv = lbox.review
    qtbot.waitUntil(lambda: lrv.idle and lrv.review.segments[0].dice < 1.0, timeout=30000)
    a = lrv.review.segments[0]
    voxel_ml = float(np.prod(vol.spacing)) / 1000
    dice = 2 * (orig & now).sum() / (orig.sum() + now.sum())
    change = (now.sum() - orig.sum()) * voxel_ml
    assert a.dice == pytest.approx(dice) and a.volume_change_ml == pytest.approx(change)
    assert a.edited_slices == [kt] and f"Dice {dice:.3f}" in lrv.figures.text()
    assert f"{100 * change / (orig.sum() * voxel_ml):+.1f}%" in lrv.figures.text()
    figures = lrv.figures.text()

    # 3. export SR + SEG as Measure > Export does; the files carry the flags and figures
    task = prepare(win, str(tmp_path / "out"), key_images=False)
    out = task.run()
    task.after(win, out)
    (sd,) = pydicom.dcmread(out["seg"][0]).SegmentSequence
    assert sd.SegmentAlgorithmType == "SEMIAUTOMATIC" and sd.SegmentAlgorithmName == "Lesion segmentation"
    groups = read_reviews(out["sr"][0])
    assert groups[0]["review"] == "edited by a person" and groups[0]["AIDICE"] == pytest.approx(dice)
    assert groups[0]["AIDVOL"] == pytest.approx(change)
    flags = [g["review"] for g in groups[1:]]
    assert len(flags) == len(ms.markers) and flags.count("rejected by a person") == 1
    assert flags.count("edited by a person") == 1 and flags.count("produced by an algorithm") == len(ms.markers) - 2

    # 4. the audit log has both runs; AI > Performance and `hounsfield audit` show the same cells
    lesion_cells, nodule_cells = _cells(win, "lesion-segmentation"), _cells(win, "lung-nodules")
    assert lesion_cells[1:4] == [_version("lesion_segmentation"), "1", f"{dice:.3f}"]
    from viewer.core.review import review_applied

    assert nodule_cells[1:7] == [_version("lung_nodules"), "1", f"{review_applied(nod).dice:.3f}", "0%", "1.00", "0.00"]
    for cells in (lesion_cells, nodule_cells):
        cli = subprocess.run([sys.executable, "-m", "viewer.cli", "audit", "--plugin", cells[0]],
                             capture_output=True, text=True, env=dict(os.environ), timeout=60, cwd=REPO)
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.splitlines()[1].split() == cells

    # 5. the study closed with the window; a new window opens it and the SEG: the AI original is back
    original = ed.original.copy()
    seg_path = out["seg"][0]
    win.close()
    settle(qtbot, 100)
    again = open_study_window(qapp, tmp_path / "w2", folder, size=(1500, 950))
    try:
        st2 = again.model.active_state
        again.open_path(seg_path)
        panel = again.features.ai.panel
        qtbot.waitUntil(lambda: len(panel.boxes) == 1, timeout=30000)
        box = panel.boxes[0]
        (ed2,) = box.entry.segmentations
        assert np.array_equal(ed2.original, original) and ed2.segments[0].edited
        assert box.entry.provenance["plugin_id"] == "lesion-segmentation"
        qtbot.waitUntil(lambda: box.review.idle, timeout=30000)
        b = box.review.review.segments[0]
        assert (b.dice, b.volume_change_ml, b.hd95_mm, b.edited_slices) == \
            (pytest.approx(a.dice), pytest.approx(a.volume_change_ml), pytest.approx(a.hd95_mm), a.edited_slices)
        assert box.review.figures.text() == figures and not again.message_bar.isVisible()
        box.review.outline_toggle.setChecked(True)
        settle(qtbot, 100)
        (outline,) = [h for h in st2.open_series.heatmaps if h.name.startswith("AI original")]
        assert np.array_equal(outline.volume.array > 0, surface(original != 0))
        drawn = [hp for hp in again.grid.slice_views[0].heatmaps if hp.layer is outline]
        assert drawn and not drawn[0].colour_bar.GetVisibility() and drawn[0].title.GetVisibility()
        assert _cells(again, "lesion-segmentation")[2] == "1"  # still one case: the reopened run is the same
    finally:
        again.close()
    from viewer.core.audit import AuditLog, table_rows

    with AuditLog() as audit:  # closing the window recorded the reopened run again: the same row
        row = table_rows(audit.summary("lesion-segmentation"))[0]
        assert row[1:4] == [_version("lesion_segmentation"), "1", f"{dice:.3f}"]
