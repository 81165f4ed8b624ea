"""Exports of measurements on the real chest CT: TID 1500 SR (re-read with highdicom and dsrdump),
CSV and JSON tables, key images (PNG, Secondary Capture) and de-identification."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pydicom
import pytest

from tests.conftest import data_path
from viewer.core.io.deid import Deidentifier
from viewer.core.io.keyimages import read_png
from viewer.core.io.report import export_report
from viewer.core.io.sr import read_sr
from viewer.core.measurements import Measurement, compute, segment_stats

IDENTITY = {"patient_name": "TESTPERSON^JANE", "patient_id": "MRN-4711-XY", "patient_birth_date": "19510823"}


@pytest.fixture(scope="module")
def ct():
    from viewer.core.loader import load

    vol = load(data_path("chest-ct"))
    # the public data is already anonymised: give it identifiers to take out again
    vol.source = replace(vol.source, **IDENTITY)
    return vol


def lps(vol, i, j, k):
    return vol.index_to_lps([i, j, k])


@pytest.fixture(scope="module")
def measurements(ct):
    c = lps(ct, 165, 252, 78)  # the right-lung tumour
    sp = ct.spacing
    ms = [
        Measurement("length", [lps(ct, 150, 250, 78), lps(ct, 182, 256, 78)], label="tumour length"),
        Measurement("angle", [lps(ct, 100, 200, 78), lps(ct, 150, 250, 78), lps(ct, 200, 240, 78)]),
        Measurement("ellipse", [c, c + [12 * sp[0], 0, 0], c + [0, 9 * sp[1], 0]], label="tumour ROI"),
        Measurement("polygon", [lps(ct, 300, 200, 60), lps(ct, 340, 210, 60), lps(ct, 330, 260, 60),
                                lps(ct, 290, 240, 60)], label="liver"),
        Measurement("point", [lps(ct, 256, 256, 70)]),
        Measurement("bidirectional", [lps(ct, 152, 252, 78), lps(ct, 178, 252, 78), lps(ct, 165, 242, 78),
                                      lps(ct, 165, 262, 78)], label="target lesion 1"),
        Measurement("length", [lps(ct, 200, 250, 30), lps(ct, 200, 250, 90)], normal=[0, 1, 0]),  # coronal
    ]
    for m in ms:
        m.series_uid = ct.source.series_instance_uid
        compute(m, ct)
    return ms


def tumour_segment(ct):
    box = np.s_[74:84, 230:275, 140:190]
    mask = np.zeros(ct.shape, bool)
    mask[box] = ct.array[box] > -400
    return mask


def test_sr_round_trip_keeps_every_value(ct, measurements, tmp_path):
    key = np.zeros((64, 80, 3), np.uint8)
    key[10:20, 30:50] = (255, 200, 0)
    stats = segment_stats(tumour_segment(ct), ct)
    out = export_report(tmp_path, measurements, ct, key_images=[(key, ("L", "P"), ct.source.sop_instance_uids[78])],
                        segments=[("tumour", stats, ("1.2.3.4.5.6.7", 1))])
    sr_path = out["sr"][0]
    ds = pydicom.dcmread(sr_path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    # the evidence references every source image by its SOP instance UID
    series = {s.SeriesInstanceUID: {r.ReferencedSOPInstanceUID for r in s.ReferencedSOPSequence}
              for s in ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence}
    assert series[ct.source.series_instance_uid] == set(ct.source.sop_instance_uids)
    back = read_sr(sr_path)
    assert {b.series_uid for b in back} == {ct.source.series_instance_uid}
    assert [b.kind for b in back] == [m.kind for m in measurements]
    for m, b in zip(measurements, back):
        np.testing.assert_allclose(b.points, m.points, atol=1e-4)
        assert b.label == m.label
        for key_name in ("length_mm", "angle_deg", "long_mm", "short_mm", "area_mm2", "mean", "sd", "min", "max",
                         "value"):
            if key_name in m.values:
                assert b.values[key_name] == pytest.approx(m.values[key_name], rel=1e-9), (m.kind, key_name)
        # recomputing from the points read back gives the same numbers (the plane is recovered too)
        again = compute(Measurement(b.kind, b.points, b.normal, b.u), ct)
        for key_name, value in m.values.items():
            assert again[key_name] == pytest.approx(value, rel=1e-6), (m.kind, key_name)
    # the volumetric group refers to the SEG segment
    import highdicom as hd

    report = hd.sr.Comprehensive3DSR.from_dataset(ds).content
    (vol_group,) = report.get_volumetric_roi_measurement_groups()
    assert vol_group.referenced_segment.referenced_sop_instance_uid == "1.2.3.4.5.6.7"
    names = {m.name.meaning: m.value for m in vol_group.get_measurements()}
    assert names["Volume"] == pytest.approx(stats.volume_ml)


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dcmtk's dsrdump is not installed")
def test_dsrdump_reads_the_sr(ct, measurements, tmp_path):
    out = export_report(tmp_path, measurements, ct)
    run = subprocess.run(["dsrdump", out["sr"][0]], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert "Imaging Measurement Report" in text and "tumour ROI" in text
    assert f"{measurements[0].values['length_mm']:.6g}"[:6] in text
    assert "ELLIPSE" in text and "POLYGON" in text and "Error" not in run.stderr


def test_csv_and_json_hold_the_same_table(ct, measurements, tmp_path):
    out = export_report(tmp_path, measurements, ct)
    with open(out["csv"][0], newline="") as f:
        rows = list(csv.DictReader(f))
    doc = json.loads(open(out["json"][0]).read())
    assert len(rows) == len(doc["measurements"]) == len(measurements)
    for row, item, m in zip(rows, doc["measurements"], measurements):
        assert row["uid"] == item["uid"] == m.uid and row["kind"] == m.kind
        for k, v in m.values.items():
            assert float(row[k]) == pytest.approx(v, abs=1e-3) and item[k] == pytest.approx(v, abs=1e-3)
        np.testing.assert_allclose(item["points_lps"], m.points, atol=1e-3)
    assert doc["units"] == "HU" and doc["patient"]["id"] == IDENTITY["patient_id"]


def test_key_images_as_png_and_secondary_capture(ct, tmp_path):
    rgb = (np.random.default_rng(3).integers(0, 255, (90, 120, 3))).astype(np.uint8)
    out = export_report(tmp_path, [], ct, key_images=[(rgb, ("L", "P"), None), (rgb[::-1].copy(), ("L", "F"), None)])
    assert len(out["png"]) == len(out["sc"]) == 2
    np.testing.assert_array_equal(read_png(out["png"][0]), rgb)
    sc = pydicom.dcmread(out["sc"][1])
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.StudyInstanceUID == ct.source.study_instance_uid
    np.testing.assert_array_equal(sc.pixel_array, rgb[::-1])
    assert sc.InstanceNumber == 2 and sc.PatientOrientation == ["L", "F"]


def test_deidentified_export_holds_no_original_identifiers(ct, measurements, tmp_path):
    rgb = np.zeros((40, 50, 3), np.uint8)
    stats = segment_stats(tumour_segment(ct), ct)
    out = export_report(tmp_path, measurements, ct, key_images=[(rgb, ("L", "P"), ct.source.sop_instance_uids[78])],
                        segments=[("tumour", stats, ("1.2.3.4.5.6.7", 1))], deidentify=True)
    src = ct.source
    secrets = [src.patient_name, src.patient_name.replace("^", " "), "TESTPERSON", src.patient_id,
               src.patient_birth_date, src.study_instance_uid, src.series_instance_uid, src.frame_of_reference_uid,
               *src.sop_instance_uids]
    if src.accession_number:
        secrets.append(src.accession_number)
    files = [p for paths in out.values() for p in paths]
    assert len(files) == 5
    for path in files:
        data = open(path, "rb").read()
        for s in secrets:
            assert s.encode() not in data, (path, s)
    sr = pydicom.dcmread(out["sr"][0])
    sc = pydicom.dcmread(out["sc"][0])
    assert sr.PatientIdentityRemoved == "YES" and sr.PatientName == "ANONYMOUS"
    assert sr.PatientID == sc.PatientID != src.patient_id
    # UIDs are replaced consistently across the files of one export
    assert sr.StudyInstanceUID == sc.StudyInstanceUID != src.study_instance_uid
    ev = {r.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
          for r in s.ReferencedSOPSequence}
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID in ev
    assert sc.file_meta.MediaStorageSOPInstanceUID == sc.SOPInstanceUID
    back = read_sr(out["sr"][0])
    assert back[0].values["length_mm"] == pytest.approx(measurements[0].values["length_mm"])
    doc = json.loads(open(out["json"][0]).read())
    assert doc["deidentified"] and doc["patient"]["name"] == "ANONYMOUS"


def test_deidentifier_maps_each_uid_once():
    d = Deidentifier()
    a, b = d.uid("1.2.3.4"), d.uid("1.2.3.5")
    assert a != b and d.uid("1.2.3.4") == a and a != "1.2.3.4"
    assert d.uid("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"  # registered UIDs stay


@pytest.mark.parametrize("deidentify", [False, True])
def test_segments_go_out_as_a_seg_that_the_sr_refers_to(ct, measurements, tmp_path, deidentify):
    """With a segmentation, the export writes its DICOM SEG, each segment's statistics in the CSV/JSON,
    and a TID 1411 volumetric group per segment in the SR that points at that SEG's segment: also
    after de-identification, which maps the SEG's and the SR's UIDs alike."""
    import highdicom as hd

    from viewer.core.io.seg_dicom import read_dicom_seg
    from viewer.core.segmentation import Segmentation

    seg = Segmentation.for_volume(ct, "Reading")
    tumour = seg.add_segment("Tumour")
    seg.add_segment("Nothing yet")  # empty: left out of the report
    node = seg.add_segment("Node")
    mask = tumour_segment(ct)
    seg.layers[0][mask] = tumour.number
    seg.layers[0][60:64, 300:306, 300:306] = node.number
    out = export_report(tmp_path, measurements[:2], ct, segmentation=seg, deidentify=deidentify,
                        clear_free_text=False)  # the names tell the segments apart here
    (seg_path,) = out["seg"]
    seg_ds = pydicom.dcmread(seg_path)
    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(out["sr"][0]))
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["Tumour", "Node"]  # the empty segment is left out
    for g, number in zip(groups, (1, 3)):  # SEG segment numbers follow the segmentation's list
        ref = g.referenced_segment
        assert ref.referenced_sop_instance_uid == seg_ds.SOPInstanceUID
        assert list(ref.referenced_segment_numbers) == [number]
    values = {m.name.meaning: m.value for m in groups[0].get_measurements()}
    assert values["Volume"] == pytest.approx(segment_stats(mask, ct).volume_ml, rel=1e-6)
    assert values["Volume"] == pytest.approx(mask.sum() * np.prod(ct.spacing) / 1000, rel=1e-6)
    evidence = {s.SeriesInstanceUID for s in
                pydicom.dcmread(out["sr"][0]).CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence}
    assert seg_ds.SeriesInstanceUID in evidence
    rows = list(csv.DictReader(open(out["csv"][0])))
    seg_rows = [r for r in rows if r["kind"] == "segment"]
    assert [r["label"] for r in seg_rows] == ["Tumour", "Node"] and int(seg_rows[0]["count"]) == mask.sum()
    if deidentify:
        assert seg_ds.PatientName == "ANONYMOUS" and seg_ds.PatientID != IDENTITY["patient_id"]
        assert seg_ds.StudyInstanceUID != ct.source.study_instance_uid
        for s in (IDENTITY["patient_id"], ct.source.study_instance_uid, *ct.source.sop_instance_uids):
            assert s.encode() not in open(seg_path, "rb").read()
    else:
        back = read_dicom_seg(seg_path, ct)  # and it opens on the CT with the same voxels
        assert [s.name for s in back.segments] == ["Tumour", "Nothing yet", "Node"]
        assert np.array_equal(back.mask(back.segments[0]), mask)
        assert np.array_equal(back.mask(back.segments[2]), seg.mask(node))
