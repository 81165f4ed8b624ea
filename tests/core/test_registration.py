"""Registration core (viewer.core.registration), its storage and the DICOM Spatial Registration object, on
real data: the chest CT and its documented synthetic follow-up (tests/followup.py), in small crops so the
module stays fast.  Accuracy is checked against the known transforms; timings live in
tests/benchmarks/bench_registration.py."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from tests.benchmarks.bench_registration import euler, volume_of
from tests.conftest import data_path
from tests.followup import TUMOUR_SLICES, cached_followup
from viewer.core.errors import HounsfieldError
from viewer.core.io.spatial_registration import (
    SPATIAL_REGISTRATION,
    read_spatial_registration,
    write_spatial_registration,
)
from viewer.core.loader import load
from viewer.core.registration import (
    Registration,
    RegistrationCancelled,
    matrix_transform,
    register,
    rigid_matrix,
    to_sitk,
)
from viewer.core.registration_store import load_registration, store_path
from viewer.core.volume import SourceInfo, Volume
from viewer.core.workspace import Workspace


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The follow-up pair at every 2nd row and column, 40 slices around the tumour (256x256x40)."""
    data_path("chest-ct")
    return cached_followup(tmp_path_factory, stride=2, slices=TUMOUR_SLICES)


@pytest.fixture(scope="module")
def pair(small):
    return load(small.followup_dir), load(small.baseline_dir)


@pytest.fixture(scope="module")
def rigid(pair):
    fixed, moving = pair
    return register(fixed, moving, "rigid")


@pytest.fixture(scope="module")
def deformable(pair, rigid):
    fixed, moving = pair
    seen = []
    reg = register(fixed, moving, "deformable", initial=rigid, progress=lambda f, text: seen.append(f))
    assert seen and seen[-1] == pytest.approx(1.0) and all(0.0 <= f <= 1.0 for f in seen)
    return reg


