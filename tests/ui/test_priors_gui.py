"""Priors, hanging protocols and cine in the real window (issue 19), on the documented synthetic
follow-up of the real chest CT (``tests/followup.py``: one synthetic patient, baseline and follow-up
120 days apart, BodyPartExamined CHEST), cropped small (128 x 128 x 40) to stay quick."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.followup import TUMOUR_SLICES, cached_followup
from tests.ui.helpers import pixels_at, settle, wait_loaded

WAIT = 60000


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from tests.conftest import data_path

    data_path("chest-ct")
    return cached_followup(tmp_path_factory, stride=4, slices=TUMOUR_SLICES)


@pytest.fixture
def indexed(pair, tmp_path, monkeypatch):
    """Both studies in the local index (as after opening them once); a private config dir for the
    reader's hanging protocols."""
    from viewer.core.loader import scan

    monkeypatch.setenv("HOUNSFIELD_CONFIG_DIR", str(tmp_path / "config"))
    scan(pair.baseline_dir)
    scan(pair.followup_dir)
    return pair


def open_followup(win, qtbot, pair):
    win.open_path(str(pair.followup_dir))
    wait_loaded(qtbot, win)
    ctl = win.features.priors.controller
    qtbot.waitUntil(lambda: ctl.studies is not None, timeout=WAIT)
    settle(qtbot, 100)
    return ctl


def grey(hu, window):
    c, w = window
    return np.clip((np.asarray(hu, float) - (c - w / 2)) / w, 0, 1) * 255


def check_pixels(win, slot):
    """The view's captured pixels at voxel centres of its slice are its own series' values in its window."""
    view, state = win.grid.views[slot], win.model.state(slot)
    vol = state.volume
    i0, j0, k = (int(round(x)) for x in vol.lps_to_index(state.point))
    pts, expected = [], []
    for j in range(20, 110, 17):
        for i in range(20, 110, 17):
            if abs(i - i0) < 3 or abs(j - j0) < 3:
                continue  # the crosshair lines
            pts.append(vol.index_to_lps([i, j, k]))
            expected.append(vol.real_values(np.s_[k, j, i]))
    image = view.capture()
    got = pixels_at(image, view, pts)[:, 0].astype(float)
    want = grey(expected, state.window)
    err = np.abs(got - want)  # interpolated across a voxel's edge, a display pixel may differ at a sharp edge
    assert np.median(err) <= 4 and np.mean(err <= 12) >= 0.9, (slot, err)
    return np.asarray(expected, float)


def test_priors_listed_compare_side_by_side_and_hanging(make_window, qtbot, indexed):
    pair = indexed
    win = make_window("2x2", size=(1500, 900))
    ctl = open_followup(win, qtbot, pair)
    m = win.model
    # on open: the single-CT rule (the reader's 2x2 kept, standard planes); the priors are listed by date
    assert ctl.applied.name == "Single CT" and m.layout == "2x2"
    assert [vp.plane for vp in m.viewports] == ["axial", "coronal", "sagittal", "3d"]
    panel = win.features.priors.panel
    assert win.features.priors.dock.isVisible()
    assert panel.tree.topLevelItemCount() == 1
    head = panel.tree.topLevelItem(0)
    assert head.text(0) == "2007-02-08  (4 months earlier)" and head.childCount() == 1
    assert panel.selected().study_uid == pair.baseline_study_uid
    assert "1 other study of patient HF-SYN-CHEST-001" in panel.title.text()

    qtbot.mouseClick(panel.compare_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(m.series) == 2 and not win.session.jobs, timeout=WAIT)
    qtbot.waitUntil(lambda: ctl.applied.name == "CT chest with prior", timeout=WAIT)
    settle(qtbot, 200)
    cur, prior = ctl.current_key, ctl.keys()["prior"]
    assert m.series[prior].volume.source.study_instance_uid == pair.baseline_study_uid
    assert m.layout == "1x3"
    assert [(vp.series, vp.plane) for vp in m.viewports[:3]] == [(cur, "axial"), (prior, "axial"), (cur, "coronal")]
    assert m.series[cur].preset == "Lung" and m.series[prior].window == (-600.0, 1500.0)
    assert panel.protocol_label.text() == "Hanging protocol: CT chest with prior"
    # both views show their own series' pixels, in the lung window
    a, b = check_pixels(win, 0), check_pixels(win, 1)
    assert np.abs(a - b).mean() > 20  # two different studies (moved, deformed, grown, new noise)


def test_saved_layout_is_applied_at_the_next_open(make_window, qtbot, indexed):
    from viewer.core import hanging

    pair = indexed
    win = make_window("2x2")
    ctl = open_followup(win, qtbot, pair)
    m = win.model
    m.set_plane(0, "sagittal")
    m.set_plane(2, "axial")
    m.set_layout("1x3")
    m.set_active(0)
    win.grid.views[0].setFocus()
    qtbot.keyClick(win.grid.views[0], Qt.Key.Key_2)  # the Lung preset, by its key
    settle(qtbot)
    assert m.series[ctl.current_key].preset == "Lung"
    path = win.features.priors.save_protocol("My chest CT")
    assert path is not None and path.parent == hanging.user_dir()

    again = make_window("2x2")
    ctl2 = open_followup(again, qtbot, pair)
    qtbot.waitUntil(lambda: ctl2.applied is not None and ctl2.applied.user, timeout=WAIT)
    m2 = again.model
    assert ctl2.applied.name == "My chest CT" and m2.layout == "1x3"
    assert [vp.plane for vp in m2.viewports[:3]] == ["sagittal", "coronal", "axial"]
    assert m2.series[ctl2.current_key].window == (-600.0, 1500.0)


