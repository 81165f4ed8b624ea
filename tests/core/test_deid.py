"""De-identification against DICOM PS3.15 Table E.1-1: an identifier planted in every attribute the
profile lists (at the root and nested in sequences), in a dataset and in the source images of a
real export, must reach none of the exported files (SEG, SR, Secondary Capture, PNG, CSV, JSON);
and the free text a person typed goes out only when they choose to keep it."""

from __future__ import annotations

import json
import os
import shutil
import struct

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from tests.conftest import data_path
from viewer.core.io.deid import PROFILE_VERSION, Deidentifier

MARK = "ZQXLEAK"
DA, DT, TM = "18880808", "18880808121212", "121212.4242"
UID_ROOT = "1.3.6.1.4.1.9590.77777."
NUMBER = {"US": 7777, "SS": 7777, "UL": 77777777, "SL": 77777777, "FL": 7777.5, "FD": 7777.5}
TEXT_MARKS = (MARK, DA, DT, TM, UID_ROOT, "7777.77", "777777", "077Y")


def profile_table() -> tuple[list[int], list[int]]:
    """Every tag of E.1-1 (from the maintained table, not from the code under test) and one example
    tag of each repeating group (curves 50xx, overlays 60xx)."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    table = dicom_anonymization_database_selector(PROFILE_VERSION)
    tags, groups = [], []
    for t in table["ALL_TAGS"]:
        if len(t) == 2:
            tags.append((t[0] << 16) | t[1])
        else:
            groups.append(((t[0] << 16) | t[1]) | (0x0022 if t[1] == 0 else 0))  # (5000,0022) curve description
    return tags, groups


def vr_of(tag: int) -> str:
    if not dictionary_has_tag(tag):
        return "LO"  # newer than this pydicom's dictionary: planted as text
    vr = dictionary_VR(tag)
    return vr.split(" or ")[0]


def planted_value(tag: int, vr: str, n: int):
    if vr == "DA":
        return DA
    if vr == "DT":
        return DT
    if vr == "TM":
        return TM
    if vr == "UI":
        return f"{UID_ROOT}{n}"
    if vr == "PN":
        return f"{MARK}^{MARK}"
    if vr == "AS":
        return "077Y"
    if vr == "DS":
        return "7777.77"
    if vr == "IS":
        return "777777"
    if vr in NUMBER:
        return NUMBER[vr]
    if vr in ("OB", "OW", "UN", "OD", "OF", "OL", "OV"):
        return (MARK + "\0").encode()
    if vr == "UR":
        return f"http://{MARK.lower()}.invalid/"
    return MARK


def plant(ds: Dataset, depth: int = 1, skip=(), in_file: bool = False) -> None:
    """An identifier in every attribute the profile lists; each sequence holds one item with every
    attribute again (``depth`` levels of nesting)."""
    tags, groups = profile_table()
    for n, tag in enumerate(tags + groups):
        if tag in skip or (in_file and tag >> 16 in (0x0000, 0x0002)):  # a file has no command set, its
            continue  # meta information is apart
        vr = vr_of(tag) if tag not in groups else ("OB" if tag & 0xFFFF == 0x3000 else "LT")
        if vr == "SQ":
            item = Dataset()
            if depth > 0:
                plant(item, depth - 1, skip, in_file)
            ds[tag] = DataElement(tag, "SQ", [item] if depth > 0 else [])
        else:
            ds[tag] = DataElement(tag, vr, planted_value(tag, vr, n))


def leaks(ds: Dataset, path: str = "") -> list[str]:
    """Where a planted identifier survived in a dataset (every element, every depth; pixels aside)."""
    found = []
    for elem in ds:
        where = f"{path}{elem.keyword or elem.tag}"
        if elem.tag == 0x7FE00010:
            continue
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                found += leaks(item, f"{where}[{i}].")
            continue
        v = elem.value
        if isinstance(v, bytes):
            if MARK.encode() in v:
                found.append(where)
        elif elem.VR in NUMBER:
            if v is not None and v != "" and np.any(np.asarray(v, dtype=float) == NUMBER[elem.VR]):
                found.append(where)
        elif v is not None and any(m.lower() in str(v).lower() for m in TEXT_MARKS):
            found.append(where)
    return found


def written(ds: Dataset) -> bytes:
    """The dataset's encoding (command and file-meta groups included, as planted)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    return buf.getvalue()


