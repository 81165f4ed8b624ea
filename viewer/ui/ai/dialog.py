"""The dialog that starts a plugin: its parameters (a generated form), the device, its model card."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QTextBrowser,
    QVBoxLayout,
)

from viewer.ai.api import PluginInfo
from viewer.ui.ai.form import ParameterForm, card_html

DEVICES = (("Automatic (GPU when present)", "auto"), ("CPU only", "cpu"))


class RunDialog(QDialog):
    def __init__(self, info: PluginInfo, series_label: str, device: str = "auto", parent=None):
        super().__init__(parent)
        self.info = info
        self.setWindowTitle(f"Run {info.name}")
        self.setMinimumWidth(560)
        layout = QVBoxLayout(self)
        head = QLabel(f"<b>{info.name}</b> {info.version} &nbsp;·&nbsp; {info.task.value}<br>"
                      f"on <i>{series_label}</i>")
        head.setWordWrap(True)
        layout.addWidget(head)
        self.form = ParameterForm(info.parameters)
        layout.addWidget(self.form)
        extra = QFormLayout()
        self.device = QComboBox()
        self.device.setObjectName("device")
        for text, value in DEVICES:
            self.device.addItem(text, value)
        self.device.setCurrentIndex(1 if device == "cpu" else 0)
        extra.addRow("Device", self.device)
        layout.addLayout(extra)
        card = QTextBrowser()
        card.setObjectName("model_card")
        card.setHtml(card_html(info.card, info.description))
        card.setMinimumHeight(220)
        layout.addWidget(QLabel("<b>Model card</b>"))
        layout.addWidget(card, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.run_button = buttons.addButton("Run", QDialogButtonBox.ButtonRole.AcceptRole)
        self.run_button.setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def values(self) -> dict:
        return self.form.values()

    def chosen_device(self) -> str:
        return self.device.currentData()
