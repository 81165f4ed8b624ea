"""The window's one command table: the main window and every feature add their commands to it, and
menus, toolbars and the F1 shortcut sheet are all made from it, so they cannot disagree.

A ``Command`` says what a command is (name, text, the menu it belongs to, keys, icon); ``CommandTable``
makes its ``QAction`` and connects it to the handler given with it.  The viewing tools' rows come
from the tool registry (``viewer.core.tools``, titles and keys), as the features' tools do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QIcon, QKeySequence

from viewer.core.tools import REGISTRY, ToolRegistry
from viewer.ui.resources import icon_path


@dataclass(frozen=True)
class Command:
    name: str
    text: str
    section: str  # the menu it is in; the F1 sheet's heading
    shortcut: tuple[str, ...] = ()
    icon: str = ""
    checkable: bool = False
    group: str = ""  # exclusive group (tools, layouts)
    views_only: bool = False  # only while the views have the keyboard focus (not the browser)
    tip: str = ""  # the status bar's text while the menu item is under the mouse


# the main window's own commands: ``name`` calls ``window.cmd_<name>()``
COMMANDS = (
    Command("open_folder", "Open folder...", "File", ("Ctrl+O",), "open"),
    Command("open_file", "Open file...", "File", ("Ctrl+Shift+O",)),
    Command("open_demo", "Open demo study", "File"),
    Command("cancel_load", "Cancel loading", "File", ("Esc",), "cancel"),
    Command("quit", "Quit", "File", ("Ctrl+Q",)),
    Command("layout_1x1", "Layout 1 x 1", "View", ("Ctrl+1",), "layout_1x1", True, "layout"),
    Command("layout_1x3", "Layout 1 x 3", "View", ("Ctrl+2",), "layout_1x3", True, "layout"),
    Command("layout_2x2", "Layout 2 x 2 (with 3D)", "View", ("Ctrl+3",), "layout_2x2", True, "layout"),
    Command("maximise", "Maximise / restore view", "View", ("F",)),
    Command("crosshair", "Show crosshair", "View", ("X",), "show_crosshair", True),
    Command("link", "Link series (same frame of reference, or registered)", "View", ("L",), "link", True),
    Command("reset", "Reset view (zoom, pan, oblique axes)", "View", ("Home",), "reset"),
    Command("reset_oblique", "Reset oblique axes", "View", ("O",)),
    Command("next_slice", "Next slice", "Navigate", ("Down",), views_only=True),
    Command("previous_slice", "Previous slice", "Navigate", ("Up",), views_only=True),
    Command("next_page", "Forward 10 slices", "Navigate", ("PgDown",), views_only=True),
    Command("previous_page", "Back 10 slices", "Navigate", ("PgUp",), views_only=True),
    Command("default_window", "Default window (from the study)", "Image", ("0",)),
    Command("invert", "Invert", "Image", ("I",), "invert", True),
    Command("slab_mip", "Thick-slab MIP (on / off)", "Image", ("M",)),
    Command("slab_minip", "Thick-slab MinIP (on / off)", "Image", ("Shift+M",)),
    Command("slab_thicker", "Thicker slab", "Image", ("]",)),
    Command("slab_thinner", "Thinner slab", "Image", ("[",)),
    Command("shortcuts", "Keyboard and mouse shortcuts", "Help", ("F1",), "help"),
    Command("about", "About Hounsfield", "Help"),
)

PRESET_KEYS = tuple(str(n) for n in range(1, 10))

MOUSE = (
    ("Left drag", "Window/level with the W/L tool (right: wider, down: higher level); "
                  "the selected tool otherwise"),
    ("Left click", "Move the crosshair (and the other views) to that point"),
    ("Shift + left drag", "Drag the crosshair"),
    ("Ctrl + left drag", "Rotate the crosshair axes (oblique reformatting)"),
    ("Right drag", "Zoom (up: in)"),
    ("Middle drag", "Pan"),
    ("Wheel", "Scroll slices (towards you: next)"),
    ("Ctrl + wheel", "Zoom"),
    ("Double-click", "Maximise the view / restore the layout"),
    ("Drag a series", "From the study browser onto a view: show it there"),
)


def tool_commands(group: str, section: str, registry: ToolRegistry = REGISTRY, icons: bool = False,
                  prefix: str = "tool_") -> list[Command]:
    """One checkable command per registered tool of ``group`` (titles and keys from the registry)."""
    return [Command(f"{prefix}{t.name}", t.title, section, (t.shortcut,) if t.shortcut else (),
                    t.name if icons else "", True, group) for t in registry.in_group(group)]


def view_tool_commands(registry: ToolRegistry = REGISTRY) -> list[Command]:
    return tool_commands("view", "Tools", registry, icons=True)


class CommandTable:
    """Every command of a window in the order added, with its ``QAction`` (``table["name"]``)."""

    def __init__(self, window):
        self.window = window
        self.commands: dict[str, Command] = {}
        self.actions: dict[str, QAction] = {}
        self._groups: dict[str, QActionGroup] = {}

    def add(self, cmd: Command, handler: Callable | None = None, action: QAction | None = None) -> QAction:
        """Make ``cmd``'s action (or take ``action``, a dock's toggle) and connect ``handler`` to it:
        ``handler(checked)`` for a checkable command, ``handler()`` otherwise."""
        if cmd.name in self.commands:
            raise ValueError(f"command {cmd.name!r} is in the table already")
        window = self.window
        act = action if action is not None else QAction(cmd.text, window)
        if cmd.icon:
            act.setIcon(QIcon(icon_path(cmd.icon)))
        if cmd.shortcut:
            act.setShortcuts([QKeySequence(s) for s in cmd.shortcut])
            act.setToolTip(f"{cmd.text}  ({', '.join(cmd.shortcut)})")
        if cmd.tip:
            act.setStatusTip(cmd.tip)
        if action is None:
            act.setCheckable(cmd.checkable)
        if cmd.group:
            self._groups.setdefault(cmd.group, QActionGroup(window)).addAction(act)
        if handler is not None:
            if cmd.checkable:
                act.triggered.connect(lambda checked, h=handler: h(checked))
            else:
                act.triggered.connect(lambda _checked=False, h=handler: h())
        if cmd.views_only:
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            window.grid.addAction(act)
        else:
            window.addAction(act)
        self.commands[cmd.name] = cmd
        self.actions[cmd.name] = act
        return act

    def group(self, name: str) -> QActionGroup:
        """The exclusive group of commands added with ``group=name``."""
        return self._groups.setdefault(name, QActionGroup(self.window))

    def __getitem__(self, name: str) -> QAction:
        return self.actions[name]

    def __contains__(self, name: str) -> bool:
        return name in self.actions

    def fill(self, target, names) -> None:
        """Add the named commands' actions to a menu or toolbar in order (None: a separator)."""
        for name in names:
            target.addAction(self.actions[name]) if name else target.addSeparator()

    def rows(self) -> list[tuple[str, str, str]]:
        """(section, keys, what) of every command with keys, for the F1 sheet."""
        return shortcut_rows(self.commands.values())


