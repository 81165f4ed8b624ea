"""The scale bar in the narrow panes of a real window: the brain MR in 1x3."""

from __future__ import annotations

import pytest

from tests.ui.helpers import open_brain_mr_1x3

pytestmark = pytest.mark.gui


def test_the_brain_mr_s_scale_bar_is_not_a_stub_in_the_1x3_panes(make_window, qtbot, tmp_path, monkeypatch):
    """In the 1x3 layout of a 1400 x 900 window the brain MR's panes are 217 px wide: each showed a
    '2 cm' bar of 20 px (9% of the pane), shorter than its own label.  Each bar now takes 15-40% of
    its pane and is at least as long as its label is wide."""
    from viewer.render.overlays import text_box

    win = open_brain_mr_1x3(make_window, qtbot, tmp_path, monkeypatch)
    seen = 0
    for view in win.grid.visible_views():
        view.update_scene()
        view.render_now()
        bar = view.scalebar
        w, _h = view.size_px()
        assert w < 300 and bar.label.GetVisibility()  # narrow panes, each with its bar
        x0, x1, _y = bar._at
        label = text_box(bar.label, view.renderer)
        assert 0.15 * w <= x1 - x0 <= 0.4 * w, (view.plane, bar.length_mm, (x1 - x0) / w)
        assert x1 - x0 >= label[1] - label[0], (view.plane, bar.length_mm)
        seen += 1
    assert seen == 3
