"""Window/level heuristics from a volume's pixels, with no Qt and no VTK."""

from __future__ import annotations

import numpy as np

from viewer.core.volume import Volume


def _foreground_sample(volume: Volume, loaded=None) -> np.ndarray | None:
    """About 500k real values of the volume (loaded slices only) above 5 % of its range."""
    arr = volume.array
    step = max(1, int(round((arr.size / 5e5) ** (1 / 3))))
    ks = np.arange(0, arr.shape[0], step)
    if loaded is not None:
        ks = ks[np.asarray(loaded)[ks]]
        if ks.size == 0:
            return None
    sample = volume.real_values(np.s_[ks, ::step, ::step]).astype(np.float32).ravel()
    top = float(np.percentile(sample, 99.5))
    bottom = float(sample.min())
    fg = sample[sample > bottom + 0.05 * (top - bottom)]
    return fg if fg.size >= 100 else sample


CT_WINDOW = (40.0, 400.0)  # soft tissue: a CT's window where its header gives none


def own_window(volume: Volume, loaded=None) -> tuple[float, float]:
    """A series' own default window: the one it carries (its DICOM header's), else soft tissue for a
    CT in HU, else one from its histogram."""
    if volume.window is not None:
        return tuple(volume.window)
    if volume.modality == "CT" and volume.units == "HU":
        return CT_WINDOW
    return auto_window(volume, loaded)


def auto_window(volume: Volume, loaded=None) -> tuple[float, float]:
    """A (centre, width) from the histogram of the volume's foreground (MR's 'auto' preset)."""
    fg = _foreground_sample(volume, loaded)
    if fg is None:
        return volume.window or (0.0, 1.0)
    lo, hi = np.percentile(fg, [0.5, 99.5])
    width = max(float(hi - lo), 1e-3)
    return float(lo + width / 2), width


def window_saturates(volume: Volume, window: tuple[float, float], loaded=None, limit: float = 0.25) -> bool:
    """True when more than ``limit`` of the foreground is above the window (a window that does not
    fit these pixels, e.g. one inherited by rescaled MR)."""
    fg = _foreground_sample(volume, loaded)
    if fg is None:
        return False
    return float((fg > window[0] + window[1] / 2).mean()) > limit
