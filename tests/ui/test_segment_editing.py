"""Correcting segmentations in the real window on the real chest CT, with real mouse and key
events: brush, eraser, threshold brush, flood fill, lasso, fill between slices, undo and redo,
the overlay in the views, the segment list, and restoring an unsaved segmentation after a crash.

One window is shared by the module (loading the CT once); each test starts with a fresh
segmentation on the axial slice through the middle of the CT.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from tests.conftest import data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import display_of, open_study_window, pixels_at, qt_pos, ready_window, settle

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def ct_window(qapp, tmp_path_factory):
    needs_display()
    win = open_study_window(qapp, tmp_path_factory.mktemp("seg"), data_path("chest-ct"), size=(1500, 950))
    yield win
    win.close()


K = 70  # the axial slice the tests draw on


@pytest.fixture
def win(ct_window, qtbot):
    w = ct_window
    ready_window(w, qtbot)
    m = w.model
    state = m.active_state
    for ed in state.open_series.segmentations:  # a fresh segmentation per test
        state.open_series.remove_overlay(ed, discard=True)
    m.set_point(state.key, state.volume.index_to_lps([256, 256, K]))
    m.set_tool("wl")
    w.features.segments.controller.set_setting(brush_mm=6.0, sphere=False, hu_range=(-100.0, 300.0), fill_3d=False,
                           fill_uses_range=False, tolerance=150.0)
    settle(qtbot, 50)
    return w


def pos(view, volume, i, j, k=K) -> QPoint:
    return qt_pos(view, volume.index_to_lps([float(i), float(j), float(k)])).toPoint()


def drag(qtbot, view, points) -> None:
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=points[0])
    for p in points[1:]:
        qtbot.mouseMove(view, p)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=points[-1])
    settle(qtbot)


def voxel_mm(volume):
    return float(volume.spacing[0])


def test_brush_paints_erases_and_undo_redo_with_keys(win, qtbot):
    axial = win.grid.slice_views[0]
    vol = win.model.active_state.volume
    qtbot.keyClick(axial, Qt.Key.Key_B)
    assert win.model.tool == "seg_brush" and win.features.segments.dock.isVisible()
    a, b = pos(axial, vol, 200, 300), pos(axial, vol, 300, 300)
    drag(qtbot, axial, [a, pos(axial, vol, 250, 300), b])
    seg = win.features.segments.controller.segmentation()
    s = seg.active_segment
    m = seg.mask(s)
    assert m[K, 300, 200] and m[K, 300, 250] and m[K, 300, 300]
    assert m[[K - 1, K + 1]].sum() == 0  # a disc on the slice shown, not a sphere
    r = 6.0 / voxel_mm(vol)  # 6 mm brush radius in voxels
    assert m[K, int(300 - r + 1.5), 250] and not m[K, int(300 - r - 1.5), 250]
    painted = seg.count(s)
    # erase the middle
    qtbot.keyClick(axial, Qt.Key.Key_E)
    assert win.model.tool == "seg_eraser"
    drag(qtbot, axial, [pos(axial, vol, 250, 290), pos(axial, vol, 250, 310)])
    m = seg.mask(s)
    assert not m[K, 300, 250] and m[K, 300, 200] and seg.count(s) < painted
    # Ctrl+Z restores the erased voxels, Ctrl+Y erases them again
    qtbot.keyClick(axial, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert seg.count(s) == painted and seg.mask(s)[K, 300, 250]
    qtbot.keyClick(axial, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert not seg.mask(s)[K, 300, 250]
    qtbot.keyClick(axial, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(axial, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert seg.count(s) == 0


def test_overlay_is_drawn_in_every_2d_view(win, qtbot):
    axial, coronal, sagittal = win.grid.slice_views[:3]
    vol = win.model.active_state.volume
    win.model.set_tool("seg_brush")
    win.features.segments.controller.set_setting(brush_mm=10.0)
    lps = vol.index_to_lps([256.0, 380.0, K])
    win.model.set_point(win.model.active_state.key, lps)
    win.model.set_crosshair_visible(False)
    settle(qtbot, 50)
    blank = [v.capture() for v in (axial, coronal, sagittal)]
    drag(qtbot, axial, [pos(axial, vol, 256, 380)])
    seg = win.features.segments.controller.segmentation()
    s = seg.active_segment
    settle(qtbot, 50)
    colour = np.asarray(s.color, float)

    def nearest(image, view) -> float:
        """The distance to the segment's colour of the closest pixel within 1 px of the point (in the
        coronal and sagittal views the one-slice stroke is a line about 1.4 px high, which can fall
        either side of a point on a pixel boundary)."""
        x, y = display_of(view, lps)
        r, c = image.shape[0] - 1 - int(round(y)), int(round(x))
        patch = image[r - 1:r + 2, c - 1:c + 2].reshape(-1, 3).astype(float)
        return float(np.linalg.norm(patch - colour, axis=1).min())

    for view, before in zip((axial, coronal, sagittal), blank):
        # the pixels moved towards the segment's colour (filled with opacity, or the outline)
        assert nearest(view.capture(), view) < nearest(before, view) - 20, view.plane
    # outline only: the centre is no longer tinted, the edge is drawn opaque
    seg.set_style(display_mode="outline")
    win.model.set_tool("wl")  # the brush circle goes
    settle(qtbot, 50)
    img = axial.capture()
    row = np.flatnonzero(seg.mask(s)[K, 380])
    edge = vol.index_to_lps([float(row.max()), 380.0, K])  # the last voxel of the row
    inner = vol.index_to_lps([256.0, 380.0, K])
    assert np.linalg.norm(pixels_at(img, axial, [inner])[0].astype(float)
                          - pixels_at(blank[0], axial, [inner])[0].astype(float)) < 10
    assert np.linalg.norm(pixels_at(img, axial, [edge])[0].astype(float) - colour) < 60
    seg.set_style(display_mode="both")
    win.model.set_crosshair_visible(True)


def test_threshold_brush_paints_only_the_hu_range(win, qtbot):
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    vol = state.volume
    win.model.set_tool("seg_threshold")
    win.features.segments.controller.set_setting(brush_mm=25.0, hu_range=(-100.0, 300.0))
    # across the edge of the mediastinum and the lung: soft tissue and air under the brush
    drag(qtbot, axial, [pos(axial, vol, 200, 260), pos(axial, vol, 260, 260)])
    seg = win.features.segments.controller.segmentation()
    m = seg.mask(seg.active_segment)
    hu = vol.real_values(np.s_[K])
    assert m[K].sum() > 200
    assert ((hu[m[K]] >= -100) & (hu[m[K]] <= 300)).all()
    under = np.zeros_like(m[K])
    jj, ii = np.ogrid[:512, :512]
    under |= ((jj - 260) ** 2 + (ii - 230) ** 2) * voxel_mm(vol) ** 2 < 20 ** 2
    assert (hu[under] < -100).any()  # the brush did cover lung that it left out


def test_flood_fill_then_lasso_cut(win, qtbot):
    axial = win.grid.slice_views[0]
    vol = win.model.active_state.volume
    hu = vol.real_values(np.s_[K])
    j, i = np.argwhere(hu[200:320, 80:180] < -850)[0] + (200, 80)
    win.model.set_tool("seg_fill")
    win.features.segments.controller.set_setting(hu_range=(-1024.0, -400.0), fill_uses_range=True)
    p = pos(axial, vol, i, j)
    qtbot.mouseClick(axial, Qt.MouseButton.LeftButton, pos=p)
    settle(qtbot)
    seg = win.features.segments.controller.segmentation()
    s = seg.active_segment
    m = seg.mask(s)
    assert m[K].sum() > 3000 and m.sum() == m[K].sum()  # the lung on this slice only
    assert (hu[m[K]] <= -400).all()
    # lasso cut a box out of it
    win.model.set_tool("seg_lasso_cut")
    ci, cj = int(np.argwhere(m[K])[:, 1].mean()), int(np.argwhere(m[K])[:, 0].mean())
    corners = [(ci - 15, cj - 15), (ci + 15, cj - 15), (ci + 15, cj + 15), (ci - 15, cj + 15), (ci - 15, cj - 14)]
    before = seg.count(s)
    drag(qtbot, axial, [pos(axial, vol, x, y) for x, y in corners])
    assert seg.count(s) < before and not seg.mask(s)[K, cj, ci]
    qtbot.keyClick(axial, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert seg.count(s) == before


def test_fill_between_slices_from_the_menu(win, qtbot):
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    vol = state.volume
    win.model.set_tool("seg_brush")
    win.features.segments.controller.set_setting(brush_mm=15.0)
    for k in (60, 70, 80):
        win.model.set_point(state.key, vol.index_to_lps([256, 256, k]))
        settle(qtbot)
        drag(qtbot, axial, [pos(axial, vol, 256, 330, k)])
    seg = win.features.segments.controller.segmentation()
    s = seg.active_segment
    assert (seg.mask(s).sum(axis=(1, 2)) > 0).sum() == 3
    win.features.segments.actions["fill_between"].trigger()
    per = seg.mask(s).sum(axis=(1, 2))
    assert (per[60:81] > 0).all() and per[:60].sum() == 0 and per[81:].sum() == 0
    qtbot.keyClick(axial, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert (seg.mask(s).sum(axis=(1, 2)) > 0).sum() == 3


def test_segment_list_add_rename_hide_lock_and_jump(win, qtbot):
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    vol = state.volume
    panel = win.features.segments.panel
    win.features.segments.dock.show()
    panel.add()
    panel.add()
    seg = win.features.segments.controller.segmentation()
    assert panel.table.rowCount() == 2 and seg.active == 2
    panel.table.item(0, 1).setText("Tumor")
    assert seg.segment(1).name == "Tumor"
    panel.table.selectRow(0)
    assert seg.active == 1
    win.model.set_tool("seg_brush")
    drag(qtbot, axial, [pos(axial, vol, 150, 250)])
    panel.table.item(0, 3).setCheckState(Qt.CheckState.Checked)  # lock Tumor
    assert seg.segment(1).locked
    panel.table.selectRow(1)
    drag(qtbot, axial, [pos(axial, vol, 150, 250)])  # segment 2 cannot take Tumor's voxels
    assert seg.layers[0][K, 250, 150] == 1
    panel.table.item(0, 2).setCheckState(Qt.CheckState.Unchecked)
    assert not seg.segment(1).visible
    panel.recolour(seg.segment(1), (0, 255, 0))
    assert seg.segment(1).color == (0, 255, 0)
    panel.table.selectRow(0)
    win.model.set_point(state.key, vol.index_to_lps([256, 256, 20]))
    panel.jump()
    idx = np.round(vol.lps_to_index(state.point)).astype(int)
    assert idx[2] == K and seg.layers[0][idx[2], idx[1], idx[0]] == 1


def test_unsaved_segmentation_is_offered_and_restored(make_window, qtbot, tmp_path):
    """A journal left by a session that was killed is offered when the series opens again."""
    import viewer
    from viewer.core import journal
    from viewer.core.edits import Editor
    from viewer.core.segmentation import Segmentation

    path = data_path("chest-ct")
    vol = viewer.load(path)
    seg = Segmentation.for_volume(vol, "Crashed")
    j = journal.Journal(seg, journal.series_id(vol))
    ed = Editor(seg, vol)
    s = ed.add_segment("Tumor")
    ed.brush(s, vol.index_to_lps([150.0, 250.0, 70]), radius_mm=10)
    expected = seg.layers[0].copy()
    j._file.close()  # as if the process died: no close(), no "saved" record
    w = make_window()
    w.open_path(str(path))
    qtbot.waitUntil(lambda: bool(w.model.series) and not w.session.jobs, timeout=60000)
    bar = w.features.segments.restore_bar
    qtbot.waitUntil(bar.isVisible, timeout=3000)
    assert "Tumor" in bar.label.text()
    qtbot.mouseClick(bar.restore_button, Qt.MouseButton.LeftButton)
    restored = w.features.segments.controller.segmentation()
    assert restored is not None and restored.uid == seg.uid
    assert all(rec.path != j.path for _, rec in bar.pending)  # (other windows' journals may be offered next)
    assert np.array_equal(restored.layers[0], expected)
    # export marks it saved: not offered again
    w.features.segments.controller.export(str(tmp_path / "crashed.nii.gz"))
    assert j.path not in [r.path for r in journal.recoverable(journal.series_id(vol))]


def test_segment_statistics_in_the_measurements_table_and_export(win, qtbot, tmp_path):
    """A segment painted with the threshold brush appears in the measurements table with its volume
    and HU statistics (checked against numpy), a click goes to its centroid, its label edits the
    segment's name, its histogram holds its voxels, and the window's export writes its SEG and an SR
    that refers to it."""
    import highdicom as hd
    import pydicom

    panel, ctl = win.features.measure.panel, win.features.measure.controller
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    vol = state.volume
    win.model.set_tool("seg_threshold")
    win.features.segments.controller.set_setting(brush_mm=8.0, hu_range=(-100.0, 300.0))
    drag(qtbot, axial, [pos(axial, vol, 230, 300), pos(axial, vol, 270, 300)])
    seg = win.features.segments.controller.segmentation()
    s = seg.active_segment
    mask = seg.mask(s)
    assert mask.sum() > 200
    assert ctl.segment_rows.wait()
    settle(qtbot, 50)
    rows = ctl.segment_rows.rows()
    assert [r.segment.name for r in rows] == [s.name]
    row = panel._rows.index(rows[0].uid)
    assert panel.table.item(row, 0).text() == "S1" and panel.table.item(row, 3).text() == "Segment"
    values = vol.array[mask].astype(float) * vol.rescale[0] + vol.rescale[1]
    ml = mask.sum() * abs(np.linalg.det(vol.affine[:3, :3])) / 1000
    text = panel.table.item(row, 2).text()
    assert f"{ml:.2f} mL" in text and f"mean {values.mean():.1f} HU" in text, text
    # a click goes to the centroid: every view follows
    panel.table.cellClicked.emit(row, 2)
    settle(qtbot, 50)
    centroid = vol.index_to_lps(np.argwhere(mask)[:, ::-1].mean(axis=0))
    # (the point snaps to the voxel grid)
    assert np.all(np.abs(state.point - centroid) <= vol.spacing / 2 + 1e-6) and ctl.selected == rows[0].uid
    assert panel.histogram.counts.sum() == mask.sum() and panel.histogram.mean == pytest.approx(values.mean())
    # the label column renames the segment
    panel.table.item(row, 1).setText("RLL nodule")
    assert s.name == "RLL nodule"
    assert "RLL nodule\tSegment" in ctl.as_text()
    # painting more updates the row once the statistics are redone
    drag(qtbot, axial, [pos(axial, vol, 230, 330), pos(axial, vol, 270, 330)])
    assert ctl.segment_rows.wait()
    assert ctl.segment_rows.rows()[0].stats.voxel_count == seg.count(s) > mask.sum()
    # the window's export: the SEG, and the SR's volumetric group pointing at it
    out = ctl.export(str(tmp_path), deidentify=False)
    seg_ds = pydicom.dcmread(out["seg"][0])
    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(out["sr"][0]))
    (group,) = sr.content.get_volumetric_roi_measurement_groups()
    assert group.tracking_identifier == "RLL nodule"
    assert group.referenced_segment.referenced_sop_instance_uid == seg_ds.SOPInstanceUID
    got = {m.name.meaning: m.value for m in group.get_measurements()}
    assert got["Volume"] == pytest.approx(seg.count(s) * abs(np.linalg.det(vol.affine[:3, :3])) / 1000, rel=1e-6)
