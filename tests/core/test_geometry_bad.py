"""Damaged geometry (issue 12, item 10): never a NaN or singular affine, never silently wrong distances.

Positions, spacings and orientations that are not numbers, infinite, zero or collinear are either
repaired with a warning in ``volume.warnings`` or refused with one short sentence; every case must
load without a raw ValueError or TypeError.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import viewer
from tests import dicom_factory as F
from tests.conftest import REPO

SHAPE = (6, 16, 20)


def _series(tmp_path, grid=None, n: int = SHAPE[0]):
    return F.write_series(tmp_path / "s", F.phantom((n, *SHAPE[1:])), grid or F.axial())


def _edit(path: str, **values) -> None:
    """Set (or, with None, delete) header attributes of one file, as a damaged file would hold them."""
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, value in values.items():
            if value is None:
                delattr(ds, name)
            else:
                setattr(ds, name, value)
        ds.save_as(path)


def _patch(path: str, keyword: str, raw: bytes) -> None:
    """Replace one element's value bytes with ``raw`` (even length): values pydicom refuses to write."""
    ds = pydicom.dcmread(path)
    tag = ds[keyword].tag
    data = open(path, "rb").read()
    key = struct.pack("<HH", tag.group, tag.elem) + ds[keyword].VR.encode()
    i = data.find(key)
    assert i > 0
    length = struct.unpack("<H", data[i + 6:i + 8])[0]
    assert len(raw) % 2 == 0
    data = data[:i + 6] + struct.pack("<H", len(raw)) + raw + data[i + 8 + length:]
    open(path, "wb").write(data)


def _load(folder) -> viewer.Volume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the damage it reads: that is the point
        return viewer.load(folder)


def _sound(vol: viewer.Volume) -> None:
    assert np.all(np.isfinite(vol.affine)), vol.affine
    assert abs(np.linalg.det(vol.affine[:3, :3])) > 1e-6, vol.affine
    assert np.all(vol.spacing > 0)
    for w in vol.warnings:
        assert "nan" not in w.lower() and "inf" not in w.lower(), w
        assert "\n" not in w and len(w) < 300, w


# ------------------------------------------------------------------------------------ positions


@pytest.mark.parametrize("bad", [["nan", "0", "0"], ["0", "inf", "0"], ["-inf", "1", "2"]])
def test_a_slice_with_a_non_finite_position_is_left_out_with_a_warning(tmp_path, bad):
    ws = _series(tmp_path)
    _edit(ws.paths[2], ImagePositionPatient=bad)
    vol = _load(ws.folder)
    _sound(vol)
    np.testing.assert_allclose(vol.affine, ws.affine, atol=1e-4)  # the others keep their true grid
    assert vol.shape == SHAPE  # slice 2 is a blank slot, not a shifted neighbour
    assert any("ImagePositionPatient" in w and "left out" in w for w in vol.warnings), vol.warnings


@pytest.mark.parametrize("raw", [b"abcd\\-120\\45", b"-100\\-120\\\\5", b"1\\2 ", b"--1\\0\\0 "])
def test_an_unparsable_position_is_left_out_not_a_value_error(tmp_path, raw):
    ws = _series(tmp_path)
    _patch(ws.paths[3], "ImagePositionPatient", raw)
    vol = _load(ws.folder)
    _sound(vol)
    np.testing.assert_allclose(vol.affine, ws.affine, atol=1e-4)
    assert any("ImagePositionPatient" in w for w in vol.warnings), vol.warnings


def test_a_file_without_a_position_among_others_is_left_out(tmp_path):
    ws = _series(tmp_path)
    _edit(ws.paths[4], ImagePositionPatient=None)
    vol = _load(ws.folder)
    _sound(vol)
    np.testing.assert_allclose(vol.affine, ws.affine, atol=1e-4)
    assert any("left out" in w for w in vol.warnings)


def test_a_repeated_position_and_a_file_without_one_is_not_a_type_error(tmp_path):
    ws = _series(tmp_path)
    _edit(ws.paths[1], ImagePositionPatient=[f"{x:g}" for x in ws.positions[0]])
    _edit(ws.paths[3], ImagePositionPatient=None)
    result = viewer.scan(ws.folder)
    assert result.image_series
    vol = _load(ws.folder)
    _sound(vol)


