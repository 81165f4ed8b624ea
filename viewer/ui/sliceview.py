"""A 2D view: one plane (axial, coronal, sagittal or oblique) of one series, with its overlays.

It observes the ``ViewerModel`` (its viewport slot) and the ``SeriesState`` it shows; it changes
them only through ``ViewInteraction``.  Reslicing happens only when the plane moves; a crosshair,
text or window change re-renders the same slice.
"""

from __future__ import annotations

import json

import numpy as np
from PySide6.QtCore import QPointF, Signal

from viewer.core.planes import PLANES, aligned_axis
from viewer.core.viewstate import SeriesState, ViewerModel
from viewer.render.camera import View2D, apply_camera, view_for
from viewer.render.labels import LabelLayers
from viewer.render.markers import MarkerOverlay
from viewer.render.overlays import PLANE_COLOURS, CornerText, Crosshair, Notice, OrientationLabels, ScaleBar, text_box
from viewer.render.slice import GREY, SlicePipeline
from viewer.ui.annotations import corner_texts, orientation_letters, readout_text
from viewer.ui.interaction import ViewInteraction
from viewer.ui.vtkwidget import VtkWidget

SERIES_MIME = "application/x-hounsfield-series"


class SliceView(VtkWidget):
    readout = Signal(str)
    maximise_requested = Signal(int)
    series_dropped = Signal(int, dict)  # slot, {"root": ..., "series": ...}

    def __init__(self, model: ViewerModel, slot: int, session, parent=None):
        super().__init__(parent)
        self.model, self.slot, self.session = model, slot, session
        self.pipeline: SlicePipeline | None = None
        self.heatmaps: list = []  # HeatmapPipeline per heatmap layer of the shown series
        self.markers = MarkerOverlay()  # AI detections under review
        self.label_layers = LabelLayers(self.renderer, self._on_overlay)  # segmentations (viewer.render.labels)
        self.markers.add_to(self.renderer)
        self._marker_sets: list = []
        self.state: SeriesState | None = None
        self.view2d: View2D | None = None
        self.crosshair, self.labels, self.corners = Crosshair(), OrientationLabels(), CornerText()
        self.scalebar, self.notice = ScaleBar(), Notice()
        for overlay in (self.crosshair, self.labels, self.corners, self.scalebar, self.notice):
            overlay.add_to(self.renderer)
        self.interaction = ViewInteraction(self)
        self.scene_hooks: list = []  # fn(view), called after each scene update (measurements draw here)
        self._dirty = True
        self._cursor: QPointF | None = None  # where the mouse rests over the view (for the read-out)
        self.setAcceptDrops(True)
        model.viewport_changed.connect(self._on_viewport)
        model.crosshair_changed.connect(self._on_overlay)
        model.layout_changed.connect(self._on_overlay)
        self._bind()

    @property
    def plane(self) -> str:
        return self.model.viewports[self.slot].plane

    # binding to the series shown
    def _bind(self) -> None:
        state = self.model.state(self.slot)
        if state is self.state:
            return
        if self.state is not None:
            for sig, fn in self._state_slots():
                sig.disconnect(fn)
            self.renderer.RemoveViewProp(self.pipeline.actor)
            self.pipeline = None
            self._clear_heatmaps()
        self.state = state
        if state is not None:
            vtk_volume = self.session.vtk_volume(state.key)
            background = -1024.0 if state.volume.units == "HU" else 0.0
            self.pipeline = SlicePipeline(vtk_volume, background)
            self.renderer.AddViewProp(self.pipeline.actor)
            self.pipeline.actor.SetPosition(0, 0, -1)  # under the overlays
            for sig, fn in self._state_slots():
                sig.connect(fn)
            self._apply_window()
            self._sync_heatmaps()
        self._on_overlay()

    def _state_slots(self):
        s = self.state
        return ((s.point_changed, self._on_point), (s.rotation_changed, self._on_overlay),
                (s.window_changed, self._on_window), (s.data_changed, self._on_data),
                (s.open_series.overlays_changed, self._sync_heatmaps))

    # heatmap layers of the series (viewer.render.heatmap)
    def _clear_heatmaps(self) -> None:
        for hp in self.heatmaps:
            hp.layer.changed.disconnect(hp.on_changed)
            hp.remove_from(self.renderer)
        self.heatmaps = []
        for ms in self._marker_sets:
            ms.changed.disconnect(self._on_overlay)
        self._marker_sets = []

    def _sync_heatmaps(self) -> None:
        from viewer.render.heatmap import HeatmapPipeline

        self._clear_heatmaps()
        for layer in self.state.open_series.heatmaps if self.state is not None else []:
            hp = HeatmapPipeline(layer)

            def on_changed(hp=hp):
                hp.update_style()
                self.request_render()

            hp.on_changed = on_changed
            layer.changed.connect(on_changed)
            hp.add_to(self.renderer)
            if self.pipeline is not None and self.pipeline.geometry is not None:
                hp.set_geometry(self.pipeline.geometry)
            self.heatmaps.append(hp)
        self.label_layers.sync([ed.segmentation for ed in self.state.open_series.segmentations]
                              if self.state is not None else [])
        self._marker_sets = self.state.open_series.marker_sets if self.state is not None else []
        for ms in self._marker_sets:
            ms.changed.connect(self._on_overlay)
        self._on_overlay()

    def _on_viewport(self, slot: int) -> None:
        if slot == self.slot:
            self._bind()
            self._on_overlay()

    def _on_overlay(self, *_args) -> None:
        self._dirty = True
        self.request_render()

    def _on_point(self) -> None:
        """The point moved (a slice step by key or wheel, a click): what lies under the resting
        cursor changed with it, so the read-out is taken again there."""
        self._on_overlay()
        if self._cursor is not None:
            self.emit_readout(self._cursor)

    def _on_window(self) -> None:
        self._apply_window()
        self._on_overlay()

    def _on_data(self, k) -> None:
        self._on_overlay()

    def _apply_window(self) -> None:
        s = self.state
        if s is None or self.pipeline is None:
            return
        self.pipeline.set_window(*s.window, rescale=s.volume.rescale)
        points = self.session.colormap_points(s.colormap) or GREY
        self.pipeline.set_colormap(points, s.invert)

    def may_render(self) -> bool:
        return self.session.startup_done or (self.slot == 0 and self.state is not None)

    # scene update, just before drawing
    def resizeEvent(self, ev):  # noqa: N802
        super().resizeEvent(ev)
        self._dirty = True

    def before_render(self) -> None:
        if self._dirty:
            self._dirty = False
            self.update_scene()

    def update_scene(self) -> None:
        self._update_scene()
        for hook in self.scene_hooks:
            hook(self)

    def _update_scene(self) -> None:
        w, h = self.size_px()
        s, vp = self.state, self.model.viewports[self.slot]
        if s is None or self.pipeline is None or vp.plane not in PLANES:
            self.crosshair.update((0, 0), [], w, h, False)
            self.labels.update({}, w, h)
            self.corners.update({}, w, h)
            self.notice.update("No series" if s is None else "", w, h)
            self.scalebar.update(1.0, 0, h)
            self.markers.update([], None, None)
            return
        geom = s.geometry(vp.plane)
        self.pipeline.set_slab(vp.slab_mode, vp.slab_mm)  # thick-slab MIP / MinIP (no-op if unchanged)
        old = self.pipeline.geometry
        if old is None or not (np.allclose(old.origin, geom.origin) and np.allclose(old.n, geom.n)
                               and np.allclose(old.u, geom.u) and old.extent == geom.extent):
            self.pipeline.set_geometry(geom)
            for hp in self.heatmaps:
                hp.set_geometry(geom)
        self.label_layers.set_geometry(geom)  # no-op when the plane is unchanged
        self.label_layers.update()
        self.view2d = view_for(geom.extent, w, h, vp.zoom, vp.pan)
        apply_camera(self.renderer.GetActiveCamera(), self.view2d)
        centre = self.view2d.to_display(*geom.from_lps(s.point))
        lines = []
        for other in PLANES:
            if other != vp.plane:
                d = np.cross(geom.n, s.axes(other)[2])
                lines.append(((float(d @ geom.u), float(d @ geom.v)), PLANE_COLOURS[other]))
        notice = self._notice_text(s, vp.plane) or self._blank_text(s, vp.plane)
        self.notice.update(notice, w, h, self.renderer)
        hole = text_box(self.notice.actor, self.renderer) if notice else None  # the lines struck its words through
        self.crosshair.update(centre, lines, w, h, self.model.crosshair_visible, hole=hole)
        self.markers.update(s.open_series.marker_sets, geom, s.point, self.view2d.mm_per_pixel)
        zoom_pct = 100.0 * geom.spacing / self.view2d.mm_per_pixel
        self.corners.update(corner_texts(s, vp, zoom_pct, self.session.loading_text(s.key)), w, h)
        self.labels.update(orientation_letters(geom.u, geom.v), w, h)
        self.corners.fit_width(self.renderer, w)
        self.corners.stack_if_crowded(self.renderer)
        self.labels.avoid(self.corners, self.renderer)
        self.scalebar.update(self.view2d.mm_per_pixel, w, h)
        self.scalebar.avoid(self.corners, self.renderer)

    def _notice_text(self, s: SeriesState, plane: str) -> str:
        if s.loaded is None or aligned_axis(s.volume, s.axes(plane)[2]) != 2:
            return ""
        k = int(np.clip(np.round(s.volume.lps_to_index(s.point)[2]), 0, s.volume.shape[0] - 1))
        return "" if s.loaded[k] else "Loading this slice..."

    @staticmethod
    def _blank_text(s: SeriesState, plane: str) -> str:
        """On a slot no file fills (a gap in the series), say so: the view was black with 'Im: -' only."""
        src, vol = s.volume.source, s.volume
        if not src.blank_slices or len(src.instance_numbers) != vol.shape[0] \
                or aligned_axis(vol, s.axes(plane)[2]) != 2:
            return ""
        k = int(np.clip(np.round(vol.lps_to_index(s.point)[2]), 0, vol.shape[0] - 1))
        if k in src.blank_slices and src.instance_numbers[k] is None:
            return "No image at this position: missing from the series"
        return ""

    # geometry helpers for interaction (Qt logical pixels in, plane/LPS out)
    def _dpr(self) -> float:
        w, _ = self.size_px()
        return w / max(self.width(), 1)

    def lps_at(self, pos: QPointF) -> np.ndarray | None:
        if self.state is None or self.pipeline is None or self.plane not in PLANES:
            return None
        if self._dirty or self.view2d is None:
            self.update_scene()
            self._dirty = False
        dpr = self._dpr()
        _, h = self.size_px()
        x, y = self.view2d.to_plane(pos.x() * dpr, h - pos.y() * dpr)
        return self.pipeline.geometry.to_lps(x, y)

    def move_point_to(self, pos: QPointF) -> None:
        lps = self.lps_at(pos)
        if lps is not None:
            # stay on this view's slice: only the in-plane position changes
            n = self.pipeline.geometry.n
            lps = lps - ((lps - self.state.point) @ n) * n
            self.model.set_point(self.state.key, lps)

    def mm_per_pixel_logical(self) -> float:
        return (self.view2d.mm_per_pixel if self.view2d else 1.0) * self._dpr()

    def crosshair_centre_logical(self) -> tuple[float, float]:
        if self.view2d is None or self.state is None:
            return self.width() / 2, self.height() / 2
        geom = self.pipeline.geometry
        x, y = self.view2d.to_display(*geom.from_lps(self.state.point))
        dpr = self._dpr()
        _, h = self.size_px()
        return x / dpr, (h - y) / dpr

    def emit_readout(self, pos: QPointF) -> None:
        self._cursor = QPointF(pos)
        lps = self.lps_at(pos)
        if lps is not None:
            self.readout.emit(readout_text(self.state, lps))

    # Qt events
    def mousePressEvent(self, ev):  # noqa: N802
        self.setFocus()
        self.interaction.press(ev.position(), ev.button(), ev.modifiers())

    def mouseMoveEvent(self, ev):  # noqa: N802
        self.interaction.move(ev.position())

    def mouseReleaseEvent(self, ev):  # noqa: N802
        self.interaction.release(ev.position(), ev.button())

    def mouseDoubleClickEvent(self, ev):  # noqa: N802
        self.maximise_requested.emit(self.slot)

    def wheelEvent(self, ev):  # noqa: N802
        self.interaction.wheel(ev.angleDelta().y(), ev.modifiers())

    def enterEvent(self, ev):  # noqa: N802
        pass

    def leaveEvent(self, ev):  # noqa: N802
        self._cursor = None
        self.interaction.leave()

    def dragEnterEvent(self, ev):  # noqa: N802
        if ev.mimeData().hasFormat(SERIES_MIME):
            ev.acceptProposedAction()

    def dropEvent(self, ev):  # noqa: N802
        payload = json.loads(bytes(ev.mimeData().data(SERIES_MIME)).decode("utf-8"))
        ev.acceptProposedAction()
        self.series_dropped.emit(self.slot, payload)

    def dispose(self) -> None:
        if self.state is not None:
            for sig, fn in self._state_slots():
                sig.disconnect(fn)
        self._clear_heatmaps()
        self.label_layers.sync([])
        for sig, fn in ((self.model.viewport_changed, self._on_viewport),
                        (self.model.crosshair_changed, self._on_overlay),
                        (self.model.layout_changed, self._on_overlay)):
            sig.disconnect(fn)
        super().dispose()
