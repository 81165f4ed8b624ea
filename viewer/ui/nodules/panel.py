"""The Nodules panel: one row per nodule of the lung-nodule run(s) on the active series (number,
region, mean diameter, volume, type, Lung-RADS suggestion, score, status), sortable; a click on a
row takes every view to the nodule; Accept, Reject, Edit (the marker tool), Add nodule, the
operating-point slider with the expected false positives per scan, and Report."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.ui.nodules.controller import NoduleRow, NodulesController, expected_fp, lungrads_of, region_text

ROW_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
STATUS_COLOURS = {"accepted": "#7c7", "rejected": "#c77", "pending": "#ccc"}


class SortItem(QTableWidgetItem):
    """Sorts by the number behind the text (diameters, volumes, scores), text otherwise."""

    def __lt__(self, other) -> bool:
        a, b = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return a < b
        return str(a if a is not None else self.text()) < str(b if b is not None else other.text())


class NodulesPanel(QWidget):
    COLUMNS = ("#", "Region", "Ø mm", "mm³", "Type", "Lung-RADS", "Score", "Status")

    def __init__(self, controller: NodulesController, report, add_tool, edit_tool, parent=None):
        super().__init__(parent)
        self.ctl = controller
        self.info = QLabel("No lung-nodule run on this series.\nRun AI > Lung nodules, or add a nodule.")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: #99a;")
        t = self.table = QTableWidget(0, len(self.COLUMNS))
        t.setObjectName("nodules_table")
        t.setHorizontalHeaderLabels(self.COLUMNS)
        for c, tip in enumerate(("Nodule number", "Lobe (or lung) it lies in", "Mean diameter: (long + short "
                                 "axial axis) / 2, to 0.1 mm as Lung-RADS asks", "Volume of its segmentation",
                                 "Solid, part-solid or ground-glass", "Lung-RADS v2022 category suggested for a "
                                 "baseline screen (the rule is in the cell's tooltip)",
                                 "The detector's score (a person's nodule: person)", "Review status")):
            t.horizontalHeaderItem(c).setToolTip(tip)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.verticalHeader().hide()
        t.horizontalHeader().setStretchLastSection(True)
        t.setSortingEnabled(True)
        t.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        t.itemSelectionChanged.connect(self._selected)
        t.cellClicked.connect(lambda row, _c: self._jump_row(row))
        buttons = QHBoxLayout()
        self.buttons = {}
        for name, text, fn, tip in (
                ("accept", "Accept (Y)", lambda: self.set_status("accepted"), "Accept the selected nodules"),
                ("reject", "Reject (N)", lambda: self.set_status("rejected"), "Reject the selected nodules"),
                ("edit", "Edit", edit_tool, "Move (drag inside) or resize (drag the rim) a nodule's marker; "
                                            "it is measured again"),
                ("add", "Add nodule", add_tool, "Then click on a nodule the AI missed in a 2D view (Shift+N)"),
                ("report", "Report...", report, "Write the SR (accepted nodules), SEG and CSV")):
            b = self.buttons[name] = QPushButton(text)
            b.setObjectName(f"nodules_{name}")
            b.setToolTip(tip)
            b.clicked.connect(fn)
            buttons.addWidget(b)
        op = QHBoxLayout()
        op.addWidget(QLabel("Score ≥"))
        s = self.slider = QSlider(Qt.Orientation.Horizontal)
        s.setObjectName("nodules_threshold")
        s.setRange(0, 100)
        s.setValue(round(controller.threshold * 100))
        s.setToolTip("The operating point: AI detections scoring below it are hidden (not deleted)")
        s.valueChanged.connect(lambda v: controller.set_threshold(v / 100))
        self.threshold_label = QLabel("")
        self.fp_label = QLabel("")
        self.fp_label.setObjectName("nodules_fp")
        self.fp_label.setToolTip("Expected false positives per scan at this score threshold, from the plugin's "
                                 "measured FROC figures (its model card)")
        op.addWidget(s, 1)
        op.addWidget(self.threshold_label)
        op.addWidget(self.fp_label)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        col = QVBoxLayout(self)
        col.addWidget(self.info)
        col.addWidget(self.table, 1)
        col.addLayout(buttons)
        col.addLayout(op)
        col.addWidget(self.summary)
        self._jumping = False
        controller.rows_changed.connect(self.refresh)
        self.refresh()

    # ------------------------------------------------------------------ rows
    def refresh(self) -> None:
        ctl, t = self.ctl, self.table
        keep = {id(r.marker) for r in self.selected_rows()}
        t.blockSignals(True)
        t.setSortingEnabled(False)
        t.setRowCount(len(ctl.rows))
        for n, row in enumerate(ctl.rows):
            m, a = row.marker, row.attrs
            lr = a.get("lungrads") or getattr(lungrads_of(a), "category", None)
            diam, vol = a.get("mean_diameter_mm"), a.get("volume_ml")
            person = m.origin == "person"
            status = m.status + (" (edited)" if m.edited else "") + (" (added)" if person else "")
            cells = ((str(row.number), row.number), (region_text(a), None),
                     (f"{diam:.1f}" if isinstance(diam, (int, float)) else "…" if m in ctl._busy else "", diam),
                     (f"{vol * 1000:.0f}" if isinstance(vol, (int, float)) else "", vol),
                     (a.get("type", ""), None), (f"{lr}" if lr else "", lr),
                     ("person" if person else f"{m.score:.2f}", 2.0 if person else m.score), (status, m.status))
            for c, (text, key) in enumerate(cells):
                item = t.item(n, c)
                if item is None:
                    item = SortItem()
                    t.setItem(n, c, item)
                item.setText(text)
                item.setData(SORT_ROLE, key)
                item.setData(ROW_ROLE, n)
                if c in (0, 2, 3, 6):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c == 7:
                    from PySide6.QtGui import QColor

                    item.setForeground(QColor(STATUS_COLOURS.get(m.status, "#ccc")))
                tip = a.get("lungrads_rule") or getattr(lungrads_of(a), "rule", "") if c == 5 else m.description
                item.setToolTip(tip or "")
        t.setSortingEnabled(True)
        t.resizeColumnsToContents()
        for r in range(t.rowCount()):
            row = self.row_at(r)
            t.setRowHidden(r, row is None or not ctl.visible(row))
            if row is not None and id(row.marker) in keep:
                t.selectRow(r)
        t.blockSignals(False)
        self.info.setVisible(not ctl.rows)
        if self.slider.value() != round(ctl.threshold * 100):  # the run's default operating point
            self.slider.blockSignals(True)
            self.slider.setValue(round(ctl.threshold * 100))
            self.slider.blockSignals(False)
        self.threshold_label.setText(f"{ctl.threshold:.2f}")
        self.fp_label.setText(expected_fp(ctl.froc_figures, ctl.threshold))
        shown = sum(ctl.visible(r) for r in ctl.rows)
        acc = sum(r.marker.status == "accepted" for r in ctl.rows)
        rej = sum(r.marker.status == "rejected" for r in ctl.rows)
        cats = [r.attrs.get("lungrads") for r in ctl.report_nodules() if r.attrs.get("lungrads")]
        order = ("1", "2", "3", "4A", "4B", "4X")
        exam = max(cats, key=lambda c: order.index(c) if c in order else -1) if cats else None
        self.summary.setText(f"{len(ctl.rows)} nodules, {shown} shown; {acc} accepted, {rej} rejected"
                             + (f"; highest accepted Lung-RADS {exam} (suggested)" if exam else ""))

    def row_at(self, table_row: int) -> NoduleRow | None:
        item = self.table.item(table_row, 0)
        n = item.data(ROW_ROLE) if item is not None else None
        return self.ctl.rows[n] if isinstance(n, int) and 0 <= n < len(self.ctl.rows) else None

    def table_row_of(self, row: NoduleRow) -> int:
        for r in range(self.table.rowCount()):
            if self.row_at(r) is row:
                return r
        return -1

    def selected_rows(self) -> list[NoduleRow]:
        t = self.table
        rows = sorted({i.row() for i in t.selectedIndexes()}) or ([t.currentRow()] if t.currentRow() >= 0 else [])
        return [r for r in (self.row_at(i) for i in rows) if r is not None]

    def _selected(self) -> None:
        rows = self.selected_rows()
        if len(rows) == 1:
            self.ctl.jump(rows[0])

    def _jump_row(self, table_row: int) -> None:
        row = self.row_at(table_row)
        if row is not None:
            self.ctl.jump(row)

    def set_status(self, status: str) -> None:
        """Accept or reject the selected rows; the selection moves on to the next shown row."""
        rows = self.selected_rows()
        if not rows:
            return
        last = max(self.table_row_of(r) for r in rows)
        self.ctl.set_status(rows, status)
        t = self.table
        for r in range(last + 1, t.rowCount()):
            if not t.isRowHidden(r):
                t.selectRow(r)
                break
