"""Loading DICOM into a Volume: voxels and geometry against SimpleITK and against what was written."""

from __future__ import annotations

import glob
import os

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

import viewer
from tests import dicom_factory as F
from tests.conftest import data_path
from viewer.core.loader import SeriesLoader, choose_series


def assert_same_as_sitk(vol: viewer.Volume, image: sitk.Image, *, atol: float = 1e-4) -> None:
    ref = sitk.GetArrayFromImage(image)
    assert vol.array.shape == ref.shape
    np.testing.assert_array_equal(vol.array, ref)
    np.testing.assert_allclose(vol.origin, image.GetOrigin(), atol=atol)
    np.testing.assert_allclose(vol.spacing, image.GetSpacing(), atol=atol)
    np.testing.assert_allclose(vol.direction.ravel(), image.GetDirection(), atol=atol)


def assert_one_sentence(err: BaseException) -> None:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text
    assert text.rstrip().endswith((".", ")")), text
    assert text[0].isupper(), text


# ---------------------------------------------------------------------------------- real series


@pytest.fixture(scope="module")
def chest_ct():
    folder = data_path("chest-ct")
    return folder, viewer.load(folder), F.sitk_series(folder)


def test_chest_ct_matches_simpleitk(chest_ct):
    _, vol, image = chest_ct
    assert_same_as_sitk(vol, image)
    assert vol.shape == (141, 512, 512)


def test_chest_ct_is_int16_hounsfield_units(chest_ct):
    folder, vol, _ = chest_ct
    assert vol.array.dtype == np.int16
    assert vol.modality == "CT" and vol.units == "HU" and vol.rescale == (1.0, 0.0)
    # air in front of the chest, in the middle slice: about -1000 HU
    air = np.median(vol.array[70, :20, 200:300])
    assert -1030 <= air <= -970
    # soft tissue/fluid exists and bone reaches well above 1000 HU
    assert vol.array.max() > 1000
    # HU = stored - 1024, per file, wherever the file's slice landed
    for path in sorted(glob.glob(os.path.join(folder, "*.dcm")))[::35]:
        ds = pydicom.dcmread(path, specific_tags=["ImagePositionPatient", "PixelData", "Rows", "Columns",
                                                  "BitsAllocated", "BitsStored", "PixelRepresentation",
                                                  "SamplesPerPixel", "PhotometricInterpretation"])
        i, j, k = np.rint(vol.lps_to_index(np.asarray(ds.ImagePositionPatient, float))).astype(int)
        assert (i, j) == (0, 0)
        np.testing.assert_array_equal(vol.array[k], ds.pixel_array.astype(np.int32) - 1024)


def test_chest_ct_geometry_ignores_negative_spacing_between_slices(chest_ct):
    _, vol, _ = chest_ct
    np.testing.assert_allclose(vol.spacing, [0.9765625, 0.9765625, 2.0])
    assert vol.affine[2, 2] > 0  # k runs towards the head, as the positions do
    assert vol.orientation_code() == "LPS"
    assert vol.warnings == []


def test_chest_ct_source_info(chest_ct):
    _, vol, _ = chest_ct
    src = vol.source
    assert len(src.sop_instance_uids) == 141 and len(set(src.sop_instance_uids)) == 141
    assert src.series_instance_uid and src.study_instance_uid
    assert os.path.samefile(src.path, data_path("chest-ct"))
    ds = pydicom.dcmread(sorted(glob.glob(os.path.join(src.path, "*.dcm")))[0], stop_before_pixels=True,
                         specific_tags=["SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID"])
    assert (src.series_instance_uid, src.study_instance_uid) == (ds.SeriesInstanceUID, ds.StudyInstanceUID)
    assert ds.SOPInstanceUID in src.sop_instance_uids


def test_brain_mr_matches_simpleitk(brain_mr_dir):
    vol = viewer.load(brain_mr_dir)
    assert_same_as_sitk(vol, F.sitk_series(brain_mr_dir))
    assert vol.modality == "MR" and vol.array.dtype == np.uint16
    assert vol.shape == (120, 512, 512)
    np.testing.assert_allclose(vol.spacing, [0.41015625, 0.41015625, 1.5], atol=1e-6)


def test_progress_reports_every_slice(tmp_path):
    ws = F.write_series(tmp_path, F.phantom((9, 16, 16)), F.axial())
    calls = []
    viewer.load(tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(n, 9) for n in range(1, 10)]
    assert len(ws.files) == 9


# ---------------------------------------------------------------------------------- generated series


ORDERINGS = [("ordered", "ordered"), ("reversed", "reversed"), ("shuffled", "shuffled"),
             ("reversed", "shuffled"), ("shuffled", "ordered")]


