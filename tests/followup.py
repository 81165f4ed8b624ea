"""A documented synthetic follow-up of the real chest CT, for registration, priors and lesion-change tests.

No longitudinal pair of one patient reaches this machine, so :func:`make_followup` makes an honest one
from the real chest CT (``/work/shared/data/chest-ct``, 512x512x141, 0.98x0.98x2 mm, the *baseline*):

* The **tumour grows**: the right-lung tumour (``chest_ct_reference``, about 8.3 mL) is scaled radially
  about its centroid by ``growth_scale`` (default 1.2 in every direction, so about 1.7x the volume),
  texture and edge and all, and put in place of the baseline around it (so the tumour edge is as sharp
  as in the baseline and the reference recipe's -400 HU threshold finds the scaled boundary).
* The **patient moves and deforms**: the follow-up image at a follow-up LPS point ``x`` is the grown
  baseline at ``to_baseline(x) = A(x) + u(A(x))``, where ``A`` is a rigid transform (rotation of a few
  degrees about the baseline's centre, translation of about 13 mm) and ``u`` a sum of smooth Gaussian
  displacement bumps (at most about 6 mm, Jacobian determinant 0.9-1.1, so invertible).
  Both are analytic: :attr:`Followup.to_baseline` and its inverse :attr:`Followup.to_followup` are exact
  (the inverse by fixed-point iteration to 1e-6 mm).  This is the registration convention of
  ``viewer.core.registration``: fixed = follow-up, moving = baseline.
* A little new noise (``noise_hu``, Gaussian) so the follow-up is not a bare resampling of the baseline.

Both series are written as DICOM CT (pydicom, one file per slice) under ``out_dir/baseline`` and
``out_dir/followup``: the same patient (``PatientID`` / ``IssuerOfPatientID``: the shared file's own
PatientID is empty, so both carry a synthetic one), each its own StudyInstanceUID, SeriesInstanceUID and
FrameOfReferenceUID, the follow-up's StudyDate 120 days after the baseline's (2007-02-08 -> 2007-06-08).
The follow-up has the baseline's grid geometry (same origin, spacing and orientation): a new scan of the
same field of view with the patient lying differently.

``stride`` and ``slices`` make a small, fast version (every ``stride``-th row and column, the baseline
slices ``slices=(start, stop)``): the baseline is then written with the same crop, and the follow-up is
sampled from the full-resolution grown baseline onto that cropped grid.  Everything is deterministic for a
given seed (UIDs too), and ``out_dir/followup.json`` caches the result: calling again with the same
arguments reads it back in milliseconds.  :func:`cached_followup` gives a per-session copy for pytest.

True figures (:class:`Followup`): the tumour volumes in mL (baseline mask; the grown mask as it lies in
the follow-up, i.e. with the deformation's local volume change), the tumour centres in both, landmark
points in the follow-up (lung, soft tissue and vessels, bone; away from the tumour) with their true
baseline positions, and the tumour masks on the written grids (``out_dir/masks.npz``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pydicom.uid import CTImageStorage, generate_uid
from scipy import ndimage

from tests.dicom_factory import base_dataset, rotation, save

CHEST_CT = Path(os.environ.get("VIEWER_TEST_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data")) \
    / "chest-ct"
PATIENT_ID = "HF-SYN-CHEST-001"
ISSUER = "HOUNSFIELD-SYNTHETIC"
PATIENT_NAME = "Synthetic^Followup"
BASELINE_DATE = "20070208"
FOLLOWUP_DATE = "20070608"  # 120 days later
TUMOUR_SLICES = (57, 97)  # 40 baseline slices around the tumour (k 72-84): a small version's usual crop
VERSION = 3  # bump when the recipe changes (invalidates followup.json caches)


# ------------------------------------------------------------------------------------ the true transform


@dataclass
class Bump:
    centre: tuple[float, float, float]  # LPS mm (baseline space, after the rigid move)
    amplitude: tuple[float, float, float]  # displacement at the centre, mm
    sigma: float  # mm


@dataclass
class TrueTransform:
    """``to_baseline(x) = A(x) + u(A(x))``: follow-up (fixed) LPS -> baseline (moving) LPS, exact."""

    matrix: np.ndarray  # 4x4 rigid A (follow-up LPS -> baseline LPS before the deformation)
    bumps: list[Bump] = field(default_factory=list)

    def displacement(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        out = np.zeros_like(z)
        for b in self.bumps:
            d2 = np.sum((z - np.asarray(b.centre)) ** 2, axis=-1)
            out += np.exp(-0.5 * d2 / b.sigma ** 2)[..., None] * np.asarray(b.amplitude)
        return out

    def jacobian_det(self, z: np.ndarray) -> np.ndarray:
        """det(I + grad u) at baseline points ``z`` (the local volume ratio follow-up -> baseline)."""
        z = np.asarray(z, dtype=np.float64).reshape(-1, 3)
        grad = np.zeros((len(z), 3, 3))
        for b in self.bumps:
            r = z - np.asarray(b.centre)
            g = np.exp(-0.5 * np.sum(r ** 2, axis=-1) / b.sigma ** 2)
            grad += (-g / b.sigma ** 2)[:, None, None] * np.asarray(b.amplitude)[None, :, None] * r[:, None, :]
        return np.linalg.det(np.eye(3)[None] + grad)

    def rigid(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x @ self.matrix[:3, :3].T + self.matrix[:3, 3]

    def rigid_inverse(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        return (y - self.matrix[:3, 3]) @ self.matrix[:3, :3]

    def to_baseline(self, x) -> np.ndarray:
        """Follow-up LPS points (..., 3) -> where that anatomy lies in the baseline (LPS)."""
        z = self.rigid(x)
        return z + self.displacement(z)

    def to_followup(self, y, tol_mm: float = 1e-6) -> np.ndarray:
        """Baseline LPS points (..., 3) -> follow-up LPS (the exact inverse, by fixed-point iteration)."""
        y = np.asarray(y, dtype=np.float64)
        z = y.copy()
        for _ in range(200):
            new = y - self.displacement(z)
            done = np.max(np.abs(new - z), initial=0.0) < tol_mm
            z = new
            if done:
                break
        return self.rigid_inverse(z)

    @property
    def rotation_degrees(self) -> float:
        c = (np.trace(self.matrix[:3, :3]) - 1.0) / 2.0
        return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))

    def to_json(self) -> dict:
        return {"matrix": self.matrix.tolist(), "bumps": [asdict(b) for b in self.bumps]}

    @classmethod
    def from_json(cls, d: dict) -> TrueTransform:
        return cls(np.asarray(d["matrix"], dtype=np.float64),
                   [Bump(tuple(b["centre"]), tuple(b["amplitude"]), float(b["sigma"])) for b in d["bumps"]])


# ------------------------------------------------------------------------------------ the result


@dataclass
class Followup:
    """What :func:`make_followup` wrote and the truth behind it (LPS mm, volumes in mL)."""

    out_dir: Path
    baseline_dir: Path
    followup_dir: Path
    truth: TrueTransform
    patient_id: str
    issuer: str
    baseline_study_uid: str
    followup_study_uid: str
    baseline_series_uid: str
    followup_series_uid: str
    baseline_frame_uid: str
    followup_frame_uid: str
    baseline_date: str
    followup_date: str
    shape: tuple[int, int, int]  # [k, j, i] of both written series
    affine: np.ndarray  # (i, j, k) -> LPS of both written series
    landmarks_followup: np.ndarray  # (N, 3)
    landmarks_baseline: np.ndarray  # (N, 3) = truth.to_baseline(landmarks_followup)
    landmark_kinds: list[str]
    tumour_volume_baseline_ml: float
    tumour_volume_followup_ml: float
    tumour_centre_baseline: np.ndarray  # centroid of the baseline tumour (LPS)
    tumour_centre_followup: np.ndarray  # the same anatomy in the follow-up: truth.to_followup(centre)
    growth_scale: float
    stride: int
    slices: tuple[int, int]
    seed: int

    def to_baseline(self, points) -> np.ndarray:
        """The true transform fixed (follow-up) -> moving (baseline), LPS."""
        return self.truth.to_baseline(points)

    def to_followup(self, points) -> np.ndarray:
        """Its inverse: baseline LPS -> follow-up LPS."""
        return self.truth.to_followup(points)

    @property
    def growth_ml(self) -> float:
        return self.tumour_volume_followup_ml - self.tumour_volume_baseline_ml

    @property
    def growth_percent(self) -> float:
        return 100.0 * self.growth_ml / self.tumour_volume_baseline_ml

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(baseline tumour mask, follow-up tumour mask), bool [k, j, i] on the written grids."""
        with np.load(self.out_dir / "masks.npz") as z:
            return z["baseline"].astype(bool), z["followup"].astype(bool)

    def tre(self, to_moving) -> np.ndarray:
        """Per-landmark target registration error (mm) of a fixed->moving mapping ``to_moving(points)``."""
        return np.linalg.norm(np.asarray(to_moving(self.landmarks_followup)) - self.landmarks_baseline, axis=1)

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["truth"] = self.truth.to_json()
        for k in ("out_dir", "baseline_dir", "followup_dir"):
            d[k] = str(d[k])
        for k in ("affine", "landmarks_followup", "landmarks_baseline", "tumour_centre_baseline",
                  "tumour_centre_followup"):
            d[k] = np.asarray(d[k]).tolist()
        d["shape"], d["slices"] = list(d["shape"]), list(d["slices"])
        return d

    @classmethod
    def from_json(cls, d: dict) -> Followup:
        d = dict(d)
        d["truth"] = TrueTransform.from_json(d["truth"])
        for k in ("out_dir", "baseline_dir", "followup_dir"):
            d[k] = Path(d[k])
        for k in ("affine", "landmarks_followup", "landmarks_baseline", "tumour_centre_baseline",
                  "tumour_centre_followup"):
            d[k] = np.asarray(d[k], dtype=np.float64)
        d["shape"], d["slices"] = tuple(d["shape"]), tuple(d["slices"])
        return cls(**d)


