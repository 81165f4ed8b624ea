"""Registration benchmark (issue 19): accuracy against known transforms and seconds, for the viewer's
multi-resolution registration (viewer.core.registration.register) beside SimpleITK's plain
single-resolution registration (the named baseline: same Mattes mutual information, the same number
of metric samples, full resolution, no pyramid), measured in the same run on this CPU.

    python tests/benchmarks/bench_registration.py [--json out.json] [--skip-plain] [--brats N]

Cases (all real images, moved by transforms known exactly):
- rigid, chest CT 512x512x141 (chest-ct) against a copy moved 2.5/-1.5/3 degrees and (8, -6, 9) mm,
  and against one moved 6/-4/10 degrees and (25, -20, 30) mm (12 degrees, 44 mm: the capture range);
- deformable, the synthetic follow-up (tests/followup.py, full size): rigid motion + six Gaussian
  bumps (up to 5.7 mm), tumour grown 1.2x radially; TRE on its 20 landmarks (lung, vessels, bone);
- CT-MR rigid: the MNI152 T1 template (fixed, 1 mm, a skull-stripped brain) against the CT template
  (mr-ct-templates, 2 mm, Cormack units as stored), skull-stripped and with its skull, moved 5/-3/4
  degrees and (10, -8, 6) mm; TRE on 20 points in the brain (the templates' own disagreement shown);
- MR-MR rigid: BraTS FLAIR (fixed) against the same patient's T1c moved 4/3/-5 degrees and
  (-7, 9, 5) mm (brain-lesion-mr, CC BY-NC-SA: evaluation only); TRE on 20 points in the brain mask;
- carried lesion volume: the baseline tumour mask (chest_ct_reference) carried onto the follow-up
  through the deformable registration; both time points then measured the same way, the reference's
  own recipe (-400 HU, 4 mm opening, fill) inside the lesion's place grown by 8 mm (the baseline mask
  in the baseline, the carried mask in the follow-up); measured growth vs the known growth.

TRE = |registration.to_moving(p) - truth(p)| over the landmarks p of the fixed image (mm); rotation
error = the angle of R_found^T R_true.  Seconds include preparing the images (not reading them) and
are measured with whatever else the machine runs (the load average is printed).

Targets: rigid within 1 mm and 1 degree and < 10 s for the chest CT pair; deformable TRE < 2 mm and
< 60 s; CT-MR rigid within 2 mm; carried volume change within 5% of the known growth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

DATA = Path(os.environ.get("VIEWER_TEST_DATA", REPO.parent / "shared" / "data"))


# ------------------------------------------------------------------------------------ helpers


def volume_of(image: sitk.Image, modality: str = "OT", uid: str = ""):
    """A Volume of ``image`` whose series UID is ``uid`` (what a Registration records)."""
    from viewer.core.formats import volume_from_sitk
    from viewer.core.volume import SourceInfo

    volume = volume_from_sitk(image, modality=modality)
    volume.source = SourceInfo(series_instance_uid=uid)
    return volume


def euler(centre, degrees, shift) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetCenter([float(c) for c in centre])
    t.SetRotation(*np.radians(degrees).tolist())
    t.SetTranslation([float(s) for s in shift])
    return t


def rotation_error(found: np.ndarray, truth: np.ndarray) -> float:
    c = (np.trace(found[:3, :3].T @ truth[:3, :3]) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def points_in(mask: np.ndarray, volume, n: int, rng, min_gap_mm: float = 15.0) -> np.ndarray:
    kk, jj, ii = np.nonzero(mask)
    pts: list[np.ndarray] = []
    for idx in rng.permutation(len(kk)):
        p = volume.index_to_lps((ii[idx], jj[idx], kk[idx]))
        if all(np.linalg.norm(p - q) >= min_gap_mm for q in pts):
            pts.append(p)
        if len(pts) == n:
            break
    return np.array(pts)


def plain_rigid(fixed, moving, samples: int = 60_000, iterations: int = 200) -> sitk.Transform:
    """SimpleITK's plain registration: full resolution, one level, Mattes MI with the same sample count,
    regular-step gradient descent, physical-shift scales, moments initialiser."""
    from viewer.core.registration import to_sitk

    f, m = to_sitk(fixed), to_sitk(moving)
    init = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(min(1.0, samples / float(np.prod(f.GetSize()))), 2026)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=iterations,
                                                    relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(sitk.Euler3DTransform(init), inPlace=True)
    out = method.Execute(f, m)
    return out


def plain_deformable(fixed, moving, samples: int = 60_000) -> sitk.Transform:
    """The plain rigid, then one B-spline level (64 mm grid, as ours) at full resolution."""
    from viewer.core.registration import BSPLINE_MM, to_sitk

    rigid = plain_rigid(fixed, moving, samples)
    f, m = to_sitk(fixed), to_sitk(moving)
    extent = np.asarray(f.GetSize()) * np.asarray(f.GetSpacing())
    bspline = sitk.BSplineTransformInitializer(f, [max(1, int(round(e / BSPLINE_MM))) for e in extent], order=3)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(min(1.0, samples / float(np.prod(f.GetSize()))), 2026)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsLBFGS2(solutionAccuracy=1e-5, numberOfIterations=50, deltaConvergenceTolerance=0.0)
    method.SetMovingInitialTransform(rigid)
    method.SetInitialTransform(bspline, inPlace=True)
    out = method.Execute(f, m)
    if out.GetName() == "CompositeTransform":
        out = sitk.CompositeTransform(out).GetNthTransform(0)
    return sitk.CompositeTransform([rigid, sitk.BSplineTransform(out)])


def tre_of(transform_or_reg, pts: np.ndarray, truth_pts: np.ndarray) -> np.ndarray:
    if hasattr(transform_or_reg, "to_moving"):
        got = transform_or_reg.to_moving(pts)
    else:
        got = np.array([transform_or_reg.TransformPoint(tuple(map(float, p))) for p in pts])
    return np.linalg.norm(got - truth_pts, axis=1)


ROWS: list[dict] = []


def row(case: str, method: str, tre: np.ndarray | None, rot: float | None, seconds: float, note: str = "") -> None:
    r = {"case": case, "method": method, "tre_mean": None if tre is None else float(tre.mean()),
         "tre_max": None if tre is None else float(tre.max()), "rot_err_deg": rot, "seconds": seconds, "note": note}
    ROWS.append(r)
    tm = "-" if tre is None else f"{tre.mean():6.2f}"
    tx = "-" if tre is None else f"{tre.max():6.2f}"
    rt = "-" if rot is None else f"{rot:6.3f}"
    print(f"| {case:<40} | {method:<34} | {tm:>7} | {tx:>7} | {rt:>7} | {seconds:7.1f} | {note}", flush=True)


def header() -> None:
    print(f"| {'case':<40} | {'method':<34} | {'TRE':>7} | {'TRE max':>7} | {'rot err':>7} | {'s':>7} | note")
    print(f"|{'-' * 42}|{'-' * 36}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|------")


def rigid_case(case: str, fixed, moving, truth: sitk.Transform, pts: np.ndarray, plain: bool,
               note: str = "") -> None:
    from viewer.core.registration import register, rigid_matrix

    want = np.array([truth.TransformPoint(tuple(map(float, p))) for p in pts])
    row(case, "no registration", np.linalg.norm(pts - want, axis=1), rotation_error(np.eye(4), rigid_matrix(truth)),
        0.0)
    if plain:
        t = time.perf_counter()
        tf = plain_rigid(fixed, moving)
        sec = time.perf_counter() - t
        row(case, "SimpleITK plain single-resolution", tre_of(tf, pts, want),
            rotation_error(rigid_matrix(tf), rigid_matrix(truth)), sec)
    t = time.perf_counter()
    reg = register(fixed, moving, "rigid")
    sec = time.perf_counter() - t
    row(case, "Hounsfield multi-resolution", tre_of(reg, pts, want), rotation_error(reg.matrix, rigid_matrix(truth)),
        sec, note)


# ------------------------------------------------------------------------------------ cases


def chest_rigid(plain: bool) -> None:
    from viewer.core.loader import load
    from viewer.core.registration import to_sitk

    base = load(DATA / "chest-ct", use_index=False)
    centre = base.index_to_lps((np.array(base.shape[::-1]) - 1) / 2.0)
    truth = euler(centre, (2.5, -1.5, 3.0), (8.0, -6.0, 9.0))
    image = to_sitk(base)
    moved = sitk.Resample(image, image, truth, sitk.sitkLinear, -1024.0)  # fixed(x) = base(truth(x))
    fixed = volume_of(sitk.Cast(moved, sitk.sitkInt16), "CT", "chest-moved")
    hu = base.real_values()
    body = hu > -500
    body[:, :, :] &= np.indices(hu.shape)[1] < 400  # not the table
    rng = np.random.default_rng(2026)
    inner = np.zeros_like(body)
    inner[15:-15, 40:-40, 40:-40] = body[15:-15, 40:-40, 40:-40]
    lung = (hu < -600) & (hu > -950)
    lung[:, :, :] &= inner.any(axis=0)[None]
    pts = np.concatenate([points_in(inner, fixed, 12, rng), points_in(lung & (np.indices(hu.shape)[0] > 15)
                                                                       & (np.indices(hu.shape)[0] < 125), fixed, 8,
                                                                       rng)])
    rigid_case("rigid: chest CT 512x512x141", fixed, base, truth, pts, plain)
    # a larger move (a patient positioned differently): the capture range a pyramid buys
    big = euler(centre, (6.0, -4.0, 10.0), (25.0, -20.0, 30.0))
    fixed = volume_of(sitk.Cast(sitk.Resample(image, image, big, sitk.sitkLinear, -1024.0), sitk.sitkInt16), "CT",
                      "chest-moved-far")
    rigid_case("rigid: chest CT, 12 degrees / 44 mm", fixed, base, big, pts, plain)


def followup_deformable(plain: bool, out_dir: Path):
    from tests.followup import make_followup
    from viewer.core.loader import load
    from viewer.core.registration import Registration, register

    fu = make_followup(out_dir / "followup")
    fixed, moving = load(fu.followup_dir, use_index=False), load(fu.baseline_dir, use_index=False)
    case = "deformable: synthetic follow-up"
    row(case, "no registration", fu.tre(lambda p: p), None, 0.0, "true motion at the landmarks")
    t = time.perf_counter()
    rigid = register(fixed, moving, "rigid")
    row(case, "Hounsfield rigid only", fu.tre(rigid.to_moving), None, time.perf_counter() - t)
    if plain:
        t = time.perf_counter()
        tf = plain_deformable(fixed, moving)
        sec = time.perf_counter() - t
        row(case, "SimpleITK plain single-resolution", fu.tre(Registration("", "", "deformable", tf).to_moving),
            None, sec, "rigid + B-spline, full resolution")
    t = time.perf_counter()
    reg = register(fixed, moving, "deformable")
    row(case, "Hounsfield multi-resolution", fu.tre(reg.to_moving), None, time.perf_counter() - t,
        "rigid + B-spline 64 mm")
    return fu, fixed, moving, reg


def ct_mr(plain: bool) -> None:
    """The MNI152 2009a T1 (a brain: the template is skull-stripped) against the CT template, skull-stripped
    (brain against brain) and with its skull (a blurred population skull cut by the template's field of
    view, against a brain without one: a hard case, shown as a limit).  The moved CT is resampled onto its
    grid padded by 24 mm so nothing leaves the field of view.  The two templates come from different MNI
    generations: the unmoved pair itself registers some way from the identity (the note), which bounds
    the TRE against the assumed alignment."""
    from viewer.core.registration import register, to_sitk

    root = DATA / "mr-ct-templates"
    t1 = sitk.ReadImage(str(root / "mni152-2009a-t1.nii.gz"), sitk.sitkFloat32)
    fixed = volume_of(t1, "MR", "mni-t1")
    grey = sitk.ReadImage(str(root / "scgrey.nii.gz"), sitk.sitkFloat32)
    white = sitk.ReadImage(str(root / "scwhite.nii.gz"), sitk.sitkFloat32)
    brain = sitk.Resample(grey + white, t1, sitk.Transform(), sitk.sitkLinear, 0.0)
    pts = points_in(sitk.GetArrayFromImage(brain) > 0.5, fixed, 20, np.random.default_rng(7))
    for name, label in (("scct_stripped.nii.gz", "CT-MR rigid: MNI T1 vs CT (brain)"),
                        ("scct.nii.gz", "CT-MR rigid: MNI T1 vs CT (skull)")):
        ct = sitk.ConstantPad(sitk.ReadImage(str(root / name), sitk.sitkFloat32), [12] * 3, [12] * 3, 0.0)
        ct_vol = volume_of(ct, "CT", "ct-template")
        unmoved = register(fixed, ct_vol, "rigid")
        drift = np.linalg.norm(unmoved.to_moving(pts) - pts, axis=1).mean()
        centre = ct_vol.index_to_lps((np.array(ct_vol.shape[::-1]) - 1) / 2.0)
        truth = euler(centre, (5.0, -3.0, 4.0), (10.0, -8.0, 6.0))
        image = to_sitk(ct_vol)
        moving = volume_of(sitk.Resample(image, image, truth.GetInverse(), sitk.sitkLinear, 0.0), "CT", "ct-moved")
        # the known move recovered relative to where the unmoved pair registers (the method's own error)
        found = register(fixed, moving, "rigid")
        want = np.array([truth.TransformPoint(tuple(map(float, q))) for q in unmoved.to_moving(pts)])
        consistency = np.linalg.norm(found.to_moving(pts) - want, axis=1).mean()
        rigid_case(label, fixed, moving, truth, pts, plain, note=f"unmoved pair registers {drift:.1f} mm from the "
                   f"identity; move recovered to {consistency:.2f} mm of it")


def brats(plain: bool, n: int) -> None:
    from viewer.core.registration import to_sitk

    cases = sorted((DATA / "brain-lesion-mr").glob("brats-*"))[:n]
    for case_dir in cases:
        flair = sitk.ReadImage(str(case_dir / "Flair_subtrMeanDivStd.nii.gz"), sitk.sitkFloat32)
        t1c = sitk.ReadImage(str(case_dir / "T1c_subtrMeanDivStd.nii.gz"), sitk.sitkFloat32)
        fixed = volume_of(flair, "MR", f"{case_dir.name}-flair")
        t1c_vol = volume_of(t1c, "MR", f"{case_dir.name}-t1c")
        centre = t1c_vol.index_to_lps((np.array(t1c_vol.shape[::-1]) - 1) / 2.0)
        truth = euler(centre, (4.0, 3.0, -5.0), (-7.0, 9.0, 5.0))
        image = to_sitk(t1c_vol)
        bg = float(sitk.GetArrayViewFromImage(t1c).min())
        moving = volume_of(sitk.Resample(image, image, truth.GetInverse(), sitk.sitkLinear, bg), "MR", "t1c-moved")
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(case_dir / "brainmask.nii.gz"))) > 0
        pts = points_in(mask, fixed, 20, np.random.default_rng(11))
        rigid_case(f"MR-MR rigid: BraTS {case_dir.name} FLAIR/T1c", fixed, moving, truth, pts, plain)


def segment_like_reference(hu: np.ndarray, region: np.ndarray, seed_kji) -> np.ndarray:
    """chest_ct_reference's recipe on any grid: in-plane smoothing 0.7 px, > -400 HU, opened with a
    4x4x2-voxel-radius ellipsoid, the seed's part grown back by one ellipsoid within the threshold,
    holes filled; kept inside ``region``."""
    from scipy import ndimage

    sub = ndimage.gaussian_filter(hu.astype(np.float32), (0, 0.7, 0.7))
    th = (sub > -400) & region
    zz, yy, xx = np.mgrid[-2:3, -4:5, -4:5]
    ball = (zz / 2.0) ** 2 + (yy / 4.0) ** 2 + (xx / 4.0) ** 2 <= 1
    lab, _ = ndimage.label(ndimage.binary_opening(th, ball))
    if lab[seed_kji] == 0:
        return np.zeros(hu.shape, bool)
    m = th & ndimage.binary_dilation(lab == lab[seed_kji], ball)
    lab, _ = ndimage.label(m)
    return ndimage.binary_fill_holes(lab == lab[seed_kji])


def _ball(spacing, r: float = 8.0) -> np.ndarray:
    sp = np.asarray(spacing)  # (i, j, k) mm
    zz, yy, xx = np.mgrid[-int(r // sp[2]):int(r // sp[2]) + 1, -int(r // sp[1]):int(r // sp[1]) + 1,
                          -int(r // sp[0]):int(r // sp[0]) + 1]
    return (zz * sp[2]) ** 2 + (yy * sp[1]) ** 2 + (xx * sp[0]) ** 2 <= r * r


def measure_around(hu_volume, around: np.ndarray, margin_mm: float = 8.0) -> np.ndarray:
    """The reference recipe inside ``around`` grown by ``margin_mm`` (the tumour may have grown), seeded at
    ``around``'s centre (or its brightest voxel when the centre is in air)."""
    from scipy import ndimage

    ball = _ball(hu_volume.spacing, margin_mm)
    kk, jj, ii = np.nonzero(around)
    pad = np.array(ball.shape) // 2 + 2
    lo = np.maximum(np.array([kk.min(), jj.min(), ii.min()]) - pad, 0)
    hi = np.minimum(np.array([kk.max(), jj.max(), ii.max()]) + pad + 1, around.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    region = ndimage.binary_dilation(around[box], ball)
    hu = hu_volume.real_values()[box]
    sub = around[box]
    seed = tuple(np.round(ndimage.center_of_mass(sub)).astype(int))
    if hu[seed] < -400:  # the centroid in air (a crescent shape): the voxel of highest HU
        k2, j2, i2 = np.nonzero(sub)
        best = int(np.argmax(hu[k2, j2, i2]))
        seed = (k2[best], j2[best], i2[best])
    out = np.zeros(around.shape, bool)
    out[box] = segment_like_reference(hu, region, seed)
    return out


def lesion_change(fu, fixed, moving, reg) -> dict:
    """Both time points measured the same way: the reference recipe inside the lesion's expected place
    grown by 8 mm: in the baseline around its reference mask, in the follow-up around that mask carried
    through the registration.  Measured growth = follow-up - baseline, against the known growth."""
    from plugins.lesion_segmentation.data import chest_ct_reference

    t = time.perf_counter()
    base_ref = chest_ct_reference(moving.real_values())
    voxel_b = float(np.prod(moving.spacing)) / 1000.0
    voxel_f = float(np.prod(fixed.spacing)) / 1000.0
    carried = reg.resample(moving, fixed, array=base_ref.astype(np.float32), default=0.0) > 0.5
    base = measure_around(moving, base_ref)
    follow = measure_around(fixed, carried)
    sec = time.perf_counter() - t
    v_base, v_follow = base.sum() * voxel_b, follow.sum() * voxel_f
    known = fu.tumour_volume_followup_ml - fu.tumour_volume_baseline_ml
    measured = v_follow - v_base
    _b, truth_mask = fu.masks()
    dice = 2 * (follow & truth_mask).sum() / (follow.sum() + truth_mask.sum())
    return {"reference_ml": float(base_ref.sum() * voxel_b), "carried_ml": float(carried.sum() * voxel_f),
            "baseline_ml": float(v_base), "followup_ml": float(v_follow),
            "true_baseline_ml": fu.tumour_volume_baseline_ml, "true_followup_ml": fu.tumour_volume_followup_ml,
            "known_growth_ml": known, "measured_growth_ml": float(measured),
            "growth_error_percent": float(100.0 * (measured - known) / known), "followup_dice": float(dice),
            "seconds": sec}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--skip-plain", action="store_true", help="leave out SimpleITK's plain registration")
    ap.add_argument("--brats", type=int, default=4, help="how many BraTS cases (0-4)")
    ap.add_argument("--work", help="folder for the synthetic follow-up (default: a temporary one)")
    args = ap.parse_args(argv)
    if not (DATA / "chest-ct").exists():
        print(f"no chest CT at {DATA / 'chest-ct'} (set VIEWER_TEST_DATA)")
        return 1
    plain = not args.skip_plain
    print(f"SimpleITK {sitk.Version.VersionString()}, {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()} threads, "
          f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    header()
    chest_rigid(plain)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        fu, fixed, moving, reg = followup_deformable(plain, work)
        change = lesion_change(fu, fixed, moving, reg)
    if (DATA / "mr-ct-templates").exists():
        ct_mr(plain)
    if args.brats and (DATA / "brain-lesion-mr").exists():
        brats(plain, args.brats)
    print()
    print("Carried lesion volume (synthetic follow-up, deformable registration):")
    print(f"  baseline reference mask {change['reference_ml']:.2f} mL, carried onto the follow-up "
          f"{change['carried_ml']:.2f} mL; measured the same way: baseline {change['baseline_ml']:.2f} mL, follow-up "
          f"{change['followup_ml']:.2f} mL (truth {change['true_baseline_ml']:.2f} -> {change['true_followup_ml']:.2f};"
          f" follow-up Dice with the true mask {change['followup_dice']:.3f})")
    print(f"  growth measured {change['measured_growth_ml']:+.2f} mL vs known {change['known_growth_ml']:+.2f} mL: "
          f"error {change['growth_error_percent']:+.1f}% of the known growth ({change['seconds']:.1f} s)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": ROWS, "lesion_change": change}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
