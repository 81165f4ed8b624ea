"""Comparing two series in the main window (issue 19): *Compare > Register to...* registers the
active series to another one off the UI thread (progress, Cancel), after which linked scrolling
follows the anatomy through the registration (``ViewerModel.map_point``); the *Fusion* dock and
menu items draw another series or a heatmap over the active one (colour map, opacity, window) in
2D and 3D, with checkerboard and flicker modes to judge the registration.  ``CompareFeature`` is
what the main window installs (``window.features.compare``); ``CompareController`` does the work.
"""

from __future__ import annotations

from PySide6.QtCore import Qt

from viewer.core.errors import HounsfieldError
from viewer.ui.actions import Command
from viewer.ui.compare.controller import CompareController, Fusion
from viewer.ui.compare.dialog import RegisterDialog
from viewer.ui.compare.panel import FusionPanel
from viewer.ui.feature import Feature

__all__ = ["CompareFeature", "Fusion"]


class CompareFeature(Feature):
    name = "compare"

    def __init__(self, window, workspace):
        super().__init__(window, workspace)
        ctl = self.controller = CompareController(window, workspace)
        self.panel = FusionPanel(ctl)
        dock = self.dock = self.add_dock("Fusion", "fusion", self.panel)
        self.dialog: RegisterDialog | None = None
        table = self.commands
        menu = self.menu = self.add_menu("&Compare")
        self.actions = {
            "register": table.add(Command("compare_register", "Register to...", "Compare", ("Ctrl+Shift+R",),
                                          tip="Register the active series to another one (rigid or deformable)"),
                                  self.register_dialog),
            "fusion": table.add(Command("compare_fusion", "Fusion on / off", "Compare", ("Shift+F",), checkable=True,
                                        tip="Draw the Fusion panel's top layer over the active series"),
                                self.toggle_fusion),
            "blend": table.add(Command("compare_blend", "Blend (colour map, opacity)", "Compare", checkable=True,
                                       group="fusion_mode"), lambda on: on and self.set_mode("blend")),
            "checkerboard": table.add(Command("compare_checkerboard", "Checkerboard", "Compare", checkable=True,
                                              group="fusion_mode"), lambda on: on and self.set_mode("checkerboard")),
            "flicker": table.add(Command("compare_flicker", "Flicker", "Compare", checkable=True,
                                         group="fusion_mode"), lambda on: on and self.set_mode("flicker")),
            "dock": table.add(Command("compare_dock", "Fusion panel", "Compare"), action=dock.toggleViewAction()),
        }
        self.actions["blend"].setChecked(True)
        for name in ("register", None, "fusion", "blend", "checkerboard", "flicker", None, "dock"):
            menu.addAction(self.actions[name]) if name else menu.addSeparator()
        self.panel.error.connect(window.show_error)
        ctl.message.connect(window.show_error)
        ctl.registration_failed.connect(window.show_error)
        ctl.registered.connect(self._registered)
        ctl.registration_cancelled.connect(
            lambda: window.statusBar().showMessage("Registration cancelled; nothing was changed.", 8000))
        ctl.fusion_changed.connect(self._sync_actions)

    # registration
    def register_dialog(self) -> RegisterDialog | None:
        """Open the registration dialog for the active series (non-modal: the views stay usable)."""
        state = self.window.model.active_state or next(
            (self.window.model.state(s) for s in range(3) if self.window.model.state(s) is not None), None)
        if state is None:
            self.window.show_error("Open two series first, then register one to the other.")
            return None
        if self.dialog is not None:
            self.dialog.close()
        self.dialog = RegisterDialog(self.controller, state.key, self.window)
        self.dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.dialog.destroyed.connect(lambda *_a: setattr(self, "dialog", None))
        self.dialog.show()
        return self.dialog

    def _registered(self, reg) -> None:
        self.window.statusBar().showMessage(
            f"Registered ({reg.kind}, {reg.seconds:.1f} s): scrolling follows the anatomy in both series.", 10000)
        self.panel.refresh()

    # fusion
    def toggle_fusion(self, on: bool) -> None:
        if on:
            self.dock.show()
        self.panel.enabled.setChecked(on)
        self._sync_actions()

    def set_mode(self, mode: str) -> None:
        if self.controller.fusion is None:
            self.panel.mode_buttons[mode].setChecked(True)
            self.toggle_fusion(True)
        try:
            self.controller.update(mode=mode)
        except HounsfieldError as exc:
            self.window.show_error(str(exc))

    def _sync_actions(self) -> None:
        f = self.controller.fusion
        self.actions["fusion"].setChecked(f is not None)
        self.actions[f.mode if f is not None else "blend"].setChecked(True)

    def shutdown(self) -> None:
        if self.dialog is not None:
            self.dialog.close()
        self.controller.shutdown()
