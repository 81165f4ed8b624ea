"""The 3D slot of the 2x2 layout: the three MPR planes placed in patient space, with the volume's
outline and an orientation cube.  Left-drag rotates, right-drag zooms, middle-drag pans.

It is the placeholder the 3D issue (volume rendering) replaces; it re-renders at most ten times
a second so that scrolling in the 2D views stays fluent.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Signal
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

from viewer.core.viewstate import PLANES, SeriesState, ViewerModel, volume_centre, volume_corners
from viewer.render.overlays import text_actor
from viewer.render.slice import GREY, SlicePipeline, set_matrix
from viewer.ui.vtkwidget import VtkWidget


def outline_actor(corners: np.ndarray) -> vtkActor:
    """The 12 edges of the volume's box (corners ordered i, j, k bits as in ``volume_corners``)."""
    points, lines = vtkPoints(), vtkCellArray()
    for c in corners:
        points.InsertNextPoint(*c)
    for a in range(8):
        for bit in (1, 2, 4):
            b = a | bit
            if b != a:
                lines.InsertNextCell(2)
                lines.InsertCellPoint(a)
                lines.InsertCellPoint(b)
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetLines(lines)
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(poly)
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(0.55, 0.6, 0.68)
    actor.GetProperty().LightingOff()
    return actor


class PlanesView3D(VtkWidget):
    maximise_requested = Signal(int)

    def __init__(self, model: ViewerModel, slot: int, session, parent=None):
        super().__init__(parent, min_interval_ms=100)
        self.model, self.slot, self.session = model, slot, session
        self.renderer.GradientBackgroundOn()
        self.renderer.SetBackground(0.02, 0.02, 0.03)
        self.renderer.SetBackground2(0.13, 0.15, 0.19)
        self._initialised = False  # the interactor and the orientation cube wait for the first render
        self.state: SeriesState | None = None
        self.pipelines: dict[str, SlicePipeline] = {}
        self._matrices = {p: vtkMatrix4x4() for p in PLANES}
        self._outline = None
        self.title = text_actor(13)
        self.title.SetInput("3D  (planes)")
        self.title.SetDisplayPosition(8, 8)
        self.renderer.AddViewProp(self.title)
        self._marker = None
        self._dirty = True
        model.viewport_changed.connect(self._on_viewport)
        self._bind()

    def _on_viewport(self, slot: int) -> None:
        if slot == self.slot or self.model.state(self.slot) is not self.state:
            self._bind()

    def _slots(self):
        s = self.state
        return ((s.point_changed, self._changed), (s.rotation_changed, self._changed),
                (s.window_changed, self._on_window), (s.data_changed, self._changed))

    def _bind(self) -> None:
        state = self.model.state(self.slot)
        if state is self.state:
            return
        if self.state is not None:
            for sig, fn in self._slots():
                sig.disconnect(fn)
            for p in self.pipelines.values():
                self.renderer.RemoveViewProp(p.actor)
            if self._outline is not None:
                self.renderer.RemoveViewProp(self._outline)
        self.pipelines, self._outline, self.state = {}, None, state
        if state is not None:
            vtk_volume = self.session.vtk_volume(state.key)
            background = -1024.0 if state.volume.units == "HU" else 0.0
            for plane in PLANES:
                p = SlicePipeline(vtk_volume, background)
                p.actor.SetUserMatrix(self._matrices[plane])
                p.actor.ForceOpaqueOn()
                self.pipelines[plane] = p
                self.renderer.AddViewProp(p.actor)
            self._outline = outline_actor(volume_corners(state.volume))
            self.renderer.AddViewProp(self._outline)
            for sig, fn in self._slots():
                sig.connect(fn)
            self._on_window()
            self.update_scene()
            self.reset_camera()
        self._changed()

    def _ensure_marker(self) -> None:
        if self._marker is not None:
            return
        from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
        from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor

        cube = vtkAnnotatedCubeActor()
        for face, text in (("XPlus", "L"), ("XMinus", "R"), ("YPlus", "P"), ("YMinus", "A"),
                           ("ZPlus", "S"), ("ZMinus", "I")):
            getattr(cube, f"Set{face}FaceText")(text)
        cube.SetFaceTextScale(0.6)
        cube.GetCubeProperty().SetColor(0.25, 0.28, 0.33)
        cube.GetTextEdgesProperty().SetColor(0.6, 0.6, 0.6)
        for getter in ("GetXPlusFaceProperty", "GetXMinusFaceProperty", "GetYPlusFaceProperty",
                       "GetYMinusFaceProperty", "GetZPlusFaceProperty", "GetZMinusFaceProperty"):
            getattr(cube, getter)().SetColor(1.0, 0.82, 0.5)
        self._marker = vtkOrientationMarkerWidget()
        self._marker.SetOrientationMarker(cube)
        self._marker.SetInteractor(self._Iren)
        self._marker.SetViewport(0.82, 0.0, 1.0, 0.22)
        self._marker.SetEnabled(1)
        self._marker.InteractiveOff()

    def reset_camera(self) -> None:
        if self.state is None:
            return
        c = volume_centre(self.state.volume)
        corners = volume_corners(self.state.volume)
        radius = float(np.linalg.norm(corners - c, axis=1).max())
        cam = self.renderer.GetActiveCamera()
        d = np.array([-0.45, -0.85, 0.3])
        d /= np.linalg.norm(d)
        cam.SetFocalPoint(*c)
        cam.SetPosition(*(c + d * radius * 3.6))
        cam.SetViewUp(0.0, 0.0, 1.0)
        cam.SetViewAngle(30.0)
        self.renderer.ResetCameraClippingRange()

    def _on_window(self) -> None:
        s = self.state
        if s is None:
            return
        points = self.session.colormap_points(s.colormap) or GREY
        for p in self.pipelines.values():
            p.set_window(*s.window, rescale=s.volume.rescale)
            p.set_colormap(points, s.invert)
        self.request_render()

    def _changed(self, *_args) -> None:
        self._dirty = True
        self.request_render()

    def may_render(self) -> bool:
        return self.session.startup_done

    def before_render(self) -> None:
        if not self._initialised:
            self._initialised = True
            self._Iren.SetInteractorStyle(vtkInteractorStyleTrackballCamera())
            self._Iren.Initialize()
            self._ensure_marker()
        if self._dirty:
            self._dirty = False
            self.update_scene()

    def update_scene(self) -> None:
        s = self.state
        if s is None:
            return
        for plane, p in self.pipelines.items():
            geom = s.geometry(plane)
            old = p.geometry
            if old is None or not (np.allclose(old.origin, geom.origin) and np.allclose(old.n, geom.n)
                                   and np.allclose(old.u, geom.u)):
                p.set_geometry(geom)
                set_matrix(self._matrices[plane], geom.matrix())
                self._matrices[plane].Modified()
        self.renderer.ResetCameraClippingRange()

    def mouseDoubleClickEvent(self, ev):  # noqa: N802
        self.maximise_requested.emit(self.slot)

    def dispose(self) -> None:
        if self.state is not None:
            for sig, fn in self._slots():
                sig.disconnect(fn)
        self.model.viewport_changed.disconnect(self._on_viewport)
        if self._marker is not None:
            self._marker.SetEnabled(0)
            self._marker = None
        super().dispose()
