"""The 3D slot of the 2x2 layout: GPU ray-cast volume rendering of the series, with transfer-function
presets, MIP / MinIP, a clipping box, standard views, segment surfaces and detection markers.

Mouse: left-drag rotates, right-drag zooms, middle-drag (or Shift + left) pans, Ctrl + left-drag
edits the transfer function (right: shift to higher values, up: more opaque; in MIP / MinIP it is
the series' window/level), a left click moves the crosshair of the 2D views to the point picked.

Level of detail: while the camera moves (or the transfer function is dragged) the volume renders
at the "interactive" quality; REFINE_MS after the last change it renders once at "refined"
quality.  Point changes in the 2D views do not re-render the 3D view.  A click-to-segment session
holds the refined render back (``hold_refined``) until it ends, so that each click's surface shows
at once and the next click never waits for a slow refined frame.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera

from viewer.core.viewstate import SeriesState, ViewerModel
from viewer.render.overlays import text_actor
from viewer.render.scene3d import content_corners, orientation_cube, set_standard_view
from viewer.render.transfer import TransferEdit, presets_for_modality
from viewer.render.volume import VolumeRenderer, make_picker, opacity_pick, projection_pick
from viewer.ui.resources import volume_presets
from viewer.ui.view3d_layers import LayerSync
from viewer.ui.view3d_toolbar import MODE_NAMES, View3DToolbar
from viewer.ui.view3d_widgets import ClipBox, SceneExtras
from viewer.ui.vtkwidget import VtkWidget

CLICK_SLOP = 3.0


class View3D(VtkWidget):
    maximise_requested = Signal(int)
    picked = Signal(object)  # LPS point (numpy) of a click in 3D
    REFINE_MS = 250

    def __init__(self, model: ViewerModel, slot: int, session, parent=None):
        super().__init__(parent)
        self.model, self.slot, self.session = model, slot, session
        self.renderer.GradientBackgroundOn()
        self.renderer.SetBackground(0.02, 0.02, 0.03)
        self.renderer.SetBackground2(0.13, 0.15, 0.19)
        self.state: SeriesState | None = None
        self.volume: VolumeRenderer | None = None
        self.preset_name = ""
        self._content = None
        self._user_moved = False  # the camera was moved by hand since the series was shown
        self.view_name = "anterior"
        self._marker = None
        self._initialised = False
        self.title = text_actor(13)
        self.title.SetDisplayPosition(8, 8)
        self.renderer.AddViewProp(self.title)
        self.picker = make_picker()
        self.clipbox = ClipBox(self)
        self.extras = SceneExtras(self.renderer)
        self.layers = LayerSync(self.renderer, self.changed, self)  # the series' segments and detections
        self.toolbar = View3DToolbar(self)
        self._refine_timer = QTimer(self)
        self._refine_timer.setSingleShot(True)
        self._refine_timer.timeout.connect(self.refine)
        self._press: tuple | None = None
        self.lod_enabled = True  # False: camera motion keeps the current quality (benchmarks)
        self._hold_refined = False  # True: changes draw at the interactive quality only (click to segment)
        model.viewport_changed.connect(self._on_viewport)
        self._bind()

    # binding to the series shown
    def _slots(self):
        s = self.state
        return ((s.window_changed, self._on_window), (s.data_changed, self._on_data))

    def _on_viewport(self, slot: int) -> None:
        if slot == self.slot or self.model.state(self.slot) is not self.state:
            self._bind()

    def _bind(self) -> None:
        state = self.model.state(self.slot)
        if state is self.state:
            return
        if self.state is not None:
            for sig, fn in self._slots():
                sig.disconnect(fn)
            self.renderer.RemoveVolume(self.volume.actor)
            self.clipbox.reset()
            self.extras.clear()
        self.state, self.volume, self._content, self._user_moved = state, None, None, False
        if state is not None:
            self.volume = VolumeRenderer(self.session.vtk_volume(state.key))
            self.volume.set_window(*state.window)
            self.volume.actor.SetVisibility(state.loaded is None)
            self.renderer.AddVolume(self.volume.actor)
            for sig, fn in self._slots():
                sig.connect(fn)
            names = self.preset_names()
            self.toolbar.set_presets(names, names[0] if names else "")
            if names:
                self.set_preset(names[0])
            self.reset_camera()
        self.layers.bind(state)
        self._update_title()
        self.changed()

    def preset_names(self) -> list[str]:
        if self.state is None:
            return []
        return [p.name for p in presets_for_modality(list(volume_presets()), self.state.volume.modality)]

    # settings (the toolbar and tests call these)
    def set_preset(self, name: str) -> None:
        preset = next((p for p in volume_presets() if p.name == name), None)
        if preset is None or self.volume is None:
            return
        self.preset_name = name
        self.volume.set_preset(preset)
        self._sync()
        self.changed()

    def set_mode(self, mode: str) -> None:
        if self.volume is None:
            return
        self.volume.set_mode(mode)
        self._sync()
        self.changed()

    def set_edit(self, shift: float = 0.0, opacity: float = 1.0) -> None:
        if self.volume is None:
            return
        self.volume.set_edit(TransferEdit(float(shift), max(0.05, min(float(opacity), 20.0))))
        self._sync()
        self.changed()

    def set_clipping(self, on: bool) -> None:
        self.clipbox.set_enabled(bool(on))
        self._sync()
        self.changed()

    def set_clip_box(self, bounds) -> None:
        """Clip to an LPS box (xmin, xmax, ymin, ymax, zmin, zmax); None: no clipping."""
        self.clipbox.set_bounds(bounds)
        self._sync()
        self.changed()

    def standard_view(self, name: str) -> None:
        if self.state is None:
            return
        self.view_name = name
        w, h = self.size_px()
        aspect = w / h if min(w, h) > 8 else 1.0
        if self._content is None:
            self._content = content_corners(self.state.volume)
        set_standard_view(self.renderer.GetActiveCamera(), name, self._content, aspect)
        self.renderer.ResetCameraClippingRange()
        self.changed()

    def reset_camera(self) -> None:
        self.standard_view("anterior")

    def reset_3d(self) -> None:
        """Default preset and mode, no edit, no clipping, anterior view."""
        if self.volume is None:
            return
        self.clipbox.reset()
        self.volume.set_mode("composite")
        names = self.preset_names()
        if names:
            self.set_preset(names[0])
        self.reset_camera()

    # segment surfaces and detection markers (render side: viewer/render/surfaces.py)
    def set_segments(self, labels, colours=None, iterations: int = 20) -> list[int]:
        """Show smoothed surfaces of a label-map Volume; returns the labels shown."""
        shown = self.extras.set_segments(labels, colours, iterations)
        self.changed()
        return shown

    def set_segment_visible(self, label: int, visible: bool) -> None:
        self.extras.set_segment_visible(label, visible)
        self.changed()

    def clear_segments(self) -> None:
        self.extras.clear_segments()
        self.changed()

    def set_detections(self, detections, colour=(1.0, 0.85, 0.1)) -> None:
        self.extras.set_detections(detections, colour)
        self.changed()

    def clear_detections(self) -> None:
        self.extras.clear_detections()
        self.changed()

    # rendering with level of detail
    def changed(self, *_args) -> None:
        """Something visible changed: draw fast now, refined once things are quiet."""
        if self.volume is not None and self.volume.quality != "interactive":
            self.volume.set_quality("interactive")
        self.request_render()
        if not self._hold_refined:
            self._refine_timer.start(self.REFINE_MS)

    def hold_refined(self, on: bool) -> None:
        """While on, changes (a click-to-segment mask, say) draw at the interactive quality only: the
        refined ray casting takes seconds on a software renderer and would hold up the next click.
        Off: the refined render follows."""
        if bool(on) == self._hold_refined:
            return
        self._hold_refined = bool(on)
        if on:
            self._refine_timer.stop()
        else:
            self._refine_timer.start(self.REFINE_MS)

    def refine(self) -> None:
        if self.volume is not None and self.volume.quality != "refined":
            self.volume.set_quality("refined")
            self.request_render()

    def capture_still(self, quality: str = "refined"):
        """The view's pixels at a given quality (tests, screenshots)."""
        self._refine_timer.stop()
        if self.volume is not None:
            self.volume.set_quality(quality)
        return self.capture()

    def _on_interaction(self, _obj=None, event: str = "") -> None:
        if not self.lod_enabled:
            return
        if event == "StartInteractionEvent":
            self._user_moved = True
            self._refine_timer.stop()
            if self.volume is not None:
                self.volume.set_quality("interactive")
        elif not self._hold_refined:
            self._refine_timer.start(self.REFINE_MS)

    def _on_window(self) -> None:
        if self.volume is not None:
            self.volume.set_window(*self.state.window)
            if self.volume.mode != "composite" or (self.volume.preset and self.volume.preset.units == "window"):
                self.changed()

    def _on_data(self, _k=None) -> None:
        if self.volume is None or self.state.loaded is not None:
            return  # still loading: the volume appears (one texture upload) when the load ends
        self.volume.modified()
        self.volume.actor.SetVisibility(True)
        self._content = None  # the box of the body, known now that every slice is in
        if not self._user_moved:
            self.reset_camera()
        self.volume.set_window(*self.state.window)
        self._update_title()
        self.changed()

    def may_render(self) -> bool:
        return self.session.startup_done

    def before_render(self) -> None:
        self._ensure_interactor()
        self.renderer.ResetCameraClippingRange()

    def _ensure_interactor(self) -> None:
        if self._initialised:
            return
        self._initialised = True
        style = vtkInteractorStyleTrackballCamera()
        for event in ("StartInteractionEvent", "EndInteractionEvent"):
            style.AddObserver(event, self._on_interaction)
        self._Iren.SetInteractorStyle(style)
        self._Iren.Initialize()
        from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget

        self._marker = vtkOrientationMarkerWidget()
        self._marker.SetOrientationMarker(orientation_cube())
        self._marker.SetInteractor(self._Iren)
        self._marker.SetViewport(0.82, 0.0, 1.0, 0.22)
        self._marker.SetEnabled(1)
        self._marker.InteractiveOff()

    def _update_title(self) -> None:
        if self.state is None:
            text = "3D"
        elif self.state.loaded is not None:
            text = "3D  (after loading)"
        else:
            text = f"3D  {MODE_NAMES[self.volume.mode]}" + (f"  {self.preset_name}" if self.volume.mode == "composite"
                                                            else "")
        self.title.SetInput(text)

    def _sync(self) -> None:
        v = self.volume
        if v is None:
            return
        self.toolbar.sync(self.preset_name, v.mode, self.clipbox.enabled, v.edit)
        self._update_title()

    # picking
    def pick_lps(self, x: float, y: float) -> np.ndarray | None:
        """The LPS point under display pixel (x, y) (VTK: origin bottom-left), or None."""
        if self.volume is None:
            return None
        if self.volume.mode != "composite":
            near, far = self._ray(x, y)
            return projection_pick(self.state.volume, near, far, self.volume.mode, self.volume.clip_bounds)
        if not self.volume.vtk_picks():
            near, far = self._ray(x, y)
            return opacity_pick(self.state.volume, near, far, self.volume.property.GetScalarOpacity(0),
                                self.volume.clip_bounds)
        self.before_render()
        if self.picker.Pick(x, y, 0.0, self.renderer) and self.picker.GetProp3D() is not None:
            return np.array(self.picker.GetPickPosition())
        return None

    def _ray(self, x: float, y: float):
        ren = self.renderer
        out = []
        for z in (0.0, 1.0):
            ren.SetDisplayPoint(x, y, z)
            ren.DisplayToWorld()
            w = ren.GetWorldPoint()
            out.append(np.array(w[:3]) / w[3])
        return out

    def pick_to_crosshair(self, x: float, y: float) -> bool:
        lps = self.pick_lps(x, y)
        if lps is None or self.state is None:
            return False
        self.model.set_point(self.state.key, lps)
        self.picked.emit(lps)
        return True

    # Qt events
    def _display(self, pos: QPointF) -> tuple[float, float]:
        w, h = self.size_px()
        dpr = w / max(self.width(), 1)
        return pos.x() * dpr, h - pos.y() * dpr

    def mousePressEvent(self, ev):  # noqa: N802
        self.setFocus()
        self.model.set_active(self.slot)
        ctrl = bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if ev.button() == Qt.MouseButton.LeftButton and ctrl and self.volume is not None:
            e, s = self.volume.edit, self.state
            self._press = ("edit", ev.position(), e, s.window, False)
            return
        self._press = ("vtk", ev.position(), None, None, False)
        super().mousePressEvent(ev)

    def mouseMoveEvent(self, ev):  # noqa: N802
        p = self._press
        if p is not None and not p[4]:
            d = ev.position() - p[1]
            if math.hypot(d.x(), d.y()) > CLICK_SLOP:
                self._press = p = (*p[:4], True)
        if p is not None and p[0] == "edit":
            self._drag_edit(ev.position() - p[1], p[2], p[3])
            return
        super().mouseMoveEvent(ev)

    def _drag_edit(self, d: QPointF, edit: TransferEdit, window) -> None:
        if self.volume.mode == "composite":
            preset = self.volume.preset
            per_px = window[1] / 300.0 if preset is not None and preset.units == "window" else 2.0
            self.set_edit(edit.shift + d.x() * per_px, edit.opacity * math.exp(-d.y() * 0.01))
        else:
            centre, width = window
            self.state.set_window(centre + d.y() * width / 300.0, width * math.exp(d.x() * 0.005))

    def mouseReleaseEvent(self, ev):  # noqa: N802
        p, self._press = self._press, None
        if p is not None and p[0] == "edit":
            return
        super().mouseReleaseEvent(ev)
        if p is not None and not p[4] and ev.button() == Qt.MouseButton.LeftButton and not ev.modifiers():
            self.pick_to_crosshair(*self._display(ev.position()))

    def mouseDoubleClickEvent(self, ev):  # noqa: N802
        self.maximise_requested.emit(self.slot)

    def dispose(self) -> None:
        self._refine_timer.stop()
        if self.state is not None:
            for sig, fn in self._slots():
                sig.disconnect(fn)
        self.model.viewport_changed.disconnect(self._on_viewport)
        self.clipbox.dispose()
        if self._marker is not None:
            self._marker.SetEnabled(0)
            self._marker = None
        super().dispose()


PlanesView3D = View3D  # the placeholder's name, kept for older imports
