"""Training and evaluation data for the lesion network: real lesions, synthetic lesions inserted
into real CT and MR, and simulated click sequences.

Training (licences allow it): ``brain-tumor-mr`` brain1 and brain2 (tumour label), ``flair-lesion``
(each white-matter lesion component), ``lung-nodule-ct/radiomics-lung2`` (a 48 mL lung mass), and
synthetic lesions inserted into real volumes: totalseg example CT and MR, ct-aorta, radiomics-lung2,
the brain-mr-t1 MPRAGE, the MNI T1 and FLAIR templates.
Held out (``HELD_OUT``; never read by training): BraTS (brain-lesion-mr, non-commercial: evaluation
only), the chest-ct right-lung tumour (reference mask made here, ``chest_ct_reference``) and
radiomics-lung1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

HELD_OUT = ("brain-lesion-mr", "chest-ct", "radiomics-lung1")


def data_root() -> Path:
    import os

    return Path(os.environ.get("VIEWER_TEST_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


@dataclass
class Case:
    name: str
    image: np.ndarray  # float32 [k, j, i]
    vox: np.ndarray  # spacing (k, j, i) mm
    modality: str
    lesions: list[np.ndarray] = field(default_factory=list)  # boolean masks, one per lesion
    sites: dict = field(default_factory=dict)  # where synthetic lesions may go: name -> (n, 3) indices


def _read(path: Path):
    import SimpleITK as sitk

    im = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(im), np.array(im.GetSpacing()[::-1], np.float64)


def _components(mask: np.ndarray, min_voxels: int = 20) -> list[np.ndarray]:
    lab, n = ndimage.label(mask)
    sizes = np.bincount(lab.ravel())
    return [lab == c for c in range(1, n + 1) if sizes[c] >= min_voxels]


def _sites(image: np.ndarray, modality: str, rng: np.random.Generator, n: int = 4000) -> dict:
    def pick(mask):
        idx = np.argwhere(mask)
        return idx[rng.choice(len(idx), min(n, len(idx)), replace=False)] if len(idx) else idx

    img = image[::1]
    if modality == "CT":
        body = ndimage.binary_erosion(img > -300, iterations=2)
        lung = ndimage.binary_erosion((img < -500) & (img > -980), iterations=1)
        soft = ndimage.binary_erosion((img > 0) & (img < 120), iterations=2)
        grad = ndimage.gaussian_gradient_magnitude(np.clip(img, -1000, 400).astype(np.float32), 1.0)
        edge = (grad > np.percentile(grad[body | lung], 90)) & (img > -900) & (img < 300)
        return {"lung": pick(lung), "soft": pick(soft & body), "edge": pick(edge)}
    fg = img > np.percentile(img[img > 0], 30) if np.any(img > 0) else img > img.mean()
    fg = ndimage.binary_erosion(fg, iterations=2)
    grad = ndimage.gaussian_gradient_magnitude(img.astype(np.float32), 1.0)
    edge = fg & (grad > np.percentile(grad[fg], 85)) if fg.any() else fg
    return {"tissue": pick(fg), "edge": pick(edge)}


def training_cases(seed: int = 0) -> list[Case]:
    """The real training volumes (nothing from ``HELD_OUT``)."""
    root = data_root()
    rng = np.random.default_rng(seed)
    cases = []
    for b in ("brain1", "brain2"):
        img, vox = _read(root / "brain-tumor-mr" / f"{b}_image.nrrd")
        lab, _ = _read(root / "brain-tumor-mr" / f"{b}_label.nrrd")
        img = img.astype(np.float32)
        cases.append(Case(f"brain-tumor-mr/{b}", img, vox, "MR", _components(lab > 0, 50), _sites(img, "MR", rng)))
    img, vox = _read(root / "flair-lesion" / "FLAIR.nii.gz")
    lab, _ = _read(root / "flair-lesion" / "lesion.nii.gz")
    img = img.astype(np.float32)
    cases.append(Case("flair-lesion", img, vox, "MR", _components(lab > 0, 30), _sites(img, "MR", rng)))
    img, vox = _read(root / "lung-nodule-ct" / "radiomics-lung2" / "image.nrrd")
    lab, _ = _read(root / "lung-nodule-ct" / "radiomics-lung2" / "label.nrrd")
    img = img.astype(np.float32)
    cases.append(Case("radiomics-lung2", img, vox, "CT", _components(lab > 0, 50), _sites(img, "CT", rng)))
    for rel, mod in (("totalseg-examples/example_ct.nii.gz", "CT"), ("ct-aorta/ct_cropped.nii.gz", "CT"),
                     ("totalseg-examples/example_mr_sm.nii.gz", "MR"),
                     ("mr-ct-templates/mni152-2009a-t1.nii.gz", "MR"),
                     ("mr-ct-templates/flair-template.nii.gz", "MR")):
        img, vox = _read(root / rel)
        img = img.astype(np.float32)
        cases.append(Case(rel, img, vox, mod, [], _sites(img, mod, rng)))
    try:
        import viewer

        v = viewer.load(root / "brain-mr-t1")
        img = np.asarray(v.real_values(), np.float32)[:, ::2, ::2].copy()  # 0.8 mm in-plane is plenty
        vox = np.array([v.spacing[2], v.spacing[1] * 2, v.spacing[0] * 2])
        cases.append(Case("brain-mr-t1", img, vox, "MR", [], _sites(img, "MR", rng)))
    except Exception:  # noqa: BLE001 - optional extra volume
        pass
    for c in cases:
        assert not any(h in c.name for h in HELD_OUT), c.name
    return cases


# ------------------------------------------------------------------------------ clicks


def interior_point(mask: np.ndarray, vox=(1.0, 1.0, 1.0)) -> np.ndarray | None:
    """The most interior voxel of ``mask`` (largest distance to its boundary, in mm)."""
    if not mask.any():
        return None
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    sub = np.pad(mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], 1)
    edt = ndimage.distance_transform_edt(sub, sampling=vox)[1:-1, 1:-1, 1:-1]
    return np.array(np.unravel_index(int(np.argmax(edt)), edt.shape), np.float64) + lo


def corrective_click(gt: np.ndarray, pred: np.ndarray, vox=(1.0, 1.0, 1.0)):
    """(index, positive) at the centre of the largest error region, or None if there is none."""
    best = None
    for positive, err in ((True, gt & ~pred), (False, pred & ~gt)):
        if not err.any():
            continue
        lab, n = ndimage.label(err)
        sizes = np.bincount(lab.ravel())[1:]
        c = int(np.argmax(sizes)) + 1
        if best is None or sizes[c - 1] > best[0]:
            best = (sizes[c - 1], lab == c, positive)
    if best is None:
        return None
    return interior_point(best[1], vox), best[2]


# ------------------------------------------------------------------------------ synthetic lesions


_GRIDS: dict[int, np.ndarray] = {}


def grid(roi: int) -> np.ndarray:
    """(roi^3, 3) float32 window indices (cached)."""
    if roi not in _GRIDS:
        _GRIDS[roi] = np.ascontiguousarray(np.indices((roi, roi, roi), np.float32).reshape(3, -1).T)
    return _GRIDS[roi]


def _smooth_noise(rng, roi: int, cells: int = 6) -> np.ndarray:
    from plugins.lesion_segmentation.network import _interp_axis

    z = rng.standard_normal((cells + 1, cells + 1, cells + 1)).astype(np.float32)
    coords = np.linspace(0, cells, roi)
    for axis in range(3):
        z = _interp_axis(z, coords, axis)
    return z / max(float(z.std()), 1e-6)


def synthetic_shape(rng, roi: int, centre, radius_vox: float) -> np.ndarray:
    """A signed field (< 0 inside, ~distance / radius) of a lobulated, irregular blob."""
    pts = grid(roi) - np.asarray(centre, np.float32)
    field_ = None
    for n in range(1 if rng.random() < 0.6 else int(rng.integers(2, 4))):
        q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        axes = radius_vox * rng.uniform(0.55, 1.0, 3)
        axes[rng.integers(3)] = radius_vox
        shift = 0 if n == 0 else rng.uniform(-0.6, 0.6, 3) * radius_vox
        m = (q.T / axes[None, :]).astype(np.float32)  # rotate, then scale each axis
        x = pts - np.asarray(shift, np.float32)
        r = x[:, 0:1] * m[0] + x[:, 1:2] * m[1] + x[:, 2:3] * m[2]  # x @ m (numpy's matmul is slow here)
        d = np.sqrt(np.einsum("ij,ij->i", r, r)) - 1
        if n > 0:
            d = d * 1.3 + 0.3  # the extra lobes smaller
        field_ = d if field_ is None else np.minimum(field_, d)
    field_ = field_.reshape(roi, roi, roi)
    amp = rng.uniform(0.0, 0.35)
    if amp > 0.02:
        field_ = field_ + amp * _smooth_noise(rng, roi, int(rng.integers(4, 9)))
    return field_


def insert_lesion(rng, win: np.ndarray, modality: str, centre, radius_vox: float, spacing: float,
                  site: str, necrotic: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``win`` with a synthetic lesion at ``centre`` (window index), and its mask.

    ``necrotic``: the share of MR lesions drawn as a whole glioma on FLAIR is: a bright rim (tumour and
    oedema) around a large dark core (necrosis, darker than the brain around it), all of it in the
    mask; the most interior point, where the first click goes, then lies in the dark core."""
    roi = win.shape[0]
    d = synthetic_shape(rng, roi, centre, radius_vox)
    mask = d < 0
    if mask.sum() < 8:
        return win, mask
    edge_vox = rng.uniform(0.1, 2.0) / spacing  # boundary sharpness, mm -> window voxels
    alpha = 1.0 / (1.0 + np.exp(np.clip(d * radius_vox / max(edge_vox, 0.05), -30, 30)))
    texture = _smooth_noise(rng, roi, int(rng.integers(6, 16)))
    white = rng.standard_normal(win.shape).astype(np.float32)
    if modality == "CT":
        bg = float(np.median(win[mask]))
        if site == "lung" or bg < -400:
            level = rng.uniform(-650, -350) if rng.random() < 0.15 else rng.uniform(-80, 80)
        else:
            level = bg + rng.choice([-1, 1], p=[0.65, 0.35]) * rng.uniform(15, 90)
        lesion = level + rng.uniform(0, 25) * texture + rng.uniform(5, 20) * white
        if rng.random() < 0.2:  # a necrotic or calcified core
            core = d < -rng.uniform(0.3, 0.6)
            lesion = np.where(core, level + rng.choice([-1, 1]) * rng.uniform(20, 60), lesion)
    else:
        fg = win[win > np.percentile(win, 20)]
        m, s = float(fg.mean()), float(fg.std()) + 1e-3
        k = rng.uniform(0.8, 3.5) * (1 if rng.random() < 0.7 else -1)
        lesion = m + k * s + rng.uniform(0, 0.5) * s * texture + rng.uniform(0.02, 0.15) * s * white
        if necrotic and rng.random() < necrotic:  # bright rim, dark necrotic core: one lesion
            k = abs(k)
            lesion = m + k * s + rng.uniform(0, 0.5) * s * texture + rng.uniform(0.02, 0.15) * s * white
            core = d < -rng.uniform(0.15, 0.5)
            dark = m - rng.uniform(0.3, 2.0) * s + rng.uniform(0, 0.4) * s * _smooth_noise(rng, roi, 5)
            lesion = np.where(core, dark, lesion)
        elif rng.random() < 0.25:  # a core of another signal (necrosis) or a halo (oedema) inside the mask
            core = d < -rng.uniform(0.3, 0.6)
            lesion = np.where(core, m + rng.uniform(-2.0, 2.0) * s, lesion)
    return (win * (1 - alpha) + lesion * alpha).astype(np.float32), mask


