"""The Qt-free, VTK-free viewing model (viewer/core/viewstate.py): planes, point, links, stepping."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.planes import acquisition_rotation, aligned_axis, rotation_about, slice_step
from viewer.core.viewstate import SeriesState, ViewerModel
from viewer.core.volume import SourceInfo, Volume, affine_from


def make_volume(shape=(20, 30, 40), spacing=(0.8, 0.8, 2.5), direction=None, origin=(-10, -20, 5),
                frame="1.2.3", affine=None) -> Volume:
    direction = np.eye(3) if direction is None else direction
    arr = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    aff = affine if affine is not None else affine_from(spacing, origin, direction)
    return Volume(arr, aff, modality="CT", units="HU", source=SourceInfo(frame_of_reference_uid=frame))


def test_rotating_in_a_view_keeps_that_view_and_turns_the_others():
    vol = make_volume()
    state = SeriesState("s", vol)
    axial_before = state.axes("axial")
    state.rotate("axial", np.radians(30))
    axial_after = state.axes("axial")
    for a, b in zip(axial_before, axial_after):
        assert np.allclose(a, b)
    n_cor = state.axes("coronal")[2]
    angle = np.degrees(np.arccos(abs(n_cor @ np.array([0, -1, 0]))))
    assert angle == pytest.approx(30, abs=1e-6)
    assert abs(n_cor[2]) < 1e-9  # still vertical: turned about the axial normal
    assert state.oblique
    state.reset_rotation()
    assert not state.oblique


def test_acquisition_rotation_shows_an_oblique_stack_as_acquired():
    rot = rotation_about([1, 0, 0], np.radians(12))
    vol = make_volume(direction=rot)
    r = acquisition_rotation(vol.affine)
    assert np.allclose(r, rot)
    state = SeriesState("s", vol)
    assert aligned_axis(vol, state.axes("axial")[2]) == 2  # the axial view shows native slices
    assert acquisition_rotation(make_volume().affine) == pytest.approx(np.eye(3))


def test_point_is_clamped_into_the_volume_and_snapped_to_slices():
    vol = make_volume()
    state = SeriesState("s", vol)
    state.set_point(vol.index_to_lps([3.4, 7.6, 5.3]))
    assert np.allclose(vol.lps_to_index(state.point), [3, 8, 5])
    state.set_point([1e4, -1e4, 1e4])
    assert np.allclose(vol.lps_to_index(state.point), [39, 0, 19])


def test_step_moves_one_slice_to_the_feet_in_axial():
    vol = make_volume()
    state = SeriesState("s", vol)
    k0 = vol.lps_to_index(state.point)[2]
    moved = []
    state.point_changed.connect(lambda: moved.append(True))
    state.step("axial", 1)
    assert vol.lps_to_index(state.point)[2] == pytest.approx(k0 - 1)  # +k is superior here
    assert state.slice_position("axial") == (int(k0), 20)
    state.step("sagittal", 2)
    assert vol.lps_to_index(state.point)[0] == pytest.approx(22)  # towards the patient's left
    assert len(moved) == 2
    assert slice_step(vol, [0, 0, 1]) == pytest.approx(2.5)


def test_linked_series_of_the_same_frame_of_reference_follow():
    model = ViewerModel()
    a = SeriesState("a", make_volume(frame="F1"))
    b = SeriesState("b", make_volume(frame="F1", origin=(-5, -15, 10)))
    c = SeriesState("c", make_volume(frame="F2"))
    for s in (a, b, c):
        model.add_series(s, slots=[])
    target = a.volume.index_to_lps([10, 12, 8])
    b_start, c_before = b.point.copy(), c.point.copy()
    model.set_point("a", target)
    # b follows to its own nearest slices: within half a voxel of a's point along every axis
    assert np.all(np.abs(b.point - a.point) <= b.volume.spacing / 2 + 1e-9)
    assert not np.allclose(b.point, b_start)
    assert np.allclose(c.point, c_before)
    model.set_link_series(False)
    b_before = b.point.copy()
    model.set_point("a", a.volume.index_to_lps([20, 20, 10]))
    assert np.allclose(b.point, b_before)


def test_layouts_maximise_and_visible_slots():
    model = ViewerModel()
    assert model.visible_slots() == [0, 1, 2, 3]
    model.set_layout("1x3")
    assert model.visible_slots() == [0, 1, 2]
    model.toggle_maximise(2)
    assert model.visible_slots() == [2] and model.active == 2
    model.toggle_maximise(2)
    assert model.visible_slots() == [0, 1, 2]
    model.set_layout("1x1")
    assert model.visible_slots() == [2]
    with pytest.raises(ValueError):
        model.set_layout("3x3")


def test_value_at_reports_real_values_and_respects_loading():
    vol = make_volume()
    state = SeriesState("s", vol)
    value, ijk = state.value_at(vol.index_to_lps([4, 5, 6]))
    assert ijk == (4, 5, 6) and value == vol.array[6, 5, 4]
    state.loaded = np.zeros(20, bool)
    assert state.value_at(vol.index_to_lps([4, 5, 6])) is None
    assert state.value_at([1e5, 0, 0]) is None


def test_reset_restores_zoom_and_rotation_and_keeps_the_window():
    model = ViewerModel()
    s = SeriesState("s", make_volume(), window=(40, 400))
    model.add_series(s)
    model.set_zoom(0, 3.0)
    model.set_pan(0, (5.0, -2.0))
    s.rotate("axial", 0.3)
    s.set_window(-600, 1500, "Lung")
    s.set_invert(True)
    model.reset()
    assert model.viewports[0].zoom == 1.0 and model.viewports[0].pan == (0.0, 0.0)
    assert not s.oblique
    assert s.window == (-600.0, 1500.0) and s.preset == "Lung" and s.invert  # Home keeps what the reader set


def test_corner_text_calls_oblique_only_the_turned_planes_and_keeps_the_position_sign():
    """Ctrl+drag in the axial view turns the coronal and sagittal planes; the axial view keeps its
    image.  Before, it was titled 'Axial (oblique)' and its 'Pos: -14.5 mm' became 'Pos: 14.5 mm'
    (the axial normal points to the feet), and a slightly turned coronal read minus its y."""
    from viewer.core.viewstate import Viewport
    from viewer.ui.annotations import corner_texts

    state = SeriesState("s", make_volume())
    state.set_point([2.8, -4.8, 20.0])  # voxel centres: clamping leaves it

    def words(plane):
        return corner_texts(state, Viewport("s", plane), 100.0)["bottom_left"]

    before = {p: words(p) for p in ("axial", "coronal", "sagittal")}
    assert "Pos: 20.0 mm" in before["axial"] and "Pos: -4.8 mm" in before["coronal"]
    assert "Pos: 2.8 mm" in before["sagittal"]
    state.rotate("axial", np.radians(2))
    assert state.oblique
    assert words("axial") == before["axial"]  # not oblique, same position, same image number
    for plane, near in (("coronal", -4.8), ("sagittal", 2.8)):
        text = words(plane)
        pos = float(text.split("Pos: ")[1].split(" mm")[0])
        assert "(oblique)" in text and pos == pytest.approx(near, abs=0.5), text
