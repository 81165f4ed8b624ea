"""The built-in demo chest CT phantom: geometry, anatomy in Hounsfield units, nodules, caching."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from viewer.core import demo
from viewer.core.demo import DEMO_NODULES, DemoNodule, demo_volume, generate_demo_array


@pytest.fixture(autouse=True)
def _no_disk_cache(tmp_path, monkeypatch):
    """Keep tests out of the user's cache directory (the cache tests below re-enable a private one)."""
    monkeypatch.setenv("HOUNSFIELD_NO_CACHE", "1")
    monkeypatch.setattr(demo, "_cache_path", lambda: tmp_path / "unused" / "demo.npy")


@pytest.fixture(scope="module")
def vol():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOUNSFIELD_NO_CACHE", "1")
        return demo_volume()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """Point the disk cache at a temporary file and forget what this process cached."""
    path = tmp_path / "cache" / f"demo-{demo.DEMO_VERSION}.npy"
    monkeypatch.setattr(demo, "_cache_path", lambda: path)
    monkeypatch.delenv("HOUNSFIELD_NO_CACHE", raising=False)
    demo._demo_array.cache_clear()
    yield path
    demo._demo_array.cache_clear()


def hu(vol, lps) -> int:
    """HU of the voxel nearest to an LPS point."""
    i, j, k = np.rint(vol.lps_to_index(lps)).astype(int)
    return int(vol.array[k, j, i])


def region(vol, lps, half_mm) -> np.ndarray:
    """Voxels in an axis-aligned box of half size ``half_mm`` around an LPS point."""
    lo = np.rint(vol.lps_to_index(np.subtract(lps, half_mm))).astype(int)
    hi = np.rint(vol.lps_to_index(np.add(lps, half_mm))).astype(int) + 1
    return vol.array[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]


def ring(vol, centre, radius) -> list[int]:
    """HU at 12 points on an axial circle around ``centre``."""
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    return [hu(vol, np.add(centre, (radius * np.cos(a), radius * np.sin(a), 0))) for a in angles]


# --- the volume and its geometry -------------------------------------------------------------------

def test_volume_is_int16_ct_with_soft_tissue_window(vol):
    assert vol.array.dtype == np.int16
    assert vol.array.ndim == 3 and vol.array.shape == demo.DEMO_SHAPE
    assert 100 <= vol.shape[0] <= 140 and 200 <= vol.shape[1] <= 320 and 200 <= vol.shape[2] <= 320
    assert vol.modality == "CT" and vol.units == "HU"
    assert vol.rescale == (1.0, 0.0)
    assert vol.window == (40.0, 400.0)
    assert vol.warnings == []


def test_affine_is_a_standard_axial_lps_affine(vol):
    assert vol.orientation_code() == "LPS"
    np.testing.assert_allclose(vol.direction, np.eye(3), atol=1e-12)
    si, sj, sk = vol.spacing
    assert si == sj and 0.8 <= si <= 1.5
    assert sk == pytest.approx(2.5)
    np.testing.assert_array_equal(vol.affine[3], [0, 0, 0, 1])
    centre = vol.index_to_lps((np.array(vol.shape[::-1]) - 1) / 2)
    np.testing.assert_allclose(centre, 0, atol=2.0)
    # (i, j, k) -> LPS: one step along i goes to the patient's left, j posterior, k superior
    step = vol.index_to_lps((1, 1, 1)) - vol.index_to_lps((0, 0, 0))
    assert step[0] > 0 and step[1] > 0 and step[2] > 0


def test_source_identifies_the_demo_study(vol):
    src = vol.source
    assert src.patient_name == "Demo^Phantom"
    assert src.patient_id == "HOUNSFIELD-DEMO"
    assert src.study_description == "Hounsfield demo"
    assert src.series_description == "Chest CT phantom"
    uids = [src.study_instance_uid, src.series_instance_uid, src.frame_of_reference_uid,
            *src.sop_instance_uids]
    assert len(src.sop_instance_uids) == vol.shape[0]
    assert len(set(uids)) == len(uids)
    for uid in uids:
        assert uid.startswith("2.25.") and len(uid) <= 64
        assert all(part.isdigit() and (part == "0" or not part.startswith("0")) for part in uid.split("."))
    again = demo_volume().source
    assert again.study_instance_uid == src.study_instance_uid  # fixed, not random per call
    assert again.series_instance_uid == src.series_instance_uid