# ------------------------------------------------------------------------------------ making it


def default_truth(centre: np.ndarray) -> TrueTransform:
    """The known motion: 2.5/-1.5/3 degrees about x/y/z around ``centre`` (the baseline's centre), a
    (8, -6, 9) mm shift, and six Gaussian bumps (sigma 40-50 mm, amplitudes 4-5.4 mm; |u| at most about
    6 mm, Jacobian determinant 0.9-1.1) spread over the chest as breathing and posture would move it:
    both lung bases (the diaphragm), the mediastinum, both upper lobes and the anterior chest wall.  The
    tumour's neighbourhood moves too, so its volume changes a little with the deformation."""
    r = rotation(2.5, -1.5, 3.0)
    t = np.array([8.0, -6.0, 9.0])
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = centre - r @ centre + t
    c = np.asarray(centre)

    def _at(c, offset):
        return tuple(float(v) for v in c + np.asarray(offset))

    bumps = [
        Bump(_at(c, [-70.0, 10.0, -50.0]), (0.0, 2.0, 5.0), 50.0),  # right lung base (diaphragm up)
        Bump(_at(c, [70.0, 10.0, -50.0]), (-1.0, 1.0, 4.5), 50.0),  # left lung base
        Bump(_at(c, [0.0, -30.0, 0.0]), (3.0, -3.0, 1.0), 40.0),  # mediastinum / heart
        Bump(_at(c, [-60.0, 30.0, 50.0]), (-3.0, 0.0, -3.0), 45.0),  # right upper lobe
        Bump(_at(c, [60.0, 30.0, 50.0]), (2.0, 3.0, -2.0), 45.0),  # left upper lobe
        Bump(_at(c, [0.0, -90.0, 20.0]), (0.0, -4.0, 0.0), 50.0),  # anterior chest wall
    ]
    return TrueTransform(m, bumps)


