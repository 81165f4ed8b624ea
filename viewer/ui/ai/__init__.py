"""The AI part of the main window: an "AI" menu listing the plugins (run dialogs generated from
their parameters), progress and Cancel in the status bar, and the AI results dock.

``install(window)`` is the one hook the main window calls; nothing here imports torch.
"""

from __future__ import annotations

from viewer.ui.ai import markers
from viewer.ui.ai.controller import AIController


def _fill_menu(window, menu) -> None:
    ai: AIController = window.ai
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
    cancel = menu.addAction("Cancel the AI run")
    cancel.setEnabled(ai.running)
    cancel.triggered.connect(ai.cancel)
    menu.addAction(window.ai_flicker_action)
    tool = menu.addAction("Move and resize detection markers (tool)")
    tool.setCheckable(True)
    tool.setChecked(window.model.tool == markers.TOOL)
    tool.triggered.connect(lambda on: window.model.set_tool(markers.TOOL if on else "wl"))
    cpu = menu.addAction("Use the CPU only")
    cpu.setCheckable(True)
    cpu.setChecked(ai.force_cpu)
    cpu.triggered.connect(ai.set_force_cpu)
    menu.addSeparator()
    menu.addAction(ai.dock.toggleViewAction())


def install(window) -> AIController:
    window.ai = AIController(window)
    markers.register(window.ai)
    window.ai_flicker_action = window.actions_["ai_flicker"]  # in actions.COMMANDS: the F1 sheet lists it
    menu = window.menuBar().addMenu("&AI")
    help_menu = getattr(window, "help_menu", None)
    if help_menu is not None:  # before Help, as usual
        window.menuBar().insertMenu(help_menu.menuAction(), menu)
    menu.setToolTipsVisible(True)
    menu.aboutToShow.connect(lambda: _fill_menu(window, menu))
    window.ai_menu = menu
    _fill_menu_placeholder(menu)
    return window.ai


def _fill_menu_placeholder(menu) -> None:
    menu.addAction("Plugins are listed when this menu opens").setEnabled(False)