@pytest.mark.parametrize(("names", "numbers"), ORDERINGS)
@pytest.mark.parametrize("grid", ["axial", "oblique", "sagittal", "oblique-reversed"])
def test_generated_ct_equals_written_volume_and_simpleitk(tmp_path, grid, names, numbers):
    g = {"axial": F.axial(), "oblique": F.oblique(), "sagittal": F.sagittal(),
         "oblique-reversed": F.oblique(ax=170, ay=30, az=-120)}[grid]
    stored = F.phantom()
    ws = F.write_series(tmp_path, stored, g, names=names, instance_numbers=numbers, seed=3)
    vol = viewer.load(tmp_path)
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, stored.astype(np.int32) - 1024)
    np.testing.assert_allclose(vol.affine, ws.affine, atol=1e-6)
    for k in (0, 7, 19):
        np.testing.assert_allclose(vol.index_to_lps([0, 0, k]), ws.positions[k], atol=1e-6)
    np.testing.assert_allclose(vol.index_to_lps([63, 47, 0]),
                               ws.positions[0] + 63 * 0.8 * g.row_dir + 47 * 0.9 * g.col_dir, atol=1e-6)
    assert vol.warnings == []
    assert_same_as_sitk(vol, F.sitk_series(tmp_path))


@pytest.mark.parametrize("variant", ["mr", "implicit", "no-preamble", "rle", "bits12", "signed"])
def test_generated_variants_load_exactly(tmp_path, variant):
    stored = F.phantom((12, 40, 36), modality="MR" if variant == "mr" else "CT")
    kw = {
        "mr": {"modality": "MR"},
        "implicit": {"transfer_syntax": pydicom.uid.ImplicitVRLittleEndian},
        "no-preamble": {"preamble": False},
        "rle": {"transfer_syntax": F.RLELossless},
        "bits12": {"bits_stored": 12},
        "signed": {"intercept": 0.0},
    }[variant]
    if variant == "signed":
        stored = (stored.astype(np.int32) - 1024).astype(np.int16)
    if variant == "bits12":
        # garbage above bit 12 must be masked away as the pixel module says
        F.write_series(tmp_path, stored | np.uint16(0xA000), F.oblique(), names="shuffled", **kw)
    else:
        F.write_series(tmp_path, stored, F.oblique(), names="shuffled", **kw)
    vol = viewer.load(tmp_path)
    if variant == "mr":
        assert vol.array.dtype == np.uint16 and vol.modality == "MR" and vol.rescale == (1.0, 0.0)
        np.testing.assert_array_equal(vol.array, stored)
    elif variant == "signed":
        np.testing.assert_array_equal(vol.array, stored)
    else:
        assert vol.array.dtype == np.int16
        np.testing.assert_array_equal(vol.array, stored.astype(np.int32) - 1024)
    if variant != "bits12":
        assert_same_as_sitk(vol, F.sitk_series(tmp_path))


def test_per_slice_rescale_ct_is_exact_hu(tmp_path):
    stored = F.phantom()
    slopes = [1, 2, 0.5, 1, 1] * 4
    intercepts = [-1024, -2048, -1000, 0, -1024.0] * 4
    stored[2::5] &= ~np.uint16(1)  # slope 0.5 slices: even stored values give integer HU
    ws = F.write_series(tmp_path, stored, F.oblique(), slope=slopes, intercept=intercepts, names="shuffled")
    vol = viewer.load(tmp_path)
    assert vol.array.dtype == np.int16 and vol.units == "HU" and vol.rescale == (1.0, 0.0)
    expected = ws.real(stored)
    assert np.all(expected == np.rint(expected))
    np.testing.assert_array_equal(vol.array, expected.astype(np.int16))
    for k in (1, 2, 3):  # the per-slice rescales really differ from the first slice's
        assert not np.array_equal(vol.array[k], stored[k].astype(np.int32) - 1024)


def test_per_slice_rescale_ct_rounds_fractional_hu(tmp_path):
    stored = F.phantom((4, 16, 16))
    ws = F.write_series(tmp_path, stored, F.axial(), slope=[0.5, 1, 1, 1], intercept=[-1000, -1024.4, -1024, -1024])
    vol = viewer.load(tmp_path)
    np.testing.assert_array_equal(vol.array, np.rint(ws.real(stored)).astype(np.int16))


def test_per_slice_rescale_mr_becomes_real_values(tmp_path):
    stored = F.phantom((6, 16, 16), modality="MR")
    ws = F.write_series(tmp_path, stored, F.axial(), modality="MR", slope=[1, 2, 0.5, 1, 1, 1.5],
                        intercept=[0, 0, 10, 0.25, 0, -3])
    vol = viewer.load(tmp_path)
    assert vol.array.dtype == np.float32 and vol.rescale == (1.0, 0.0)
    np.testing.assert_allclose(vol.array, ws.real(stored), rtol=1e-6)


