"""The AI part of the main window: an "AI" menu listing the plugins (run dialogs generated from
their parameters), progress and Cancel in the status bar, and the AI results dock.

``AIFeature`` is what the main window installs (``window.features.ai``); nothing here imports torch.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QToolButton

from viewer.ui.actions import Command
from viewer.ui.ai import markers
from viewer.ui.ai.controller import AIController
from viewer.ui.ai.panel import ResultsPanel
from viewer.ui.feature import Feature


class AIFeature(Feature):
    name = "ai"

    def __init__(self, window, workspace, host=None):
        super().__init__(window, workspace)
        ctl = self.controller = AIController(window, workspace, host)
        markers.register(ctl)
        table = self.commands
        self.flicker_action = table.add(Command("ai_flicker", "Flicker original / AI result", "AI", ("T",)),
                                        ctl.flicker)
        self.marker_action = table.add(Command("tool_marker", "Move and resize detection markers (tool)", "AI",
                                               checkable=True),
                                       lambda on: window.model.set_tool(markers.TOOL if on else "wl"))
        self.cpu_action = table.add(Command("ai_cpu_only", "Use the CPU only", "AI", checkable=True),
                                    ctl.set_force_cpu)
        self.cancel_action = table.add(Command("ai_cancel", "Cancel the AI run", "AI"), ctl.cancel)
        self.performance_action = table.add(Command("ai_performance", "Performance...", "AI"),
                                            self.show_performance)
        # progress in the status bar
        bar = window.statusBar()
        self.label = QLabel("")
        self.bar = QProgressBar()
        self.bar.setFixedWidth(160)
        self.bar.setRange(0, 100)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel AI")
        self.cancel_button.setToolTip("Stop the AI run (it ends within a second)")
        self.cancel_button.clicked.connect(ctl.cancel)
        for w in self._status_widgets():
            bar.addPermanentWidget(w)
            w.hide()
        # the results dock
        self.panel = ResultsPanel()
        self.dock = self.add_dock("AI results", "ai_results", self.panel)
        self.dock_action = table.add(Command("ai_dock", "AI results", "AI"), action=self.dock.toggleViewAction())
        self.panel.compare_requested.connect(ctl.compare)
        self.panel.flicker_requested.connect(ctl.flicker_entry)
        self.panel.remove_requested.connect(ctl.remove)
        self.panel.jump_requested.connect(ctl.jump)
        ctl.started.connect(self._on_started)
        ctl.progressed.connect(self._on_progress)
        ctl.status.connect(self.label.setText)
        ctl.ended.connect(lambda: [w.hide() for w in self._status_widgets()])
        ctl.result_added.connect(self._on_result)
        workspace.result_reopened.connect(self._on_result)  # a segmentation came back with its AI original
        ctl.result_removed.connect(self.panel.remove)
        # the menu, filled when it opens
        menu = self.menu = self.add_menu("&AI")
        menu.setToolTipsVisible(True)
        menu.aboutToShow.connect(self.fill_menu)
        menu.addAction("Plugins are listed when this menu opens").setEnabled(False)

    def _status_widgets(self):
        return (self.label, self.bar, self.cancel_button)

    def _on_started(self, name: str) -> None:
        self.label.setText(f"{name}: starting")
        self.bar.setValue(0)
        for w in self._status_widgets():
            w.show()

    def _on_progress(self, fraction: float, message: str) -> None:
        ctl = self.controller
        if ctl.running:
            self.bar.setValue(round(100 * fraction))
            self.label.setText(f"{ctl.handle.info.name}: {message}")

    def _on_result(self, entry) -> None:
        self.panel.add(entry)
        self.dock.show()

    def fill_menu(self) -> None:
        """The plugins (enabled for the active series when they can run on it), then the AI commands."""
        ai, menu, window = self.controller, self.menu, self.window
        menu.clear()
        state = window.model.active_state
        try:
            plugins = ai.plugins()
        except Exception as exc:  # a broken plugin folder must not break the menu
            from viewer.logs import log

            log.exception("listing AI plugins failed")
            plugins = []
            menu.addAction(f"Plugins could not be listed ({type(exc).__name__})").setEnabled(False)
        for info in plugins:
            act = menu.addAction(f"{info.name}...")
            problem = info.inputs[0].problem(state.volume) if state is not None and info.inputs else None
            if state is None:
                problem = "open a series first"
            act.setEnabled(problem is None and not ai.running)
            act.setToolTip(problem or info.description)
            act.setStatusTip(problem or info.description)
            act.triggered.connect(lambda _c=False, pid=info.id: ai.open_dialog(pid))
        if not plugins:
            menu.addAction("No AI plugins installed").setEnabled(False)
        menu.addSeparator()
        self.cancel_action.setEnabled(ai.running)
        self.marker_action.setChecked(window.model.tool == markers.TOOL)
        self.cpu_action.setChecked(ai.force_cpu)
        for act in (self.cancel_action, self.flicker_action, self.marker_action, self.cpu_action):
            menu.addAction(act)
        menu.addSeparator()
        menu.addAction(self.dock_action)
        menu.addAction(self.performance_action)

    def show_performance(self):
        """AI > Performance: the audit log of reviewed AI results (viewer.core.audit); the dialog."""
        from viewer.ui.ai.performance import PerformanceDialog

        self.performance = PerformanceDialog(self.window)
        self.performance.show()
        return self.performance

    def shutdown(self) -> None:
        # the window closes: results a person reviewed go into the audit log (viewer.core.audit)
        for series in self.workspace:
            self.workspace.audit(series)
        self.controller.shutdown()
