"""Above the views: "An unsaved segmentation ... can be restored."  [Restore] [Discard]."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from viewer.core import journal


class RestoreBar(QWidget):
    """Offers the unsaved segmentations the segments controller found (``recoverable_found``)."""

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
        controller.recoverable_found.connect(self.offer)
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