def test_shared_mr_rescale_is_kept_not_applied(tmp_path):
    stored = F.phantom((6, 16, 16), modality="MR")
    F.write_series(tmp_path, stored, F.axial(), modality="MR", slope=2.5, intercept=-7)
    vol = viewer.load(tmp_path)
    assert vol.array.dtype == np.uint16 and vol.rescale == (2.5, -7.0)
    np.testing.assert_array_equal(vol.array, stored)
    np.testing.assert_allclose(vol.real_values(), stored * 2.5 - 7, rtol=1e-6)


@pytest.mark.parametrize("missing", [[7], [7, 8], [3, 12]])
def test_missing_slice_leaves_a_blank_slot_at_the_right_k(tmp_path, missing):
    stored = F.phantom()
    ws = F.write_series(tmp_path, stored, F.oblique(), omit=missing, names="shuffled")
    vol = viewer.load(tmp_path)
    assert vol.shape == stored.shape
    np.testing.assert_allclose(vol.affine, ws.affine, atol=1e-6)
    for k in range(stored.shape[0]):
        if k in missing:
            assert np.all(vol.array[k] == -1024)
        else:
            np.testing.assert_array_equal(vol.array[k], stored[k].astype(np.int32) - 1024)
    runs = [[7, 8]] if missing == [7, 8] else [[m] for m in missing]
    gaps = [w for w in vol.warnings if "missing" in w]
    assert len(gaps) == len(runs)
    d = ws.positions @ F.oblique().normal  # distance along the normal of each written slot
    for run, text in zip(runs, gaps):
        assert text.startswith(f"{len(run)} slice(s) missing between {d[run[0] - 1]:.1f} and {d[run[-1] + 1]:.1f} mm")


def test_irregular_spacing_is_reported(tmp_path):
    stored = F.phantom((6, 16, 16))
    ws = F.write_series(tmp_path, stored, F.axial())
    ds = pydicom.dcmread(ws.paths[5])
    z = ws.positions[5] + np.array([0, 0, 1.2])  # 3.7 mm instead of 2.5 before the last slice
    ds.ImagePositionPatient = [f"{x:.6f}" for x in z]
    ds.save_as(ws.paths[5])
    vol = viewer.load(tmp_path)
    assert vol.shape[0] == 6
    assert any("not uniform" in w for w in vol.warnings)
    np.testing.assert_allclose(vol.index_to_lps([0, 0, 5]), z, atol=1e-6)  # both ends exact


@pytest.mark.parametrize("tilt", [15.0, -22.5])
def test_gantry_tilt_keeps_exact_sheared_geometry(tmp_path, tilt):
    stored = F.phantom()
    grid = F.axial(tilt_degrees=tilt)
    ws = F.write_series(tmp_path, stored, grid, names="reversed")
    vol = viewer.load(tmp_path)
    np.testing.assert_array_equal(vol.array, stored.astype(np.int32) - 1024)
    np.testing.assert_allclose(vol.affine[:3, 2], grid.step, atol=1e-6)
    assert abs(vol.affine[1, 2]) > 0.5  # really sheared along the column (y) direction
    for k in range(stored.shape[0]):
        np.testing.assert_allclose(vol.index_to_lps([0, 0, k]), ws.positions[k], atol=1e-6)
    tilt_notes = [w for w in vol.warnings if "tilt" in w.lower()]
    assert len(tilt_notes) == 1 and f"{abs(tilt):.2f}" in tilt_notes[0]
    info = viewer.scan(tmp_path)
    from viewer.info import series_summary

    assert series_summary(info.image_series[0])["gantry_tilt_degrees"] == pytest.approx(abs(tilt), abs=1e-3)


def test_tilted_oblique_series(tmp_path):
    grid = F.oblique(ax=5, ay=10, az=-8, tilt_degrees=12)
    ws = F.write_series(tmp_path, F.phantom(), grid, names="shuffled")
    vol = viewer.load(tmp_path)
    np.testing.assert_allclose(vol.affine, ws.affine, atol=1e-6)
    assert any("12.00 degrees" in w for w in vol.warnings)


