"""Comparing a baseline with its follow-up in the real window (issue 19): registration from the
*Compare* menu on a worker thread (one cancelled: nothing changes; one rigid run kept by the
workspace), linked wheel scrolling that follows the anatomy through the registration (the tumour at
the crosshair in both views, by pixels), fusion (colour map, opacity), checkerboard and flicker, and
the README screenshot.

Data: ``tests/followup.py``, the real chest CT and a synthetic follow-up made from it with a known
rigid move, a smooth deformation and a grown tumour; a small crop (every 4th row and column, the 40
slices around the tumour) keeps the test short.  Registration convention: fixed = follow-up,
moving = baseline (the dialog registers the active series, the baseline, onto the follow-up).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.conftest import REPO, data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import display_of, open_pair_window, qt_pos, settle

pytestmark = pytest.mark.gui


def _wheel(view, steps: int) -> None:
    """Real wheel events over the view's centre (towards the user: next image)."""
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    pos = QPointF(view.width() / 2, view.height() / 2)
    sign = 1 if steps > 0 else -1
    for _ in range(abs(steps)):
        ev = QWheelEvent(pos, view.mapToGlobal(pos), QPoint(0, 0), QPoint(0, -120 * sign),
                         Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(view, ev)


def _click_radio(qtbot, button) -> None:
    """A real click on a radio button's indicator (its centre may lie beyond a short label)."""
    from PySide6.QtCore import QPoint, Qt

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton, pos=QPoint(8, button.height() // 2))


LABEL_ROWS = 130  # the top rows of a fused view hold the corner text and the fusion's label


def _unchanged(img: np.ndarray, plain: np.ndarray) -> bool:
    """The image as without fusion (below the fusion's label, which says what is fused)."""
    return int(np.abs(img[LABEL_ROWS:].astype(int) - plain[LABEL_ROWS:].astype(int)).max()) <= 2


def _coloured(img: np.ndarray) -> int:
    rgb = img[..., :3].astype(int)
    return int(((rgb[..., 0] - rgb[..., 2]) > 40).sum())


def _patch(img: np.ndarray, view, lps, r: int = 14) -> np.ndarray:
    """A (2r+1)^2 grey patch of a captured view around an LPS point."""
    x, y = display_of(view, lps)
    h = img.shape[0]
    row, col = h - 1 - int(round(y)), int(round(x))
    return img[row - r:row + r + 1, col - r:col + r + 1, :3].mean(axis=2)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def _plane_vs_grid(fs, volume, k: int, grid: np.ndarray, every: int = 37):
    """(the fused plane's values, ``grid[k]``'s) at every ``every``-th voxel centre of slice ``k``."""
    shown = fs.output_array().astype(np.float64)  # [y, x] on the plane's grid
    geom = fs.geometry
    nk, nj, ni = volume.shape
    jj, ii = np.mgrid[0:nj, 0:ni]
    lps = volume.index_to_lps(np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k)], axis=1))[::every]
    xy = np.array([geom.from_lps(p) for p in lps])
    cols = np.clip(np.round((xy[:, 0] - geom.extent[0]) / geom.spacing).astype(int), 0, shown.shape[1] - 1)
    rows = np.clip(np.round((xy[:, 1] - geom.extent[2]) / geom.spacing).astype(int), 0, shown.shape[0] - 1)
    return shown[rows, cols], np.asarray(grid[k], dtype=np.float64).ravel()[::every]


def _wait_loaded(qtbot, win) -> None:
    qtbot.waitUntil(lambda: not win.session.jobs and all(s.loaded is None for s in win.model.series.values()),
                    timeout=60000)
    settle(qtbot, 50)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    data_path("chest-ct")  # skips with a reason when the real data is absent
    from tests.followup import TUMOUR_SLICES, cached_followup

    if _docs():  # the README's screenshot: every slice, every second row and column
        return cached_followup(tmp_path_factory, stride=2)
    return cached_followup(tmp_path_factory, stride=4, slices=TUMOUR_SLICES)


