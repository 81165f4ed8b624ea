"""The keyboard and mouse shortcut sheet (F1), made from the command table."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

from viewer.ui.actions import shortcut_rows


def menu_rows(window) -> list[tuple[str, str, str]]:
    """(menu, keys, what) for actions with a shortcut that the features add to their own menus
    (Segment, Measure, AI, PACS...), which the command table does not list."""
    from viewer.ui.actions import COMMANDS

    known = {c.text for c in COMMANDS}
    rows = []
    for menu_action in window.menuBar().actions():
        menu = menu_action.menu()
        if menu is None:
            continue
        title = menu.title().replace("&", "")
        for act in menu.actions():
            keys = ", ".join(k.toString() for k in act.shortcuts() if not k.isEmpty())
            text = act.text().replace("&", "").rstrip(".")
            if keys and act.text() not in known:
                rows.append((title, keys, text))
    return rows


def sheet_html(extra_rows=()) -> str:
    parts = ["<style>td { padding: 2px 10px 2px 0; } th { text-align: left; padding-top: 10px; "
             "color: #f0c070; } .k { font-family: monospace; color: #9fc5ff; white-space: nowrap; }</style>",
             "<table>"]
    section = None
    for sec, keys, what in [*shortcut_rows(), *extra_rows]:
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
        text.setHtml(sheet_html(menu_rows(parent) if parent is not None and hasattr(parent, "menuBar") else ()))
        text.setOpenLinks(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)
