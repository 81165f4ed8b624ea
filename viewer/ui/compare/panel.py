"""The *Fusion* dock: what goes over the active view's series (any other open series or a heatmap),
its colour map, opacity and window, and the mode (blend, checkerboard, flicker)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from viewer.core.errors import HounsfieldError
from viewer.render.fusion import FUSION_MODES
from viewer.ui.compare.dialog import series_label

MODE_TEXT = {"blend": "Blend", "checkerboard": "Checkerboard", "flicker": "Flicker"}


class FusionPanel(QWidget):
    error = Signal(str)

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller, self.model = controller, controller.model
        self._syncing = False
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.bottom_label = QLabel("")
        self.bottom_label.setWordWrap(True)
        form.addRow("Bottom:", self.bottom_label)
        self.top = QComboBox()
        form.addRow("Top:", self.top)
        self.colormap = QComboBox()
        self.colormap.addItems(controller.colormap_names())
        form.addRow("Colour map:", self.colormap)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity_label = QLabel("50%")
        row = QHBoxLayout()
        row.addWidget(self.opacity, 1)
        row.addWidget(self.opacity_label)
        form.addRow("Opacity:", row)
        self.centre, self.width = QDoubleSpinBox(), QDoubleSpinBox()
        for box in (self.centre, self.width):
            box.setRange(-100000.0, 100000.0)
            box.setDecimals(2)
            box.setKeyboardTracking(False)
        self.width.setMinimum(0.001)
        row = QHBoxLayout()
        row.addWidget(QLabel("L"))
        row.addWidget(self.centre)
        row.addWidget(QLabel("W"))
        row.addWidget(self.width)
        form.addRow("Window:", row)
        layout.addLayout(form)
        modes = QHBoxLayout()
        self.mode_group = QButtonGroup(self)
        self.mode_buttons = {}
        for n, mode in enumerate(FUSION_MODES):
            b = self.mode_buttons[mode] = QRadioButton(MODE_TEXT[mode])
            self.mode_group.addButton(b, n)
            modes.addWidget(b)
        self.mode_buttons["blend"].setChecked(True)
        layout.addLayout(modes)
        self.enabled = QCheckBox("Fuse the top layer over the bottom series")
        layout.addWidget(self.enabled)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #9aa;")
        layout.addWidget(self.note)
        layout.addStretch(1)
        self.enabled.toggled.connect(self._toggled)
        self.top.currentIndexChanged.connect(self._top_changed)
        self.colormap.currentTextChanged.connect(lambda name: self._change(colormap=name))
        self.opacity.valueChanged.connect(self._opacity)
        self.centre.valueChanged.connect(lambda _v: self._change(window=(self.centre.value(), self.width.value())))
        self.width.valueChanged.connect(lambda _v: self._change(window=(self.centre.value(), self.width.value())))
        self.mode_group.idClicked.connect(lambda n: self._change(mode=FUSION_MODES[n]))
        controller.fusion_changed.connect(self.sync)
        controller.registrations_changed.connect(self.refresh)
        self.model.active_changed.connect(lambda _s: self.refresh())
        self.model.viewport_changed.connect(lambda _s: self.refresh())
        self.model.series_added.connect(lambda _k: self.refresh())
        self.model.series_removed.connect(lambda _k: self.refresh())
        self.refresh()

    # the bottom is the fused series, else the active view's
    def bottom(self) -> str | None:
        f = self.controller.fusion
        if f is not None:
            return f.bottom
        state = self.model.active_state
        if state is None or self.model.viewports[self.model.active].plane not in ("axial", "coronal", "sagittal"):
            state = next((self.model.state(s) for s in range(3) if self.model.state(s) is not None), None)
        return state.key if state is not None else None

    def refresh(self) -> None:
        """Fill the top list for the current bottom series."""
        if self._syncing:
            return
        self._syncing = True
        try:
            bottom = self.bottom()
            self.bottom_label.setText(series_label(self.model.series[bottom]) if bottom else "(no series)")
            current = self.top.currentData()
            self.top.clear()
            choices = self.controller.top_choices(bottom) if bottom else []
            joined = [c for c in choices if self._joined(bottom, c[0])]
            for ident, label in joined + [c for c in choices if c not in joined]:
                self.top.addItem(label, ident)
            f = self.controller.fusion
            want = f.top if f is not None else current
            idx = self.top.findData(want) if want is not None else -1
            self.top.setCurrentIndex(idx if idx >= 0 else 0 if self.top.count() else -1)
        finally:
            self._syncing = False
        self.sync()

    def _joined(self, bottom: str, ident: str) -> bool:
        key = ident.split("|")[0].removeprefix("heatmap:")
        return key == bottom or self.model.map_point(bottom, key, self.model.series[bottom].point) is not None

    def sync(self) -> None:
        """Show the fusion's settings (or the chosen top's defaults)."""
        if self._syncing:
            return
        self._syncing = True
        try:
            f = self.controller.fusion
            self.enabled.setChecked(f is not None)
            if f is None:
                bottom, top = self.bottom(), self.top.currentData()
                try:
                    f = self.controller.defaults(bottom, top) if bottom and top else None
                except HounsfieldError:
                    f = None
            if f is not None:
                self.colormap.setCurrentText(f.colormap)
                self.opacity.setValue(int(round(100 * f.opacity)))
                self.opacity_label.setText(f"{int(round(100 * f.opacity))}%")
                self.centre.setValue(f.window[0])
                self.width.setValue(f.window[1])
                self.mode_buttons[f.mode].setChecked(True)
            self.note.setText(self._note())
        finally:
            self._syncing = False

    def _note(self) -> str:
        f = self.controller.fusion
        if f is None:
            return "Register the series first (Compare > Register to...) unless they share a frame of reference."
        if f.mode == "checkerboard":
            return "Checkerboard: edges continue across the squares where the registration is right."
        if f.mode == "flicker":
            return "Flicker: the top and the bottom in turn; what jumps is misregistered."
        return ""

    # changes
    def current(self):
        """The fusion the panel describes."""
        from viewer.ui.compare.controller import Fusion

        mode = FUSION_MODES[max(0, self.mode_group.checkedId())]
        return Fusion(self.bottom(), self.top.currentData(), self.colormap.currentText(), self.opacity.value() / 100.0,
                      (self.centre.value(), self.width.value()), mode)

    def _apply(self, fusion) -> None:
        try:
            self.controller.set_fusion(fusion)
        except HounsfieldError as exc:
            self.error.emit(str(exc))
            self.sync()

    def _toggled(self, on: bool) -> None:
        if self._syncing:
            return
        if not on:
            self._apply(None)
        elif self.bottom() and self.top.currentData():
            self._apply(self.current())
        else:
            self.error.emit("Open a second series (or an AI heatmap) to fuse over this one.")
            self.sync()

    def _top_changed(self, _n: int) -> None:
        if self._syncing:
            return
        top, bottom = self.top.currentData(), self.bottom()
        if not (top and bottom):
            return
        try:
            d = self.controller.defaults(bottom, top)
        except HounsfieldError:
            return
        if self.controller.fusion is not None:
            self._apply(type(d)(bottom, top, d.colormap, self.opacity.value() / 100.0, d.window,
                                self.controller.fusion.mode))
        else:
            self.sync()

    def _opacity(self, value: int) -> None:
        self.opacity_label.setText(f"{value}%")
        self._change(opacity=value / 100.0)

    def _change(self, **changes) -> None:
        if self._syncing or self.controller.fusion is None:
            return
        try:
            self.controller.update(**changes)
        except HounsfieldError as exc:
            self.error.emit(str(exc))