def test_every_attribute_of_the_profile_planted_at_every_depth_is_cleaned():
    ds = Dataset()
    plant(ds, depth=1)
    # sequences the profile does not list are walked too (highdicom copies the source's equipment
    # into ContributingEquipmentSequence, AcquisitionDateTime becoming ContributionDateTime)
    outer = Dataset()
    plant(outer, depth=1)
    ds.ContributingEquipmentSequence = [outer]
    assert len(leaks(ds)) > 600  # the check can fail: the planted identifiers are found
    Deidentifier().dataset(ds)
    assert leaks(ds) == []
    data = written(ds)
    for m in (MARK, DA, DT, TM, UID_ROOT):
        assert m.encode() not in data, m
    assert ds.PatientName == "ANONYMOUS" and ds.PatientID.startswith("ANON-") and ds.PatientIdentityRemoved == "YES"
    assert "113100" in {c.CodeValue for c in ds.DeidentificationMethodCodeSequence}
    # the image references stay, with their UIDs replaced (X/Z/U*); the SR's content stays, cleaned
    assert len(ds.SourceImageSequence) == 1 and len(ds.ContentSequence) == 1


def test_deidentifier_maps_each_uid_once():
    d = Deidentifier()
    a, b = d.uid("1.2.3.4"), d.uid("1.2.3.5")
    assert a != b and d.uid("1.2.3.4") == a and a != "1.2.3.4"
    assert d.uid("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"  # registered UIDs stay


# the real export, from source images that carry an identifier in every attribute of the profile

# attributes the images need to be read as one series of a study (each planted with one identifier,
# replaced here by identifying UIDs and a valid sex, as a real file would have)
_STRUCTURAL = {0x00080018, 0x0020000D, 0x0020000E, 0x00200052, 0x00100040}


@pytest.fixture(scope="module")
def planted_series(tmp_path_factory):
    src = data_path("lung-nodule-ct", "lidc-idri-0002")
    folder = tmp_path_factory.mktemp("planted")
    for n, name in enumerate(sorted(os.listdir(src))):
        if not name.endswith(".dcm"):
            continue
        ds = pydicom.dcmread(os.path.join(src, name))
        plant(ds, depth=1, skip=_STRUCTURAL | {0x00080016}, in_file=True)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = UID_ROOT + "1", UID_ROOT + "2"
        ds.FrameOfReferenceUID, ds.SOPInstanceUID = UID_ROOT + "3", f"{UID_ROOT}4.{n}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientSex = "F"
        ds.Manufacturer = "GE MEDICAL SYSTEMS"  # so that highdicom copies the acquisition equipment
        ds.save_as(folder / name, enforce_file_format=True)
    from viewer.core.loader import load

    vol = load(str(folder))
    assert vol.source.patient_name.startswith(MARK) and vol.source.study_date == DA
    return vol


def _reading(vol):
    from viewer.core.measurements import Measurement, compute
    from viewer.core.segmentation import Segmentation

    k = vol.shape[0] // 2
    p = [vol.index_to_lps([i, j, k]) for i, j in ((200, 200), (260, 230), (230, 300))]
    ms = [Measurement("length", p[:2], label=f"{MARK} lesion"),
          Measurement("ellipse", [p[0], p[0] + [9, 0, 0], p[0] + [0, 6, 0]], label=f"near {MARK}")]
    for m in ms:
        m.series_uid = vol.source.series_instance_uid
        compute(m, vol)
    seg = Segmentation.for_volume(vol, f"{MARK} reading")
    s = seg.add_segment(f"{MARK} tumour")
    seg.layers[0][k - 1:k + 2, 200:230, 200:240] = s.number
    return ms, seg


def _png_metadata(path) -> bytes:
    """Everything in a PNG but its compressed pixels."""
    data, pos, out = open(path, "rb").read(), 8, b""
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        if data[pos + 4:pos + 8] != b"IDAT":
            out += data[pos + 4:pos + 8 + n]
        pos += 12 + n
    return out


def scan_export(out: dict) -> list[str]:
    """Planted identifiers in any exported file: DICOM datasets element by element and as written
    (pixels aside), the PNG's metadata, the CSV and JSON text."""
    found = []
    for kind, paths in out.items():
        for path in paths:
            if kind in ("sr", "sc", "seg", "images"):
                ds = pydicom.dcmread(path)
                if "PixelData" in ds:
                    del ds.PixelData
                found += [f"{kind}: {w}" for w in leaks(ds)]
                data = written(ds)
            elif kind == "png":
                data = _png_metadata(path)
            else:
                data = open(path, "rb").read()
            found += [f"{kind} bytes: {m}" for m in TEXT_MARKS if m.lower().encode() in data.lower()]
    return found


def test_planted_identifiers_reach_no_exported_file(planted_series, tmp_path):
    from viewer.core.io.report import export_report

    vol = planted_series
    ms, seg = _reading(vol)
    rgb = np.zeros((64, 64, 3), np.uint8)
    key = [(rgb, ("L", "P"), vol.source.sop_instance_uids[5], False)]
    # without de-identification every file carries them: the scan can find them
    plain = export_report(tmp_path / "plain", ms, vol, key_images=key, segmentation=seg)
    assert plain["seg"] and plain["sr"] and plain["sc"]
    assert {f.split(":")[0] for f in scan_export(plain)} >= {"seg", "sr", "sc", "csv bytes", "json bytes"}
    seg_ds = pydicom.dcmread(plain["seg"][0])
    assert "ClinicalTrialSubjectID" in seg_ds and "ContributingEquipmentSequence" in seg_ds

    out = export_report(tmp_path / "deid", ms, vol, key_images=key, segmentation=seg, deidentify=True)
    assert sorted(k for k, v in out.items() if v) == ["csv", "json", "png", "sc", "seg", "sr"]
    assert scan_export(out) == []
    seg_ds = pydicom.dcmread(out["seg"][0])
    assert seg_ds.PatientName == "ANONYMOUS" and seg_ds.SegmentSequence[0].SegmentLabel == "Segment 1"
    sc = pydicom.dcmread(out["sc"][0])
    assert sc.BurnedInAnnotation == "NO"
    # the measurements themselves still go out
    from viewer.core.io.sr import read_sr

    back = read_sr(out["sr"][0])
    assert [b.kind for b in back] == ["length", "ellipse"]
    assert back[0].values["length_mm"] == pytest.approx(ms[0].values["length_mm"])
    rows = json.loads(open(out["json"][0]).read())["measurements"]
    assert [r["label"] for r in rows] == ["Length", "Ellipse ROI", "Segment 1"]


def test_an_export_with_its_images_opens_on_its_own_and_leaks_nothing(planted_series, tmp_path):
    """Measure > Export with "Include the series' images": the de-identified SEG and SR refer to
    de-identified copies of the images (one de-identification for all files), so the export opens on
    its own; no planted identifier reaches an image file, and their pixels are the same."""
    from viewer.core.io.report import export_report
    from viewer.core.loader import load
    from viewer.core.segmentation import read_segmentation_file

    vol = planted_series
    ms, seg = _reading(vol)
    out = export_report(tmp_path / "deid", ms, vol, segmentation=seg, deidentify=True, images=True)
    assert len(out["images"]) == vol.shape[0] and all(os.path.dirname(p).endswith("images") for p in out["images"])
    assert scan_export(out) == []
    back = load(str(tmp_path / "deid" / "images"))
    assert back.source.patient_name == "ANONYMOUS" and back.source.study_date == ""
    assert back.source.series_instance_uid != vol.source.series_instance_uid
    assert not set(back.source.sop_instance_uids) & set(vol.source.sop_instance_uids)
    assert np.array_equal(back.array, vol.array) and np.allclose(back.affine, vol.affine)
    # the de-identified SEG opens on the de-identified images, with the same voxels
    again = read_segmentation_file(out["seg"][0], back)
    assert np.array_equal(again.layers[0] > 0, seg.layers[0] > 0)
    # the SR's evidence is the exported series
    sr_ds = pydicom.dcmread(out["sr"][0])
    series = {s.SeriesInstanceUID for st in sr_ds.CurrentRequestedProcedureEvidenceSequence
              for s in st.ReferencedSeriesSequence}
    assert back.source.series_instance_uid in series
    im = pydicom.dcmread(out["images"][0])
    assert im.PatientIdentityRemoved == "YES"
    # the modality's pixels went out as they were: no Clean Pixel Data Option is claimed for them
    assert "113101" not in {c.CodeValue for c in im.DeidentificationMethodCodeSequence}
    # identified, the images go out as they are
    plain = export_report(tmp_path / "plain", ms, vol, images=True, write_tables=False)
    assert pydicom.dcmread(plain["images"][0]).SOPInstanceUID == vol.source.sop_instance_uids[0]


def test_images_that_cannot_go_out_stop_the_export_in_one_sentence(tmp_path):
    """Images with text burnt into their pixels are not exported de-identified; a series whose files
    have gone is said with the count; nothing is half-written."""
    from viewer.core.errors import HounsfieldError
    from viewer.core.io.report import export_report
    from viewer.core.loader import load

    src = data_path("lung-nodule-ct", "lidc-idri-0002")
    folder = tmp_path / "series"
    folder.mkdir()
    names = sorted(n for n in os.listdir(src) if n.endswith(".dcm"))
    for name in names:
        shutil.copy(os.path.join(src, name), folder / name)
    vol = load(str(folder))
    ds = pydicom.dcmread(folder / names[3])
    ds.BurnedInAnnotation = "YES"
    ds.save_as(folder / names[3])
    with pytest.raises(HounsfieldError) as err:
        export_report(tmp_path / "out", [], vol, deidentify=True, images=True)
    assert "burnt into" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out" / "images").exists()
    os.remove(folder / names[0])
    with pytest.raises(HounsfieldError) as err:
        export_report(tmp_path / "out2", [], vol, images=True)
    assert f"1 of the series' {len(names)} files" in str(err.value)


def test_typed_free_text_goes_out_only_when_kept(planted_series, tmp_path):
    from viewer.core.io.report import export_report, free_text

    vol = planted_series
    ms, seg = _reading(vol)
    assert free_text(ms, seg) == [f"{MARK} lesion", f"near {MARK}", f"{MARK} reading", f"{MARK} tumour"]
    out = export_report(tmp_path, ms, vol, segmentation=seg, deidentify=True, clear_free_text=False)
    found = scan_export(out)
    # only the typed words (SR tracking identifiers, the segment's label and its tracking identifier in the
    # SEG, segmentation name), nothing from the images
    assert {f.rsplit(".", 1)[-1].split(": ")[-1] for f in found} == {"TextValue", "SegmentLabel", "TrackingID",
                                                                    "ContentDescription", MARK}
    seg_ds = pydicom.dcmread(out["seg"][0])
    assert seg_ds.SegmentSequence[0].SegmentLabel == f"{MARK} tumour"
    assert ms[0].label == f"{MARK} lesion" and seg.segments[0].name == f"{MARK} tumour"  # nothing changed here


def test_key_image_declares_what_is_burnt_in(planted_series, tmp_path):
    from viewer.core.io.keyimages import secondary_capture

    rgb = np.zeros((32, 32, 3), np.uint8)
    assert secondary_capture(rgb, planted_series.source).BurnedInAnnotation == "YES"  # a view with its text
    clean = secondary_capture(rgb, planted_series.source, burned_in_annotation=False, deidentifier=Deidentifier())
    assert clean.BurnedInAnnotation == "NO"
    assert "113101" in {c.CodeValue for c in clean.DeidentificationMethodCodeSequence}
    shutil.rmtree(tmp_path, ignore_errors=True)
