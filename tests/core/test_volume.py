"""Volume: geometry derived from the affine, index <-> LPS mapping, rescale, orientation codes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.dicom_factory import rotation
from viewer.core.volume import SourceInfo, Volume, affine_from


def _vol(affine=None, shape=(3, 4, 5), dtype=np.int16, **kw) -> Volume:
    return Volume(np.zeros(shape, dtype), np.eye(4) if affine is None else affine, **kw)


def test_affine_from_puts_spacing_on_direction_columns():
    r = rotation(10, 20, 30)
    a = affine_from((0.5, 0.7, 2.0), (1.0, -2.0, 3.0), r)
    np.testing.assert_allclose(a[:3, 0], r[:, 0] * 0.5)
    np.testing.assert_allclose(a[:3, 1], r[:, 1] * 0.7)
    np.testing.assert_allclose(a[:3, 2], r[:, 2] * 2.0)
    np.testing.assert_allclose(a[:3, 3], [1.0, -2.0, 3.0])
    np.testing.assert_allclose(a[3], [0, 0, 0, 1])


def test_spacing_origin_direction_come_back_from_the_affine():
    r = rotation(-35, 5, 60)
    v = _vol(affine_from((0.8, 0.9, 2.5), (-100, 20, 7.5), r))
    np.testing.assert_allclose(v.spacing, [0.8, 0.9, 2.5])
    np.testing.assert_allclose(v.origin, [-100, 20, 7.5])
    np.testing.assert_allclose(v.direction, r, atol=1e-12)
    assert v.shape == (3, 4, 5)
    assert v.nbytes == 3 * 4 * 5 * 2


def test_origin_is_a_copy():
    v = _vol(affine_from((1, 1, 1), (1, 2, 3), np.eye(3)))
    o = v.origin
    o[:] = 0
    np.testing.assert_allclose(v.origin, [1, 2, 3])


def test_index_to_lps_follows_i_j_k_order_and_inverts():
    a = affine_from((0.5, 2.0, 3.0), (10, 20, 30), np.eye(3))
    v = _vol(a)
    # i moves along x by 0.5 mm, j along y by 2 mm, k along z by 3 mm
    np.testing.assert_allclose(v.index_to_lps([1, 0, 0]), [10.5, 20, 30])
    np.testing.assert_allclose(v.index_to_lps([0, 1, 0]), [10, 22, 30])
    np.testing.assert_allclose(v.index_to_lps([0, 0, 1]), [10, 20, 33])
    pts = np.random.default_rng(0).uniform(-5, 50, size=(7, 3))
    r = rotation(30, -40, 75)
    v = _vol(affine_from((0.7, 0.8, 1.9), (-3, 4, 5), r))
    np.testing.assert_allclose(v.lps_to_index(v.index_to_lps(pts)), pts, atol=1e-9)
    assert v.index_to_lps(pts).shape == (7, 3)


def test_sheared_affine_keeps_exact_positions():
    a = affine_from((1, 1, 2), (0, 0, 0), np.eye(3))
    a[1, 2] = 0.5  # gantry tilt: each slice moves 0.5 mm along y
    v = _vol(a)
    np.testing.assert_allclose(v.index_to_lps([0, 0, 4]), [0, 2, 8])
    np.testing.assert_allclose(v.lps_to_index([0, 2, 8]), [0, 0, 4], atol=1e-12)


def test_real_values_apply_rescale_only_when_not_identity():
    arr = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    v = Volume(arr, np.eye(4), modality="MR", rescale=(2.5, -10.0))
    real = v.real_values()
    assert real.dtype == np.float32
    np.testing.assert_allclose(real, arr * 2.5 - 10.0)
    np.testing.assert_allclose(v.real_values(np.s_[1, 2]), arr[1, 2] * 2.5 - 10.0)
    ident = Volume(arr, np.eye(4))
    assert ident.real_values() is arr or np.shares_memory(ident.real_values(), arr)


@pytest.mark.parametrize(("direction", "code"), [
    (np.eye(3), "LPS"),  # standard axial CT
    (np.diag([-1.0, -1.0, 1.0]), "RAS"),
    (np.diag([1.0, 1.0, -1.0]), "LPI"),  # axial stored head first
    (np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float), "PIR"),  # sagittal
    (np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float), "LIP"),  # coronal
])
def test_orientation_code(direction, code):
    v = _vol(affine_from((1, 1, 1), (0, 0, 0), direction))
    assert v.orientation_code() == code


def test_orientation_code_of_an_oblique_volume_names_the_dominant_axis():
    r = rotation(0, 0, 25)  # 25 degrees about z: i mostly +x, j mostly +y
    assert _vol(affine_from((1, 1, 1), (0, 0, 0), r)).orientation_code() == "LPS"
    r = rotation(0, 0, 160)  # i mostly -x, j mostly -y
    assert _vol(affine_from((1, 1, 1), (0, 0, 0), r)).orientation_code() == "RAS"


def test_volume_rejects_non_3d_arrays_and_bad_affines():
    with pytest.raises(ValueError):
        Volume(np.zeros((4, 4)), np.eye(4))
    with pytest.raises(ValueError):
        Volume(np.zeros((2, 4, 4, 3)), np.eye(4))
    with pytest.raises(ValueError):
        Volume(np.zeros((2, 4, 4)), np.eye(3))


def test_affine_is_float64_and_defaults_are_independent():
    v1 = Volume(np.zeros((1, 2, 2), np.uint8), np.eye(4, dtype=np.float32))
    v2 = Volume(np.zeros((1, 2, 2), np.uint8), np.eye(4))
    assert v1.affine.dtype == np.float64
    v1.warnings.append("x")
    assert v2.warnings == []
    assert isinstance(v1.source, SourceInfo) and v1.source.patient_name == ""


def test_repr_names_modality_shape_and_orientation():
    v = Volume(np.zeros((3, 4, 5), np.int16), affine_from((0.5, 0.5, 2), (0, 0, 0), np.eye(3)), modality="CT")
    text = repr(v)
    assert "CT" in text and "(3, 4, 5)" in text and "int16" in text and "LPS" in text
    assert "0.5" in text and "2" in text
