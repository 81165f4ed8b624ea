"""Mouse conventions of a 2D view, turned into changes of the viewing model.

Left button: the active tool (window/level by default; a click without dragging moves the
crosshair there); Shift+left: crosshair; Ctrl+left: rotate the crosshair axes (oblique MPR).
Right-drag zooms (up: in), middle-drag pans, the wheel scrolls slices (Ctrl+wheel zooms),
double-click maximises the view or restores the layout.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

from PySide6.QtCore import QPointF, Qt

from viewer.core.planes import PLANES
from viewer.core.tools import REGISTRY

CLICK_SLOP = 3.0  # pixels a press may move and still count as a click

# The Qt half of the tool registry (viewer.core.tools): tools beyond the viewing ones (segment
# editing, measurements, detection markers) attach one handler per registered name with ``attach``.
# A view's handler is make(view, feature): an object with press(pos, modifiers), move(pos),
# release(pos), and optionally hover(pos) and leave().  ``feature`` is the controller the tool works
# for, given once here (a handler never looks it up on the window).  The table is one per window (per
# ViewerModel, found as ``feature.model`` or ``feature.window.model``): a second window's controllers
# never serve the first window's views.  It holds the windows weakly, so a closed one is let go.
# The left button goes to the handler of the model's current tool; right/middle buttons, Shift and
# Ctrl keep their viewing meanings, unless the handler has ``claims(button, modifiers)`` and it says
# True: then that press goes to the handler too, as ``press(pos, modifiers, button)`` (the click-to-
# segment tool takes the right button, Ctrl and Shift for negative clicks and boxes).
TOOL_HANDLERS: dict[str, weakref.WeakKeyDictionary] = {}  # name -> {ViewerModel: (make, weakref to feature)}
_UNOWNED: dict = {}  # name -> (make, feature) for a feature with no window (a script's, a test's)


def _owner(feature):
    model = getattr(feature, "model", None)
    if model is None:
        model = getattr(getattr(feature, "window", None), "model", None)
    return model


def attach(name: str, make, feature=None, registry=REGISTRY) -> None:
    """Give the registered tool ``name`` its view handler, made by ``make(view, feature)``, in the
    views of ``feature``'s window."""
    if name not in registry:
        raise ValueError(f"unknown tool {name!r}: register it in viewer.core.tools first")
    model = _owner(feature)
    if model is None:
        _UNOWNED[name] = (make, feature)
    else:
        TOOL_HANDLERS.setdefault(name, weakref.WeakKeyDictionary())[model] = (make, weakref.ref(feature))


def handler_maker(name: str, model):
    """(make, feature) for the tool ``name`` in the views of ``model``'s window, or None."""
    entry = TOOL_HANDLERS.get(name, {}).get(model) if model is not None else None
    if entry is not None:
        make, ref = entry
        feature = ref()
        if feature is not None:
            return make, feature
    return _UNOWNED.get(name)


@dataclass
class Drag:
    mode: str
    button: Qt.MouseButton
    start: QPointF
    last: QPointF
    window: tuple[float, float]
    zoom: float
    pan: tuple[float, float]
    moved: bool = False