def _grown(hu: np.ndarray, mask: np.ndarray, affine: np.ndarray, scale: float):
    """The baseline with its tumour scaled by ``scale`` about its centroid: (image, grown mask as a
    0-1 float), both on the baseline grid; float32.

    The scaled copy of the tumour's neighbourhood (texture and partial-volume edge, 1.2x wider) replaces
    the baseline within the scaled tumour grown by 2 voxels in-plane and 1 slice, faded out over about 2
    more: the edge is the baseline's own, scaled, so the reference recipe's -400 HU threshold finds the
    scaled boundary (a blend with the mask as weight diluted the edge twice and lost 10% of the volume).
    """
    kk, jj, ii = np.nonzero(mask)
    lo = np.maximum(np.array([kk.min(), jj.min(), ii.min()]) - np.array([8, 20, 20]), 0)
    hi = np.minimum(np.array([kk.max(), jj.max(), ii.max()]) + np.array([9, 21, 21]), mask.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub_hu = hu[sl].astype(np.float32)
    centre = np.array([kk.mean(), jj.mean(), ii.mean()]) - lo  # in the sub-block's index (k, j, i)
    grid = np.indices(sub_hu.shape, dtype=np.float64)
    # voxel index space is anisotropic, but scaling about a point is linear, so per-axis scaling by the
    # same factor is the same physical scaling
    src = centre[:, None, None, None] + (grid - centre[:, None, None, None]) / scale
    scaled_hu = ndimage.map_coordinates(sub_hu, src, order=1, mode="nearest")
    scaled_mask = ndimage.map_coordinates(mask[sl].astype(np.float32), src, order=1, mode="constant", cval=0.0)
    near = ndimage.binary_dilation(scaled_mask > 0.5, np.ones((3, 5, 5), bool))
    weight = ndimage.gaussian_filter(near.astype(np.float32), (0.5, 1.0, 1.0))
    weight = np.clip(weight * 1.5, 0.0, 1.0)
    out = hu.astype(np.float32)
    out[sl] = sub_hu + weight * (scaled_hu - sub_hu)
    grown = np.zeros(hu.shape, np.float32)
    grown[sl] = np.clip(scaled_mask, 0.0, 1.0)
    return out, grown


def _sample_followup(image: np.ndarray, grown: np.ndarray, base_affine: np.ndarray, out_affine: np.ndarray,
                     out_shape: tuple[int, int, int], truth: TrueTransform):
    """The grown baseline seen through the true transform on the follow-up grid: (HU float32, soft mask)."""
    inv = np.linalg.inv(base_affine)
    jj, ii = np.mgrid[0:out_shape[1], 0:out_shape[2]]
    out = np.empty(out_shape, np.float32)
    mask = np.empty(out_shape, np.float32)
    for k in range(out_shape[0]):
        ijk = np.stack([ii, jj, np.full_like(ii, k)], axis=-1).reshape(-1, 3).astype(np.float64)
        x = ijk @ out_affine[:3, :3].T + out_affine[:3, 3]
        y = truth.to_baseline(x)
        src = y @ inv[:3, :3].T + inv[:3, 3]  # (i, j, k) in the baseline
        coords = src[:, ::-1].T  # (k, j, i)
        out[k] = ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=-1024.0).reshape(out_shape[1:])
        mask[k] = ndimage.map_coordinates(grown, coords, order=1, mode="constant", cval=0.0).reshape(out_shape[1:])
    return out, mask


