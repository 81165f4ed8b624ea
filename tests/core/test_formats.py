"""NIfTI / NRRD / MetaImage: round trips, LPS <-> RAS at the file boundary, tilt resampling, errors."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
import SimpleITK as sitk

import viewer
from tests import dicom_factory as F
from tests.conftest import data_path
from viewer.core.formats import is_sheared, read_volume, write_volume
from viewer.core.volume import Volume, affine_from

SUFFIXES = [".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"]
FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS <-> RAS


def _volume(dtype=np.int16, modality="CT", oblique=True) -> Volume:
    rng = np.random.default_rng(1)
    if dtype == np.float32:
        arr = rng.normal(size=(7, 9, 11)).astype(np.float32)
    elif dtype == np.uint16:
        arr = rng.integers(0, 4000, size=(7, 9, 11)).astype(np.uint16)
    else:
        arr = rng.integers(-1024, 3000, size=(7, 9, 11)).astype(dtype)
    direction = F.rotation(12, -25, 40) if oblique else np.eye(3)
    affine = affine_from((0.7, 0.8, 2.5), (-120.5, 33.25, -71.0), direction)
    return Volume(arr, affine, modality=modality, units="HU" if modality == "CT" else "")


def _nifti_header(path) -> dict:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read(348)
    assert struct.unpack("<i", raw[:4])[0] == 348
    dims = struct.unpack("<8h", raw[40:56])
    return {
        "dim": dims[1:1 + dims[0]],
        "pixdim": struct.unpack("<8f", raw[76:108]),
        "qform_code": struct.unpack("<h", raw[252:254])[0],
        "sform_code": struct.unpack("<h", raw[254:256])[0],
        "srow": np.array([struct.unpack("<4f", raw[280 + 16 * r:296 + 16 * r]) for r in range(3)]),
        "magic": raw[344:348],
    }


def _write_nifti(path, array: np.ndarray, ras_affine: np.ndarray) -> None:
    """A minimal NIfTI-1 file (int16, sform only) written by hand: no SimpleITK involved."""
    k, j, i = array.shape
    spacing = np.linalg.norm(ras_affine[:3, :3], axis=0)
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, 3, i, j, k, 1, 1, 1, 1)
    struct.pack_into("<hh", hdr, 70, 4, 16)  # datatype int16, bitpix
    struct.pack_into("<8f", hdr, 76, 1.0, *spacing, 1, 1, 1, 1)
    struct.pack_into("<f", hdr, 108, 352.0)  # vox_offset
    struct.pack_into("<f", hdr, 112, 1.0)  # scl_slope
    struct.pack_into("<B", hdr, 123, 2)  # xyzt_units: mm
    struct.pack_into("<hh", hdr, 252, 0, 1)  # qform_code 0, sform_code 1 (scanner)
    for r in range(3):
        struct.pack_into("<4f", hdr, 280 + 16 * r, *ras_affine[r])
    hdr[344:348] = b"n+1\0"
    with open(path, "wb") as fh:
        fh.write(bytes(hdr) + b"\0\0\0\0" + array.astype("<i2").tobytes())


# ---------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32])
def test_round_trip_keeps_voxels_and_affine(tmp_path, suffix, dtype):
    vol = _volume(dtype, modality="CT" if dtype == np.int16 else "MR")
    path = tmp_path / f"vol{suffix}"
    viewer.save(vol, path)
    back = viewer.load(path)
    assert back.array.dtype == vol.array.dtype
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)
    assert back.orientation_code() == vol.orientation_code()
    if dtype == np.int16:
        assert back.modality == "CT" and back.units == "HU"
    else:
        assert back.modality != "CT"


@pytest.mark.parametrize("suffix", [".mhd", ".nhdr", ".nii", ".nii.gz", ".NII.GZ", ".mha"])
def test_writing_leaves_exactly_the_expected_files(tmp_path, suffix):
    vol = _volume()
    viewer.save(vol, tmp_path / f"out{suffix}")
    names = sorted(os.listdir(tmp_path))
    assert not any("partial" in n for n in names), names
    if suffix in (".mhd", ".nhdr"):
        assert len(names) == 2 and f"out{suffix}" in names
        data = next(n for n in names if n != f"out{suffix}")
        assert data.startswith("out."), names  # the data file is named after its header
    else:
        assert names == [f"out{suffix}"]
    np.testing.assert_array_equal(viewer.load(tmp_path / f"out{suffix}").array, vol.array)


def test_overwriting_an_existing_file(tmp_path):
    path = tmp_path / "v.nii.gz"
    viewer.save(_volume(), path)
    second = _volume()
    second.array[:] = 7
    viewer.save(second, path)
    assert np.all(viewer.load(path).array == 7)
    assert os.listdir(tmp_path) == ["v.nii.gz"]


# ---------------------------------------------------------------------------------- RAS / LPS


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_sform_is_ras(tmp_path, suffix):
    vol = _volume()
    path = tmp_path / f"v{suffix}"
    viewer.save(vol, path)
    hdr = _nifti_header(path)
    assert hdr["magic"] in (b"n+1\0", b"ni1\0")
    assert hdr["dim"] == (11, 9, 7)  # i, j, k
    assert hdr["sform_code"] > 0
    expected = (FLIP @ vol.affine)[:3]  # x and y negated, z kept
    np.testing.assert_allclose(hdr["srow"], expected, atol=1e-3)
    np.testing.assert_allclose(hdr["pixdim"][1:4], vol.spacing, atol=1e-5)
    # and the metadata SimpleITK reports agrees with the raw bytes
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    srow_x = [float(x) for x in reader.GetMetaData("srow_x").split()]
    np.testing.assert_allclose(srow_x, expected[0], atol=1e-3)


def test_hand_written_ras_nifti_loads_in_lps(tmp_path):
    direction = F.rotation(0, 20, -30)
    ras = np.eye(4)
    ras[:3, :3] = direction * np.array([0.9, 1.1, 3.0])
    ras[:3, 3] = [15.0, -40.0, 22.5]
    arr = (np.arange(4 * 5 * 6).reshape(4, 5, 6) - 30).astype(np.int16)
    path = tmp_path / "hand.nii"
    _write_nifti(path, arr, ras)
    vol = viewer.load(path)
    np.testing.assert_array_equal(vol.array, arr)  # [k, j, i], nothing flipped
    np.testing.assert_allclose(vol.affine, FLIP @ ras, atol=1e-4)
    # a voxel's RAS position (from the file) and its LPS position (from the volume) are the same point
    ijk = np.array([5, 4, 3])
    ras_point = ras[:3, :3] @ ijk + ras[:3, 3]
    np.testing.assert_allclose(vol.index_to_lps(ijk), ras_point * [-1, -1, 1], atol=1e-4)


def test_real_nifti_and_nrrd_match_simpleitk():
    for path in (data_path("flair-lesion", "FLAIR.nii.gz"), data_path("brain-tumor-mr", "brain1_image.nrrd"),
                 data_path("ct-aorta", "ct_cropped.nii.gz")):
        vol = viewer.load(path)
        image = sitk.ReadImage(str(path))
        np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(image))
        np.testing.assert_allclose(vol.origin, image.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(vol.spacing, image.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(vol.direction.ravel(), image.GetDirection(), atol=1e-5)


# ---------------------------------------------------------------------------------- CT detection


def test_int16_mr_volume_is_not_taken_for_ct(tmp_path):
    arr = np.random.default_rng(0).integers(0, 1800, size=(5, 8, 8)).astype(np.int16)
    viewer.save(Volume(arr, np.eye(4), modality="MR"), tmp_path / "mr.nii")
    back = viewer.load(tmp_path / "mr.nii")
    assert back.modality != "CT" and back.units != "HU"


def test_real_mr_nrrd_is_not_taken_for_ct():
    vol = viewer.load(data_path("brain-tumor-mr", "brain1_image.nrrd"))
    assert vol.array.dtype == np.int16 and vol.array.min() >= 0
    assert vol.modality != "CT"


def test_real_ct_nifti_is_taken_for_ct():
    for path in (data_path("ct-aorta", "ct_cropped.nii.gz"), data_path("totalseg-examples", "example_ct.nii.gz")):
        vol = viewer.load(path)
        assert vol.modality == "CT" and vol.units == "HU" and vol.array.dtype == np.int16, path
        assert -1300 < vol.array.min() < -900


def test_ct_with_padding_outside_the_field_of_view_is_ct(tmp_path):
    arr = np.full((3, 8, 8), -1000, np.int16)
    arr[:, :2] = -3024
    arr[:, 4:, 4:] = 700
    viewer.save(Volume(arr, np.eye(4)), tmp_path / "ct.nrrd")
    assert viewer.load(tmp_path / "ct.nrrd").modality == "CT"


def test_label_maps_stay_unsigned(tmp_path):
    labels = np.zeros((4, 6, 6), np.uint8)
    labels[1:3, 2:4, 2:4] = 3
    viewer.save(Volume(labels, np.eye(4)), tmp_path / "seg.nii.gz")
    back = viewer.load(tmp_path / "seg.nii.gz")
    assert back.array.dtype == np.uint8 and back.modality != "CT"
    np.testing.assert_array_equal(back.array, labels)


# ---------------------------------------------------------------------------------- gantry tilt


def test_tilted_volume_is_resampled_to_an_orthogonal_grid_with_a_note(tmp_path):
    grid = F.axial(tilt_degrees=20.0, spacing=(1.0, 1.0, 2.0), origin=(-32.0, -24.0, 10.0))
    arr = np.full((16, 48, 64), -1000, np.int16)
    arr[6:10, 20:28, 30:38] = 1000  # a bright block, away from the edges
    vol = Volume(arr, grid.affine, modality="CT", units="HU")
    assert is_sheared(vol.affine)
    path = tmp_path / "tilted.nii"
    viewer.save(vol, path)
    notes = [w for w in vol.warnings if "resampled" in w.lower() and "tilt" in w.lower()]
    assert len(notes) == 1 and "\n" not in notes[0]
    image = sitk.ReadImage(str(path))
    d = np.reshape(image.GetDirection(), (3, 3))
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-5)  # orthogonal grid
    np.testing.assert_allclose(d[:, 2], grid.normal, atol=1e-5)  # k along the slice normal
    np.testing.assert_allclose(image.GetSpacing(), [1.0, 1.0, 2.0], atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), grid.origin, atol=1e-4)
    out = sitk.GetArrayFromImage(image)
    assert out.shape == arr.shape and out.dtype == np.int16

    def centroid(array, index_to_point):
        idx = np.argwhere(array > 0)[:, ::-1].astype(float)  # (i, j, k)
        return np.mean([index_to_point(p) for p in idx], axis=0)

    before = centroid(arr, lambda p: vol.index_to_lps(p))
    after = centroid(out, lambda p: np.asarray(image.TransformContinuousIndexToPhysicalPoint(p.tolist())))
    np.testing.assert_allclose(after, before, atol=0.6)  # the block stays where it is in the patient
    # without the resampling the block would sit tan(20 deg) * 2 mm * 8 slices = 5.8 mm away
    assert np.linalg.norm(before - (vol.origin + np.array([33.5, 23.5, 15.0]))) > 5


def test_tilted_dicom_series_saved_then_read_by_simpleitk(tmp_path):
    stored = F.phantom((12, 32, 32))
    grid = F.axial(tilt_degrees=15)
    F.write_series(tmp_path / "dicom", stored, grid)
    vol = viewer.load(tmp_path / "dicom")
    viewer.save(vol, tmp_path / "out.nii.gz")
    image = sitk.ReadImage(str(tmp_path / "out.nii.gz"))
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), np.eye(3), atol=1e-5)
    assert image.GetSpacing()[2] == pytest.approx(grid.spacing[2], abs=1e-4)
    assert any("tilt" in w for w in vol.warnings) and any("resampled" in w for w in vol.warnings)
    # slice 0 is not shifted, so it is unchanged
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[0], vol.array[0])


def test_untilted_volume_is_written_unchanged_without_a_note(tmp_path):
    vol = _volume()
    viewer.save(vol, tmp_path / "v.mha")
    assert vol.warnings == []


# ---------------------------------------------------------------------------------- errors


def test_unknown_suffix_raises(tmp_path):
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.save(_volume(), tmp_path / "v.png")
    assert "\n" not in str(err.value)
    assert not os.listdir(tmp_path)


def test_unwritable_destination_raises(tmp_path):
    with pytest.raises(viewer.HounsfieldError) as err:
        write_volume(_volume(), tmp_path / "no" / "such" / "folder" / "v.nii.gz")
    assert "\n" not in str(err.value) and "could not be written" in str(err.value)
    assert str(err.value).endswith(f"there is no folder {tmp_path / 'no' / 'such' / 'folder'}.")  # not ITK's words
    assert "ITK" not in str(err.value) and "0x" not in str(err.value)


def test_corrupt_volume_file_raises(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(viewer.HounsfieldError) as err:
        read_volume(path)
    assert "\n" not in str(err.value) and "broken.nii.gz" in str(err.value)


def test_four_d_file_is_refused(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.int16))  # 4D scalar
    sitk.WriteImage(image, str(tmp_path / "4d.nii"))
    with pytest.raises(viewer.HounsfieldError):
        viewer.load(tmp_path / "4d.nii")


def test_two_d_file_becomes_a_one_slice_volume(tmp_path):
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    image.SetSpacing((0.5, 0.25))
    sitk.WriteImage(image, str(tmp_path / "2d.nrrd"))
    vol = viewer.load(tmp_path / "2d.nrrd")
    assert vol.shape == (1, 3, 4)
    np.testing.assert_allclose(vol.spacing[:2], [0.5, 0.25])


def test_a_folder_of_volume_files_says_which_to_open(tmp_path):
    """A folder holding NIfTI/NRRD files but no DICOM: the error names a file to open instead."""
    write_volume(_volume(), str(tmp_path / "b.nrrd"))
    write_volume(_volume(), str(tmp_path / "a.nii.gz"))
    with pytest.raises(viewer.HounsfieldError) as e:
        viewer.load(tmp_path)
    assert "No DICOM images were found" in str(e.value) and "open one of them, e.g. a.nii.gz" in str(e.value)
    assert "2 image file(s)" in str(e.value) and "\n" not in str(e.value)


def _short_writer(real_write):
    """sitk.WriteImage as ITK's NIfTI writer behaves on a full disk (seen on a 200 kB tmpfs): it
    prints 'NWAD: wrote only 0 of ... bytes' on stderr, raises nothing and leaves the file short."""
    def write(image, path, useCompression=False):
        real_write(image, path, useCompression=useCompression)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    return write


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_nifti_cut_short_by_a_full_disk_is_an_error_not_a_file(tmp_path, monkeypatch, suffix):
    import viewer.core.formats as formats

    monkeypatch.setattr(formats.sitk, "WriteImage", _short_writer(sitk.WriteImage))
    with pytest.raises(viewer.HounsfieldError) as err:
        write_volume(_volume(), tmp_path / f"v{suffix}")
    assert "could not be written" in str(err.value) and "full" in str(err.value) and "\n" not in str(err.value)
    assert not os.listdir(tmp_path)  # neither the short file nor its .partial is left


def test_a_truncated_nifti_is_refused_and_whole_real_ones_load(tmp_path):
    from viewer.core.formats import nifti_shortfall

    real = sorted(data_path().rglob("*.nii*"))
    assert real and all(nifti_shortfall(p) == 0 for p in real)  # no whole file is taken for a short one
    flair = data_path("flair-lesion", "FLAIR.nii.gz").read_bytes()
    (tmp_path / "half.nii.gz").write_bytes(flair[:len(flair) // 2])
    write_volume(_volume(), tmp_path / "whole.nii")
    raw = (tmp_path / "whole.nii").read_bytes()
    (tmp_path / "short.nii").write_bytes(raw[:-10])
    for name in ("half.nii.gz", "short.nii"):
        with pytest.raises(viewer.HounsfieldError) as err:  # SimpleITK itself loads both, filling in the gap
            read_volume(tmp_path / name)
        assert f"{name} is incomplete" in str(err.value) and "\n" not in str(err.value)
    assert read_volume(tmp_path / "whole.nii").shape == _volume().shape


def test_itk_s_own_error_lines_stay_off_stderr_and_go_to_the_log(tmp_path, capfd, caplog):
    """A NIfTI with a bad header: ITK's NIfTI library printed '** ERROR: nifti_convert_nhdr2nim:
    bad dim[0]' on the C stderr beside our sentence; now the sentence alone is raised, ITK's line
    is a DEBUG record of the log, and the pointer in 'NiftiImageIO(0x55...)' is not in the sentence."""
    write_volume(_volume(), tmp_path / "whole.nii")
    raw = bytearray((tmp_path / "whole.nii").read_bytes())
    raw[40:42] = struct.pack("<h", 9)  # dim[0] = 9: no NIfTI has nine dimensions
    (tmp_path / "bad.nii").write_bytes(bytes(raw))
    capfd.readouterr()
    with caplog.at_level("DEBUG", logger="hounsfield.itk"), pytest.raises(viewer.HounsfieldError) as err:
        read_volume(tmp_path / "bad.nii")
    assert "** ERROR" not in capfd.readouterr().err
    assert str(err.value).startswith("bad.nii could not be read") and "0x" not in str(err.value)
    assert any("bad dim[0]" in r.getMessage() and r.levelname == "DEBUG" for r in caplog.records)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_FSIZE stands in for a full disk (POSIX only)")
def test_a_full_disk_prints_our_sentence_not_itk_s_nwad(tmp_path):
    """A child process whose files may not grow past 4 kB, as on a full disk: ITK's NIfTI writer
    printed '** ERROR: NWAD: wrote only 3744 of 48000 bytes to file' there; only our sentence
    may reach stderr now."""
    import subprocess
    import sys

    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "import numpy as np, viewer\n"
        "from viewer.core.formats import write_volume\n"
        "from viewer.core.volume import Volume\n"
        "try:\n"
        "    write_volume(Volume(np.ones((20, 30, 40), np.int16), np.eye(4), 'CT'), sys.argv[1])\n"
        "except viewer.HounsfieldError as e:\n"
        "    print(e, file=sys.stderr)\n"
    )
    out = tmp_path / "v.nii"
    run = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().startswith("v.nii could not be written") and "full" in run.stderr
    assert "** ERROR" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not os.listdir(tmp_path)
