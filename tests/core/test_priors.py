"""Priors from the local study index: the same patient (PatientID and issuer, never the name), other
studies only, grouped by date newest first; the series to compare with."""

from __future__ import annotations

import shutil

import pydicom
import pytest

from tests.followup import FOLLOWUP_DATE, ISSUER, PATIENT_ID, TUMOUR_SLICES, cached_followup
from viewer.core.dicom.index import StudyIndex
from viewer.core.loader import scan
from viewer.core.priors import best_series, by_date, local_priors, patient_studies
from viewer.core.volume import SourceInfo


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from tests.conftest import data_path

    data_path("chest-ct")
    return cached_followup(tmp_path_factory, stride=4, slices=TUMOUR_SLICES)


def _copy(src, dst, **changes):
    """A copy of a study folder with some attributes changed (a new study uid per copy)."""
    dst.mkdir(parents=True, exist_ok=True)
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for n, path in enumerate(sorted(src.glob("*.dcm"))[:3]):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        for k, v in changes.items():
            if v is None:
                delattr(ds, k) if k in ds else None
            else:
                setattr(ds, k, v)
        ds.save_as(dst / f"{n}.dcm")
    return study


def source_of(folder) -> SourceInfo:
    ds = pydicom.dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)
    return SourceInfo(patient_id=ds.PatientID, patient_name=str(ds.PatientName), study_instance_uid=ds.StudyInstanceUID,
                      study_date=ds.StudyDate, series_instance_uid=ds.SeriesInstanceUID,
                      series_description=ds.SeriesDescription, series_number=int(ds.SeriesNumber), path=str(folder))


def test_priors_of_the_followup_are_the_baseline_and_matching_studies_only(pair, tmp_path):
    others = tmp_path / "others"
    same_name_other_id = _copy(pair.baseline_dir, others / "a", PatientID="SOMEONE-ELSE")  # same name: not a prior
    other_issuer = _copy(pair.baseline_dir, others / "b", IssuerOfPatientID="OTHER-HOSPITAL")  # same ID elsewhere
    older = _copy(pair.baseline_dir, others / "c", StudyDate="20060101", StudyDescription="CT chest 2006")
    same_day = _copy(pair.baseline_dir, others / "d", StudyDescription="CT abdomen")  # two studies on one date
    for folder in (pair.followup_dir, pair.baseline_dir, others):
        scan(folder)  # into the local index (HOUNSFIELD_DATA_DIR: the module's own)
    current = source_of(pair.followup_dir)
    assert current.patient_id == PATIENT_ID and current.study_date == FOLLOWUP_DATE

    found = patient_studies(current)
    assert found.issuer == ISSUER and found.current is not None
    assert found.current.study_uid == pair.followup_study_uid and found.current.body_part == "CHEST"
    uids = [s.study_uid for s in found.priors]
    assert pair.followup_study_uid not in uids  # never the study itself
    assert same_name_other_id not in uids and other_issuer not in uids
    assert set(uids) == {pair.baseline_study_uid, older, same_day}
    groups = by_date(found.priors)
    assert [d for d, _ in groups] == ["20070208", "20060101"]  # newest first
    assert {s.study_uid for s in groups[0][1]} == {pair.baseline_study_uid, same_day}
    baseline = next(s for s in found.priors if s.study_uid == pair.baseline_study_uid)
    assert baseline.local and baseline.modalities == ("CT",) and baseline.series[0].images == 40
    assert best_series(baseline, current, "CT").uid == pair.baseline_series_uid


def test_no_patient_id_no_priors(tmp_path, chest_ct_dir):
    folder = tmp_path / "anon"
    shutil.copytree(chest_ct_dir, folder, ignore=lambda _d, names: sorted(names)[3:])
    scan(folder)
    src = source_of(folder)
    assert src.patient_id == ""
    index = StudyIndex()
    try:
        assert index.series_of_patient("") == []
        assert local_priors(src, index) == []
    finally:
        index.close()


def test_best_series_prefers_modality_and_description():
    from viewer.core.priors import PriorSeries, PriorStudy

    st = PriorStudy("1.2", "20200101", series=[PriorSeries("a", "CT", 1, "Scout", 2),
                                               PriorSeries("b", "CT", 3, "Lung 1mm", 300),
                                               PriorSeries("c", "CT", 2, "Soft tissue 3mm", 100),
                                               PriorSeries("d", "PT", 4, "Soft tissue 3mm", 500)])
    cur = SourceInfo(series_description="soft tissue 3mm", series_number=5)
    assert best_series(st, cur, "CT").uid == "c"
    assert best_series(st, SourceInfo(), "CT").uid == "b"  # no description to match: the largest CT
