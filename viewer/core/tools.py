"""The one tool registry: every tool a view's left button can be, with its name, menu title, group,
shortcut and the word the status bar uses.  No Qt: the workspace holds the registry, the viewer's
model checks ``set_tool`` against it, and the Qt side attaches one handler per name
(``viewer.ui.interaction.attach``) and makes the tools' commands (menus, toolbars, the F1 sheet)
from the titles and keys here (``viewer.ui.actions.tool_commands``).
"""

from __future__ import annotations

from dataclasses import dataclass

from viewer.core.signals import Signal

GROUPS = ("view", "segment", "measure", "review")


@dataclass(frozen=True)
class Tool:
    name: str  # "seg_brush"
    title: str  # menu text: "Brush"
    group: str  # one of GROUPS
    shortcut: str = ""  # "B" (QKeySequence text)
    label: str = ""  # the status bar's word; title in lower case when empty

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.title.lower())


class ToolRegistry:
    """Tools in registration order; ``changed`` is emitted when one is added."""

    def __init__(self, tools=()):
        self._tools: dict[str, Tool] = {}
        self.changed = Signal()
        for t in tools:
            self._tools[t.name] = t

    def register(self, name: str, title: str = "", group: str = "view", shortcut: str = "",
                 label: str = "") -> Tool:
        """Add a tool (a plugin's or a new editing tool); registering a known name returns it as is."""
        tool = self._tools.get(name)
        if tool is None:
            if group not in GROUPS:
                raise ValueError(f"unknown tool group {group!r}")
            tool = self._tools[name] = Tool(name, title or name.replace("_", " "), group, shortcut, label)
            self.changed.emit()
        return tool

    def __contains__(self, name) -> bool:
        return name in self._tools

    def __iter__(self):
        return iter(self._tools.values())

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def names(self, group: str | None = None) -> list[str]:
        return [t.name for t in self._tools.values() if group is None or t.group == group]

    def in_group(self, group: str) -> list[Tool]:
        return [t for t in self._tools.values() if t.group == group]


def default_tools() -> list[Tool]:
    view = [Tool("wl", "Window/level tool", "view", "W", "window/level"),
            Tool("crosshair", "Crosshair tool", "view", "C", "crosshair"),
            Tool("zoom", "Zoom tool", "view", "Z", "zoom"), Tool("pan", "Pan tool", "view", "P", "pan"),
            Tool("rotate", "Rotate oblique axes tool", "view", "R", "rotate axes")]
    segment = [Tool("seg_brush", "Brush", "segment", "B"), Tool("seg_eraser", "Eraser", "segment", "E"),
               Tool("seg_threshold", "Threshold brush (HU range)", "segment", "Shift+B"),
               Tool("seg_fill", "Flood fill", "segment", "G"), Tool("seg_lasso", "Lasso fill", "segment", "K"),
               Tool("seg_lasso_cut", "Lasso cut", "segment", "Shift+K"),
               Tool("seg_click", "Click to segment", "segment", "A", "click to segment")]
    measure = [Tool("measure_length", "Length (ruler)", "measure", "D", "length"),
               Tool("measure_angle", "Angle", "measure", "Shift+A", "angle"),
               Tool("measure_ellipse", "Ellipse ROI", "measure", "Shift+E", "ellipse"),
               Tool("measure_polygon", "Polygon / freehand ROI", "measure", "Shift+G", "polygon"),
               Tool("measure_point", "Point value", "measure", "Shift+V", "point"),
               Tool("measure_bidirectional", "Bidirectional (RECIST)", "measure", "Shift+D", "bidirectional")]
    return view + segment + measure + [Tool("marker", "Marker", "review")]


REGISTRY = ToolRegistry(default_tools())  # the viewer's registry: Workspace() and ViewerModel() use it
