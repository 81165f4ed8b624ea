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
full dose) is set from that noise: ``c = sqrt(sigma / SIGMA_REF_HU)``.  ``SIGMA_REF_HU`` is the
noise this estimate reads on the training chest CT at quarter dose (about 34-40 HU), where
``c = 1`` is the network's best setting.  The square root (rather than a line) was chosen on
quarter-dose slices of chest-ct (training) and of radiomics-lung1 (a smooth-kernel 5 mm scan whose
quarter dose reads only 7 HU, where the best setting was 0.5, not 0.28): low-noise scans still
have noise worth removing.  Slices without enough soft tissue take the median of the others.
"""

from __future__ import annotations

import math

import numpy as np

PATCH = 8
PATCH_BIAS = 0.73  # the patch statistic / the true noise std, on a uniform phantom (0.69-0.78)
SIGMA_REF_HU = 25.0 / PATCH_BIAS
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
    return np.clip(np.sqrt(np.maximum(np.asarray(sigma_hu, np.float64), 0.0) / SIGMA_REF_HU), 0.0, MAX_CONDITION)


def equivalent_dose(condition: float) -> float:
    """The dose fraction whose ``dose_channel_value`` is ``condition`` (inverse of network.dose_channel_value)."""
    return 1.0 / (1.0 + 3.0 * float(condition) ** 2)