def _points(volume: Volume, n: int = 30, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo = np.array([0.2, 0.2, 0.2]) * (np.array(volume.shape[::-1]) - 1)
    hi = np.array([0.8, 0.8, 0.8]) * (np.array(volume.shape[::-1]) - 1)
    return volume.index_to_lps(rng.uniform(lo, hi, (n, 3)))


def _rotation_error_degrees(a: np.ndarray, b: np.ndarray) -> float:
    c = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def test_known_rigid_move_recovered_within_1mm_and_1_degree(pair):
    """The baseline crop moved by a known rigid transform (3 degrees, 11 mm) and registered back."""
    _fixed, base = pair
    centre = base.index_to_lps((np.array(base.shape[::-1]) - 1) / 2.0)
    truth = sitk.Euler3DTransform()
    truth.SetCenter([float(c) for c in centre])
    truth.SetRotation(*np.radians([1.5, -1.0, 2.5]).tolist())
    truth.SetTranslation([6.0, -5.0, 7.0])
    image = to_sitk(base)
    moved = sitk.Resample(image, image, truth, sitk.sitkLinear, -1024.0)
    fixed = Volume(sitk.GetArrayFromImage(moved).astype(np.int16), base.affine, "CT",
                   source=SourceInfo(series_instance_uid="1.2.3.fixed"))
    reg = register(fixed, base, "rigid")
    assert reg.kind == "rigid" and reg.fixed_uid == "1.2.3.fixed" and reg.moving_uid == base.source.series_instance_uid
    pts = _points(fixed)
    want = np.array([truth.TransformPoint(tuple(p)) for p in pts])
    tre = np.linalg.norm(reg.to_moving(pts) - want, axis=1)
    assert tre.max() < 1.0, tre
    assert _rotation_error_degrees(reg.matrix, rigid_matrix(truth)) < 1.0
    before = np.linalg.norm(pts - want, axis=1)
    assert before.mean() > 8.0  # the move was real


def test_rigid_on_the_followup_leaves_only_the_deformation(small, rigid):
    tre = small.tre(rigid.to_moving)
    before = small.tre(lambda p: p)
    assert before.mean() > 10.0
    assert tre.mean() < 3.0 and tre.mean() < before.mean() / 5


def test_deformable_lowers_the_error_on_the_landmarks(small, rigid, deformable):
    assert deformable.kind == "deformable"
    rigid_tre, tre = small.tre(rigid.to_moving), small.tre(deformable.to_moving)
    assert tre.mean() < 2.0, tre
    assert tre.mean() < rigid_tre.mean() - 0.3, (tre.mean(), rigid_tre.mean())


def test_cancel_raises_and_changes_nothing(small):
    ws = Workspace()
    try:
        b, f = ws.open(small.baseline_dir), ws.open(small.followup_dir)
        calls = []

        def cancel() -> bool:
            calls.append(1)
            return len(calls) > 3  # a few iterations in

        with pytest.raises(RegistrationCancelled):
            register(f.volume, b.volume, "deformable", cancel=cancel)
        assert len(calls) > 3
        assert ws.registrations == [] and ws.registration(f, b) is None
        assert load_registration(f.uid, b.uid) is None
    finally:
        ws.close()


def test_inverse_round_trips(small, rigid, deformable):
    p = small.landmarks_followup
    for reg in (rigid, deformable):
        inv = reg.inverse()
        assert (inv.fixed_uid, inv.moving_uid) == (reg.moving_uid, reg.fixed_uid)
        q = reg.to_moving(p)
        assert np.abs(inv.to_moving(q) - p).max() < 0.05
        assert np.abs(inv.to_fixed(p) - q).max() < 0.05
        assert np.abs(reg.to_fixed(q) - p).max() < 0.05
    assert np.allclose(rigid.inverse().matrix, np.linalg.inv(rigid.matrix), atol=1e-9)


def test_resample_brings_the_baseline_tumour_onto_the_followup(small, pair, deformable):
    """The baseline tumour mask carried through the registration lies on the follow-up tumour: the truth
    of the baseline mask mapped by the true transform is the reference."""
    fixed, moving = pair
    base_mask, follow_mask = small.masks()
    carried = deformable.resample(moving, fixed, array=base_mask.astype(np.uint8), nearest=True).astype(bool)
    assert carried.shape == fixed.shape and carried.any()
    # the carried (baseline-sized) tumour lies inside the grown follow-up tumour
    inside = (carried & follow_mask).sum() / carried.sum()
    assert inside > 0.9, inside
    hu = deformable.resample(moving, fixed)
    assert hu.shape == fixed.shape and hu.min() >= -1100


def test_to_dict_and_tfm_round_trip(tmp_path, small, rigid, deformable):
    p = small.landmarks_followup
    for reg in (rigid, deformable):
        back = Registration.from_dict(json.loads(json.dumps(reg.to_dict())))
        assert back.kind == reg.kind and (back.fixed_uid, back.moving_uid) == (reg.fixed_uid, reg.moving_uid)
        assert np.abs(back.to_moving(p) - reg.to_moving(p)).max() < 1e-6
        loaded = Registration.load(reg.save(tmp_path / f"{reg.kind}.tfm"), reg.fixed_uid, reg.moving_uid)
        assert loaded.kind == reg.kind
        assert np.abs(loaded.to_moving(p) - reg.to_moving(p)).max() < 1e-6
    with pytest.raises(HounsfieldError):
        deformable.matrix  # noqa: B018 - no single matrix


def test_spatial_registration_object_round_trip_and_direction(tmp_path, small, pair):
    """Written with the true rigid part; read with pydicom: the moving item's matrix maps the baseline
    (moving) frame into the follow-up (fixed, registered) frame, as DICOM says."""
    fixed, moving = pair
    reg = Registration(fixed.source.series_instance_uid, moving.source.series_instance_uid, "rigid",
                       matrix_transform(small.truth.matrix), fixed_frame_uid=small.followup_frame_uid,
                       moving_frame_uid=small.baseline_frame_uid)
    path = write_spatial_registration(tmp_path / "reg.dcm", reg, fixed, moving)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == SPATIAL_REGISTRATION and ds.Modality == "REG"
    assert ds.FrameOfReferenceUID == small.followup_frame_uid and ds.PatientID == small.patient_id
    items = ds.RegistrationSequence
    assert [it.FrameOfReferenceUID for it in items] == [small.followup_frame_uid, small.baseline_frame_uid]
    mats = [np.array(it.MatrixRegistrationSequence[0].MatrixSequence[0].FrameOfReferenceTransformationMatrix,
                     float).reshape(4, 4) for it in items]
    assert items[1].MatrixRegistrationSequence[0].MatrixSequence[0].FrameOfReferenceTransformationMatrixType == "RIGID"
    assert np.allclose(mats[0], np.eye(4))
    # moving (baseline) points of the rigid truth map back to the follow-up points
    p = small.landmarks_followup
    q = small.truth.rigid(p)
    assert np.abs(q @ mats[1][:3, :3].T + mats[1][:3, 3] - p).max() < 1e-4
    series = {s.SeriesInstanceUID for s in ds.ReferencedSeriesSequence}
    series |= {s.SeriesInstanceUID for st in ds.get("StudiesContainingOtherReferencedInstancesSequence", [])
               for s in st.ReferencedSeriesSequence}
    assert series == {small.followup_series_uid, small.baseline_series_uid}
    back = read_spatial_registration(path)
    assert (back.fixed_uid, back.moving_uid) == (small.followup_series_uid, small.baseline_series_uid)
    assert np.abs(back.to_moving(p) - q).max() < 1e-4
    with pytest.raises(HounsfieldError):
        read_spatial_registration(small.followup_dir / "CT0000.dcm")


def test_workspace_saves_and_reopens_the_registrations(small, rigid, deformable):
    ws = Workspace()
    added = []
    ws.registration_added.connect(added.append)
    b, f = ws.open(small.baseline_dir), ws.open(small.followup_dir)
    ws.add_registration(rigid)
    assert added == [rigid] and ws.registration(f, b) is rigid and ws.registration(f.key, b.key) is rigid
    inv = ws.registration(b, f)
    assert (inv.fixed_uid, inv.moving_uid) == (b.uid, f.uid)
    assert np.allclose(inv.matrix, np.linalg.inv(rigid.matrix))
    entry = json.loads(open(store_path(), encoding="utf-8").read())["pairs"][f"{f.uid}|{b.uid}"]
    sro = pydicom.dcmread(entry["sro_file"])
    assert sro.SOPClassUID == SPATIAL_REGISTRATION
    ws.add_registration(deformable)  # replaces the rigid one of the same pair
    assert ws.registrations == [deformable]
    ws.close()

    again = Workspace()
    restored = []
    again.registration_added.connect(restored.append)
    b2 = again.open(small.baseline_dir)
    assert again.registrations == []
    f2 = again.open(small.followup_dir)
    assert len(restored) == 1 and restored[0].kind == "deformable"
    p = small.landmarks_followup
    assert np.abs(again.registration(f2, b2).to_moving(p) - deformable.to_moving(p)).max() < 1e-6
    back = again.registration(b2, f2)  # the inverse, computed from the stored direction
    assert np.abs(back.to_moving(deformable.to_moving(p)) - p).max() < 0.05
    again.close()


def _moved(volume: Volume, truth: sitk.Transform, uid: str, background: float = 0.0) -> Volume:
    """``volume`` resampled so that the anatomy at ``x`` of the original lies at ``truth(x)``."""
    image = to_sitk(volume)
    return volume_of(sitk.Resample(image, image, truth.GetInverse(), sitk.sitkLinear, background), volume.modality, uid)


def test_ct_mr_rigid_recovers_a_known_move():
    """The skull-stripped CT template against the MNI T1 (brain): the templates themselves disagree by
    about 1.7 mm (different MNI generations), so the known move is checked against where the unmoved pair
    registers, and the TRE against the assumed alignment stays within 2.5 mm."""
    root = data_path("mr-ct-templates")
    t1 = sitk.ReadImage(str(root / "mni152-2009a-t1.nii.gz"), sitk.sitkFloat32)
    ct = sitk.ConstantPad(sitk.ReadImage(str(root / "scct_stripped.nii.gz"), sitk.sitkFloat32), [12] * 3, [12] * 3)
    fixed, ct_vol = volume_of(t1, "MR", "t1"), volume_of(ct, "CT", "ct")
    brain = sitk.Resample(sitk.ReadImage(str(root / "scgrey.nii.gz"), sitk.sitkFloat32)
                          + sitk.ReadImage(str(root / "scwhite.nii.gz"), sitk.sitkFloat32), t1)
    kk, jj, ii = np.nonzero(sitk.GetArrayFromImage(brain) > 0.5)
    pick = np.random.default_rng(3).choice(len(kk), 20, replace=False)
    pts = fixed.index_to_lps(np.stack([ii[pick], jj[pick], kk[pick]], axis=1))
    truth = euler(ct_vol.index_to_lps((np.array(ct_vol.shape[::-1]) - 1) / 2.0), (5.0, -3.0, 4.0), (10.0, -8.0, 6.0))
    unmoved = register(fixed, ct_vol, "rigid")
    found = register(fixed, _moved(ct_vol, truth, "ct-moved"), "rigid")

    def moved(p):
        return np.array([truth.TransformPoint(tuple(map(float, q))) for q in p])

    assert np.linalg.norm(found.to_moving(pts) - moved(unmoved.to_moving(pts)), axis=1).mean() < 0.5
    tre = np.linalg.norm(found.to_moving(pts) - moved(pts), axis=1)
    assert tre.mean() < 2.5 and np.linalg.norm(moved(pts) - pts, axis=1).mean() > 10


def test_brats_flair_t1c_rigid_within_1mm():
    """The same patient's T1c moved by a known transform, registered to its FLAIR (BraTS: evaluation only)."""
    case = data_path("brain-lesion-mr", "brats-0003")
    flair = volume_of(sitk.ReadImage(str(case / "Flair_subtrMeanDivStd.nii.gz"), sitk.sitkFloat32), "MR", "flair")
    t1c_image = sitk.ReadImage(str(case / "T1c_subtrMeanDivStd.nii.gz"), sitk.sitkFloat32)
    t1c = volume_of(t1c_image, "MR", "t1c")
    truth = euler(t1c.index_to_lps((np.array(t1c.shape[::-1]) - 1) / 2.0), (4.0, 3.0, -5.0), (-7.0, 9.0, 5.0))
    moving = _moved(t1c, truth, "t1c-moved", float(sitk.GetArrayViewFromImage(t1c_image).min()))
    reg = register(flair, moving, "rigid")
    kk, jj, ii = np.nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(case / "brainmask.nii.gz"))) > 0)
    pick = np.random.default_rng(5).choice(len(kk), 20, replace=False)
    pts = flair.index_to_lps(np.stack([ii[pick], jj[pick], kk[pick]], axis=1))
    want = np.array([truth.TransformPoint(tuple(map(float, q))) for q in pts])
    tre = np.linalg.norm(reg.to_moving(pts) - want, axis=1)
    assert tre.max() < 1.0, tre
    assert _rotation_error_degrees(reg.matrix, rigid_matrix(truth)) < 1.0