def test_generation_is_deterministic(vol):
    first, second = generate_demo_array(), generate_demo_array()
    assert first.dtype == np.int16
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, vol.array)


def test_each_call_returns_a_private_array():
    a, b = demo_volume(), demo_volume()
    assert not np.shares_memory(a.array, b.array)
    a.array[:] = 0
    assert (b.array == 0).mean() < 0.5


# --- anatomy ---------------------------------------------------------------------------------------

def test_air_outside_the_body_is_minus_1000(vol):
    a = vol.array
    for corner in (a[:, :6, :6], a[:, :6, -6:], a[:, -6:, :6], a[:, -6:, -6:]):
        assert (corner == -1000).all()
    middle_row = a[:, a.shape[1] // 2, :]
    assert (middle_row[:, :4] == -1000).all() and (middle_row[:, -4:] == -1000).all()


def test_body_wall_has_fat_and_muscle(vol):
    # along the patient's right side at mid-chest: skin/fat (~-100) outside, muscle (~+40) inside
    fat = np.median(region(vol, (-158, 0, 0), (2, 4, 10)))
    muscle = np.median(region(vol, (-140, 0, 0), (3, 4, 10)))
    assert -130 <= fat <= -60
    assert 10 <= muscle <= 80


LUNG_SAMPLES = [(-95, 10, -10), (95, 10, -10), (-75, 0, 90), (70, -20, 60), (-90, 40, -40)]


@pytest.mark.parametrize("centre", LUNG_SAMPLES)
def test_lung_parenchyma_is_about_minus_850(vol, centre):
    block = region(vol, centre, (10, 10, 10))
    assert -900 <= np.median(block) <= -800
    aerated = block[block < -700]
    assert 5 < aerated.std() < 60  # texture and noise, not a flat fill


def test_lungs_contain_vessels(vol):
    block = region(vol, (-80, 10, 0), (30, 40, 40)).astype(np.int32)
    vessel = (block > -300).mean()
    assert 0.01 < vessel < 0.3


def test_trachea_is_air_at_the_top_slice_and_branches_at_the_carina(vol):
    top_z = vol.index_to_lps((0, 0, vol.shape[0] - 1))[2]
    assert hu(vol, (0, -1, top_z)) < -900
    assert np.median(region(vol, (0, -1, top_z - 10), (3, 3, 5))) < -900
    # below the carina the midline is no longer airway, but both main bronchi are
    assert hu(vol, (0, 8, 25)) > -500
    assert hu(vol, (-13, 9, 30)) < -800  # right main bronchus
    assert hu(vol, (18, 11, 24)) < -800  # left main bronchus


def test_spine_is_posterior_with_bony_vertebral_bodies(vol):
    column = [hu(vol, (0, 50, z)) for z in np.arange(-120, 121, 2.5)]
    bony = np.mean(np.array(column) > 200)
    assert bony > 0.6  # vertebral bodies (cancellous ~+250, cortex ~+400) between discs
    assert max(column) > 300
    canal = [hu(vol, (0, 78, z)) for z in np.arange(-120, 121, 10)]
    assert -40 <= np.median(canal) <= 80  # cord and CSF


def test_ribs_are_dense_and_separate(vol):
    # along a vertical line through the lateral chest wall, ribs alternate with intercostal muscle
    line = np.array([hu(vol, (-137, 0, z)) for z in np.arange(-60, 30, 1.0)])
    assert line.max() > 500
    assert (line < 120).mean() > 0.3


def test_heart_is_left_and_anterior_with_contrast(vol):
    # the contrast-filled cardiac blood pool lies left of the midline and in front of the spine
    lo = np.rint(vol.lps_to_index((-60, -90, -60))).astype(int)
    hi = np.rint(vol.lps_to_index((90, 20, 0))).astype(int)
    block = vol.array[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    k, j, i = np.nonzero((block > 120) & (block < 260))
    assert len(i) > 5000
    centroid = vol.index_to_lps(np.stack([i + lo[0], j + lo[1], k + lo[2]], axis=1).mean(axis=0))
    assert centroid[0] > 0  # patient's left
    assert centroid[1] < 0  # anterior
    assert np.median(region(vol, (18, -28, -30), (8, 8, 8))) > 120  # blood pool


def test_aorta_arches_from_front_right_to_back_left(vol):
    ascending, descending = hu(vol, (-16, -36, 45)), hu(vol, (28, 36, 0))
    assert ascending > 120 and descending > 120
    assert hu(vol, (12, -17, 80)) > 120  # the arch, above the carina and left of the trachea
    assert hu(vol, (0, 5, 80)) < -900  # the trachea, not crossed by the arch


def test_liver_under_the_right_dome(vol):
    assert 30 <= np.median(region(vol, (-70, 0, -120), (10, 10, 10))) <= 90
    assert np.median(region(vol, (-70, 0, -30), (10, 10, 10))) < -700  # lung above the dome


# --- nodules ---------------------------------------------------------------------------------------

def test_nodule_ground_truth_is_small_frozen_data():
    assert sum(n.kind == "solid" for n in DEMO_NODULES) >= 3
    assert sum(n.kind == "part-solid" for n in DEMO_NODULES) >= 2
    for n in DEMO_NODULES:
        assert isinstance(n, DemoNodule)
        assert 4 <= n.diameter_mm <= 20
        assert len(n.center_lps) == 3
        assert 0 < n.solid_diameter <= n.diameter_mm
        if n.kind == "part-solid":
            assert n.solid_diameter < n.diameter_mm / 2 + 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEMO_NODULES[0].diameter_mm = 1.0


@pytest.mark.parametrize("nodule", DEMO_NODULES, ids=lambda n: f"{n.kind}-{n.diameter_mm:g}mm")
def test_nodule_is_drawn_where_the_ground_truth_says(vol, nodule):
    centre, radius = nodule.center_lps, nodule.diameter_mm / 2
    assert -100 < hu(vol, centre) < 150  # solid (core)
    outside = ring(vol, centre, radius + 4)
    assert np.median(outside) < -600  # surrounded by aerated lung
    if nodule.kind == "part-solid":
        halo = ring(vol, centre, 0.75 * radius)
        assert -700 <= np.median(halo) <= -300  # ground glass around the solid core
        assert nodule.solid_diameter / 2 < 0.75 * radius
    else:
        assert np.median(ring(vol, centre, 0.5 * radius)) > -100


# --- caching ---------------------------------------------------------------------------------------

def test_disk_cache_is_written_then_read(fresh_cache, vol):
    first = demo_volume()
    assert fresh_cache.exists()
    np.testing.assert_array_equal(np.load(fresh_cache), vol.array)
    assert not list(fresh_cache.parent.glob(".demo-*"))  # no temporary file left behind
    # a later process reads the file instead of drawing (shown by planting different pixels)
    np.save(fresh_cache, np.full(demo.DEMO_SHAPE, 7, np.int16))
    demo._demo_array.cache_clear()
    assert (demo_volume().array == 7).all()
    np.testing.assert_array_equal(first.array, vol.array)


def test_corrupt_or_wrong_cache_file_is_regenerated(fresh_cache, vol):
    fresh_cache.parent.mkdir(parents=True)
    fresh_cache.write_bytes(b"not a numpy file")
    np.testing.assert_array_equal(demo_volume().array, vol.array)
    np.testing.assert_array_equal(np.load(fresh_cache), vol.array)
    np.save(fresh_cache, np.zeros((4, 4, 4), np.int16))  # wrong shape
    demo._demo_array.cache_clear()
    np.testing.assert_array_equal(demo_volume().array, vol.array)


def test_unwritable_cache_is_ignored(tmp_path, monkeypatch, vol):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setattr(demo, "_cache_path", lambda: blocker / "demo.npy")
    monkeypatch.delenv("HOUNSFIELD_NO_CACHE", raising=False)
    demo._demo_array.cache_clear()
    try:
        np.testing.assert_array_equal(demo_volume().array, vol.array)
    finally:
        demo._demo_array.cache_clear()


def test_no_cache_environment_variable_skips_the_disk(fresh_cache, monkeypatch):
    monkeypatch.setenv("HOUNSFIELD_NO_CACHE", "1")
    demo_volume()
    assert not fresh_cache.exists()
