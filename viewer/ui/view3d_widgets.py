"""Helpers of the 3D view: the clipping box widget and the extra actors (segments, detections)."""

from __future__ import annotations

from vtkmodules.vtkInteractionWidgets import vtkBoxRepresentation, vtkBoxWidget2

from viewer.render.surfaces import detection_markers, label_surfaces


class ClipBox:
    """An axis-aligned clipping box (vtkBoxWidget2, no rotation) driving the volume's clip planes."""

    def __init__(self, view):
        self.view = view
        self.widget: vtkBoxWidget2 | None = None
        self.enabled = False
        self.bounds: tuple | None = None  # the box last used (kept while clipping is off)

    def _ensure_widget(self) -> vtkBoxWidget2:
        if self.widget is None:
            self.view._ensure_interactor()
            rep = vtkBoxRepresentation()
            rep.SetPlaceFactor(1.0)
            rep.GetOutlineProperty().SetColor(0.95, 0.8, 0.3)
            self.widget = vtkBoxWidget2()
            self.widget.SetInteractor(self.view._Iren)
            self.widget.SetRepresentation(rep)
            self.widget.RotationEnabledOff()
            self.widget.AddObserver("InteractionEvent", self._on_drag)
            self.widget.AddObserver("StartInteractionEvent", lambda *_: self.view._on_interaction(
                event="StartInteractionEvent"))
            self.widget.AddObserver("EndInteractionEvent", lambda *_: self.view._on_interaction(
                event="EndInteractionEvent"))
        return self.widget

    def _on_drag(self, *_args) -> None:
        self.bounds = tuple(self.widget.GetRepresentation().GetBounds())
        if self.view.volume is not None:
            self.view.volume.set_clip_box(self.bounds)

    def set_enabled(self, on: bool) -> None:
        vol = self.view.volume
        if vol is None:
            return
        self.enabled = on
        if on and self.bounds is None:
            self.bounds = vol.bounds()
        if on:
            w = self._ensure_widget()
            w.GetRepresentation().PlaceWidget(list(self.bounds))
            w.On()
        elif self.widget is not None:
            self.widget.Off()
        vol.set_clip_box(self.bounds if on else None)

    def set_bounds(self, bounds) -> None:
        if bounds is None:
            self.bounds = None
            self.set_enabled(False)
            return
        self.bounds = tuple(float(b) for b in bounds)
        self.set_enabled(True)

    def reset(self) -> None:
        self.bounds = None
        if self.widget is not None:
            self.widget.Off()
        self.enabled = False
        if self.view.volume is not None:
            self.view.volume.set_clip_box(None)

    def dispose(self) -> None:
        if self.widget is not None:
            self.widget.Off()
            self.widget = None


class SceneExtras:
    """Segment surfaces (one actor per label) and detection markers in a renderer."""

    def __init__(self, renderer):
        self.renderer = renderer
        self.segments: dict[int, object] = {}
        self.detections = None

    def set_segments(self, labels, colours=None, iterations: int = 20) -> list[int]:
        self.clear_segments()
        self.segments = label_surfaces(labels, colours, iterations)
        for actor in self.segments.values():
            self.renderer.AddActor(actor)
        return sorted(self.segments)

    def set_segment_visible(self, label: int, visible: bool) -> None:
        if label in self.segments:
            self.segments[label].SetVisibility(bool(visible))

    def clear_segments(self) -> None:
        for actor in self.segments.values():
            self.renderer.RemoveActor(actor)
        self.segments = {}

    def set_detections(self, detections, colour=(1.0, 0.85, 0.1)) -> None:
        self.clear_detections()
        self.detections = detection_markers(detections, colour)
        if self.detections is not None:
            self.renderer.AddActor(self.detections)

    def clear_detections(self) -> None:
        if self.detections is not None:
            self.renderer.RemoveActor(self.detections)
        self.detections = None

    def clear(self) -> None:
        self.clear_segments()
        self.clear_detections()
