"""Measure > Export: the dialog (folder, de-identification, the typed words), and the export
itself off the UI thread (Segment > Export uses the same thread and progress bar).

What is exported is fixed on the UI thread first (``prepare``): copies of the measurements and of
the segmentation, and the key image rendered from the view, without the identity corner text and
the typed labels when asked.  A ``QThread`` then writes the files with
``viewer.core.io.report.export_report`` while the window stays live: edits made meanwhile
change the reading, not the export under way.  Progress goes to the status bar; a failure is one
sentence in the message bar, and the reading is untouched.
"""

from __future__ import annotations

import copy
import errno
import os
from dataclasses import dataclass, field, replace

import numpy as np
from PySide6.QtCore import QEvent, QObject, QThread, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from viewer.core.errors import HounsfieldError
from viewer.logs import log
from viewer.ui.settings import read_bool


@dataclass
class ExportTask:
    """Everything one export writes, fixed at the moment it was asked for (no Qt, no live objects)."""

    folder: str
    measurements: list
    volume: object
    segmentation: object = None
    key_images: list = field(default_factory=list)
    deidentify: bool = False
    clear_free_text: bool = False
    live_segmentation: object = None  # the one being edited, which ``segmentation`` copies
    review: dict | None = None  # the AI review of each segment and detection (viewer.core.review.export_review)
    detections: list | None = None
    images: bool = False  # the series' own DICOM images too (into folder/images)
    what = "measurements"

    def run(self, progress=None) -> dict[str, list[str]]:
        from viewer.core.io.report import export_report

        return export_report(self.folder, self.measurements, self.volume, key_images=self.key_images,
                             segmentation=self.segmentation, deidentify=self.deidentify,
                             clear_free_text=self.clear_free_text, progress=progress, review=self.review,
                             detections=self.detections, images=self.images)

    def after(self, window, out: dict) -> None:
        exported(window, self, out)


@dataclass
class SegmentationExportTask:
    """Segment > Export: one segmentation as a DICOM SEG (.dcm) or label map, from a copy."""

    path: str
    volume: object
    segmentation: object
    live_segmentation: object = None
    what = "segmentation"

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path) or "."

    @classmethod
    def prepare(cls, window, path: str) -> SegmentationExportTask:
        segments = window.features.segments.controller
        seg, state = segments.segmentation(), segments.state()
        if seg is None or not seg.segments or state is None:
            raise HounsfieldError("There is no segmentation to export: draw or load one first.")
        return cls(path, state.volume, snapshot_segmentation(seg), seg)

    def run(self, progress=None) -> dict[str, list[str]]:
        if progress is not None:
            progress(0, 1, "segmentation")
        from viewer.core.segmentation import write_segmentation_file

        kind = "seg" if self.path.lower().endswith(".dcm") else "labelmap"
        return {kind: write_segmentation_file(self.segmentation, self.volume, self.path)}

    def after(self, window, out: dict) -> None:
        if unchanged(self.live_segmentation, self.segmentation):
            window.features.segments.controller.mark_exported(self.live_segmentation, self.path)


def snapshot_segmentation(seg):
    """A copy that later edits cannot reach (label maps copied, segments copied)."""
    if seg is None:
        return None
    out = copy.copy(seg)
    out.layers = [layer.copy() for layer in seg.layers]
    out.segments = [replace(s) for s in seg.segments]
    return out


def capture_key_image(ctl, view, hide_identity: bool, hide_labels: bool):
    """(rgb, orientation, source SOP UID, burnt-in identifying text?) of a 2D view; with
    ``hide_identity`` without the corner blocks that name the patient and study, with
    ``hide_labels`` without the labels typed on its measurements."""
    state = view.state
    shown = state.open_series.measurements if state is not None else []
    labels = [(m, m.label) for m in shown]
    try:
        if hide_identity:
            view.corners.hide(view.corners.IDENTITY)
        if hide_labels:
            for m, _ in labels:
                m.label = ""
        view.update_scene()  # the measurement overlay is redrawn by its scene hook
        rgb, orientation, sop = ctl.key_image(view)
    finally:
        for m, label in labels:
            m.label = label
        view.corners.hide(())
        view.update_scene()
        view.request_render()
    burnt = not hide_identity or (not hide_labels and any(label.strip() for _, label in labels))
    return rgb, orientation, sop, burnt


def prepare(window, folder: str, deidentify: bool = False, clear_free_text: bool | None = None,
            key_images: bool = True, source_images: bool = False) -> ExportTask:
    """Fix what an export of the active view's series will write (on the UI thread)."""
    ctl = window.features.measure.controller
    view = ctl.active_view()
    state = view.state
    if state is None:
        raise HounsfieldError("Open a series before exporting measurements.")
    clear = deidentify if clear_free_text is None else bool(clear_free_text)
    images = [capture_key_image(ctl, view, deidentify, clear)] if key_images else []
    segmentation = window.features.segments.controller.segmentation(state=state)
    from viewer.core.review import export_review

    editable = next((ed for ed in state.open_series.segmentations if ed.segmentation is segmentation), None)
    review, detections = export_review(state.open_series, editable)
    return ExportTask(folder, [copy.deepcopy(m) for m in ctl.measurements(state.key)], state.volume,
                      snapshot_segmentation(segmentation), images, deidentify, clear, segmentation, review, detections,
                      source_images)