class ViewInteraction:
    """Drag, click and wheel handling for one ``SliceView``."""

    def __init__(self, view):
        self.view = view
        self.model = view.model
        self.drag: Drag | None = None
        self._wheel_rest = 0.0
        self._handlers: dict = {}

    def handler(self, tool: str):
        """This view's handler of an extra tool (made on first use), or None for viewing tools."""
        if tool not in self._handlers:
            found = handler_maker(tool, self.model)
            if found is None:
                return None
            make, feature = found
            self._handlers[tool] = make(self.view, feature)
        return self._handlers[tool]

    @property
    def slot(self) -> int:
        return self.view.slot

    def _mode(self, button, modifiers) -> str | None:
        h = self.handler(self.model.tool)
        if h is not None and hasattr(h, "claims") and h.claims(button, modifiers):
            return self.model.tool
        if button == Qt.MouseButton.RightButton:
            return "zoom"
        if button == Qt.MouseButton.MiddleButton:
            return "pan"
        if button != Qt.MouseButton.LeftButton:
            return None
        if modifiers & Qt.KeyboardModifier.ControlModifier:
            return "rotate"
        if modifiers & Qt.KeyboardModifier.ShiftModifier:
            return "crosshair"
        return self.model.tool

    def press(self, pos: QPointF, button, modifiers) -> None:
        self.model.set_active(self.slot)
        state = self.model.state(self.slot)
        mode = self._mode(button, modifiers)
        if state is None or mode is None:
            self.drag = None
            return
        vp = self.model.viewports[self.slot]
        self.drag = Drag(mode, button, QPointF(pos), QPointF(pos), state.window, vp.zoom, vp.pan)
        h = self.handler(mode)
        if h is not None:
            h.press(pos, modifiers, button) if hasattr(h, "claims") else h.press(pos, modifiers)
        elif mode == "crosshair":
            self.view.move_point_to(pos)

    def move(self, pos: QPointF) -> None:
        d = self.drag
        if d is None:
            h = self.handler(self.model.tool)
            if h is not None and hasattr(h, "hover"):
                h.hover(pos)
            self.view.emit_readout(pos)
            return
        state = self.model.state(self.slot)
        if state is None:
            return
        h = self.handler(d.mode)
        if h is not None:
            h.move(pos)
            d.last = QPointF(pos)
            self.view.emit_readout(pos)
            return
        dx, dy = pos.x() - d.start.x(), pos.y() - d.start.y()
        if not d.moved and math.hypot(dx, dy) >= CLICK_SLOP:
            d.moved = True
        if d.mode == "wl" and d.moved:
            c0, w0 = d.window
            k = max(w0, 1.0) / 300.0
            state.set_window(c0 + dy * k, max(1.0, w0 + dx * k))
        elif d.mode == "zoom" and d.moved:
            self.model.set_zoom(self.slot, d.zoom * math.exp(-dy * 0.01))
        elif d.mode == "pan" and d.moved:
            mm = self.view.mm_per_pixel_logical()
            self.model.set_pan(self.slot, (d.pan[0] - dx * mm, d.pan[1] + dy * mm))
        elif d.mode == "crosshair":
            self.view.move_point_to(pos)
        elif d.mode == "rotate" and d.moved:
            vp = self.model.viewports[self.slot]
            if vp.plane in PLANES:
                c = self.view.crosshair_centre_logical()
                a0 = math.atan2(-(d.last.y() - c[1]), d.last.x() - c[0])
                a1 = math.atan2(-(pos.y() - c[1]), pos.x() - c[0])
                delta = math.remainder(a1 - a0, 2 * math.pi)
                if abs(delta) > 1e-6:
                    state.rotate(vp.plane, delta)
        d.last = QPointF(pos)
        self.view.emit_readout(pos)

    def release(self, pos: QPointF, button) -> None:
        d = self.drag
        if d is None or button != d.button:
            return
        h = self.handler(d.mode)
        if h is not None:
            self.drag = None
            h.release(pos)
            return
        if d.mode == "wl" and not d.moved:
            self.view.move_point_to(pos)  # a click with the W/L tool moves the crosshair
        self.drag = None

    def leave(self) -> None:
        for h in self._handlers.values():
            if hasattr(h, "leave"):
                h.leave()

    def wheel(self, angle_delta_y: int, modifiers) -> None:
        self.model.set_active(self.slot)
        if modifiers & Qt.KeyboardModifier.ControlModifier:
            vp = self.model.viewports[self.slot]
            self.model.set_zoom(self.slot, vp.zoom * (1.1 ** (angle_delta_y / 120.0)))
            return
        self._wheel_rest += -angle_delta_y / 120.0  # wheel towards the user: next image
        steps = int(self._wheel_rest)
        if steps:
            self._wheel_rest -= steps
            self.model.step(self.slot, steps)
