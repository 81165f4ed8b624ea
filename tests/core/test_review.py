"""Agreement between an AI original and the corrected segment, checked against plain numpy and
scipy on the whole grid, on a real CT's masks; detection review counts; the original survives a
restart beside the journal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import viewer
from tests.conftest import data_path
from viewer.core.layers import Marker
from viewer.core.review import detection_review, hausdorff95, marker_flags, segment_agreement


@pytest.fixture(scope="module")
def ct():
    import viewer

    return viewer.load(data_path("chest-ct"))


def _bone_masks(ct):
    """The AI's "bone" mask in a slab of the real CT and a person's correction of it (a bite erased,
    a few voxels added on two other slices)."""
    k0 = ct.shape[0] // 2
    hu = ct.real_values()[k0 - 8:k0 + 8, 160:360, 160:360]  # a crop of the real CT (keeps the test quick)
    k0 = 8
    ai = np.zeros(hu.shape, bool)
    ai[k0 - 4:k0 + 4, 20:180, 20:180] = hu[k0 - 4:k0 + 4, 20:180, 20:180] > 200
    assert ai.sum() > 500
    fixed = ai.copy()
    kk, jj, ii = np.argwhere(ai)[len(np.argwhere(ai)) // 2]
    fixed[kk, jj - 6:jj + 6, ii - 6:ii + 6] = False
    fixed[k0 - 3, 90:96, 90:96] = True
    fixed[k0 + 2, 40:43, 140:143] = True
    return ai, fixed


def _numpy_hd95(a, b, sampling):
    """The symmetric 95% Hausdorff distance on the whole grid, from all voxel pairs of the surfaces."""
    def surface(m):
        return np.argwhere(m & ~ndimage.binary_erosion(m, border_value=0)) * np.asarray(sampling)
    sa, sb = surface(a), surface(b)
    from scipy.spatial import cKDTree

    d_ab = cKDTree(sb).query(sa)[0]
    d_ba = cKDTree(sa).query(sb)[0]
    return max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))


def test_segment_agreement_matches_numpy_on_a_real_ct_mask(ct):
    ai, fixed = _bone_masks(ct)
    sp = np.linalg.norm(ct.affine[:3, :3], axis=0)[::-1]  # [k, j, i] spacing
    a = segment_agreement(ai, fixed, sp, name="Bone", number=1)
    dice = 2 * (ai & fixed).sum() / (ai.sum() + fixed.sum())
    assert a.dice == pytest.approx(dice, abs=1e-12) and 0.8 < a.dice < 1.0
    voxel_ml = np.prod(sp) / 1000
    assert a.volume_ai_ml == pytest.approx(ai.sum() * voxel_ml)
    assert a.volume_ml == pytest.approx(fixed.sum() * voxel_ml)
    assert a.volume_change_ml == pytest.approx((fixed.sum() - ai.sum()) * voxel_ml)
    assert a.volume_change_pct == pytest.approx(100 * (fixed.sum() - ai.sum()) / ai.sum())
    changed = sorted(int(k) for k in np.flatnonzero((ai != fixed).any(axis=(1, 2))))
    assert a.edited_slices == changed and len(changed) == 3
    assert a.hd95_mm == pytest.approx(_numpy_hd95(ai, fixed, sp), rel=1e-6)
    assert a.status == "edited" and "Dice" in a.text()
    # unchanged: accepted as is
    same = segment_agreement(ai, ai, sp)
    assert same.dice == 1.0 and same.hd95_mm == 0.0 and same.edited_slices == [] and same.status == "accepted"
    # anisotropic spacing counts: a shift of one slice is one slice thickness
    shifted = np.roll(ai, 1, axis=0)
    assert hausdorff95(ai, shifted, (5.0, 1.0, 1.0)) == pytest.approx(5.0)
    # a segment erased entirely
    gone = segment_agreement(ai, np.zeros_like(ai), sp)
    assert gone.dice == 0.0 and gone.hd95_mm is None and gone.volume_change_pct == pytest.approx(-100.0)


def _markers():
    ms = [Marker(np.array([10.0, 20.0, 30.0]), np.array([8.0, 8.0, 6.0]), 0.9, "nodule") for _ in range(5)]
    ms[0].status = "accepted"
    ms[1].status = "rejected"
    ms[2].status, ms[2].center, ms[2].edited = "accepted", np.array([13.0, 24.0, 30.0]), True  # moved 5 mm
    ms[3].size_mm, ms[3].edited = np.array([12.0, 8.0, 6.0]), True  # resized, pending
    ms.append(Marker(np.array([0.0, 0.0, 0.0]), np.array([5.0, 5.0, 5.0]), 1.0, "nodule", origin="person"))
    return ms


def test_detection_review_counts_what_the_radiologist_did():
    ms = _markers()
    r = detection_review(ms)
    assert (r.proposed, r.accepted, r.rejected, r.pending, r.moved, r.resized, r.added) == (5, 2, 1, 2, 1, 1, 1)
    assert r.moved_mm == [pytest.approx(5.0)]
    assert r.acceptance_rate == pytest.approx(2 / 3)
    assert marker_flags(ms[0])["review"] == "accepted as is"
    assert marker_flags(ms[1])["review"] == "rejected by a person"
    assert marker_flags(ms[2])["review"] == "edited by a person"
    assert marker_flags(ms[4])["review"] == "produced by an algorithm"
    assert marker_flags(ms[5])["review"] == "added by a person"


@pytest.fixture
def applied(tmp_path, monkeypatch, ct):
    """A workspace on the chest CT with a plugin's results applied: (workspace, series, results, step)."""
    from tests.core.test_workspace import plugin_results

    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path / "data"))
    ws = viewer.Workspace()
    s = ws.add(ct)
    results = plugin_results(ct)
    return ws, s, results, ws.apply(results, series=s)


