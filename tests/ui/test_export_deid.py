"""Measure > Export in the real window on the brain MR: a de-identified key image holds none of the
patient's words in its pixels (read back with Debian's tesseract OCR, which reads them in the
same export without de-identification), and the export runs off the UI thread: the event loop keeps
ticking, keys pressed meanwhile leave the export as it was asked for, and an unwritable folder is
one sentence in the message bar with nothing lost."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import QDialogButtonBox

from tests.conftest import data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import clear_measurements, display_of, open_study_window, qt_pos, ready_window, settle

pytestmark = pytest.mark.gui

IDENTITY = {"patient_name": "TESTPERSON^JANE", "patient_id": "MRN4711X", "patient_birth_date": "19510823",
            "study_date": "19990317", "accession_number": "ACC9932"}
SECRETS = ("TESTPERSON", "JANE", "MRN4711", "4711X", "19990317", "1999-03-17", "19510823", "ACC9932")


@pytest.fixture(scope="module")
def mr_window(qapp, tmp_path_factory):
    needs_display()
    win = open_study_window(qapp, tmp_path_factory.mktemp("mr"), data_path("brain-mr-t1"), size=(1400, 900))
    state = win.model.active_state
    # the public data is de-identified already: give it a patient to take out again
    state.volume.source = replace(state.volume.source, **IDENTITY)
    yield win
    win.features.measure.exporter.wait()
    win.close()


@pytest.fixture
def win(mr_window, qtbot):
    m = mr_window.model
    ready_window(mr_window, qtbot, "1x1")
    clear_measurements(mr_window)
    mr_window.message_bar.dismiss()
    state = m.active_state
    nk, nj, ni = state.volume.shape
    m.set_point(state.key, state.volume.index_to_lps([ni // 2, nj // 2, nk // 2]))
    for view in mr_window.grid.slice_views:
        view._dirty = True
        view.request_render()
    settle(qtbot, 100)
    return mr_window


def draw_ruler(qtbot, win):
    view = win.grid.slice_views[0]
    vol = view.state.volume
    k = int(round(vol.lps_to_index(view.state.point)[2]))
    a, b = vol.index_to_lps([180, 256, k]), vol.index_to_lps([330, 256, k])
    win.model.set_tool("measure_length")
    pa, pb = qt_pos(view, a).toPoint(), qt_pos(view, b).toPoint()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=pa)
    for t in np.linspace(0, 1, 6)[1:]:
        qtbot.mouseMove(view, QPoint(int(round(pa.x() + t * (pb.x() - pa.x()))),
                                     int(round(pa.y() + t * (pb.y() - pa.y())))))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=pb)
    settle(qtbot)
    win.model.set_tool("wl")
    (m,) = win.features.measure.controller.measurements()
    m.label = "left lesion"  # what a radiologist might type
    win.features.measure.controller.updated(view.state.key, m)
    return view, m


def start_export(qtbot, win, folder, deidentify: bool, images: bool = False):
    """Measure > Export..., the folder typed in, de-identification (and the series' images) set with the
    mouse, Export clicked."""
    win.features.measure.actions["export"].trigger()
    dialog = win.features.measure.export_dialog
    qtbot.waitExposed(dialog)
    qtbot.keyClicks(dialog.folder, str(folder))
    if dialog.deidentify.isChecked() != deidentify:
        qtbot.mouseClick(dialog.deidentify, Qt.MouseButton.LeftButton, pos=QPoint(8, dialog.deidentify.height() // 2))
    assert dialog.deidentify.isChecked() == deidentify
    assert dialog.clear_text.isChecked() == deidentify  # clearing typed words follows de-identification
    assert dialog.warning.isVisible() != deidentify  # the typed label going out is said
    assert dialog.images.isEnabled() and not dialog.images.isChecked()  # a DICOM series; off unless asked
    if images:
        qtbot.mouseClick(dialog.images, Qt.MouseButton.LeftButton, pos=QPoint(8, dialog.images.height() // 2))
        assert dialog.images.isChecked()
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)


def wait_export(qtbot, win):
    qtbot.waitUntil(lambda: not win.features.measure.exporter.busy, timeout=120000)
    settle(qtbot)


def ocr(rgb: np.ndarray, tmp) -> str:
    """Text tesseract reads in an RGB image (dark-on-light, doubled in size), spaces removed, upper case."""
    from viewer.core.io.keyimages import write_png

    grey = 255 - rgb.max(axis=2)
    big = np.repeat(np.repeat(grey, 2, axis=0), 2, axis=1)
    path = os.path.join(tmp, f"ocr-{len(os.listdir(tmp))}.png")
    write_png(path, np.stack([big] * 3, axis=-1))
    run = subprocess.run(["tesseract", path, "stdout", "--psm", "11"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return re.sub(r"\s+", "", run.stdout).upper()


def fuzzy_in(secret: str, seen: str) -> bool:
    """Whether OCR text holds ``secret`` give or take a misread character in four ("4" read "A")."""
    n, slack = len(secret), len(secret) // 4
    return any(sum(a != b for a, b in zip(secret, seen[i:i + n])) <= slack for i in range(len(seen) - n + 1))


def test_deidentified_key_image_holds_no_identity_in_its_pixels(win, qtbot, tmp_path):
    if shutil.which("tesseract") is None:
        pytest.skip("needs Debian's tesseract-ocr (packaging/setup.sh installs it)")
    from viewer.core.io.keyimages import read_png

    view, ruler = draw_ruler(qtbot, win)
    start_export(qtbot, win, tmp_path / "plain", deidentify=False)
    wait_export(qtbot, win)
    plain = win.features.measure.exporter.last
    start_export(qtbot, win, tmp_path / "deid", deidentify=True)
    wait_export(qtbot, win)
    deid = win.features.measure.exporter.last
    assert deid["png"][0].startswith(str(tmp_path / "deid"))

    # the OCR reads the patient's words where they are: the test could fail
    seen = ocr(read_png(plain["png"][0]), tmp_path)
    assert fuzzy_in("TESTPERSON", seen) and fuzzy_in("MRN4711X", seen) and fuzzy_in("1999-03-17", seen), seen
    assert pydicom.dcmread(plain["sc"][0]).BurnedInAnnotation == "YES"

    # and finds none of them in the de-identified key image, PNG and Secondary Capture alike
    png = read_png(deid["png"][0])
    sc = pydicom.dcmread(deid["sc"][0])
    assert sc.BurnedInAnnotation == "NO" and sc.PatientName == "ANONYMOUS"
    for image in (png, sc.pixel_array):
        seen = ocr(image, tmp_path)
        assert not [s for s in SECRETS + ("ID:",) if fuzzy_in(s, seen)], seen
        assert not fuzzy_in("LEFTLESION", seen)  # nor the typed label
        assert "W:" in seen or "POS:" in seen, seen  # what the reader needs is still there
    # the ruler is drawn in it
    x, y = display_of(view, 0.5 * (ruler.points[0] + ruler.points[1]))
    row = png.shape[0] - 1 - int(round(y))
    patch = png[row - 2:row + 3, int(round(x)) - 2:int(round(x)) + 3].reshape(-1, 3).astype(int)
    assert any(px.max() - px.min() > 100 for px in patch)
    # the window shows the patient again, and the label: capturing changed nothing
    assert "TESTPERSON" in view.corners.text("top_left") and ruler.label == "left lesion"


def test_a_deidentified_export_with_the_images_opens_on_its_own(win, qtbot, tmp_path):
    """Measure > Export with the series' images ticked: the de-identified images go into images/, the
    exported folder opens as a study of its own (ANONYMOUS, new UIDs, the same pixels) and its SR's
    evidence is that series, not the original."""
    from viewer.core.loader import load

    draw_ruler(qtbot, win)
    start_export(qtbot, win, tmp_path / "deid", deidentify=True, images=True)
    wait_export(qtbot, win)
    out = win.features.measure.exporter.last
    vol = win.model.active_state.volume
    assert len(out["images"]) == vol.shape[0] and not win.message_bar.isVisible()
    back = load(str(tmp_path / "deid" / "images"))
    assert back.source.patient_name == "ANONYMOUS" and back.source.patient_id.startswith("ANON-")
    assert back.source.series_instance_uid != vol.source.series_instance_uid
    assert np.array_equal(back.array, vol.array)
    sr_ds = pydicom.dcmread(out["sr"][0])
    evidence = {s.SeriesInstanceUID for st in sr_ds.CurrentRequestedProcedureEvidenceSequence
                for s in st.ReferencedSeriesSequence}
    assert evidence == {back.source.series_instance_uid}
    files = [f for f in os.listdir(tmp_path / "deid" / "images")]
    assert all(re.fullmatch(r"IM-\d{4}\.dcm", f) for f in files)  # no identity in the file names either


def test_export_runs_off_the_ui_thread(win, qtbot, tmp_path):
    from viewer.core.io.sr import read_sr

    view, ruler = draw_ruler(qtbot, win)
    state = view.state
    seg, _ed, segment = win.features.segments.controller.target(state)
    k = state.volume.shape[0] // 2
    seg.layers[0][k - 5:k + 5, 200:260, 200:260] = segment.number  # so that a DICOM SEG is written too
    win.features.measure.controller.select(ruler.uid)
    ticks = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(win.features.measure.exporter.busy))
    timer.start()
    start_export(qtbot, win, tmp_path, deidentify=False)
    busy_after_click = win.features.measure.exporter.busy
    qtbot.keyClick(win, Qt.Key.Key_Delete)  # the selected ruler goes, while the export runs
    still_busy = win.features.measure.exporter.busy
    wait_export(qtbot, win)
    timer.stop()
    assert busy_after_click and still_busy  # the click returned while the export was running
    assert sum(ticks) >= 3  # the event loop kept ticking during the export
    assert win.features.measure.controller.measurements() == []  # the key acted in the window...
    out = win.features.measure.exporter.last
    assert [m.kind for m in read_sr(out["sr"][0])] == ["length"]  # ...and not on the export under way
    assert out["seg"] and win.features.measure.actions["export"].isEnabled()
    assert not win.grid.slice_views[0].corners.hidden


def test_export_to_an_unwritable_folder_is_one_sentence(win, qtbot, tmp_path):
    view, ruler = draw_ruler(qtbot, win)
    folder = tmp_path / "readonly"
    folder.mkdir()
    for name in ("measurements-segmentation.dcm", "measurements.dcm", "measurements.csv"):
        (folder / name).mkdir()  # a file that cannot be written, even by root
    folder.chmod(0o555)
    try:
        start_export(qtbot, win, folder, deidentify=True)
        wait_export(qtbot, win)
    finally:
        folder.chmod(0o755)
    text = win.message_bar.text()
    assert text.startswith("The measurements could not be exported") and str(folder) in text, text
    assert text.endswith(".") and ". " not in text.replace(str(folder), "") and "Traceback" not in text
    assert win.features.measure.controller.measurements() == [ruler] and ruler.label == "left lesion"  # nothing lost
    assert win.features.measure.actions["export"].isEnabled()


def test_segmentation_export_runs_off_the_ui_thread(win, qtbot, tmp_path):
    from PySide6.QtWidgets import QApplication

    state = win.model.active_state
    seg, _ed, segment = win.features.segments.controller.target(state)
    k = state.volume.shape[0] // 2
    seg.layers[0][k - 20:k + 20, 150:350, 150:350] = segment.number
    painted = int((seg.layers[0] == segment.number).sum())
    path = tmp_path / "segmentation.seg.dcm"

    def answer_the_file_dialog():
        dialog = QApplication.activeModalWidget()
        dialog.selectFile(str(path))
        dialog.accept()

    QTimer.singleShot(300, answer_the_file_dialog)
    ticks = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(win.features.measure.exporter.busy))
    timer.start()
    win.features.segments.actions["export"].trigger()  # Segment > Export...: returns once the file is chosen
    busy_after_click = win.features.measure.exporter.busy
    seg.layers[0][:] = 0  # an edit while the file is written does not reach it
    wait_export(qtbot, win)
    timer.stop()
    assert busy_after_click and sum(ticks) >= 3
    assert not win.message_bar.text(), win.message_bar.text()
    ds = pydicom.dcmread(path)
    assert int(ds.pixel_array.astype(bool).sum()) == painted
    assert "Exported 1 file to" in win.statusBar().currentMessage()


def test_the_dialog_remembers_whether_to_deidentify(win, qtbot, tmp_path):
    """Identified first (a record SR must attach to its study in PACS); then the last choice is kept."""
    draw_ruler(qtbot, win)
    win.settings.remove("export/deidentify")
    for deidentify in (True, False):
        start_export(qtbot, win, tmp_path / f"out-{deidentify}", deidentify=deidentify)
        wait_export(qtbot, win)
        win.features.measure.actions["export"].trigger()
        dialog = win.features.measure.export_dialog
        qtbot.waitExposed(dialog)
        assert dialog.deidentify.isChecked() is deidentify
        dialog.reject()
        settle(qtbot)
