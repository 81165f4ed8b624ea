"""The run form of a plugin, generated from its typed parameters, and its model card as HTML."""

from __future__ import annotations

import html

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit, QSpinBox, QWidget

from viewer.ai.api import ModelCard, Parameter


def _editor(p: Parameter) -> QWidget:
    if p.kind == "float":
        w = QDoubleSpinBox()
        w.setDecimals(3 if (p.step or 0.1) < 0.01 else 2)
        w.setRange(p.minimum if p.minimum is not None else -1e9, p.maximum if p.maximum is not None else 1e9)
        w.setSingleStep(p.step or 0.1)
        w.setValue(float(p.default if p.default is not None else 0.0))
        if p.unit:
            w.setSuffix(f"  {p.unit}")
    elif p.kind == "int":
        w = QSpinBox()
        w.setRange(int(p.minimum) if p.minimum is not None else -2**31, int(p.maximum) if p.maximum is not None
                   else 2**31 - 1)
        w.setSingleStep(int(p.step or 1))
        w.setValue(int(p.default if p.default is not None else 0))
        if p.unit:
            w.setSuffix(f"  {p.unit}")
    elif p.kind == "bool":
        w = QCheckBox()
        w.setChecked(bool(p.default))
    elif p.kind == "choice":
        w = QComboBox()
        w.addItems(list(p.choices))
        if p.default in p.choices:
            w.setCurrentText(str(p.default))
    else:
        w = QLineEdit(str(p.default or ""))
    w.setToolTip(p.help)
    w.setObjectName(f"param_{p.name}")
    return w


def _value(p: Parameter, w: QWidget):
    if p.kind == "float":
        return w.value()
    if p.kind == "int":
        return w.value()
    if p.kind == "bool":
        return w.isChecked()
    if p.kind == "choice":
        return w.currentText()
    return w.text()


class ParameterForm(QWidget):
    """One editor per parameter (label, unit, help as tooltip); ``values()`` gives them typed."""

    def __init__(self, parameters, parent=None):
        super().__init__(parent)
        self.parameters = tuple(parameters)
        self.editors: dict[str, QWidget] = {}
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for p in self.parameters:
            w = _editor(p)
            self.editors[p.name] = w
            layout.addRow(p.label or p.name, w)

    def values(self) -> dict:
        return {p.name: _value(p, self.editors[p.name]) for p in self.parameters}

    def set_value(self, name: str, value) -> None:
        p = next(p for p in self.parameters if p.name == name)
        w = self.editors[name]
        if p.kind in ("float", "int"):
            w.setValue(value)
        elif p.kind == "bool":
            w.setChecked(bool(value))
        elif p.kind == "choice":
            w.setCurrentText(str(value))
        else:
            w.setText(str(value))


def card_html(card: ModelCard, description: str = "") -> str:
    """The model card as compact HTML: intended use, data, figures, limitations."""
    e = html.escape
    parts = []
    if description:
        parts.append(f"<p>{e(description)}</p>")
    for title, text in (("Intended use", card.intended_use), ("Training data", card.training_data),
                        ("Limitations", card.limitations), ("Hardware", card.hardware),
                        ("Licence", card.license)):
        if text:
            parts.append(f"<p><b>{title}.</b> {e(text)}</p>")
    if card.evaluation:
        rows = "".join(f"<tr><td>{e(f.metric)}</td><td align='right'>{f.value:g} {e(f.unit)}</td>"
                       f"<td>{e(f.dataset)}</td></tr>" for f in card.evaluation)
        parts.append("<p><b>Evaluation</b></p><table cellspacing='2' cellpadding='1'>"
                     "<tr><th align='left'>Metric</th><th>Value</th><th align='left'>Data</th></tr>"
                     f"{rows}</table>")
    if card.references:
        parts.append("<p><b>References.</b> " + "; ".join(e(r) for r in card.references) + "</p>")
    return "".join(parts) or "<p>No model card.</p>"
