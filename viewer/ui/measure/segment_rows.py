"""Segment statistics for the measurements panel: one row per segment of the shown series'
segmentations (volume, HU statistics, diameters, centroid), computed off the UI thread once the
edits have paused, so that painting never waits for a convex hull."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

from viewer.core.measurements import SegmentStats, segment_stats
from viewer.logs import log


@dataclass
class SegmentRow:
    uid: str  # "segment:<segmentation uid>:<segment number>"
    key: str  # the series
    seg: object  # viewer.core.segmentation.Segmentation
    segment: object  # viewer.core.segmentation.Segment
    stats: SegmentStats | None  # None while it is being computed

    def summary(self, units: str = "") -> str:
        s = self.stats
        if s is None:
            return "computing..."
        if s.voxel_count == 0:
            return "empty"
        u = f" {units}" if units else ""
        # a nodule of a few mm reads in mm3 (as the Nodules panel gives it), not as "0.00 mL"
        volume = f"{s.volume_ml:.2f} mL" if s.volume_ml >= 0.1 else f"{s.volume_ml * 1000:.1f} mm\u00b3"
        return (f"{volume}  mean {s.mean:.1f}{u}  SD {s.sd:.1f}  min {s.min:.0f}  max {s.max:.0f}  "
                f"longest {s.longest_diameter_mm:.1f} mm  axial {s.axial_long_mm:.1f} x {s.axial_short_mm:.1f} mm")


def row_uid(seg, segment) -> str:
    return f"segment:{seg.uid}:{segment.number}"


def _stats_in_box(layer, number: int, volume) -> SegmentStats:
    """``segment_stats`` of one segment, computed on the box around its voxels (a voxel of margin, so
    its surface is the same) rather than on the whole volume: the same figures, in a fraction of the
    time for a lesion in a large CT."""
    from viewer.core.segmentation import bbox_of
    from viewer.core.volume import Volume

    mask = layer == number
    box = bbox_of(mask, 1)
    if box is None:
        return segment_stats(mask, volume)
    affine = volume.affine.copy()
    affine[:3, 3] = volume.index_to_lps([box[2].start, box[1].start, box[0].start])
    crop = Volume(volume.array[box], affine, modality=volume.modality, units=volume.units,
                  rescale=tuple(volume.rescale))
    return segment_stats(mask[box], crop)


class SegmentStatsRows(QObject):
    changed = Signal()
    _computed = Signal(int, object)  # generation, {row uid: SegmentStats} (from the worker thread)

    DELAY_MS = 400  # after the last edit

    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self.stats: dict[str, SegmentStats] = {}
        self._generation = 0
        self._running = False
        self._closed = False  # shut down: a result still on its way starts nothing more
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.DELAY_MS)
        self._timer.timeout.connect(self._start)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="segment-stats")
        self._computed.connect(self._on_computed)

    def follow(self, segments_controller) -> None:
        """Recompute whenever the segmentations (their voxels or their segments) change."""
        segments_controller.changed.connect(self.invalidate)
        self.invalidate()

    def invalidate(self) -> None:
        self._generation += 1
        self._timer.start()
        self.changed.emit()

    def start_now(self) -> None:
        """Compute without waiting for the editing pause (an edit that is complete at once, such as
        a click-to-segment mask)."""
        if self._timer.isActive() and not self._running:
            self._timer.stop()
            self._start()

    def rows(self, key: str | None = None) -> list[SegmentRow]:
        state = self.model.series.get(key) if key is not None else self.model.active_state
        if state is None:
            return []
        # the panel measures what is shown: a hidden segment (e.g. a nodule below the operating point) is
        # not listed, and comes back when it is shown again
        return [SegmentRow(row_uid(seg, s), state.key, seg, s, self.stats.get(row_uid(seg, s)))
                for seg in (ed.segmentation for ed in state.open_series.segmentations) if seg.visible
                for s in seg.segments if s.visible]

    def find(self, uid: str) -> SegmentRow | None:
        for key in self.model.series:
            for row in self.rows(key):
                if row.uid == uid:
                    return row
        return None

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until the statistics are current (tests and exports)."""
        end = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < end:
            if not self._running and not self._timer.isActive() and all(
                    r.stats is not None for k in self.model.series for r in self.rows(k)):
                return True
            if self._timer.isActive() and not self._running:
                self._timer.stop()
                self._start()
            QApplication.processEvents()
            time.sleep(0.01)
        return False

    def _start(self) -> None:
        if self._running or self._closed:
            return  # _on_computed starts again if it is stale
        tasks = [(row.uid, row.seg.layers[row.segment.layer], row.segment.number,
                  self.model.series[row.key].volume)
                 for key in self.model.series for row in self.rows(key)]
        self._running = True
        generation = self._generation
        self._pool.submit(self._compute, generation, tasks)

    def _compute(self, generation: int, tasks) -> None:
        out = {}
        try:
            for uid, layer, number, volume in tasks:
                out[uid] = _stats_in_box(layer, number, volume)
        except Exception:  # never a crash: the rows say "computing..." until the next edit
            log.exception("segment statistics failed")
        self._computed.emit(generation, out)

    def _on_computed(self, generation: int, stats: dict) -> None:
        self._running = False
        self.stats = stats
        if generation != self._generation and not self._closed:
            self._timer.start()  # edited meanwhile: once more after the pause
        self.changed.emit()

    def shutdown(self) -> None:
        self._closed = True
        self._timer.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
