"""Query PACS for priors in the real window, against the real Orthanc: a follow-up of the brain MR's
patient opened from disk finds the PACS's study, retrieves it by double-click and compares with it."""

from __future__ import annotations

import pydicom
import pytest
from PySide6.QtCore import Qt

from tests.pacs.conftest import data_dir, orthanc, pacs_env  # noqa: F401 - the real Orthanc fixtures
from tests.ui.helpers import settle, wait_loaded

WAIT = 60000


@pytest.fixture
def followup(tmp_path, brain_mr_dir):
    """Three slices of the brain MR as a later study of the same patient (new study, series, frame)."""
    out = tmp_path / "followup"
    out.mkdir()
    study, series, frame = (pydicom.uid.generate_uid() for _ in range(3))
    for n, path in enumerate(sorted(brain_mr_dir.iterdir())[58:61]):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.StudyDate = "19950310"
        ds.save_as(out / f"{n}.dcm")
    return out


def test_query_pacs_for_priors_retrieve_and_compare(orthanc, data_dir, make_window, qtbot, followup):  # noqa: F811
    win = make_window("2x2")
    win.open_path(str(followup))
    wait_loaded(qtbot, win)
    ctl, panel = win.features.priors.controller, win.features.priors.panel
    qtbot.waitUntil(lambda: ctl.studies is not None, timeout=WAIT)
    assert ctl.priors == [] and panel.tree.topLevelItemCount() == 0
    qtbot.mouseClick(panel.pacs_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(ctl.remote), timeout=WAIT)
    head = panel.tree.topLevelItem(0)
    assert head.text(0) == "On PACS: 1994-09-04  (6 months earlier)" and head.childCount() == 1
    item = head.child(0)
    st = item.data(0, Qt.ItemDataRole.UserRole)
    assert st.study_uid == orthanc.brain.study_uid and not st.local and st.node == "orthanc"
    assert not panel.compare_button.isEnabled()  # on the PACS only: retrieve first

    pacs = win.features.pacs.controller
    with qtbot.waitSignal(pacs.retrieve_ended, timeout=WAIT) as ended:
        pos = panel.tree.visualItemRect(item).center()
        qtbot.mouseClick(panel.tree.viewport(), Qt.MouseButton.LeftButton, pos=pos)  # a double-click: press,
        qtbot.mouseDClick(panel.tree.viewport(), Qt.MouseButton.LeftButton, pos=pos)  # release, double-click
    assert ended.args[0] == ""
    qtbot.waitUntil(lambda: [s.study_uid for s in ctl.priors] == [orthanc.brain.study_uid], timeout=WAIT)
    assert panel.tree.topLevelItem(0).text(0) == "1994-09-04  (6 months earlier)"
    assert len(win.model.series) == 1  # retrieved, not opened over the current study

    qtbot.mouseClick(panel.compare_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "prior" in ctl.keys() and not win.session.jobs, timeout=WAIT)
    settle(qtbot, 100)
    m = win.model
    assert ctl.applied.name == "MR with prior" and m.layout == "1x3"
    prior = m.series[ctl.keys()["prior"]]
    assert prior.volume.source.study_instance_uid == orthanc.brain.study_uid and prior.volume.shape[0] == 120
    assert [vp.plane for vp in m.viewports[:3]] == ["axial", "axial", "coronal"]
