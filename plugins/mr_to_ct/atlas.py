"""Atlas-based synthetic CT from a head MR (SimpleITK; no torch, no Qt).

The method (the established one that needs no paired training data):

1. a head mask of the patient's MR (Otsu, largest component, holes filled);
2. each MR template (a T1 head template and the FLAIR template, both on the average head CT's
   grid) registered to the patient's MR: a translation from the head tops, a similarity and an
   affine with Mattes mutual information at coarse-to-fine resolutions; optionally a coarse
   B-spline on top (``deformable=True``: off by default, as it did not help on the deformed
   template pair, see tests/benchmarks/bench_mr_to_ct.py: the population-average templates are
   too smooth for a deformable registration to grip);
3. the template CT (``scct``, stored in Cormack units and converted to HU here) carried across;
   the MR's contrast read off the image: its CSF, grey and white matter intensities unmixed on
   the warped priors (trimmed least squares), T1 when white matter is the brighter;
4. refined with the patient's own MR: air outside the head mask; brain, grey/white matter and
   CSF from a three-class k-means of the MR inside the warped intracranial prior (its intensity
   mapped piecewise-linearly onto typical HU, so ventricles and sulci follow the patient, not the
   population; which class is which follows the contrast; inside the MR's own brain envelope its
   clearly CSF voxels are CSF whatever the atlas says); skull sharpened where the MR is dark
   inside the atlas' blurred bone shell and in the MR's own dark rim between its brain envelope
   and its scalp (the rim's part nearer the brain than the scalp is the CSF over the cortex, the
   rest bone; on thick slices the dark ramp reaches higher, for the partial volume of an
   obliquely cut vault; bright marrow between the tables keeps the atlas' HU), but never inside
   the MR's own brain envelope (its grey and white matter, bias-corrected, opened, closed over the
   sulci, ventricles filled, grown by the CSF over the cortex), where an affinely placed atlas
   skull can cross the vertex sulci; and no new bone where the atlas says air (sinuses, mastoids)
   except in the vault above the brain's widest axial slice, where a head taller than the warped
   atlas has its skull under the atlas' air; there too, on slices thicker than 3 mm, where the warped
   atlas has no bone near, the inner part of the gap between the skin and the MR's brain envelope is
   skull whatever its MR intensity (on thick-slice T1s the obliquely cut vault is as bright as the
   scalp);
5. several atlases fused by a weighted mean (the atlas of the MR's own contrast weighs more);
   their per-voxel spread is the uncertainty in HU (with one atlas: the change the deformable
   step made, or else how far the MR refinement moved the atlas).

The templates are population averages (Rorden's Clinical Toolbox ``scct``, tissue priors and
FLAIR template; the MNI ICBM152 2009a T1), looked for in ``$HOUNSFIELD_MRCT_TEMPLATES``, else
``<models folder>/mr-to-ct/templates``, else ``../shared/data/mr-ct-templates`` beside the
repository (they are not shipped: see the data README's licences).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from viewer.core.errors import HounsfieldError
from viewer.core.formats import sitk_from_volume
from viewer.core.volume import Volume

TEMPLATES_ENV = "HOUNSFIELD_MRCT_TEMPLATES"
TEMPLATE_FILES = ("scct.nii.gz", "scgrey.nii.gz", "scwhite.nii.gz", "sccsf.nii.gz", "flair-template.nii.gz",
                  "mni152-2009a-t1.nii.gz")
AIR_HU = -1000.0
# typical head-CT values (HU) the patient's own tissue classes are mapped onto
CSF_HU, GREY_HU, WHITE_HU = 7.0, 37.0, 27.0
SOFT_TISSUE_HU = 30.0
BONE_HU = 900.0  # mean of skull bone (tables and diploe) in adult head CT at ~1 mm
WORK_MM = 2.0  # isotropic working grid of the registration (the templates' own spacing)
CONTRASTS = ("T1", "FLAIR")  # FLAIR stands for T2-weighted contrasts too
BSPLINE_MESH = (4, 4, 4)  # control-point mesh of the deformable step over the head
BSPLINE_ITERATIONS = 30
MOVING_MASK = True
# ITK's Mattes mutual information adds up its joint histogram and gradient from its threads in the
# order they finish, so with more than one thread the same MR registered to different transforms (in
# their 8th digit) run to run, which the MR refinement's thresholds turned into whole voxels of bone or
# air (1.4.0: 17,318 voxels up to 1200 HU apart on the MPRAGE).  One thread makes it repeatable.
REGISTRATION_THREADS = 1
SKULL_DEPTH_MM = 12.0  # the outer table to the inner table lies within about this depth below the skin
SHELL_DEPTH_MM = 20.0  # the atlas' blurred bone shell is trusted to this depth
ENVELOPE_CLOSE_MM = 5.0  # the MR's brain closed by this radius covers its sulci (no bone in them)
ENVELOPE_MARGIN_MM = 1.5  # and grown by this much, the CSF over the cortex
ENVELOPE_REACH_MM = 25.0  # the MR's brain is looked for this far beyond the warped brain prior
ENVELOPE_OPEN_MM = 1.5  # its tissue opened by this radius (cuts bridges to the scalp and marrow)
SCALP_MM = 8.0  # and not in the outer 8 mm of the head (skin, fat, the outer table, marrow)
RIM_MM = 12.0  # the dark rim (CSF over the cortex, skull) is looked for this far outside the brain envelope
CSF_SPLIT = 0.5  # a dark rim voxel is CSF when nearer the brain than CSF_SPLIT x its distance to the scalp
CSF_MAX_MM = 10.0  # and never farther than this from the brain
DARK_HI, DARK_LO = 0.45, 0.2  # of the brain's median intensity: no bone above DARK_HI, all bone below DARK_LO
SCALP_KEEP_MM = 4.0  # in the atlas' bone shell deeper than this (or in the MR's rim) a bright voxel is marrow
OWN_CSF_CUT = 0.2  # inside the envelope, darker than CSF + this x (grey - CSF) on T1 is the MR's own CSF
PV_EXTRA = 0.2  # DARK_HI raised by up to this on thick slices (all of it at 6.5 mm and more; none up to 3 mm)
VAULT_SCALP_SHARE = 0.4  # in the vault the outer 40 % of the skin-to-brain gap is scalp, the rest (bar the CSF) skull
VAULT_SKULL_MM = 16.0  # and the inner table is no deeper than this below the skin (scalp <= 7 mm, skull <= 9 mm)
ATLAS_BONE_HU = 150.0  # the blurred average CT's vault reads above this where it has its skull
MARROW_HU = 500.0  # the vault's bright diploe (fatty marrow between the tables) on thin slices, the atlas having none
MARROW_BRIGHT = 1.4  # brighter than this x the brain's median intensity is fat-like (marrow), not muscle


# ----------------------------------------------------------------------------- Cormack <-> HU


def cormack_to_hu(c) -> np.ndarray:
    """HU from Cormack units (Rorden's scct): with x = HU + 1024, c = x + 10*min(max(x-900, 0), 200)
    + max(x-1100, 0); inverted piecewise: x = c below 900, 900 + (c-900)/11 up to 3100, (c-900)/2 above."""
    c = np.asarray(c, dtype=np.float64)
    x = np.where(c < 900, c, np.where(c <= 3100, 900 + (c - 900) / 11.0, (c - 900) / 2.0))
    return x - 1024.0


def hu_to_cormack(hu) -> np.ndarray:
    """The forward Cormack transform (the one the templates were stored with)."""
    x = np.asarray(hu, dtype=np.float64) + 1024.0
    return x + 10 * np.minimum(np.maximum(x - 900, 0), 200) + np.maximum(x - 1100, 0)


# ----------------------------------------------------------------------------- templates


def templates_dir() -> Path:
    """The folder holding the MR/CT templates, or a one-sentence error saying where to put them."""
    from viewer.paths import models_dir

    repo = Path(__file__).resolve().parents[2]
    data = Path(os.environ.get("VIEWER_TEST_DATA", repo.parent / "shared" / "data"))
    candidates = [Path(os.environ[TEMPLATES_ENV])] if os.environ.get(TEMPLATES_ENV) else []
    candidates += [models_dir() / "mr-to-ct" / "templates", data / "mr-ct-templates"]
    for folder in candidates:
        if all((folder / f).is_file() for f in TEMPLATE_FILES):
            return folder
    raise HounsfieldError(f"MR-to-CT synthesis needs its head templates ({', '.join(TEMPLATE_FILES)}); put them in "
                          f"{candidates[-2]} or set {TEMPLATES_ENV} to their folder.")


@dataclass
class Templates:
    ct: sitk.Image  # HU, float32, 2 mm
    grey: sitk.Image
    white: sitk.Image
    csf: sitk.Image
    mr: dict[str, sitk.Image]  # contrast -> full-head MR template on the same grid, scaled to ~[0, 1]


def _read(folder: Path, name: str) -> sitk.Image:
    return sitk.ReadImage(str(folder / name), sitk.sitkFloat32)


@lru_cache(maxsize=2)
def load_templates(folder: str | None = None) -> Templates:
    folder = Path(folder) if folder else templates_dir()
    cormack = _read(folder, "scct.nii.gz")
    ct = _like(cormack_to_hu(sitk.GetArrayViewFromImage(cormack)).astype(np.float32), cormack)
    grey, white, csf = (_read(folder, f"sc{n}.nii.gz") for n in ("grey", "white", "csf"))
    flair = _read(folder, "flair-template.nii.gz")
    fa = sitk.GetArrayFromImage(flair)
    flair = _like(fa / np.percentile(fa[fa > 0], 99.5), cormack)
    # the MNI T1 is brain only: complete it to a head with a T1-like look of the average CT outside
    # the brain (scalp as bright as grey matter, bone and air dark), so that it registers to heads
    t1 = sitk.GetArrayFromImage(sitk.Resample(_read(folder, "mni152-2009a-t1.nii.gz"), cormack,
                                              sitk.Transform(), sitk.sitkLinear, 0.0))
    t1 = t1 / np.percentile(t1[t1 > 0], 99.5)
    hu = sitk.GetArrayViewFromImage(ct)
    brain = sitk.GetArrayViewFromImage(grey) + sitk.GetArrayViewFromImage(white) + sitk.GetArrayViewFromImage(csf)
    soft = np.clip((hu + 500) / 400, 0, 1) * np.clip((350 - hu) / 250, 0, 1)  # 1 in soft tissue, 0 in air/bone
    outside = 0.65 * soft
    w = np.clip(brain * 1.5, 0, 1)
    t1_head = np.where(t1 > 0.02, w * t1 + (1 - w) * outside, outside).astype(np.float32)
    t1_head = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(_like(t1_head, cormack), 1.0))
    return Templates(ct=ct, grey=grey, white=white, csf=csf,
                     mr={"T1": _like(t1_head, cormack), "FLAIR": flair})


def _like(array: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    img.CopyInformation(ref)
    return img


# ----------------------------------------------------------------------------- masks


def head_mask_array(mr: np.ndarray, spacing=(1.0, 1.0, 1.0), mask_mm: float = 2.0) -> np.ndarray:
    """The head (not the air around it) of an MR array [k, j, i] with ``spacing`` in (k, j, i) order:
    Otsu threshold, the largest connected component, closed, holes filled (slice by slice and in
    3D); found on a grid of about ``mask_mm`` and brought back to the array's grid."""
    from scipy import ndimage

    a = np.asarray(mr, dtype=np.float32)
    positive = a[a > a.min()]
    if positive.size < 100:
        raise HounsfieldError("The MR image is empty (no signal above the background); check the series.")
    hi = float(np.percentile(positive, 99.5))
    img = sitk.GetImageFromArray(np.clip(a, None, hi))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    step = [max(1, int(round(mask_mm / s))) for s in spacing[::-1]]  # (i, j, k) shrink factors
    small = sitk.BinShrink(sitk.SmoothingRecursiveGaussian(img, max(float(min(spacing)), 1.0)), step)
    mask = sitk.OtsuThreshold(small, 0, 1, 128)
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True)
    m = sitk.GetArrayFromImage(cc) == 1
    sp = small.GetSpacing()[::-1]
    radius = [max(1, int(round(3.0 / s))) for s in sp[::-1]]  # ~3 mm closing
    m = sitk.GetArrayFromImage(sitk.BinaryMorphologicalClosing(_mask_img(m, sp), radius)) > 0
    m = ndimage.binary_fill_holes(m)
    for k in range(m.shape[0]):  # the mouth, sinuses and ear canals open to the outside in 3D
        m[k] = ndimage.binary_fill_holes(m[k])
    if any(n > 1 for n in step):
        zoom = [full / low for full, low in zip(a.shape, m.shape, strict=True)]
        m = ndimage.zoom(m.astype(np.float32), zoom, order=1, grid_mode=True, mode="nearest") > 0.5
        m = m[: a.shape[0], : a.shape[1], : a.shape[2]]
        m = np.pad(m, [(0, full - got) for full, got in zip(a.shape, m.shape, strict=True)], mode="edge")
    return m


