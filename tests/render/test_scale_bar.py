"""The 2D views' scale bar: a round length that takes a sensible share of the view's width, wide or narrow."""

from __future__ import annotations

import math

import pytest

from viewer.render.overlays import ScaleBar, length_label

WIDTHS = (140, 180, 217, 260, 331, 480, 700, 1000, 1600)  # display px: 1x3 panes of small windows to 1x1
MM_PER_PIXEL = (0.25, 0.47, 0.7, 0.985, 1.12, 1.5, 2.3)  # zoomed-in CT to a whole-body MR fitted small


def _round(mm: float) -> bool:
    mantissa = mm / 10 ** math.floor(math.log10(mm) + 1e-9)
    return any(abs(mantissa - m) < 1e-6 for m in (1, 2, 5))


@pytest.mark.parametrize("width", WIDTHS)
def test_the_bar_is_round_and_takes_a_sensible_share_of_the_width(width):
    """The brain MR's 1x3 panes are 217 px at 0.985 mm per pixel: the bar was 2 cm, 20 px, 9% of the
    pane and shorter than its own '2 cm' (the largest round length under a fifth of the width, which
    drops by 2.5 just below 5 cm).  Now it is the round length nearest a fifth of the width (at least
    56 px in a narrow pane), never over 40% of it: between 12.5% and 40% at every width and scale."""
    bar = ScaleBar()
    for mpp in MM_PER_PIXEL:
        bar.update(mpp, width, 600)
        mm = bar.length_mm
        assert mm > 0 and _round(mm), (width, mpp, mm)
        px = mm / mpp
        assert 0.125 * width <= px <= 0.4 * width, (width, mpp, mm, px / width)
        assert px >= min(32, 0.2 * width), (width, mpp, mm, px)  # a stub of a few pixels says nothing
        x0, x1, _y = bar._at
        assert x0 >= 0 and abs((x1 - x0) - px) < 1e-6  # inside the view, as long as it says


def test_the_brain_mr_s_narrow_pane_gets_5_cm_and_a_wide_view_keeps_its_length():
    bar = ScaleBar()
    bar.update(0.985, 217, 700)
    assert bar.length_mm == 50 and length_label(bar.length_mm) == "5 cm"
    bar.update(0.47, 1000, 700)  # 200 px would be 94 mm: 10 cm is the nearest round length
    assert bar.length_mm == 100
