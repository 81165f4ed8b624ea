"""Editing operations and their undo/redo history (viewer.core.edits), on synthetic grids and the
real chest CT."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.edits import Editor
from viewer.core.planes import plane_axes, rotation_about
from viewer.core.segmentation import Segmentation
from viewer.core.volume import Volume, affine_from


def grid(shape=(20, 40, 40), spacing=(0.5, 0.5, 2.0)):
    affine = affine_from(spacing, (10.0, -20.0, 30.0), np.eye(3))
    vol = Volume(np.zeros(shape, np.int16), affine, modality="CT", units="HU")
    return vol, Segmentation.for_volume(vol)


def centre_lps(vol, ijk):
    return vol.index_to_lps(np.asarray(ijk, float))


def test_disc_brush_is_round_in_mm_and_one_slice_thick_in_every_plane():
    vol, seg = grid()
    ed = Editor(seg, vol)
    s = seg.add_segment("Tumor")
    p = centre_lps(vol, (20, 20, 10))
    rot = np.eye(3)
    for plane in ("axial", "coronal", "sagittal"):
        seg.layers[0][:] = 0
        n = plane_axes(plane, rot)[2]
        assert ed.brush(s, p, radius_mm=3.0, normal=n)
        m = seg.mask(s)
        k, j, i = np.nonzero(m)
        lps = vol.index_to_lps(np.column_stack([i, j, k]).astype(float))
        d = lps - p
        assert np.abs(d @ n).max() < 1.0  # within one slice of the plane
        assert np.linalg.norm(d - np.outer(d @ n, n), axis=1).max() <= 3.0 + 1e-6
        # the disc reaches its radius in-plane: 3 mm at 0.5 mm pixels (axial) is 6 voxels
        if plane == "axial":
            assert set(k) == {10} and i.max() - i.min() == 12
        else:  # 2 mm slices along z: +-1 slice inside 3 mm
            assert len(set(k)) == 3


def test_oblique_disc_and_sphere():
    vol, seg = grid(spacing=(1.0, 1.0, 1.0))
    ed = Editor(seg, vol)
    s = seg.add_segment()
    p = centre_lps(vol, (20, 20, 10))
    n = plane_axes("axial", rotation_about((1, 1, 0), 0.5))[2]
    ed.brush(s, p, radius_mm=4.0, normal=n)
    k, j, i = np.nonzero(seg.mask(s))
    d = vol.index_to_lps(np.column_stack([i, j, k]).astype(float)) - p
    assert np.abs(d @ n).max() <= 0.5 / np.abs(n).max() + 1e-3
    assert len(set(k)) > 1  # the oblique disc crosses slices
    seg.layers[0][:] = 0
    ed.brush(s, p, radius_mm=4.0)
    count = seg.count(s)
    assert abs(count - 4 / 3 * np.pi * 4 ** 3) / count < 0.15


def test_stroke_is_one_undo_step_storing_only_the_changed_box():
    vol, seg = grid()
    ed = Editor(seg, vol)
    s = seg.add_segment()
    n = np.array([0, 0, 1.0])
    pts = [centre_lps(vol, (10 + x, 20, 10)) for x in range(0, 12, 2)]
    ed.begin("Brush")
    for a, b in zip(pts, pts[1:]):
        ed.brush(s, a, b, radius_mm=1.0, normal=n)
    step = ed.end()
    assert len(ed.history.steps) == 1 and len(step.changes) == 1
    c = step.changes[0]
    assert c.box[0] == slice(10, 11)  # one slice
    assert c.before.shape == c.after.shape and c.before.size < 40 * 40
    painted = seg.layers[0].copy()
    assert ed.undo() and not seg.layers[0].any()
    assert ed.redo() and np.array_equal(seg.layers[0], painted)
    assert not ed.redo()


def test_erase_protection_lock_and_overwrite_modes():
    vol, seg = grid()
    ed = Editor(seg, vol)
    a, b = seg.add_segment("A"), seg.add_segment("B")
    p = centre_lps(vol, (20, 20, 10))
    n = [0, 0, 1.0]
    ed.brush(a, p, radius_mm=3, normal=n)
    na = seg.count(a)
    ed.overwrite = "empty"
    ed.brush(b, p, radius_mm=5, normal=n)
    assert seg.count(a) == na and seg.count(b) > 0  # b only filled the empty ring
    ed.brush(b, p, radius_mm=5, normal=n, erase=True)
    assert seg.count(b) == 0 and seg.count(a) == na  # erasing b never touches a
    ed.overwrite = "all"
    seg.update_segment(a, locked=True)
    ed.brush(b, p, radius_mm=5, normal=n)
    assert seg.count(a) == na  # locked
    assert not ed.brush(a, p, radius_mm=1, normal=n, erase=True)
    seg.update_segment(a, locked=False)
    ed.brush(b, p, radius_mm=5, normal=n)
    assert seg.count(a) == 0  # overwritten


def test_overlapping_segments_in_separate_layers():
    vol, seg = grid()
    ed = Editor(seg, vol)
    organ = seg.add_segment("Liver")
    lesion = seg.add_segment("Lesion", layer="new")
    p = centre_lps(vol, (20, 20, 10))
    ed.brush(organ, p, radius_mm=5, normal=[0, 0, 1])
    ed.brush(lesion, p, radius_mm=2, normal=[0, 0, 1])
    assert seg.overlapping() and seg.count(organ) > seg.count(lesion) > 0
    assert (seg.mask(organ) & seg.mask(lesion)).sum() == seg.count(lesion)


def test_threshold_brush_and_flood_fill_respect_the_range():
    vol, seg = grid()
    vol.array[:, :, 20:] = 300  # right half bright
    ed = Editor(seg, vol)
    s = seg.add_segment()
    p = centre_lps(vol, (20, 20, 10))
    ed.brush(s, p, radius_mm=4, normal=[0, 0, 1], hu_range=(200, 400))
    k, j, i = np.nonzero(seg.mask(s))
    assert i.min() == 20 and seg.count(s) > 10
    seg.layers[0][:] = 0
    ed.flood_fill(s, centre_lps(vol, (30, 5, 10)), tolerance=50, normal=[0, 0, 1])
    m = seg.mask(s)
    assert m[10, :, 20:].all() and not m[10, :, :20].any() and m.sum() == 40 * 20  # one slice
    seg.layers[0][:] = 0
    ed.flood_fill(s, centre_lps(vol, (30, 5, 10)), hu_range=(250, 350))
    assert seg.count(s) == 20 * 40 * 20  # 3D


def test_smoothing_islands_logical_and_lasso():
    vol, seg = grid(spacing=(1.0, 1.0, 1.0))
    ed = Editor(seg, vol)
    a, b = seg.add_segment("A"), seg.add_segment("B", layer="new")
    seg.layers[0][5:15, 10:30, 10:30] = a.number
    seg.layers[0][10, 20, 20] = 0  # a hole
    seg.layers[0][2, 2, 2] = a.number  # a speck
    ed.islands(a, keep_largest=True)
    assert seg.layers[0][2, 2, 2] == 0
    ed.smooth(a, "closing", 1.5)
    assert seg.layers[0][10, 20, 20] == a.number
    before = seg.count(a)
    seg.layers[0][10, 30:34, 20] = a.number  # a spur
    ed.smooth(a, "opening", 1.5)
    assert seg.layers[0][10, 32, 20] == 0 and seg.count(a) <= before
    seg.layers[1][5:15, 20:36, 10:30] = b.number
    ed.logical(a, "subtract", b)
    assert not (seg.mask(a) & seg.mask(b)).any()
    ed.logical(a, "union", b)
    assert (seg.mask(a) | ~seg.mask(b)).all()
    ed.logical(a, "intersect", b)
    assert np.array_equal(seg.mask(a), seg.mask(b))
    # lasso: a square in the axial plane through k = 3
    seg.layers[0][:] = 0
    sq = [centre_lps(vol, c) for c in ((5, 5, 3), (15, 5, 3), (15, 15, 3), (5, 15, 3))]
    ed.polygon(a, sq, normal=[0, 0, 1])
    m = seg.mask(a)
    assert m[3, 6:15, 6:15].all() and m.sum() <= 11 * 11 and not m[[2, 4]].any()
    ed.polygon(a, sq[:3], normal=[0, 0, 1], erase=True)  # cut a triangle
    assert 0 < seg.count(a) < m.sum()
    assert ed.undo() and np.array_equal(seg.mask(a), m)


def test_history_memory_cap_keeps_the_newest_steps():
    vol, seg = grid()
    ed = Editor(seg, vol, limit_bytes=2000)
    s = seg.add_segment()
    for x in range(8):
        ed.brush(s, centre_lps(vol, (5 + 4 * x, 20, 10)), radius_mm=0.9, normal=[0, 0, 1])
    assert ed.history.nbytes <= 2000 and 1 <= len(ed.history.steps) < 9
    while ed.undo():
        pass
    assert seg.count(s) > 0  # the oldest strokes can no longer be undone


def test_automatic_segment_becomes_semiautomatic_when_edited_and_delete_is_undoable():
    vol, seg = grid()
    ed = Editor(seg, vol)
    s = seg.add_segment("Lung", algorithm_type="AUTOMATIC", algorithm_name="LungNet", algorithm_version="2")
    ed.brush(s, centre_lps(vol, (20, 20, 10)), radius_mm=2, normal=[0, 0, 1])
    assert s.algorithm_type == "SEMIAUTOMATIC" and s.edited and "edited by a person" in s.provenance
    n = seg.count(s)
    ed.remove_segment(s)
    assert seg.segments == [] and not seg.layers[0].any()
    ed.undo()
    assert seg.segments[0].name == "Lung" and seg.count(seg.segments[0]) == n


@pytest.fixture(scope="module")
def chest(request):
    import viewer
    from tests.conftest import data_path

    return viewer.load(data_path("chest-ct"))


def test_fill_between_slices_on_the_chest_ct(chest):
    seg = Segmentation.for_volume(chest)
    ed = Editor(seg, chest)
    s = seg.add_segment("Heart")
    n = [0, 0, 1.0]
    ks = [50, 55, 60, 65, 70]
    for k, r in zip(ks, (20, 25, 28, 25, 20)):
        ed.brush(s, chest.index_to_lps([256.0, 270.0, k]), radius_mm=r, normal=n)
    drawn = {k: seg.layers[0][k].copy() for k in ks}
    assert ed.fill_between_slices(s)
    per_slice = seg.mask(s).sum(axis=(1, 2))
    assert (per_slice[50:71] > 0).all() and per_slice[:50].sum() == 0 and per_slice[71:].sum() == 0
    assert all(np.array_equal(seg.layers[0][k], drawn[k]) for k in ks)
    # an interpolated slice lies between its neighbours in area
    assert per_slice[51] >= min(per_slice[50], per_slice[55]) * 0.8
    ed.undo()
    assert seg.mask(s).sum(axis=(1, 2))[51] == 0


def test_flood_fill_of_the_lung_on_the_chest_ct(chest):
    seg = Segmentation.for_volume(chest)
    ed = Editor(seg, chest)
    s = seg.add_segment("Lung")
    k = 70
    hu = chest.real_values(np.s_[k])
    j, i = np.argwhere(hu[150:350, 60:220] < -800)[0] + (150, 60)
    ed.flood_fill(s, chest.index_to_lps([float(i), float(j), k]), hu_range=(-1024, -400), normal=[0, 0, 1])
    m = seg.mask(s)
    assert m[k, j, i] and m.sum() == m[k].sum() > 2000
    assert (hu[m[k]] <= -400).all()
