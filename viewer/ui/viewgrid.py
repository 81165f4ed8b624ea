"""The viewing area: four viewport slots arranged as 1x1, 1x3 or 2x2, one of them maximised
on double-click.  Slot 0-2 are 2D views (axial, coronal, sagittal), slot 3 the 3D view (volume rendering).
"""

from __future__ import annotations

from PySide6.QtWidgets import QApplication, QFrame, QGridLayout, QVBoxLayout, QWidget

from viewer.core.viewstate import ViewerModel
from viewer.render.overlays import PLANE_COLOURS
from viewer.ui.sliceview import SliceView
from viewer.ui.view3d import View3D

_POSITIONS = {1: [(0, 0)], 3: [(0, 0), (0, 1), (0, 2)], 4: [(0, 0), (0, 1), (1, 0), (1, 1)]}
_INACTIVE = "#24272c"


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(round(255 * c)):02x}" for c in rgb)


class ViewFrame(QFrame):
    """A thin border around a view; it takes the plane's colour when the view is active."""

    def __init__(self, view, plane: str, parent=None):
        super().__init__(parent)
        self.view, self.plane = view, plane
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(0)
        toolbar = getattr(view, "toolbar", None)  # the 3D view's controls sit above it
        if toolbar is not None:
            layout.addWidget(toolbar)
        layout.addWidget(view, 1)
        self.set_active(False)

    def set_active(self, on: bool) -> None:
        colour = _hex(PLANE_COLOURS.get(self.plane, (0.55, 0.6, 0.7))) if on else _INACTIVE
        self.setStyleSheet(f"ViewFrame {{ border: 2px solid {colour}; background: black; }}")


class ViewGrid(QWidget):
    def __init__(self, model: ViewerModel, session, parent=None):
        super().__init__(parent)
        self.model = model
        self.views = [SliceView(model, slot, session) for slot in range(3)]
        self.views.append(View3D(model, 3, session))
        self.frames = [ViewFrame(v, model.viewports[i].plane) for i, v in enumerate(self.views)]
        for v in self.views:
            v.maximise_requested.connect(self.maximise_slot)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(1)
        session.first_slice.connect(self._render_all)
        session.load_ended.connect(self._render_all)
        model.layout_changed.connect(self.relayout)
        model.active_changed.connect(self._mark_active)
        self.relayout()

    @property
    def slice_views(self) -> list[SliceView]:
        return self.views[:3]

    def maximise_slot(self, slot: int) -> None:
        self.model.toggle_maximise(slot)

    def relayout(self) -> None:
        """Arrange the visible slots.  Hiding the view that has the keyboard focus would send the
        focus on to the next widget (the Studies filter), and the next shortcut would be typed
        there: frames that stay are not hidden, and the focus stays with (or comes to) the views."""
        focus = QApplication.focusWidget()
        had_focus = focus is not None and (focus is self or self.isAncestorOf(focus))
        slots = self.model.visible_slots()
        for slot, frame in enumerate(self.frames):
            self.grid.removeWidget(frame)
            if slot not in slots:
                frame.hide()
        for r in range(3):
            self.grid.setRowStretch(r, 0)
            self.grid.setColumnStretch(r, 0)
        for slot, (r, c) in zip(slots, _POSITIONS[len(slots)]):
            self.grid.addWidget(self.frames[slot], r, c)
            self.grid.setRowStretch(r, 1)
            self.grid.setColumnStretch(c, 1)
            self.frames[slot].show()
        self._mark_active(self.model.active)
        for slot in slots:
            self.views[slot].request_render()
        if had_focus:
            self.views[self.model.active if self.model.active in slots else slots[0]].setFocus()

    def _mark_active(self, slot: int) -> None:
        for i, frame in enumerate(self.frames):
            frame.plane = self.model.viewports[i].plane  # a comparison may put one plane in two slots
            frame.set_active(i == slot and len(self.model.visible_slots()) > 1)

    def _render_all(self, *_args) -> None:
        for view in self.views:
            view.request_render()

    def visible_views(self):
        return [self.views[s] for s in self.model.visible_slots()]

    def dispose(self) -> None:
        self.model.layout_changed.disconnect(self.relayout)
        self.model.active_changed.disconnect(self._mark_active)
        for v in self.views:
            v.dispose()
