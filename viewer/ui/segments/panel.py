"""The "Segments" dock: the segments of the edited segmentation (colour, name, shown, locked,
provenance), add / delete / jump to, the editing tools and their settings, undo / redo, the
whole-segment operations and how segments are drawn.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from viewer.ui.segments.tools import TOOLS

COLUMNS = ("", "Segment", "Shown", "Locked", "Source")


class SegmentsPanel(QWidget):
    def __init__(self, feature, parent=None):
        super().__init__(parent)
        self.window, self.controller = feature.window, feature.controller
        self._updating = False
        self.title = QLabel("No segmentation")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(0, 26)
        self.table.setColumnWidth(1, 130)
        self.table.setColumnWidth(2, 48)
        self.table.setColumnWidth(3, 50)
        self.table.itemChanged.connect(self._on_item)
        self.table.itemSelectionChanged.connect(self._on_select)
        self.table.cellDoubleClicked.connect(self._on_double)
        buttons = QHBoxLayout()
        for text, fn in (("Add", self.add), ("Delete", self.delete), ("Jump to", self.jump)):
            b = QPushButton(text)
            b.clicked.connect(fn)
            buttons.addWidget(b)
        tools = QGridLayout()
        self.tool_buttons = {}
        for n, name in enumerate(TOOLS):
            b = QToolButton()
            b.setDefaultAction(feature.tool_actions[name])
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            tools.addWidget(b, n // 3, n % 3)
            self.tool_buttons[name] = b
        c = self.controller
        self.brush = QDoubleSpinBox()
        self.brush.setRange(0.5, 100.0)
        self.brush.setSingleStep(0.5)
        self.brush.setSuffix(" mm")
        self.brush.setToolTip("Brush radius (, and . change it)")
        self.brush.valueChanged.connect(lambda v: self._set(brush_mm=float(v)))
        self.sphere = QCheckBox("3D (sphere)")
        self.sphere.toggled.connect(lambda on: self._set(sphere=bool(on)))
        self.lo, self.hi = QDoubleSpinBox(), QDoubleSpinBox()
        for box in (self.lo, self.hi):
            box.setRange(-3000, 5000)
            box.setDecimals(0)
            box.valueChanged.connect(lambda _v: self._set(hu_range=(self.lo.value(), self.hi.value())))
        self.tolerance = QDoubleSpinBox()
        self.tolerance.setRange(1, 2000)
        self.tolerance.setDecimals(0)
        self.tolerance.valueChanged.connect(lambda v: self._set(tolerance=float(v)))
        self.fill_range = QCheckBox("use HU range")
        self.fill_range.toggled.connect(lambda on: self._set(fill_uses_range=bool(on)))
        self.fill_3d = QCheckBox("3D")
        self.fill_3d.toggled.connect(lambda on: self._set(fill_3d=bool(on)))
        self.overwrite = QComboBox()
        self.overwrite.addItems(["Paint over other segments", "Paint only empty voxels"])
        self.overwrite.currentIndexChanged.connect(self._on_overwrite)
        self.mode = QComboBox()
        self.mode.addItems(["both", "fill", "outline"])
        self.mode.currentTextChanged.connect(self._on_style)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.valueChanged.connect(self._on_style)
        form = QFormLayout()
        row = QHBoxLayout()
        row.addWidget(self.brush)
        row.addWidget(self.sphere)
        form.addRow("Brush", row)
        row = QHBoxLayout()
        row.addWidget(self.lo)
        row.addWidget(QLabel("to"))
        row.addWidget(self.hi)
        form.addRow("HU range", row)
        row = QHBoxLayout()
        row.addWidget(self.tolerance)
        row.addWidget(self.fill_range)
        row.addWidget(self.fill_3d)
        form.addRow("Fill +-", row)
        form.addRow("Overlap", self.overwrite)
        row = QHBoxLayout()
        row.addWidget(self.mode)
        row.addWidget(self.opacity)
        form.addRow("Display", row)
        ops = QGridLayout()
        for n, name in enumerate(("undo", "redo", "fill_between", "smooth", "islands", "export")):
            b = QToolButton()
            b.setDefaultAction(feature.actions[name])
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            ops.addWidget(b, n // 3, n % 3)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addLayout(tools)
        layout.addLayout(form)
        layout.addLayout(ops)
        c.changed.connect(self.refresh)
        c.settings_changed.connect(self._sync_settings)
        self._sync_settings()
        self.refresh()

    # settings
    def _set(self, **kw) -> None:
        if not self._updating:
            self.controller.set_setting(**kw)

    def _sync_settings(self) -> None:
        c = self.controller.settings
        self._updating = True
        try:
            self.brush.setValue(c.brush_mm)
            self.sphere.setChecked(c.sphere)
            self.lo.setValue(c.hu_range[0])
            self.hi.setValue(c.hu_range[1])
            self.tolerance.setValue(c.tolerance)
            self.fill_range.setChecked(c.fill_uses_range)
            self.fill_3d.setChecked(c.fill_3d)
        finally:
            self._updating = False

    def _on_overwrite(self, index: int) -> None:
        ed = self.controller.editor()
        if ed is not None and not self._updating:
            ed.overwrite = ("all", "empty")[index]

    def _on_style(self, *_args) -> None:
        seg = self.controller.segmentation()
        if seg is not None and not self._updating:
            seg.set_style(display_mode=self.mode.currentText(), opacity=self.opacity.value() / 100.0)

    # the segment list
    def refresh(self) -> None:
        seg = self.controller.segmentation()
        self._updating = True
        try:
            self.table.setRowCount(0)
            if seg is None:
                self.title.setText("No segmentation: paint with the brush (B) or load one (Segment menu)")
                return
            self.title.setText(f"{seg.name}  ({len(seg.segments)} segments)")
            self.mode.setCurrentText(seg.display_mode)
            self.opacity.setValue(int(round(seg.opacity * 100)))
            ed = self.controller.editor(seg)
            if ed is not None:
                self.overwrite.setCurrentIndex(("all", "empty").index(ed.overwrite))
            for s in seg.segments:
                r = self.table.rowCount()
                self.table.insertRow(r)
                swatch = QTableWidgetItem("")
                swatch.setBackground(QColor(*s.color))
                swatch.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                swatch.setToolTip("Double-click to change the colour")
                name = QTableWidgetItem(s.name)
                name.setData(Qt.ItemDataRole.UserRole, s.number)
                name.setToolTip(f"{s.type[2]} ({s.category[2]}); {s.provenance}")
                shown, locked = QTableWidgetItem(), QTableWidgetItem()
                for item, on in ((shown, s.visible), (locked, s.locked)):
                    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
                    item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
                source = QTableWidgetItem(s.provenance)
                source.setFlags(Qt.ItemFlag.ItemIsEnabled)
                for col, item in enumerate((swatch, name, shown, locked, source)):
                    self.table.setItem(r, col, item)
                if s.number == seg.active:
                    self.table.selectRow(r)
        finally:
            self._updating = False

    def _segment_at(self, row: int):
        seg = self.controller.segmentation()
        item = self.table.item(row, 1)
        if seg is None or item is None:
            return None
        return seg.segment(int(item.data(Qt.ItemDataRole.UserRole)))

    def _on_item(self, item: QTableWidgetItem) -> None:
        if self._updating:
            return
        seg, s = self.controller.segmentation(), self._segment_at(item.row())
        if s is None:
            return
        col = item.column()
        if col == 1 and item.text().strip() and item.text() != s.name:
            seg.update_segment(s, name=item.text().strip())
        elif col == 2:
            seg.update_segment(s, visible=item.checkState() == Qt.CheckState.Checked)
        elif col == 3:
            seg.update_segment(s, locked=item.checkState() == Qt.CheckState.Checked)

    def _on_select(self) -> None:
        if self._updating:
            return
        rows = {i.row() for i in self.table.selectedItems()}
        seg = self.controller.segmentation()
        if rows and seg is not None:
            s = self._segment_at(min(rows))
            if s is not None:
                seg.set_active(s.number)

    def _on_double(self, row: int, col: int) -> None:
        s = self._segment_at(row)
        if col == 0 and s is not None:
            colour = QColorDialog.getColor(QColor(*s.color), self, f"Colour of {s.name}")
            if colour.isValid():
                self.recolour(s, (colour.red(), colour.green(), colour.blue()))

    # commands
    def recolour(self, s, rgb) -> None:
        self.controller.segmentation().update_segment(s, color=tuple(int(c) for c in rgb))

    def add(self) -> None:
        seg = self.controller.segmentation(create=True)
        if seg is not None:
            self.controller.editor(seg).add_segment()

    def delete(self) -> None:
        seg = self.controller.segmentation()
        s = seg.active_segment if seg is not None else None
        if s is not None:
            self.controller.editor(seg).remove_segment(s)

    def jump(self) -> None:
        """Move the crosshair to the centre of the selected segment's voxels."""
        seg, state = self.controller.segmentation(), self.controller.state()
        s = seg.active_segment if seg is not None else None
        box = seg.bbox(s) if s is not None else None
        if box is None:
            return
        m = seg.mask(s, box)
        k, j, i = (np.nonzero(m)[a].mean() + box[a].start for a in range(3))
        centre = seg.affine[:3, :3] @ [i, j, k] + seg.affine[:3, 3]
        # the nearest voxel of the segment to its centre, so that the crosshair lands on it
        idx = np.argwhere(m) + [b.start for b in box]
        best = idx[np.argmin(np.sum((idx - [k, j, i]) ** 2, axis=1))]
        centre = seg.affine[:3, :3] @ best[::-1].astype(float) + seg.affine[:3, 3]
        self.window.model.set_point(state.key, centre)
