"""The *Lesion change* panel: the prior and current series, registering and carrying, the lesion table
(diameters, volume, change, percent, volume doubling time; a tick for RECIST target lesions) and the
target-lesion sum with the suggested RECIST 1.1 response and the rule behind it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.core.longitudinal import study_date

UID_ROLE = Qt.ItemDataRole.UserRole + 1
MATCHED = {"carried": "carrying its segment", "overlap": "overlap after carrying",
           "distance": "the nearest centroid"}
RESPONSE_COLOURS = {"PD": "#e0605a", "PR": "#6cc070", "CR": "#6cc070", "SD": "#d8c060", "NE": "#99a"}


def _mm(o) -> str:
    if o is None:
        return "–"
    return f"{o.long_mm:.1f} × {o.short_mm:.1f}" if o.short_mm else f"{o.long_mm:.1f}"


def _ml(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def series_text(s) -> str:
    d = study_date(s.volume)
    src = s.volume.source
    what = src.series_description or src.study_description or s.key
    return f"{d.isoformat() if d else 'no date'} · {what}"


class ChangesPanel(QWidget):
    COLUMNS = ("Lesion", "Target", "Organ", "Prior mm", "Now mm", "Prior mL", "Now mL", "Δ mL", "Δ %", "VDT",
               "Status")
    TIPS = ("Tracking identifier (the same lesion at both time points; its tracking UID in the tooltip)",
            "RECIST 1.1 target lesion (up to 5, 2 per organ, measurable at baseline); tick to choose yourself",
            "Organ (lung: a guess from the lesion's surroundings on CT)",
            "Long × short axis in the axial plane on the prior", "Long × short axis in the axial plane now",
            "Volume on the prior", "Volume now", "Volume change", "Volume change, percent of the prior",
            "Volume doubling time: interval x ln 2 / ln(V now / V prior), from the two StudyDates",
            "followed, new or gone; how the two were matched")

    def __init__(self, feature, parent=None):
        super().__init__(parent)
        self.feature = feature
        self.force_refresh = False
        self._series: list = []
        grid = QGridLayout()
        self.prior_box, self.current_box = QComboBox(), QComboBox()
        self.prior_box.setObjectName("changes_prior")
        self.current_box.setObjectName("changes_current")
        for box in (self.prior_box, self.current_box):
            box.currentIndexChanged.connect(lambda *_a: feature.refresh())
        grid.addWidget(QLabel("Prior"), 0, 0)
        grid.addWidget(self.prior_box, 0, 1)
        grid.addWidget(QLabel("Current"), 1, 0)
        grid.addWidget(self.current_box, 1, 1)
        self.kind_box = QComboBox()
        self.kind_box.setObjectName("changes_kind")
        self.kind_box.addItem("Rigid", "rigid")
        self.kind_box.addItem("Deformable (B-spline)", "deformable")
        self.kind_box.setToolTip("How Register (and carrying, when the pair is not registered yet) registers: rigid "
                                 "keeps the anatomy's shape; deformable follows breathing and positioning too")
        grid.addWidget(QLabel("Registration"), 2, 0)
        grid.addWidget(self.kind_box, 2, 1)
        grid.setColumnStretch(1, 1)
        buttons = QHBoxLayout()
        self.buttons = {}
        for name, text, fn, tip in (
                ("register", "Register", lambda: feature.register(), "Register the current series to the prior "
                 "(rigid or deformable as chosen above, mutual information); carrying does it when needed"),
                ("carry", "Carry segments from prior", feature.carry, "Carry the prior's segments and calipers "
                 "onto the current series through the registration"),
                ("fit", "Fit to current image", feature.fit, "Fit each carried segment to the current image "
                 "(one undoable edit per segment)"),
                ("side", "Side by side", feature.side_by_side, "Current and prior in the same plane, linked"),
                ("export", "Export SR + CSV...", lambda: feature.export(), "TID 1500 SRs of both time points "
                 "(shared tracking UIDs) with their SEGs, and a CSV")):
            b = self.buttons[name] = QPushButton(text)
            b.setObjectName(f"changes_{name}")
            b.setToolTip(tip)
            b.clicked.connect(fn)
            buttons.addWidget(b)
        busy = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("changes_cancel")
        self.cancel_button.clicked.connect(feature.cancel)
        self.cancel_button.hide()
        self.status = QLabel("")
        self.status.setObjectName("changes_status")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: #99a;")
        busy.addWidget(self.progress, 1)
        busy.addWidget(self.cancel_button)
        t = self.table = QTableWidget(0, len(self.COLUMNS))
        t.setObjectName("changes_table")
        t.setHorizontalHeaderLabels(self.COLUMNS)
        for c, tip in enumerate(self.TIPS):
            t.horizontalHeaderItem(c).setToolTip(tip)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.verticalHeader().hide()
        t.horizontalHeader().setStretchLastSection(True)
        t.itemChanged.connect(self._item_changed)
        self.sum_label = QLabel("")
        self.sum_label.setObjectName("changes_sum")
        self.sum_label.setWordWrap(True)
        self.response_label = QLabel("")
        self.response_label.setObjectName("changes_response")
        self.response_label.setWordWrap(True)
        self.response_label.setTextFormat(Qt.TextFormat.RichText)
        col = QVBoxLayout(self)
        col.addLayout(grid)
        col.addLayout(buttons)
        col.addLayout(busy)
        col.addWidget(self.status)
        col.addWidget(self.table, 1)
        col.addWidget(self.sum_label)
        col.addWidget(self.response_label)
        self.setMinimumWidth(640)

    # ------------------------------------------------------------------ series
    def set_series(self, series: list) -> None:
        keys = [s.key for s in series]
        if keys == [s.key for s in self._series]:
            return
        old = self.chosen()
        if old[0] == old[1]:  # one series before: nothing chosen yet
            old = (None, None)
        self._series = list(series)
        for box, default in ((self.prior_box, 0), (self.current_box, len(series) - 1)):
            box.blockSignals(True)
            box.clear()
            for s in series:
                box.addItem(series_text(s), s.key)
            want = old[0] if box is self.prior_box else old[1]
            idx = keys.index(want) if want in keys else default
            box.setCurrentIndex(max(0, idx))
            box.blockSignals(False)

    def chosen(self) -> tuple[str | None, str | None]:
        return self.prior_box.currentData(), self.current_box.currentData()

    def kind(self) -> str:
        """The registration chosen: "rigid" (the default) or "deformable"."""
        return self.kind_box.currentData() or "rigid"

    # ------------------------------------------------------------------ busy
    def set_busy(self, on: bool, text: str = "") -> None:
        self.progress.setVisible(on)
        self.cancel_button.setVisible(on)
        self.progress.setValue(0)
        for name in ("register", "carry", "fit", "export"):
            self.buttons[name].setEnabled(not on)
        self.kind_box.setEnabled(not on)
        if text:
            self.set_status(text)

    def set_progress(self, fraction: float, text: str) -> None:
        self.progress.setValue(int(round(100 * max(0.0, min(1.0, fraction)))))
        self.progress.setFormat(f"%p%  {text}")

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    # ------------------------------------------------------------------ table
    def show_comparison(self, cmp, response) -> None:
        t = self.table
        t.blockSignals(True)
        if cmp is None:
            t.setRowCount(0)
            self.sum_label.setText("")
            self.response_label.setText("Open a prior and a current study of the patient, and segment or measure "
                                        "the lesions on the prior.")
            t.blockSignals(False)
            return
        rows = cmp.changes
        t.setRowCount(len(rows))
        for n, c in enumerate(rows):
            pct = c.volume_change_pct
            cells = (c.track.identifier, "", c.track.organ or "–", _mm(c.prior), _mm(c.current),
                     _ml(c.prior.volume_ml if c.prior else None), _ml(c.current.volume_ml if c.current else None),
                     "–" if c.volume_change_ml is None else f"{c.volume_change_ml:+.2f}",
                     "–" if pct is None else f"{pct:+.0f}%", c.vdt_text,
                     c.status)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(UID_ROLE, c.track.uid)
                if col == 0:
                    item.setToolTip(f"Tracking UID {c.track.uid}")
                if col == len(cells) - 1 and c.matched_by:
                    item.setToolTip(f"Matched to the prior by {MATCHED.get(c.matched_by, c.matched_by)}")
                if col == 1:
                    item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
                    item.setCheckState(Qt.CheckState.Checked if c.target else Qt.CheckState.Unchecked)
                if col >= 3:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                t.setItem(n, col, item)
        t.resizeColumnsToContents()
        t.blockSignals(False)
        days = cmp.days
        d = f"{days} days apart" if days is not None else "no StudyDate: no interval"
        if response.category == "NE" and not response.targets:
            self.sum_label.setText(f"{d}. No target lesions.")
        else:
            self.sum_label.setText(
                f"{d}. Target lesions ({len(response.targets)}): sum of diameters {response.baseline_sum:.1f} mm "
                f"at baseline, nadir {response.nadir_sum:.1f} mm, now {response.current_sum:.1f} mm.")
        colour = RESPONSE_COLOURS.get(response.category, "#ccc")
        notes = "".join(f"<br><span style='color:#99a'>{n}</span>" for n in response.notes)
        self.response_label.setText(
            f"Suggested RECIST 1.1 response: <b style='color:{colour}'>{response.category}</b>"
            f"<br>Rule: {response.rule}{notes}")

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 1:
            self.feature.set_target(item.data(UID_ROLE), item.checkState() == Qt.CheckState.Checked)

    def row_of(self, identifier: str) -> dict[str, str]:
        """The cells of the row of the lesion ``identifier``, by column title (tests, scripts)."""
        t = self.table
        for r in range(t.rowCount()):
            if t.item(r, 0).text() == identifier:
                return {h: t.item(r, c).text() for c, h in enumerate(self.COLUMNS)}
        raise KeyError(identifier)