def _landmarks(hu: np.ndarray, affine: np.ndarray, avoid: np.ndarray, truth: TrueTransform,
               base_shape_affine: tuple, rng: np.random.Generator, n_each=(8, 6, 6)):
    """Points in the follow-up: lung parenchyma, enhanced vessels / soft tissue, bone; at least 30 mm
    from the tumour and 10 mm inside both fields of view."""
    smooth = ndimage.uniform_filter(hu, size=3)
    solid = hu > -500
    lab, n = ndimage.label(solid)
    sizes = ndimage.sum(solid, lab, range(1, n + 1))
    body = lab == (1 + int(np.argmax(sizes)))  # the patient (the table is smaller)
    body = np.stack([ndimage.binary_fill_holes(sl) for sl in body])
    body = ndimage.binary_erosion(body, np.ones((1, 3, 3)), iterations=4)
    lung = (smooth < -600) & (smooth > -950) & body
    vessel = (smooth > 120) & (smooth < 350) & body
    bone = (smooth > 400) & body
    kinds, points = [], []
    base_shape, base_affine = base_shape_affine
    base_inv = np.linalg.inv(base_affine)
    margin = 10.0
    for name, where, n in (("lung", lung, n_each[0]), ("vessel", vessel, n_each[1]), ("bone", bone, n_each[2])):
        kk, jj, ii = np.nonzero(where)
        order = rng.permutation(len(kk))
        taken = 0
        for idx in order:
            ijk = np.array([ii[idx], jj[idx], kk[idx]], np.float64)
            x = ijk @ affine[:3, :3].T + affine[:3, 3]
            if np.linalg.norm(x - avoid) < 30.0:
                continue
            if any(np.linalg.norm(x - p) < 25.0 for p in points):
                continue
            src = truth.to_baseline(x) @ base_inv[:3, :3].T + base_inv[:3, 3]
            sp = np.linalg.norm(base_affine[:3, :3], axis=0)
            if np.any(src * sp < margin) or np.any((np.array(base_shape[::-1]) - 1 - src) * sp < margin):
                continue
            own = np.array(hu.shape[::-1]) - 1 - ijk
            if np.any(ijk * np.linalg.norm(affine[:3, :3], axis=0) < margin) or \
                    np.any(own * np.linalg.norm(affine[:3, :3], axis=0) < margin):
                continue
            points.append(x)
            kinds.append(name)
            taken += 1
            if taken == n:
                break
    pts = np.array(points)
    return pts, kinds


