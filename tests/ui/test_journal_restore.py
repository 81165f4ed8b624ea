"""Restoring a segmentation whose journal was cut mid-record, in the real window: the Restore bar
starts a fresh journal, and a brush stroke drawn with real mouse events after the restore is one
whole record that the next restore gives back."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.conftest import data_path
from tests.ui.helpers import qt_pos, settle

pytestmark = pytest.mark.gui


def test_a_stroke_drawn_after_restoring_a_torn_journal_survives_the_next_restore(make_window, qtbot):
    import viewer
    from viewer.core import journal
    from viewer.core.edits import Editor
    from viewer.core.segmentation import Segmentation

    path = data_path("chest-ct")
    vol = viewer.load(path)
    seg = Segmentation.for_volume(vol, "Torn")
    ed = Editor(seg, vol)
    j = journal.Journal(seg, journal.series_id(vol), editor=ed)
    s = ed.add_segment("Tumor")
    ed.brush(s, vol.index_to_lps([150.0, 250.0, 70]), radius_mm=10, normal=[0, 0, 1])
    whole = seg.layers[0].copy()
    size = os.path.getsize(j.path)
    ed.brush(s, vol.index_to_lps([300.0, 250.0, 70]), radius_mm=10, normal=[0, 0, 1])
    j._file.close()  # the process died while writing the last record: half of it is on disk
    with open(j.path, "r+b") as f:
        f.truncate((size + os.path.getsize(j.path)) // 2)

    w = make_window()
    w.open_path(str(path))
    qtbot.waitUntil(lambda: bool(w.model.series) and not w.session.jobs, timeout=60000)
    bar = w.features.segments.restore_bar
    qtbot.waitUntil(bar.isVisible, timeout=3000)
    qtbot.mouseClick(bar.restore_button, Qt.MouseButton.LeftButton)
    restored = w.features.segments.controller.segmentation()
    assert restored is not None and restored.uid == seg.uid and np.array_equal(restored.layers[0], whole)

    # a stroke with the brush, across the voxels of the lost record
    w.model.set_layout("1x1")
    w.model.set_active(0)
    settle(qtbot, 50)
    axial = w.grid.slice_views[0]
    w.model.set_point(w.model.active_state.key, vol.index_to_lps([256.0, 256.0, 70]))
    settle(qtbot, 50)
    w.features.segments.controller.set_setting(brush_mm=5.0, sphere=False)
    qtbot.keyClick(axial, Qt.Key.Key_B)
    points = [qt_pos(axial, vol.index_to_lps([float(i), 250.0, 70.0])).toPoint() for i in (260, 290, 320)]
    qtbot.mousePress(axial, Qt.MouseButton.LeftButton, pos=points[0])
    for p in points[1:]:
        qtbot.mouseMove(axial, p)
    qtbot.mouseRelease(axial, Qt.MouseButton.LeftButton, pos=points[-1])
    settle(qtbot)
    drawn = restored.layers[0].copy()
    assert drawn[70, 250, 290] == 1 and (drawn != whole).sum() > 100

    # killed now (nothing closed): the next restore has the stroke, written as one whole record
    data = open(w.features.segments.controller.find(restored).journal.path, "rb").read()
    spans, good = journal._scan(data)
    assert good == len(data) and len(spans) == 2  # the fresh snapshot and the stroke
    again = journal.replay(j.path)
    assert np.array_equal(again.layers[0], drawn) and [x.name for x in again.segments] == ["Tumor"]
    assert j.path in [r.path for r in journal.recoverable(journal.series_id(vol))]
