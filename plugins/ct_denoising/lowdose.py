"""Low-dose CT simulation in the projection domain (noise insertion), for training and evaluation.

A slice in HU is turned into attenuation, forward-projected (parallel beam, ``N_VIEWS`` views
over 180 degrees, one detector bin per pixel), the expected photon counts at a fraction ``dose``
of the scan's own dose are drawn from a Poisson distribution, and the extra noise this adds to
the log-transformed projections is filtered-back-projected (ramp filter) and added to the
original slice.  The original already carries the noise of its own (full) dose, so the inserted
noise has the *difference* of the two variances: ``var(dose) - var(1) = (1/dose - 1) / (I0 e^-p)``,
i.e. the Poisson deviation at the lower dose scaled by ``sqrt(1 - dose)`` (the usual
noise-insertion approximation, e.g. Yu et al., Med. Phys. 2012).

``I0`` (photons per ray at the scan's full dose) is calibrated per volume so that simulated
full-dose noise matches the noise the volume actually shows (``calibrate_i0``), so "quarter dose"
means a quarter of *that* scan's dose.  Needs scikit-image (a test/training dependency; the
plugin itself never imports this module at run time).
"""

from __future__ import annotations

import warnings

import numpy as np

MU_WATER = 0.0192  # linear attenuation of water per mm at ~70 keV effective energy
N_VIEWS = 360
REF_I0 = 1.0e6  # reference photons per ray used for calibration