def _docs() -> bool:
    return "1" in (os.environ.get("HOUNSFIELD_SCREENSHOT"), os.environ.get("HOUNSFIELD_SCREENSHOTS"))


@pytest.fixture(scope="module")
def win(qapp, tmp_path_factory, pair):
    """Baseline in the left view, the follow-up beside it (both axial), the baseline's coronal right."""
    needs_display()
    w = open_pair_window(qapp, tmp_path_factory.mktemp("compare"), pair)
    w.model.compare(pair.baseline_series_uid, pair.followup_series_uid)
    yield w
    w.close()


@pytest.fixture(scope="module")
def registered(win, pair, qapp):
    """The rigid registration made from the menu in the first test (the other tests need it)."""
    return {}


def _keys(pair):
    return pair.baseline_series_uid, pair.followup_series_uid


def _open_dialog(win, qtbot):
    from PySide6.QtCore import Qt

    qtbot.keyClick(win, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: win.features.compare.dialog is not None and win.features.compare.dialog.isVisible(),
                    timeout=5000)
    return win.features.compare.dialog


def test_register_from_the_menu_cancel_then_rigid_and_scroll_through_the_transform(win, pair, qtbot, registered):
    from PySide6.QtCore import Qt

    m, ws, ctl = win.model, win.workspace, win.features.compare.controller
    base_key, fu_key = _keys(pair)
    _wait_loaded(qtbot, win)
    base_view, fu_view = win.grid.views[0], win.grid.views[1]
    assert (m.viewports[0].series, m.viewports[1].series) == (base_key, fu_key)
    # different frames of reference, no registration: not linked
    assert m.series[base_key].frame_of_reference != m.series[fu_key].frame_of_reference
    assert m.map_point(base_key, fu_key, m.series[base_key].point) is None
    # the baseline view active (a real click), Ctrl+Shift+R: register it onto the follow-up
    qtbot.mouseClick(base_view, Qt.MouseButton.LeftButton, pos=qt_pos(base_view, m.series[base_key].point).toPoint())
    assert m.active == 0
    dialog = _open_dialog(win, qtbot)
    assert dialog.moving == base_key and dialog.target.currentData() == fu_key
    # a cancelled run changes nothing
    seen = []
    ctl.progress.connect(lambda f, t: seen.append(f))
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(seen) or not ctl.running, timeout=30000)
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not ctl.running, timeout=30000)
    settle(qtbot, 50)
    assert "Cancelled" in dialog.status.text()
    assert m.registration(base_key, fu_key) is None and not getattr(ws, "registrations", [])
    assert dialog.isVisible() and dialog.start_button.isEnabled()
    # the rigid run: kept by the workspace, the dialog closes; the UI answered while it ran
    ticks = []
    from PySide6.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not ctl.running, timeout=120000)
    timer.stop()
    settle(qtbot, 50)
    reg = m.registration(base_key, fu_key)
    assert reg is not None, win.message_bar.text()
    assert len(ticks) >= 3  # the event loop ran during the registration
    tre = pair.tre(m.registration(fu_key, base_key).to_moving)  # fixed follow-up -> moving baseline
    assert np.median(tre) < 3.0, tre  # a rigid fit of a deformed pair on a 3.9 mm grid
    registered["reg"] = reg

    # linked through the transform: the tumour centre in the follow-up view (a click), then wheel
    # scrolling there to its slice moves the baseline to the same anatomy
    base, fu = m.series[base_key], m.series[fu_key]
    m.set_crosshair_visible(False)
    centre_f = pair.tumour_centre_followup
    k_target = int(round(fu.volume.lps_to_index(centre_f)[2]))
    start = fu.volume.index_to_lps([*fu.volume.lps_to_index(centre_f)[:2], k_target - 6])
    m.set_point(fu_key, start)
    settle(qtbot, 50)
    qtbot.mouseClick(fu_view, Qt.MouseButton.LeftButton, pos=qt_pos(fu_view, centre_f).toPoint())
    settle(qtbot, 50)
    k_now = int(round(fu.volume.lps_to_index(fu.point)[2]))
    assert k_now != k_target
    before = base.point.copy()
    _wheel(fu_view, 1)  # one step tells which way "next image" goes in index k
    settle(qtbot, 30)
    k1 = int(round(fu.volume.lps_to_index(fu.point)[2]))
    assert abs(k1 - k_now) == 1
    _wheel(fu_view, (k_target - k1) * (k1 - k_now))
    settle(qtbot, 100)
    assert int(round(fu.volume.lps_to_index(fu.point)[2])) == k_target
    assert not np.allclose(base.point, before)
    expected = m.registration(fu_key, base_key).to_moving(fu.point)
    # the point snaps to the nearest voxel (slices of all three planes): within half a voxel each way
    assert np.all(np.abs(base.volume.lps_to_index(base.point) - base.volume.lps_to_index(expected)) <= 0.5 + 1e-6)
    assert np.linalg.norm(base.point - pair.tumour_centre_baseline) < 6.0  # the same anatomy
    # by pixels: the tumour lies under the crosshair centre in both views and looks alike there
    win.model.series[base_key].set_window(40, 400)
    win.model.series[fu_key].set_window(40, 400)
    settle(qtbot, 50)
    img_b, img_f = base_view.capture(), fu_view.capture()
    pb, pf = _patch(img_b, base_view, base.point), _patch(img_f, fu_view, fu.point)
    assert pb[12:17, 12:17].mean() > 90 and pf[12:17, 12:17].mean() > 90  # soft tissue, not lung (black)
    assert _corr(pb, pf) > 0.6, _corr(pb, pf)
    # without the registration (plain LPS) the baseline point would be elsewhere: lung, or another shape
    wrong = base.clamp(fu.point)
    assert np.linalg.norm(wrong - base.point) > 8.0
    # and back: scrolling the baseline moves the follow-up through the inverse
    _wheel(base_view, 2)
    settle(qtbot, 100)
    back = m.registration(base_key, fu_key).to_moving(base.point)
    assert np.all(np.abs(fu.volume.lps_to_index(fu.point) - fu.volume.lps_to_index(back)) <= 0.5 + 1e-6)
    m.set_crosshair_visible(True)