def _plain(text: str) -> str:
    return text.replace("&", "").removesuffix("...")


def shortcut_rows(commands=None) -> list[tuple[str, str, str]]:
    """(section, keys, what) for the shortcut sheet: the commands with keys (the main window's own
    and the viewing tools when ``commands`` is None), the presets, then the mouse."""
    commands = list(commands) if commands is not None else [*COMMANDS, *view_tool_commands()]
    sections = list(dict.fromkeys(c.section for c in commands))  # in the order they first appear,
    sections.sort(key=lambda s: s == "Help")  # Help last
    rows = [(c.section, ", ".join(c.shortcut), _plain(c.text))
            for s in sections for c in commands if c.section == s and c.shortcut]
    rows.insert(next(i for i, r in enumerate(rows) if r[0] == "Image"),
                ("Image", "1 - 9", "Window/level presets of the modality (CT: soft tissue, lung, bone, "
                                   "brain, liver, mediastinum; MR: auto from the histogram)"))
    rows += [("Mouse", keys, what) for keys, what in MOUSE]
    return rows


def build_actions(window) -> CommandTable:
    """The main window's command table with its own commands, the viewing tools and the presets."""
    table = CommandTable(window)
    for cmd in COMMANDS:
        table.add(cmd, getattr(window, f"cmd_{cmd.name}"))
    for cmd in view_tool_commands(window.model.tools):
        tool = cmd.name.removeprefix("tool_")
        table.add(cmd, lambda _on=True, t=tool: window.model.set_tool(t))
    for key in PRESET_KEYS:  # listed on the sheet as one row ("1 - 9"), not one command each
        act = QAction(f"Preset {key}", window)
        act.setShortcut(QKeySequence(key))
        act.triggered.connect(lambda _checked=False, k=key: window.cmd_preset(k))
        window.addAction(act)
        table.actions[f"preset_{key}"] = act
    return table