def test_the_ai_original_survives_a_restart_beside_the_journal(tmp_path, applied, ct):
    from viewer.core.review import review_applied

    ws, s, results, step = applied
    ai = step.segmentations[0]
    from viewer.core.review import EditRegion, segmentation_agreement

    region = EditRegion(ai)
    assert segmentation_agreement(ai, region.region)[0].dice == 1.0  # nothing changed: the original's box only
    voxel = np.argwhere(results.label_maps[0].array)[0][::-1]
    assert ai.brush(ct.index_to_lps(voxel), 4.0, segment="Bone", erase=True)
    assert ai.brush(ct.index_to_lps(voxel + [0, 0, 20]), 3.0, segment="Bone")  # past the AI's slab
    fast, whole = segmentation_agreement(ai, region.region)[0], segmentation_agreement(ai, "whole")[0]
    assert region.box is not None and not region.whole
    assert fast.dice == pytest.approx(whole.dice) and fast.hd95_mm == pytest.approx(whole.hd95_mm)
    assert fast.edited_slices == whole.edited_slices and fast.volume_ml == pytest.approx(whole.volume_ml)
    region.close()
    rev = review_applied(step)
    assert rev.plugin_id == "test-detector" and rev.plugin_version == "1.2"
    assert len(rev.segments) == 1 and rev.segments[0].dice < 1.0 and rev.segments[0].edited
    assert rev.detections.proposed == 2 and rev.detections.pending == 2
    ws.close()

    ws2 = viewer.Workspace()
    s2 = ws2.add(ct)
    (rec,) = s2.recoverable()
    again = s2.restore(rec)
    assert again.original is not None and np.array_equal(again.original, results.label_maps[0].array)
    ws2.close()



def test_detections_as_reviewed_survive_a_quit_and_a_restore(tmp_path, applied, ct):
    """Quit without exporting (a segment edited, one detection rejected, one moved) and restore the
    segmentation from its journal next time: the run came back in the AI results panel with no
    detections at all, so the decisions were lost and the figures read '0 proposed'. They come back
    as reviewed."""
    from viewer.core.review import review_applied

    ws, s, results, step = applied
    ai = step.segmentations[0]
    voxel = np.argwhere(results.label_maps[0].array)[0][::-1]
    assert ai.brush(ct.index_to_lps(voxel), 4.0, segment="Bone", erase=True)
    first, second = step.marker_sets[0].markers[:2]
    first.status = "rejected"
    second.center, second.edited = second.center + [5.0, 0.0, 0.0], True
    before = review_applied(step).detections
    assert (before.proposed, before.rejected, before.moved) == (2, 1, 1)
    ws.close()

    ws2 = viewer.Workspace()
    s2 = ws2.add(ct)
    (rec,) = s2.recoverable()
    s2.restore(rec)
    (back,) = ws2.results
    (ms,) = back.marker_sets
    assert [m.status for m in ms.markers] == ["rejected", "pending"]
    assert np.allclose(ms.markers[1].center, second.center) and ms.markers[1].proposed is not None
    assert any(o is ms for o in s2.overlays)  # on the series, drawn and reviewable again
    after = review_applied(back).detections
    assert (after.proposed, after.rejected, after.moved) == (2, 1, 1)
    assert after.moved_mm == [pytest.approx(5.0)]
    ws2.close()


