"""The segmentation state of the main window: which segmentation each series edits, its editor
(undo/redo), its crash journal, the editing settings of the tools, crash recovery, import and export.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from viewer.core import journal
from viewer.core.edits import Editor
from viewer.core.errors import HounsfieldError
from viewer.core.segmentation import (
    Segment,
    Segmentation,
    from_label_map,
    read_segmentation_file,
    write_segmentation_file,
)
from viewer.logs import log


class RestoreBar(QWidget):
    """Above the views: "An unsaved segmentation ... can be restored."  [Restore] [Discard]."""

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.setObjectName("RestoreBar")
        self.setStyleSheet("#RestoreBar { background: #17405a; border-bottom: 1px solid #2c7aa8; }"
                           "#RestoreBar QLabel { color: #d8efff; }")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.restore_button = QPushButton("Restore")
        self.discard_button = QPushButton("Discard")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 6, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.restore_button)
        layout.addWidget(self.discard_button)
        self.restore_button.clicked.connect(self._restore)
        self.discard_button.clicked.connect(self._discard)
        self.pending: list[tuple[str, journal.Recoverable]] = []  # (series key, journal)
        self.hide()

    def offer(self, key: str, rec: journal.Recoverable) -> None:
        self.pending.append((key, rec))
        self._show_first()

    def _show_first(self) -> None:
        if not self.pending:
            self.hide()
            return
        _, rec = self.pending[0]
        names = ", ".join(rec.segments[:4]) + ("..." if len(rec.segments) > 4 else "")
        self.label.setText(f"An unsaved segmentation of this series ({names or 'no segments'}) was found "
                           "from a session that ended unexpectedly. Restore it?")
        self.show()

    def _restore(self) -> None:
        if self.pending:
            key, rec = self.pending.pop(0)
            self.controller.restore(key, rec)
        self._show_first()

    def _discard(self) -> None:
        if self.pending:
            _, rec = self.pending.pop(0)
            journal.discard(rec.path)
        self._show_first()


class SegmentsController(QObject):
    changed = Signal()  # the edited segmentation, its segments or the undo state changed
    settings_changed = Signal()  # brush size, ranges, modes

    def __init__(self, window):
        super().__init__(window)
        self.window, self.model = window, window.model
        self.editors: dict[str, Editor] = {}  # by segmentation uid
        self.journals: dict[str, journal.Journal] = {}
        self.unexported: set[str] = set()  # uids of segmentations changed since they were last exported
        self.brush_mm = 5.0  # brush radius
        self.sphere = False  # 3D brush
        self.hu_range = (-100.0, 300.0)  # threshold brush and fill range
        self.tolerance = 100.0  # flood fill: seed value +- this when no range is used
        self.fill_uses_range = False
        self.fill_3d = False
        self.restore_bar = RestoreBar(self)
        self._sync_timer = QTimer(self)
        self._sync_timer.setInterval(1000)
        self._sync_timer.timeout.connect(self.sync_journals)
        self._sync_timer.start()
        self.model.series_added.connect(self._on_series_added)
        self.model.active_changed.connect(lambda _slot: self.changed.emit())
        self.model.series_removed.connect(self._on_series_removed)

    # which segmentation is edited
    def state(self):
        return self.model.active_state

    def segmentation(self, create: bool = False, state=None) -> Segmentation | None:
        state = state or self.state()
        if state is None:
            return None
        if state.segmentations:
            return state.segmentations[-1]
        if not create:
            return None
        return self.attach(state, Segmentation.for_volume(state.volume, "Segmentation"))

    def editor(self, seg: Segmentation | None = None) -> Editor | None:
        seg = seg or self.segmentation()
        return self.editors.get(seg.uid) if seg is not None else None

    def target(self, state=None) -> tuple[Segmentation, Editor, Segment] | None:
        """The segmentation, editor and segment the tools paint with (made on first use)."""
        seg = self.segmentation(create=True, state=state)
        if seg is None:
            return None
        ed = self.editors[seg.uid]
        s = seg.active_segment
        if s is None:
            s = ed.add_segment()
        return seg, ed, s

    def attach(self, state, seg: Segmentation, journal_path: str | None = None,
               exported: bool = True) -> Segmentation:
        """Show ``seg`` on ``state``'s series, edit it with undo/redo and journal it (``exported``:
        it is in a file already, as an imported one, so quitting need not ask about it)."""
        ed = Editor(seg, state.volume)
        ed.history_changed.connect(self.changed.emit)
        self.editors[seg.uid] = ed
        try:  # one journal record per edit; a restored journal (journal_path) starts afresh, unsaved
            j = journal.Journal(seg, journal.series_id(state.volume), path=journal_path, editor=ed,
                                unsaved=True if journal_path else None)
            j.failed.connect(self._on_journal_failed)
            self.journals[seg.uid] = j
        except OSError:
            log.warning("segmentation journal not writable", exc_info=True)
            self.window.show_error("Edits cannot be saved for recovery (the data folder is not writable); "
                                   "export the segmentation when done.")
        seg.segments_changed.connect(self.changed.emit)
        seg.changed.connect(lambda *_a, uid=seg.uid: self.unexported.add(uid))
        seg.segments_changed.connect(lambda *_a, uid=seg.uid: self.unexported.add(uid))
        if not exported:
            self.unexported.add(seg.uid)
        state.add_segmentation(seg)
        self.changed.emit()
        return seg

    def add_label_map(self, key: str, array, segments: list[dict] | None = None, *, name: str = "AI segmentation",
                      algorithm_name: str = "", algorithm_version: str = "") -> Segmentation:
        """A segmentation from a plugin's label map on series ``key``'s grid (provenance AUTOMATIC)."""
        state = self.model.series[key]
        seg = from_label_map(state.volume, array, segments, name=name, algorithm_name=algorithm_name,
                             algorithm_version=algorithm_version)
        return self.attach(state, seg, exported=False)

    # undo / redo
    def undo(self) -> bool:
        ed = self.editor()
        return bool(ed and ed.undo())

    def redo(self) -> bool:
        ed = self.editor()
        return bool(ed and ed.redo())

    def set_setting(self, **kw) -> None:
        for k, v in kw.items():
            if not hasattr(self, k):
                raise AttributeError(k)
            setattr(self, k, v)
        self.settings_changed.emit()

    # recovery
    def _on_journal_failed(self, _exc) -> None:
        self.window.show_error("Edits cannot be saved for recovery (the disk is full or not writable); "
                               "free some space or export the segmentation.")

    def _on_series_added(self, key: str) -> None:
        state = self.model.series.get(key)
        if state is None:
            return
        try:
            found = journal.recoverable(journal.series_id(state.volume))
        except OSError:
            return
        open_stems = {journal.file_stem(uid) for uid in self.journals}
        for rec in found:
            if os.path.basename(rec.path)[:-len(journal.SUFFIX)] not in open_stems:
                self.restore_bar.offer(key, rec)

    def restore(self, key: str, rec: journal.Recoverable) -> Segmentation | None:
        state = self.model.series.get(key)
        if state is None:
            return None
        try:
            seg = journal.replay(rec.path)
        except (OSError, ValueError) as exc:
            self.window.show_error(f"The unsaved segmentation could not be restored ({exc}).")
            return None
        if not seg.matches(state.volume):
            self.window.show_error("The unsaved segmentation belongs to another grid of this series; it was kept.")
            return None
        return self.attach(state, seg, journal_path=rec.path, exported=False)

    def sync_journals(self) -> None:
        for j in self.journals.values():
            j.sync()

    def _on_series_removed(self, key: str) -> None:
        live = {s.uid for st in self.model.series.values() for s in st.segmentations}
        for uid in [u for u in self.journals if u not in live]:
            self.journals.pop(uid).close()
            self.editors.pop(uid, None)

    def close(self) -> None:
        for j in self.journals.values():
            j.close()
        self.journals.clear()

    # import and export
    def export(self, path: str) -> list[str]:
        """DICOM SEG (.dcm) or a label map (.nii.gz, .nrrd, ...); marks the journal saved."""
        seg, state = self.segmentation(), self.state()
        if seg is None or not seg.segments:
            raise HounsfieldError("There is no segmentation to export: draw or load one first.")
        written = write_segmentation_file(seg, state.volume, path)
        self.mark_exported(seg, path)
        return written

    def mark_exported(self, seg: Segmentation, path: str = "") -> None:
        """``seg`` was written to ``path``: its journal records it, quitting no longer asks about it."""
        self.unexported.discard(seg.uid)
        if seg.uid in self.journals:
            self.journals[seg.uid].mark_saved(path)

    def import_file(self, path: str) -> Segmentation:
        state = self.state()
        if state is None:
            raise HounsfieldError("Open the series the segmentation belongs to first.")
        return self.attach(state, read_segmentation_file(path, state.volume))