def test_all_positions_not_finite_gives_approximate_geometry_with_a_warning(tmp_path):
    ws = _series(tmp_path)
    for p in ws.files:
        _edit(p, ImagePositionPatient=["0", "0", "nan"])
    vol = _load(ws.folder)
    _sound(vol)
    assert vol.shape == SHAPE
    assert any("approximate" in w for w in vol.warnings), vol.warnings


# ------------------------------------------------------------------------------------ pixel spacing


@pytest.mark.parametrize("bad", [["0", "0"], ["0", "0.9"], ["nan", "0.9"], ["0.9", "inf"], ["-0.9", "0.8"]])
def test_an_invalid_pixel_spacing_falls_back_to_1_mm_with_a_warning(tmp_path, bad):
    ws = _series(tmp_path)
    for p in ws.files:
        _edit(p, PixelSpacing=bad)
    vol = _load(ws.folder)
    _sound(vol)
    np.testing.assert_allclose(vol.spacing, [1.0, 1.0, 2.5], atol=1e-6)  # k keeps the true slice step
    np.testing.assert_allclose(vol.direction, np.eye(3), atol=1e-6)  # never a flipped axis
    assert any("PixelSpacing" in w and "1 mm" in w and "not real" in w for w in vol.warnings), vol.warnings


def test_a_single_slice_with_a_non_finite_thickness(tmp_path):
    ws = _series(tmp_path, n=1)
    _edit(ws.paths[0], SliceThickness="nan")
    vol = _load(ws.folder)
    _sound(vol)


# ------------------------------------------------------------------------------------ orientation


@pytest.mark.parametrize("grid", [F.axial(), F.sagittal(), F.oblique(10, -5, 8)], ids=["axial", "sagittal", "oblique"])
@pytest.mark.parametrize("damage", ["collinear", "zero-column", "nan-column", "zero"])
def test_a_damaged_orientation_is_rebuilt_from_the_positions(tmp_path, grid, damage):
    ws = _series(tmp_path, grid)
    row = [f"{x:.10g}" for x in grid.row_dir]
    iop = {"collinear": row + row, "zero-column": row + ["0", "0", "0"], "nan-column": row + ["nan", "0", "0"],
           "zero": ["0"] * 6}[damage]
    for p in ws.files:
        _edit(p, ImageOrientationPatient=iop)
    result = viewer.scan(ws.folder)
    assert [len(s.frames) for s in result.image_series] == [SHAPE[0]]  # one series, not one per slice
    vol = _load(ws.folder)
    _sound(vol)
    assert vol.shape == SHAPE
    # distances are right whatever the guess: pixel spacing in-plane, the true step between slices
    np.testing.assert_allclose(vol.spacing, np.linalg.norm(ws.affine[:3, :3], axis=0), atol=1e-4)
    np.testing.assert_allclose(vol.affine[:3, 3], ws.positions[0], atol=1e-4)
    np.testing.assert_allclose(vol.affine[:3, 2], ws.affine[:3, 2], atol=1e-4)  # slices where they are
    if damage != "zero" or grid.row_dir[0] == 1.0:
        np.testing.assert_allclose(vol.affine, ws.affine, atol=1e-4)  # a usual acquisition comes back exact
    assert any("orientation" in w and "rebuilt" in w for w in vol.warnings), vol.warnings


def test_a_damaged_orientation_without_positions_to_repair_it_is_approximate(tmp_path):
    ws = _series(tmp_path, n=1)
    _edit(ws.paths[0], ImageOrientationPatient=["1", "0", "0", "1", "0", "0"])
    vol = _load(ws.folder)
    _sound(vol)
    assert any("approximate" in w for w in vol.warnings), vol.warnings


# ------------------------------------------------------------------------------------ command line


def test_convert_never_writes_a_nifti_with_nan_spacing(tmp_path):
    ws = _series(tmp_path)
    _edit(ws.paths[2], ImagePositionPatient=["nan", "0", "0"])
    out = tmp_path / "out.nii.gz"
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", "convert", ws.folder, str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    image = sitk.ReadImage(str(out))
    assert np.all(np.isfinite(image.GetSpacing())) and np.all(np.isfinite(image.GetOrigin()))
    np.testing.assert_allclose(image.GetSpacing(), [0.8, 0.9, 2.5], atol=1e-4)
    assert "left out" in proc.stderr