def test_exports_say_who_made_each_finding_and_what_a_person_changed(tmp_path, applied, ct):
    import csv
    import json

    import pydicom

    from viewer.core.io.sr import read_reviews
    from viewer.core.review import segment_review

    ws, s, results, step = applied
    ai = step.segmentations[0]
    ms = step.marker_sets[0]
    ms.set_status(0, "accepted")
    ms.move(1, ms.markers[1].center + [3.0, 4.0, 0.0])
    ms.set_status(1, "accepted")
    # first unedited: AUTOMATIC, accepted as is, Dice 1
    out = ws.export(tmp_path / "a", series=s, segmentation=ai)
    seg = pydicom.dcmread(out["seg"][0])
    sd = seg.SegmentSequence[0]
    assert sd.SegmentAlgorithmType == "AUTOMATIC" and sd.SegmentAlgorithmName == "Test detector"
    (g_seg, g_d0, g_d1) = read_reviews(out["sr"][0])
    assert g_seg["review"] == "accepted as is" and g_seg["AIDICE"] == pytest.approx(1.0)
    assert g_d0["review"] == "accepted as is" and g_d1["review"] == "edited by a person"
    assert g_d1["AIMOVED"] == pytest.approx(5.0)
    # then a person erases a bite: SEMIAUTOMATIC, edited, the figures of viewer.core.review
    voxel = np.argwhere(results.label_maps[0].array)[0][::-1]
    assert ai.brush(ct.index_to_lps(voxel), 4.0, segment="Bone", erase=True)
    want = segment_review(ai, ai.segment("Bone"))
    orig, now = results.label_maps[0].array == 1, ai.mask("Bone")
    assert want["dice"] == pytest.approx(2 * (orig & now).sum() / (orig.sum() + now.sum()))
    out = ws.export(tmp_path / "b", series=s, segmentation=ai)
    sd = pydicom.dcmread(out["seg"][0]).SegmentSequence[0]
    assert sd.SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert sd.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "Test detector"
    g_seg = read_reviews(out["sr"][0])[0]
    assert g_seg["review"] == "edited by a person"
    assert g_seg["AIDICE"] == pytest.approx(want["dice"]) and g_seg["AIHD95"] == pytest.approx(want["hd95_mm"])
    assert g_seg["AIDVOL"] == pytest.approx(want["volume_change_ml"])
    rows = list(csv.DictReader(open(out["csv"][0])))
    seg_row = next(r for r in rows if r["kind"] == "segment")
    assert seg_row["review"] == "edited by a person" and float(seg_row["dice"]) == pytest.approx(want["dice"], abs=1e-4)
    assert seg_row["algorithm"] == "Test detector 1.2"
    dets = [r for r in rows if r["kind"] == "detection"]
    assert [d["review"] for d in dets] == ["accepted as is", "edited by a person"]
    assert float(dets[1]["moved_mm"]) == pytest.approx(5.0)
    table = json.loads(open(out["json"][0]).read())["measurements"]
    assert [r.get("review") for r in table if r["kind"] != "length"] == [
        "edited by a person", "accepted as is", "edited by a person"]

    # the probability heatmap as a DICOM Parametric Map and NIfTI; the map opens again on the series
    maps = ws.export_heatmaps(tmp_path / "maps", series=s)
    assert len(maps["pm"]) == 1 and len(maps["nifti"]) == 1
    from viewer.core.references import dicom_object

    obj = dicom_object(maps["pm"][0])
    assert obj.kind == "pm" and obj.series_uid == ct.source.series_instance_uid
    back = s.import_heatmap(maps["pm"][0])
    assert np.allclose(back.volume.array, s.heatmaps[0].volume.array, atol=1e-6) and back.unit == ""
    nii = viewer.load(maps["nifti"][0])
    assert np.allclose(nii.array, results.heatmaps[0].array, atol=1e-6)
    ws.close()
    # the exports and the close recorded the run once in the audit log, with the last figures
    from viewer.core.audit import AuditLog

    with AuditLog() as audit:
        (row,) = audit.rows()
    assert (row["plugin_id"], row["plugin_version"], row["proposed"], row["accepted"]) == ("test-detector", "1.2", 2, 2)
    assert row["dice"] == pytest.approx(want["dice"]) and row["moved"] == 1 and row["edited"] == 1
    assert ct.source.study_instance_uid not in str(row)


