"""The Qt side of segment editing: which segmentation the tools edit (the active series' last one),
signals for the panel, journals synced once a second, crash recovery offered, import and export.

The segmentations themselves, with their editor (undo/redo), crash journal and whether they were
exported, are overlays of the series in the window's ``Workspace``
(``viewer.core.workspace.EditableSegmentation``); the tools' settings are ``workspace.settings``.
Nothing here is a widget (the restore bar is ``restore_bar.RestoreBar``).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from viewer.core.edits import Editor
from viewer.core.errors import HounsfieldError
from viewer.core.segmentation import Segment, Segmentation, write_segmentation_file
from viewer.core.workspace import EditableSegmentation, OpenSeries, Workspace

JOURNAL_ERROR = ("Edits cannot be saved for recovery (the data folder is not writable); "
                 "export the segmentation when done.")


class SegmentsController(QObject):
    changed = Signal()  # the edited segmentation, its segments or the undo state changed
    settings_changed = Signal()  # brush size, ranges, modes
    recoverable_found = Signal(str, object)  # series key, viewer.core.journal.Recoverable

    def __init__(self, window, workspace: Workspace):
        super().__init__(window)
        self.window, self.model, self.workspace = window, window.model, workspace
        self.settings = workspace.settings  # brush_mm, sphere, hu_range, tolerance, fill_uses_range, fill_3d
        self._sync_timer = QTimer(self)
        self._sync_timer.setInterval(1000)
        self._sync_timer.timeout.connect(self.sync_journals)
        self._sync_timer.start()
        workspace.overlay_added.connect(self._on_overlay_added)
        workspace.overlay_removed.connect(self._on_overlay_removed)
        self.model.series_added.connect(self._on_series_added)
        self.model.active_changed.connect(lambda _slot: self.changed.emit())

    # which segmentation is edited
    def state(self):
        return self.model.active_state

    def editable(self, create: bool = False, state=None) -> EditableSegmentation | None:
        """The active (or ``state``'s) series' segmentation with its editor and journal."""
        state = state or self.state()
        return state.open_series.segmentation(create=create) if state is not None else None

    def segmentation(self, create: bool = False, state=None) -> Segmentation | None:
        ed = self.editable(create, state)
        return ed.segmentation if ed is not None else None

    def find(self, seg: Segmentation) -> EditableSegmentation | None:
        """The workspace's editable wrapper of ``seg``."""
        return next((ed for s in self.workspace for ed in s.segmentations if ed.segmentation is seg), None)

    def editor(self, seg: Segmentation | None = None) -> Editor | None:
        ed = self.editable() if seg is None else self.find(seg)
        return ed.editor if ed is not None else None

    def target(self, state=None) -> tuple[Segmentation, Editor, Segment] | None:
        """The segmentation, editor and segment the tools paint with (made on first use)."""
        ed = self.editable(True, state)
        if ed is None:
            return None
        s = ed.segmentation.active_segment
        if s is None:
            s = ed.editor.add_segment()
        return ed.segmentation, ed.editor, s

    def attach(self, state, seg: Segmentation, journal_path: str | None = None,
               exported: bool = True) -> Segmentation:
        """Put ``seg`` on ``state``'s series, edited with undo/redo and journaled (``exported``: it is in
        a file already, as an imported one, so quitting need not ask about it)."""
        return state.open_series.add_segmentation(seg, journal_path=journal_path, exported=exported).segmentation

    def _on_overlay_added(self, _series: OpenSeries, overlay) -> None:
        if not isinstance(overlay, EditableSegmentation):
            return
        overlay.editor.history_changed.connect(self.changed.emit)
        overlay.segmentation.segments_changed.connect(self.changed.emit)
        if overlay.journal is not None:
            overlay.journal.failed.connect(self._on_journal_failed)
        else:
            self.window.show_error(JOURNAL_ERROR)
        self.changed.emit()

    def _on_overlay_removed(self, _series: OpenSeries, overlay) -> None:
        if isinstance(overlay, EditableSegmentation):
            self.changed.emit()

    # undo / redo
    def undo(self) -> bool:
        ed = self.editor()
        return bool(ed and ed.undo())

    def redo(self) -> bool:
        ed = self.editor()
        return bool(ed and ed.redo())

    def set_setting(self, **kw) -> None:
        for k, v in kw.items():
            if not hasattr(self.settings, k):
                raise AttributeError(k)
            setattr(self.settings, k, v)
        self.settings_changed.emit()

    # recovery
    def _on_journal_failed(self, _exc) -> None:
        self.window.show_error("Edits cannot be saved for recovery (the disk is full or not writable); "
                               "free some space or export the segmentation.")

    def _on_series_added(self, key: str) -> None:
        state = self.model.series.get(key)
        if state is None:
            return
        for rec in state.open_series.recoverable():
            self.recoverable_found.emit(key, rec)

    def restore(self, key: str, rec) -> Segmentation | None:
        state = self.model.series.get(key)
        if state is None:
            return None
        try:
            return state.open_series.restore(rec).segmentation
        except HounsfieldError as exc:
            self.window.show_error(str(exc))
            return None

    def unexported(self) -> list[tuple[OpenSeries, EditableSegmentation]]:
        """Segmentations with segments changed since their last export, with their series."""
        return [(s, ed) for s in self.workspace for ed in s.segmentations if ed.unexported and ed.segments]

    def sync_journals(self) -> None:
        for s in self.workspace:
            for ed in s.segmentations:
                if ed.journal is not None:
                    ed.journal.sync()

    def close(self) -> None:
        """Journals synced and closed: what was not exported is offered next time."""
        self._sync_timer.stop()
        for s in self.workspace:
            s.close()

    # import and export
    def export(self, path: str) -> list[str]:
        """DICOM SEG (.dcm) or a label map (.nii.gz, .nrrd, ...); marks the journal saved."""
        ed, state = self.editable(), self.state()
        if ed is None or not ed.segments:
            raise HounsfieldError("There is no segmentation to export: draw or load one first.")
        written = write_segmentation_file(ed.segmentation, state.volume, path)
        ed.mark_exported(path)
        return written

    def mark_exported(self, seg: Segmentation, path: str = "") -> None:
        """``seg`` was written to ``path``: its journal records it, quitting no longer asks about it."""
        ed = self.find(seg)
        if ed is not None:
            ed.mark_exported(path)

    def import_file(self, path: str) -> Segmentation:
        state = self.state()
        if state is None:
            raise HounsfieldError("Open the series the segmentation belongs to first.")
        return state.open_series.import_segmentation(path).segmentation
