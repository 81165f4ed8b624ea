"""The Qt side of measuring: which measurement is selected, where they are drawn, key images, export.

The measurements themselves are overlays of each series in the window's ``Workspace``
(``state.open_series.measurements``): the workspace loads the saved ones when the series is opened,
before anything can read or add to the list, and saves the list beside the study index
(``viewer.core.measurement_store``) on every change.  Each change here recomputes the values and
redraws the 2D views.  The statistics of the series' segments (``segment_rows``) sit in the same
table; their uids start with "segment:".
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal

from viewer.core.measurements import Measurement, compute
from viewer.core.planes import direction_letters, slice_step
from viewer.render.annotations2d import AnnotationOverlay
from viewer.ui.measure.segment_rows import SegmentRow, SegmentStatsRows


class MeasureController(QObject):
    changed = Signal()  # the list or a value changed
    selection_changed = Signal()

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.model = window.model
        self.selected: str | None = None  # measurement uid
        self.overlays: dict[int, AnnotationOverlay] = {}
        for view in window.grid.slice_views:
            overlay = AnnotationOverlay()
            overlay.add_to(view.renderer)
            self.overlays[view.slot] = overlay
            view.scene_hooks.append(self._draw)
        self.segment_rows = SegmentStatsRows(self.model, self)
        self.segment_rows.changed.connect(self.changed)
        window.session.series_opened.connect(self._on_series_opened)
        window.session.load_ended.connect(self._on_load_ended)
        for key in list(self.model.series):
            self._on_series_opened(key)

    # the lists: each series' measurements are overlays of its OpenSeries (state.open_series)
    def _on_series_opened(self, key: str) -> None:
        state = self.model.series.get(key)
        if state is not None and state.open_series.measurements:
            self.refresh()

    def _on_load_ended(self, _job) -> None:
        """Values of restored measurements were recomputed (the session) once their series was complete."""
        self.refresh()

    def follow_segments(self, segments_controller) -> None:
        self.segment_rows.follow(segments_controller)

    def segment_row(self, uid: str | None) -> SegmentRow | None:
        return self.segment_rows.find(uid) if uid and uid.startswith("segment:") else None

    def measurements(self, key: str | None = None) -> list[Measurement]:
        """A copy of series ``key``'s (default: the active series') list; reading creates nothing."""
        if key is None:
            state = self.model.active_state
            key = state.key if state is not None else None
        state = self.model.series.get(key) if key is not None else None
        return state.open_series.measurements if state is not None else []

    def all(self) -> list[tuple[str, Measurement]]:
        return [(k, m) for k, state in self.model.series.items() for m in state.open_series.measurements]

    def find(self, uid: str) -> tuple[str, Measurement] | None:
        return next(((k, m) for k, m in self.all() if m.uid == uid), None)

    def add(self, key: str, m: Measurement) -> None:
        state = self.model.series[key]
        m.series_uid = state.volume.source.series_instance_uid
        m.frame_of_reference_uid = state.volume.source.frame_of_reference_uid
        compute(m, state.volume)
        state.open_series.add_overlay(m)  # saved
        self.selected = m.uid
        self.refresh()
        self.selection_changed.emit()

    def updated(self, key: str, m: Measurement | None = None, save: bool = True) -> None:
        """``m`` (or the list) of series ``key`` changed: recompute, redraw, save."""
        state = self.model.series.get(key)
        if m is not None and state is not None:
            compute(m, state.volume)
        if save and state is not None:
            state.open_series.save_measurements()
        self.refresh()

    def begin(self, key: str, m: Measurement) -> None:
        """A measurement being drawn joins series ``key``'s list (shown, saved once finished)."""
        self.model.series[key].open_series.add_overlay(m, save=False)
        self.updated(key, m, save=False)

    def discard(self, key: str, m: Measurement) -> None:
        """A measurement whose drawing was cancelled leaves the list again."""
        state = self.model.series.get(key)
        if state is not None:
            state.open_series.remove_overlay(m, save=False)
        self.refresh()

    def remove(self, uid: str) -> bool:
        hit = self.find(uid)
        if hit is None:
            return False
        key, m = hit
        self.model.series[key].open_series.remove_overlay(m)  # saved
        if self.selected == uid:
            self.selected = None
            self.selection_changed.emit()
        self.refresh()
        return True

    def delete_selected(self) -> bool:
        return self.remove(self.selected) if self.selected else False

    def set_label(self, uid: str, label: str) -> None:
        row = self.segment_row(uid)
        if row is not None:  # a segment's label is its name
            if label and label != row.segment.name:
                row.seg.update_segment(row.segment, name=label)
            return
        hit = self.find(uid)
        if hit is not None and hit[1].label != label:
            hit[1].label = label
            self.updated(hit[0])

    def select(self, uid: str | None) -> None:
        if uid != self.selected:
            self.selected = uid
            self.selection_changed.emit()
            self.refresh(changed=False)

    def refresh(self, changed: bool = True) -> None:
        for view in self.window.grid.slice_views:
            view._on_overlay()
        if changed:
            self.changed.emit()

    def jump_to(self, uid: str) -> None:
        """Show a measurement: its series' point moves to it (every view follows)."""
        row = self.segment_row(uid)
        if row is not None:
            if row.stats is not None and row.stats.voxel_count:
                self.model.set_point(row.key, row.stats.centroid_lps)
            self.select(uid)
            return
        hit = self.find(uid)
        if hit is None:
            return
        key, m = hit
        self.model.set_point(key, m.centre())
        self.select(uid)

    # drawing (a SliceView scene hook)
    def half_thickness(self, view) -> float:
        geom = view.pipeline.geometry
        return 0.5 * slice_step(view.state.volume, geom.n)

    def _draw(self, view) -> None:
        overlay = self.overlays.get(view.slot)
        if overlay is None:
            return
        state = view.state
        if state is None or view.pipeline is None or view.pipeline.geometry is None or view.view2d is None:
            overlay.update([], None, None, 0.0)
            return
        w, h = view.size_px()
        overlay.update(state.open_series.measurements, view.pipeline.geometry, view.view2d,
                       self.half_thickness(view), self.selected, state.volume.units, w, h)

    # key images
    def key_image(self, view=None):
        """(rgb, (row, column) orientation letters, source SOP instance UID) of a 2D view as shown."""
        view = view or self.active_view()
        rgb = view.capture()
        geom = view.pipeline.geometry
        src = view.state.volume.source
        sop = None
        idx = view.state.volume.lps_to_index(view.state.point)
        k = int(round(idx[2]))
        if src.sop_instance_uids and abs(abs(geom.n @ view.state.volume.direction[:, 2]) - 1) < 1e-6 \
                and 0 <= k < len(src.sop_instance_uids):
            sop = src.sop_instance_uids[k]
        return rgb, (direction_letters(geom.u)[0], direction_letters(-np.asarray(geom.v))[0]), sop

    def active_view(self):
        views = self.window.grid.slice_views
        slot = self.model.active if self.model.active < len(views) else 0
        return views[slot]

    def export(self, folder: str, deidentify: bool = False, key_images: bool = True,
               clear_free_text: bool | None = None) -> dict:
        """Export now, on this thread (scripts and tests; the menu exports in the background:
        viewer.ui.measure.export)."""
        from viewer.ui.measure.export import exported, prepare

        task = prepare(self.window, folder, deidentify, clear_free_text, key_images)
        out = task.run()
        exported(self.window, task, out)
        return out

    def import_sr(self, path: str, key: str | None = None) -> int:
        """Add the measurements of an SR to series ``key`` (default: the series it refers to, or the
        active one)."""
        from viewer.core.io.sr import read_sr

        found = read_sr(path, volume=self.model.series[key].volume if key in self.model.series else None)
        count = 0
        target = key
        for m in found:
            key = target or next((k for k, s in self.model.series.items()
                                  if m.series_uid and s.volume.source.series_instance_uid == m.series_uid), None)
            key = key or (self.model.active_state.key if self.model.active_state is not None else None)
            if key is None:
                continue
            values = dict(m.values)
            self.add(key, m)
            m.values.update({k: v for k, v in values.items() if k not in m.values})
            count += 1
        return count

    def as_text(self) -> str:
        """The table as tab-separated text (for the clipboard)."""
        from viewer.core.measurements import KIND_TITLES, summary

        lines = ["#\tLabel\tKind\tValue"]
        state = self.model.active_state
        units = state.volume.units if state is not None else ""
        for n, m in enumerate(self.measurements(), start=1):
            lines.append(f"{n}\t{m.label}\t{KIND_TITLES[m.kind]}\t{summary(m, units).replace(chr(10), '  ')}")
        for n, row in enumerate(self.segment_rows.rows(), start=1):
            lines.append(f"S{n}\t{row.segment.name}\tSegment\t{row.summary(units)}")
        return "\n".join(lines)
