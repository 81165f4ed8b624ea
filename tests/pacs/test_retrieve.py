"""Retrieve by C-GET, C-MOVE and WADO-RS from the real Orthanc into the managed folder and the index."""

from __future__ import annotations

import pydicom
import pytest

import viewer
from tests.pacs.helpers import assert_one_sentence, assert_same_volume, leftovers, sop_uids
from viewer.core.dicom.index import StudyIndex
from viewer.pacs import Query, RetrieveJob, StorageSCP, TransferCancelled, query, retrieve_study
from viewer.pacs.storage import studies_dir

METHODS = [("orthanc", "C-GET"), ("orthanc-move", "C-MOVE"), ("orthanc-web", "WADO-RS")]


def indexed(folder) -> int:
    index = StudyIndex()
    try:
        return len(index.headers_under(str(folder)))
    finally:
        index.close()


@pytest.mark.parametrize("name, method", METHODS)
def test_chest_ct_by_each_method_has_the_original_voxels(orthanc, data_dir, name, method):
    seen, ready = [], []
    with StorageSCP(orthanc.local) as scp:  # runs while the app runs; only C-MOVE needs it
        job = RetrieveJob(orthanc.node(name), orthanc.chest.study_uid, local=orthanc.local, scp=scp)
        result = job.run(progress=seen.append, on_series=ready.append)
    assert result.method == method and (result.received, result.skipped) == (141, 0)
    assert [s.series_uid for s in result.series] == [orthanc.chest.series_uid] == [s.series_uid for s in ready]
    folder = ready[0].folder
    assert folder.parent.parent == studies_dir() and len(list(folder.glob("*.dcm"))) == 141
    assert sop_uids(folder) == sop_uids(orthanc.chest.folder)
    assert_same_volume(folder, orthanc.chest.folder)
    assert indexed(folder) == 141
    dones = [p.done for p in seen]
    assert dones == sorted(dones) and dones[-1] == seen[-1].total == 141
    assert leftovers(studies_dir()) == []


def test_brain_mr_by_cget(orthanc, data_dir):
    result = retrieve_study(orthanc.node(), orthanc.brain.study_uid, local=orthanc.local)
    assert result.received == 120
    assert_same_volume(result.series[0].folder, orthanc.brain.folder)


def test_resume_fetches_only_what_is_missing(orthanc, data_dir):
    node, study = orthanc.node(), orthanc.chest.study_uid
    folder = retrieve_study(node, study, local=orthanc.local).series[0].folder
    removed = sorted(folder.glob("*.dcm"))[::3]  # as if the transfer had been cut: 47 never arrived
    for p in removed:
        p.unlink()
    again = retrieve_study(node, study, local=orthanc.local)
    assert (again.received, again.skipped) == (len(removed), 141 - len(removed))
    assert len(list(folder.glob("*.dcm"))) == 141 and sop_uids(folder) == sop_uids(orthanc.chest.folder)
    assert indexed(folder) == 141
    third = retrieve_study(orthanc.node("orthanc-web"), study)
    assert (third.received, third.skipped) == (0, 141)  # nothing fetched twice, whatever the protocol
    assert_same_volume(folder, orthanc.chest.folder)


@pytest.mark.parametrize("name", ["orthanc", "orthanc-move", "orthanc-web"])
def test_cancel_keeps_whole_files_then_resumes(orthanc, data_dir, name):
    job = RetrieveJob(orthanc.node(name), orthanc.chest.study_uid, local=orthanc.local)

    def progress(p):
        if p.done >= 30:
            job.cancel()

    with pytest.raises(TransferCancelled) as err:
        job.run(progress=progress)
    assert_one_sentence(str(err.value))
    folder = job.store.series_dir(orthanc.chest.study_uid, orthanc.chest.series_uid)
    kept = sorted(folder.glob("*.dcm"))
    assert 30 <= len(kept) < 141 and err.value.received == len(kept)
    for p in kept:  # every file that is there is whole
        assert pydicom.dcmread(p).pixel_array.shape == (512, 512)
    assert indexed(folder) == 0  # half a series never enters the index
    result = RetrieveJob(orthanc.node(name), orthanc.chest.study_uid, local=orthanc.local).run()
    assert (result.received, result.skipped) == (141 - len(kept), len(kept))
    assert indexed(folder) == 141 and leftovers(studies_dir()) == []
    assert_same_volume(folder, orthanc.chest.folder)


def test_first_series_opens_while_the_rest_arrives(orthanc, data_dir):
    """Images come first; the CT is complete, indexed and loadable before the SEG is fetched."""
    events = []

    def on_series(s):
        seg_folder = s.folder.parent
        events.append((s.modality, s.instances, sorted(p.name for p in seg_folder.iterdir())))
        if s.modality == "CT":
            vol = viewer.load(s.folder)
            assert vol.shape == (3, 512, 512) and indexed(s.folder) == 3

    result = retrieve_study(orthanc.node("orthanc-web"), orthanc.liver.study_uid, on_series=on_series)
    assert [(m, n) for m, n, _ in events] == [("CT", 3), ("SEG", 1)]
    assert events[0][2] == [orthanc.liver.series_uid]  # when the CT was ready, nothing else was there yet
    assert result.received == 4


def test_retrieve_chosen_series_only(orthanc, data_dir):
    seg = [s for s in query(orthanc.node(), Query("SERIES", study_uid=orthanc.liver.study_uid))
           if s.modalities == "SEG"][0]
    result = retrieve_study(orthanc.node(), orthanc.liver.study_uid, [seg.series_uid], local=orthanc.local)
    assert [s.series_uid for s in result.series] == [seg.series_uid] and result.received == 1
    got = pydicom.dcmread(next(result.series[0].folder.glob("*.dcm")))
    assert got.SOPInstanceUID == pydicom.dcmread(orthanc.liver_seg).SOPInstanceUID
    assert viewer.scan(result.series[0].folder).other_objects  # listed as a non-image object


def test_cmove_lands_in_the_jobs_own_folder(orthanc, data_dir, tmp_path):
    """The app's storage SCP writes a retrieve's instances where that retrieve keeps them."""
    from viewer.pacs.storage import LocalStore

    elsewhere = LocalStore(tmp_path / "elsewhere")
    with StorageSCP(orthanc.local) as scp:
        result = RetrieveJob(orthanc.node("orthanc-move"), orthanc.liver.study_uid, [orthanc.liver.series_uid],
                             local=orthanc.local, scp=scp, store=elsewhere).run()
    assert result.series[0].folder == elsewhere.series_dir(orthanc.liver.study_uid, orthanc.liver.series_uid)
    assert result.received == 3 and not studies_dir().exists()