def exported(window, task: ExportTask, out: dict) -> None:
    """After a successful export: the segmentation is in a file now, so quitting need not ask about
    it, unless it was edited while the export ran."""
    if out.get("seg") and unchanged(task.live_segmentation, task.segmentation):
        window.features.segments.controller.mark_exported(task.live_segmentation, out["seg"][0])
    for s in window.workspace:  # the AI results on the series exported go into the audit log (viewer.core.audit)
        if s.volume is task.volume:
            window.workspace.audit(s, exported=True)


def unchanged(live, copied) -> bool:
    """Whether a segmentation is still what its copy holds (not edited during the export)."""
    if live is None or copied is None:
        return False
    same = len(live.layers) == len(copied.layers) and all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(live.layers, copied.layers))
    return same and [s.name for s in live.segments] == [s.name for s in copied.segments]


def failure_sentence(exc: BaseException, folder: str, what: str = "measurements") -> str:
    """One sentence for the user: what went wrong and what to do."""
    if isinstance(exc, HounsfieldError):
        return str(exc)
    verb = "were" if what.endswith("s") else "was"
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return f"The {what} could not be exported: the disk holding {folder} is full; " \
                   "free some space or choose another folder."
        reason = (exc.strerror or type(exc).__name__).lower()
        return f"The {what} could not be exported: {folder} cannot be written to ({reason}); " \
               "choose another folder."
    return f"The {what} {verb} not exported ({type(exc).__name__}); the log file has the details."


class ExportThread(QThread):
    """Runs an ``ExportTask`` (or a ``SegmentationExportTask``); its signals arrive on the UI thread."""

    progressed = Signal(int, int, str)
    finished_ok = Signal(object)
    failed = Signal(str)

    def __init__(self, task, parent=None):
        super().__init__(parent)
        self.task = task

    def run(self) -> None:
        try:
            out = self.task.run(progress=lambda done, total, what: self.progressed.emit(done, total, what))
        except Exception as exc:  # every failure becomes one sentence; the traceback goes to the log
            log.exception("exporting %s failed", self.task.what)
            self.failed.emit(failure_sentence(exc, self.task.folder, self.task.what))
        else:
            self.finished_ok.emit(out)


class MeasureExporter(QObject):
    """The window's one export at a time: its thread, its progress bar and the menu action.
    Closing the window waits for a running export to finish writing."""

    def __init__(self, window, action=None):
        super().__init__(window)
        self.window = window
        window.installEventFilter(self)
        self.action = action
        self.thread: ExportThread | None = None
        self.bar = QProgressBar()
        self.bar.setFixedWidth(220)
        self.bar.setTextVisible(True)
        self.bar.hide()
        window.statusBar().addPermanentWidget(self.bar)
        self.last: dict | None = None  # the paths written by the last export that succeeded
        self.last_error = ""

    @property
    def busy(self) -> bool:
        return self.thread is not None

    def start(self, task) -> ExportThread:
        if self.busy:
            raise HounsfieldError("An export is already running; wait for it to finish.")
        thread = self.thread = ExportThread(task, self)
        thread.progressed.connect(self._on_progress)
        thread.finished_ok.connect(self._on_done)
        thread.failed.connect(self._on_failed)
        thread.finished.connect(self._on_finished)
        if self.action is not None:
            self.action.setEnabled(False)
        self.bar.setRange(0, 0)
        self.bar.setFormat(f"Exporting {task.what}")
        self.bar.show()
        self.window.statusBar().showMessage(f"Exporting {task.what} to {task.folder}...")
        thread.start()
        return thread

    def _on_progress(self, done: int, total: int, what: str) -> None:
        self.bar.setRange(0, total)
        self.bar.setValue(done)
        self.bar.setFormat(f"Exporting: {what}")

    def _on_done(self, out: dict) -> None:
        self.last = out
        if self.thread is not None:
            self.thread.task.after(self.window, out)
        count = sum(len(v) for v in out.values())
        folder = self.thread.task.folder if self.thread is not None else ""
        self.window.statusBar().showMessage(f"Exported {count} file{'s' if count != 1 else ''} to {folder}", 10000)

    def _on_failed(self, sentence: str) -> None:
        self.last_error = sentence
        self.window.statusBar().clearMessage()
        self.window.show_error(sentence)

    def _on_finished(self) -> None:
        thread, self.thread = self.thread, None
        self.bar.hide()
        if self.action is not None:
            self.action.setEnabled(True)
        if thread is not None:
            thread.deleteLater()

    def wait(self, ms: int = 120000) -> None:
        """Block until the running export ends (closing the window)."""
        if self.thread is not None:
            self.thread.wait(ms)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if obj is self.window and event.type() == QEvent.Type.Close and self.busy:
            self.wait()
        return False


