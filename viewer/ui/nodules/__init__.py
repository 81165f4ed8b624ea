"""The lung-nodule read in the main window: the *Nodules* dock (``NodulesPanel``), the accept and
reject keys (Y, N), the "Add nodule" tool (Shift+N: one click in a 2D view measures and adds a
nodule the AI missed) and the nodule report (SR TID 1500 + SEG + CSV through
``plugins.lung_nodules.report``).  ``NodulesFeature`` is what the main window installs
(``window.features.nodules``); the work is done by ``NodulesController`` (no widgets).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QFileDialog

from viewer.core.errors import HounsfieldError
from viewer.ui.actions import Command
from viewer.ui.feature import Feature
from viewer.ui.interaction import attach
from viewer.ui.nodules.controller import TOOL, NodulesController, is_nodule_set
from viewer.ui.nodules.panel import NodulesPanel


class AddNoduleTool:
    """One click in a 2D view: a nodule there, measured; then the tool returns to window/level."""

    def __init__(self, view, feature):
        self.view, self.feature = view, feature

    def press(self, pos, modifiers) -> None:
        lps = self.view.lps_at(pos)
        if lps is None:
            return
        self.feature.add_at(lps)

    def move(self, pos) -> None:
        pass

    def release(self, pos) -> None:
        pass


class NodulesFeature(Feature):
    name = "nodules"

    def __init__(self, window, workspace):
        super().__init__(window, workspace)
        ctl = self.controller = NodulesController(window, workspace)
        workspace.tools.register(TOOL, "Add nodule (click on it)", "review", "Shift+N", "add nodule")
        attach(TOOL, AddNoduleTool, self, workspace.tools)
        self.panel = NodulesPanel(ctl, self.report, lambda: self.add_action.trigger(), self.edit_markers)
        dock = self.dock = QDockWidget("Nodules", window)
        dock.setObjectName("nodules")
        dock.setWidget(self.panel)
        self.panel.setMinimumWidth(580)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        dock.hide()
        table = self.commands
        menu = self.menu = self.add_menu("&Nodules")
        self.actions = {
            "dock": table.add(Command("nodules_dock", "Nodules panel", "Nodules"), action=dock.toggleViewAction()),
            "accept": table.add(Command("nodule_accept", "Accept the selected nodule", "Nodules", ("Y",)),
                                lambda: self.panel.set_status("accepted")),
            "reject": table.add(Command("nodule_reject", "Reject the selected nodule", "Nodules", ("N",)),
                                lambda: self.panel.set_status("rejected")),
            "add": table.add(Command("tool_nodule_add", "Add a nodule the AI missed (click on it)", "Nodules",
                                     ("Shift+N",), checkable=True),
                             lambda on: window.model.set_tool(TOOL if on else "wl")),
            "report": table.add(Command("nodules_report", "Write the nodule report (SR, SEG, CSV)...", "Nodules"),
                                self.report),
        }
        self.add_action = self.actions["add"]
        for act in self.actions.values():
            menu.addAction(act)
        window.model.tool_changed.connect(lambda *_a: self.add_action.setChecked(window.model.tool == TOOL))
        ctl.message.connect(window.show_error)
        ctl.report_done.connect(self._report_done)
        ctl.report_failed.connect(window.show_error)
        self._placed = False
        workspace.overlay_added.connect(self._overlay_added)
        ai = getattr(window.features, "ai", None)
        if ai is not None:  # the AI results dock shows itself after the run's overlays: come back on top
            ai.controller.result_added.connect(self._result_added)
        ctl.refresh()

    def _result_added(self, entry) -> None:
        if any(map(is_nodule_set, entry.marker_sets)):
            self.controller.refresh()  # the run's provenance (its FROC figures) is known now
            self.show_dock()

    def _overlay_added(self, _series, overlay) -> None:
        from viewer.core.layers import MarkerSet

        if isinstance(overlay, MarkerSet) and is_nodule_set(overlay):
            self.show_dock()

    def show_dock(self) -> None:
        """Show the panel, the first time as a tab beside the AI results (room for its table)."""
        ai = getattr(self.window.features, "ai", None)
        if not self._placed and ai is not None:
            self.window.tabifyDockWidget(ai.dock, self.dock)
            self._placed = True
            self.dock.show()
            self.window.resizeDocks([self.dock], [max(360, self.window.height() // 2)], Qt.Orientation.Vertical)
        self.dock.show()
        self.dock.raise_()

    def add_at(self, lps) -> None:
        """The add tool's click: measure a nodule there (the tool goes back to window/level)."""
        self.window.model.set_tool("wl")
        try:
            self.controller.add_at(lps)
        except HounsfieldError as exc:
            self.window.show_error(str(exc))

    def edit_markers(self) -> None:
        """The AI's marker tool: drag inside a marker to move it, on its rim to resize it."""
        from viewer.ui.ai import markers

        self.window.model.set_tool(markers.TOOL)
        self.window.statusBar().showMessage("Drag inside a nodule's marker to move it, on its rim to resize it; "
                                            "it is measured again when you let go.", 8000)

    def report(self, folder: str | None = None):
        """Write the SR of the accepted nodules, their SEG and a CSV into ``folder`` (asked when None)."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self.window, "Write the nodule report into")
            if not folder:
                return None
        try:
            thread = self.controller.write_report(folder)
        except HounsfieldError as exc:
            self.window.show_error(str(exc))
            return None
        self.window.statusBar().showMessage(f"Writing the nodule report to {folder}...")
        return thread

    def _report_done(self, out: dict) -> None:
        n = sum(len(v) for v in out.values())
        self.window.statusBar().showMessage(f"Nodule report: {n} files written ({', '.join(sorted(out))}).", 10000)

    def shutdown(self) -> None:
        self.controller.shutdown()
