"""Scanning (headers only): file listing, header reading on both paths, the study tree, series splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

import viewer
from tests import dicom_factory as F
from tests.conftest import data_path
from viewer.core.dicom.fastscan import scan_headers
from viewer.core.dicom.header import InstanceHeader, NotDicomError, read_header
from viewer.core.dicom.scan import list_files, read_headers, scan_path


def _by_path(headers):
    return {h.path: h for h in headers}


def _assert_same_headers(files):
    slow, slow_err, slow_skip, _ = read_headers(files, fast_path=False)
    fast, fast_err, fast_skip, _ = read_headers(files, fast_path=True)
    assert slow_err == fast_err and slow_skip == fast_skip
    a, b = _by_path(slow), _by_path(fast)
    assert a.keys() == b.keys()
    for path in a:
        assert a[path] == b[path], f"fast and pydicom headers differ for {os.path.basename(path)}"
    return a


# ---------------------------------------------------------------------------------- real data


def test_chest_ct_scans_as_one_study_one_series(chest_ct_dir):
    result = viewer.scan(chest_ct_dir)
    assert len(result.patients) == 1
    assert len(result.studies) == 1
    assert len(result.series) == 1 and len(result.image_series) == 1
    s = result.series[0]
    assert s.modality == "CT"
    assert len(s.frames) == 141 and len(s.instances) == 141
    assert s.size == (512, 512, 141)
    assert s.split_reason == ""
    assert result.errors == [] and result.skipped == 0 and result.other_objects == []
    ds = pydicom.dcmread(next(Path(chest_ct_dir).glob("*.dcm")), stop_before_pixels=True,
                         specific_tags=["SeriesInstanceUID", "StudyInstanceUID"])
    assert s.uid == s.id == ds.SeriesInstanceUID
    assert result.studies[0].uid == ds.StudyInstanceUID


def test_brain_mr_scans_as_one_series(brain_mr_dir):
    result = viewer.scan(brain_mr_dir)
    assert len(result.studies) == 1
    assert [len(s.frames) for s in result.series] == [120]
    assert result.series[0].modality == "MR"
    assert result.series[0].size == (512, 512, 120)


def test_chest_ct_malformed_private_tag_does_not_break_header_reading(chest_ct_dir):
    files = sorted(str(p) for p in Path(chest_ct_dir).glob("*.dcm"))
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    with pytest.raises(pydicom.errors.BytesLengthException):  # the element really is malformed
        ds[0x01F1, 0x1026].value  # noqa: B018
    h = read_header(files[0])
    assert h.is_image and h.rows == 512 and h.modality == "CT"
    assert h.frames[0].intercept == -1024.0 and h.frames[0].slope == 1.0


@pytest.mark.parametrize("folder", ["chest-ct", "brain-mr-t1", "dicom-objects", "codecs"])
def test_fast_gdcm_path_and_pydicom_path_agree_on_real_files(folder):
    files = list_files(str(data_path(folder)))
    assert files
    headers = _assert_same_headers(files)
    assert len(headers) == len(files)


def test_fast_path_actually_takes_the_classic_images(chest_ct_dir):
    files = list_files(str(chest_ct_dir))
    fast, rest = scan_headers(files)
    assert len(fast) == len(files) and rest == []  # otherwise the comparison above proves nothing


def test_fast_path_leaves_multiframe_and_non_ascii_to_pydicom():
    enhanced = sorted(str(p) for p in data_path("codecs", "enhanced-multiframe").glob("*.dcm"))
    fast, rest = scan_headers(enhanced)
    assert fast == [] and sorted(rest) == enhanced


def test_fast_and_pydicom_paths_agree_on_pydicom_test_files():
    names = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
             "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm", "image_dfl.dcm",
             "no_meta.dcm", "rtplan.dcm", "test-SR.dcm", "MR_truncated.dcm", "emri_small.dcm",
             "SC_rgb.dcm", "ExplVR_BigEndNoMeta.dcm", "693_UNCI.dcm"]
    files = [get_testdata_file(n) for n in names]
    files = [f for f in files if f]
    _assert_same_headers(files)


def test_fast_and_pydicom_paths_agree_on_generated_edge_cases(tmp_path):
    stored = F.phantom((8, 16, 16))
    ws = F.write_series(tmp_path / "a", stored, F.oblique(), modality="MR")
    edits = [
        {"WindowCenter": ["40", "60"], "WindowWidth": ["400", "800"]},  # multi-valued window
        {"WindowWidth": "-5"},  # an invalid window
        {"EchoNumbers": ["1", "2"]},  # multi-valued echo numbers
        {"EchoNumbers": None, "TemporalPositionIdentifier": None},  # present but empty
        {"SeriesNumber": None, "InstanceNumber": None, "SliceThickness": None},
        {"RescaleIntercept": " -12.5", "RescaleSlope": "2.0 "},
        {"PixelSpacing": ["0.5", "0.5", "0.5"], "ImageOrientationPatient": ["1", "0", "0", "0", "1"]},
    ]
    for path, edit in zip(ws.files, edits):
        ds = pydicom.dcmread(path)
        for key, value in edit.items():
            setattr(ds, key, value)
        ds.save_as(path)
    F.write_series(tmp_path / "b", stored[:3], F.axial(), preamble=False)
    F.write_series(tmp_path / "c", stored[:3], F.axial(), transfer_syntax=pydicom.uid.ImplicitVRLittleEndian)
    F.write_series(tmp_path / "d", stored[:3], F.axial(), transfer_syntax=F.RLELossless)
    files = list_files(str(tmp_path))
    assert len(files) == 17
    fast, _ = scan_headers(files)
    assert len(fast) >= 15
    headers = _assert_same_headers(files)
    window = {os.path.basename(p): h.window for p, h in headers.items() if "/a/" in p}
    assert window["IM0000.dcm"] == (40.0, 400.0)
    assert window["IM0001.dcm"] is None


def test_read_header_values_from_a_generated_file(tmp_path):
    stored = F.phantom((3, 12, 10))
    grid = F.oblique(spacing=(0.6, 0.7, 3.0))
    ws = F.write_series(tmp_path, stored, grid, slope=[1, 2, 0.5], intercept=[-1024, -2048, -1000],
                        series_number=7, acquisition_number=3)
    h = read_header(ws.paths[1])
    assert (h.rows, h.columns) == (12, 10)
    assert h.modality == "CT" and h.is_image
    assert h.series_uid == ws.series_uid and h.study_uid == ws.study_uid
    assert h.series_number == 7 and h.acquisition_number == 3 and h.instance_number == 2
    assert h.bits_allocated == 16 and h.pixel_representation == 0
    assert h.patient_name == "Test^Hounsfield" and h.patient_id == "HF-0001"
    f = h.frames[0]
    np.testing.assert_allclose(f.position, ws.positions[1], atol=1e-6)
    np.testing.assert_allclose(f.orientation, [*grid.row_dir, *grid.col_dir], atol=1e-9)
    assert f.pixel_spacing == (0.7, 0.6)
    assert (f.slope, f.intercept) == (2.0, -2048.0)
    assert h.window == (40.0, 400.0)
    assert h.size == os.path.getsize(ws.paths[1])


def test_header_json_round_trip_is_exact(tmp_path):
    import json

    files = [get_testdata_file("CT_small.dcm"), str(next(data_path("codecs", "enhanced-multiframe").glob("philips*")))]
    for path in files:
        h = read_header(path)
        again = InstanceHeader.from_json(json.loads(json.dumps(h.to_json())))
        assert again == h


# ---------------------------------------------------------------------------------- listing


def test_list_files_skips_hidden_and_known_non_dicom_suffixes(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ["a.dcm", "b", "sub/c.IMA", "notes.txt", "vol.nii.gz", ".DS_Store", ".hidden/x.dcm", "DICOMDIR"]:
        (tmp_path / name).write_bytes(b"x")
    got = [os.path.relpath(p, tmp_path) for p in list_files(str(tmp_path))]
    assert got == ["a.dcm", "b", os.path.join("sub", "c.IMA")]
    assert list_files(str(tmp_path / "b")) == [str(tmp_path / "b")]


def test_read_header_rejects_non_dicom(tmp_path):
    path = F.write_not_dicom(tmp_path)
    with pytest.raises(NotDicomError):
        read_header(path)


def test_file_without_preamble_is_read(tmp_path):
    ws = F.write_series(tmp_path, F.phantom((2, 8, 8)), F.axial(), preamble=False)
    with open(ws.paths[0], "rb") as fh:
        assert fh.read(132)[128:] != b"DICM"
    h = read_header(ws.paths[0])
    assert h.sop_instance_uid == ws.sop_uids[0] and h.is_image


def test_file_without_preamble_and_meta_is_read(tmp_path):
    ws = F.write_series(tmp_path, F.phantom((2, 8, 8)), F.axial(), preamble=False, meta=False,
                        transfer_syntax=pydicom.uid.ImplicitVRLittleEndian)
    with open(ws.paths[1], "rb") as fh:
        assert fh.read(2) == b"\x08\x00"
    h = read_header(ws.paths[1])
    assert h.transfer_syntax == pydicom.uid.ImplicitVRLittleEndian
    assert h.sop_instance_uid == ws.sop_uids[1] and h.is_image and h.rows == 8


@pytest.mark.parametrize("keep", [140, 300, 600, "pixels"])
def test_truncated_dicom_file_is_reported_not_skipped(tmp_path, keep):
    ws = F.write_series(tmp_path, F.phantom((1, 32, 32)), F.axial())
    size = os.path.getsize(ws.paths[0])
    cut = F.truncate(ws.paths[0], size - 1000 if keep == "pixels" else keep, out=str(tmp_path / "cut"))
    headers, errors, skipped, _ = read_headers([cut])
    assert skipped == 0
    if keep == "pixels":  # the header is whole: the file is listed, and decoding will fail later
        assert len(headers) == 1 and errors == []
    else:
        assert headers == []
        assert len(errors) == 1 and errors[0].startswith("cut could not be read as DICOM")


# ---------------------------------------------------------------------------------- tree and splits


def test_broken_and_foreign_files_are_counted_not_fatal(tmp_path):
    ws = F.write_series(tmp_path, F.phantom((6, 16, 16)), F.axial())
    F.write_not_dicom(tmp_path, "readme.bin")
    F.truncate(ws.paths[0], 200, out=str(tmp_path / "cut-header.dcm"))
    result = scan_path(str(tmp_path))
    assert result.skipped == 1
    assert len(result.errors) == 1 and "cut-header.dcm" in result.errors[0]
    assert "\n" not in result.errors[0]
    assert [len(s.frames) for s in result.image_series] == [6]


def test_non_image_objects_are_listed_but_not_stacked(tmp_path):
    ws = F.write_series(tmp_path, F.phantom((5, 16, 16)), F.axial())
    F.write_non_image(tmp_path, "SR", study_uid=ws.study_uid)
    F.write_non_image(tmp_path, "SEG", study_uid=ws.study_uid)
    result = viewer.scan(tmp_path)
    assert len(result.studies) == 1
    assert [len(s.frames) for s in result.image_series] == [5]
    names = sorted(s.sop_class_name for s in result.other_objects)
    assert names == ["Comprehensive SR Storage", "Segmentation Storage"]
    assert all(not s.is_image and s.frames == [] and len(s.objects) == 1 for s in result.other_objects)


def test_real_non_image_objects_are_never_image_series():
    result = viewer.scan(data_path("dicom-objects"))
    kinds = {s.modality for s in result.other_objects}
    assert {"SEG", "SR", "RTSTRUCT"} <= kinds
    assert all(s.modality == "CT" for s in result.image_series)
    assert all(not h.is_image for s in result.other_objects for h in s.objects)
    # the liver SEG sits next to its three CT slices: three frames, one volume
    liver = [s for s in result.image_series if len(s.frames) == 3]
    assert len(liver) == 1


def test_mixed_image_sizes_split_into_two_series(tmp_path):
    a = F.write_series(tmp_path, F.phantom((8, 32, 32)), F.axial(), prefix="A")
    F.write_series(tmp_path, F.phantom((5, 16, 24)), F.axial(), prefix="B", series_uid=a.series_uid,
                   study_uid=a.study_uid)
    result = viewer.scan(tmp_path)
    parts = result.image_series
    assert len(parts) == 2
    assert {s.uid for s in parts} == {a.series_uid}
    assert sorted(s.id for s in parts) == [f"{a.series_uid}:1", f"{a.series_uid}:2"]
    assert sorted(s.size for s in parts) == [(24, 16, 5), (32, 32, 8)]
    assert all(s.split_reason == "image size" for s in parts)
    assert len(result.find(a.series_uid)) == 2
    assert len(result.find(f"{a.series_uid}:2")) == 1


@pytest.mark.parametrize("acquisition", [True, False])
def test_two_acquisitions_at_the_same_positions_split(tmp_path, acquisition):
    grid = F.axial()
    a = F.write_series(tmp_path, F.phantom(), grid, prefix="A", acquisition_number=1 if acquisition else None)
    F.write_series(tmp_path, F.phantom(seed=5), grid, prefix="B", acquisition_number=2 if acquisition else None,
                   series_uid=a.series_uid, study_uid=a.study_uid, frame_uid=a.frame_uid)
    parts = viewer.scan(tmp_path).image_series
    assert [len(s.frames) for s in parts] == [20, 20]
    assert {s.split_reason for s in parts} == {"acquisition" if acquisition else "repeated positions"}
    for s in parts:  # each part holds every position once
        z = sorted(round(f.frame.position[2], 3) for f in s.frames)
        assert z == sorted(round(p[2], 3) for p in a.positions)


def test_two_series_in_one_folder_stay_apart(tmp_path):
    a = F.write_series(tmp_path, F.phantom((4, 16, 16)), F.axial(), prefix="A", series_number=2)
    b = F.write_series(tmp_path, F.phantom((6, 16, 16)), F.oblique(), prefix="B", series_number=1,
                       study_uid=a.study_uid, modality="MR")
    result = viewer.scan(tmp_path)
    assert len(result.studies) == 1
    assert [s.uid for s in result.series] == [b.series_uid, a.series_uid]  # sorted by series number
    assert [s.split_reason for s in result.series] == ["", ""]


def test_scan_of_missing_path_raises_one_sentence(tmp_path):
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.scan(tmp_path / "nope")
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


def write_dicomdir(tmp_path, slices: int):
    """A series of ``slices`` images written to tmp_path/src and a DICOMDIR media folder at tmp_path/media."""
    from pydicom.fileset import FileSet

    ws = F.write_series(tmp_path / "src", F.phantom((slices, 16, 16)), F.axial())
    fs = FileSet()
    for p in ws.files:
        fs.add(p)
    fs.write(tmp_path / "media")
    return ws


def test_scan_of_dicomdir_lists_only_referenced_files(tmp_path):

    ws = write_dicomdir(tmp_path, 4)
    F.write_series(tmp_path / "media" / "extra", F.phantom((3, 16, 16)), F.axial())  # not in the DICOMDIR
    via_dicomdir = viewer.scan(tmp_path / "media" / "DICOMDIR")
    assert [len(s.frames) for s in via_dicomdir.image_series] == [4]
    assert via_dicomdir.image_series[0].uid == ws.series_uid
    via_folder = viewer.scan(tmp_path / "media")
    assert sorted(len(s.frames) for s in via_folder.image_series) == [3, 4]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the damage it tolerates
def test_unreadable_dicomdir_raises(tmp_path):
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00garbage")
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.scan(tmp_path / "DICOMDIR")
    assert "DICOMDIR" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------- issue 12, item 11


def test_dicomdir_scans_in_a_fresh_process(tmp_path):
    """The scanner must import what it uses itself: a test that imports pydicom.fileset would hide it."""
    import subprocess
    import sys

    from tests.conftest import REPO

    ws = write_dicomdir(tmp_path, 3)
    code = ("import sys, viewer; r = viewer.scan(sys.argv[1]); "
            "print([len(s.frames) for s in r.image_series], r.image_series[0].uid)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "media" / "DICOMDIR")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[3]", ws.series_uid]


def _bytes_name(folder, name: str, raw: bytes) -> str:
    """Rename ``folder/name`` to a name that is not UTF-8 (as files copied from old media are)."""
    old = os.fsencode(os.path.join(folder, name))
    new = os.fsencode(folder) + b"/" + raw
    os.rename(old, new)
    return os.fsdecode(new)


@pytest.mark.parametrize("fast", [True, False])
def test_a_file_with_a_non_utf8_name_is_read_with_its_folder(tmp_path, fast):
    ws = F.write_series(tmp_path, F.phantom((4, 16, 16)), F.axial())
    odd = _bytes_name(str(tmp_path), os.path.basename(ws.files[1]), b"\xff\xfeIM.dcm")
    assert odd in list_files(str(tmp_path))
    headers, errors, skipped, _ = read_headers(list_files(str(tmp_path)), fast_path=fast)
    assert errors == [] and skipped == 0
    assert odd in {h.path for h in headers} and len(headers) == 4
    vol = viewer.load(tmp_path)
    assert vol.shape == (4, 16, 16)


def test_a_folder_with_a_non_utf8_name_is_scanned_and_indexed(tmp_path):
    from viewer.core.dicom.index import StudyIndex

    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/study-\xe9t\xe9")  # Latin-1 on disk
    ws = F.write_series(folder, F.phantom((3, 16, 16)), F.axial())
    assert os.path.isdir(os.fsencode(folder))
    first = viewer.scan(folder)
    assert [len(s.frames) for s in first.image_series] == [3] and first.errors == []
    index = StudyIndex()
    try:
        stored = index.headers_under(folder)
        assert set(stored) == set(ws.files)
        assert folder in [root for root, _ in index.folders()]
    finally:
        index.close()
    again = viewer.scan(folder)  # served from the index
    assert [len(s.frames) for s in again.image_series] == [3]
