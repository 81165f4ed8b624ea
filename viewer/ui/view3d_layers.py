"""What the 3D view shows besides the volume: the segments of the series' segmentations as smoothed
surfaces in their colours, and its AI detections as spheres (pending yellow, accepted green,
rejected not shown), kept in step with the model.

Edits re-mesh only the segments of the layer that changed, once the editing has paused
(``DELAY_MS``); hiding a segment or the whole segmentation hides its surface at once.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer

from viewer.render.surfaces import detection_markers, segment_surface

STATUS_COLOURS = {"pending": (1.0, 0.85, 0.1), "accepted": (0.3, 0.9, 0.4)}


class LayerSync(QObject):
    DELAY_MS = 300

    def __init__(self, renderer, on_change, parent=None):
        super().__init__(parent)
        self.renderer = renderer
        self.on_change = on_change  # the view re-renders
        self.state = None
        self.surfaces: dict[tuple[str, int], object] = {}  # (segmentation uid, segment number) -> actor
        self.markers: dict[int, list] = {}  # id(marker set) -> actors
        self._dirty: set[tuple[str, int]] = set()
        self._hooks: list[tuple[object, object]] = []  # (core Signal, callback) to disconnect
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.DELAY_MS)
        self._timer.timeout.connect(self.flush)

    # binding
    def bind(self, state) -> None:
        self._unhook()
        self.clear()
        self.state = state
        if state is not None:
            self._rebind_layers()

    def _hook(self, signal, fn) -> None:
        signal.connect(fn)
        self._hooks.append((signal, fn))

    def _unhook(self) -> None:
        for signal, fn in self._hooks:
            signal.disconnect(fn)
        self._hooks = []

    def _segmentations(self) -> list:
        return [ed.segmentation for ed in self.state.open_series.segmentations]

    def _rebind_layers(self) -> None:
        """Segmentations or marker sets were added or removed: hook the new ones, drop the gone."""
        state = self.state
        self._unhook()
        self._hook(state.open_series.overlays_changed, self._rebind_layers)
        for seg in self._segmentations():
            self._hook(seg.changed, lambda layer, _box, seg=seg: self._voxels_changed(seg, layer))
            self._hook(seg.segments_changed, self._segments_changed)
            self._hook(seg.layers_changed, self._segments_changed)
            self._hook(seg.style_changed, self._apply_visibility)
        self._sync_keys()
        for ms in state.open_series.marker_sets:
            self._hook(ms.changed, lambda ms=ms: self._draw_markers(ms))
        for key in [k for k in self.markers if k not in {id(ms) for ms in state.open_series.marker_sets}]:
            for actor in self.markers.pop(key):
                self.renderer.RemoveActor(actor)
        for ms in state.open_series.marker_sets:
            self._draw_markers(ms)
        self.flush()

    # segments
    def _voxels_changed(self, seg, layer: int) -> None:
        self._dirty |= {(seg.uid, s.number) for s in seg.segments if s.layer == layer}
        self._timer.start()

    def _sync_keys(self) -> None:
        """Drop the surfaces of segments that are gone; new segments are due for meshing."""
        live = {(seg.uid, s.number) for seg in self._segmentations() for s in seg.segments}
        for key in [k for k in self.surfaces if k not in live]:
            self._drop(key)
        self._dirty |= live - set(self.surfaces)

    def _segments_changed(self) -> None:
        """Added, removed, recoloured, shown/hidden: colour and visibility now, meshes when due."""
        self._sync_keys()
        self._apply_visibility()
        if self._dirty:
            self._timer.start()

    def flush(self) -> None:
        """Re-mesh the segments whose voxels changed."""
        self._timer.stop()
        if self.state is None or not self._dirty:
            self._dirty.clear()
            return
        by_key = {(seg.uid, s.number): (seg, s) for seg in self._segmentations() for s in seg.segments}
        for key in list(self._dirty):
            self._drop(key)
            if key not in by_key:
                continue
            seg, s = by_key[key]
            actor = segment_surface(seg.layers[s.layer], seg.affine, s.number,
                                    tuple(c / 255.0 for c in s.color))
            if actor is not None:
                self.surfaces[key] = actor
                self.renderer.AddActor(actor)
        self._dirty.clear()
        self._apply_visibility()

    def _apply_visibility(self) -> None:
        if self.state is None:
            return
        for seg in self._segmentations():
            for s in seg.segments:
                actor = self.surfaces.get((seg.uid, s.number))
                if actor is not None:
                    actor.SetVisibility(bool(seg.visible and s.visible))
                    actor.GetProperty().SetColor(*(c / 255.0 for c in s.color))
        self.on_change()

    def _drop(self, key) -> None:
        actor = self.surfaces.pop(key, None)
        if actor is not None:
            self.renderer.RemoveActor(actor)

    # detections
    def _draw_markers(self, ms) -> None:
        for actor in self.markers.pop(id(ms), []):
            self.renderer.RemoveActor(actor)
        actors = []
        if ms.visible:
            for status, colour in STATUS_COLOURS.items():
                chosen = [{"centre": m.center, "size": m.size_mm} for m in ms.markers
                          if m.status == status and ms.shown(m)]
                actor = detection_markers(chosen, colour)
                if actor is not None:
                    self.renderer.AddActor(actor)
                    actors.append(actor)
        self.markers[id(ms)] = actors
        self.on_change()

    def clear(self) -> None:
        for key in list(self.surfaces):
            self._drop(key)
        for actors in self.markers.values():
            for actor in actors:
                self.renderer.RemoveActor(actor)
        self.markers = {}
        self._dirty.clear()
        self._timer.stop()
