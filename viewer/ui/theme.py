"""The dark reading-room theme: Fusion style with a dark palette (bright UIs dazzle readers)."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

_COLOURS = {
    QPalette.ColorRole.Window: "#1e2125",
    QPalette.ColorRole.WindowText: "#d7dae0",
    QPalette.ColorRole.Base: "#16181b",
    QPalette.ColorRole.AlternateBase: "#1c1f23",
    QPalette.ColorRole.ToolTipBase: "#2a2e34",
    QPalette.ColorRole.ToolTipText: "#e6e6e6",
    QPalette.ColorRole.Text: "#d7dae0",
    QPalette.ColorRole.Button: "#262a2f",
    QPalette.ColorRole.ButtonText: "#d7dae0",
    QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Highlight: "#2f6db5",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#6aa6f0",
    QPalette.ColorRole.PlaceholderText: "#7c828c",
}

STYLE = """
QToolBar { background: #1a1d21; border: none; border-bottom: 1px solid #2c3036; spacing: 2px; padding: 2px; }
QToolButton { padding: 3px; border-radius: 3px; }
QToolButton:checked { background: #2f4a6b; }
QToolButton:hover { background: #30353c; }
QStatusBar { background: #1a1d21; border-top: 1px solid #2c3036; }
QStatusBar QLabel { padding: 0 6px; }
QDockWidget::title { background: #22262b; padding: 4px 6px; }
QTreeWidget { border: none; }
QMenu::separator { height: 1px; background: #353a41; margin: 4px 6px; }
"""


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    for role, colour in _COLOURS.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b7079"))
    app.setPalette(palette)
    app.setStyleSheet(STYLE)