def test_two_acquisitions_load_as_two_volumes(tmp_path):
    grid = F.oblique()
    s1, s2 = F.phantom(seed=1), F.phantom(seed=2)
    a = F.write_series(tmp_path, s1, grid, prefix="A", acquisition_number=1, names="shuffled")
    F.write_series(tmp_path, s2, grid, prefix="B", acquisition_number=2, series_uid=a.series_uid,
                   study_uid=a.study_uid, frame_uid=a.frame_uid, names="reversed")
    v1 = viewer.load(tmp_path, series=f"{a.series_uid}:1")
    v2 = viewer.load(tmp_path, series=f"{a.series_uid}:2")
    np.testing.assert_array_equal(v1.array, s1.astype(np.int32) - 1024)
    np.testing.assert_array_equal(v2.array, s2.astype(np.int32) - 1024)
    np.testing.assert_allclose(v1.affine, a.affine, atol=1e-6)
    np.testing.assert_allclose(v2.affine, a.affine, atol=1e-6)
    assert not any("share a position" in w for w in v1.warnings + v2.warnings)
    by_uid = viewer.load(tmp_path, series=a.series_uid)  # the DICOM UID: one part, with a note
    assert by_uid.shape == v1.shape
    assert any("split into 2 volumes" in w and "acquisition" in w for w in by_uid.warnings)


def test_mixed_sizes_load_by_id_and_by_uid(tmp_path):
    big, small = F.phantom((10, 32, 40)), F.phantom((6, 16, 16), seed=4)
    a = F.write_series(tmp_path, big, F.axial(), prefix="A")
    b = F.write_series(tmp_path, small, F.oblique(), prefix="B", series_uid=a.series_uid, study_uid=a.study_uid)
    result = viewer.scan(tmp_path)
    small_id = next(s.id for s in result.image_series if len(s.frames) == 6)
    vs = viewer.load(tmp_path, series=small_id)
    np.testing.assert_array_equal(vs.array, small.astype(np.int32) - 1024)
    np.testing.assert_allclose(vs.affine, b.affine, atol=1e-6)
    vb = viewer.load(tmp_path, series=a.series_uid)
    np.testing.assert_array_equal(vb.array, big.astype(np.int32) - 1024)
    default = viewer.load(tmp_path)
    assert default.shape == big.shape
    assert any("2 image series found" in w for w in default.warnings)


def test_unknown_series_raises(tmp_path):
    F.write_series(tmp_path, F.phantom((3, 8, 8)), F.axial())
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(tmp_path, series="1.2.3.4.5.6.7")
    assert_one_sentence(err.value)
    assert "1.2.3.4.5.6.7" in str(err.value)


def test_series_choice_picks_the_largest_and_says_so(tmp_path):
    F.write_series(tmp_path / "a", F.phantom((4, 8, 8)), F.axial())
    big = F.write_series(tmp_path / "b", F.phantom((7, 8, 8)), F.axial())
    result = viewer.scan(tmp_path)
    chosen, notes = choose_series(result, None)
    assert chosen.uid == big.series_uid and len(notes) == 1


def test_series_loader_allocates_before_decoding(tmp_path):
    stored = F.phantom((8, 16, 16))
    F.write_series(tmp_path, stored, F.axial(), omit=[5])
    chosen, _ = choose_series(viewer.scan(tmp_path), None)
    loader = SeriesLoader(chosen)
    assert loader.volume.shape == (8, 16, 16) and not loader.loaded.any()
    seen = []
    vol = loader.run(on_slice=seen.append)
    assert sorted(seen) == [0, 1, 2, 3, 4, 6, 7]
    assert list(loader.loaded) == [True] * 5 + [False] + [True] * 2
    np.testing.assert_array_equal(vol.array[6], stored[6].astype(np.int32) - 1024)


def test_cancelled_load_raises(tmp_path):
    F.write_series(tmp_path, F.phantom((8, 16, 16)), F.axial())
    chosen, _ = choose_series(viewer.scan(tmp_path), None)
    loader = SeriesLoader(chosen)
    loader.cancel()
    from viewer.core.dicom.decode import LoadCancelled

    with pytest.raises(LoadCancelled):
        loader.run()
    assert issubclass(LoadCancelled, viewer.HounsfieldError)


def test_single_slice_uses_slice_thickness(tmp_path):
    grid = F.oblique(spacing=(0.5, 0.6, 3.0))
    ws = F.write_series(tmp_path, F.phantom((1, 16, 16)), grid)
    vol = viewer.load(ws.paths[0])
    assert vol.shape == (1, 16, 16)
    np.testing.assert_allclose(vol.affine[:3, 2], grid.normal * 3.0, atol=1e-6)


# ---------------------------------------------------------------------------------- enhanced multi-frame


def _frame_positions(ds) -> np.ndarray:
    return np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in ds.PerFrameFunctionalGroupsSequence],
                    dtype=float)