def _square(slice_hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pad a slice with air to a square and zero attenuation outside the inscribed circle."""
    rows, cols = slice_hu.shape
    n = max(rows, cols)
    pad = np.full((n, n), -1000.0, dtype=np.float64)
    r0, c0 = (n - rows) // 2, (n - cols) // 2
    pad[r0:r0 + rows, c0:c0 + cols] = slice_hu
    yy, xx = np.mgrid[:n, :n]
    inside = np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2) < n / 2
    mu = np.clip(MU_WATER * (1.0 + pad / 1000.0), 0.0, None) * inside
    return mu, np.s_[r0:r0 + rows, c0:c0 + cols]


def _theta(views: int = N_VIEWS) -> np.ndarray:
    return np.linspace(0.0, 180.0, views, endpoint=False)


def line_integrals(slice_hu: np.ndarray, pixel_mm: float, views: int = N_VIEWS, coarse: int = 1) -> np.ndarray:
    """The noiseless sinogram (dimensionless line integrals) of one HU slice.

    ``coarse`` > 1 projects the slice averaged over ``coarse`` x ``coarse`` pixel blocks and
    interpolates the detector axis back to the full grid (``coarse``**2 times faster): the line
    integrals only set each ray's expected photon count, which varies slowly across the detector,
    while the noise is still drawn and reconstructed at full resolution (train.py uses 2)."""
    from skimage.transform import radon

    mu, _ = _square(np.asarray(slice_hu, dtype=np.float64))
    n = mu.shape[0]
    if coarse > 1 and n >= 8 * coarse:
        m = n // coarse
        small = mu[:m * coarse, :m * coarse].reshape(m, coarse, m, coarse).mean(axis=(1, 3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ps = radon(small, _theta(views), circle=True) * float(pixel_mm) * coarse
        # detector bin centres: coarse bin b sits at full-grid position (b + 0.5) * coarse - 0.5
        xs = (np.arange(m) + 0.5) * coarse - 0.5
        full = np.arange(n, dtype=np.float64)
        return np.stack([np.interp(full, xs, ps[:, v], left=0.0, right=0.0) for v in range(views)], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return radon(mu, _theta(views), circle=True) * float(pixel_mm)


def _fbp_hu(delta: np.ndarray, pixel_mm: float, shape: tuple[int, int]) -> np.ndarray:
    """Filtered back-projection of a projection-domain difference, returned as HU on the slice grid."""
    from skimage.transform import iradon

    views = delta.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = iradon(delta / float(pixel_mm), _theta(views), circle=True, filter_name="ramp")
    n = img.shape[0]
    rows, cols = shape
    r0, c0 = (n - rows) // 2, (n - cols) // 2
    return (img[r0:r0 + rows, c0:c0 + cols] / MU_WATER * 1000.0).astype(np.float32)


def inserted_noise(p: np.ndarray, shape, pixel_mm: float, dose: float, i0: float,
                   rng: np.random.Generator) -> np.ndarray:
    """HU noise that turns a full-dose slice (sinogram ``p``) into one at ``dose`` of its dose."""
    if not 0.0 < dose <= 1.0:
        raise ValueError("dose must be in (0, 1]")
    if dose == 1.0:
        return np.zeros(shape, np.float32)
    expected = dose * i0 * np.exp(-p)
    counts = np.maximum(rng.poisson(expected), 1).astype(np.float64)  # 0 counts would be log(0)
    delta = (-np.log(counts / (dose * i0)) - p) * np.sqrt(1.0 - dose)
    return _fbp_hu(delta, pixel_mm, shape)


def simulate_slice(slice_hu: np.ndarray, pixel_mm: float, dose: float, i0: float,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """One slice at ``dose`` (fraction of its own dose) in HU, float32."""
    rng = np.random.default_rng() if rng is None else rng
    p = line_integrals(slice_hu, pixel_mm)
    return np.asarray(slice_hu, np.float32) + inserted_noise(p, slice_hu.shape, pixel_mm, dose, i0, rng)


def _patch_residual_std(image: np.ndarray, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per non-overlapping patch: std of what a fitted plane leaves, and the patch's min/max."""
    rows, cols = (image.shape[0] // size) * size, (image.shape[1] // size) * size
    patches = (image[:rows, :cols].reshape(rows // size, size, cols // size, size)
               .transpose(0, 2, 1, 3).reshape(-1, size * size).astype(np.float64))
    yy, xx = np.mgrid[:size, :size]
    design = np.stack([np.ones(size * size), yy.ravel(), xx.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, patches.T, rcond=None)
    resid = patches - (design @ coef).T
    std = resid.std(axis=1) * np.sqrt(size * size / (size * size - 3))
    return std, np.stack([patches.min(axis=1), patches.max(axis=1)], axis=1)


def calibrate_i0(volume_hu: np.ndarray, pixel_mm: float, n_slices: int = 5, seed: int = 0) -> float:
    """Photons per ray at which simulated noise matches the volume's own (full-dose) noise.

    On a few slices, the flattest fifth of the 8x8 patches lying in soft tissue (-200..700 HU)
    is chosen; the median std left after fitting a plane to each is the volume's noise.  The same
    statistic of noise simulated at ``REF_I0`` on the same patches gives the simulator's; noise
    variance scales as 1/I0.
    """
    rng = np.random.default_rng(seed)
    depth = volume_hu.shape[0]
    real, sim = [], []
    for k in np.unique(np.linspace(depth * 0.2, depth * 0.8, n_slices).astype(int)):
        s = np.asarray(volume_hu[k], np.float32)
        std, rng_minmax = _patch_residual_std(s)
        ok = np.flatnonzero((rng_minmax[:, 0] > -200) & (rng_minmax[:, 1] < 700))
        if ok.size < 20:
            continue
        chosen = ok[std[ok] <= np.percentile(std[ok], 20)]
        p = line_integrals(s, pixel_mm)
        counts = np.maximum(rng.poisson(REF_I0 * np.exp(-p)), 1).astype(np.float64)
        noise_std, _ = _patch_residual_std(_fbp_hu(-np.log(counts / REF_I0) - p, pixel_mm, s.shape))
        real.append(np.median(std[chosen]))
        sim.append(np.median(noise_std[chosen]))
    if not real:
        return REF_I0
    return float(REF_I0 * (np.median(sim) / max(np.median(real), 1e-3)) ** 2)


def simulate_volume(volume_hu: np.ndarray, pixel_mm: float, dose: float, i0: float, seed: int = 0,
                    progress=None) -> np.ndarray:
    """Every slice of a volume at ``dose``, slice by slice (independent noise), as float32 HU."""
    out = np.empty(volume_hu.shape, np.float32)
    for k in range(volume_hu.shape[0]):
        rng = np.random.default_rng([seed, k])
        out[k] = simulate_slice(volume_hu[k], pixel_mm, dose, i0, rng)
        if progress is not None:
            progress(k + 1, volume_hu.shape[0])
    return out