def fill_holes_cut(m: np.ndarray) -> np.ndarray:
    """``m`` with its holes filled, where a face of the array (the MR's field of view) that cuts
    through ``m`` counts as closed: each face is padded with its own filled cross-section (in one
    dimension fewer, recursively; on a line, the span from the first to the last voxel of ``m``), so
    that what a cut opens to the edge (the sulci of a slice of brain cut by the image's edge) is
    inside, not outside.  On a face that ``m`` does not touch the padding is empty: no change."""
    from scipy import ndimage

    m = np.asarray(m, bool)
    if m.ndim == 1:
        out = m.copy()
        idx = np.flatnonzero(m)
        if idx.size:
            out[idx[0]: idx[-1] + 1] = True
        return out
    padded = np.pad(m, 1)
    inner = (slice(1, -1),) * (m.ndim - 1)
    for axis in range(m.ndim):
        for side, at in ((0, 0), (-1, m.shape[axis] - 1)):
            face = fill_holes_cut(np.take(m, at, axis=axis))
            index = inner[:axis] + (side,) + inner[axis:]
            padded[index] |= face
    return ndimage.binary_fill_holes(padded)[(slice(1, -1),) * m.ndim]


def _mask_img(m: np.ndarray, spacing) -> sitk.Image:
    """A uint8 image of mask ``m`` [k, j, i] with ``spacing`` in (k, j, i) order."""
    img = sitk.GetImageFromArray(m.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    return img


# ----------------------------------------------------------------------------- registration


def working_grid(image: sitk.Image, mm: float = WORK_MM) -> sitk.Image:
    """``image`` resampled (smoothed first) to an isotropic ``mm`` grid in its own orientation."""
    size, sp = np.array(image.GetSize()), np.array(image.GetSpacing())
    new_size = [max(int(round(n * s / mm)), 1) for n, s in zip(size, sp, strict=True)]
    sigma = [max((mm - s) / 2.0, 0.05 * s) for s in sp]
    smooth = sitk.SmoothingRecursiveGaussian(image, sigma)
    origin = np.array(image.GetOrigin()) + np.array(image.GetDirection()).reshape(3, 3) @ (
        (np.array([mm] * 3) - sp) / 2.0)
    return sitk.Resample(smooth, new_size, sitk.Transform(), sitk.sitkLinear, tuple(origin), (mm,) * 3,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def _top_centroid(mask: sitk.Image, depth_mm: float = 110.0) -> np.ndarray:
    """LPS centroid of the top ``depth_mm`` of a head mask (the vertex is in nearly every head MR;
    the neck and face are not)."""
    a = sitk.GetArrayViewFromImage(mask)
    kji = np.argwhere(a > 0)[:: max(1, int(a.sum()) // 200_000)]
    pts = _index_to_lps(mask, kji[:, ::-1])
    top = pts[:, 2].max()
    sel = pts[pts[:, 2] > top - depth_mm]
    return sel.mean(axis=0)


def _index_to_lps(image: sitk.Image, ijk: np.ndarray) -> np.ndarray:
    d = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())[None, :]
    return ijk.astype(np.float64) @ d.T + np.array(image.GetOrigin())


@dataclass
class Registration:
    affine: sitk.Transform
    deformable: sitk.Transform | None
    metric: float = 0.0

    @property
    def full(self) -> sitk.Transform:
        if self.deformable is None:
            return self.affine
        t = sitk.CompositeTransform(3)
        t.AddTransform(self.affine)
        t.AddTransform(self.deformable)
        return t


def _execute(r: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    """``r.Execute`` on ``REGISTRATION_THREADS`` threads.  The method's own ``SetNumberOfThreads`` is not
    enough (with it alone the transforms still varied run to run): some of what ``Execute`` builds takes
    ITK's global default, so that is set for the call and put back after it."""
    old = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(REGISTRATION_THREADS)
    try:
        return r.Execute(fixed, moving)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old)


def register(fixed: sitk.Image, fixed_mask: sitk.Image, moving: sitk.Image, moving_mask: sitk.Image, *,
             deformable: bool = True, seed: int = 7, check: Callable[[], None] | None = None) -> Registration:
    """Transforms mapping fixed (patient) points to moving (template) points: an affine, then a
    coarse B-spline on top of it.  Mattes mutual information, so the contrasts need not match."""
    check = check or (lambda: None)
    shift = _top_centroid(moving_mask) - _top_centroid(fixed_mask)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(tuple(float(c) for c in _top_centroid(fixed_mask)))
    affine.SetTranslation(tuple(float(s) for s in shift))
    sampling_mask = sitk.BinaryDilate(fixed_mask, [3, 3, 3])
    # where the template has signal: a template cut off below (the FLAIR template's neck) must not
    # pull the patient's neck into its empty space
    support = sitk.BinaryDilate(sitk.Cast(moving > 0.02, sitk.sitkUInt8), [2, 2, 2]) if MOVING_MASK else None

    def method(fraction: float) -> sitk.ImageRegistrationMethod:
        r = sitk.ImageRegistrationMethod()
        r.SetNumberOfThreads(REGISTRATION_THREADS)
        r.SetMetricAsMattesMutualInformation(32)
        r.SetMetricSamplingStrategy(r.RANDOM)
        r.SetMetricSamplingPercentage(fraction, seed)
        r.SetMetricFixedMask(sampling_mask)
        if support is not None:
            r.SetMetricMovingMask(support)
        r.SetInterpolator(sitk.sitkLinear)
        r.AddCommand(sitk.sitkIterationEvent, check)
        return r

    # a rigid+scale start, then the full affine
    r = method(0.1)
    sim = sitk.Similarity3DTransform()
    sim.SetCenter(affine.GetCenter())
    sim.SetTranslation(affine.GetTranslation())
    r.SetInitialTransform(sim, inPlace=True)
    r.SetOptimizerAsRegularStepGradientDescent(2.0, 0.01, 60, relaxationFactor=0.6)
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetShrinkFactorsPerLevel([4, 2])
    r.SetSmoothingSigmasPerLevel([2.0, 1.0])
    _execute(r, fixed, moving)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(sim.GetCenter())
    affine.SetMatrix(sim.GetMatrix())
    affine.SetTranslation(sim.GetTranslation())
    check()
    r = method(0.1)
    r.SetInitialTransform(affine, inPlace=True)
    r.SetOptimizerAsRegularStepGradientDescent(1.0, 0.005, 40, relaxationFactor=0.6)
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetShrinkFactorsPerLevel([2])
    r.SetSmoothingSigmasPerLevel([1.0])
    metric = _execute(r, fixed, moving) and r.GetMetricValue()
    if not deformable:
        return Registration(affine, None, float(metric))
    check()
    bspline = sitk.BSplineTransformInitializer(fixed, list(BSPLINE_MESH), order=3)
    r = method(0.1)
    r.SetMovingInitialTransform(affine)
    r.SetInitialTransform(bspline, inPlace=True)
    r.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=BSPLINE_ITERATIONS,
                          maximumNumberOfCorrections=5)
    r.SetShrinkFactorsPerLevel([2])
    r.SetSmoothingSigmasPerLevel([1.0])
    _execute(r, fixed, moving)
    return Registration(affine, bspline, float(r.GetMetricValue()))


# ----------------------------------------------------------------------------- synthesis


@dataclass
class Synthesis:
    """A synthetic CT on the MR's grid with its uncertainty and the pieces it was made of."""

    hu: np.ndarray  # int16 [k, j, i], HU
    uncertainty: np.ndarray  # float32 [k, j, i], HU
    head: np.ndarray  # bool, the MR's head mask
    candidates: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32 HU, each atlas
    classes: np.ndarray | None = None  # uint8: 0 outside, 1 CSF, 2 grey, 3 white, 4 bone, 5 other head
    contrast: str = ""
    notes: list[str] = field(default_factory=list)
    skull_stripped: bool = False
    tissue: dict[str, float] = field(default_factory=dict)  # the MR's unmixed CSF/grey/white intensities


def _resample_to(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform, default: float,
                 interp=sitk.sitkLinear) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.Resample(image, reference, transform, interp, default, sitk.sitkFloat32))


def _kmeans_1d(values: np.ndarray, centres: np.ndarray, iterations: int = 15) -> np.ndarray:
    c = np.sort(np.asarray(centres, np.float64))
    v = values.astype(np.float64)
    for _ in range(iterations):
        edges = (c[1:] + c[:-1]) / 2
        lab = np.searchsorted(edges, v)
        new = np.array([v[lab == n].mean() if np.any(lab == n) else c[n] for n in range(len(c))])
        if np.allclose(new, c, rtol=1e-4):
            break
        c = np.sort(new)
    return c


def tissue_intensities(mr_norm: np.ndarray, head: np.ndarray, priors, keep: float = 0.6) -> dict[str, float]:
    """The MR's own CSF, grey and white matter intensities: the MR inside its head mask (one voxel
    in from the edge) and well inside the warped brain priors unmixed linearly onto the three priors
    (each voxel = the priors' mix of the three tissue intensities), least squares trimmed to the
    ``keep`` best-fitting voxels a few times so that lesions, vessels and misregistered edges drop
    out.  ``priors`` is one or more (grey, white, csf) triples (one per registered atlas); the
    results are averaged."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(head)
    out = []
    for grey, white, csf in priors:
        total = grey + white + csf
        sel = inner & (total > 0.9)
        if np.count_nonzero(sel) < 200:
            continue
        p = np.stack([csf[sel], grey[sel], white[sel]], axis=1).astype(np.float64) / total[sel, None]
        x = mr_norm[sel].astype(np.float64)
        use = np.ones(x.size, bool)
        for _ in range(6):
            coef = np.linalg.lstsq(p[use], x[use], rcond=None)[0]
            r = np.abs(x - p @ coef)
            use = r <= np.quantile(r, keep)
        out.append(coef)
    if not out:
        return {}
    c, g, w = np.mean(out, axis=0)
    return {"csf": float(c), "grey": float(g), "white": float(w)}


def guess_contrast(tissue: dict[str, float]) -> str:
    """T1 when the MR's white matter is brighter than its grey matter (``tissue_intensities``),
    else FLAIR (grey at least as bright as white: FLAIR, T2, PD).  On the 12 real MRs here (T1
    MPRAGE, two 6.5 mm-slice post-contrast T1s, four BraTS T1c, five FLAIRs, one cut off at the
    back of the head) white/grey read 1.04-1.25 on the T1s and 0.89-0.95 on the FLAIRs."""
    if not tissue:
        return "T1"
    return "T1" if tissue["white"] > tissue["grey"] else "FLAIR"


def tissue_order(contrast: str, tissue: dict[str, float]) -> tuple[str, str, str]:
    """The brain tissues from darkest to brightest on this MR: by its contrast (T1: CSF < grey <
    white; FLAIR: CSF < white < grey; T2: white < grey < CSF, when the unmixed CSF is the brightest),
    not by whichever prior reads darkest (a tumour in the ventricles' place fooled that)."""
    if contrast == "T1":
        return ("csf", "grey", "white")
    if tissue and tissue["csf"] > 1.3 * max(tissue["grey"], tissue["white"]):
        return ("white", "grey", "csf")
    return ("csf", "white", "grey")


def normalise(values: np.ndarray, head: np.ndarray) -> np.ndarray:
    """MR values scaled so that 0 is the background outside the head (0 for raw MR, the minimum of a
    z-scored one) and 1 the 99th percentile inside the head (the network's input scale too)."""
    values = np.asarray(values, dtype=np.float32)
    bg = float(np.median(values[~head])) if (~head).any() else float(values.min())
    ref = float(np.percentile(values[head], 99.0))
    return (values - bg) / max(ref - bg, 1e-6)


def superior_along_thickest(affine, spacing) -> int:
    """+1 or -1 when the array's thickest axis (``spacing`` in k, j, i order) runs within about 35
    degrees of the patient's superior direction (axial slices), towards or away from it; else 0."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    thick = int(np.argmax(spacing))
    column = a[:, 2 - thick]  # the LPS direction of that array axis (columns are i, j, k)
    norm = float(np.linalg.norm(column))
    if norm == 0 or abs(column[2]) / norm < 0.82:
        return 0
    return 1 if column[2] > 0 else -1


def _upsample(array: np.ndarray, grid: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """A working-grid array brought onto ``reference``'s grid (linear)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    img.CopyInformation(grid)
    return _resample_to(img, reference, sitk.Transform(), float(array.flat[0]) if array.size else 0.0)


def synthesize(mr: Volume, *, atlases: tuple[str, ...] = CONTRASTS, contrast: str = "auto", deformable: bool = False,
               progress: Callable[[float, str], None] | None = None, check: Callable[[], None] | None = None,
               templates: Templates | None = None) -> Synthesis:
    """The atlas-based synthetic CT of ``mr`` on its own grid (see the module docstring).  ``atlases``
    names the templates to fuse (``CONTRASTS``), or is ``("matching",)`` for the one of the MR's contrast."""
    progress = progress or (lambda f, m: None)
    check = check or (lambda: None)
    tpl = templates or load_templates()
    progress(0.02, "head mask")
    values = np.asarray(mr.real_values(), dtype=np.float32)
    spacing = tuple(float(s) for s in mr.spacing[::-1])  # (k, j, i) order
    head = head_mask_array(values, spacing)
    if head.sum() * float(np.prod(spacing)) < 100_000:  # 0.1 L
        raise HounsfieldError("No head was found in the MR image; MR-to-CT synthesis needs a head MR.")
    norm = normalise(values, head)
    del values
    mr_img = sitk_from_volume(Volume(norm, mr.affine))
    head_img = sitk_from_volume(Volume(head.astype(np.uint8), mr.affine))
    fixed = working_grid(sitk.Mask(mr_img, head_img))
    fixed_mask = sitk.Cast(sitk.Resample(head_img, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0),
                           sitk.sitkUInt8)
    tpl_head = (sitk.GetArrayViewFromImage(tpl.ct) > -500).astype(np.uint8)
    tpl_mask = sitk.Cast(_like(tpl_head, tpl.ct), sitk.sitkUInt8)
    notes: list[str] = []
    # a skull-stripped MR (its "head" is the brain): register to the templates' brains, keep the
    # atlas' skull and scalp around it
    stripped = _is_skull_stripped(fixed, fixed_mask, tpl, tpl_mask)
    moving = {}
    if stripped:
        brain = sitk.GetArrayViewFromImage(tpl.grey) + sitk.GetArrayViewFromImage(tpl.white) \
            + sitk.GetArrayViewFromImage(tpl.csf)
        tpl_mask = sitk.Cast(_like((brain > 0.3).astype(np.uint8), tpl.ct), sitk.sitkUInt8)
        for name in CONTRASTS:
            moving[name] = sitk.Mask(tpl.mr[name], tpl_mask)
        notes.append("The MR is skull-stripped: the skull and scalp of the synthetic CT come from the atlas alone.")
    else:
        moving = dict(tpl.mr)
    if tuple(atlases) == ("matching",):  # the atlas of the MR's own contrast only
        if contrast == "auto":
            progress(0.04, "finding the MR contrast")
            first = register(fixed, fixed_mask, moving.get("FLAIR", tpl.mr["FLAIR"]), tpl_mask, deformable=False,
                             check=check)
            priors = [tuple(_resample_to(p, fixed, first.affine, 0.0) for p in (tpl.grey, tpl.white, tpl.csf))]
            contrast = guess_contrast(tissue_intensities(sitk.GetArrayViewFromImage(fixed),
                                                         sitk.GetArrayViewFromImage(fixed_mask) > 0, priors))
        atlases = (contrast,)
    regs: dict[str, Registration] = {}
    for n, name in enumerate(atlases):
        check()
        progress(0.05 + 0.7 * n / len(atlases), f"registering the {name} template")
        regs[name] = register(fixed, fixed_mask, moving[name], tpl_mask, check=check,
                              deformable=deformable)
    progress(0.75, "carrying the template CT across")
    warped = _warp_all(tpl, fixed, regs, deformable)
    fixed_norm = sitk.GetArrayViewFromImage(fixed)
    small_head = sitk.GetArrayViewFromImage(fixed_mask) > 0
    tissue = tissue_intensities(fixed_norm, small_head, [tuple(warped[n][1:4]) for n in regs])
    if contrast == "auto":
        contrast = guess_contrast(tissue)
    order = tissue_order(contrast, tissue)
    from scipy import ndimage

    small_depth = ndimage.distance_transform_edt(small_head, sampling=fixed.GetSpacing()[::-1]).astype(np.float32)
    weights = {name: (2.0 if name == contrast else 1.0) for name in regs}
    total = sum(weights.values())
    fused = [sum(weights[n] * warped[n][i] for n in regs) / total for i in range(4)]
    check()
    progress(0.85, "refining with the MR")
    up = [_upsample(a, fixed, mr_img) for a in fused]
    atlas_head = None
    if stripped:
        atlas_head = _upsample((fused[0] > -500).astype(np.float32), fixed, mr_img) > 0.5
        atlas_head |= head
    # depth below the skin (mm): the skull lies within the outer ~2 cm of a head
    depth = _upsample(small_depth, fixed, mr_img)
    hu, classes = refine(up[0], norm, head, *up[1:], order, atlas_head=atlas_head, depth=depth,
                         spacing=spacing, superior=superior_along_thickest(mr.affine, spacing))
    del depth
    candidates = {n: _upsample(warped[n][0], fixed, mr_img) for n in warped}
    # the uncertainty, on the working grid (it is as smooth as the atlases): the refined atlases' spread
    small_atlas_head = None if atlas_head is None else (fused[0] > -500) | small_head
    refined = {n: refine(warped[n][0], fixed_norm, small_head, *fused[1:], order,
                         atlas_head=small_atlas_head, depth=small_depth,
                         spacing=fixed.GetSpacing()[::-1])[0] for n in warped}
    if len(regs) > 1:
        stack = np.stack([refined[n] for n in regs])
        unc = stack.std(axis=0) * np.sqrt(len(regs) / (len(regs) - 1))
        notes.append(f"Fused {len(regs)} atlases ({', '.join(regs)}); the uncertainty is their spread in HU.")
    elif "affine-only" in refined:
        unc = np.abs(refined[atlases[0]] - refined["affine-only"])
        notes.append("One atlas: the uncertainty is the change the deformable registration made, in HU.")
    else:
        name = next(iter(regs))
        raw = np.where(small_head if small_atlas_head is None else small_atlas_head, warped[name][0], AIR_HU)
        unc = np.abs(refined[name] - raw)
        notes.append("One atlas: the uncertainty is how far the MR's own tissues moved the atlas' HU.")
    unc = np.clip(_upsample(unc, fixed, mr_img), 0, None)
    unc = unc.astype(np.float32)
    unc[~(atlas_head if atlas_head is not None else head)] = 0.0
    out = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    progress(1.0, "done")
    return Synthesis(out, unc, head, candidates, classes, contrast, notes, stripped, tissue)


def _warp_all(tpl: Templates, fixed: sitk.Image, regs: dict[str, Registration],
              deformable: bool) -> dict[str, list[np.ndarray]]:
    """Each registered atlas' CT (HU) and grey/white/CSF priors on the working grid."""
    warped = {name: [_resample_to(img, fixed, reg.full, dflt) for img, dflt in
                     ((tpl.ct, AIR_HU), (tpl.grey, 0.0), (tpl.white, 0.0), (tpl.csf, 0.0))]
              for name, reg in regs.items()}
    if deformable and len(regs) == 1:
        name, reg = next(iter(regs.items()))
        warped["affine-only"] = [_resample_to(tpl.ct, fixed, reg.affine, AIR_HU)] + warped[name][1:]
    return warped


def _is_skull_stripped(fixed: sitk.Image, fixed_mask: sitk.Image, tpl: Templates, tpl_mask: sitk.Image) -> bool:
    """True when the MR's head mask is about the size of a brain rather than a head: a head is about
    1.5x the volume of its brain (skull, scalp), and the stripped mask has no dark rim of bone."""
    vol_mr = float(sitk.GetArrayViewFromImage(fixed_mask).sum()) * float(np.prod(fixed_mask.GetSpacing()))
    a = sitk.GetArrayViewFromImage(fixed)
    m = sitk.GetArrayViewFromImage(fixed_mask) > 0
    if not m.any():
        return False
    # the outer 6 mm of the mask: in a head, skin, fat and bone (bright and dark); in a brain, cortex
    inner = sitk.GetArrayViewFromImage(sitk.BinaryErode(fixed_mask, [3, 3, 3])) > 0
    rim = a[m & ~inner]
    core = float(np.median(a[inner])) if inner.any() else float(np.median(a[m]))
    dark_rim = float(np.mean(rim < 0.35 * core)) if rim.size else 0.0
    return vol_mr < 1.9e6 and dark_rim < 0.12


def _soft_lookup(x: np.ndarray, centres: np.ndarray, values, width: float = 0.3) -> np.ndarray:
    """Each intensity's HU by its class (the nearest k-means centre), blended with the neighbouring
    class over the middle ``width`` of the gap between two centres (partial volume)."""
    out = np.full(x.shape, values[0], np.float32)
    for n in range(1, len(centres)):
        lo, hi = centres[n - 1], centres[n]
        mid, span = (lo + hi) / 2, max((hi - lo) * width, 1e-9)
        t = np.clip((x - mid) / span + 0.5, 0.0, 1.0).astype(np.float32)
        out += t * np.float32(values[n] - values[n - 1])
    return out


def _block_mean(a: np.ndarray, f) -> np.ndarray:
    """``a`` averaged over blocks of ``f`` (k, j, i) voxels (the edges cropped)."""
    k, j, i = (n // m * m for n, m in zip(a.shape, f, strict=True))
    b = np.asarray(a[:k, :j, :i], np.float32)
    return b.reshape(k // f[0], f[0], j // f[1], f[1], i // f[2], f[2]).mean(axis=(1, 3, 5))


def _block_expand(a: np.ndarray, f, shape) -> np.ndarray:
    """The inverse of ``_block_mean`` for a mask: each block repeated, the cropped edges padded."""
    out = a
    for axis, m in enumerate(f):
        out = np.repeat(out, m, axis=axis)
    return np.pad(out, [(0, n - o) for n, o in zip(shape, out.shape, strict=True)], mode="edge")


def brain_envelope(norm: np.ndarray, head: np.ndarray, brain_p: np.ndarray, depth: np.ndarray | None,
                   centres: np.ndarray, order, spacing,
                   close_mm: float = ENVELOPE_CLOSE_MM, margin_mm: float = ENVELOPE_MARGIN_MM,
                   grid_mm: float = 1.5, superior: int = 0) -> np.ndarray:
    """The MR's own brain with its sulci and ventricles, where no bone can be: the voxels of its
    grey- and white-matter classes (``centres`` in ``order``, darkest first) in the head, deeper
    than the scalp and within ``ENVELOPE_REACH_MM`` of the warped brain prior ``brain_p`` (an
    affinely placed atlas can sit a centimetre too deep at the vertex), opened (thin bridges to
    the scalp cut), the largest part kept, closed by ``close_mm`` (the sulci), holes filled (the
    ventricles; on slices thicker than ``close_mm``, above the brain's widest slice, slice by slice
    too), grown by ``margin_mm`` (the CSF over the cortex).  Made on a grid of about ``grid_mm``
    (``spacing`` is the array's, in k, j, i order).  ``superior``: +1 or -1 when the index along
    the thickest axis grows or falls towards the head's top (axial slices), 0 when unknown (no
    slice-by-slice filling)."""
    from scipy import ndimage

    f = tuple(max(1, int(round(grid_mm / s))) for s in spacing)
    sp = tuple(s * m for s, m in zip(spacing, f, strict=True))
    x = _block_mean(norm, f)
    reg = _block_mean(head, f) > 0.5
    if depth is not None:
        reg &= _block_mean(depth, f) > SCALP_MM
    near = ndimage.distance_transform_edt(_block_mean(brain_p, f) < 0.3, sampling=sp) <= ENVELOPE_REACH_MM
    reg &= near
    edges = (centres[1:] + centres[:-1]) / 2
    tissue_idx = [order.index("grey"), order.index("white")]
    tissue = reg & np.isin(np.searchsorted(edges, x), tissue_idx)
    # a smooth bias field (a coil's fall-off at the vertex darkens the brain there into the CSF
    # class): the brain tissue's local mean over ~BIAS_MM, divided out, then classified again
    x = x * _bias_gain(x, tissue, sp)
    tissue = reg & np.isin(np.searchsorted(edges, x), tissue_idx)
    if max(tissue_idx) == len(centres) - 1:  # the brightest class is a tissue: fat and marrow are brighter
        tissue &= x <= centres[-1] + 1.0 * (centres[-1] - centres[-2])
    core = ndimage.distance_transform_edt(tissue, sampling=sp) > ENVELOPE_OPEN_MM
    lab, n = ndimage.label(core)
    if n == 0:
        return np.zeros(norm.shape, bool)
    core = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    m = (ndimage.distance_transform_edt(~core, sampling=sp) <= ENVELOPE_OPEN_MM) & tissue
    m = ndimage.distance_transform_edt(ndimage.distance_transform_edt(~m, sampling=sp) <= close_mm,
                                       sampling=sp) > close_mm
    m = ndimage.binary_fill_holes(m)
    thick = int(np.argmax(sp))
    if superior and sp[thick] > close_mm and m.any():
        # slices thicker than the closing radius: a wide sulcus left open on one slice meets the one on
        # the next and runs out to the rim, so the 3D fill leaves it out (brain-tumor-mr brain2's vertex:
        # 1 cm holes of 'bone' in its cortex).  Above the brain's widest slice nothing a slice of brain
        # encloses is bone (the skull is outside it; below lie the skull base's bone and sinuses between
        # the lobes), so there a slice's holes are filled too
        area = m.sum(axis=tuple(a for a in range(m.ndim) if a != thick))
        widest = int(np.argmax(area))
        above = range(widest + 1, m.shape[thick]) if superior > 0 else range(0, widest)
        for n in above:
            index = (slice(None),) * thick + (n,)
            m[index] = fill_holes_cut(m[index])
    m = ndimage.distance_transform_edt(~m, sampling=sp) <= margin_mm
    return _block_expand(m, f, norm.shape)


def _bias_gain(x: np.ndarray, tissue: np.ndarray, sp, bias_mm: float = 15.0, grid_mm: float = 4.0) -> np.ndarray:
    """A multiplicative correction of a smooth intensity drift of ``x``: the mean of ``x`` over
    ``tissue`` divided by its local mean (Gaussian of ``bias_mm``), made on a ``grid_mm`` grid; 1
    where there is too little tissue near."""
    from scipy import ndimage

    if not tissue.any():
        return np.ones(x.shape, np.float32)
    f = tuple(max(1, int(grid_mm // s)) for s in sp)
    num = _block_mean(np.where(tissue, x, 0.0), f)
    den = _block_mean(tissue, f)
    sigma = [bias_mm / (s * m) for s, m in zip(sp, f, strict=True)]
    num, den = ndimage.gaussian_filter(num, sigma), ndimage.gaussian_filter(den, sigma)
    local = np.where(den > 0.05, num / np.maximum(den, 1e-6), 0.0)
    gain = np.where(local > 0, float(x[tissue].mean()) / np.maximum(local, 1e-6), 1.0).astype(np.float32)
    gain = np.clip(gain, 0.7, 1.5)
    zoom = [full / low for full, low in zip(x.shape, gain.shape, strict=True)]
    gain = ndimage.zoom(gain, zoom, order=1, grid_mode=True, mode="nearest")
    out = np.ones(x.shape, np.float32)
    k, j, i = (min(a, b) for a, b in zip(x.shape, gain.shape, strict=True))
    out[:k, :j, :i] = gain[:k, :j, :i]
    return out


def _tissue_centres(norm: np.ndarray, where: np.ndarray, grey, white, csf, order) -> np.ndarray | None:
    """The MR's three brain-tissue intensities in ``order`` (darkest first): a k-means of the MR
    inside ``where`` started from the warped priors' medians, sorted; None when too few voxels."""
    if np.count_nonzero(where) <= 500:
        return None
    sel = norm[where]
    medians = {}
    for t, p in (("csf", csf), ("grey", grey), ("white", white)):
        m = where & (p > 0.6)
        medians[t] = float(np.median(norm[m])) if m.sum() > 50 else float(np.median(sel))
    # which centre is which tissue follows the MR contrast's order (``tissue_order``), never where
    # the priors landed (a tumour in the ventricles' place put the CSF prior on bright oedema)
    start = np.sort([medians[t] for t in order])
    rng = np.random.default_rng(0)
    sample = sel if sel.size < 400_000 else rng.choice(sel, 400_000, replace=False)
    spread = max(float(np.std(sample)), 1e-6) * 1e-3
    return _kmeans_1d(sample, start + spread * np.arange(3))


def _rim(brain: np.ndarray, outer: np.ndarray, spacing, grid_mm: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Around the MR's brain envelope ``brain``: the voxels within RIM_MM of it (the dark rim under
    the scalp: CSF and skull), and those of them nearer the brain than CSF_SPLIT times their distance
    to ``outer`` (the bright tissue outside the skull: scalp, marrow, muscle) and within CSF_MAX_MM of
    the brain (the CSF side).  Distances on a grid of about ``grid_mm`` (``spacing`` in k, j, i order)."""
    from scipy import ndimage

    f = tuple(max(1, int(round(grid_mm / s))) for s in spacing)
    sp = tuple(s * m for s, m in zip(spacing, f, strict=True))
    b = _block_mean(brain, f) > 0.5
    if not b.any():
        z = np.zeros(brain.shape, bool)
        return z, z
    d_in = ndimage.distance_transform_edt(~b, sampling=sp)
    o = _block_mean(outer, f) > 0.5
    d_out = ndimage.distance_transform_edt(~o, sampling=sp) if o.any() else np.full(d_in.shape, np.inf)
    rim = d_in <= RIM_MM
    csf_side = rim & (d_in < CSF_SPLIT * d_out) & (d_in <= CSF_MAX_MM)
    return _block_expand(rim, f, brain.shape), _block_expand(csf_side, f, brain.shape)


def vault_gap_bone(envelope: np.ndarray, head: np.ndarray, depth: np.ndarray, atlas_hu: np.ndarray, spacing,
                   grid_mm: float = 1.5) -> np.ndarray:
    """The skull's share of the gap between the skin and the MR's brain envelope: the voxels of the
    head outside ``envelope``, within RIM_MM of it, deeper than SCALP_KEEP_MM and than
    VAULT_SCALP_SHARE of the gap (``depth`` below the skin over ``depth`` + the distance to the
    envelope).  Over the vault the scalp (skin, fat, galea) is about 5-6 mm and the skull 6-7 mm,
    both stretched alike where a thick slice cuts them obliquely, so the inner part of the gap is
    bone whatever its MR intensity: on a T1 the diploe is as bright as the scalp's fat.  Only where
    the warped atlas has no bone (> ATLAS_BONE_HU) outside the envelope within RIM_MM: where it has,
    its skull is in the gap and placed better than a fixed share.  Distances on a grid of about
    ``grid_mm`` (``spacing`` in k, j, i order)."""
    from scipy import ndimage

    f = tuple(max(1, int(round(grid_mm / s))) for s in spacing)
    sp = tuple(s * m for s, m in zip(spacing, f, strict=True))
    b = _block_mean(envelope, f) > 0.5
    if not b.any():
        return np.zeros(envelope.shape, bool)
    d_in = ndimage.distance_transform_edt(~b, sampling=sp)
    dep = _block_mean(depth, f)
    zone = (d_in > 0) & (d_in <= RIM_MM) & (dep > SCALP_KEEP_MM) & (dep <= VAULT_SKULL_MM) \
        & (dep >= VAULT_SCALP_SHARE * (dep + d_in))
    outside = np.where((_block_mean(head, f) > 0.5) & ~b, _block_mean(atlas_hu, f), AIR_HU)
    size = [2 * int(round(RIM_MM / s)) + 1 for s in sp]
    zone &= ndimage.maximum_filter(outside, size=size) <= ATLAS_BONE_HU
    return _block_expand(zone, f, envelope.shape) & head & ~envelope


def _close_in_plane(m: np.ndarray, spacing, mm: float = 1.5) -> np.ndarray:
    """``m`` closed by about ``mm`` within each slice across the thickest axis (``spacing`` in k, j, i order)."""
    from scipy import ndimage

    if not m.any():
        return m
    thick = int(np.argmax(spacing))
    structure = np.ones((3, 3, 3), bool)
    structure[tuple([0, 2] if a == thick else slice(None) for a in range(3))] = False
    thin = [s for a, s in enumerate(spacing) if a != thick]
    n = max(1, int(round(mm / min(thin))))
    pad = [(0, 0) if a == thick else (n, n) for a in range(3)]
    closed = ndimage.binary_closing(np.pad(m, pad), structure=structure, iterations=n)
    return closed[tuple(slice(None) if a == thick else slice(n, -n) for a in range(3))]


def vault_slices(brain: np.ndarray, spacing, superior: int, above_centre: bool = False) -> np.ndarray:
    """The slices of an axial array above the one where ``brain`` is widest (``superior`` as in
    ``brain_envelope``; ``spacing`` in k, j, i order), as a mask broadcastable to ``brain``; all False
    when ``superior`` is 0 or ``brain`` is empty.  ``above_centre``: and above the slice of its
    centroid too (where the brain's area is nearly flat over many thin slices, its widest one can lie
    as low as the orbits)."""
    thick = int(np.argmax(spacing))
    shape = [1] * brain.ndim
    shape[thick] = brain.shape[thick]
    out = np.zeros(shape, bool)
    if not superior or not brain.any():
        return out
    area = brain.sum(axis=tuple(a for a in range(brain.ndim) if a != thick))
    widest = int(np.argmax(area))
    if above_centre:
        centre = int(round(float(np.arange(area.size) @ area) / float(area.sum())))
        widest = max(widest, centre) if superior > 0 else min(widest, centre)
    flat = out.reshape(-1)
    if superior > 0:
        flat[widest + 1:] = True
    else:
        flat[:widest] = True
    return out


def refine(atlas_hu: np.ndarray, norm: np.ndarray, head: np.ndarray, grey: np.ndarray, white: np.ndarray,
           csf: np.ndarray, order: tuple[str, str, str], atlas_head: np.ndarray | None = None,
           depth: np.ndarray | None = None, spacing=(1.0, 1.0, 1.0),
           superior: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The warped atlas HU corrected with the patient's own MR (see the module docstring).  For a
    skull-stripped MR, ``atlas_head`` (the warped atlas head) replaces the MR's head mask for the air
    outside, the skull is the atlas' own, and the MR's mask (its brain) is all brain.  ``order``:
    the brain tissues darkest first (``tissue_order``); ``spacing`` in (k, j, i) order."""
    hu = atlas_hu.astype(np.float32, copy=True)
    classes = np.zeros(hu.shape, np.uint8)
    classes[head] = 5
    brain_p = grey + white + csf
    base = head & (brain_p > 0.5) & (atlas_hu < 120)
    centres = _tissue_centres(norm, base, grey, white, csf, order)
    # the MR's own brain (no bone there, whatever the atlas says): on a skull-stripped MR its mask
    if centres is None:
        envelope = np.zeros(head.shape, bool)
    elif atlas_head is not None:
        envelope = head
    else:
        envelope = brain_envelope(norm, head, brain_p, depth, centres, order, spacing, superior=superior)
    inside = head & (brain_p > 0.8)
    soft_ref = float(np.median(norm[inside if inside.any() else head]))
    # the upper vault of slices thicker than 3 mm, where 1.4.0's vault rules act (None: thin slices;
    # they resolve the dark tables, which the rules below follow)
    thick_vault = vault_slices(envelope, spacing, superior, above_centre=True) if max(spacing) > 3.0 else None
    if atlas_head is None:
        # the skull: dark on every common MR contrast; inside the atlas' blurred bone shell, dark -> bone
        # thick slices cut the vault obliquely: its bone, partial-volumed with the brain and scalp
        # beside it, reads up to about half the brain's intensity, so the ramp reaches higher there
        hi = DARK_HI + PV_EXTRA * float(np.clip((max(spacing) - 3.0) / 3.5, 0.0, 1.0))
        dark = np.clip((hi * soft_ref - norm) / ((hi - DARK_LO) * soft_ref), 0.0, 1.0)
        if depth is None:
            depth = np.zeros(head.shape, np.float32)
        # the dark rim between the MR's brain envelope and its scalp holds the CSF over the cortex and
        # the skull, equally dark on T1 and FLAIR: its part nearer the brain than the bright tissue
        # outside (scalp, marrow) is CSF, the rest bone
        outer = head & ~envelope & (norm > DARK_HI * soft_ref) & (depth < SHELL_DEPTH_MM)
        rim, csf_side = _rim(envelope, outer, spacing)
        rim &= head & ~envelope & (depth < SHELL_DEPTH_MM)
        csf_side &= rim & (dark > 0)
        # the atlas' bone shell, and beyond it (a skull thicker or placed otherwise than the atlas')
        # anything outside the brain the atlas does not call air, near the skin, and the MR's own
        # dark rim; never inside the MR's own brain envelope (its dark sulci and CSF under a skull
        # the atlas placed too deep)
        shell = head & ~envelope & ~csf_side & (
            ((atlas_hu > 80) & (brain_p < 0.5) & (depth < SHELL_DEPTH_MM))
            | ((atlas_hu > -300) & (brain_p < 0.15) & (depth < SKULL_DEPTH_MM)) | (rim & (atlas_hu > -300)))
        d = dark[shell]
        # where the MR is not dark: soft tissue in the outer few mm of the scalp (the atlas' blurred
        # bone spills onto it), deeper or in the MR's own rim the marrow between the tables (bright
        # on T1; 300-600 HU on CT), kept as the atlas has it
        keep = rim[shell] | (depth[shell] > SCALP_KEEP_MM)
        hu[shell] = (1 - d) * np.where(keep, atlas_hu[shell], np.minimum(atlas_hu[shell], SOFT_TISSUE_HU + 40)) \
            + d * BONE_HU
        classes[shell & (dark > 0.5)] = 4
        d = dark[csf_side]
        hu[csf_side] = (1 - d) * np.minimum(atlas_hu[csf_side], SOFT_TISSUE_HU + 40) + d * CSF_HU
        classes[csf_side & (dark > 0.5)] = 1
        # tissue the atlas took for air inside the head (a misregistered scalp, a smaller sinus)
        airy = head & ~envelope & (atlas_hu < -300) & (dark < 0.5)
        d = dark[airy]
        hu[airy] = (1 - d) * SOFT_TISSUE_HU + d * atlas_hu[airy]
        # the vault (above the brain's widest slice) holds no sinus or mastoid air: where the warped
        # atlas' head ends below the patient's (a taller head), the MR's dark rim there is bone and its
        # bright tissue soft tissue, not the atlas' air (the MPRAGE's vertex skull read -382 HU); not
        # in the outer few mm of the scalp, whose edge is as dark as bone (partial volume with the air)
        vault_air = rim & ~csf_side & (atlas_hu <= -300) & (depth > SCALP_KEEP_MM) \
            & vault_slices(envelope, spacing, superior)
        d = dark[vault_air]
        hu[vault_air] = (1 - d) * SOFT_TISSUE_HU + d * BONE_HU
        classes[vault_air & (dark > 0.5)] = 4
        # and there the skull is the inner part of the gap between the skin and the brain, bright or dark
        # (on thick-slice T1s the obliquely cut vault reads as bright as the scalp: the diploe's fat with
        # the tables partial-volumed in), where the atlas, placed a centimetre too deep, has none: the
        # dark tables bone, the bright diploe marrow (brain-tumor-mr brain1/brain2's upper vault kept the
        # atlas' blurred -300..0 HU scalp)
        # (bright as fat or dark as bone: the gap's intermediate tissue is muscle, the temporalis under a
        # thick lateral scalp; gaps of a few mm between such voxels closed, the partial volume between them)
        # Only on slices thicker than 3 mm (as PV_EXTRA): thinner ones resolve the dark tables, which the
        # rules above follow, and there a fixed share of the gap put 'diploe' into the scalp's fat (the
        # MPRAGE's 1.5 mm vault: 7444 voxels > 600 HU, blocks of 500 HU outside its skull, not adopted)
        if thick_vault is not None:
            zone = vault_gap_bone(envelope, head, depth, atlas_hu, spacing) & ~csf_side & thick_vault
            vault_bone = _close_in_plane(zone & ((dark > 0) | (norm > MARROW_BRIGHT * soft_ref)), spacing) & zone
            soft = zone & ~vault_bone  # and the rest of that inner gap soft tissue, not the atlas' blurred skin
            hu[soft] = np.maximum(hu[soft], SOFT_TISSUE_HU)
            # a bright voxel there is diploe on thin slices; on thick ones (fully at 6.5 mm, as PV_EXTRA) the
            # tables, unresolved, share it: the skull's bulk
            marrow = MARROW_HU + (BONE_HU - MARROW_HU) * float(np.clip((max(spacing) - 3.0) / 3.5, 0.0, 1.0))
            d = dark[vault_bone]
            hu[vault_bone] = np.maximum(hu[vault_bone], (1 - d) * marrow + d * BONE_HU)
            classes[vault_bone] = 4
        del dark
    # the brain: the patient's own grey/white/CSF contrast mapped onto typical HU
    intracranial = base | envelope
    if centres is not None:
        sel = norm[intracranial]
        tissue_hu = {"csf": CSF_HU, "grey": GREY_HU, "white": WHITE_HU}
        code = {"csf": 1, "grey": 2, "white": 3}
        brain_hu = _soft_lookup(sel, centres, [tissue_hu[t] for t in order])
        w = np.clip((brain_p[intracranial] - 0.5) / 0.3, 0.0, 1.0)
        # inside the MR's own brain envelope its clearly dark (T1, FLAIR) or bright (T2) CSF is CSF,
        # whatever the atlas says (the atlas' CSF and sulci are a population's, blurred; an affinely
        # placed atlas skull crosses the vertex sulci)
        if order[0] == "csf":
            own_csf = envelope[intracranial] & (sel < centres[0] + OWN_CSF_CUT * (centres[1] - centres[0]))
        else:
            own_csf = envelope[intracranial] & (sel > centres[2] - OWN_CSF_CUT * (centres[2] - centres[1]))
        w = np.where(own_csf, 1.0, w)
        # the atlas' share is never bone inside the MR's own brain, and in the upper vault of slices thicker
        # than 3 mm never air or fat either (1.4.0: where the warped atlas' brain ends below the patient's,
        # brain-tumor-mr brain1's upper frontal cortex kept the atlas' scalp, -240..-290 HU; floored at CSF,
        # as the envelope's margin is the CSF over the cortex; not lower down, where on the template pair
        # the envelope reaches the orbits' and the face's fat: +0.8 HU MAE on one case there; nor on thin
        # slices: on the template pair's 2.4 mm +0.08 / -0.07 HU on two cases, +0.003 HU in the mean)
        floor = np.float64(-np.inf) if thick_vault is None else np.broadcast_to(
            np.where(thick_vault, CSF_HU, -np.inf), hu.shape)[intracranial]
        atlas_share = np.where(envelope[intracranial],
                               np.clip(hu[intracranial], floor, SOFT_TISSUE_HU + 40), hu[intracranial])
        hu[intracranial] = w * brain_hu + (1 - w) * atlas_share
        edges = (centres[1:] + centres[:-1]) / 2
        classes[intracranial] = np.array([code[t] for t in order], np.uint8)[np.searchsorted(edges, sel)]
    outside = ~head if atlas_head is None else ~atlas_head
    if atlas_head is not None:
        classes[atlas_head & ~head] = 5
    hu[outside] = AIR_HU
    classes[outside] = 0
    return hu, classes
