"""Click to segment in an oblique view: the crosshair turned with Ctrl+drag in the axial view (real
mouse events), then one click on the chest CT tumour in the now oblique coronal view.  The click goes
to the plugin as an LPS point through the view's own mapping, lands on the tumour, is drawn where it
was made, and the mask matches the reference.  The geodesic method is used: the point of the test is
the plane, not the network (the network's clicks are tested in test_click_segment_gui.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from tests.conftest import data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import open_study_window, qt_pos, ready_window, settle

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def ct_window(qapp, tmp_path_factory):
    needs_display()
    win = open_study_window(qapp, tmp_path_factory.mktemp("oblique"), data_path("chest-ct"), size=(1500, 950))
    yield win
    win.close()


def test_a_click_in_an_oblique_coronal_view_segments_the_tumour(ct_window, qtbot):
    from plugins.lesion_segmentation.data import CHEST_TUMOUR_SEED_KJI, chest_ct_reference

    win = ct_window
    ready_window(win, qtbot)
    m = win.model
    m.set_tool("wl")
    state = m.active_state
    vol = state.volume
    k, j, i = CHEST_TUMOUR_SEED_KJI
    seed = vol.index_to_lps([float(i), float(j), float(k)])
    m.set_point(state.key, seed)
    settle(qtbot, 50)

    # Ctrl+drag around the crosshair centre in the axial view turns the coronal and sagittal planes
    axial, coronal = win.grid.slice_views[0], win.grid.slice_views[1]
    c = qt_pos(axial, seed)
    start, end = QPoint(int(c.x() + 120), int(c.y())), QPoint(int(c.x() + 100), int(c.y() - 70))
    qtbot.mousePress(axial, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, start)
    for t in (0.25, 0.5, 0.75, 1.0):
        qtbot.mouseMove(axial, QPoint(int(start.x() + t * (end.x() - start.x())),
                                      int(start.y() + t * (end.y() - start.y()))))
    qtbot.mouseRelease(axial, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, end)
    settle(qtbot, 50)
    assert state.oblique
    n = coronal.pipeline.geometry.n
    tilt = np.degrees(np.arccos(min(1.0, abs(float(n @ np.array([0.0, 1.0, 0.0]))))))
    assert 15 < tilt < 75, tilt  # the coronal view now cuts the volume obliquely
    assert np.allclose(state.point, seed, atol=1.0)  # turning keeps the crosshair on the tumour

    # the tool, the geodesic method, one click on the tumour in the oblique coronal view
    qtbot.keyClick(axial, Qt.Key.Key_A)
    assert m.tool == "seg_click"
    clicker = win.features.segments.click
    clicker.widgets["method"].setCurrentText("geodesic")
    p = qt_pos(coronal, seed).toPoint()
    lps = coronal.lps_at(qt_pos(coronal, seed))
    assert np.linalg.norm(lps - seed) < 1.5  # the view maps the pixel back to the tumour's seed
    qtbot.mouseClick(coronal, Qt.MouseButton.LeftButton, pos=p)
    qtbot.waitUntil(lambda: not clicker.busy, timeout=60000)
    settle(qtbot, 30)
    assert len(clicker.clicks) == 1 and clicker.clicks[0].point.positive
    assert np.linalg.norm(np.asarray(clicker.clicks[0].point.lps) - seed) < 1.5
    assert clicker.segment is not None, clicker.last_message
    mask = clicker.editable.segmentation.mask(clicker.segment)
    ref = chest_ct_reference(np.asarray(vol.real_values(), np.float32))
    d = float(2 * (mask & ref).sum() / max(mask.sum() + ref.sum(), 1))
    assert d > 0.75, d
    # the click is drawn in the oblique view where it was made (a green circle on its plane)
    tool = coronal.interaction.handler("seg_click")
    assert tool.positive.actor.GetVisibility()
    clicker.discard()
    m.set_tool("wl")
    state.reset_rotation()
