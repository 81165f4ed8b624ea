"""Template MR/CT pairs deformed by a known random smooth deformation, with a bias field and noise,
on a grid other than the templates': the honest form of "the template pair" as a test case (the
templates are the atlas, so they must not be fed back unchanged), and a tiny SynthRAD-layout
folder (``<case>/mr.nii.gz``, ``ct.nii.gz``, ``mask.nii.gz``) for testing the trainer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from plugins.mr_to_ct import atlas
from viewer.core.volume import Volume, affine_from


def random_transform(reference: sitk.Image, rng: np.random.Generator, *, rotation_deg: float = 6.0,
                     shift_mm: float = 6.0, scale: float = 0.05, warp_mm: float = 3.0) -> sitk.Transform:
    """A smooth random transform (output points -> template points): an affine (rotation, shift,
    scaling) and a B-spline on a 5x5x5 mesh whose displacements have ``warp_mm`` RMS."""
    centre = np.array(reference.TransformContinuousIndexToPhysicalPoint(
        [(n - 1) / 2.0 for n in reference.GetSize()]))
    aff = sitk.AffineTransform(3)
    aff.SetCenter(tuple(centre))
    angles = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, 3))
    rot = sitk.Euler3DTransform((0, 0, 0), *angles).GetMatrix()
    m = np.array(rot).reshape(3, 3) @ np.diag(1 + rng.uniform(-scale, scale, 3))
    aff.SetMatrix(tuple(m.ravel()))
    aff.SetTranslation(tuple(rng.uniform(-shift_mm, shift_mm, 3)))
    bs = sitk.BSplineTransformInitializer(reference, [3, 3, 3], order=3)
    n = len(bs.GetParameters())
    bs.SetParameters(tuple(rng.normal(0, warp_mm, n)))
    t = sitk.CompositeTransform(3)
    t.AddTransform(aff)
    t.AddTransform(bs)
    return t


def deformed_pair(mr: sitk.Image, ct_hu: sitk.Image, seed: int, *, spacing=(1.2, 1.2, 2.4), bias: float = 0.2,
                  noise: float = 0.02) -> tuple[Volume, Volume, np.ndarray, np.ndarray]:
    """``mr`` and ``ct_hu`` (on one template grid) deformed alike onto a new axial LPS grid of ``spacing``
    (i, j, k mm); the MR gets a smooth multiplicative bias field (about +-``bias``) and Rician noise
    (``noise`` of its 99th percentile).  Returns (MR volume, CT volume in HU, the CT's head mask, the
    MR's field of view: where the MR template has signal, filled)."""
    rng = np.random.default_rng(seed)
    t = random_transform(ct_hu, rng)
    extent = np.array(ct_hu.GetSize()) * np.array(ct_hu.GetSpacing())
    lo = np.min([ct_hu.TransformIndexToPhysicalPoint([int(a), int(b), int(c)])
                 for a in (0, ct_hu.GetSize()[0] - 1) for b in (0, ct_hu.GetSize()[1] - 1)
                 for c in (0, ct_hu.GetSize()[2] - 1)], axis=0)
    size = [int(np.ceil(e / s)) for e, s in zip(extent, spacing, strict=True)]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing(tuple(float(s) for s in spacing))
    grid.SetOrigin(tuple(float(v) for v in lo))
    grid.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    mr_d = sitk.GetArrayFromImage(sitk.Resample(mr, grid, t, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    # the MR's field of view: where the template has signal (the FLAIR template stops above the neck)
    support = sitk.BinaryMorphologicalClosing(sitk.Cast(mr > 0.02, sitk.sitkUInt8), [3, 3, 3])
    fov = sitk.GetArrayFromImage(sitk.Resample(support, grid, t, sitk.sitkNearestNeighbor, 0)) > 0
    ct_d = sitk.GetArrayFromImage(sitk.Resample(ct_hu, grid, t, sitk.sitkLinear, -1024.0, sitk.sitkFloat32))
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in mr_d.shape), indexing="ij")
    c = rng.normal(0, 1, 6)
    field = c[0] * i + c[1] * j + c[2] * k + c[3] * i * j + c[4] * (i * i - 0.3) + c[5] * (k * k - 0.3)
    field = np.exp(bias * field / max(np.abs(field).max(), 1e-6))
    sigma = noise * float(np.percentile(mr_d[mr_d > 0], 99))
    noisy = np.sqrt((mr_d * field + rng.normal(0, sigma, mr_d.shape)) ** 2 + rng.normal(0, sigma, mr_d.shape) ** 2)
    affine = affine_from(spacing, lo, np.eye(3))
    mr_vol = Volume(np.rint(noisy * 1000).astype(np.int16), affine, modality="MR")
    ct_vol = Volume(np.rint(ct_d).astype(np.int16), affine, modality="CT", units="HU")
    fov = ndimage.binary_fill_holes(fov)
    return mr_vol, ct_vol, ct_d > -500, fov


def make_template_cases(out_dir, n: int = 2, seed: int = 0, contrasts=("T1", "FLAIR"),
                        spacing=(2.0, 2.0, 2.0)) -> list[Path]:
    """A tiny SynthRAD-layout folder made from the templates (for testing the trainer, not for
    training a model worth shipping: every case is one population-average head)."""
    import viewer

    tpl = atlas.load_templates()
    out = Path(out_dir)
    cases = []
    for c in range(n):
        mr, ct, mask, _ = deformed_pair(tpl.mr[contrasts[c % len(contrasts)]], tpl.ct, seed + c, spacing=spacing)
        case = out / f"1HA{c:03d}"
        case.mkdir(parents=True, exist_ok=True)
        viewer.save(mr, case / "mr.nii.gz")
        viewer.save(ct, case / "ct.nii.gz")
        viewer.save(Volume(mask.astype(np.uint8), ct.affine), case / "mask.nii.gz")
        cases.append(case)
    return cases
