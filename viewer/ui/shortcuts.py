"""The keyboard and mouse shortcut sheet (F1), made from the window's command table."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

from viewer.ui.actions import shortcut_rows


def sheet_html(rows=None) -> str:
    """The sheet of ``rows`` (section, keys, what); the main window's own commands when None."""
    parts = ["<style>td { padding: 2px 10px 2px 0; } th { text-align: left; padding-top: 10px; "
             "color: #f0c070; } .k { font-family: monospace; color: #9fc5ff; white-space: nowrap; }</style>",
             "<table>"]
    section = None
    for sec, keys, what in shortcut_rows() if rows is None else rows:
        if sec != section:
            section = sec
            parts.append(f"<tr><th colspan=2>{escape(sec)}</th></tr>")
        parts.append(f"<tr><td class=k>{escape(keys)}</td><td>{escape(what)}</td></tr>")
    parts.append("</table>")
    return "".join(parts)


class ShortcutSheet(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Hounsfield: keyboard and mouse")
        self.setWindowFlag(Qt.WindowType.WindowContextHelpButtonHint, False)
        self.resize(620, 640)
        text = QTextBrowser()
        table = getattr(parent, "commands", None)  # the window's command table: every feature's commands
        text.setHtml(sheet_html(table.rows() if table is not None else None))
        text.setOpenLinks(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)
