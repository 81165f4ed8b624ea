"""The strip of controls above the 3D view: preset, mode, clipping box, standard views, and the
transfer-function edit read-out."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QMenu, QToolButton, QWidget

from viewer.render.scene3d import STANDARD_VIEWS

MODE_NAMES = {"composite": "Volume", "mip": "MIP", "minip": "MinIP"}


class View3DToolbar(QWidget):
    def __init__(self, view, parent=None):
        super().__init__(parent)
        self.view = view
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 1, 2, 1)
        layout.setSpacing(4)
        self.preset = QComboBox()
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
        self.edit_label = QLabel("")
        self.edit_label.setStyleSheet("color: #9aa3ad;")
        for w in (self.preset, self.mode, self.clip, self.views, self.edit_label):
            layout.addWidget(w)
        layout.addStretch(1)

    def set_presets(self, names: list[str], current: str) -> None:
        self.preset.blockSignals(True)
        self.preset.clear()
        self.preset.addItems(names)
        self.preset.setCurrentText(current)
        self.preset.blockSignals(False)

    def sync(self, preset: str, mode: str, clipping: bool, edit_text: str) -> None:
        for widget, fn in ((self.preset, lambda: self.preset.setCurrentText(preset)),
                           (self.mode, lambda: self.mode.setCurrentIndex(self.mode.findData(mode))),
                           (self.clip, lambda: self.clip.setChecked(clipping))):
            widget.blockSignals(True)
            fn()
            widget.blockSignals(False)
        self.preset.setEnabled(mode == "composite")
        self.edit_label.setText(edit_text)
