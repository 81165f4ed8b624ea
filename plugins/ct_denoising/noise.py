"""Blind noise estimation for the CT denoiser (numpy and scipy only; runs in the AI worker).

The noise of a slice is measured where there is no anatomy to confuse it with: the slice is cut
into 8x8 pixel patches, those lying wholly in soft tissue (-200..700 HU) are kept, a plane is
fitted to each (removing slow shading), and the median residual std of the flattest fifth is the
slice's noise, divided by ``PATCH_BIAS`` (on a uniform water phantom with projection-domain noise
inserted, the statistic reads 0.69-0.78 of the true std: the flattest fifth is picked, the plane
takes some low-frequency noise), in HU.  Up to that factor this is the statistic
``lowdose.calibrate_i0`` uses to define a scan's own dose in training, so "noise" here and
"dose" there are measured alike.

The network's noise-level input ``c`` (network.py: 1 at quarter dose of the training scans, 0 at
full dose) is set from that noise: ``c = (sigma / SIGMA_REF_HU) ** EXPONENT``.  ``c`` says what share
of the noise to remove (a dose fraction relative to the scan's own dose), which the absolute noise
level only hints at: a 0.43 mm smooth-kernel head slice at a quarter of its dose reads 6 HU, a GE
liver slice at full dose 38 HU.  The constants are fitted by ``train.py --fit-mapping`` (grid search,
reference 5-50 HU, exponent 0-0.8, best mean PSNR of the network on three monitoring slices, never
trained on, of each training volume at doses 0.5, 0.25 and 0.125, with three neighbours and lone; no
evaluation image takes part).  1.1.0 used 34 HU and 0.5, 1.2.0 and 1.3.0 30 HU and 0.3; for 1.4.0,
slices with fewer than 50 soft-tissue patches (the skull vertex of the training head CT, whose 24
patches gave a spurious 22 HU and outweighed whole volumes) are no longer measured, and the refit
gives 15 HU and 0.1 (120 samples of eight volumes: 45.34 dB against 45.29 for 30 HU and 0.3; every
volume within 0.08 dB of its best constant ``c``, the 0.45 mm head CT 0.37 dB below it before).  The
near-flat mapping says what the data say: across scans the noise level tells little about the
dose, so a quiet scan is no longer taken for a full-dose one (the 0.43 mm Hitachi head slice of
bench_denoise.py went from ``c`` 0.61 to 0.91; the true dose gives 1), and a noisy one is pushed
only a little further.  Slices without enough soft tissue take the median of the others.
"""

from __future__ import annotations

import math

import numpy as np

PATCH = 8
PATCH_BIAS = 0.73  # the patch statistic / the true noise std, on a uniform phantom (0.69-0.78)
SIGMA_REF_HU = 15.0  # noise (HU) read as c = 1 (see above)
EXPONENT = 0.1
MAX_CONDITION = 2.0  # the training range ends near 1.96 (input dose 1/12 of the target's)
MIN_PATCHES = 50  # fewer soft-tissue patches (a skull vertex, a slice mostly air) give no reliable estimate


def slice_noise_hu(slice_hu: np.ndarray, patch: int = PATCH) -> float:
    """Robust noise std (HU) of one CT slice; NaN where fewer than MIN_PATCHES soft-tissue patches exist."""
    image = np.asarray(slice_hu, np.float32)
    rows, cols = (image.shape[0] // patch) * patch, (image.shape[1] // patch) * patch
    if rows == 0 or cols == 0:
        return float("nan")
    patches = (image[:rows, :cols].reshape(rows // patch, patch, cols // patch, patch)
               .transpose(0, 2, 1, 3).reshape(-1, patch * patch).astype(np.float64))
    ok = (patches.min(axis=1) > -200) & (patches.max(axis=1) < 700)
    if ok.sum() < MIN_PATCHES:
        return float("nan")
    patches = patches[ok]
    yy, xx = np.mgrid[:patch, :patch]
    design = np.stack([np.ones(patch * patch), yy.ravel(), xx.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, patches.T, rcond=None)
    resid = patches - (design @ coef).T
    std = resid.std(axis=1) * math.sqrt(patch * patch / (patch * patch - 3))
    return float(np.median(std[std <= np.percentile(std, 20)])) / PATCH_BIAS


def volume_noise_hu(hu: np.ndarray, window: int = 5) -> np.ndarray:
    """Noise std (HU) per slice of a [k, j, i] CT, a running median over ``window`` slices (NaN-free).

    Returns NaN everywhere only when no slice has enough soft tissue to measure."""
    from scipy import ndimage

    sig = np.array([slice_noise_hu(hu[k]) for k in range(hu.shape[0])], np.float64)
    good = np.isfinite(sig)
    if not good.any():
        return sig
    sig[~good] = np.median(sig[good])
    if sig.size > 1:
        sig = ndimage.median_filter(sig, size=min(window, sig.size), mode="nearest")
    return sig


def condition_from_noise(sigma_hu: float | np.ndarray) -> np.ndarray:
    """The network's noise-level input for a measured noise std (HU)."""
    return np.clip((np.maximum(np.asarray(sigma_hu, np.float64), 0.0) / SIGMA_REF_HU) ** EXPONENT, 0.0, MAX_CONDITION)


def equivalent_dose(condition: float) -> float:
    """The dose fraction whose ``dose_channel_value`` is ``condition`` (inverse of network.dose_channel_value)."""
    return 1.0 / (1.0 + 3.0 * float(condition) ** 2)