def test_the_ai_original_survives_an_export_and_reopening_its_seg(tmp_path, applied, ct):
    """Exported as DICOM SEG and closed, the study and its SEG opened again (a new workspace: another
    session) bring back the model's original, the run's provenance, who edited what, the detections as
    reviewed, and the same figures; recording it again updates the audit log's one row."""
    import pydicom

    from viewer.core.audit import AuditLog
    from viewer.core.review import review_applied

    ws, s, results, step = applied
    ai = step.segmentations[0]
    manual = ai.add_segment("Cyst")  # a person's own segment beside the AI's
    voxel = np.argwhere(results.label_maps[0].array)[0][::-1]
    assert ai.brush(ct.index_to_lps(voxel), 4.0, segment="Bone", erase=True)
    assert ai.brush(ct.index_to_lps(voxel + [30, 30, 0]), 3.0, segment=manual.number)
    ms = step.marker_sets[0]
    ms.set_status(0, "rejected")
    ms.move(1, ms.markers[1].center + [3.0, 4.0, 0.0])
    before = review_applied(step)
    out = ws.export(tmp_path / "out", series=s, segmentation=ai)
    items = pydicom.dcmread(out["seg"][0], stop_before_pixels=True).SegmentSequence
    assert [it.TrackingID for it in items] == ["Bone", "Cyst"] and len({it.TrackingUID for it in items}) == 2
    ws.close()

    ws2 = viewer.Workspace()
    s2 = ws2.add(ct)
    assert s2.recoverable() == []  # exported: nothing to recover, yet the original comes back with the SEG
    again = s2.import_segmentation(out["seg"][0])
    assert again.original is not None and np.array_equal(again.original, results.label_maps[0].array)
    assert again.provenance["plugin_id"] == "test-detector"
    assert [(x.name, x.edited) for x in again.segments] == [("Bone", True), ("Cyst", False)]
    (reopened,) = ws2.results
    assert reopened.segmentations == [again] and reopened.title == "Test detector 1.2"
    after = review_applied(reopened)
    assert [(a.name, a.dice, a.hd95_mm, a.volume_ml, a.edited_slices) for a in after.segments] == \
        [(a.name, pytest.approx(a.dice), pytest.approx(a.hd95_mm), pytest.approx(a.volume_ml), a.edited_slices)
         for a in before.segments]
    assert after.detections.to_dict() == before.detections.to_dict()
    assert [m.status for m in s2.marker_sets[0].markers] == ["rejected", "pending"]
    ws2.close()  # reviewed: recorded again, under the run's key
    with AuditLog() as audit:
        (row,) = audit.rows()
    assert row["rejected"] == 1 and row["moved"] == 1 and row["dice"] == pytest.approx(before.dice)

    # a SEG without a kept original (a person's own) opens as before: no original, no AI result
    ws3 = viewer.Workspace()
    s3 = ws3.add(ct)
    mine = s3.segmentation()
    assert mine.brush(ct.index_to_lps(voxel), 4.0, segment=mine.add_segment("Tumour").number)
    out3 = ws3.export(tmp_path / "mine", series=s3, segmentation=mine, sr=False, csv=False)
    assert s3.import_segmentation(out3["seg"][0]).original is None and ws3.results == []
    ws3.close()


def test_a_removed_ai_segment_and_a_seg_copy_with_new_uids_still_find_the_original(tmp_path, applied, ct):
    """The AI's segment removed before the export (the SEG numbers the person's segment 1): the kept
    original gives the removed label a number of its own; a copy of the SEG with a new SOP Instance
    UID is found by its segments' Tracking UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    from viewer.core.review import review_applied

    ws, s, results, step = applied
    ai = step.segmentations[0]
    cyst = ai.add_segment("Cyst")
    voxel = np.argwhere(results.label_maps[0].array)[0][::-1]
    assert ai.brush(ct.index_to_lps(voxel + [30, 30, 0]), 3.0, segment=cyst.number)
    ai.remove_segment("Bone")
    before = review_applied(step)
    out = ws.export(tmp_path / "out", series=s, segmentation=ai, sr=False, csv=False)
    ws.close()
    ds = pydicom.dcmread(out["seg"][0])
    ds.SOPInstanceUID = generate_uid()  # a copy that went elsewhere and came back with new UIDs
    ds.SeriesInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(tmp_path / "copy.dcm")

    ws2 = viewer.Workspace()
    s2 = ws2.add(ct)
    again = s2.import_segmentation(tmp_path / "copy.dcm")
    assert [x.number for x in again.segments] == [1] and again.original is not None
    bone = results.label_maps[0].array == 1
    assert np.array_equal(again.original == 2, bone) and not (again.original == 1).any()
    after = review_applied(ws2.results[0])
    assert [(a.dice, a.volume_ai_ml, a.volume_ml) for a in after.segments] == \
        [(pytest.approx(a.dice), pytest.approx(a.volume_ai_ml), pytest.approx(a.volume_ml)) for a in before.segments]
    assert after.segments[-1].name == "Label 2 (removed)" and after.segments[-1].volume_ml == 0.0
    ws2.close()
