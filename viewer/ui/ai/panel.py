"""The AI results panel (a dock): one box per finished run with its provenance, comparison
buttons and, per heatmap, visibility, opacity, threshold and colour map."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from viewer.core.layers import HEATMAP_COLORMAPS, HeatmapLayer
from viewer.core.workspace import Applied


def _slider(value: float, tip: str, name: str) -> QSlider:
    s = QSlider(Qt.Orientation.Horizontal)
    s.setRange(0, 100)
    s.setValue(round(value * 100))
    s.setToolTip(tip)
    s.setObjectName(name)
    return s


class HeatmapControls(QWidget):
    def __init__(self, layer: HeatmapLayer, parent=None):
        super().__init__(parent)
        self.layer = layer
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.visible = QCheckBox(layer.name)
        self.visible.setChecked(layer.visible)
        self.visible.setToolTip(layer.description or layer.name)
        self.colormap = QComboBox()
        self.colormap.addItems(list(HEATMAP_COLORMAPS))
        self.colormap.setCurrentText(layer.colormap)
        self.opacity = _slider(layer.opacity, "Opacity of the heatmap", "opacity")
        self.threshold = _slider(layer.threshold, "Values below this are not drawn", "threshold")
        grid.addWidget(self.visible, 0, 0)
        grid.addWidget(self.colormap, 0, 1)
        grid.addWidget(QLabel("Opacity"), 1, 0)
        grid.addWidget(self.opacity, 1, 1)
        grid.addWidget(QLabel("Threshold"), 2, 0)
        grid.addWidget(self.threshold, 2, 1)
        self.visible.toggled.connect(lambda on: layer.set(visible=on))
        self.colormap.currentTextChanged.connect(lambda name: layer.set(colormap=name))
        self.opacity.valueChanged.connect(lambda v: layer.set(opacity=v / 100))
        self.threshold.valueChanged.connect(lambda v: layer.set(threshold=v / 100))
        layer.changed.connect(self.sync)

    def sync(self) -> None:
        """Show the layer's state (it may change from elsewhere: a test, a script, another panel)."""
        layer = self.layer
        for w, setter, value in ((self.visible, "setChecked", layer.visible),
                                 (self.colormap, "setCurrentText", layer.colormap),
                                 (self.opacity, "setValue", round(layer.opacity * 100)),
                                 (self.threshold, "setValue", round(layer.threshold * 100))):
            w.blockSignals(True)
            getattr(w, setter)(value)
            w.blockSignals(False)

    def dispose(self) -> None:
        self.layer.changed.disconnect(self.sync)


class ResultBox(QGroupBox):
    jump_requested = Signal(object, object)  # entry, LPS point
    compare_requested = Signal(object)
    flicker_requested = Signal(object)
    remove_requested = Signal(object)

    def __init__(self, entry: Applied, parent=None):
        super().__init__(entry.title, parent)
        self.entry = entry
        layout = QVBoxLayout(self)
        info = QLabel(entry.summary())
        info.setWordWrap(True)
        info.setStyleSheet("color: #aab;")
        layout.addWidget(info)
        if entry.derived_keys:
            row = QHBoxLayout()
            for text, sig, tip in (("Side by side", self.compare_requested, "Original and result next to each other"),
                                   ("Flicker (T)", self.flicker_requested, "Swap original and result in the view")):
                b = QPushButton(text)
                b.setToolTip(tip)
                b.clicked.connect(lambda _c=False, s=sig: s.emit(self.entry))
                row.addWidget(b)
            layout.addLayout(row)
        self.heatmap_controls = [HeatmapControls(layer) for layer in entry.heatmaps]
        for c in self.heatmap_controls:
            layout.addWidget(c)
        for lm in entry.label_maps:
            names = ", ".join(s.name for s in lm.segments) or "no segments"
            where = "editable in the Segments panel, which says who changed it" if entry.segmentations \
                else "not editable"
            label = QLabel(f"Segmentation {lm.name}: {names} (the model's original is kept; {where})")
            label.setWordWrap(True)
            layout.addWidget(label)
        self.detection_tables = []
        for ms in entry.marker_sets:
            from viewer.ui.ai.markers import DetectionTable

            table = DetectionTable(ms)
            table.jump_requested.connect(lambda lps, e=entry: self.jump_requested.emit(e, lps))
            layout.addWidget(table)
            self.detection_tables.append(table)
        from viewer.ui.ai.review import ReviewSection

        self.review = ReviewSection(entry)  # what the radiologist changed, live
        layout.addWidget(self.review)
        for note in entry.notes:
            n = QLabel(note)
            n.setWordWrap(True)
            layout.addWidget(n)
        remove = QPushButton("Remove result")
        remove.clicked.connect(lambda: self.remove_requested.emit(self.entry))
        layout.addWidget(remove, 0, Qt.AlignmentFlag.AlignRight)


class ResultsPanel(QScrollArea):
    jump_requested = Signal(object, object)
    compare_requested = Signal(object)
    flicker_requested = Signal(object)
    remove_requested = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        inner = QWidget()
        self.box_layout = QVBoxLayout(inner)
        self.empty = QLabel("No AI results yet.\nRun a plugin from the AI menu.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setStyleSheet("color: #889;")
        self.box_layout.addWidget(self.empty)
        self.box_layout.addStretch(1)
        self.setWidget(inner)
        self.boxes: list[ResultBox] = []

    def add(self, entry: Applied) -> ResultBox:
        box = ResultBox(entry)
        box.compare_requested.connect(self.compare_requested)
        box.jump_requested.connect(self.jump_requested)
        box.flicker_requested.connect(self.flicker_requested)
        box.remove_requested.connect(self.remove_requested)
        self.box_layout.insertWidget(0, box)
        self.boxes.insert(0, box)
        self.empty.hide()
        return box

    def remove(self, entry: Applied) -> None:
        for box in [b for b in self.boxes if b.entry is entry]:
            self.boxes.remove(box)
            for c in box.heatmap_controls + box.detection_tables + [box.review]:
                c.dispose()
            box.setParent(None)
            box.deleteLater()
        self.empty.setVisible(not self.boxes)
