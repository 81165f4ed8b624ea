"""Detection labels in the 2D views do not cover each other: two detections a few millimetres apart
(a nodule beside a vessel, as in the nodules screenshot) get labels stacked one line apart on screen,
the higher score beside its circle.  Real window, real VTK text actors, measured on screen."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ui.helpers import open_brain_mr_1x3, settle, wait_loaded

pytestmark = pytest.mark.gui


def _screen_boxes(view):
    """Display-pixel boxes (x0, x1, y0, y1) of the view's visible marker labels."""
    boxes = []
    for t in view.markers.texts:
        if t.GetVisibility():
            bb = [0.0] * 4
            t.GetBoundingBox(view.renderer, bb)  # the text's extent, from its anchor
            x, y = t.GetPositionCoordinate().GetComputedDisplayValue(view.renderer)
            boxes.append(([x + bb[0], x + bb[1], y + bb[2], y + bb[3]], t.GetInput()))
    return boxes


def _overlap(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def test_labels_of_close_detections_are_stacked_not_overlapping(make_window, qtbot):
    from viewer.core.layers import Marker, MarkerSet

    win = make_window(layout="1x1")
    win.open_demo()
    wait_loaded(qtbot, win)
    view = win.grid.slice_views[0]
    state = win.model.active_state
    vol = state.volume
    c = vol.index_to_lps([n // 2 for n in vol.shape[::-1]])
    markers = MarkerSet("test", [Marker(c, np.array([12.0, 12.0, 12.0]), 0.41, "nodule"),
                                 Marker(c + [3.0, 2.0, 0.0], np.array([10.0, 10.0, 10.0]), 0.93, "nodule")])
    state.open_series.add_overlay(markers)
    win.model.set_point(state.key, c)
    settle(qtbot)
    view.update_scene()
    view.render_now()
    settle(qtbot)
    boxes = _screen_boxes(view)
    assert len(boxes) == 2, boxes
    (a, ta), (b, tb) = boxes
    assert a[1] > a[0] + 20 and a[3] > a[2] + 5  # real text on screen
    assert not _overlap(a, b), (ta, a, tb, b)
    # the higher score keeps its place at its circle (anchored at 0.75 r up and right of the centre)
    top = next(t for t in view.markers.texts if t.GetVisibility() and t.GetInput().startswith("2 nodule 0.93"))
    geom = view.pipeline.geometry
    x, y = geom.from_lps(c + [3.0, 2.0, 0.0])
    r = view.markers.drawn[1].radius
    assert np.allclose(top.GetPositionCoordinate().GetValue()[:2], (x + 0.75 * r, y + 0.75 * r), atol=1e-6)
    # without the stacking (no pixel size given) the two would cover each other: the check can fail
    view.markers.update(state.open_series.marker_sets, geom, state.point)
    boxes = _screen_boxes(view)
    assert _overlap(boxes[0][0], boxes[1][0])


def test_the_scale_bar_stays_clear_of_the_corner_text_in_narrow_views(make_window, qtbot):
    """Three views side by side in a small window: the corners' lines stack, the scale bar and its
    label are lifted above them (its '5 cm' was written over 'W: 400 L: 40'), and the orientation
    letters clear both stacked blocks (the top 'A' sat on the second block's 'Chest CT phantom')."""
    from viewer.render.overlays import boxes_overlap, text_box

    win = make_window(layout="1x3", size=(1300, 700))  # with the docks, three views of about 180 px
    win.open_demo()
    wait_loaded(qtbot, win)
    settle(qtbot)
    lifted = 0
    for view in win.grid.visible_views():
        view.update_scene()
        view.render_now()
        bar = view.scalebar
        if not bar.label.GetVisibility():
            continue
        x0, x1, y = bar._at
        label = text_box(bar.label, view.renderer)
        box = [min(x0, label[0]), max(x1, label[1]), y, label[3]]
        for corner in ("bottom_left", "bottom_right"):
            assert not boxes_overlap(text_box(view.corners.actors[corner], view.renderer), box), (corner, box)
        lifted += y > 34 + 44  # above where update() puts it: the corners were in the way
        # and the orientation letters clear of the (stacked) corner blocks too
        for edge in ("top", "bottom"):
            letter = text_box(view.labels.actors[edge], view.renderer)
            for corner in view.corners.CORNERS:
                assert not boxes_overlap(text_box(view.corners.actors[corner], view.renderer), letter), (edge, corner)
    assert lifted >= 1  # the narrow case happened, so the check above could fail


def test_a_long_study_description_is_shortened_not_cut_off_in_narrow_views(make_window, qtbot, tmp_path,
                                                                          monkeypatch):
    """The brain MR's study line '1994-09-04 Avanto RoutineImage Guidance' is 305 px wide: in the 1x3
    layout of a 1400 x 900 window (views of 217 px) it ran off the view's edge mid-word.  Lines too
    wide end in '...' and keep their beginning (the date); every corner block stays inside its view."""
    from viewer.render.overlays import text_box

    win = open_brain_mr_1x3(make_window, qtbot, tmp_path, monkeypatch)
    shortened = 0
    for view in win.grid.visible_views():
        view.update_scene()
        view.render_now()
        w, _h = view.size_px()
        assert w < 305  # narrower than the study line: the check below can fail
        for corner, actor in view.corners.actors.items():
            x0, x1, _y0, _y1 = text_box(actor, view.renderer)
            assert 0 <= x0 and x1 <= w, (corner, actor.GetInput(), x0, x1, w)
        top = view.corners.text("top_left").split("\n")
        assert top[2].startswith("1994-09-04 Avanto") and top[2].endswith("...")
        assert view.corners.words["top_left"].endswith("RoutineImage Guidance")  # the whole words are kept
        shortened += 1
    assert shortened == 3
    # a wide window: the whole line again
    win.model.set_layout("1x1")
    settle(qtbot, 100)
    view = win.grid.visible_views()[0]
    view.update_scene()
    assert view.corners.text("top_left").split("\n")[2] == "1994-09-04 Avanto RoutineImage Guidance"


def test_orientation_letters_keep_clear_of_the_corner_lines_beside_them(make_window, qtbot, tmp_path, monkeypatch):
    """The chest CT in the 2x2 layout of a 1600 x 1000 window: the top 'A' stood 2 px before
    'Se: 10230  CT  512 x 512 x 141' and read as one line with it; a letter keeps 8 px beside it
    from any corner line on its rows (else it moves below / above the block)."""
    from tests.conftest import data_path
    from viewer.render.overlays import text_box

    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path / "data"))
    win = make_window(layout="2x2", size=(1600, 1000))
    win.open_path(str(data_path("chest-ct")))
    wait_loaded(qtbot, win)
    settle(qtbot)
    for view in win.grid.slice_views:
        view.update_scene()
        view.render_now()
        for edge in ("top", "bottom"):
            lx0, lx1, ly0, ly1 = text_box(view.labels.actors[edge], view.renderer)
            for corner in view.corners.CORNERS:
                if not view.corners.text(corner):
                    continue
                cx0, cx1, cy0, cy1 = text_box(view.corners.actors[corner], view.renderer)
                if cy0 < ly1 and ly0 < cy1:  # on the same rows: a clear gap beside the letter
                    gap = max(cx0 - lx1, lx0 - cx1)
                    assert gap >= 8, (view.plane, edge, corner, gap)
