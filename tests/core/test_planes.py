"""Plane geometry of the 2D views (viewer/core/planes.py): radiological axes, letters, rotations, sampling."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.planes import direction_letters, plane_axes, rotation_about, slice_geometry
from viewer.core.volume import SourceInfo, Volume, affine_from
from viewer.ui.annotations import orientation_letters


def make_volume(shape=(20, 30, 40), spacing=(0.8, 0.8, 2.5), origin=(-10, -20, 5)) -> Volume:
    arr = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    aff = affine_from(spacing, origin, np.eye(3))
    return Volume(arr, aff, modality="CT", units="HU", source=SourceInfo(frame_of_reference_uid="1.2.3"))


def test_planes_follow_the_radiological_convention():
    r = np.eye(3)
    u, v, n = plane_axes("axial", r)
    assert orientation_letters(u, v) == {"right": "L", "left": "R", "top": "A", "bottom": "P"}
    assert np.allclose(np.cross(u, v), n) and np.allclose(n, [0, 0, -1])  # seen from the feet
    u, v, n = plane_axes("coronal", r)
    assert orientation_letters(u, v) == {"right": "L", "left": "R", "top": "S", "bottom": "I"}
    u, v, n = plane_axes("sagittal", r)
    assert orientation_letters(u, v) == {"right": "P", "left": "A", "top": "S", "bottom": "I"}


def test_direction_letters_name_oblique_directions_strongest_first():
    assert direction_letters([0.0, -0.8, 0.6]) == "AS"
    assert direction_letters([-1, 0, 0]) == "R"


def test_rotation_about_is_right_handed():
    r = rotation_about([0, 0, 1], np.pi / 2)
    assert np.allclose(r @ [1, 0, 0], [0, 1, 0])


def test_slice_geometry_samples_voxel_centres_when_aligned():
    vol = make_volume()
    u, v, n = plane_axes("axial", np.eye(3))
    geom = slice_geometry(vol, u, v, n, vol.index_to_lps([5, 5, 7]))
    assert geom.size == (40, 30)
    x0, _, y0, _ = geom.extent
    for a, b in [(0, 0), (39, 29), (12, 3)]:
        idx = vol.lps_to_index(geom.to_lps(x0 + a * geom.spacing, y0 + b * geom.spacing))
        assert np.allclose(idx, np.round(idx), atol=1e-6)
        assert idx[2] == pytest.approx(7)
