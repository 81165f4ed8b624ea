"""Segment editing tools of a 2D view (names, titles and keys in ``viewer.core.tools``, handlers
attached with ``viewer.ui.interaction.attach``): brush, eraser, threshold brush, flood fill, lasso
fill and lasso cut.  Each handler is given the segments controller when it is made.

A handler works in the view's plane (any orientation, oblique included): the brush is a disc in
that plane (or a sphere when the 3D brush is on), the lasso a polygon in it.  A drag is one undo
step.  The brush's outline follows the mouse (a circle of the brush's size in mm).
"""

from __future__ import annotations

import numpy as np
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData, vtkPolyLine
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

from viewer.core.tools import REGISTRY
from viewer.ui import interaction

TOOLS = REGISTRY.names("segment")  # in menu order


class Outline:
    """A polyline in the view's plane coordinates (the brush circle, the lasso), over the image."""

    def __init__(self, renderer, colour=(1.0, 0.9, 0.2)):
        self.poly = vtkPolyData()
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(self.poly)
        self.actor = vtkActor()
        self.actor.SetMapper(mapper)
        self.actor.GetProperty().SetColor(*colour)
        self.actor.GetProperty().SetLineWidth(1.5)
        self.actor.GetProperty().LightingOff()
        self.actor.PickableOff()
        self.actor.VisibilityOff()
        renderer.AddViewProp(self.actor)

    def set_points(self, xy, closed: bool = True) -> None:
        pts = vtkPoints()
        n = len(xy)
        for x, y in xy:
            pts.InsertNextPoint(float(x), float(y), 0.0)
        line = vtkPolyLine()
        count = n + 1 if closed and n > 2 else n
        line.GetPointIds().SetNumberOfIds(count)
        for i in range(count):
            line.GetPointIds().SetId(i, i % n)
        cells = vtkCellArray()
        cells.InsertNextCell(line)
        self.poly.SetPoints(pts)
        self.poly.SetLines(cells)
        self.poly.Modified()
        self.actor.SetVisibility(n > 1)

    def hide(self) -> None:
        self.actor.VisibilityOff()


class _Tool:
    def __init__(self, view, controller):
        self.view, self.controller = view, controller

    def _plane(self):
        geom = self.view.pipeline.geometry if self.view.pipeline is not None else None
        return geom

    def _lps(self, pos):
        return self.view.lps_at(pos)

    def _target(self):
        return self.controller.target(self.view.state)

    def hover(self, pos) -> None:
        pass

    def leave(self) -> None:
        pass


class BrushTool(_Tool):
    """Paint (or erase) with a round brush; ``threshold``: only voxels in the HU range."""

    def __init__(self, view, controller, erase: bool = False, threshold: bool = False):
        super().__init__(view, controller)
        self.erase, self.threshold = erase, threshold
        self.cursor = Outline(view.renderer, (1.0, 0.4, 0.4) if erase else (1.0, 0.9, 0.2))
        self.last = None
        self.editing = None
        view.model.tool_changed.connect(self.leave)  # the circle goes with the tool

    def press(self, pos, modifiers) -> None:
        lps = self._lps(pos)
        found = self._target()
        if lps is None or found is None:
            return
        seg, ed, s = found
        self.editing = (ed, s)
        ed.begin("Eraser" if self.erase else "Threshold brush" if self.threshold else "Brush")
        self.last = lps
        self._dab(lps, lps)
        self._cursor(lps)

    def _dab(self, p0, p1) -> None:
        ed, s = self.editing
        c = self.controller.settings
        normal = None if c.sphere else self._plane().n
        ed.brush(s, p0, p1, radius_mm=c.brush_mm, normal=normal, erase=self.erase,
                 hu_range=c.hu_range if self.threshold else None)

    def move(self, pos) -> None:
        lps = self._lps(pos)
        if lps is None:
            return
        self._cursor(lps)
        if self.editing is not None:
            self._dab(self.last, lps)
            self.last = lps

    def release(self, pos) -> None:
        if self.editing is not None:
            self.editing[0].end()
        self.editing, self.last = None, None

    def hover(self, pos) -> None:
        lps = self._lps(pos)
        if lps is not None:
            self._cursor(lps)

    def _cursor(self, lps) -> None:
        geom = self._plane()
        if geom is None:
            return
        x, y = geom.from_lps(lps)
        r = self.controller.settings.brush_mm
        a = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        self.cursor.set_points(np.column_stack([x + r * np.cos(a), y + r * np.sin(a)]))
        self.view.request_render()

    def leave(self) -> None:
        if self.cursor.actor.GetVisibility():
            self.cursor.hide()
            self.view.request_render()


class FillTool(_Tool):
    """Flood fill from the clicked voxel: in the view plane, or in 3D."""

    def press(self, pos, modifiers) -> None:
        lps = self._lps(pos)
        found = self._target()
        if lps is None or found is None:
            return
        _, ed, s = found
        c = self.controller.settings
        ed.flood_fill(s, lps, tolerance=c.tolerance, hu_range=c.hu_range if c.fill_uses_range else None,
                      normal=None if c.fill_3d else self._plane().n)

    def move(self, pos) -> None:
        pass

    def release(self, pos) -> None:
        pass


class LassoTool(_Tool):
    """Draw a closed outline in the view plane: fill its inside (or cut it, ``erase``)."""

    def __init__(self, view, controller, erase: bool = False):
        super().__init__(view, controller)
        self.erase = erase
        self.points: list = []
        self.outline = Outline(view.renderer, (1.0, 0.4, 0.4) if erase else (0.4, 1.0, 0.6))

    def press(self, pos, modifiers) -> None:
        lps = self._lps(pos)
        self.points = [] if lps is None else [lps]

    def move(self, pos) -> None:
        lps = self._lps(pos)
        if lps is None or not self.points:
            return
        self.points.append(lps)
        geom = self._plane()
        self.outline.set_points([geom.from_lps(p) for p in self.points], closed=False)
        self.view.request_render()

    def release(self, pos) -> None:
        pts, self.points = self.points, []
        self.outline.hide()
        self.view.request_render()
        found = self._target()
        if len(pts) < 3 or found is None:
            return
        _, ed, s = found
        ed.polygon(s, pts, self._plane().n, erase=self.erase)


def register(controller) -> None:
    """Attach the segment tools' handlers; each works for ``controller`` (the SegmentsController)."""
    factories = {
        "seg_brush": BrushTool,
        "seg_eraser": lambda view, c: BrushTool(view, c, erase=True),
        "seg_threshold": lambda view, c: BrushTool(view, c, threshold=True),
        "seg_fill": FillTool,
        "seg_lasso": LassoTool,
        "seg_lasso_cut": lambda view, c: LassoTool(view, c, erase=True),
    }
    for name, make in factories.items():
        interaction.attach(name, make, controller)