class ExportDialog(QDialog):
    """Where to, whether to de-identify, and what to do with the words the user typed."""

    def __init__(self, window, typed: list[str], from_dicom: bool = True):
        super().__init__(window)
        self.setWindowTitle("Export measurements")
        self.typed = typed
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("Folder for the SR, CSV, JSON and key image")
        choose = QPushButton("Choose...")
        choose.clicked.connect(self._choose)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(choose)
        self.deidentify = QCheckBox("De-identify (PS3.15 profile: no patient name, ID or dates, new UIDs, "
                                    "key image without the patient's text)")
        self.clear_text = QCheckBox("Clear free text I typed (measurement labels, segment names)")
        # the series' own images, so that the export opens on its own (a de-identified SEG refers to
        # the de-identified images' new UIDs, which only this export has)
        self.images = QCheckBox("Include the series' images (DICOM, into an \"images\" folder; de-identified "
                                "with the rest when that is ticked)")
        self.images.setObjectName("export_images")
        self.images.setEnabled(from_dicom)
        if not from_dicom:
            self.images.setToolTip("This series was not opened from DICOM files.")
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self._clear_touched = False
        self.deidentify.toggled.connect(self._on_deidentify)
        self.clear_text.toggled.connect(self._update_warning)
        self.clear_text.clicked.connect(lambda: setattr(self, "_clear_touched", True))
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.deidentify)
        layout.addWidget(self.clear_text)
        layout.addWidget(self.images)
        layout.addWidget(self.warning)
        layout.addWidget(self.buttons)
        # The last choice, remembered: an export for the patient's record in PACS must keep the identity (its SR and
        # SEG attach to the study by its UIDs), one for teaching or research must not; the user says which once.
        self.deidentify.setChecked(read_bool(window.settings, "export/deidentify", False))
        self._update_warning()

    def _choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export measurements into a folder", self.folder.text())
        if folder:
            self.folder.setText(folder)

    def _on_deidentify(self, on: bool) -> None:
        if not self._clear_touched:  # clearing the typed words follows de-identification until chosen
            self.clear_text.setChecked(on)
        self._update_warning()

    def _update_warning(self) -> None:
        if self.typed and not self.clear_text.isChecked():
            shown = ", ".join(f"\u201c{t}\u201d" for t in self.typed[:6]) + (" ..." if len(self.typed) > 6 else "")
            self.warning.setText(f"Text you typed goes out unchanged and may identify the patient: {shown}.")
            self.warning.show()
        else:
            self.warning.hide()

    def _accept(self) -> None:
        if not self.folder.text().strip():
            self.folder.setFocus()
            return
        self.parent().settings.setValue("export/deidentify", self.deidentify.isChecked())
        self.accept()


def measure_export(window) -> ExportDialog | None:
    """Measure > Export: open the dialog; its Export button starts the export in the background."""
    feature = window.features.measure
    ctl, exporter = feature.controller, feature.exporter
    if window.model.active_state is None or ctl.active_view().state is None:
        window.show_error("Open a series before exporting measurements.")
        return None
    if exporter.busy:
        window.show_error("An export is already running; wait for it to finish.")
        return None
    from viewer.core.io.report import free_text

    state = ctl.active_view().state
    seg = window.features.segments.controller.segmentation(state=state)
    from viewer.core.io.source_images import opened_from_dicom

    dialog = ExportDialog(window, free_text(ctl.measurements(state.key), seg),
                          from_dicom=opened_from_dicom(state.volume))
    feature.export_dialog = dialog

    def accepted() -> None:
        try:
            task = prepare(window, dialog.folder.text().strip(), dialog.deidentify.isChecked(),
                           dialog.clear_text.isChecked(), source_images=dialog.images.isChecked())
            exporter.start(task)
        except HounsfieldError as exc:
            window.show_error(str(exc))
        except Exception as exc:
            log.exception("preparing the export failed")
            window.show_error(failure_sentence(exc, dialog.folder.text()))

    dialog.accepted.connect(accepted)
    dialog.finished.connect(dialog.deleteLater)
    dialog.open()
    return dialog


def segmentation_export(window, path: str) -> None:
    """Segment > Export to ``path``, in the background."""
    measure = getattr(window.features, "measure", None)
    exporter = measure.exporter if measure is not None else None
    try:
        task = SegmentationExportTask.prepare(window, path)
        if exporter is None:  # no Measure feature installed: write here
            task.after(window, task.run())
            return
        exporter.start(task)
    except HounsfieldError as exc:
        window.show_error(str(exc))
    except Exception as exc:
        log.exception("exporting a segmentation failed")
        window.show_error(failure_sentence(exc, os.path.dirname(path), "segmentation"))