def test_philips_field_map_loads_as_two_volumes_of_32():
    path = data_path("codecs", "enhanced-multiframe", "philips-fmap.dcm")
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array
    positions = _frame_positions(ds)
    result = viewer.scan(path)
    parts = result.image_series
    assert [len(s.frames) for s in parts] == [32, 32]
    assert {s.split_reason for s in parts} == {"echo/phase"}
    kinds = set()
    for s in parts:
        vol = viewer.load(path, series=s.id)
        assert vol.shape == (32, 64, 64)
        np.testing.assert_allclose(vol.spacing, [4, 4, 4], atol=1e-3)
        first = s.frames[0].frame.index
        group = range(0, 32) if first < 32 else range(32, 64)  # magnitude frames 0-31, field map 32-63
        kinds.add(group.start)
        # every slice sits where the frame's own ImagePositionPatient says, with that frame's pixels
        for k in range(32):
            lps = vol.index_to_lps([0, 0, k])
            idx = min(group, key=lambda f: np.linalg.norm(positions[f] - lps))
            np.testing.assert_allclose(positions[idx], lps, atol=5e-3)
            np.testing.assert_array_equal(vol.array[k], frames[idx])
        fg = ds.PerFrameFunctionalGroupsSequence[group.start].PixelValueTransformationSequence[0]
        assert vol.rescale == pytest.approx((float(fg.RescaleSlope), float(fg.RescaleIntercept)))
    assert kinds == {0, 32}


def test_siemens_xa10_enhanced_loads_four_volumes_of_six():
    folder = data_path("codecs", "enhanced-multiframe")
    files = sorted(glob.glob(str(folder / "siemens-xa10-6_*.dcm")))
    assert len(files) == 4
    result = viewer.scan(folder)
    parts = [s for s in result.image_series if s.first.path in files]
    assert [len(s.frames) for s in parts] == [6, 6, 6, 6]
    for s in parts:
        vol = viewer.load(folder, series=s.id)
        assert vol.shape == (6, 64, 64)
        ds = pydicom.dcmread(s.first.path)
        positions = _frame_positions(ds)
        frames = ds.pixel_array
        normal = np.cross(*np.reshape(
            ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
            if "PlaneOrientationSequence" in ds.SharedFunctionalGroupsSequence[0]
            else ds.PerFrameFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient,
            (2, 3)).astype(float))
        order = np.argsort(positions @ normal)
        for k, f in enumerate(order):
            np.testing.assert_allclose(vol.index_to_lps([0, 0, k]), positions[f], atol=1e-3)
            np.testing.assert_array_equal(vol.array[k], frames[f])


def test_pydicom_data_enhanced_ct():
    path = get_testdata_file("eCT_Supplemental.dcm")
    if path is None:
        pytest.skip("pydicom-data's eCT_Supplemental.dcm is not installed")
    ds = pydicom.dcmread(path)
    vol = viewer.load(path)
    positions = _frame_positions(ds)
    assert vol.shape == (2, 512, 512) and vol.array.dtype == np.int16 and vol.modality == "CT"
    frames = ds.pixel_array.astype(np.int32)
    pvt = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    for k in range(2):
        lps = vol.index_to_lps([0, 0, k])
        f = int(np.argmin(np.linalg.norm(positions - lps, axis=1)))
        np.testing.assert_allclose(positions[f], lps, atol=1e-4)
        np.testing.assert_array_equal(vol.array[k], frames[f] * int(float(pvt.RescaleSlope))
                                      + int(float(pvt.RescaleIntercept)))
    np.testing.assert_allclose(vol.spacing[2], np.linalg.norm(positions[1] - positions[0]))


# ---------------------------------------------------------------------------------- non-image objects


def test_non_image_objects_next_to_images_are_not_stacked(tmp_path):
    stored = F.phantom((5, 16, 16))
    ws = F.write_series(tmp_path, stored, F.axial())
    F.write_non_image(tmp_path, "SR", study_uid=ws.study_uid)
    F.write_non_image(tmp_path, "SEG", study_uid=ws.study_uid, rows=16, columns=16)
    vol = viewer.load(tmp_path)
    np.testing.assert_array_equal(vol.array, stored.astype(np.int32) - 1024)
    assert vol.source.series_instance_uid == ws.series_uid


def test_folder_with_only_an_sr_raises_a_sentence(tmp_path):
    F.write_non_image(tmp_path, "SR")
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(tmp_path)
    assert_one_sentence(err.value)
    assert "Comprehensive SR Storage" in str(err.value)


def test_asking_for_a_non_image_series_raises(tmp_path):
    F.write_series(tmp_path, F.phantom((3, 8, 8)), F.axial())
    sr = pydicom.dcmread(F.write_non_image(tmp_path, "SR"))
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(tmp_path, series=sr.SeriesInstanceUID)
    assert_one_sentence(err.value)


def test_real_sr_and_seg_folder_raises():
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(data_path("dicom-objects", "dcmqi-sr-example"))
    assert_one_sentence(err.value)
    assert "Segmentation Storage" in str(err.value) and "SR Storage" in str(err.value)


