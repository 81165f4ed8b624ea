"""Click to segment on an MR image file without a modality (brain-tumor-mr brain1, a T1 NRRD, read as
"OT"), in the real window with real mouse events: the first click asks whether the image is CT or MR
(lesion segmentation takes only those); Cancel changes nothing; MR lets the click segment the tumour
component with both MR networks, and later clicks do not ask again.  Before, every click said "cannot run
on this image: it accepts CT/MR images, not OT" and a NIfTI or NRRD MR could not be segmented at all.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.conftest import data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import open_study_window, qt_pos, settle

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def mr_window(qapp, tmp_path_factory):
    needs_display()
    win = open_study_window(qapp, tmp_path_factory.mktemp("nrrd"), data_path("brain-tumor-mr", "brain1_image.nrrd"),
                            size=(1400, 900))
    yield win
    win.close()


class Answer:
    """Clicks ``text``'s button on the modality question when it shows; records every question."""

    def __init__(self, text: str):
        self.text, self.asked = text, []

    def arm(self, tries: int = 200) -> None:
        QTimer.singleShot(25, lambda: self._look(tries))

    def _look(self, tries: int) -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox) and box.objectName() == "modality_question":
            self.asked.append(box.text())
            button = next(b for b in box.buttons() if b.text().replace("&", "") == self.text
                          or (self.text == "Cancel" and box.buttonRole(b) == QMessageBox.ButtonRole.RejectRole))
            button.click()
        elif tries:
            QTimer.singleShot(25, lambda: self._look(tries - 1))


def test_a_click_on_an_mr_file_without_a_modality_asks_ct_or_mr_once(mr_window, qtbot):
    from scipy import ndimage

    from plugins.lesion_segmentation.data import interior_point
    from viewer.core.formats import read_volume

    win = mr_window
    state = win.model.active_state
    vol = state.volume
    assert vol.modality == "OT"
    label = read_volume(str(data_path("brain-tumor-mr", "brain1_label.nrrd"))).array > 0
    lab, _ = ndimage.label(label)
    sizes = np.bincount(lab.ravel())[1:]
    small = lab == 1 + int(np.argsort(sizes)[-2])  # the 2.4 mL component
    k, j, i = (int(round(c)) for c in interior_point(small, vol.spacing[::-1]))
    lps = vol.index_to_lps([float(i), float(j), float(k)])
    win.model.set_point(state.key, lps)
    axial = win.grid.slice_views[0]
    assert axial.plane == "axial"
    clicker = win.features.segments.click
    win.model.set_tool("seg_click")
    clicker.widgets["method"].setCurrentText("network")
    qtbot.waitUntil(lambda: clicker.run is None, timeout=120000)  # the warm-up
    settle(qtbot, 50)

    cancel = Answer("Cancel")
    cancel.arm()
    qtbot.mouseClick(axial, Qt.MouseButton.LeftButton, pos=qt_pos(axial, lps).toPoint())
    assert cancel.asked and "does not say whether it is MR or CT" in cancel.asked[0]
    assert not clicker.clicks and vol.modality == "OT" and "CT or MR" in clicker.last_message

    mr = Answer("MR")
    mr.arm()
    qtbot.mouseClick(axial, Qt.MouseButton.LeftButton, pos=qt_pos(axial, lps).toPoint())
    assert len(mr.asked) == 1 and vol.modality == "MR"
    qtbot.waitUntil(lambda: not clicker.busy, timeout=120000)
    assert clicker.segment is not None, clicker.last_message
    mask = clicker.editable.segmentation.mask(clicker.segment)
    dice = 2 * (mask & small).sum() / (mask.sum() + small.sum())
    assert dice > 0.6 and mask[k, j, i], dice
    assert "whole-tumour" in clicker.segment.algorithm_name  # MR: the whole-tumour network drew it
    # the status line says so beside the volume and what to do next (the plugin's note used to replace it)
    assert "after 1 click (network whole-tumour" in clicker.last_message and "Enter keeps it" in clicker.last_message

    again = Answer("MR")  # a positive click beside the first: no question this time
    again.arm(tries=40)
    qtbot.mouseClick(axial, Qt.MouseButton.LeftButton, pos=qt_pos(axial, lps).toPoint())
    qtbot.waitUntil(lambda: not clicker.busy, timeout=120000)
    settle(qtbot, 1100)  # longer than the answer's watch
    assert not again.asked and len(clicker.clicks) == 2
    qtbot.keyClick(axial, Qt.Key.Key_Return)  # accept
    assert clicker.segment is None
    seg = win.features.segments.controller.segmentation()
    assert seg.by_name("Lesion") is not None
