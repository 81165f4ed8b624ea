"""Lesion change over time in the real window (issue 19 item 4): baseline and follow-up open side by side,
the baseline tumour segmented, *Carry segments from prior* (registering first on a worker thread; one
registration cancelled), *Fit to current image*, the reader's outline of the follow-up tumour, the
volume change read from the table, SR and CSV exported and read back, and the README screenshot.

Data: ``tests/followup.py``, the real chest CT and a synthetic follow-up 120 days later with a known
move and the right-lung tumour grown by a known volume; a small crop (every 2nd row and column, the 40
slices around the tumour) keeps it short.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from tests.conftest import REPO, data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import open_pair_window, settle

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    data_path("chest-ct")  # skips with a reason when the real data is absent
    from tests.followup import TUMOUR_SLICES, cached_followup

    return cached_followup(tmp_path_factory, stride=2, slices=TUMOUR_SLICES)


@pytest.fixture(scope="module")
def win(qapp, tmp_path_factory, pair):
    needs_display()
    w = open_pair_window(qapp, tmp_path_factory.mktemp("changes"), pair, size=(1800, 1000))
    yield w
    w.close()


def _click(qtbot, button) -> None:
    from PySide6.QtCore import Qt

    assert button.isEnabled() and button.isVisible()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_carry_fit_read_the_change_and_export(win, pair, qtbot, tmp_path):
    from viewer.core.io.changes import read_change_sr

    ws, feat = win.workspace, win.features.changes
    panel = feat.panel
    base, follow = ws.series[pair.baseline_series_uid], ws.series[pair.followup_series_uid]
    mask_b, mask_f = pair.masks()
    # the baseline tumour, segmented (the reference outline, put in as one edit)
    ed = base.segmentation()
    tumour = ed.editor.add_segment("Right lung tumour")
    full = tuple(slice(0, n) for n in mask_b.shape)
    ed.editor.set_mask(tumour, full, mask_b)
    # the panel from the menu: the older study is the prior
    feat.actions["dock"].trigger()
    qtbot.waitUntil(lambda: feat.dock.isVisible(), timeout=3000)
    assert panel.chosen() == (base.key, follow.key)
    assert "2007-02-08" in panel.prior_box.currentText() and "2007-06-08" in panel.current_box.currentText()
    settle(qtbot, 400)
    assert panel.row_of("Right lung tumour")["Status"] == "gone"  # nothing on the follow-up yet

    # a (deformable) registration started and cancelled changes nothing; rigid is the default again after
    assert panel.kind() == "rigid"
    panel.kind_box.setCurrentIndex(panel.kind_box.findData("deformable"))
    _click(qtbot, panel.buttons["register"])
    assert "(deformable)" in panel.status.text() and not panel.kind_box.isEnabled()
    _click(qtbot, panel.cancel_button)
    qtbot.waitUntil(lambda: not feat.busy, timeout=60000)
    assert "cancelled" in panel.status.text()
    assert feat.comparison().reg is None
    panel.kind_box.setCurrentIndex(panel.kind_box.findData("rigid"))

    # carry: registers (rigid, worker thread), then carries
    _click(qtbot, panel.buttons["carry"])
    qtbot.waitUntil(lambda: any(ed.segmentation.name.endswith("(from prior)") for ed in follow.segmentations),
                    timeout=90000)
    settle(qtbot, 400)
    cmp = feat.comparison()
    assert cmp.reg is not None and cmp.reg.kind == "rigid"
    reg_find = getattr(ws, "registration", None)
    if reg_find is not None:  # kept by the workspace (issue 19 item 2) for linked scrolling too
        assert reg_find(follow, base) is not None
    row = panel.row_of("Right lung tumour")
    assert row["Status"] == "followed" and row["Organ"] == "lung"
    assert "carrying" in panel.table.item(0, len(panel.COLUMNS) - 1).toolTip()
    carried = next(ed for ed in follow.segmentations if ed.segmentation.name.endswith("(from prior)"))
    seg = carried.segments[0]
    moved = carried.segmentation.mask(seg)
    assert 2 * (moved & mask_f).sum() / (moved.sum() + mask_f.sum()) > 0.7  # on the follow-up's tumour
    carried_ml = float(row["Now mL"])
    _click(qtbot, panel.buttons["carry"])  # again: nothing carried twice
    assert "already" in panel.status.text() and len(follow.segmentations) == 1
    assert carried_ml == pytest.approx(float(row["Prior mL"]), rel=0.03)  # the prior's lesion, moved

    # fit it to the follow-up image: it grows by about the known growth (bench_lesion_change.py: -7% here)
    _click(qtbot, panel.buttons["fit"])
    qtbot.waitUntil(lambda: float(panel.row_of("Right lung tumour")["Now mL"]) > carried_ml + 1.0, timeout=10000)
    settle(qtbot, 400)
    assert float(panel.row_of("Right lung tumour")["Δ mL"]) == pytest.approx(pair.growth_ml, rel=0.10)

    # the reader outlines the follow-up tumour in that segment: the table shows the known growth
    carried.editor.set_mask(seg, full, mask_f)
    qtbot.waitUntil(lambda: abs(float(panel.row_of("Right lung tumour")["Δ mL"]) - pair.growth_ml)
                    < 0.05 * pair.growth_ml, timeout=10000)
    row = panel.row_of("Right lung tumour")
    (change,) = cmp.changes
    assert row["Δ %"] == f"{change.volume_change_pct:+.0f}%" and row["VDT"] == f"{change.vdt_days:.0f} d"
    assert row["Target"] == "" and panel.table.item(0, 1).checkState().name == "Checked"
    assert "120 days apart" in panel.sum_label.text()
    resp = cmp.response()
    assert resp.category in panel.response_label.text() and "Rule:" in panel.response_label.text()

    # export and read back: one tracking UID at both time points, the figures of the table
    out = feat.export(str(tmp_path))
    prior_sr, current_sr = out["sr"]
    (p,) = [g for g in read_change_sr(prior_sr) if g.get("tracking_identifier") == "Right lung tumour"]
    (c,) = [g for g in read_change_sr(current_sr) if g.get("tracking_identifier") == "Right lung tumour"]
    assert p["tracking_uid"] == c["tracking_uid"] == change.track.uid
    assert c["Volume change from prior"] == pytest.approx(float(row["Δ mL"]), abs=0.006)
    with open(out["csv"][0], newline="") as f:
        lesion, total = list(csv.DictReader(f))
    assert lesion["tracking_uid"] == change.track.uid and lesion["vdt"] == row["VDT"]
    assert total["response"] == resp.category


def test_screenshot_of_the_lesion_change_table(win, pair, qtbot, tmp_path):
    """docs/screenshot-lesion-change.png (with HOUNSFIELD_SCREENSHOTS=1; else a temporary file): the
    follow-up and the prior side by side on the tumour, the lesion table and the RECIST suggestion."""
    from PySide6.QtCore import Qt

    feat = win.features.changes
    if not feat.comparison() or not feat.comparison().changes:
        pytest.skip("needs the carried tumour of the test before")
    _click(qtbot, feat.panel.buttons["side"])
    m = win.model
    follow_key, base_key = pair.followup_series_uid, pair.baseline_series_uid
    assert (m.viewports[0].series, m.viewports[1].series) == (follow_key, base_key)
    m.set_point(follow_key, pair.tumour_centre_followup)
    m.series[base_key].set_point(pair.tumour_centre_baseline)
    for key in (follow_key, base_key):
        m.series[key].set_window(-600, 1500)  # lung window
    feat.panel.set_status("Carried 1 segment(s) from the prior (rigid registration); fit or correct them on the "
                          "current study.")
    priors = getattr(win.features, "priors", None)
    if priors is not None:  # not part of this picture (the panel names the two studies)
        priors.dock.hide()
    win.browser_dock.hide()
    win.statusBar().clearMessage()
    for key in (follow_key, base_key):  # outlines: the tumour itself stays visible
        for ed in win.workspace.series[key].segmentations:
            ed.segmentation.set_style(display_mode="outline")
    win.resizeDocks([feat.dock], [760], Qt.Orientation.Horizontal)
    settle(qtbot, 200)
    # each view zoomed onto the tumour (its own place in each study)
    for slot, (_key, centre) in enumerate(((follow_key, pair.tumour_centre_followup),
                                          (base_key, pair.tumour_centre_baseline),
                                          (follow_key, pair.tumour_centre_followup))):
        view, vp = win.grid.views[slot], m.viewports[slot]
        vp.zoom = 5.0 if slot < 2 else 4.0
        view.update_scene()
        x0, x1, y0, y1 = view.pipeline.geometry.extent
        x, y = view.pipeline.geometry.from_lps(centre)[:2]
        vp.pan = (x - (x0 + x1) / 2, y - (y0 + y1) / 2)
        m.viewport_changed.emit(slot)
    settle(qtbot, 300)
    for v in win.grid.visible_views():
        v.render_now()
    qtbot.wait(150)
    docs = os.environ.get("HOUNSFIELD_SCREENSHOTS") == "1"
    out = (REPO / "docs" if docs else tmp_path) / "screenshot-lesion-change.png"
    assert win.screen().grabWindow(win.winId()).save(str(out))
    assert out.stat().st_size > 10000
    img = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(out))
    assert img.std() > 10  # not a blank capture