def test_real_rtstruct_folder_loads_only_the_ct():
    vol = viewer.load(data_path("dicom-objects", "dicompyler-rt"))
    assert vol.modality == "CT" and vol.shape[0] == 1


# ---------------------------------------------------------------------------------- bad input


def test_missing_path(tmp_path):
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(tmp_path / "no-such-study")
    assert_one_sentence(err.value)
    assert "no-such-study" in str(err.value)


def test_empty_folder(tmp_path):
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(tmp_path)
    assert_one_sentence(err.value)
    assert "No DICOM images" in str(err.value)


def test_non_dicom_file(tmp_path):
    path = F.write_not_dicom(tmp_path, "image.dcm")
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(path)
    assert_one_sentence(err.value)


@pytest.mark.parametrize("keep", [300, 900, "pixels"])
def test_truncated_file_alone_raises(tmp_path, keep):
    ws = F.write_series(tmp_path, F.phantom((1, 32, 32)), F.axial())
    size = os.path.getsize(ws.paths[0])
    F.truncate(ws.paths[0], size - 700 if keep == "pixels" else keep)
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(ws.paths[0])
    assert_one_sentence(err.value)
    assert "could not be" in str(err.value)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the damage it tolerates
@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm", "JPEG-lossy.dcm",
                                  "emri_small_jpeg_2k_lossless_too_short.dcm", "badVR.dcm"])
def test_broken_pydicom_test_files_raise(name):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(path)
    assert_one_sentence(err.value)


def test_undecodable_series_raises(tmp_path):
    ws = F.write_series(tmp_path, F.phantom((3, 16, 16)), F.axial())
    for p in ws.files:
        F.make_undecodable(p)
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(tmp_path)
    assert_one_sentence(err.value)
    assert "None of the 3 images" in str(err.value)


def test_folder_with_some_broken_files_loads_the_rest(tmp_path):
    stored = F.phantom()
    ws = F.write_series(tmp_path, stored, F.axial())
    F.truncate(ws.paths[4], os.path.getsize(ws.paths[4]) - 900)  # cut inside the pixel data
    F.truncate(ws.paths[9], 400)  # cut inside the header
    F.make_undecodable(ws.paths[13])
    F.write_not_dicom(tmp_path, "scanner-log.bin")
    vol = viewer.load(tmp_path)
    assert vol.shape == stored.shape
    np.testing.assert_allclose(vol.affine, ws.affine, atol=1e-6)
    for k in range(20):
        if k in (4, 9, 13):
            assert np.all(vol.array[k] == -1024), k
        else:
            np.testing.assert_array_equal(vol.array[k], stored[k].astype(np.int32) - 1024)
    text = " | ".join(vol.warnings)
    assert os.path.basename(ws.paths[4]) in text
    assert os.path.basename(ws.paths[9]) in text
    assert os.path.basename(ws.paths[13]) in text
    assert "scanner-log.bin" not in text  # not DICOM at all: quietly skipped
    assert any("missing" in w for w in vol.warnings)  # the header-cut slice leaves a gap
    assert all("\n" not in w for w in vol.warnings)


# ---------------------------------------------------------------------------------- DICOMDIR


def test_dicomdir_written_by_pydicom_fileset(tmp_path):
    from pydicom.fileset import FileSet

    stored = F.phantom((10, 24, 20))
    ws = F.write_series(tmp_path / "src", stored, F.oblique(), names="shuffled")
    fs = FileSet()
    for p in ws.files:
        fs.add(p)
    fs.write(tmp_path / "media")
    dicomdir = tmp_path / "media" / "DICOMDIR"
    assert dicomdir.is_file()
    vol = viewer.load(dicomdir)
    np.testing.assert_array_equal(vol.array, stored.astype(np.int32) - 1024)
    np.testing.assert_allclose(vol.affine, ws.affine, atol=1e-6)
    assert vol.source.series_instance_uid == ws.series_uid
    assert vol.source.path.startswith(str(tmp_path / "media"))  # the copies the DICOMDIR points to


def test_rt_dose_frames_lie_at_their_grid_offsets_and_scale_to_gray():
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    vol = viewer.load(path)
    offsets = [float(x) for x in ds.GridFrameOffsetVector]
    assert vol.shape[0] == len(offsets) == int(ds.NumberOfFrames)
    # k steps by the grid offsets along the slice normal, starting at ImagePositionPatient
    assert np.allclose(vol.origin, [float(x) for x in ds.ImagePositionPatient])
    assert np.isclose(vol.spacing[2], offsets[1] - offsets[0])
    assert vol.rescale == (float(ds.DoseGridScaling), 0.0)
    assert np.allclose(vol.real_values(), ds.pixel_array * float(ds.DoseGridScaling))


