"""The 3D view in the real window on the real chest CT: every preset and mode rendered and checked
by its pixels, clipping, standard views, level of detail, picking to the 2D crosshair, segment
surfaces from a thresholded label map, detection markers, and thick-slab MIP/MinIP in 2D.

One window is shared by the module (loading the CT once).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.conftest import data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import settle

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def ct_window(qapp, tmp_path_factory):
    needs_display()
    path = data_path("chest-ct")
    from PySide6.QtCore import QSettings

    from viewer.ui.mainwindow import MainWindow

    settings = QSettings(str(tmp_path_factory.mktemp("ct3d") / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings)
    win.resize(1200, 1000)
    win.model.set_layout("2x2")
    win.show()
    win.open_path(str(path))
    end = time.monotonic() + 60
    while (not win.model.series or win.session.jobs) and time.monotonic() < end:
        qapp.processEvents()
        time.sleep(0.01)
    assert win.model.series and not win.session.jobs, "the chest CT did not load"
    yield win
    win.close()


@pytest.fixture
def view(ct_window, qtbot):
    v = ct_window.grid.views[3]
    ct_window.model.set_layout("2x2")
    settle(qtbot, 50)
    v.reset_3d()
    v.clear_segments()
    v.clear_detections()
    return v


def body(img: np.ndarray) -> np.ndarray:
    """Pixels that are not the background gradient (the volume, surfaces, markers)."""
    return img.max(axis=2) > 45


def test_the_3d_slot_is_a_volume_rendering_sharing_the_volume(view, ct_window):
    from vtkmodules.vtkRenderingVolume import vtkGPUVolumeRayCastMapper

    assert isinstance(view.volume.mapper, vtkGPUVolumeRayCastMapper)
    state = ct_window.model.state(3)
    vv = ct_window.session.vtk_volume(state.key)
    assert view.volume.mapper.GetInput() is vv.patient_image and vv.shares_memory()
    assert view.preset_names()[:5] == ["CT bone", "CT soft tissue", "CT lung", "CT vessels (CTA)", "CT skin"]
    # the volume sits where the 2D planes say it is (LPS)
    b = np.array(view.volume.bounds()).reshape(3, 2)
    corners = state.volume.index_to_lps([[0, 0, 0], [511, 511, 140]])
    assert np.allclose(b[:, 0], corners.min(axis=0), atol=1.0) and np.allclose(b[:, 1], corners.max(axis=0), atol=1.0)


def test_every_preset_renders_something_different(view):
    images = {}
    for name in view.preset_names():
        view.set_preset(name)
        images[name] = view.capture_still("interactive").astype(np.int16)
        assert body(images[name]).mean() > 0.03, name
    names = list(images)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(images[a] - images[b]).mean() > 2.0, (a, b)


def test_bone_preset_shows_bright_bone_and_lung_preset_differs(view):
    view.set_preset("CT bone")
    bone = view.capture_still("refined")
    view.set_preset("CT lung")
    lung = view.capture_still("refined")
    warm = (bone[..., 0] > 150) & (bone[..., 0] >= bone[..., 2])  # ivory bone
    assert warm.mean() > 0.03
    blue = (lung[..., 2] > lung[..., 0] + 20) & (lung[..., 2] > 90)  # lungs are tinted blue
    warm_lung = (lung[..., 0] > 150) & (lung[..., 0] >= lung[..., 2])
    blue_bone = (bone[..., 2] > bone[..., 0] + 20) & (bone[..., 2] > 90)
    assert blue.mean() > 0.05 and blue_bone.mean() < 0.01 and warm_lung.mean() < warm.mean() / 2


def test_mip_shows_bright_bones_minip_in_a_clipped_slab_shows_dark_airways(view, ct_window):
    state = ct_window.model.state(3)
    state.set_window(300, 1500)
    view.set_mode("mip")
    mip = view.capture_still("refined")
    assert (mip.min(axis=2) > 220).mean() > 0.01  # near-white bone
    view.set_preset("CT bone")
    view.set_mode("composite")
    comp = view.capture_still("refined")
    assert np.abs(mip.astype(int) - comp).mean() > 5
    # MinIP of a slab through the mediastinum: the trachea is darker than the lungs beside it
    state.set_window(-600, 1500)
    view.set_mode("minip")
    b = np.array(view.volume.bounds()).reshape(3, 2)
    vol = state.volume
    trachea = vol.index_to_lps([256, 0, 0])[0]
    view.set_clip_box((b[0, 0], b[0, 1], -40, 40, b[2, 0], b[2, 1]))
    minip = view.capture_still("refined")
    grey = minip.mean(axis=2)
    h, w = grey.shape
    x = view.renderer  # the anterior view: patient x maps to screen columns; find the trachea's column
    x.SetWorldPoint(trachea, 0.0, b[2, 1] - 30, 1.0)
    x.WorldToDisplay()
    col, row = (int(round(c)) for c in x.GetDisplayPoint()[:2])
    centre = grey[h - row - 10:h - row + 10, col - 4:col + 5].mean()
    lung = grey[h // 2 - 20:h // 2 + 20, :].max()
    assert centre < lung - 20, (centre, lung)
    state.set_window(*state.home_window)


def test_clipping_box_changes_the_image_and_off_restores_it(view):
    view.set_preset("CT bone")
    full = view.capture_still("interactive")
    b = np.array(view.volume.bounds()).reshape(3, 2)
    mid_y = b[1].mean()
    view.set_clip_box((b[0, 0], b[0, 1], mid_y, b[1, 1], b[2, 0], b[2, 1]))  # keep the posterior half
    assert view.clipbox.enabled and view.toolbar.clip.isChecked()
    clipped = view.capture_still("interactive")
    assert np.abs(full.astype(int) - clipped).mean() > 3
    view.set_clipping(False)
    again = view.capture_still("interactive")
    assert np.abs(full.astype(int) - again).mean() < 1.0


def test_standard_views_and_orientation(view):
    view.set_preset("CT bone")
    cam = view.renderer.GetActiveCamera()
    view.standard_view("anterior")
    assert np.allclose(cam.GetDirectionOfProjection(), (0, 1, 0), atol=1e-6)  # looking posteriorly
    assert np.allclose(cam.GetViewUp(), (0, 0, 1), atol=1e-6)  # head up
    anterior = view.capture_still("interactive")
    view.standard_view("left")
    assert np.allclose(cam.GetDirectionOfProjection(), (-1, 0, 0), atol=1e-6)
    lateral = view.capture_still("interactive")
    view.standard_view("superior")
    assert np.allclose(cam.GetDirectionOfProjection(), (0, 0, -1), atol=1e-6)
    superior = view.capture_still("interactive")
    assert np.abs(anterior.astype(int) - lateral).mean() > 3
    assert np.abs(anterior.astype(int) - superior).mean() > 3
    assert view._marker is not None and view._marker.GetEnabled()


def test_camera_motion_renders_at_interactive_quality_then_refines(view, qtbot):
    view.set_preset("CT bone")
    view.capture_still("refined")
    view._on_interaction(event="StartInteractionEvent")
    assert view.volume.quality == "interactive"
    view._on_interaction(event="EndInteractionEvent")
    qtbot.waitUntil(lambda: view.volume.quality == "refined", timeout=3000)
    assert view.volume.mapper.GetImageSampleDistance() < 2.0


def test_click_in_3d_moves_the_2d_crosshair(view, ct_window, qtbot):
    view.set_preset("CT bone")
    view.standard_view("anterior")
    img = view.capture_still("interactive")
    state = ct_window.model.state(3)
    before = state.point.copy()
    # a bone pixel near the image centre: the sternum
    mask = body(img)
    rows, cols = np.nonzero(mask)
    h = img.shape[0]
    k = np.argmin((rows - h / 2) ** 2 + (cols - img.shape[1] / 2) ** 2)
    x, y = float(cols[k]), float(h - 1 - rows[k])
    assert view.pick_to_crosshair(x, y)
    p = state.point
    assert not np.allclose(p, before)
    value, _ = state.value_at(p)
    assert p[1] < state.volume.index_to_lps([256, 256, 70])[1]  # picked on the front of the chest
    assert value > -400  # on tissue, not in the air in front of it
    # MIP picks the brightest voxel along the ray
    view.set_mode("mip")
    assert view.pick_to_crosshair(x, y)
    value_mip, _ = state.value_at(state.point)
    assert value_mip > 150


def test_segment_surfaces_from_a_thresholded_label_map_and_markers(view, ct_window):
    from viewer.core.volume import Volume

    state = ct_window.model.state(3)
    vol = state.volume
    labels = np.zeros(vol.shape, np.uint8)
    labels[vol.array > 250] = 1  # bone
    box = np.zeros(vol.shape, bool)
    box[20:130, 150:400, 100:412] = True
    labels[box & (vol.array < -600) & (vol.array > -1000)] = 2  # air inside the chest: lungs, airways
    labelmap = Volume(labels, vol.affine, modality="SEG")
    view.set_mode("composite")
    view.set_preset("CT skin")
    view.volume.actor.SetVisibility(False)
    try:
        shown = view.set_segments(labelmap, {1: (1.0, 1.0, 0.0), 2: (0.0, 0.4, 1.0)}, iterations=10)
        assert shown == [1, 2]
        bone_bounds = np.array(view.extras.segments[1].GetBounds()).reshape(3, 2)
        nz = np.argwhere(labels == 1)[:, ::-1]  # (i, j, k) of the bone voxels
        lps = vol.index_to_lps(np.array([nz.min(axis=0), nz.max(axis=0)]))
        assert np.allclose(bone_bounds[:, 0], lps.min(axis=0), atol=3) and np.allclose(
            bone_bounds[:, 1], lps.max(axis=0), atol=3)
        img = view.capture_still("interactive").astype(int)
        yellow = (img[..., 0] > 120) & (img[..., 1] > 120) & (img[..., 2] < 80)
        blue = (img[..., 2] > 120) & (img[..., 0] < 80)
        assert yellow.mean() > 0.02 and blue.mean() > 0.02
        view.set_segment_visible(2, False)
        img2 = view.capture_still("interactive").astype(int)
        blue2 = (img2[..., 2] > 120) & (img2[..., 0] < 80)
        assert blue2.mean() < blue.mean() / 3
        view.clear_segments()
        # detections: spheres at centre/size in LPS mm
        centre = vol.index_to_lps([256, 256, 70])
        view.set_detections([{"centre": centre, "size": 100.0}], colour=(1.0, 0.0, 1.0))  # docks may shrink the view
        img3 = view.capture_still("interactive").astype(int)
        magenta = (img3[..., 0] > 100) & (img3[..., 2] > 100) & (img3[..., 1] < 60)
        assert magenta.mean() > 0.005
        view.clear_detections()
        img4 = view.capture_still("interactive").astype(int)
        magenta4 = (img4[..., 0] > 100) & (img4[..., 2] > 100) & (img4[..., 1] < 60)
        assert magenta4.mean() < magenta.mean() / 5
    finally:
        view.volume.actor.SetVisibility(True)
        view.clear_segments()
        view.clear_detections()


def test_the_series_segments_and_detections_follow_the_model_in_3d(view, ct_window, qtbot):
    """A segmentation edited in the window shows in 3D as a surface in its segment's colour, follows
    edits, recolouring and hiding; detections under review show as spheres until rejected."""
    from viewer.core.layers import Marker, MarkerSet

    win = ct_window
    state = win.model.state(3)
    vol = state.volume
    win.model.set_active(0)
    view.set_mode("composite")
    view.volume.actor.SetVisibility(False)
    seg = win.features.segments.controller.segmentation(create=True, state=state)
    ed = win.features.segments.controller.editor(seg)
    tumour = ed.add_segment("Tumour")
    seg.update_segment(tumour, color=(255, 0, 255))
    markers = None
    try:
        ed.brush(tumour, vol.index_to_lps([256, 256, 70]), radius_mm=30.0)  # a sphere
        view.layers.flush()  # (edits are re-meshed once they pause)
        actor = view.layers.surfaces[(seg.uid, tumour.number)]
        bounds = np.array(actor.GetBounds()).reshape(3, 2)
        painted = vol.index_to_lps(np.argwhere(seg.mask(tumour))[:, ::-1])
        assert np.allclose(bounds[:, 0], painted.min(axis=0), atol=vol.spacing.max() + 0.5)
        assert np.allclose(bounds[:, 1], painted.max(axis=0), atol=vol.spacing.max() + 0.5)

        def magenta():
            img = view.capture_still("interactive").astype(int)
            return ((img[..., 0] > 100) & (img[..., 2] > 100) & (img[..., 1] < 70)).mean()

        shown = magenta()
        assert shown > 0.002  # a 6 cm ball in a chest-sized view (docks leave the view small)
        ed.brush(tumour, vol.index_to_lps([256, 256, 70]), radius_mm=45.0)  # a bigger sphere
        qtbot.waitUntil(lambda: view.layers.surfaces.get((seg.uid, tumour.number)) is not actor, timeout=5000)
        assert magenta() > shown * 1.3
        seg.update_segment(tumour, visible=False)
        assert magenta() < shown / 5
        seg.update_segment(tumour, visible=True, color=(0, 255, 0))
        assert magenta() < shown / 5
        # detections: pending ones yellow, rejected ones gone
        markers = MarkerSet("test", [Marker(vol.index_to_lps([150, 256, 70]), np.array([60.0, 60.0, 60.0]), 0.9,
                                            "nodule")])
        seg.update_segment(tumour, visible=False)
        state.open_series.add_overlay(markers)

        def yellow():
            img = view.capture_still("interactive").astype(int)
            return ((img[..., 0] > 100) & (img[..., 1] > 80) & (img[..., 2] < 60)).mean()  # 60 % opaque

        assert yellow() > 0.002
        markers.set_status(0, "rejected")
        assert yellow() < 0.0005
    finally:
        if markers is not None:
            state.open_series.remove_overlay(markers)
        state.open_series.remove_overlay(win.features.segments.controller.find(seg), discard=True)
        view.volume.actor.SetVisibility(True)
    assert not view.layers.surfaces and not any(view.layers.markers.values())


def test_ctrl_drag_edits_the_transfer_function(view, qtbot):
    from PySide6.QtCore import QPoint, Qt

    view.set_preset("CT bone")
    before = view.capture_still("interactive").astype(int)
    c = QPoint(view.width() // 2, view.height() // 2)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, c)
    qtbot.mouseMove(view, c + QPoint(-60, -40))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, c + QPoint(-60, -40))
    e = view.volume.edit
    assert e.shift < -50 and e.opacity > 1.2
    assert "shift" in view.toolbar.edit_label.text()
    editor = view.toolbar.editor  # the sliders follow the drag
    assert editor.shift.value() == round(e.shift) and 10 ** (editor.opacity.value() / 100) == pytest.approx(
        e.opacity, rel=0.03)
    after = view.capture_still("interactive").astype(int)
    assert body(after).mean() > body(before).mean()  # lower thresholds, more opaque: more shows
    view.set_preset("CT bone")
    assert view.volume.edit.shift == 0.0


def test_the_transfer_function_editor_updates_the_rendering_live(view, qtbot):
    editor = view.toolbar.editor
    view.set_preset("CT bone")
    before = view.capture_still("interactive").astype(int)
    editor.shift.setValue(-300)  # bone thresholds 300 HU lower: soft tissue appears
    assert view.volume.edit.shift == -300.0
    lower = view.capture_still("interactive").astype(int)
    assert body(lower).mean() > body(before).mean() + 0.02
    editor.opacity.setValue(-100)  # x 0.1
    assert view.volume.edit.opacity == pytest.approx(0.1)
    faint = view.capture_still("interactive").astype(int)
    assert np.abs(faint - lower).mean() > 3
    assert "opacity 10%" in view.toolbar.edit_label.text()
    view.set_mode("mip")
    assert not view.toolbar.edit.isEnabled()  # MIP / MinIP follow the window instead
    view.set_mode("composite")
    from PySide6.QtWidgets import QPushButton

    editor.findChild(QPushButton).click()  # "Reset to the preset"
    assert (editor.shift.value(), editor.opacity.value()) == (0, 0)
    again = view.capture_still("interactive").astype(int)
    assert np.abs(again - before).mean() < 1.0


def test_thick_slab_mip_and_minip_in_the_2d_view(ct_window, qtbot):
    win, m = ct_window, ct_window.model
    axial = win.grid.views[0]
    state = m.state(0)
    m.set_active(0)
    state.set_window(-600, 1500)
    settle(qtbot, 50)
    thin = axial.capture().astype(int)
    win.cmd_slab_mip()
    assert m.viewports[0].slab_mm == win.SLAB_DEFAULT_MM and m.viewports[0].slab_mode == "mip"
    assert m.viewports[1].slab_mm == 0.0  # only the active view
    win.cmd_slab_thicker()
    assert m.viewports[0].slab_mm == pytest.approx(15.0)
    settle(qtbot, 50)
    mip = axial.capture().astype(int)
    assert "MIP slab 15 mm" in axial.corners.words["bottom_left"]  # (shown as 'MIP slab 15...' in a narrow view)
    win.cmd_slab_minip()
    settle(qtbot, 50)
    minip = axial.capture().astype(int)
    g_thin, g_mip, g_min = (a.mean(axis=2) for a in (thin, mip, minip))
    lungish = (g_thin > 20) & (g_thin < 110)  # lung parenchyma grey in the lung window
    assert lungish.mean() > 0.05
    assert g_mip[lungish].mean() > g_thin[lungish].mean() + 4  # vessels light up the slab
    assert (g_mip[lungish] > 150).mean() > 0.02  # bright vessel pixels where the thin slice showed lung
    assert g_min[lungish].mean() < g_thin[lungish].mean() - 2
    win.cmd_slab_minip()  # off again
    assert m.viewports[0].slab_mm == 0.0
    state.set_window(*state.home_window)


def test_the_preset_box_is_as_wide_as_its_presets_after_a_series_opens(make_window, qtbot, tmp_path, monkeypatch):
    """The window shows before a series opens, so the preset box was sized for an empty list and
    kept that width: the brain MR's 'MR default' read 'MR defau'."""
    from PySide6.QtWidgets import QComboBox

    from tests.ui.helpers import wait_loaded

    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path / "data"))
    win = make_window(size=(1600, 1000))
    win.open_path(str(data_path("brain-mr-t1")))
    wait_loaded(qtbot, win)
    settle(qtbot, 100)
    box = win.grid.views[3].toolbar.preset
    names = [box.itemText(i) for i in range(box.count())]
    assert "MR default" in names
    whole = QComboBox()
    whole.addItems(names)
    whole.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
    assert box.width() >= whole.sizeHint().width(), (box.width(), whole.sizeHint().width())