def _write(folder: Path, hu: np.ndarray, affine: np.ndarray, *, study_uid: str, series_uid: str, frame_uid: str,
           date: str, description: str, series_description: str, series_number: int, accession: str,
           seed_text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stored = np.clip(np.round(hu) + 1024.0, 0, 4095).astype(np.uint16)
    row, col = affine[:3, 0], affine[:3, 1]
    si, sj, sk = np.linalg.norm(affine[:3, :3], axis=0)
    for k in range(hu.shape[0]):
        ds = base_dataset(sop_class=CTImageStorage, modality="CT", study_uid=study_uid, series_uid=series_uid,
                          series_number=series_number, patient_name=PATIENT_NAME, patient_id=PATIENT_ID)
        sop = generate_uid(entropy_srcs=[seed_text, series_uid, str(k)])
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.IssuerOfPatientID = ISSUER
        ds.PatientBirthDate = "19520314"
        ds.PatientSex = "M"
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
        ds.StudyTime = "143027"
        ds.AccessionNumber = accession
        ds.StudyDescription = description
        ds.SeriesDescription = series_description
        ds.BodyPartExamined = "CHEST"
        ds.Manufacturer = "Hounsfield synthetic (Philips CT)"
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        pos = affine[:3, :3] @ np.array([0.0, 0.0, float(k)]) + affine[:3, 3]
        ds.ImagePositionPatient = [f"{v:.6g}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6g}" for v in (*(row / si), *(col / sj))]
        ds.PixelSpacing = [f"{sj:.8g}", f"{si:.8g}"]
        ds.SliceThickness = f"{sk:.6g}"
        ds.SliceLocation = f"{pos[2]:.6g}"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.KVP = "120"
        ds.PatientPosition = "HFS"
        ds.RescaleSlope = "1"
        ds.RescaleIntercept = "-1024"
        ds.RescaleType = "HU"
        ds.WindowCenter = "-600"
        ds.WindowWidth = "1500"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.ascontiguousarray(stored[k]).astype("<u2").tobytes()
        save(ds, str(folder / f"CT{k:04d}.dcm"))


def make_followup(out_dir, *, stride: int = 1, slices=None, seed: int = 2026, growth_scale: float = 1.2,
                  noise_hu: float = 8.0, source=None) -> Followup:
    """Write the baseline and the synthetic follow-up (see the module docstring) under ``out_dir`` and
    return the truth.  ``slices``: ``(start, stop)`` baseline slice range (or a ``slice``), e.g.
    :data:`TUMOUR_SLICES`; ``stride``: keep every ``stride``-th row and column.  Cached in
    ``out_dir/followup.json`` for the same arguments."""
    from plugins.lesion_segmentation.data import chest_ct_reference
    from viewer.core.loader import load

    out_dir = Path(out_dir)
    source = Path(source) if source is not None else CHEST_CT
    if isinstance(slices, slice):
        slices = (slices.start or 0, slices.stop)
    key = {"version": VERSION, "stride": int(stride), "slices": list(slices) if slices else None, "seed": int(seed),
           "growth_scale": float(growth_scale), "noise_hu": float(noise_hu), "source": str(source)}
    cache = out_dir / "followup.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return Followup.from_json(saved["followup"])

    volume = load(source, use_index=False)
    hu = volume.real_values().astype(np.float32)
    base_affine = volume.affine
    mask = chest_ct_reference(hu)
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    ijk_c = np.array(np.nonzero(mask), np.float64).mean(axis=1)[::-1]  # (i, j, k)
    tumour_centre = base_affine[:3, :3] @ ijk_c + base_affine[:3, 3]
    centre = base_affine[:3, :3] @ ((np.array(hu.shape[::-1]) - 1) / 2.0) + base_affine[:3, 3]
    truth = default_truth(centre)

    grown_hu, grown = _grown(hu, mask, base_affine, growth_scale)
    # true volumes: the baseline mask; the grown mask as it lies in the follow-up (divide by the local
    # volume ratio det(I + grad u) at each voxel)
    vol_b = float(mask.sum()) * voxel_ml
    kk, jj, ii = np.nonzero(grown > 0.5)
    y = np.stack([ii, jj, kk], axis=-1).astype(np.float64) @ base_affine[:3, :3].T + base_affine[:3, 3]
    z = truth.rigid(truth.to_followup(y))
    vol_f = float(np.sum(1.0 / truth.jacobian_det(z))) * voxel_ml

    k0, k1 = slices if slices else (0, hu.shape[0])
    s = int(stride)
    out_affine = base_affine.copy()
    out_affine[:3, 3] = base_affine[:3, :3] @ np.array([0.0, 0.0, float(k0)]) + base_affine[:3, 3]
    out_affine[:3, 0] *= s
    out_affine[:3, 1] *= s
    crop = (slice(k0, k1), slice(None, None, s), slice(None, None, s))
    base_out = hu[crop]
    out_shape = base_out.shape
    follow_hu, follow_soft = _sample_followup(grown_hu, grown, base_affine, out_affine, out_shape, truth)
    rng = np.random.default_rng(seed)
    follow_hu += rng.normal(0.0, noise_hu, size=follow_hu.shape).astype(np.float32)
    follow_hu[follow_hu < -1024] = -1024

    tumour_centre_f = truth.to_followup(tumour_centre)
    landmarks, kinds = _landmarks(follow_hu, out_affine, tumour_centre_f, truth, (hu.shape, base_affine), rng)
    landmarks_b = truth.to_baseline(landmarks)

    text = f"hounsfield-followup-{seed}-{stride}-{k0}-{k1}-{growth_scale}"
    uid = {n: generate_uid(entropy_srcs=[text, n]) for n in
           ("study-b", "study-f", "series-b", "series-f", "frame-b", "frame-f")}
    out_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("baseline", "followup"):
        for old in (out_dir / sub).glob("*.dcm") if (out_dir / sub).exists() else ():
            old.unlink()
    _write(out_dir / "baseline", base_out, out_affine, study_uid=uid["study-b"], series_uid=uid["series-b"],
           frame_uid=uid["frame-b"], date=BASELINE_DATE, description="CT chest (baseline)",
           series_description="Chest CT baseline", series_number=2, accession="SYN-B-001", seed_text=text)
    _write(out_dir / "followup", follow_hu, out_affine, study_uid=uid["study-f"], series_uid=uid["series-f"],
           frame_uid=uid["frame-f"], date=FOLLOWUP_DATE, description="CT chest (follow-up, 120 days)",
           series_description="Chest CT follow-up", series_number=2, accession="SYN-F-001", seed_text=text)
    np.savez_compressed(out_dir / "masks.npz", baseline=mask[crop], followup=follow_soft > 0.5)

    result = Followup(
        out_dir=out_dir, baseline_dir=out_dir / "baseline", followup_dir=out_dir / "followup", truth=truth,
        patient_id=PATIENT_ID, issuer=ISSUER, baseline_study_uid=uid["study-b"], followup_study_uid=uid["study-f"],
        baseline_series_uid=uid["series-b"], followup_series_uid=uid["series-f"],
        baseline_frame_uid=uid["frame-b"], followup_frame_uid=uid["frame-f"], baseline_date=BASELINE_DATE,
        followup_date=FOLLOWUP_DATE, shape=tuple(int(n) for n in out_shape), affine=out_affine,
        landmarks_followup=landmarks, landmarks_baseline=landmarks_b, landmark_kinds=kinds,
        tumour_volume_baseline_ml=vol_b, tumour_volume_followup_ml=vol_f, tumour_centre_baseline=tumour_centre,
        tumour_centre_followup=tumour_centre_f, growth_scale=float(growth_scale), stride=s, slices=(k0, k1),
        seed=int(seed))
    cache.write_text(json.dumps({"key": key, "followup": result.to_json()}, indent=1))
    return result


def cached_followup(tmp_path_factory, *, stride: int = 1, slices=None, seed: int = 2026, **kw) -> Followup:
    """:func:`make_followup` once per pytest session (shared by every test module asking the same
    arguments): ``cached_followup(tmp_path_factory, stride=2, slices=TUMOUR_SLICES)``."""
    tag = f"followup-s{stride}-{'all' if not slices else '-'.join(map(str, tuple(slices)[:2]))}-{seed}"
    root = tmp_path_factory.getbasetemp() / tag
    return make_followup(root, stride=stride, slices=slices, seed=seed, **kw)


__all__ = ["Followup", "TrueTransform", "Bump", "make_followup", "cached_followup", "TUMOUR_SLICES",
           "PATIENT_ID", "ISSUER", "BASELINE_DATE", "FOLLOWUP_DATE"]