# ---------------------------------------------------------------------------------- declared sizes


def _rewrite(path, **values) -> None:
    ds = pydicom.dcmread(path)
    for name, value in values.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("frames", [2147483647, 3])
def test_more_frames_than_the_pixel_data_holds_is_refused_before_reading_them(tmp_path, frames):
    # 2147483647 frames made header reading loop once per declared frame (a hang)
    ws = F.write_series(tmp_path, F.phantom((2, 32, 32)), F.axial())
    _rewrite(ws.paths[0], NumberOfFrames=frames)
    result = viewer.scan(tmp_path)
    assert len(result.errors) == 1, result.errors
    assert os.path.basename(ws.paths[0]) in result.errors[0] and str(frames) in result.errors[0]
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(ws.paths[0])
    assert_one_sentence(err.value)
    assert str(frames) in str(err.value)  # the sentence says why


def test_huge_number_of_frames_without_an_image_size_is_refused(tmp_path):
    # Rows 0 and Columns 0 make every frame zero bytes: the file size still bounds the frames
    ws = F.write_series(tmp_path, F.phantom((2, 32, 32)), F.axial())
    _rewrite(ws.paths[0], NumberOfFrames=2147483647, Rows=0, Columns=0)
    result = viewer.scan(tmp_path)
    assert len(result.errors) == 1 and "2147483647" in result.errors[0], result.errors


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", ["emri_small_jpeg_ls_lossless.dcm", "emri_small_RLE.dcm"])
def test_compressed_multiframe_declaring_more_frames_than_fragments_is_refused(tmp_path, name):
    src = get_testdata_file(name)
    if src is None:
        pytest.skip(f"{name} is not installed")
    ds = pydicom.dcmread(src)
    ds.NumberOfFrames = 2147483647
    ds.save_as(tmp_path / name)
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(tmp_path / name)
    assert_one_sentence(err.value)


def test_enhanced_multiframe_declaring_huge_frames_is_refused(tmp_path):
    src = data_path("codecs", "enhanced-multiframe", "siemens-xa10-6_1.dcm")
    ds = pydicom.dcmread(src)
    ds.NumberOfFrames = 2147483647  # the functional groups describe 6 frames
    ds.save_as(tmp_path / "x.dcm")
    result = viewer.scan(tmp_path)
    assert len(result.errors) == 1 and "2147483647" in result.errors[0]


def test_huge_rows_and_columns_of_uncompressed_files_are_refused_before_allocating(tmp_path):
    # three 65535 x 65535 slices sized a 25 GB volume before a pixel was read: a raw MemoryError
    ws = F.write_series(tmp_path, F.phantom((3, 16, 16)), F.axial())
    for p in ws.files:
        _rewrite(p, Rows=65535, Columns=65535)
    result = viewer.scan(tmp_path)
    assert len(result.errors) == 3 and all("65535" in e for e in result.errors), result.errors
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(tmp_path)
    assert_one_sentence(err.value)


def test_a_compressed_series_larger_than_memory_is_refused_in_one_sentence(tmp_path):
    import psutil

    # RLE gives no size to check against the file: the volume (40 x 65535 x 65535 int16, 343 GB) is
    # checked against the machine's memory before it is allocated
    ws = F.write_series(tmp_path, F.phantom((40, 16, 16)), F.axial(), transfer_syntax=F.RLELossless)
    for p in ws.files:
        _rewrite(p, Rows=65535, Columns=65535)
    assert 40 * 65535 * 65535 * 2 > psutil.virtual_memory().total
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(tmp_path)
    assert_one_sentence(err.value)
    assert "memory" in str(err.value) and "GB" in str(err.value)


def test_memory_check_respects_the_process_address_space_limit(tmp_path):
    import subprocess
    import sys

    # 5 RLE slices declared 16384 x 16384: 2.7 GB, more than a process limited to 2 GB of address space
    # may allocate (numpy raised a bare MemoryError there, though the machine had the memory free)
    ws = F.write_series(tmp_path, F.phantom((5, 16, 16)), F.axial(), transfer_syntax=F.RLELossless)
    for p in ws.files:
        _rewrite(p, Rows=16384, Columns=16384)
    child = ("import resource, sys, viewer\n"
             "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
             "try:\n"
             "    viewer.load(sys.argv[1])\n"
             "except viewer.HounsfieldError as err:\n"
             "    print('ERROR', err)\n")
    run = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-1500:]
    assert run.stdout.startswith("ERROR ") and "memory" in run.stdout and "2.7 GB" in run.stdout, run.stdout


