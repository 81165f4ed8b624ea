"""AI > Performance: the audit log's table (viewer.core.audit; the same cells as ``hounsfield
audit``), a plot of each plugin's median Dice and detection acceptance per day (a drift downwards
is the first sign that a model no longer suits the site's scanners), and CSV export.  The plot is
drawn with QPainter (QtCharts is not part of PySide6-Essentials)."""

from __future__ import annotations

import os

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.core.audit import HEADERS, AuditLog, audit_path, table_rows, to_csv

COLOURS = ("#4fc3f7", "#ffb74d", "#aed581", "#f06292", "#ba68c8", "#fff176")


class DriftPlot(QWidget):
    """Lines of a value in [0, 1] per day, one per plugin version: ``series`` {name: [(day, value)]}."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.series: dict[str, list[tuple[str, float]]] = {}
        self.title = "Median Dice (AI vs corrected) per day; dashed: detection acceptance"
        self.dashed: dict[str, list[tuple[str, float]]] = {}
        self.setMinimumHeight(180)

    def set_data(self, timeline) -> None:
        self.series, self.dashed = {}, {}
        for name, day, s in timeline:
            if s.median_dice is not None:
                self.series.setdefault(name, []).append((day, s.median_dice))
            if s.acceptance_rate is not None:
                self.dashed.setdefault(name, []).append((day, s.acceptance_rate))
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("#1e2126"))
        m = 34
        plot = QRectF(m, 20, max(10, self.width() - 2 * m), max(10, self.height() - 20 - m))
        p.setPen(QColor("#ccd"))
        p.drawText(QRectF(0, 0, self.width(), 18), Qt.AlignmentFlag.AlignCenter, self.title)
        p.setPen(QPen(QColor("#556"), 1))
        for v in (0.0, 0.5, 1.0):
            y = plot.bottom() - v * plot.height()
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.drawText(QRectF(0, y - 8, m - 4, 16), Qt.AlignmentFlag.AlignRight, f"{v:g}")
        days = sorted({d for pts in (*self.series.values(), *self.dashed.values()) for d, _ in pts})
        if not days:
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "No reviewed AI results yet")
            return
        x_of = {d: plot.left() + (plot.width() * (n / (len(days) - 1)) if len(days) > 1 else plot.width() / 2)
                for n, d in enumerate(days)}
        p.drawText(QRectF(plot.left(), plot.bottom() + 4, 120, 16), Qt.AlignmentFlag.AlignLeft, days[0])
        p.drawText(QRectF(plot.right() - 120, plot.bottom() + 4, 120, 16), Qt.AlignmentFlag.AlignRight, days[-1])
        names = sorted(set(self.series) | set(self.dashed))
        for n, name in enumerate(names):
            colour = QColor(COLOURS[n % len(COLOURS)])
            for data, style in ((self.series.get(name, []), Qt.PenStyle.SolidLine),
                                (self.dashed.get(name, []), Qt.PenStyle.DashLine)):
                pts = [QPointF(x_of[d], plot.bottom() - v * plot.height()) for d, v in data]
                p.setPen(QPen(colour, 2, style))
                for a, b in zip(pts, pts[1:]):
                    p.drawLine(a, b)
                p.setBrush(colour)
                for q in pts:
                    p.drawEllipse(q, 3, 3)
            p.setPen(colour)
            p.drawText(QRectF(plot.left() + 6, plot.top() + 4 + 15 * n, plot.width(), 15),
                       Qt.AlignmentFlag.AlignLeft, name)
        p.end()


class PerformanceDialog(QDialog):
    def __init__(self, parent=None, path: str | None = None):
        super().__init__(parent)
        self.setWindowTitle("AI performance at this site")
        self.path = path or audit_path()
        layout = QVBoxLayout(self)
        note = QLabel("Every AI result a radiologist reviewed here (exported, or corrected and closed), per plugin "
                      "and version. No patient identity is kept; studies are stored as salted hashes.")
        note.setWordWrap(True)
        layout.addWidget(note)
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setObjectName("performance_table")
        self.table.setHorizontalHeaderLabels(list(HEADERS))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        layout.addWidget(self.table)
        self.plot = DriftPlot()
        layout.addWidget(self.plot, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = buttons.addButton("Export CSV...", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.clicked.connect(lambda: self.export_csv())
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(900, 520)
        self.summaries = []
        self.refresh()

    def refresh(self) -> None:
        if os.path.exists(self.path):
            with AuditLog(self.path) as audit:
                self.summaries = audit.summary()
                timeline = audit.timeline()
        else:
            self.summaries, timeline = [], []
        rows = table_rows(self.summaries)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.plot.set_data(timeline)

    def cells(self) -> list[list[str]]:
        return [[self.table.item(r, c).text() for c in range(self.table.columnCount())]
                for r in range(self.table.rowCount())]

    def export_csv(self, path: str | None = None) -> str | None:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export AI performance", "ai-performance.csv", "CSV (*.csv)")
            if not path:
                return None
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(to_csv(self.summaries))
        return path
