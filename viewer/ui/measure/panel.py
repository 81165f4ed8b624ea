"""The measurements dock: a table of the active series' measurements and of its segments'
statistics (click: go there; the label column is editable, a segment's label is its name),
Delete / Copy / Export buttons, and a histogram of the selected ROI's or segment's values (drawn
with QPainter)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.core.measurements import KIND_TITLES, ROI_KINDS, roi_samples, summary


class Histogram(QWidget):
    """Bars of a value distribution with its range and mean written under it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(120)
        self.counts = np.zeros(0)
        self.edges = np.zeros(0)
        self.mean = None
        self.units = ""

    def set_values(self, values, units: str = "", bins: int = 40) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            self.counts, self.edges, self.mean = np.zeros(0), np.zeros(0), None
        else:
            lo, hi = float(values.min()), float(values.max())
            if hi <= lo:
                hi = lo + 1.0
            self.counts, self.edges = np.histogram(values, bins=bins, range=(lo, hi))
            self.mean = float(values.mean())
        self.units = units
        self.update()

    def paintEvent(self, ev):  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(30, 30, 32))
        if self.counts.size == 0:
            p.setPen(QColor(150, 150, 150))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Select an ROI or a segment to see its histogram")
            return
        w, h = self.width(), self.height()
        top, bottom, left, right = 8.0, h - 20.0, 6.0, w - 6.0
        peak = max(int(self.counts.max()), 1)
        bw = (right - left) / len(self.counts)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(240, 200, 60))
        for i, c in enumerate(self.counts):
            bh = (bottom - top) * c / peak
            p.drawRect(QRectF(left + i * bw, bottom - bh, max(bw - 1, 1), bh))
        lo, hi = float(self.edges[0]), float(self.edges[-1])
        if self.mean is not None:
            x = left + (self.mean - lo) / (hi - lo) * (right - left)
            p.setPen(QPen(QColor(80, 220, 255), 1.5))
            p.drawLine(int(x), int(top), int(x), int(bottom))
        p.setPen(QColor(210, 210, 210))
        p.drawText(QRectF(left, bottom + 2, right - left, 16), Qt.AlignmentFlag.AlignLeft, f"{lo:.0f}")
        p.drawText(QRectF(left, bottom + 2, right - left, 16), Qt.AlignmentFlag.AlignRight, f"{hi:.0f}")
        p.drawText(QRectF(left, bottom + 2, right - left, 16), Qt.AlignmentFlag.AlignHCenter,
                   f"mean {self.mean:.1f} {self.units}")


class MeasurementPanel(QWidget):
    COLUMNS = ("#", "Label", "Value", "Kind")

    def __init__(self, controller, export, parent=None):
        super().__init__(parent)
        self.ctl = controller
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setObjectName("measurements_table")
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setMinimumSectionSize(24)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)  # Kind: what is left
        self.table.setWordWrap(True)
        self.table.cellClicked.connect(lambda row, _c: self.jump(row))
        self.table.itemChanged.connect(self._on_item_changed)
        buttons = QHBoxLayout()
        self.buttons = {}
        for text, fn in (("Delete", controller.delete_selected), ("Copy", self.copy),
                         ("Export...", export)):
            b = QPushButton(text)
            b.setObjectName(f"measure_{text.strip('.').lower()}")
            b.clicked.connect(lambda _c=False, fn=fn: fn())
            buttons.addWidget(b)
            self.buttons[text] = b
        self.histogram = Histogram()
        self.hist_title = QLabel("")
        col = QVBoxLayout(self)
        col.setContentsMargins(4, 4, 4, 4)
        col.addWidget(self.table, 1)
        col.addLayout(buttons)
        col.addWidget(self.hist_title)
        col.addWidget(self.histogram)
        self._rows: list[str] = []
        self._histogram_of = None
        self._filling = False
        controller.changed.connect(self.refresh)
        controller.selection_changed.connect(self._sync_selection)
        controller.model.active_changed.connect(lambda _slot: self.refresh())
        controller.model.viewport_changed.connect(lambda _slot: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        ms = self.ctl.measurements()
        segs = self.ctl.segment_rows.rows()
        state = self.ctl.model.active_state
        units = state.volume.units if state is not None else ""
        self._filling = True
        self.table.setRowCount(len(ms) + len(segs))
        self._rows = [m.uid for m in ms] + [r.uid for r in segs]
        # an ROI's two lines stay two lines (one line of 'mean ... area 4.86 cm2' was wider than the
        # dock: cut at 'area 4.8', the Kind column behind a horizontal scroll bar)
        texts = [(str(n), m.label, summary(m, units), KIND_TITLES[m.kind])
                 for n, m in enumerate(ms, start=1)]
        texts += [(f"S{n}", r.segment.name, r.summary(units), "Segment") for n, r in enumerate(segs, start=1)]
        for row, values in enumerate(texts):
            for col, text in enumerate(values):
                item = self.table.item(row, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, col, item)
                if item.text() != text:
                    item.setText(text)
                    item.setToolTip(text if col in (2, 3) else "")
                flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
                item.setFlags(flags | Qt.ItemFlag.ItemIsEditable if col == 1 else flags)
        self._fit_columns()
        self._filling = False
        self._sync_selection()

    def _fit_columns(self) -> None:
        """#, Label and Value as wide as their text, but Value no wider than leaves Kind room for
        'Segment' (a segment's one-line figures had pushed Kind behind a sideways scroll bar): a longer
        value wraps at its spaces instead.  An ROI's two lines stay two lines; a longer kind is elided
        and its cell's tooltip says it."""
        table = self.table
        for col in (0, 1, 2):
            table.resizeColumnToContents(col)
        kind = table.fontMetrics().horizontalAdvance("Segment") + 16
        room = table.viewport().width() - table.columnWidth(0) - table.columnWidth(1) - kind
        if table.columnWidth(2) > room:
            table.setColumnWidth(2, max(room, 120))
        table.resizeRowsToContents()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit_columns()

    def _on_item_changed(self, item) -> None:
        if self._filling or item.column() != 1 or item.row() >= len(self._rows):
            return
        self.ctl.set_label(self._rows[item.row()], item.text().strip())

    def _sync_selection(self) -> None:
        uid = self.ctl.selected
        row = self._rows.index(uid) if uid in self._rows else -1
        if row >= 0 and self.table.currentRow() != row:
            self.table.selectRow(row)
        self._update_histogram()

    def _update_histogram(self) -> None:
        seg_row = self.ctl.segment_row(self.ctl.selected)
        if seg_row is not None:
            stamp = (seg_row.uid, id(seg_row.stats))  # the values change when the statistics are redone
            if stamp == self._histogram_of:
                return
            self._histogram_of = stamp
            vol = self.ctl.model.series[seg_row.key].volume
            self.histogram.set_values(vol.real_values(seg_row.seg.mask(seg_row.segment)), vol.units)
            self.hist_title.setText(f"Histogram: segment {seg_row.segment.name}")
            return
        self._histogram_of = None
        hit = self.ctl.find(self.ctl.selected) if self.ctl.selected else None
        if hit is None or hit[1].kind not in ROI_KINDS:
            self.histogram.set_values([])
            self.hist_title.setText("")
            return
        key, m = hit
        vol = self.ctl.model.series[key].volume
        self.histogram.set_values(roi_samples(m, vol).values, vol.units)
        self.hist_title.setText(f"Histogram: {m.title}")

    def jump(self, row: int) -> None:
        if 0 <= row < len(self._rows):
            self.ctl.jump_to(self._rows[row])

    def copy(self) -> None:
        QApplication.clipboard().setText(self.ctl.as_text())