def test_enhanced_multiframe_with_an_empty_shared_functional_groups_sequence_loads(tmp_path):
    # found by the fuzz test: an empty (present, zero items) shared sequence failed the file ("list index
    # out of range"); the per-frame groups carry everything needed
    ds = pydicom.dcmread(data_path("codecs", "enhanced-multiframe", "siemens-xa10-6_1.dcm"))
    reference = viewer.load(data_path("codecs", "enhanced-multiframe", "siemens-xa10-6_1.dcm"))
    ds.SharedFunctionalGroupsSequence = []
    ds.save_as(tmp_path / "x.dcm")
    vol = viewer.load(tmp_path)
    assert vol.shape == reference.shape
    np.testing.assert_array_equal(vol.array, reference.array)


def test_unsupported_bits_allocated_in_a_ct_says_so_once(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.BitsAllocated = 12
    ds.save_as(tmp_path / "x.dcm")
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(tmp_path)
    assert_one_sentence(err.value)
    assert "12 bits per pixel are not supported" in str(err.value) and "HounsfieldError" not in str(err.value)


# ------------------------------------------------------- damaged rescale (NaN / infinite slope or intercept)


def _chest_ct_copy(tmp_path, n: int = 6) -> list[str]:
    import shutil

    paths = []
    for src in sorted(glob.glob(os.path.join(data_path("chest-ct"), "*.dcm")))[:n]:
        paths.append(shutil.copy(src, tmp_path / os.path.basename(src)))
    return paths


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom: 'NaN' is not a valid DS
@pytest.mark.parametrize("values", [{"RescaleSlope": "NaN"}, {"RescaleIntercept": "inf"},
                                    {"RescaleSlope": "-Infinity", "RescaleIntercept": "nan"}])
def test_ct_whose_every_rescale_is_not_finite_is_refused(tmp_path, values):
    # NaN or inf times a stored value is no Hounsfield unit: a CT loaded with an assumed rescale would
    # show HU values silently wrong
    for p in _chest_ct_copy(tmp_path, 3):
        _rewrite(p, **values)
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(tmp_path)
    assert_one_sentence(err.value)
    assert "RescaleSlope" in str(err.value) or "RescaleIntercept" in str(err.value), str(err.value)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ct_slices_with_a_non_finite_rescale_are_left_out_with_a_warning(tmp_path):
    paths = _chest_ct_copy(tmp_path, 8)
    reference = viewer.load(tmp_path)
    _rewrite(paths[2], RescaleIntercept="NaN")
    _rewrite(paths[5], RescaleSlope="inf")
    vol = viewer.load(tmp_path)
    assert vol.shape == reference.shape and vol.units == "HU"
    np.testing.assert_allclose(vol.affine, reference.affine)
    said = [w for w in vol.warnings if "RescaleSlope" in w or "RescaleIntercept" in w]
    assert len(said) == 1 and said[0].startswith("2 image(s)") and "left out" in said[0], vol.warnings
    # the damaged files' slices are blank (a gap), the others exactly as before
    damaged = {k for k in range(vol.shape[0]) if not np.array_equal(vol.array[k], reference.array[k])}
    assert len(damaged) == 2
    for k in damaged:
        assert np.all(vol.array[k] == vol.array[k].flat[0])
        assert not np.all(reference.array[k] == reference.array[k].flat[0])
    assert len(vol.source.sop_instance_uids) == 6


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_non_ct_whose_every_rescale_is_not_finite_keeps_stored_values_with_a_warning(tmp_path):
    # outside CT the values are not calibrated units: show the stored values (slope 1, intercept 0), and say so
    paths = _chest_ct_copy(tmp_path, 3)
    stored = []
    for p in paths:
        ds = pydicom.dcmread(p)
        stored.append(ds.pixel_array)
        ds.Modality = "MR"
        ds.RescaleSlope = "NaN"
        if "RescaleType" in ds:
            del ds.RescaleType
        ds.save_as(p, enforce_file_format=True)
    vol = viewer.load(tmp_path)
    assert vol.rescale == (1.0, 0.0) and vol.units == ""
    assert np.isfinite(vol.real_values()).all()
    assert any("RescaleSlope" in w and "stored" in w for w in vol.warnings), vol.warnings
    for k in range(3):  # each slice holds one file's stored values, unchanged
        assert any(np.array_equal(vol.array[k], a) for a in stored)


def test_memory_refusal_quotes_a_hostile_series_id_shortly():
    from viewer.core.loader import check_memory

    hostile = "1.2.3\x1b[31m\n" + "9" * 6000
    with pytest.raises(viewer.HounsfieldError) as err:
        check_memory(hostile, (2147483647, 65535, 65535), np.dtype(np.int16))
    assert_one_sentence(err.value)
    assert len(str(err.value)) < 400 and "\x1b" not in str(err.value), str(err.value)[:200]