def test_fusion_colour_map_opacity_checkerboard_and_flicker(win, pair, qtbot, registered):
    from PySide6.QtCore import Qt

    if "reg" not in registered:
        pytest.skip("needs the registration made by the previous test")
    m, feat = win.model, win.features.compare
    ctl, panel = feat.controller, feat.panel
    base_key, fu_key = _keys(pair)
    base_view = win.grid.views[0]
    base = m.series[base_key]
    m.set_crosshair_visible(False)
    m.set_point(base_key, pair.tumour_centre_baseline)
    m.set_active(0)
    settle(qtbot, 50)
    plain = base_view.capture()
    # Shift+F: fusion on with the panel's choice: the follow-up over the baseline, Hot iron, 50 %
    qtbot.keyClick(win, Qt.Key.Key_F, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: ctl.fusion is not None, timeout=5000)
    assert feat.dock.isVisible() and panel.enabled.isChecked()
    f = ctl.fusion
    assert (f.bottom, f.top, f.mode) == (base_key, fu_key, "blend")
    assert f.colormap == "Hot iron" and f.opacity == pytest.approx(0.5)
    settle(qtbot, 100)
    fs = ctl.fused_slice(0)
    assert fs is not None and ctl.fused_slice(1) is None  # only over the baseline
    assert fs.label.GetInput() == "Fused: CT Chest CT follow-up\nHot iron 50%, rigid registration"
    # the top layer is the follow-up resampled through the registration onto the baseline's plane
    reg = m.registration(base_key, fu_key)
    resampled = reg.resample(m.series[fu_key].volume, base.volume)
    k = int(round(base.volume.lps_to_index(base.point)[2]))
    got, want = _plane_vs_grid(fs, base.volume, k, resampled)
    got = got * m.series[fu_key].volume.rescale[0] + m.series[fu_key].volume.rescale[1]  # stored -> HU
    inside = want > -1000
    assert np.median(np.abs(got[inside] - want[inside])) < 40.0
    assert _corr(got[inside], want[inside]) > 0.9
    fused = base_view.capture()
    assert _coloured(fused) - _coloured(plain) > 2000
    # at the tumour the follow-up's bright soft tissue shows hot (red > blue) over the grey baseline
    x, y = display_of(base_view, base.point)
    px = fused[fused.shape[0] - 1 - int(round(y)), int(round(x))].astype(int)
    assert px[0] - px[2] > 40, px
    # opacity 0 -> the baseline alone; 100 % -> the hot top alone (different again)
    panel.opacity.setValue(0)
    settle(qtbot, 50)
    zero = base_view.capture()
    assert _unchanged(zero, plain)
    panel.opacity.setValue(100)
    settle(qtbot, 50)
    full = base_view.capture()
    assert _coloured(full) > _coloured(fused)
    assert ctl.fusion.opacity == pytest.approx(1.0)
    # colour map Grey: no colour left
    panel.colormap.setCurrentText("Grey")
    settle(qtbot, 50)
    assert _coloured(base_view.capture()) <= _coloured(plain) + 20  # (the orientation letters are orange)
    panel.colormap.setCurrentText("Hot iron")
    panel.opacity.setValue(50)
    settle(qtbot, 50)
    wide = base_view.capture()
    # the window of the top layer: L 40 W 100 leaves fat (about -100 HU) below it, so clear
    panel.width.setValue(100.0)
    settle(qtbot, 50)
    assert ctl.fusion.window == pytest.approx((40.0, 100.0))
    narrow = base_view.capture()
    assert _coloured(narrow) < _coloured(wide) - 500
    panel.width.setValue(400.0)
    # checkerboard (a real click on its button): squares of the grey follow-up among the baseline's
    _click_radio(qtbot, panel.mode_buttons["checkerboard"])
    settle(qtbot, 100)
    assert ctl.fusion.mode == "checkerboard" and feat.actions["checkerboard"].isChecked()
    checker = base_view.capture()
    alpha = fs.rgba()[..., 3]
    assert 0.3 < (alpha == 255).mean() < 0.7 and 0.3 < (alpha == 0).mean() < 0.7
    diff = np.abs(checker.astype(int) - plain.astype(int)).max(axis=2) > 3
    diff[:LABEL_ROWS] = False  # the fusion's label
    # what changed lies in the top's squares only: sample the centres of the plane's squares
    ny, nx = alpha.shape
    geom = fs.geometry
    changed_in_top = changed_in_clear = 0
    for r in range(8):
        for c in range(8):
            y0, x0 = int((r + 0.5) * ny / 8), int((c + 0.5) * nx / 8)
            plane_xy = (geom.extent[0] + x0 * geom.spacing, geom.extent[2] + y0 * geom.spacing)
            dx, dy = base_view.view2d.to_display(*plane_xy)
            win_r, win_c = checker.shape[0] - 1 - int(round(dy)), int(round(dx))
            if not (0 <= win_r < checker.shape[0] and 0 <= win_c < checker.shape[1]):
                continue
            box = diff[max(0, win_r - 6):win_r + 7, max(0, win_c - 6):win_c + 7].mean()
            if alpha[y0, x0] == 255:
                changed_in_top += box > 0.3
            else:
                assert box < 0.05, (r, c, box)
                changed_in_clear += 1
    assert changed_in_top >= 8 and changed_in_clear >= 8
    # flicker: the top alone (opaque grey) and the bottom alone, in turn
    _click_radio(qtbot, panel.mode_buttons["flicker"])
    assert ctl.fusion.mode == "flicker" and ctl.flicker_timer.isActive()
    qtbot.waitUntil(lambda: not ctl.shown, timeout=5000)
    off = base_view.capture()
    assert _unchanged(off, plain)  # the baseline alone
    qtbot.waitUntil(lambda: ctl.shown, timeout=5000)
    on = base_view.capture()
    assert (np.abs(on.astype(int) - plain.astype(int)).max(axis=2) > 3).mean() > 0.05
    assert _coloured(on) <= _coloured(plain) + 20  # judged in grey
    po = _patch(on, base_view, base.point)
    pf = _patch(win.grid.views[1].capture(), win.grid.views[1], m.series[fu_key].point)
    assert _corr(po, pf) > 0.5  # the follow-up's tumour, where the baseline's lies
    # back to blend; Shift+F: off, the view is the baseline's again
    _click_radio(qtbot, panel.mode_buttons["blend"])
    assert not ctl.flicker_timer.isActive()
    qtbot.keyClick(win, Qt.Key.Key_F, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: ctl.fusion is None, timeout=5000)
    settle(qtbot, 50)
    assert ctl.fused_slice(0) is None
    assert np.abs(base_view.capture().astype(int) - plain.astype(int)).max() <= 2  # the label gone too
    m.set_crosshair_visible(True)


