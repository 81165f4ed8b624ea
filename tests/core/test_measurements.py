"""Measurements on the real chest CT and brain MR and on synthetic oblique/anisotropic grids, each
checked against an independent numpy computation on the same voxels."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import data_path
from tests.render.test_slice import trilinear as reference_trilinear
from viewer.core.measurement_store import load_measurements, save_measurements
from viewer.core.measurements import (
    Measurement,
    compute,
    roi_samples,
    segment_stats,
    summary,
)
from viewer.core.planes import rotation_about
from viewer.core.volume import Volume, affine_from


@pytest.fixture(scope="module")
def ct():
    from viewer.core.loader import load

    return load(data_path("chest-ct"))


@pytest.fixture(scope="module")
def mr():
    from viewer.core.loader import load

    return load(data_path("brain-mr-t1"))


def lps_of(vol: Volume, i, j, k) -> np.ndarray:
    """Independent index -> LPS: origin + direction columns scaled by the spacing."""
    a = vol.affine
    return a[:3, 3] + i * a[:3, 0] + j * a[:3, 1] + k * a[:3, 2]


def oblique_volume(spacing=(0.5, 0.7, 3.0), shape=(40, 50, 60), angle=0.4):
    direction = rotation_about([1.0, 2.0, 0.5], angle)
    rng = np.random.default_rng(1)
    arr = rng.integers(-500, 500, size=shape).astype(np.int16)
    return Volume(arr, affine_from(spacing, (10.0, -20.0, 30.0), direction), modality="CT", units="HU")


# lengths and angles ----------------------------------------------------------------------------

def test_length_on_the_ct_is_the_voxel_distance_in_mm(ct):
    a, b = lps_of(ct, 100, 200, 30), lps_of(ct, 400, 260, 30)
    m = Measurement("length", [a, b])
    sx, sy, _ = ct.spacing
    assert compute(m, ct)["length_mm"] == pytest.approx(np.hypot(300 * sx, 60 * sy), abs=1e-6)


def test_length_across_anisotropic_slices(ct):
    # coronal ruler: 100 columns (0.977 mm) by 40 slices (2 mm)
    m = Measurement("length", [lps_of(ct, 100, 250, 20), lps_of(ct, 200, 250, 60)], normal=[0, 1, 0])
    assert compute(m)["length_mm"] == pytest.approx(np.hypot(100 * 0.9765625, 40 * 2.0), abs=1e-6)


def test_length_and_angle_on_an_oblique_anisotropic_grid():
    vol = oblique_volume()
    a, b = vol.index_to_lps([3, 4, 5]), vol.index_to_lps([30, 20, 15])
    expected = np.linalg.norm(np.array([27 * 0.5, 16 * 0.7, 10 * 3.0]))  # orthonormal directions keep lengths
    assert compute(Measurement("length", [a, b]))["length_mm"] == pytest.approx(expected, rel=1e-9)
    # a right angle between the i and k axes of the tilted grid, an odd angle in LPS terms
    v = vol.index_to_lps([10, 10, 10])
    ang = Measurement("angle", [vol.index_to_lps([20, 10, 10]), v, vol.index_to_lps([10, 10, 14])])
    assert compute(ang)["angle_deg"] == pytest.approx(90.0, abs=1e-9)
    ang45 = Measurement("angle", [vol.index_to_lps([16, 10, 10]), v, vol.index_to_lps([16, 10, 11])])
    assert compute(ang45)["angle_deg"] == pytest.approx(45.0, abs=1e-9)  # 6 x 0.5 mm against 1 x 3 mm


def test_bidirectional_axes():
    m = Measurement("bidirectional", [[0, 0, 0], [30, 40, 0], [11, 20, 0], [19, 14, 0]])
    v = compute(m)
    assert v["long_mm"] == pytest.approx(50.0) and v["short_mm"] == pytest.approx(10.0)
    assert summary(m) == "50.0 x 10.0 mm"


def test_point_value_is_the_nearest_voxel(ct):
    m = Measurement("point", [lps_of(ct, 256.3, 300.2, 70.1)])
    assert compute(m, ct)["value"] == float(ct.array[70, 300, 256])


# ROI statistics ----------------------------------------------------------------------------------

def test_axial_ellipse_roi_on_the_ct_matches_numpy(ct):
    k, ci, cj, ri, rj = 70, 180, 260, 25.3, 14.6  # radii in voxels
    sx, sy, _ = ct.spacing
    centre = lps_of(ct, ci, cj, k)
    m = Measurement("ellipse", [centre, centre + [ri * sx, 0, 0], centre + [0, rj * sy, 0]])
    v = compute(m, ct)
    jj, ii = np.mgrid[0:512, 0:512]
    inside = ((ii - ci) / ri) ** 2 + ((jj - cj) / rj) ** 2 <= 1.0
    hu = ct.array[k][inside].astype(np.float64)
    assert v["count"] == inside.sum()
    assert v["mean"] == pytest.approx(hu.mean()) and v["sd"] == pytest.approx(hu.std())
    assert (v["min"], v["max"]) == (hu.min(), hu.max())
    assert v["area_mm2"] == pytest.approx(np.pi * ri * sx * rj * sy)
    assert v["sample_area_mm2"] == pytest.approx(inside.sum() * sx * sy)
    assert roi_samples(m, ct).method == "voxels"


def test_roi_snaps_to_the_nearest_slice(ct):
    centre = lps_of(ct, 200, 200, 40.4)  # 0.8 mm off slice 40
    m = Measurement("ellipse", [centre, centre + [5, 0, 0], centre + [0, 5, 0]])
    assert set(roi_samples(m, ct).ijk[:, 2]) == {40}


def test_coronal_polygon_on_anisotropic_mr_matches_numpy(mr):
    from skimage.measure import points_in_poly

    j = 256  # coronal plane: in-plane voxels 0.41 mm (i) by 1.5 mm (k)
    # (i, k) corners, off voxel centres so that no centre lies on an edge
    corners_ik = np.array([[180.3, 40.45], [330.2, 52.3], [300.7, 95.2], [210.1, 88.6], [190.4, 70.3]])
    pts = [lps_of(mr, i, j, k) for i, k in corners_ik]
    m = Measurement("polygon", pts, normal=[0, 1, 0], u=[1, 0, 0])
    v = compute(m, mr)
    kk, ii = np.mgrid[0:mr.shape[0], 0:mr.shape[2]]
    # physical in-plane coordinates (mm) of every voxel centre and of the corners
    si, _, sk = mr.spacing
    inside = points_in_poly(np.column_stack([ii.ravel() * si, kk.ravel() * sk]), corners_ik * [si, sk])
    inside = inside.reshape(kk.shape)
    slope, intercept = mr.rescale
    vals = mr.array[:, j, :][inside].astype(np.float64) * slope + intercept
    assert v["count"] == inside.sum() > 1000
    assert v["mean"] == pytest.approx(vals.mean()) and v["sd"] == pytest.approx(vals.std())
    assert (v["min"], v["max"]) == (vals.min(), vals.max())
    x, y = corners_ik[:, 0] * si, corners_ik[:, 1] * sk
    shoelace = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert v["area_mm2"] == pytest.approx(shoelace, rel=1e-6)


def test_oblique_ellipse_roi_on_the_ct_samples_the_plane(ct):
    n = rotation_about([1, 0, 0], 0.5) @ np.array([0.0, 0.0, 1.0])
    u = np.array([1.0, 0.0, 0.0])
    v_axis = np.cross(n, u)
    centre = lps_of(ct, 200, 260, 70)
    a, b = 18.0, 11.0
    m = Measurement("ellipse", [centre, centre + a * u, centre + b * v_axis], normal=n, u=u)
    vals = compute(m, ct)
    s = roi_samples(m, ct)
    assert s.method == "trilinear"
    # independent: the same grid (finest spacing, anchored at the centre), inside test, trilinear
    step = ct.spacing.min()
    g = np.arange(-40, 41) * step
    gx, gy = np.meshgrid(g, g, indexing="ij")
    inside = (gx / a) ** 2 + (gy / b) ** 2 <= 1.0
    lps = centre + gx[inside][:, None] * u + gy[inside][:, None] * v_axis
    ijk = (lps - ct.affine[:3, 3]) / ct.spacing  # axis-aligned CT: index = offset / spacing
    ref = reference_trilinear(ct.array.astype(np.float64), ijk)
    assert vals["count"] == inside.sum()
    assert vals["mean"] == pytest.approx(ref.mean(), abs=1e-6) and vals["sd"] == pytest.approx(ref.std(), abs=1e-6)
    assert vals["area_mm2"] == pytest.approx(np.pi * a * b)
    assert vals["sample_area_mm2"] == pytest.approx(np.pi * a * b, rel=0.03)


def test_roi_on_an_oblique_grid_uses_its_voxels():
    vol = oblique_volume()
    # a plane of the tilted grid itself (k = 20): aligned with the grid, so plain voxels
    c = vol.index_to_lps([25, 30, 20])
    iu, jv = vol.direction[:, 0], vol.direction[:, 1]
    m = Measurement("ellipse", [c, c + 6.1 * iu, c + 5.2 * jv], normal=np.cross(iu, jv), u=iu)
    vals = compute(m, vol)
    jj, ii = np.mgrid[0:50, 0:60]
    inside = ((ii - 25) * 0.5 / 6.1) ** 2 + ((jj - 30) * 0.7 / 5.2) ** 2 <= 1.0
    ref = vol.array[20][inside].astype(np.float64)
    assert vals["count"] == inside.sum() and vals["mean"] == pytest.approx(ref.mean())


# segment statistics ------------------------------------------------------------------------------

def test_segment_stats_of_an_ellipsoid_on_an_anisotropic_grid():
    sp = np.array([0.5, 0.5, 2.0])
    shape = (40, 120, 120)
    vol = Volume(np.zeros(shape, np.int16), affine_from(sp, (0, 0, 0), np.eye(3)), units="HU")
    kk, jj, ii = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    x, y, z = (ii - 60) * 0.5, (jj - 60) * 0.5, (kk - 20) * 2.0
    mask = (x / 25) ** 2 + (y / 15) ** 2 + (z / 30) ** 2 <= 1.0
    vol.array[mask] = 50
    s = segment_stats(mask, vol)
    assert s.voxel_count == mask.sum()
    assert s.volume_ml == pytest.approx(mask.sum() * 0.5 * 0.5 * 2.0 / 1000)
    assert s.volume_ml == pytest.approx(4 / 3 * np.pi * 25 * 15 * 30 / 1000, rel=0.02)
    assert s.mean == 50 and s.sd == 0
    np.testing.assert_allclose(s.centroid_lps, [30, 30, 40], atol=1e-6)
    assert s.longest_diameter_mm == pytest.approx(60.0, abs=0.01)  # along z: voxel centres at +-30 mm
    assert s.axial_long_mm == pytest.approx(50.0, abs=0.01)
    assert s.axial_short_mm == pytest.approx(30.0, abs=0.6)
    d = s.axial_long_points[1] - s.axial_long_points[0]
    assert abs(d[2]) < 1e-9  # in one axial slice


def test_segment_stats_on_the_ct_match_brute_force(ct):
    box = np.s_[76:81, 235:270, 145:185]  # the right-lung tumour
    mask = np.zeros(ct.shape, bool)
    mask[box] = ct.array[box] > -400
    s = segment_stats(mask, ct)
    vals = ct.array[mask].astype(np.float64)
    assert s.voxel_count == mask.sum() > 0
    assert (s.mean, s.min, s.max) == (pytest.approx(vals.mean()), vals.min(), vals.max())
    assert s.volume_ml == pytest.approx(mask.sum() * np.prod(ct.spacing) / 1000)
    kji = np.argwhere(mask)
    lps = np.array([lps_of(ct, i, j, k) for k, j, i in kji])
    d = np.sqrt(((lps[:, None] - lps[None]) ** 2).sum(-1)).max()
    assert s.longest_diameter_mm == pytest.approx(d)
    np.testing.assert_allclose(s.centroid_lps, lps.mean(axis=0))
    per_slice = max(np.sqrt(((lps[kji[:, 0] == k][:, None] - lps[kji[:, 0] == k][None]) ** 2).sum(-1)).max()
                    for k in np.unique(kji[:, 0]))
    assert s.axial_long_mm == pytest.approx(per_slice)


# persistence ---------------------------------------------------------------------------------------

def test_measurements_are_saved_beside_the_study_index(tmp_path, monkeypatch):
    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path))
    m1 = Measurement("length", [[0, 0, 0], [3, 4, 0]], label="aorta", series_uid="1.2.3")
    compute(m1)
    m2 = Measurement("ellipse", [[0, 0, 5], [5, 0, 5], [0, 3, 5]], series_uid="1.2.3")
    save_measurements("1.2.3", [m1, m2])
    save_measurements("9.9", [Measurement("point", [[1, 2, 3]])])
    assert (tmp_path / "measurements.json").exists()
    back = load_measurements("1.2.3")
    assert [b.uid for b in back] == [m1.uid, m2.uid]
    assert back[0].label == "aorta" and back[0].values["length_mm"] == 5.0
    np.testing.assert_allclose(back[1].points, m2.points)
    save_measurements("1.2.3", [])
    assert load_measurements("1.2.3") == [] and len(load_measurements("9.9")) == 1
