"""Window/level heuristics (viewer/core/windowing.py)."""

from __future__ import annotations

from viewer.core.windowing import auto_window


def test_auto_window_covers_the_foreground_of_real_mr(brain_mr_dir):
    import viewer

    vol = viewer.load(brain_mr_dir)
    center, width = auto_window(vol)
    real = vol.array[::4, ::4, ::4]
    assert 0 < center < real.max()
    assert 0.1 * real.max() < width < 1.2 * real.max()
    fg = real[real > center - width / 2]
    assert (fg > center + width / 2).mean() < 0.02  # little of the foreground saturates
