"""Every command of the main window in one table: menus, toolbar and the F1 shortcut sheet are
all made from it, so they cannot disagree.  A command ``name`` calls ``window.cmd_<name>()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QIcon, QKeySequence

from viewer.ui.resources import icon_path


@dataclass(frozen=True)
class Command:
    name: str
    text: str
    section: str
    shortcut: tuple[str, ...] = ()
    icon: str = ""
    checkable: bool = False
    group: str = ""  # exclusive group (tools, layouts)
    views_only: bool = False  # only while the views have the keyboard focus (not the browser)


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
    Command("link", "Link series of the same frame of reference", "View", ("L",), "link", True),
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
    Command("ai_flicker", "Flicker original / AI result", "AI", ("T",)),
    Command("tool_wl", "Window/level tool", "Tools", ("W",), "wl", True, "tool"),
    Command("tool_crosshair", "Crosshair tool", "Tools", ("C",), "crosshair", True, "tool"),
    Command("tool_zoom", "Zoom tool", "Tools", ("Z",), "zoom", True, "tool"),
    Command("tool_pan", "Pan tool", "Tools", ("P",), "pan", True, "tool"),
    Command("tool_rotate", "Rotate oblique axes tool", "Tools", ("R",), "rotate", True, "tool"),
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


def build_actions(window) -> dict[str, QAction]:
    """QActions for every command, connected to ``window.cmd_<name>`` and added to ``window``."""
    actions: dict[str, QAction] = {}
    groups: dict[str, QActionGroup] = {}
    for cmd in COMMANDS:
        act = QAction(cmd.text, window)
        if cmd.icon:
            act.setIcon(QIcon(icon_path(cmd.icon)))
        if cmd.shortcut:
            act.setShortcuts([QKeySequence(s) for s in cmd.shortcut])
            act.setToolTip(f"{cmd.text}  ({', '.join(cmd.shortcut)})")
        act.setCheckable(cmd.checkable)
        if cmd.group:
            groups.setdefault(cmd.group, QActionGroup(window)).addAction(act)
        handler = getattr(window, f"cmd_{cmd.name}")
        if cmd.checkable:
            act.triggered.connect(lambda checked, h=handler: h(checked))
        else:
            act.triggered.connect(lambda _checked=False, h=handler: h())
        if cmd.views_only:
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            window.grid.addAction(act)
        else:
            window.addAction(act)
        actions[cmd.name] = act
    for key in PRESET_KEYS:
        act = QAction(f"Preset {key}", window)
        act.setShortcut(QKeySequence(key))
        act.triggered.connect(lambda _checked=False, k=key: window.cmd_preset(k))
        window.addAction(act)
        actions[f"preset_{key}"] = act
    return actions


def shortcut_rows() -> list[tuple[str, str, str]]:
    """(section, keys, what) for the shortcut sheet, keyboard first, then the mouse."""
    rows = [(c.section, ", ".join(c.shortcut), c.text) for c in COMMANDS if c.shortcut]
    rows.insert(next(i for i, r in enumerate(rows) if r[0] == "Image"),
                ("Image", "1 - 9", "Window/level presets of the modality (CT: soft tissue, lung, bone, "
                                   "brain, liver, mediastinum; MR: auto from the histogram)"))
    rows += [("Mouse", keys, what) for keys, what in MOUSE]
    return rows