def test_a_corrupt_length_gives_a_short_sentence(tmp_path):
    """A length that swallows the rest of the header made a 16,000-character "sentence"."""
    ws = _series(tmp_path, n=1)
    path = ws.paths[0]
    data = bytearray(open(path, "rb").read())
    ds = pydicom.dcmread(path)
    key = struct.pack("<HH", 0x0008, 0x0016) + b"UI"
    i = data.find(key, 132 + 12)  # the dataset's SOPClassUID, not the meta group's
    data[i + 6:i + 8] = struct.pack("<H", 6000)
    open(path, "wb").write(bytes(data))
    assert ds.SOPClassUID
    with pytest.raises(viewer.HounsfieldError) as err:
        _load(path)
    text = str(err.value)
    assert len(text) < 300 and "\n" not in text and "\x00" not in text, text[:400]
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", "info", path], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=os.environ.copy())
    assert len(proc.stdout) + len(proc.stderr) < 2000, (proc.stdout + proc.stderr)[:400]


def test_messages_quote_a_corrupt_uid_short(tmp_path, capsys):
    """The scan keeps what it read (a SOP Class UID that swallowed the rest of the header); every
    sentence and listing line that quotes it shows it short and on one line."""
    import dataclasses

    from viewer.core.dicom.scan import ScanResult, read_headers
    from viewer.core.dicom.series import group_headers
    from viewer.core.loader import choose_series
    from viewer.info import describe, format_text

    ws = _series(tmp_path, n=1)
    [h], _, _, _ = read_headers(ws.files)
    garbage = "1.2.840.10008.5.1.4.1.1.2\x00\x08\x00\x18\x00UI@\x00" + "1.2.826.0.1.3680043\\" * 800
    h = dataclasses.replace(h, sop_class_uid=garbage, series_uid=garbage, is_image=False)
    result = ScanResult(str(tmp_path), group_headers([h]))
    with pytest.raises(viewer.HounsfieldError) as err:
        choose_series(result, None)
    text = str(err.value)
    assert len(text) < 300 and text.isprintable(), text[:400]
    with pytest.raises(viewer.HounsfieldError) as err:
        choose_series(result, garbage + "9")
    assert len(str(err.value)) < 300 and str(err.value).isprintable()
    listing = format_text(describe(result))
    assert all(len(line) < 300 and line.isprintable() for line in listing.splitlines()), listing[:400]


@pytest.mark.parametrize("damage", ["nan", "inf", "zero-spacing", "collinear"])
def test_a_volume_refuses_an_affine_that_places_no_voxel(damage):
    """The last guard for every source (DICOM, NIfTI, a plugin's output): one sentence, not NaN distances."""
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    if damage == "nan":
        affine[2, 2] = np.nan
    elif damage == "inf":
        affine[0, 3] = np.inf
    elif damage == "zero-spacing":
        affine[1, 1] = 0.0
    else:
        affine[:3, 1] = affine[:3, 0]
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.Volume(np.zeros((2, 3, 4), np.int16), affine)
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


@pytest.mark.parametrize("k, z", [(5, 5040.0), (0, -4960.0), (5, -9000.0)])
def test_a_lone_slice_far_from_the_rest_is_left_out(tmp_path, k, z):
    """A damaged position metres away must not stretch the volume to thousands of blank slices."""
    ws = _series(tmp_path)
    pos = [f"{x:g}" for x in ws.positions[k][:2]] + [f"{z:g}"]
    _edit(ws.paths[k], ImagePositionPatient=pos)
    vol = _load(ws.folder)
    _sound(vol)
    assert vol.shape == (SHAPE[0] - 1, *SHAPE[1:])
    first = 1 if k == 0 else 0
    np.testing.assert_allclose(vol.affine[:3, 3], ws.positions[first], atol=1e-4)
    np.testing.assert_allclose(vol.affine[:3, :3], ws.affine[:3, :3], atol=1e-4)
    assert any("far from the others" in w for w in vol.warnings), vol.warnings


def test_one_slice_with_a_damaged_orientation_stays_in_its_stack(tmp_path):
    ws = _series(tmp_path)
    _edit(ws.paths[2], ImageOrientationPatient=["nan", "0", "0", "0", "1", "0"])
    result = viewer.scan(ws.folder)
    assert [len(s.frames) for s in result.image_series] == [SHAPE[0]]
    vol = _load(ws.folder)
    _sound(vol)
    assert vol.shape == SHAPE
    np.testing.assert_allclose(vol.affine, ws.affine, atol=1e-4)
    assert any("orientation" in w and "1 image" in w for w in vol.warnings), vol.warnings
