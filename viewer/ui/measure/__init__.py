"""Measurements in the main window: the "Measure" menu and toolbar (tools, delete, copy, export,
import an SR), the measurements dock, and annotations drawn in the 2D views.

``MeasureFeature`` is what the main window installs (``window.features.measure``); the measurements
are overlays of the series in the window's workspace, handled through ``MeasureController``.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QActionGroup
from PySide6.QtWidgets import QDockWidget, QFileDialog

from viewer.ui.actions import Command, tool_commands
from viewer.ui.feature import Feature
from viewer.ui.measure import tools
from viewer.ui.measure.controller import MeasureController
from viewer.ui.measure.export import MeasureExporter, measure_export
from viewer.ui.measure.panel import MeasurementPanel


class MeasureFeature(Feature):
    name = "measure"

    def __init__(self, window, workspace):
        super().__init__(window, workspace)
        ctl = self.controller = MeasureController(window)
        tools.register(ctl)
        self.export_dialog = None  # the last Measure > Export dialog
        panel = self.panel = MeasurementPanel(ctl, self.export)
        dock = self.dock = QDockWidget("Measurements", window)
        dock.setObjectName("measurements")
        dock.setWidget(panel)
        panel.setMinimumWidth(380)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

        menu = self.menu = self.add_menu("&Measure")
        toolbar = self.toolbar = window.addToolBar("Measure")
        toolbar.setObjectName("measure_toolbar")
        model, table = window.model, self.commands
        self.tool_actions = {}
        for cmd in tool_commands("measure", "Measure", model.tools, prefix=""):  # titles, keys: viewer.core.tools
            act = table.add(cmd, lambda on, n=cmd.name: model.set_tool(n if on else "wl"))
            act.setObjectName(cmd.name)
            menu.addAction(act)
            toolbar.addAction(act)
            self.tool_actions[cmd.name] = act
        table.group("measure").setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        menu.addSeparator()
        self.actions = {}
        for name, text, fn, keys in (
                ("delete", "Delete selected measurement", ctl.delete_selected, ("Del",)),
                ("copy", "Copy measurements as text", panel.copy, ("Ctrl+Shift+C",)),
                ("export", "Export measurements (SR, CSV, JSON, key image)...", self.export, ()),
                ("key_image", "Save key image...", self.save_key_image, ()),
                ("import_sr", "Import measurements from an SR...", self.import_sr, ())):
            act = self.actions[name] = table.add(Command(f"measure_{name}", text, "Measure", keys), fn)
            menu.addAction(act)
        self.exporter = MeasureExporter(window, self.actions["export"])
        menu.addSeparator()
        menu.addAction(table.add(Command("measure_dock", "Measurements", "Measure"), action=dock.toggleViewAction()))
        model.tool_changed.connect(self._sync_tool)
        self._sync_tool()

    def _sync_tool(self) -> None:
        for name, act in self.tool_actions.items():
            act.setChecked(self.window.model.tool == name)

    def export(self):
        """Measure > Export: the dialog; its Export button starts the export in the background."""
        return measure_export(self.window)

    def save_key_image(self) -> None:
        window, ctl = self.window, self.controller
        if window.model.active_state is None:
            return
        path, _ = QFileDialog.getSaveFileName(window, "Save key image", "key-image.png", "PNG (*.png);;DICOM (*.dcm)")
        if not path:
            return
        from viewer.core.io.keyimages import write_key_image

        view = ctl.active_view()
        rgb, orientation, sop = ctl.key_image(view)
        src = view.state.volume.source
        if path.lower().endswith(".dcm"):
            write_key_image(None, path, rgb, src, orientation=orientation, source_uid=sop)
        else:
            write_key_image(path, None, rgb, src)

    def import_sr(self) -> None:
        window = self.window
        path, _ = QFileDialog.getOpenFileName(window, "Import measurements from a DICOM SR", "",
                                              "DICOM (*.dcm);;All (*)")
        if not path:
            return
        try:
            n = self.controller.import_sr(path)
        except Exception:
            from viewer.logs import log

            log.exception("reading an SR failed")
            window.show_error("This file holds no measurements Hounsfield can read; choose a TID 1500 SR.")
            return
        window.statusBar().showMessage(f"Imported {n} measurements", 10000)

    def shutdown(self) -> None:
        self.controller.segment_rows.shutdown()