def test_cine_plays_and_stops_with_space(make_window, qtbot, indexed):
    pair = indexed
    win = make_window("1x1")
    open_followup(win, qtbot, pair)
    m, player = win.model, win.features.priors.cine
    view = win.grid.views[0]
    state = m.state(0)
    nk = state.volume.shape[0]
    view.setFocus()
    qtbot.waitUntil(view.hasFocus, timeout=3000)

    def k():
        return int(round(state.volume.lps_to_index(state.point)[2]))

    player.fps_box.setValue(40)
    assert player.timer.interval() == 25
    player.fps_box.setValue(30)
    assert player.timer.interval() == 33
    player.mode_box.setCurrentIndex(1)  # Bounce
    assert player.cine.mode == "bounce"
    # three slices before the end of the stack in the playing direction
    m.step(0, 1000)
    end = k()
    m.step(0, -3)
    before = k()
    qtbot.keyClick(view, Qt.Key.Key_Space)
    assert player.playing and player.action.isChecked()
    seen = []
    qtbot.waitUntil(lambda: seen.append(k()) or player.frames >= 8, timeout=10000)
    assert end in seen and before != k()
    reached = seen.index(end)
    assert any(x != end for x in seen[reached:])  # it turned round at the end instead of stopping
    assert player.cine.direction == -1
    frames = player.frames
    qtbot.keyClick(view, Qt.Key.Key_Space)
    assert not player.playing and not player.action.isChecked()
    stopped = k()
    qtbot.wait(200)
    assert k() == stopped and player.frames == frames and 0 <= stopped < nk


def test_screenshot_of_a_comparison_with_the_prior(make_window, qtbot, tmp_path, tmp_path_factory, monkeypatch):
    """docs/screenshot-priors.png (with HOUNSFIELD_SCREENSHOTS=1, at full resolution; else a small
    temporary one): the follow-up beside its prior at the tumour, hung by the chest protocol, with the
    Priors panel listing the prior."""
    import os
    from pathlib import Path

    from viewer.core.loader import scan

    docs = os.environ.get("HOUNSFIELD_SCREENSHOTS") == "1"
    pair = cached_followup(tmp_path_factory, stride=1 if docs else 4, slices=TUMOUR_SLICES)
    monkeypatch.setenv("HOUNSFIELD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path / "data"))  # an index of this pair only
    scan(pair.baseline_dir)
    win = make_window("2x2", size=(1600, 900))
    ctl = open_followup(win, qtbot, pair)
    assert [s.study_uid for s in ctl.priors] == [pair.baseline_study_uid]
    win.features.priors.panel.compare_selected()
    qtbot.waitUntil(lambda: ctl.applied is not None and ctl.applied.name == "CT chest with prior"
                    and not win.session.jobs, timeout=WAIT)
    m = win.model
    m.set_point(ctl.current_key, pair.tumour_centre_followup)
    m.set_point(ctl.keys()["prior"], pair.tumour_centre_baseline)  # scrolled there by hand (no registration)
    settle(qtbot, 150)
    for v in win.grid.visible_views():
        v.render_now()
    qtbot.wait(100)
    out = (Path(__file__).resolve().parents[2] / "docs" if docs else tmp_path) / "screenshot-priors.png"
    assert win.screen().grabWindow(win.winId()).save(str(out))


def test_brain_mr_t1_flair_protocol_opens_the_flair_beside_the_t1(make_window, qtbot, tmp_path, brain_mr_dir,
                                                                     monkeypatch):
    """A brain MR study with a T1 and a FLAIR series (three real T1 slices written as both series, with
    BodyPartExamined BRAIN): opening the T1 hangs the study by the T1/FLAIR protocol, which opens the
    FLAIR itself and shows it beside the T1 in axial, the T1's coronal third."""
    import pydicom

    monkeypatch.setenv("HOUNSFIELD_CONFIG_DIR", str(tmp_path / "config"))
    study, frame = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    folder = tmp_path / "brain"
    folder.mkdir()
    uids = {}
    for desc, number in (("t1_mpr_tra", 2), ("t2_flair_tra", 3)):
        uids[desc] = series = pydicom.uid.generate_uid()
        for n, path in enumerate(sorted(brain_mr_dir.iterdir())[58:61]):
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
            ds.SeriesDescription, ds.SeriesNumber, ds.BodyPartExamined = desc, number, "BRAIN"
            ds.save_as(folder / f"{number}-{n}.dcm")
    win = make_window("2x2")
    win.open_path(str(folder), uids["t1_mpr_tra"])
    wait_loaded(qtbot, win)
    ctl, m = win.features.priors.controller, win.model
    qtbot.waitUntil(lambda: len(m.series) == 2 and not win.session.jobs, timeout=WAIT)
    qtbot.waitUntil(lambda: m.viewports[1].series != ctl.current_key, timeout=WAIT)
    settle(qtbot, 100)
    assert ctl.applied.name == "Brain MR T1 / FLAIR" and m.layout == "1x3"
    described = [(m.series[vp.series].volume.source.series_description, vp.plane) for vp in m.viewports[:3]]
    assert described == [("t1_mpr_tra", "axial"), ("t2_flair_tra", "axial"), ("t1_mpr_tra", "coronal")]
