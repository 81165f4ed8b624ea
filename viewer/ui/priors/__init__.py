"""Priors, hanging protocols and cine in the main window (``window.features.priors``).

- a "Priors" dock listing the same patient's other studies (local index, grouped by date, newest
  first; and what the PACS answered, on request), with *Compare with prior* and *Query PACS*;
- the Priors menu: Compare with prior (Ctrl+Shift+P), Query PACS for priors, Save layout as hanging
  protocol..., Reload hanging protocols;
- hanging protocols applied when a study opens and when a prior is added (``controller.py``);
- the cine player (``viewer.ui.cine``: Space, the Cine toolbar, View > Cine).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.ui import cine
from viewer.ui.actions import Command
from viewer.ui.annotations import dicom_date
from viewer.ui.feature import Feature
from viewer.ui.priors.controller import PriorsController

__all__ = ["PriorsController", "PriorsFeature"]

ROLE = Qt.ItemDataRole.UserRole


def _age(date: str, current: str) -> str:
    """'3 months earlier' between two YYYYMMDD dates ('' when either is unknown)."""
    from datetime import date as Date

    try:
        a = Date(int(date[:4]), int(date[4:6]), int(date[6:8]))
        b = Date(int(current[:4]), int(current[4:6]), int(current[6:8]))
    except (ValueError, IndexError):
        return ""
    days = (b - a).days
    if days == 0:
        return "same day"
    later = days < 0
    days = abs(days)
    span = (f"{days} days" if days < 60 else f"{round(days / 30.4)} months" if days < 730
            else f"{days / 365.25:.1f} years")
    return f"{span} {'later' if later else 'earlier'}"


class PriorsPanel(QWidget):
    def __init__(self, controller: PriorsController, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.title = QLabel("No study open.")
        self.title.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Date / study", "Images"])
        self.tree.setRootIsDecorated(True)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        self.tree.setWordWrap(True)
        self.tree.itemDoubleClicked.connect(self._on_double_click)
        self.tree.itemSelectionChanged.connect(self._sync_buttons)
        self.compare_button = QPushButton("Compare with prior")
        self.compare_button.setToolTip("Open the selected prior (or the newest) beside the current study")
        self.compare_button.clicked.connect(self.compare_selected)
        self.pacs_button = QPushButton("Query PACS for priors")
        self.pacs_button.setToolTip("Ask the configured PACS for this patient's other studies")
        self.pacs_button.clicked.connect(controller.query_pacs)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compare_button)
        buttons.addWidget(self.pacs_button)
        self.protocol_label = QLabel("")
        self.protocol_label.setStyleSheet("color: #9aa4b0;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.protocol_label)
        controller.priors_changed.connect(self.populate)
        controller.pacs_changed.connect(self.populate)
        controller.hung.connect(lambda name: self.protocol_label.setText(f"Hanging protocol: {name}"))
        self.populate()

    def populate(self) -> None:
        from viewer.core.priors import by_date

        ctl = self.controller
        self.tree.clear()
        state = ctl.model.series.get(ctl.current_key or "")
        if state is None:
            self.title.setText("No study open.")
            self._sync_buttons()
            return
        src = state.volume.source
        current_date = src.study_date
        if ctl.studies is None:
            self.title.setText("Looking for this patient's other studies...")
        elif not src.patient_id:
            self.title.setText("This study has no patient ID: its priors cannot be found.")
        else:
            n = len(ctl.priors)
            self.title.setText(f"{n} other stud{'y' if n == 1 else 'ies'} of patient {src.patient_id} here"
                               f"; current study of {dicom_date(current_date) or 'unknown date'}.")
        for label, studies in (("", ctl.priors), ("On PACS: ", ctl.remote)):
            for date, group in by_date(studies):
                age = _age(date, current_date)
                head = QTreeWidgetItem(self.tree, [f"{label}{dicom_date(date) or 'No date'}"
                                                   + (f"  ({age})" if age else ""), ""])
                font = head.font(0)
                font.setBold(True)
                head.setFont(0, font)
                for st in group:
                    images = sum(s.images for s in st.series)
                    detail = ", ".join(x for x in ("/".join(st.modalities),
                                                   f"{len(st.series)} series" if st.series else "",
                                                   f"on {st.node}" if st.node else "") if x)
                    item = QTreeWidgetItem(head, [f"{st.description or 'Study'}\n{detail}",
                                                  str(images) if images else ""])
                    item.setData(0, ROLE, st)
                    item.setToolTip(0, "Double-click to compare with the current study" if st.local
                                    else "Double-click to retrieve it from the PACS")
        self.tree.expandAll()
        first = self._study_items()
        if first:
            self.tree.setCurrentItem(first[0])
        self._sync_buttons()

    def _study_items(self) -> list[QTreeWidgetItem]:
        out = []
        for i in range(self.tree.topLevelItemCount()):
            head = self.tree.topLevelItem(i)
            out += [head.child(j) for j in range(head.childCount())]
        return out

    def selected(self):
        item = self.tree.currentItem()
        return item.data(0, ROLE) if item is not None else None

    def _sync_buttons(self) -> None:
        st = self.selected()
        self.compare_button.setEnabled(st is not None and st.local)
        self.pacs_button.setEnabled(self.controller.current_key is not None)

    def compare_selected(self) -> None:
        self.controller.compare(self.selected())

    def _on_double_click(self, item: QTreeWidgetItem, _col: int) -> None:
        st = item.data(0, ROLE)
        if st is None:
            return
        if st.local:
            self.controller.compare(st)
        else:
            self.controller.retrieve(st)


class PriorsFeature(Feature):
    name = "priors"

    def __init__(self, window, workspace):
        super().__init__(window, workspace)
        ctl = self.controller = PriorsController(window)
        self.panel = PriorsPanel(ctl)
        dock = self.dock = QDockWidget("Priors", window)
        dock.setObjectName("priors")
        dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        browser = getattr(window, "browser_dock", None)
        if browser is not None:
            window.splitDockWidget(browser, dock, Qt.Orientation.Vertical)
        menu = self.menu = self.add_menu("P&riors")
        a = self.commands
        for cmd, handler in (
                (Command("priors_compare", "Compare with prior", "Priors", ("Ctrl+Shift+P",),
                         tip="Open the selected (or newest) prior beside the current study in the same planes"),
                 self.panel.compare_selected),
                (Command("priors_query_pacs", "Query PACS for priors", "Priors",
                         tip="Ask the configured PACS for this patient's other studies"), ctl.query_pacs),
                (Command("priors_save_protocol", "Save layout as hanging protocol...", "Priors",
                         tip="The current layout, planes and windows become your rule for studies like this one"),
                 self.save_protocol),
                (Command("priors_reload_protocols", "Reload hanging protocols", "Priors"), ctl.reload_protocols)):
            menu.addAction(a.add(cmd, handler))
        menu.addSeparator()
        menu.addAction(a.add(Command("priors_panel", "Priors panel", "Priors"), action=dock.toggleViewAction()))
        ctl.priors_changed.connect(self._raise_when_found)
        self.cine = cine.install(self, window)

    def _raise_when_found(self) -> None:
        if self.controller.priors and not self.dock.isVisible():
            self.dock.show()

    def save_protocol(self, name: str | None = None):
        """Ask for a name (unless given) and save the layout as the reader's hanging protocol."""
        ctl = self.controller
        if name is None:
            from PySide6.QtWidgets import QInputDialog

            default = f"My {ctl.applied.name}" if ctl.applied is not None else "My layout"
            name, ok = QInputDialog.getText(self.window, "Save layout as hanging protocol",
                                            "Name of the rule (studies like this one will open this way):",
                                            text=default)
            if not ok:
                return None
        path = ctl.save_protocol(name)
        if path is not None:
            self.window.statusBar().showMessage(f"Hanging protocol saved in {path}.", 10000)
        return path

    def shutdown(self) -> None:
        self.cine.stop()
        self.controller.shutdown()
