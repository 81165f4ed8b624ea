"""A feature of the main window (segments, measure, AI, PACS): an object with its commands (in the
window's one command table), its menu, toolbars, docks, tools and its shutdown.

The main window makes each feature with itself and its ``Workspace``, lists them in
``window.features`` (``window.features.segments``, ...) in the order they were installed and shuts
them down in reverse when it closes.  A feature keeps the widgets; the state of an opened series is
in the workspace, and the feature's controller (``controller.py``, no widgets) works on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from viewer.ui.ai import AIFeature
    from viewer.ui.measure import MeasureFeature
    from viewer.ui.pacs import PacsFeature
    from viewer.ui.segments import SegmentsFeature


class Feature:
    name = ""  # its attribute in window.features

    def __init__(self, window, workspace):
        self.window, self.workspace = window, workspace

    @property
    def commands(self):
        """The window's command table (viewer.ui.actions.CommandTable)."""
        return self.window.commands

    def add_menu(self, title: str):
        """A menu of the menu bar, before Help."""
        bar = self.window.menuBar()
        menu = bar.addMenu(title)
        help_menu = getattr(self.window, "help_menu", None)
        if help_menu is not None:
            bar.insertMenu(help_menu.menuAction(), menu)
        return menu

    def add_dock(self, title: str, name: str, widget, *, right: bool = True, hidden: bool = True):
        """A dock of the window holding ``widget`` (``name``: its object name, which the saved window
        state knows it by), on the right (or left), hidden until asked for."""
        from PySide6.QtCore import Qt
        from PySide6.QtWidgets import QDockWidget

        dock = QDockWidget(title, self.window)
        dock.setObjectName(name)
        dock.setWidget(widget)
        area = Qt.DockWidgetArea.RightDockWidgetArea if right else Qt.DockWidgetArea.LeftDockWidgetArea
        self.window.addDockWidget(area, dock)
        if hidden:
            dock.hide()
        return dock

    def shutdown(self) -> None:
        """The window closes: stop threads and timers, close files."""


class Features:
    """The main window's features by name, in the order they were installed."""

    pacs: PacsFeature
    ai: AIFeature
    measure: MeasureFeature
    segments: SegmentsFeature

    def __init__(self):
        self._all: list[Feature] = []

    def add(self, feature: Feature) -> Feature:
        setattr(self, feature.name, feature)
        self._all.append(feature)
        return feature

    def __iter__(self):
        return iter(list(self._all))

    def shutdown(self) -> None:
        for feature in reversed(self._all):
            feature.shutdown()
