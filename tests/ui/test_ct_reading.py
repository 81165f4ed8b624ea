"""Reading the real chest CT in the real window: scrolling, window/level by drag and preset,
crosshair clicks that move the other views, zoom, pan, layouts, read-out, oblique axes.

One window is shared by the module (loading the CT once); each test starts from Home.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from tests.render.test_slice import trilinear
from tests.ui.helpers import display_of, pixels_at, qt_pos, ready_window, settle

pytestmark = pytest.mark.gui


@pytest.fixture
def win(ct_window, qtbot):
    m = ct_window.model
    ready_window(ct_window, qtbot, "2x2")
    m.set_tool("wl")
    m.set_crosshair_visible(True)
    state = m.active_state
    nk, nj, ni = state.volume.shape
    m.set_point(state.key, state.volume.index_to_lps([ni // 2, nj // 2, nk // 2]))
    settle(qtbot, 50)
    return ct_window


def index_of(state) -> np.ndarray:
    return np.round(state.volume.lps_to_index(state.point)).astype(int)


def wheel(view, steps: int) -> None:
    pos = QPointF(view.width() / 2, view.height() / 2)
    ev = QWheelEvent(pos, view.mapToGlobal(pos), QPoint(0, 0), QPoint(0, -120 * steps),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                     Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view, ev)


def test_the_ct_is_shown_in_three_planes_with_radiological_orientation(win):
    axial, coronal, sagittal = win.grid.slice_views
    assert [axial.labels.text(e) for e in ("left", "right", "top", "bottom")] == ["R", "L", "A", "P"]
    assert [coronal.labels.text(e) for e in ("left", "right", "top", "bottom")] == ["R", "L", "S", "I"]
    assert [sagittal.labels.text(e) for e in ("left", "right", "top", "bottom")] == ["A", "P", "S", "I"]
    state = win.model.active_state
    k = index_of(state)[2]
    # the axial view shows the stored slice as acquired, anterior up, without flipping the array
    assert np.array_equal(axial.pipeline.output_array(), state.volume.array[k, ::-1, :])
    assert "2007-02-08" in axial.corners.text("top_left")
    assert f"Im: {141 - k} / 141" in axial.corners.text("bottom_left")  # InstanceNumber: 1 at the head
    assert "W: 400  L: 0" in axial.corners.text("bottom_right")
    assert axial.scalebar.length_mm in (20, 50, 100)


def test_wheel_and_keys_scroll_slices_and_change_pixels(win, qtbot):
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    k0 = index_of(state)[2]
    before = axial.capture()
    frames = axial.frames
    wheel(axial, 1)  # towards the user: next image, to the feet (k decreases in this LPS stack)
    settle(qtbot)
    assert index_of(state)[2] == k0 - 1
    assert axial.frames > frames  # it re-rendered by itself
    after = axial.capture()
    assert np.abs(after.astype(int) - before).mean() > 0.5
    axial.setFocus()
    qtbot.keyClick(axial, Qt.Key.Key_PageDown)
    assert index_of(state)[2] == k0 - 11
    qtbot.keyClick(axial, Qt.Key.Key_Up)
    assert index_of(state)[2] == k0 - 10
    for _ in range(30):
        wheel(axial, -5)  # far past the top: clamped at the last slice
    assert index_of(state)[2] == 140
    settle(qtbot)
    assert "Im: 1 / 141" in axial.corners.text("bottom_left")  # the top slice is image 1 (InstanceNumber)


def test_left_drag_changes_window_level(win, qtbot):
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    before = axial.capture()
    start = QPoint(axial.width() // 2 + 40, axial.height() // 2 + 40)
    qtbot.mousePress(axial, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(axial, start + QPoint(150, 60))
    qtbot.mouseRelease(axial, Qt.MouseButton.LeftButton, pos=start + QPoint(150, 60))
    center, width = state.window
    assert width == pytest.approx(400 + 150 * 400 / 300)
    assert center == pytest.approx(0 + 60 * 400 / 300)
    settle(qtbot)
    assert f"W: {width:.0f}" in axial.corners.text("bottom_right")
    after = axial.capture()
    assert np.abs(after.astype(int) - before).mean() > 1.0


def lung_points(state, k: int, n: int = 60) -> list[np.ndarray]:
    """LPS points of lung parenchyma (-950..-700 HU, away from edges) in axial slice k."""
    sl = state.volume.array[k]
    mask = (sl > -950) & (sl < -700)
    core = mask.copy()
    for shift in (-3, 3):  # keep pixels whose neighbours are lung too
        core &= np.roll(mask, shift, 0) & np.roll(mask, shift, 1)
    js, is_ = np.nonzero(core)
    assert js.size > 1000, "expected lung parenchyma in this slice"
    pick = np.linspace(0, js.size - 1, n).astype(int)
    return [state.volume.index_to_lps([is_[p], js[p], k]) for p in pick]


def test_lung_preset_makes_lung_parenchyma_mid_grey(win, qtbot):
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    k = index_of(state)[2]
    points = lung_points(state, k)
    axial.setFocus()
    qtbot.keyClick(axial, Qt.Key.Key_1)
    assert state.window == (40.0, 400.0) and state.preset == "Soft tissue"
    soft = pixels_at(axial.capture(), axial, points).mean(axis=1)
    qtbot.keyClick(axial, Qt.Key.Key_2)
    assert state.window == (-600.0, 1500.0) and state.preset == "Lung"
    settle(qtbot)
    lung = pixels_at(axial.capture(), axial, points).mean(axis=1)
    assert np.median(soft) < 10  # soft-tissue window: lung is black
    assert 50 < np.median(lung) < 170  # lung window: parenchyma is mid-grey
    assert "Lung" in axial.corners.text("bottom_right")
    qtbot.keyClick(axial, Qt.Key.Key_3)
    assert state.preset == "Bone" and state.window == (400.0, 1800.0)
    qtbot.keyClick(axial, Qt.Key.Key_0)
    assert state.window == (0.0, 400.0)


def test_click_moves_the_crosshair_and_the_other_views_to_that_slice(win, qtbot):
    axial, coronal, sagittal = win.grid.slice_views
    state = win.model.active_state
    vol = state.volume
    k = index_of(state)[2]
    target = (300, 200, k)
    qtbot.mouseClick(axial, Qt.MouseButton.LeftButton, pos=qt_pos(axial, vol.index_to_lps(target)).toPoint())
    settle(qtbot)
    i, j, kk = index_of(state)
    assert abs(i - 300) <= 1 and abs(j - 200) <= 1 and kk == k  # a click stays on the axial slice
    cor = coronal.pipeline.output_array()
    sag = sagittal.pipeline.output_array()
    # the coronal view now shows row j of every slice, the sagittal view column i
    views = ((cor, coronal.pipeline.geometry, ("j", j)), (sag, sagittal.pipeline.geometry, ("i", i)))
    for out, geom, fixed in views:
        x0, _, y0, _ = geom.extent
        ny, nx = out.shape
        rows = np.linspace(0, ny - 1, 15).astype(int)
        cols = np.linspace(0, nx - 1, 15).astype(int)
        s = geom.spacing
        pts = np.array([geom.to_lps(x0 + c * s, y0 + r * s) for r in rows for c in cols])
        idx = vol.lps_to_index(pts)
        axis = 1 if fixed[0] == "j" else 0
        assert np.allclose(idx[:, axis], fixed[1])
        assert np.allclose(out[np.repeat(rows, 15), np.tile(cols, 15)], trilinear(vol.array, idx), atol=1.0)
    # and the crosshair of the coronal view passes through the clicked point
    cx, cy = display_of(coronal, state.point)
    (lx, ly), _d, _c = coronal.crosshair.lines[0]
    assert (lx, ly) == pytest.approx((cx, cy))


def test_crosshair_tool_drags_and_crosshair_can_be_hidden(win, qtbot):
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    vol = state.volume
    k = index_of(state)[2]
    win.model.set_tool("crosshair")
    a = qt_pos(axial, vol.index_to_lps([200, 250, k])).toPoint()
    b = qt_pos(axial, vol.index_to_lps([320, 300, k])).toPoint()
    qtbot.mousePress(axial, Qt.MouseButton.LeftButton, pos=a)
    assert abs(index_of(state)[0] - 200) <= 1
    qtbot.mouseMove(axial, b)
    qtbot.mouseRelease(axial, Qt.MouseButton.LeftButton, pos=b)
    assert abs(index_of(state)[0] - 320) <= 1 and abs(index_of(state)[1] - 300) <= 1

    def coloured(img):  # pixels of the coronal plane's green line; the image is grey, the letters orange
        r, g, b = (img[..., c].astype(int) for c in range(3))
        return int(((g - r > 60) & (g - b > 60)).sum())

    assert coloured(axial.capture()) > 200
    qtbot.keyClick(axial, Qt.Key.Key_X)
    assert not win.model.crosshair_visible
    assert coloured(axial.capture()) == 0
    qtbot.keyClick(axial, Qt.Key.Key_X)
    assert win.model.crosshair_visible


def test_right_drag_zooms_middle_drag_pans_home_resets(win, qtbot):
    axial = win.grid.slice_views[0]
    vp = win.model.viewports[0]
    c = QPoint(axial.width() // 2, axial.height() // 2)
    qtbot.mousePress(axial, Qt.MouseButton.RightButton, pos=c)
    qtbot.mouseMove(axial, c - QPoint(0, 70))
    qtbot.mouseRelease(axial, Qt.MouseButton.RightButton, pos=c - QPoint(0, 70))
    assert vp.zoom == pytest.approx(np.exp(0.7))
    qtbot.mousePress(axial, Qt.MouseButton.MiddleButton, pos=c)
    qtbot.mouseMove(axial, c + QPoint(50, 0))
    qtbot.mouseRelease(axial, Qt.MouseButton.MiddleButton, pos=c + QPoint(50, 0))
    assert vp.pan[0] < 0 and vp.pan[1] == pytest.approx(0)  # the image follows the mouse
    settle(qtbot)
    assert "Zoom: " in axial.corners.text("bottom_right")
    qtbot.keyClick(axial, Qt.Key.Key_Home)
    assert vp.zoom == 1.0 and vp.pan == (0.0, 0.0)


def test_double_click_maximises_and_layouts_switch(win, qtbot):
    coronal = win.grid.slice_views[1]
    qtbot.mouseDClick(coronal, Qt.MouseButton.LeftButton, pos=QPoint(30, 30))
    settle(qtbot)
    assert win.model.visible_slots() == [1]
    assert coronal.isVisible() and not win.grid.slice_views[0].isVisible()
    qtbot.mouseDClick(coronal, Qt.MouseButton.LeftButton, pos=QPoint(30, 30))
    settle(qtbot)
    assert win.model.visible_slots() == [0, 1, 2, 3]
    for key, visible in ((Qt.Key.Key_2, 3), (Qt.Key.Key_1, 1), (Qt.Key.Key_3, 4)):
        qtbot.keyClick(win, key, Qt.KeyboardModifier.ControlModifier)
        settle(qtbot)
        assert sum(f.isVisible() for f in win.grid.frames) == visible


def test_status_bar_reads_out_hu_lps_and_voxel(win, qtbot):
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    k = index_of(state)[2]
    ijk = (260, 300, k)
    qtbot.mouseMove(axial, qt_pos(axial, state.volume.index_to_lps(ijk)).toPoint())
    text = win.readout.text()
    hu = int(state.volume.array[k, 300, 260])
    assert text.startswith("HU: ")
    got = [int(x) for x in text.split("voxel (")[1].rstrip(")").split(",")]
    assert abs(got[0] - 260) <= 1 and abs(got[1] - 300) <= 1 and got[2] == k
    assert int(text.split()[1]) == int(state.volume.array[k, got[1], got[0]])
    assert "LPS (" in text and hu is not None


def test_invert_flips_the_grey_levels(win, qtbot):
    axial = win.grid.slice_views[0]
    state = win.model.active_state
    h, w = axial.size_px()[1], axial.size_px()[0]
    inner = np.s_[h // 2 - 80:h // 2 + 80, w // 2 - 100:w // 2 + 100]  # within the image, not its margins
    before = axial.capture()[inner].astype(int)
    axial.setFocus()
    qtbot.keyClick(axial, Qt.Key.Key_I)
    assert state.invert
    after = axial.capture()[inner].astype(int)
    grey = (before.max(axis=2) - before.min(axis=2)) < 8  # leave the coloured crosshair out
    assert np.abs((255 - before[grey]) - after[grey]).mean() < 3


def test_ctrl_drag_rotates_the_axes_for_oblique_reformatting(win, qtbot):
    axial, coronal, _s = win.grid.slice_views
    state = win.model.active_state
    axes_before = [a.copy() for a in state.axes("axial")]
    cx, cy = axial.crosshair_centre_logical()
    start = QPoint(int(cx + 120), int(cy))
    end = QPoint(int(cx + 104), int(cy - 60))  # 30 degrees counter-clockwise on screen
    qtbot.mousePress(axial, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, start)
    qtbot.mouseMove(axial, QPoint(int(cx + 118), int(cy - 20)))
    qtbot.mouseMove(axial, end)
    qtbot.mouseRelease(axial, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, end)
    assert state.oblique
    for a, b in zip(axes_before, state.axes("axial")):
        assert np.allclose(a, b)  # the view one rotates in stays still
    n = state.axes("coronal")[2]
    angle = np.degrees(np.arctan2(n[0], -n[1]))
    assert abs(angle) == pytest.approx(30, abs=2)
    settle(qtbot)
    assert "(oblique)" in coronal.corners.text("bottom_left")
    assert coronal.labels.text("right") != "L"  # an oblique edge: two letters
    qtbot.keyClick(axial, Qt.Key.Key_Home)
    assert not state.oblique


def test_words_on_narrow_views_do_not_overlap(win, qtbot):
    """In the 1x3 layout of a small window the corner blocks and the orientation letters would run
    into each other: the right blocks move under / over the left ones and the letters step aside."""
    from viewer.render.overlays import boxes_overlap, text_box

    win.model.set_layout("1x3")
    settle(qtbot, 100)
    checked = 0
    for view in win.grid.visible_views():
        view.update_scene()
        actors = [a for a in (*view.corners.actors.values(), *view.labels.actors.values()) if a.GetInput()]
        boxes = [text_box(a, view.renderer) for a in actors]
        w, _h = view.size_px()
        assert w < 520  # narrow enough that, unmoved, "Se: ... 512 x 512 x 141" meets the patient name
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert not boxes_overlap(boxes[i], boxes[j]), (actors[i].GetInput(), actors[j].GetInput())
        checked += 1
    assert checked == 3


def test_the_corner_text_stays_legible_over_a_light_image(win, qtbot):
    """Inverted (or over bone, or fat on MR) the image under the corner text is light, and the light
    words with their 1-pixel shadow all but vanished: the words now sit on a half-dark box."""
    from viewer.render.overlays import text_box

    axial = win.grid.slice_views[0]
    state = win.model.active_state
    state.set_window(-600, 1500)
    state.set_invert(True)
    try:
        settle(qtbot, 50)
        axial.update_scene()
        img = axial.capture().astype(float).mean(axis=2)
        h = img.shape[0]
        x0, x1, y0, y1 = (int(round(v)) for v in text_box(axial.corners.actors["bottom_left"], axial.renderer))
        under = img[h - y1:h - y0, x0:x1]
        beside = img[h - y1:h - y0, x1 + 4:x1 + 40]  # the image next to the block
        light = np.median(beside, axis=1) > 150  # rows over the inverted air (below the scan: black)
        assert light.sum() >= 5  # (9-20 rows, with the view as earlier tests of the module leave it)
        assert np.median(under[light]) < np.median(beside[light]) - 50  # the box darkens what lies under the words
        assert under[light].max() > 220  # and the words themselves are still light on it
    finally:
        state.set_invert(False)
        state.set_window(*state.home_window)
