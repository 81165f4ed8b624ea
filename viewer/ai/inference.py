"""Inference helpers for plugins (worker side; torch and MONAI imported lazily).

``sliding_window`` is MONAI's sliding-window inference with the host's progress and Cancel wired
in; large volumes go through it.  ``to_model_axes``/``from_model_axes`` move between the viewer's
``[k, j, i]`` LPS arrays and the ``[x, y, z]`` RAS arrays MONAI models are trained on (what
MONAI's ``LoadImage`` + ``Orientation("RAS")`` produce), by axis permutation and flips only.
"""

from __future__ import annotations

import math

import numpy as np


def count_windows(spatial, roi, overlap: float) -> int:
    n = 1
    for size, r in zip(spatial, roi):
        if size <= r:
            continue
        step = max(int(r * (1 - overlap)), 1)
        n *= math.ceil((size - r) / step) + 1
    return n


def sliding_window(predictor, image, roi_size, *, context=None, overlap: float = 0.25, sw_batch_size: int = 1,
                   mode: str = "gaussian", progress_range: tuple[float, float] = (0.0, 1.0),
                   message: str = "inferring", device=None, sw_device=None):
    """``monai.inferers.sliding_window_inference`` reporting progress and honouring Cancel.

    ``image`` is a ``(B, C, *spatial)`` tensor; ``predictor`` maps a window batch to outputs of
    the same spatial size.  ``context`` is the plugin's RunContext (or None).
    """
    from monai.inferers import sliding_window_inference

    spatial = tuple(image.shape[2:])
    roi = tuple(int(r) if r and r > 0 else s for r, s in zip(roi_size, spatial))
    total = max(math.ceil(count_windows(spatial, roi, overlap) / sw_batch_size) * image.shape[0], 1)
    lo, hi = progress_range
    done = [0]

    def wrapped(x):
        if context is not None:
            context.check_cancelled()
        out = predictor(x)
        done[0] += 1
        if context is not None:
            context.progress(lo + (hi - lo) * min(done[0] / total, 1.0), message)
        return out

    return sliding_window_inference(image, roi, sw_batch_size, wrapped, overlap=overlap, mode=mode,
                                    device=device, sw_device=sw_device)


def _axis_plan(affine: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """For [k, j, i] arrays: the permutation to [x, y, z] and which output axes to flip for RAS."""
    direction = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    # array axis a (0=k, 1=j, 2=i) moves along voxel axis v = 2 - a
    order = []
    flips = []
    used = set()
    for lps_axis in range(3):  # x (L/R), y (P/A), z (S)
        scores = [abs(direction[lps_axis, 2 - a]) if a not in used else -1 for a in range(3)]
        a = int(np.argmax(scores))
        used.add(a)
        order.append(a)
        sign = direction[lps_axis, 2 - a]
        # RAS: +x is Right (LPS -x), +y is Anterior (LPS -y), +z is Superior (LPS +z)
        flips.append(bool(sign > 0) if lps_axis < 2 else bool(sign < 0))
    return tuple(order), tuple(flips)


def to_model_axes(array: np.ndarray, affine: np.ndarray, order: str = "ras") -> np.ndarray:
    """A view of a ``[k, j, i]`` array in the model's axis order ("ras" or "kji": unchanged)."""
    if order == "kji":
        return array
    perm, flips = _axis_plan(affine)
    out = np.transpose(array, perm)
    for ax, f in enumerate(flips):
        if f:
            out = np.flip(out, ax)
    return out


def from_model_axes(array: np.ndarray, affine: np.ndarray, order: str = "ras") -> np.ndarray:
    """Undo ``to_model_axes`` on the last three axes (leading channel axes are kept)."""
    if order == "kji":
        return array
    perm, flips = _axis_plan(affine)
    lead = array.ndim - 3
    for ax, f in enumerate(flips):
        if f:
            array = np.flip(array, lead + ax)
    inverse = np.argsort(perm)
    return np.transpose(array, (*range(lead), *(lead + int(p) for p in inverse)))
