"""Measuring in the real window on the real chest CT (and brain MR): each tool placed with real
mouse events, its numbers checked against numpy on the same voxels; editing by handles, Del,
the measurements panel, saving with the study, exports and the screenshot of the feature."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.conftest import REPO, data_path
from tests.render.test_slice import trilinear as reference_trilinear
from tests.ui.conftest import needs_display
from tests.ui.helpers import clear_measurements, display_of, drag, qt_pos, ready_window, settle

pytestmark = pytest.mark.gui


def _open(qapp, path, tmp):
    import time

    from PySide6.QtCore import QSettings

    from viewer.ui.mainwindow import MainWindow

    win = MainWindow(settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    win.resize(1500, 950)
    win.model.set_layout("2x2")
    win.show()
    win.open_path(str(path))
    end = time.monotonic() + 60
    while (not win.model.series or win.session.jobs) and time.monotonic() < end:
        qapp.processEvents()
        time.sleep(0.01)
    assert win.model.series and not win.session.jobs, f"{path} did not load"
    win.activateWindow()
    return win


@pytest.fixture(scope="module")
def ct_window(qapp, tmp_path_factory):
    needs_display()
    win = _open(qapp, data_path("chest-ct"), tmp_path_factory.mktemp("ct"))
    yield win
    win.close()


@pytest.fixture
def win(ct_window, qtbot):
    m = ct_window.model
    ready_window(ct_window, qtbot, "2x2")
    clear_measurements(ct_window)
    state = m.active_state
    m.set_point(state.key, state.volume.index_to_lps([165, 252, 78]))  # the right-lung tumour
    settle(qtbot, 50)
    return ct_window



def click(qtbot, view, p):
    pos = qt_pos(view, p).toPoint()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=pos)
    settle(qtbot)


def only(win):
    ms = win.features.measure.controller.measurements()
    assert len(ms) == 1
    return ms[0]


def px_mm(view) -> float:
    return view.mm_per_pixel_logical()


def test_ruler_on_the_axial_ct(win, qtbot):
    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_tool("measure_length")
    a, b = vol.index_to_lps([140, 240, 78]), vol.index_to_lps([190, 265, 78])
    drag(qtbot, axial, a, b)
    m = only(win)
    tol = 1.5 * px_mm(axial)
    assert np.linalg.norm(m.points[0] - a) < tol and np.linalg.norm(m.points[1] - b) < tol
    assert abs(m.points[0][2] - a[2]) < 1e-6  # on the slice shown
    ia, ib = vol.lps_to_index(m.points)
    assert m.values["length_mm"] == pytest.approx(np.linalg.norm((ib - ia) * vol.spacing), rel=1e-9)
    assert m.values["length_mm"] == pytest.approx(np.linalg.norm(b - a), abs=2 * tol)
    assert m.series_uid == vol.source.series_instance_uid
    # drawn, with its label, on this slice only
    overlay = win.features.measure.controller.overlays[0]
    assert [d.measurement for d in overlay.drawn] == [m]
    assert f"{m.values['length_mm']:.1f} mm" in overlay.texts[0].GetInput()
    win.model.step(0, 1)
    settle(qtbot)
    axial.update_scene()
    assert overlay.drawn == []
    win.model.step(0, -1)
    axial.update_scene()
    assert len(overlay.drawn) == 1


def test_ellipse_roi_on_the_tumour_matches_numpy(win, qtbot):
    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_tool("measure_ellipse")
    drag(qtbot, axial, vol.index_to_lps([150, 240, 78]), vol.index_to_lps([182, 264, 78]))
    m = only(win)
    v = m.values
    c, ae, be = vol.lps_to_index(m.points)
    ra, rb = abs(ae[0] - c[0]), abs(be[1] - c[1])  # semi-axes in voxels along i and j
    jj, ii = np.mgrid[0:512, 0:512]
    inside = ((ii - c[0]) / ra) ** 2 + ((jj - c[1]) / rb) ** 2 <= 1.0
    hu = vol.array[78][inside].astype(np.float64)
    assert v["count"] == inside.sum() > 300
    assert v["mean"] == pytest.approx(hu.mean()) and v["sd"] == pytest.approx(hu.std())
    assert (v["min"], v["max"]) == (hu.min(), hu.max())
    assert v["area_mm2"] == pytest.approx(np.pi * ra * rb * vol.spacing[0] * vol.spacing[1])
    assert v["mean"] > -300  # the tumour is soft tissue, not lung
    # the panel lists it and shows its histogram
    panel = win.features.measure.panel
    assert panel.table.rowCount() == 1 and "mean" in panel.table.item(0, 2).text()
    assert panel.histogram.counts.sum() == v["count"]


def test_bidirectional_and_editing_its_short_axis(win, qtbot):
    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_tool("measure_bidirectional")
    a, b = vol.index_to_lps([150, 252, 78]), vol.index_to_lps([180, 252, 78])
    drag(qtbot, axial, a, b)
    m = only(win)
    p = m.points
    assert m.values["long_mm"] == pytest.approx(np.linalg.norm(p[1] - p[0]))
    assert m.values["short_mm"] == pytest.approx(0.5 * m.values["long_mm"], rel=1e-6)
    # drag one short-axis end 6 voxels further out
    end = p[3]
    out = end + 6 * vol.spacing[1] * (p[3] - p[2]) / np.linalg.norm(p[3] - p[2])
    drag(qtbot, axial, end, out)
    q = m.points
    assert m.values["short_mm"] == pytest.approx(np.linalg.norm(q[3] - q[2]))
    assert m.values["short_mm"] > 0.5 * m.values["long_mm"] + 4
    assert abs((q[3] - q[2]) @ (q[1] - q[0])) < 1e-6  # still perpendicular
    assert len(win.features.measure.controller.measurements()) == 1  # editing made nothing new


def test_angle_with_drag_then_click(win, qtbot):
    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_tool("measure_angle")
    a, vertex, c = (vol.index_to_lps(x) for x in ([120, 200, 78], [170, 250, 78], [240, 240, 78]))
    drag(qtbot, axial, a, vertex)
    qtbot.mouseMove(axial, qt_pos(axial, c).toPoint())
    click(qtbot, axial, c)
    m = only(win)
    d1, d2 = m.points[0] - m.points[1], m.points[2] - m.points[1]
    expected = np.degrees(np.arccos(d1 @ d2 / np.linalg.norm(d1) / np.linalg.norm(d2)))
    assert m.values["angle_deg"] == pytest.approx(expected)
    assert m.values["angle_deg"] == pytest.approx(np.degrees(np.pi - np.arctan2(50, 50) - np.arctan2(10, 70)), abs=1.5)


def test_freehand_polygon_on_the_anisotropic_coronal_view(win, qtbot):
    from skimage.measure import points_in_poly

    coronal = win.grid.slice_views[1]
    vol = coronal.state.volume
    win.model.set_active(1)
    win.model.set_tool("measure_polygon")
    corners = [vol.index_to_lps([x, 252, z]) for x, z in ((140, 70), (200, 68), (205, 90), (150, 95))]
    start = qt_pos(coronal, corners[0]).toPoint()
    qtbot.mousePress(coronal, Qt.MouseButton.LeftButton, pos=start)
    for a, b in zip(corners, corners[1:] + corners[:1]):
        for t in np.linspace(0, 1, 8)[1:]:
            qtbot.mouseMove(coronal, qt_pos(coronal, a + t * (b - a)).toPoint())
    qtbot.mouseRelease(coronal, Qt.MouseButton.LeftButton, pos=start)
    settle(qtbot)
    m = only(win)
    assert m.kind == "polygon" and len(m.points) >= 12
    j = int(round(vol.lps_to_index(m.points[0])[1]))
    assert j == 252
    idx = vol.lps_to_index(m.points)
    si, _, sk = vol.spacing  # 0.98 mm by 2 mm in this plane
    kk, ii = np.mgrid[0:vol.shape[0], 0:vol.shape[2]]
    inside = points_in_poly(np.column_stack([ii.ravel() * si, kk.ravel() * sk]),
                            np.column_stack([idx[:, 0] * si, idx[:, 2] * sk])).reshape(kk.shape)
    hu = vol.array[:, j, :][inside].astype(np.float64)
    v = m.values
    assert abs(v["count"] - inside.sum()) <= 2  # voxel centres exactly on the outline may differ
    assert v["mean"] == pytest.approx(hu.mean(), abs=2.0)
    x, y = idx[:, 0] * si, idx[:, 2] * sk
    assert v["area_mm2"] == pytest.approx(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def test_point_value_and_delete_key(win, qtbot):
    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_tool("measure_point")
    p = vol.index_to_lps([165, 252, 78])
    click(qtbot, axial, p)
    m = only(win)
    i, j, k = np.round(vol.lps_to_index(m.points[0])).astype(int)
    assert m.values["value"] == float(vol.array[k, j, i])
    assert win.features.measure.controller.selected == m.uid
    axial.setFocus()
    qtbot.keyClick(axial, Qt.Key.Key_Delete)
    settle(qtbot)
    assert win.features.measure.controller.measurements() == []


def test_oblique_ellipse_samples_the_rotated_plane(win, qtbot):
    axial = win.grid.slice_views[0]
    state = axial.state
    vol = state.volume
    state.rotate("coronal", 0.35)  # tilts the axial plane
    settle(qtbot)
    try:
        win.model.set_tool("measure_ellipse")
        geom = axial.pipeline.geometry
        c = state.point
        drag(qtbot, axial, c - 15 * geom.u - 10 * geom.v, c + 15 * geom.u + 10 * geom.v)
        m = only(win)
        assert abs(m.normal @ np.array([0, 0, 1.0])) < 0.99
        from viewer.core.measurements import ellipse_axes

        centre, a, b = ellipse_axes(m)
        step = vol.spacing.min()
        u, v = m.u, m.v
        g = np.arange(-60, 61) * step
        gx, gy = np.meshgrid(g, g, indexing="ij")
        px = gx + (centre - m.points[0]) @ u  # the grid is anchored at the first point (the centre)
        py = gy + (centre - m.points[0]) @ v
        ins = ((px * (u @ a) + py * (v @ a)) / (a @ a)) ** 2 + ((px * (u @ b) + py * (v @ b)) / (b @ b)) ** 2 <= 1
        lps = m.points[0] + gx[ins][:, None] * u + gy[ins][:, None] * v
        ref = reference_trilinear(vol.array.astype(np.float64), (lps - vol.affine[:3, 3]) / vol.spacing)
        assert m.values["count"] == ins.sum()
        assert m.values["mean"] == pytest.approx(ref.mean(), abs=1e-6)
        assert m.values["sd"] == pytest.approx(ref.std(), abs=1e-6)
    finally:
        state.reset_rotation()


def test_panel_jump_label_and_saving_with_the_study(win, qtbot):
    from viewer.core.measurement_store import load_measurements

    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_tool("measure_length")
    drag(qtbot, axial, vol.index_to_lps([140, 240, 78]), vol.index_to_lps([190, 265, 78]))
    m = only(win)
    panel = win.features.measure.panel
    panel.table.item(0, 1).setText("RUL mass")
    assert m.label == "RUL mass"
    saved = load_measurements(vol.source.series_instance_uid)
    assert [(s.uid, s.label) for s in saved] == [(m.uid, "RUL mass")]
    # go elsewhere, then click the row: the views go back to the measurement
    state = axial.state
    win.model.set_point(state.key, vol.index_to_lps([256, 256, 40]))
    settle(qtbot)
    rect = panel.table.visualItemRect(panel.table.item(0, 3))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    settle(qtbot)
    assert int(round(vol.lps_to_index(state.point)[2])) == 78
    # the series opened again (a new workspace, as the next session) restores it
    from viewer.core.workspace import Workspace

    restored = Workspace().add(state.volume).measurements
    assert [r.uid for r in restored] == [m.uid] and restored[0].values["length_mm"] == pytest.approx(
        m.values["length_mm"])


def test_export_from_the_window(win, qtbot, tmp_path):
    from viewer.core.io.keyimages import read_png
    from viewer.core.io.sr import read_sr

    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_tool("measure_ellipse")
    drag(qtbot, axial, vol.index_to_lps([150, 240, 78]), vol.index_to_lps([182, 264, 78]))
    win.model.set_tool("measure_length")
    drag(qtbot, axial, vol.index_to_lps([140, 300, 78]), vol.index_to_lps([200, 300, 78]))
    ms = win.features.measure.controller.measurements()
    out = win.features.measure.controller.export(str(tmp_path), deidentify=False)
    back = read_sr(out["sr"][0])
    assert [b.kind for b in back] == ["ellipse", "length"]
    assert back[0].values["mean"] == pytest.approx(ms[0].values["mean"])
    assert back[1].values["length_mm"] == pytest.approx(ms[1].values["length_mm"])
    png = read_png(out["png"][0])
    assert png.shape[:2] == axial.capture().shape[:2]
    # the ruler is drawn in the key image (coloured pixels on a grey image: cyan, as it is selected)
    x, y = display_of(axial, 0.5 * (ms[1].points[0] + ms[1].points[1]))
    row = png.shape[0] - 1 - int(round(y))
    patch = png[row - 2:row + 3, int(round(x)) - 2:int(round(x)) + 3].reshape(-1, 3).astype(int)
    assert any(px.max() - px.min() > 100 for px in patch)
    # an SR written by the window is imported back as the same measurements
    n_before = len(win.features.measure.controller.measurements())
    assert win.features.measure.controller.import_sr(out["sr"][0]) == 2
    assert len(win.features.measure.controller.measurements()) == n_before + 2


def test_screenshot_of_the_measure_feature(win, qtbot, tmp_path):
    """docs/screenshot-measure.png (with HOUNSFIELD_SCREENSHOTS=1; else a temporary file): a ruler, an
    ellipse ROI and a bidirectional on the chest CT."""
    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_layout("1x1")
    win.model.set_zoom(0, 1.7)
    win.model.set_pan(0, (-5.0, -10.0))
    settle(qtbot, 100)
    win.model.set_tool("measure_bidirectional")
    drag(qtbot, axial, vol.index_to_lps([151, 247, 78]), vol.index_to_lps([181, 257, 78]))
    win.model.set_tool("measure_ellipse")
    drag(qtbot, axial, vol.index_to_lps([254, 253, 78]), vol.index_to_lps([278, 277, 78]))
    win.model.set_tool("measure_length")
    drag(qtbot, axial, vol.index_to_lps([217, 186, 78]), vol.index_to_lps([253, 186, 78]))
    ms = win.features.measure.controller.measurements()
    for m, label in zip(ms, ("RUL mass", "Descending aorta", "Ascending aorta")):
        win.features.measure.controller.set_label(m.uid, label)
    win.features.measure.controller.select(ms[1].uid)
    win.model.set_tool("wl")
    settle(qtbot, 200)
    assert len(win.features.measure.controller.overlays[0].drawn) == 3
    for view in win.grid.visible_views():
        view.render_now()
    qtbot.wait(100)
    shot = win.screen().grabWindow(win.winId())
    docs = os.environ.get("HOUNSFIELD_SCREENSHOTS") == "1"
    assert shot.save(str((REPO / "docs" if docs else tmp_path) / "screenshot-measure.png"))


def test_ellipse_and_ruler_on_the_anisotropic_mr_coronal_view(qapp, qtbot, tmp_path):
    """Brain MR: 0.41 mm columns by 1.5 mm slices in the coronal plane; stats against numpy."""
    needs_display()
    win = _open(qapp, data_path("brain-mr-t1"), tmp_path)
    try:
        coronal = win.grid.slice_views[1]
        state = coronal.state
        vol = state.volume
        win.model.set_point(state.key, vol.index_to_lps([256, 256, 60]))
        win.model.set_active(1)
        settle(qtbot, 50)
        win.model.set_tool("measure_ellipse")
        drag(qtbot, coronal, vol.index_to_lps([200, 256, 50]), vol.index_to_lps([300, 256, 70]))
        (m,) = win.features.measure.controller.measurements()
        c, ae, be = vol.lps_to_index(m.points)
        j = int(round(c[1]))
        ra, rb = abs(ae[0] - c[0]), abs(be[2] - c[2])  # semi-axes in voxels: along i and along k
        assert ra * vol.spacing[0] == pytest.approx(rb * vol.spacing[2], rel=0.5)  # drawn in mm, not voxels
        kk, ii = np.mgrid[0:vol.shape[0], 0:vol.shape[2]]
        inside = ((ii - c[0]) / ra) ** 2 + ((kk - c[2]) / rb) ** 2 <= 1.0
        slope, intercept = vol.rescale
        vals = vol.array[:, j, :][inside].astype(np.float64) * slope + intercept
        assert m.values["count"] == inside.sum() > 100
        assert m.values["mean"] == pytest.approx(vals.mean()) and m.values["sd"] == pytest.approx(vals.std())
        assert m.values["area_mm2"] == pytest.approx(np.pi * ra * vol.spacing[0] * rb * vol.spacing[2])
        win.model.set_tool("measure_length")
        drag(qtbot, coronal, vol.index_to_lps([150, 256, 30]), vol.index_to_lps([150, 256, 90]))
        ruler = win.features.measure.controller.measurements()[-1]
        ia, ib = vol.lps_to_index(ruler.points)
        assert ruler.values["length_mm"] == pytest.approx(np.linalg.norm((ib - ia) * vol.spacing), rel=1e-6)
        assert ruler.values["length_mm"] == pytest.approx(60 * 1.5, abs=2 * coronal.mm_per_pixel_logical())
    finally:
        win.close()


def test_a_tiny_segment_reads_in_cubic_millimetres_not_as_zero_millilitres():
    """A 2 mm3 nodule's row said "0.00 mL" beside the Nodules panel's 2 mm3; under 0.1 mL it reads in
    mm3, from 0.1 mL on in mL as before."""
    import numpy as np

    from viewer.core.measurements import segment_stats
    from viewer.core.volume import Volume
    from viewer.ui.measure.segment_rows import SegmentRow

    vol = Volume(np.zeros((8, 8, 8), np.int16), np.diag([0.7, 0.7, 1.25, 1.0]), modality="CT", units="HU")
    mask = np.zeros(vol.shape, bool)
    mask[4, 4, 3:5] = True  # two voxels: 1.225 mm3
    tiny = SegmentRow("segment:x:1", "k", None, None, segment_stats(mask, vol)).summary("HU")
    assert tiny.startswith("1.2 mm\u00b3  mean 0.0 HU"), tiny
    mask[:, :, :] = True  # 8^3 voxels of 0.6125 mm3: 0.31 mL
    assert SegmentRow("segment:x:1", "k", None, None, segment_stats(mask, vol)).summary().startswith("0.31 mL")


def test_the_panel_shows_an_roi_value_whole_without_a_sideways_scroll(win, qtbot):
    """An ellipse's figures were one line wider than the dock ('... area 4.8' cut, the Kind column
    behind a horizontal scroll bar): the two lines stay two lines, Kind takes what is left."""
    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_tool("measure_ellipse")
    drag(qtbot, axial, vol.index_to_lps([150, 240, 78]), vol.index_to_lps([182, 264, 78]))
    settle(qtbot, 50)
    table = win.features.measure.panel.table
    item = table.item(0, 2)
    lines = item.text().split("\n")
    assert len(lines) == 2 and lines[1].startswith("min") and "area" in lines[1]
    widest = max(table.fontMetrics().horizontalAdvance(line) for line in lines)
    assert table.columnWidth(2) >= widest  # the whole value shows
    assert table.horizontalScrollBar().maximum() == 0, [table.columnWidth(c) for c in range(4)]
    assert item.toolTip() == item.text()


def test_a_segment_row_wraps_its_figures_and_leaves_kind_readable(win, qtbot):
    """A segment's figures are one long line ('7.26 mL  mean -55.7 HU  SD 92.1 ... axial 28 x ...'):
    sized to it, the Value column left the Kind column 'Bi...' wide behind a sideways scroll bar.  The
    value now wraps and Kind keeps room for "Segment", at the dock's width and after a resize."""
    axial = win.grid.slice_views[0]
    vol = axial.state.volume
    win.model.set_tool("measure_length")
    drag(qtbot, axial, vol.index_to_lps([150, 240, 78]), vol.index_to_lps([182, 264, 78]))
    win.model.set_tool("seg_brush")
    drag(qtbot, axial, vol.index_to_lps([160, 250, 78]), vol.index_to_lps([170, 255, 78]))
    win.model.set_tool("wl")
    panel = win.features.measure.panel
    table = panel.table
    qtbot.waitUntil(lambda: table.rowCount() == 2 and "mL" in (table.item(1, 2).text() if table.item(1, 2) else ""),
                    timeout=20000)  # the segment's figures are computed off the UI thread
    settle(qtbot, 50)
    try:
        kind_word = table.fontMetrics().horizontalAdvance("Segment")
        for width in (None, 520):
            if width is not None:
                panel.resize(width, panel.height())
                settle(qtbot, 50)
            value = table.item(1, 2)
            one_line = table.fontMetrics().horizontalAdvance(value.text())
            assert table.columnWidth(2) < one_line  # it would not fit: it wraps
            assert table.rowHeight(1) > 1.5 * table.fontMetrics().height()
            assert table.columnWidth(3) >= kind_word, [table.columnWidth(c) for c in range(4)]
            assert table.horizontalScrollBar().maximum() == 0
    finally:
        ed = win.features.segments.controller.editable()
        if ed is not None:
            for s in list(ed.segmentation.segments):
                ed.editor.remove_segment(s)
