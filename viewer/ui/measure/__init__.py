"""Measurements in the main window: the "Measure" menu and toolbar (tools, delete, copy, export,
import an SR), the measurements dock, and annotations drawn in the 2D views.

``install(window)`` is the one hook the main window calls.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog

from viewer.ui.measure import tools
from viewer.ui.measure.controller import MeasureController
from viewer.ui.measure.export import MeasureExporter, measure_export
from viewer.ui.measure.panel import MeasurementPanel


def install(window) -> MeasureController:
    ctl = MeasureController(window)
    window.measure = ctl
    tools.register(ctl)
    panel = MeasurementPanel(ctl)
    dock = QDockWidget("Measurements", window)
    dock.setObjectName("measurements")
    dock.setWidget(panel)
    panel.setMinimumWidth(380)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.measure_panel, window.measure_dock = panel, dock

    menu = window.menuBar().addMenu("&Measure")
    help_menu = getattr(window, "help_menu", None)
    if help_menu is not None:
        window.menuBar().insertMenu(help_menu.menuAction(), menu)
    toolbar = window.addToolBar("Measure")
    toolbar.setObjectName("measure_toolbar")
    group = QActionGroup(window)
    group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
    window.measure_actions = {}
    for tool in window.model.tools.in_group("measure"):  # titles and keys: viewer.core.tools
        name, title = tool.name, tool.title
        act = QAction(title, window, checkable=True)
        act.setObjectName(name)
        act.setShortcut(QKeySequence(tool.shortcut))
        act.setToolTip(f"{title} ({tool.shortcut})")
        act.triggered.connect(lambda on, n=name: window.model.set_tool(n if on else "wl"))
        group.addAction(act)
        menu.addAction(act)
        toolbar.addAction(act)
        window.measure_actions[name] = act
    menu.addSeparator()

    def add(text, fn, shortcut=None):
        act = QAction(text, window)
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.triggered.connect(lambda _c=False: fn())
        menu.addAction(act)
        window.addAction(act)
        return act

    window.measure_delete_action = add("Delete selected measurement", ctl.delete_selected, "Del")
    add("Copy measurements as text", panel.copy, "Ctrl+Shift+C")
    export_action = add("Export measurements (SR, CSV, JSON, key image)...", lambda: measure_export(window))
    window.measure_export_action = export_action
    window.measure_exporter = MeasureExporter(window, export_action)
    add("Save key image...", lambda: save_key_image(window))
    add("Import measurements from an SR...", lambda: import_sr(window))
    menu.addSeparator()
    menu.addAction(dock.toggleViewAction())
    window.measure_menu = menu
    window.measure_export = lambda: measure_export(window)

    def sync():
        for name, act in window.measure_actions.items():
            act.setChecked(window.model.tool == name)

    window.model.tool_changed.connect(sync)
    sync()
    return ctl


def save_key_image(window) -> None:
    if window.model.active_state is None:
        return
    path, _ = QFileDialog.getSaveFileName(window, "Save key image", "key-image.png", "PNG (*.png);;DICOM (*.dcm)")
    if not path:
        return
    from viewer.core.io.keyimages import write_key_image

    view = window.measure.active_view()
    rgb, orientation, sop = window.measure.key_image(view)
    src = view.state.volume.source
    if path.lower().endswith(".dcm"):
        write_key_image(None, path, rgb, src, orientation=orientation, source_uid=sop)
    else:
        write_key_image(path, None, rgb, src)


def import_sr(window) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Import measurements from a DICOM SR", "", "DICOM (*.dcm);;All (*)")
    if not path:
        return
    try:
        n = window.measure.import_sr(path)
    except Exception:
        from viewer.logs import log

        log.exception("reading an SR failed")
        window.show_error("This file holds no measurements Hounsfield can read; choose a TID 1500 SR.")
        return
    window.statusBar().showMessage(f"Imported {n} measurements", 10000)
