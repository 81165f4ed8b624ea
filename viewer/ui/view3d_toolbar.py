"""The strip of controls above the 3D view: preset, mode, clipping box, standard views, the
transfer-function editor (a pop-up with shift and opacity sliders that update the rendering live;
Ctrl + drag in the view does the same) and its read-out."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSlider,
    QToolButton,
    QWidget,
    QWidgetAction,
)

from viewer.render.scene3d import STANDARD_VIEWS

MODE_NAMES = {"composite": "Volume", "mip": "MIP", "minip": "MinIP"}
SHIFT_RANGE = 1000  # HU (or signal units) either way
OPACITY_STEPS = 100  # slider steps per factor of 10 (opacity scale 0.05 .. 20, logarithmic)


class TransferEditor(QWidget):
    """Shift (real units) and opacity (x 0.05 .. x 20) of the current preset, live."""

    def __init__(self, view, parent=None):
        super().__init__(parent)
        self.view = view
        self.shift = QSlider(Qt.Orientation.Horizontal)
        self.shift.setObjectName("tf_shift")
        self.shift.setRange(-SHIFT_RANGE, SHIFT_RANGE)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setObjectName("tf_opacity")
        self.opacity.setRange(int(math.log10(0.05) * OPACITY_STEPS), int(math.log10(20) * OPACITY_STEPS))
        for slider in (self.shift, self.opacity):
            slider.setMinimumWidth(220)
            slider.valueChanged.connect(self._changed)
        self.shift_text, self.opacity_text = QLabel(), QLabel()
        reset = QPushButton("Reset to the preset")
        reset.clicked.connect(lambda: self.view.set_edit(0.0, 1.0))
        form = QFormLayout(self)
        form.addRow("Shift", self.shift)
        form.addRow("", self.shift_text)
        form.addRow("Opacity", self.opacity)
        form.addRow("", self.opacity_text)
        form.addRow(reset)

    def _changed(self) -> None:
        self.view.set_edit(float(self.shift.value()), 10 ** (self.opacity.value() / OPACITY_STEPS))

    def sync(self, shift: float, opacity: float) -> None:
        for slider, value in ((self.shift, round(shift)), (self.opacity, round(math.log10(opacity) * OPACITY_STEPS))):
            slider.blockSignals(True)
            slider.setValue(int(value))
            slider.blockSignals(False)
        self.shift_text.setText(f"{shift:+.0f} (the whole transfer function moves)")
        self.opacity_text.setText(f"{100 * opacity:.0f} % of the preset's opacity")


class View3DToolbar(QWidget):
    def __init__(self, view, parent=None):
        super().__init__(parent)
        self.view = view
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 1, 2, 1)
        layout.setSpacing(4)
        self.preset = QComboBox()
        # sized to its items whenever they change: the list is empty when the window first shows,
        # and 'MR default' was cut to 'MR defau' (the CT list's 'CT vessels (CTA)' too)
        self.preset.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.preset.setToolTip("Transfer-function preset (Ctrl + left drag in the view: shift / opacity)")
        self.preset.currentTextChanged.connect(lambda name: name and view.set_preset(name))
        self.mode = QComboBox()
        for key, text in MODE_NAMES.items():
            self.mode.addItem(text, key)
        self.mode.setToolTip("Composite volume rendering, maximum or minimum intensity projection")
        self.mode.currentIndexChanged.connect(lambda i: view.set_mode(self.mode.itemData(i)))
        self.clip = QToolButton()
        self.clip.setText("Clip")
        self.clip.setCheckable(True)
        self.clip.setToolTip("Clipping box: drag its faces in the view")
        self.clip.toggled.connect(view.set_clipping)
        self.views = QToolButton()
        self.views.setText("View")
        self.views.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.views)
        for name in STANDARD_VIEWS:
            menu.addAction(name.capitalize(), lambda n=name: view.standard_view(n))
        menu.addSeparator()
        menu.addAction("Reset 3D", view.reset_3d)
        self.views.setMenu(menu)
        self.edit = QToolButton()
        self.edit.setText("Edit")
        self.edit.setToolTip("Transfer function: shift and opacity (or Ctrl + left drag in the view)")
        self.edit.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.editor = TransferEditor(view)
        edit_menu = QMenu(self.edit)
        holder = QWidgetAction(edit_menu)
        holder.setDefaultWidget(self.editor)
        edit_menu.addAction(holder)
        self.edit.setMenu(edit_menu)
        self.edit_label = QLabel("")
        self.edit_label.setStyleSheet("color: #9aa3ad;")
        for w in (self.preset, self.mode, self.edit, self.clip, self.views, self.edit_label):
            layout.addWidget(w)
        layout.addStretch(1)

    def set_presets(self, names: list[str], current: str) -> None:
        self.preset.blockSignals(True)
        self.preset.clear()
        self.preset.addItems(names)
        self.preset.setCurrentText(current)
        self.preset.blockSignals(False)

    def sync(self, preset: str, mode: str, clipping: bool, edit) -> None:
        """Show the view's settings; ``edit`` is its TransferEdit (read out in composite mode)."""
        for widget, fn in ((self.preset, lambda: self.preset.setCurrentText(preset)),
                           (self.mode, lambda: self.mode.setCurrentIndex(self.mode.findData(mode))),
                           (self.clip, lambda: self.clip.setChecked(clipping))):
            widget.blockSignals(True)
            fn()
            widget.blockSignals(False)
        self.preset.setEnabled(mode == "composite")
        self.edit.setEnabled(mode == "composite")
        self.editor.sync(edit.shift, edit.opacity)
        edited = mode == "composite" and (edit.shift, edit.opacity) != (0.0, 1.0)
        self.edit_label.setText(f"shift {edit.shift:+.0f}  opacity {100 * edit.opacity:.0f}%" if edited else "")
