"""The reading loop in the real window, with the mouse and the keyboard (issue 12): open the chest CT,
measure (a ruler), segment (the brush), quit (answering the question about the segmentation never
exported), reopen (the measurement is back, the segmentation is offered and restored), export
(SEG, SR and CSV from Measure > Export), re-import (the exported SEG opened as a file: the same
voxels) and de-identify (no patient name or ID in any exported file's bytes).

The study is a copy of the chest CT with a patient name and ID planted (the original has none), so
that the de-identification check can fail.  ``HOUNSFIELD_WORKFLOW_SHOT=PATH`` saves a screenshot
of the reopened window there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.conftest import data_path
from tests.ui.helpers import settle, wait_loaded
from tests.ui.test_saved_work import answer_dialogs, brush, panel_rows, quit_with_keys, ruler

pytestmark = pytest.mark.gui

NAME, PATIENT_ID = "Workflow^Tessa", "HF4711X"


@pytest.fixture
def named_ct(tmp_path) -> Path:
    """The chest CT with a patient name and ID (written with pydicom, pixels untouched)."""
    import pydicom

    src = data_path("chest-ct")
    out = tmp_path / "chest-ct"
    out.mkdir()
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(f)
        ds.PatientName, ds.PatientID = NAME, PATIENT_ID
        ds.save_as(out / f.name)
    return out


def export_with_the_dialog(qtbot, win, folder: Path, deidentify: bool) -> dict[str, list[Path]]:
    """Measure > Export with the panel's button, the folder typed, de-identification chosen with the
    mouse; waits for the background export.  Returns the files written, by suffix."""
    qtbot.mouseClick(win.features.measure.panel.buttons["Export..."], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: win.features.measure.export_dialog is not None
                    and win.features.measure.export_dialog.isVisible(), timeout=5000)
    dialog = win.features.measure.export_dialog
    qtbot.keyClicks(dialog.folder, str(folder))
    if dialog.deidentify.isChecked() != deidentify:
        qtbot.mouseClick(dialog.deidentify, Qt.MouseButton.LeftButton, pos=dialog.deidentify.rect().center())
    assert dialog.deidentify.isChecked() == deidentify
    qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.Ok), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: folder.is_dir() and not win.features.measure.exporter.busy, timeout=60000)
    settle(qtbot, 50)
    assert not win.message_bar.isVisible(), win.message_bar.label.text()
    files: dict[str, list[Path]] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            files.setdefault(p.suffix, []).append(p)
    return files


def test_open_measure_segment_quit_reopen_export_reimport_deidentify(make_window, qtbot, named_ct, tmp_path,
                                                                     monkeypatch):
    import pydicom

    from viewer.core.io.seg_dicom import is_dicom_seg, read_dicom_seg
    from viewer.core.io.sr import read_sr

    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path / "data"))  # journals and measurements of this test
    # open
    win = make_window()
    win.open_path(str(named_ct))
    wait_loaded(qtbot, win)
    win.model.set_active(0)
    state = win.model.active_state
    assert state.volume.source.patient_name.replace(" ", "^").startswith("Workflow")
    win.model.set_point(state.key, state.volume.index_to_lps([256, 256, 70]))
    settle(qtbot)
    # measure: a ruler across the right-lung tumour, with the mouse
    ruler(qtbot, win, [140, 240, 70], [190, 265, 70])
    (m,) = win.features.measure.controller.measurements()
    assert m.kind == "length" and m.values["length_mm"] > 20
    # segment: the brush, with the mouse
    brush(qtbot, win, [200, 300, 70], [260, 300, 70])
    painted = win.features.segments.controller.segmentation().layers[0].copy()
    assert painted[70].sum() > 100 and painted.sum() == painted[70].sum()
    # quit: Ctrl+Q asks about the segmentation never exported; keep it for later
    seen = answer_dialogs(qtbot, ["quit_keep"])
    quit_with_keys(qtbot, win)
    assert seen and "never exported" in seen[0][0] and not win.isVisible()

    # reopen: the measurement is back, the segmentation is offered and restored (the same voxels)
    win = make_window()
    win.open_path(str(named_ct))
    wait_loaded(qtbot, win)
    win.model.set_active(0)
    state = win.model.active_state
    assert [x.uid for x in win.features.measure.controller.measurements()] == [m.uid]
    assert panel_rows(win)[0] == "Length"
    bar = win.features.segments.restore_bar
    qtbot.waitUntil(bar.isVisible, timeout=5000)
    qtbot.mouseClick(bar.restore_button, Qt.MouseButton.LeftButton)
    seg = win.features.segments.controller.segmentation()
    assert seg is not None and np.array_equal(seg.layers[0], painted)
    win.model.set_point(state.key, state.volume.index_to_lps([190, 280, 70]))
    settle(qtbot, 300)
    win.grid.slice_views[0].update_scene()
    assert len(win.features.measure.controller.overlays[0].drawn) == 1  # the ruler is drawn on its slice
    shot = os.environ.get("HOUNSFIELD_WORKFLOW_SHOT") or str(tmp_path / "workflow.png")
    pixmap = win.screen().grabWindow(win.winId())
    assert not pixmap.isNull() and pixmap.save(shot)

    # export: SEG, SR and CSV from Measure > Export (identified)
    out = export_with_the_dialog(qtbot, win, tmp_path / "export", deidentify=False)
    segs = [p for p in out[".dcm"] if is_dicom_seg(p)]
    srs = [p for p in out[".dcm"] if p not in segs and pydicom.dcmread(p, stop_before_pixels=True).Modality == "SR"]
    assert len(segs) == 1 and len(srs) == 1 and out.get(".csv")
    (back,) = read_sr(srs[0])
    assert back.kind == "length" and back.values["length_mm"] == pytest.approx(m.values["length_mm"], rel=1e-6)
    assert NAME.encode() in srs[0].read_bytes()  # (identified: so the check below can fail)
    # re-import: the exported SEG opened as a file (Ctrl+Shift+O) comes back on the open series, voxel for voxel
    answer_dialogs(qtbot, [segs[0]])
    qtbot.keyClick(win.grid.slice_views[0], Qt.Key.Key_O,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: len(state.open_series.segmentations) == 2, timeout=10000)
    again = state.open_series.segmentations[-1].segmentation
    assert [s.name for s in again.segments] == [s.name for s in seg.segments]
    for a, b in zip(seg.segments, again.segments):
        assert np.array_equal(seg.mask(a), again.mask(b))
    assert np.array_equal(read_dicom_seg(str(segs[0]), state.volume).layers[0] > 0, painted > 0)

    # de-identify: no patient name or ID in any exported file's bytes (SEG, SR, CSV, JSON, key images)
    deid = export_with_the_dialog(qtbot, win, tmp_path / "deid", deidentify=True)
    files = [p for ps in deid.values() for p in ps]
    assert {".dcm", ".csv"} <= set(deid) and len(files) >= 4
    for p in files:
        data = p.read_bytes()
        for word in (NAME, "Workflow", "Tessa", PATIENT_ID):
            assert word.encode() not in data, f"{word} in {p.name}"
            assert word.encode("utf-16-le") not in data, f"{word} in {p.name}"
    # everything is exported now: quitting asks nothing
    quit_with_keys(qtbot, win)
    assert not win.isVisible()
