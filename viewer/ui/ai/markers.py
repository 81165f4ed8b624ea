"""Reviewing AI detections: the marker tool (drag inside a marker to move it, on its rim to resize
it; a click elsewhere moves the crosshair) and the detections table (accept, reject, jump)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.core.layers import MarkerSet
from viewer.ui.interaction import attach

TOOL = "marker"
RIM_PIXELS = 6.0


class MarkerTool:
    def __init__(self, view, controller):
        self.view, self.controller = view, controller  # the AIController (the markers drawn are the view's)
        self.grab = None

    def press(self, pos, modifiers) -> None:
        view = self.view
        lps = view.lps_at(pos)
        if lps is None:
            return
        geom = view.pipeline.geometry
        xy = geom.from_lps(lps)
        hit = view.markers.hit(xy, RIM_PIXELS * view.mm_per_pixel_logical())
        if hit is None:
            self.grab = None
            view.move_point_to(pos)
            return
        kind, drawn = hit
        m = drawn.marker_set.markers[drawn.index]
        self.grab = (kind, drawn, np.asarray(xy, float), m.center.copy(), np.asarray(m.size_mm, float).copy())

    def move(self, pos) -> None:
        if self.grab is None:
            return
        lps = self.view.lps_at(pos)
        if lps is None:
            return
        kind, drawn, xy0, centre0, size0 = self.grab
        geom = self.view.pipeline.geometry
        xy = np.asarray(geom.from_lps(lps), float)
        if kind == "move":
            dx, dy = xy - xy0
            drawn.marker_set.move(drawn.index, centre0 + dx * geom.u + dy * geom.v)
        else:
            r = float(np.hypot(*(xy - np.asarray(drawn.xy))))
            drawn.marker_set.set_size(drawn.index, size0 * (r / max(drawn.radius, 1e-3)))

    def release(self, pos) -> None:
        self.grab = None


def register(controller) -> None:
    attach(TOOL, MarkerTool, controller)


class DetectionTable(QWidget):
    """The markers of one run: number, class, score, status; accept, reject, go to."""

    jump_requested = Signal(object)  # LPS point

    COLUMNS = ("#", "Class", "Score", "Status")

    def __init__(self, marker_set: MarkerSet, parent=None):
        super().__init__(parent)
        self.marker_set = marker_set
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMaximumHeight(160)
        self.table.cellDoubleClicked.connect(lambda row, _c: self.jump(row))
        buttons = QHBoxLayout()
        for text, fn in (("Accept", lambda: self._set("accepted")), ("Reject", lambda: self._set("rejected")),
                         ("Go to", lambda: self.jump(self.table.currentRow()))):
            b = QPushButton(text)
            b.setObjectName(f"detections_{text.lower().replace(' ', '_')}")
            b.clicked.connect(fn)
            buttons.addWidget(b)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.table)
        col.addLayout(buttons)
        marker_set.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        ms = self.marker_set
        self.table.setRowCount(len(ms.markers))
        for row, m in enumerate(ms.markers):
            values = (str(row + 1), m.label, f"{m.score:.2f}", m.status + (" (edited)" if m.edited else ""))
            for col, v in enumerate(values):
                item = self.table.item(row, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, col, item)
                item.setText(v)
                if col in (0, 2):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def _set(self, status: str) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}) or (
            [self.table.currentRow()] if self.table.currentRow() >= 0 else [])
        for row in rows:
            self.marker_set.set_status(row, status)

    def jump(self, row: int) -> None:
        if 0 <= row < len(self.marker_set.markers):
            self.jump_requested.emit(self.marker_set.markers[row].center)

    def dispose(self) -> None:
        self.marker_set.changed.disconnect(self.refresh)
