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
full dose) is set from that noise: ``c = (sigma / SIGMA_REF_HU) ** EXPONENT``.  For 1.2.0 the two
constants were chosen by grid search (reference 5-50 HU, exponent 0-0.7) for the best mean PSNR
on three monitoring slices (kept out of training) of each training volume at doses 0.5, 0.25
and 0.125 (54 slices of seven volumes; the head CT at 1.5 mm has too little soft tissue there; no
evaluation image took part): 30 HU and 0.3 (was 34 HU and 0.5 for 1.1.0;
+0.04 dB there, the oracle channel per slice being 0.5 dB higher still; a constant ``c = 1``
scored 0.06 dB lower).  For 1.3.0 the search was repeated by ``train.py --fine-pixel --fit-mapping`` (132
monitoring samples of nine volumes, three neighbours and lone): (30 HU, 0.3) was within 0.01 dB of the best.
The flat power means quiet scans (fine-pixel, smooth-kernel) still have noise
worth removing, and a noisy one is not pushed far past the training range.  Slices without
enough soft tissue take the median of the others.
"""

from __future__ import annotations

import math

import numpy as np

PATCH = 8
PATCH_BIAS = 0.73  # the patch statistic / the true noise std, on a uniform phantom (0.69-0.78)
SIGMA_REF_HU = 30.0  # noise (HU) read as c = 1 (see above)
EXPONENT = 0.3
MAX_CONDITION = 2.0  # the training range ends near 1.96 (input dose 1/12 of the target's)
MIN_PATCHES = 20


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