def insert_whole_tumour(rng, win: np.ndarray, centre, radius_vox: float, spacing: float, oedema_min: float = 0.6
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``win`` (MR) with a synthetic whole brain tumour as FLAIR shows it, and its mask (all of it).

    Oedema: a moderately bright, fuzzy-edged, irregular region (the whole mask, kept inside the head);
    in it, off its centre, the tumour: a brighter rim, heterogeneous, around a dark necrotic or cystic
    core (darker than the brain around it in about half).  The most interior point of the mask, where
    the first click goes, then usually lies in the core or the rim, as in BraTS 0005.  ``oedema_min``: the
    oedema's least brightness, in SDs of the brain above its mean (drawn up to 2.2)."""
    roi = win.shape[0]
    d = synthetic_shape(rng, roi, centre, radius_vox)
    fg_level = np.percentile(win, 99)
    head = ndimage.binary_fill_holes(ndimage.gaussian_filter(win, 1.0) > 0.15 * fg_level)
    head = ndimage.binary_erosion(head, iterations=2) if head.sum() > 0.3 * head.size else np.ones_like(head)
    mask = (d < 0) & head
    if mask.sum() < 8:
        return win, mask
    fg = win[head & (win > np.percentile(win[head], 20))]
    m, s = float(fg.mean()), float(fg.std()) + 1e-3
    # the tumour proper: a second shape inside the oedema, off its centre
    core_c = np.asarray(centre, np.float64) + rng.uniform(-0.35, 0.35, 3) * radius_vox
    rc = radius_vox * rng.uniform(0.35, 0.75)
    dc = synthetic_shape(rng, roi, core_c, rc)
    rim = (dc < 0) & mask
    necrotic = (dc < -rng.uniform(0.15, 0.55)) & mask if rng.random() < 0.85 else np.zeros_like(mask)
    edge_vox = rng.uniform(0.5, 4.0) / spacing  # the oedema's edge fades out
    alpha = 1.0 / (1.0 + np.exp(np.clip(d * radius_vox / max(edge_vox, 0.05), -30, 30))) * head
    white = rng.standard_normal(win.shape).astype(np.float32)
    def texture(lo: int, hi: int) -> np.ndarray:
        return _smooth_noise(rng, roi, int(rng.integers(lo, hi)))

    oedema = m + rng.uniform(oedema_min, max(2.2, oedema_min + 0.5)) * s + rng.uniform(0.1, 0.6) * s * texture(5, 12)
    if rng.random() < 0.5:  # brighter towards the tumour, fading outward
        oedema = oedema + rng.uniform(0.2, 1.0) * s * np.clip(-d, 0, 1)
    lesion = oedema + rng.uniform(0.02, 0.15) * s * white
    bright = m + rng.uniform(1.2, 3.5) * s + rng.uniform(0.2, 0.8) * s * texture(6, 14)
    lesion = np.where(rim, bright, lesion)
    dark = m + rng.uniform(-2.5, 0.5) * s + rng.uniform(0.1, 0.8) * s * texture(4, 10)
    soft = ndimage.gaussian_filter(necrotic.astype(np.float32), rng.uniform(0.5, 1.5))
    lesion = lesion * (1 - soft) + dark * soft
    return (win * (1 - alpha) + lesion * alpha).astype(np.float32), mask


# ------------------------------------------------------------------------------ held-out references

CHEST_TUMOUR_SEED_KJI = (77, 252, 168)  # the chest-ct right-lung tumour (k 72-84, about 8 mL)


def chest_ct_reference(hu: np.ndarray) -> np.ndarray:
    """The reference mask of the chest-ct right-lung tumour, made here (no published mask exists).

    Smoothed in-plane (0.7 px), thresholded at -400 HU (half-way between aerated lung and the
    solid mass), opened with a 4 mm ellipsoid to cut the vessels and bronchi that touch it, the
    part holding the seed grown back by one ellipsoid within the threshold, holes filled, and
    slices 72-84 kept (above and below only vessel fragments remain).  Checked by eye on a PNG of
    every slice (axial, coronal and sagittal)."""
    sl = (slice(62, 94), slice(200, 310), slice(110, 230))
    sub = ndimage.gaussian_filter(np.asarray(hu[sl], np.float32), (0, 0.7, 0.7))
    th = sub > -400
    seed = tuple(c - s.start for c, s in zip(CHEST_TUMOUR_SEED_KJI, sl))
    zz, yy, xx = np.mgrid[-2:3, -4:5, -4:5]
    ball = (zz / 2.0) ** 2 + (yy / 4.0) ** 2 + (xx / 4.0) ** 2 <= 1
    lab, _ = ndimage.label(ndimage.binary_opening(th, ball))
    m = th & ndimage.binary_dilation(lab == lab[seed], ball)
    lab, _ = ndimage.label(m)
    m = ndimage.binary_fill_holes(lab == lab[seed])
    out = np.zeros(hu.shape, bool)
    out[sl] = m
    out[:72] = False
    out[85:] = False
    return out


@dataclass
class EvalCase:
    name: str
    image: np.ndarray  # real values [k, j, i]
    vox: np.ndarray
    modality: str
    truth: np.ndarray  # bool


def evaluation_cases() -> list[EvalCase]:
    """The held-out lesions: BraTS 0003-0006 whole tumour on FLAIR (evaluation only: CC BY-NC-SA),
    the chest-ct tumour, radiomics-lung1."""
    import viewer

    root = data_root()
    out = []
    for n in range(3, 7):
        d = root / "brain-lesion-mr" / f"brats-000{n}"
        if not d.exists():
            continue
        img, vox = _read(d / "Flair_subtrMeanDivStd.nii.gz")
        lab, _ = _read(d / "OTMultiClass.nii.gz")
        out.append(EvalCase(f"BraTS {n:04d} (FLAIR)", img.astype(np.float32), vox, "MR", lab > 0))
    if (root / "chest-ct").exists():
        v = viewer.load(root / "chest-ct")
        hu = np.asarray(v.real_values(), np.float32)
        out.append(EvalCase("chest-ct tumour", hu, np.asarray(v.spacing[::-1], np.float64), "CT",
                            chest_ct_reference(hu)))
    d = root / "lung-nodule-ct" / "radiomics-lung1"
    if d.exists():
        img, vox = _read(d / "image.nrrd")
        lab, _ = _read(d / "label.nrrd")
        out.append(EvalCase("radiomics-lung1 nodule", img.astype(np.float32), vox, "CT", lab > 0))
    return out