def test_fusion_through_a_deformable_registration_is_resampled_off_the_ui_thread(win, pair, qtbot, registered):
    """A deformable registration has no matrix: the top is resampled onto the bottom grid on a worker
    thread, then drawn.  (Running a deformable registration takes a minute here: the transform is the
    rigid one found above composed with a known B-spline bump, built directly.)"""
    import SimpleITK as sitk

    from viewer.core.registration import Registration, to_sitk

    if "reg" not in registered:
        pytest.skip("needs the registration made by the first test")
    m, ws, ctl = win.model, win.workspace, win.features.compare.controller
    base_key, fu_key = _keys(pair)
    base, fu = m.series[base_key], m.series[fu_key]
    rigid = m.registration(fu_key, base_key)  # fixed follow-up -> moving baseline
    bspline = sitk.BSplineTransformInitializer(to_sitk(fu.volume), [2, 2, 2], order=3)
    params = np.zeros(bspline.GetNumberOfParameters())
    params[: len(params) // 3] = 3.0  # 3 mm along x at the control points (smooth)
    bspline.SetParameters(params.tolist())
    deformable = Registration(fu.open_series.uid, base.open_series.uid, "deformable",
                              sitk.CompositeTransform([sitk.Euler3DTransform(rigid.transform), bspline]))
    ws.add_registration(deformable)
    try:
        assert m.registration(fu_key, base_key).kind == "deformable"
        m.set_point(fu_key, pair.tumour_centre_followup)
        ctl.set_fusion(ctl.defaults(fu_key, base_key))  # the baseline over the follow-up
        assert ctl.fusion is not None
        qtbot.waitUntil(lambda: ctl.fused_slice(1) is not None, timeout=60000)
        fs = ctl.fused_slice(1)
        assert fs.vtk_volume.volume.shape == fu.volume.shape  # on the follow-up's grid
        np.testing.assert_allclose(fs.to_top, np.eye(4))
        want = deformable.resample(base.volume, fu.volume)
        np.testing.assert_allclose(fs.vtk_volume.volume.array, want, atol=1e-3)
        k = int(round(fu.volume.lps_to_index(fu.point)[2]))
        got, expect = _plane_vs_grid(fs, fu.volume, k, want)
        inside = expect > -1000
        assert np.median(np.abs(got[inside] - expect[inside])) < 40.0
        assert _corr(got[inside], expect[inside]) > 0.9
    finally:
        ctl.set_fusion(None)
        ws.add_registration(registered["reg"], save=False)  # the rigid one again (one per pair is kept)
    assert m.registration(base_key, fu_key) is registered["reg"]


def test_a_heatmap_of_the_follow_up_fused_over_the_baseline(win, pair, qtbot, registered):
    """Any layer can go on top: an AI heatmap on the follow-up's grid (here the follow-up's true tumour
    mask as a map), drawn over the baseline through the registration, lands on the baseline's tumour."""
    from viewer.core.layers import HeatmapLayer
    from viewer.core.volume import Volume

    if "reg" not in registered:
        pytest.skip("needs the registration made by the first test")
    m, ctl = win.model, win.features.compare.controller
    base_key, fu_key = _keys(pair)
    base, fu = m.series[base_key], m.series[fu_key]
    _mask_b, mask_f = pair.masks()
    layer = HeatmapLayer("Tumour map", Volume(mask_f.astype(np.float32), fu.volume.affine.copy()), unit="probability")
    fu.open_series.add_overlay(layer)
    try:
        ident = next(i for i, label in ctl.top_choices(base_key) if label == "Heatmap: Tumour map")
        f = ctl.defaults(base_key, ident)
        assert f.window == pytest.approx((0.55, 0.9)) and f.colormap == "Hot"  # from the layer's threshold 0.1
        m.set_point(base_key, pair.tumour_centre_baseline)
        ctl.set_fusion(f)
        settle(qtbot, 100)
        fs = ctl.fused_slice(0)
        assert fs is not None and fs.vtk_volume.volume is layer.volume
        # the map is 1 at the baseline's tumour centre (in the plane), 0 far from it
        geom, shown = fs.geometry, fs.output_array()
        x, y = geom.from_lps(base.point)
        row, col = int(round((y - geom.extent[2]) / geom.spacing)), int(round((x - geom.extent[0]) / geom.spacing))
        assert shown[row, col] > 0.5
        assert (shown > 0.5).mean() < 0.05
        view = win.grid.views[0]
        img = view.capture()
        ctl.set_fusion(None)
        settle(qtbot, 50)
        plain = view.capture()
        rgb, ref = img.astype(int), plain.astype(int)
        hot = ((rgb[..., 0] - rgb[..., 2]) > 40) & ((ref[..., 0] - ref[..., 2]) <= 40)  # new colour (edges: red)
        hot[:LABEL_ROWS] = False
        rows, cols = np.nonzero(hot)
        assert len(rows) > 30
        x, y = display_of(view, base.point)
        dist_mm = np.hypot(cols - x, (img.shape[0] - 1 - rows) - y) * view.view2d.mm_per_pixel
        assert np.median(dist_mm) < 20.0  # around the baseline's tumour (about 25 mm across)
    finally:
        ctl.set_fusion(None)
        fu.open_series.remove_overlay(layer)


def test_fusion_in_3d(win, pair, qtbot, registered):
    if "reg" not in registered:
        pytest.skip("needs the registration made by the previous test")
    m, ctl = win.model, win.features.compare.controller
    base_key, fu_key = _keys(pair)
    m.set_layout("2x2")
    m.show_series(3, base_key)
    view3d = win.grid.views[3]
    settle(qtbot, 100)
    before = view3d.capture_still("interactive")
    ctl.set_fusion(ctl.defaults(base_key, fu_key))
    settle(qtbot, 50)
    assert ctl._volume3d is not None and view3d.renderer.HasViewProp(ctl._volume3d.actor)
    after = view3d.capture_still("interactive")
    assert _coloured(after) > _coloured(before) + 200
    ctl.set_fusion(None)
    assert not view3d.renderer.HasViewProp(ctl._volume3d.actor) if ctl._volume3d else True
    m.compare(base_key, fu_key)


def test_screenshot_of_the_comparison_with_fusion(win, pair, qtbot, registered, tmp_path):
    """docs/screenshot-compare-fusion.png (with HOUNSFIELD_SCREENSHOT=1, or HOUNSFIELD_SCREENSHOTS=1;
    else a temporary file): baseline with the follow-up fused over it in Hot iron, the follow-up beside
    it, the Fusion panel at the right."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDockWidget

    if "reg" not in registered:
        pytest.skip("needs the registration made by the first test")
    m, feat = win.model, win.features.compare
    base_key, fu_key = _keys(pair)
    hidden = [d for d in win.findChildren(QDockWidget) if d.isVisible() and d is not feat.dock]
    for d in hidden:
        d.hide()
    m.compare(base_key, fu_key)
    m.set_point(base_key, pair.tumour_centre_baseline)
    for key in (base_key, fu_key):
        m.series[key].set_window(-500, 1500)
    f = feat.controller.defaults(base_key, fu_key)
    feat.controller.set_fusion(type(f)(base_key, fu_key, "Hot iron", 0.45, (40.0, 400.0), "blend"))
    feat.dock.show()
    win.resizeDocks([feat.dock], [340], Qt.Orientation.Horizontal)
    m.set_active(0)
    settle(qtbot, 200)
    for v in win.grid.visible_views():
        v.render_now()
    qtbot.wait(200)
    out = (REPO / "docs" if _docs() else tmp_path) / "screenshot-compare-fusion.png"
    assert win.screen().grabWindow(win.winId()).save(str(out))
    feat.controller.set_fusion(None)
    for d in hidden:
        d.show()


def test_the_model_links_series_through_a_registration_both_ways_without_a_display():
    """ViewerModel (no Qt): a registration joins two frames of reference, either way round (the reverse
    through ``to_fixed``, no inverse computed), and the same-frame link stays as it was."""
    import SimpleITK as sitk

    from viewer.core.registration import Registration
    from viewer.core.viewstate import SeriesState, ViewerModel
    from viewer.core.volume import SourceInfo, Volume, affine_from
    from viewer.core.workspace import Workspace

    ws = Workspace()
    model = ViewerModel()

    def add(key, frame, series_uid):
        vol = Volume(np.zeros((30, 40, 40), np.int16), affine_from((2.0, 2.0, 3.0), (-40, -40, -45), np.eye(3)),
                     modality="CT", units="HU",
                     source=SourceInfo(frame_of_reference_uid=frame, series_instance_uid=series_uid))
        model.add_series(SeriesState(key, vol, open_series=ws.add(vol, key)), slots=[])
        return model.series[key]

    a, b, c = add("a", "1.2.1", "1.9.1"), add("b", "1.2.2", "1.9.2"), add("c", "1.2.1", "1.9.3")
    assert [s.key for s in model.linked("a")] == ["c"]  # same frame only
    assert model.map_point("a", "b", a.point) is None
    t = sitk.Euler3DTransform()
    t.SetTranslation((6.0, -4.0, 9.0))  # fixed b -> moving a
    ws.add_registration(Registration("1.9.2", "1.9.1", "rigid", t), save=False)
    assert {s.key for s in model.linked("a")} == {"b", "c"}
    assert model.joined("a", "b")[1] is False and model.joined("b", "a")[1] is True
    p = np.array([2.0, 4.0, -6.0])
    np.testing.assert_allclose(model.map_point("b", "a", p), p + [6.0, -4.0, 9.0])
    np.testing.assert_allclose(model.map_point("a", "b", p), p - [6.0, -4.0, 9.0])
    model.set_point("a", p)  # b follows through the transform, c to the same point
    np.testing.assert_allclose(b.point, p - [6.0, -4.0, 9.0])
    np.testing.assert_allclose(c.point, a.point)
    model.set_link_series(False)
    assert model.linked("a") == []
