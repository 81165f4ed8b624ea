"""Send reading results back: a SEG and a TID 1500 SR (highdicom) by C-STORE and STOW-RS, then find them."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from tests.conftest import data_path
from tests.pacs.helpers import assert_one_sentence
from tests.pacs.objects import ct_slices, make_seg, make_sr
from viewer.core.errors import HounsfieldError
from viewer.pacs import Query, TransferCancelled, query, retrieve_study, send_objects


@pytest.fixture
def results(orthanc):
    """A SEG and an SR on the chest CT; deleted from Orthanc again afterwards."""
    slices = ct_slices(orthanc.chest.folder)
    seg, sr = make_seg(slices), make_sr(slices[1])
    yield seg, sr
    for ds in (seg, sr):
        orthanc.orthanc.delete(ds.SeriesInstanceUID)


def _series(env, name, study_uid):
    return {s.series_uid: s for s in query(env.node(name), Query("SERIES", study_uid=study_uid), env.local)}


@pytest.mark.parametrize("seg_via, sr_via", [("orthanc", "orthanc-web"), ("orthanc-web", "orthanc")])
def test_seg_and_sr_go_back_to_the_study(orthanc, data_dir, results, seg_via, sr_via):
    seg, sr = results
    sent = []
    report = send_objects(orthanc.node(seg_via), [seg], local=orthanc.local, progress=lambda n, t: sent.append((n, t)))
    assert report.sent == [seg.SOPInstanceUID] and sent == [(1, 1)]
    assert send_objects(orthanc.node(sr_via), [sr], local=orthanc.local).sent == [sr.SOPInstanceUID]

    for name in ("orthanc", "orthanc-web"):  # both protocols now list them in the CT's study
        series = _series(orthanc, name, orthanc.chest.study_uid)
        assert series[seg.SeriesInstanceUID].modalities == "SEG"
        assert series[sr.SeriesInstanceUID].modalities == "SR"
        assert series[orthanc.chest.series_uid].num_instances == 141

    got = retrieve_study(orthanc.node(), orthanc.chest.study_uid, [seg.SeriesInstanceUID, sr.SeriesInstanceUID],
                         local=orthanc.local)
    files = {s.modality: next(s.folder.glob("*.dcm")) for s in got.series}
    back_seg, back_sr = pydicom.dcmread(files["SEG"]), pydicom.dcmread(files["SR"])
    assert back_seg.SOPInstanceUID == seg.SOPInstanceUID and back_sr.SOPInstanceUID == sr.SOPInstanceUID
    assert np.array_equal(back_seg.pixel_array, seg.pixel_array)
    assert back_seg.SegmentSequence[0].SegmentLabel == "lung (test)"
    assert back_sr.ContentSequence == sr.ContentSequence


@pytest.mark.parametrize("name", ["orthanc", "orthanc-web"])
def test_send_files_from_disk(orthanc, name):
    """Real SEG and SR files (dcmqi) go out byte for byte; their study becomes findable."""
    folder = data_path("dicom-objects", "dcmqi-sr-example")
    files = sorted(folder.glob("*.dcm"))
    study = pydicom.dcmread(files[0], stop_before_pixels=True)
    try:
        report = send_objects(orthanc.node(name), [folder], local=orthanc.local)
        assert report.total == 2 and len(report.sent) == 2
        found = query(orthanc.node(name), Query(patient_id=str(study.PatientID)), orthanc.local)
        assert [r.study_uid for r in found] == [study.StudyInstanceUID]
        assert set(found[0].modalities.split(", ")) == {"SEG", "SR"}
        for path in files:
            sop = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
            stored = orthanc.orthanc.rest("/tools/lookup", "POST", data=sop.encode())[0]["ID"]
            assert orthanc.orthanc.rest(f"/instances/{stored}/metadata/TransferSyntax") == \
                pydicom.dcmread(path).file_meta.TransferSyntaxUID
    finally:
        orthanc.orthanc.delete(study.StudyInstanceUID)


def test_send_refuses_what_is_not_dicom(orthanc, tmp_path):
    bad = tmp_path / "notes.dcm"
    bad.write_text("not DICOM")
    with pytest.raises(HounsfieldError) as err:
        send_objects(orthanc.node(), [bad])
    assert_one_sentence(str(err.value))
    with pytest.raises(HounsfieldError):
        send_objects(orthanc.node(), [])


def test_send_can_be_cancelled(orthanc, results):
    import threading

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TransferCancelled):
        send_objects(orthanc.node(), list(results), cancel=cancel)
