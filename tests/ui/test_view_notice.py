"""A 2D view's centred notice stays readable: the crosshair is not drawn behind its box."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ui.helpers import open_chest_ct_with_gap, settle

pytestmark = pytest.mark.gui


def _inside(seg, box, margin: float = 0.0) -> bool:
    """Whether any point of a display segment falls in the box (xmin, xmax, ymin, ymax)."""
    (x0, y0), (x1, y1) = seg
    t = np.linspace(0.0, 1.0, int(np.hypot(x1 - x0, y1 - y0) * 2) + 2)
    x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
    return bool(np.any((x > box[0] - margin) & (x < box[1] + margin) & (y > box[2] - margin) & (y < box[3] + margin)))


def _pieces(crosshair) -> list:
    """The crosshair's drawn line pieces ((x0, y0), (x1, y1)) in display pixels."""
    pts = crosshair._poly.GetPoints()
    n = pts.GetNumberOfPoints() if pts is not None else 0
    return [(pts.GetPoint(i)[:2], pts.GetPoint(i + 1)[:2]) for i in range(0, n, 2)]


def test_the_crosshair_leaves_the_missing_slice_notice_clear(make_window, qtbot, chest_ct_dir, tmp_path,
                                                            monkeypatch):
    """Four of the chest CT's slices left out and the crosshair on one of their slots: the axial view's
    'No image at this position: missing from the series' sat in the view's middle, where the crosshair
    runs, and its red and green lines struck the words through (and at 363 px the words ran off both
    edges of the 331 px view).  No line piece may cross the notice's box now, the lines still run on
    all four sides of it, and the notice fits the view."""
    from viewer.render.overlays import text_box

    win = open_chest_ct_with_gap(make_window, qtbot, chest_ct_dir, tmp_path, monkeypatch)
    state = win.model.active_state
    k = state.volume.source.blank_slices[1]
    nk, nj, ni = state.volume.shape
    win.model.set_point(state.key, state.volume.index_to_lps([ni // 2, nj // 2, k]))
    settle(qtbot)
    axial = win.grid.slice_views[0]
    axial.update_scene()
    axial.render_now()
    assert axial.notice.actor.GetVisibility() and "missing from the series" in axial.notice.actor.GetInput()
    box = text_box(axial.notice.actor, axial.renderer)
    w, h = axial.size_px()
    assert 0 <= box[0] and box[1] <= w  # 363 px of words in a 331 px view: broken at its colon, not cut off
    assert axial.notice.actor.GetInput() == "No image at this position:\nmissing from the series"
    centre = axial.view2d.to_display(*axial.pipeline.geometry.from_lps(state.point))
    assert box[0] < centre[0] < box[1] and box[2] - 14 < centre[1] < box[3] + 14  # the lines do meet the notice
    pieces = _pieces(axial.crosshair)
    assert axial.crosshair.actor.GetVisibility() and len(pieces) >= 4
    assert not [p for p in pieces if _inside(p, box)]
    # round the box the lines are still there: the crosshair is hidden behind it, not gone
    for side in ([0, box[0] - 1, 0, h], [box[1] + 1, w, 0, h], [0, w, 0, box[2] - 1], [0, w, box[3] + 1, h]):
        assert any(_inside(p, side) for p in pieces), side
    # away from the gap there is no notice and the crosshair runs through the centre gap's edge again
    win.model.set_point(state.key, state.volume.index_to_lps([ni // 2, nj // 2, k + 3]))
    settle(qtbot)
    axial.update_scene()
    assert not axial.notice.actor.GetVisibility()
    assert any(_inside(p, box) for p in _pieces(axial.crosshair))
