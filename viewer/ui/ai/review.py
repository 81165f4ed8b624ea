"""The AI review in the results panel: per applied result, how much the radiologist changed
(``viewer.core.review``), updated as they edit.

Edits only start a short timer (debounce); when it fires the figures are computed on a thread of
the global ``QThreadPool`` (on the bounding box of the union, so cheap) and come back as a queued
signal: painting and brushing never wait for them.  A toggle puts the AI original's outline (the
surface of its label map, a ``HeatmapLayer`` drawn in cyan in every 2D view, named but without a
colour bar) beside the corrected segment; another shows, for a probability heatmap, only the voxels
the model was unsure about.  A segmentation that comes back with its AI original (its journal after
a restart, its exported SEG opened again) is a result of the panel again (``Workspace.reopened``).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal
from PySide6.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from viewer.core.layers import HeatmapLayer
from viewer.core.review import EditRegion, ResultReview, review_applied, surface
from viewer.core.volume import Volume
from viewer.logs import log

DEBOUNCE_MS = 250
UNSURE = (0.2, 0.8)  # a probability between these: the model was unsure
OUTLINE_VALUE = 0.35


class _Done(QObject):
    done = Signal(int, object)  # generation, ResultReview or None


class _Job(QRunnable):
    def __init__(self, entry, generation: int, sink: _Done, regions: dict):
        super().__init__()
        self.entry, self.generation, self.sink, self.regions = entry, generation, sink, regions

    def run(self) -> None:
        try:
            out = review_applied(self.entry, self.regions)
        except Exception:  # a segment removed mid-computation: the next edit computes again
            log.warning("AI review figures failed", exc_info=True)
            out = None
        try:
            self.sink.done.emit(self.generation, out)
        except RuntimeError:  # the panel (and its sink) closed with the window meanwhile: nobody to tell
            pass


def outline_layer(editable, name: str) -> HeatmapLayer | None:
    """The AI original's outline (its 3D surface voxels) as a heatmap layer on the series' grid."""
    orig = editable.original
    if orig is None:
        return None
    # cyan (0.35 on the Jet map): apart from the segments' reds and the detection markers' yellow
    outline = surface(orig != 0).astype(np.float32) * np.float32(OUTLINE_VALUE)
    vol = editable.series.volume
    return HeatmapLayer(name, Volume(outline, vol.affine.copy(), modality="OT", units=""),
                        "Where the AI's segment was before any correction", provenance="AI original",
                        opacity=1.0, threshold=OUTLINE_VALUE - 0.05, colormap="Jet", unit="",
                        colour_bar=False)  # its values mean nothing: the name says what it is


def unsure_layer(layer: HeatmapLayer, low: float = UNSURE[0], high: float = UNSURE[1]) -> HeatmapLayer:
    """``layer`` with only the voxels the model was unsure about (``low`` < p < ``high``)."""
    a = layer.volume.array
    keep = np.where((a > low) & (a < high), a, 0.0).astype(np.float32)
    v = layer.volume
    return HeatmapLayer(f"{layer.name} (unsure only)", Volume(keep, v.affine.copy(), modality="OT", units=""),
                        f"Only where {low:g} < p < {high:g}", provenance=layer.provenance, unit=layer.unit,
                        full_scale=layer.full_scale, opacity=layer.opacity, threshold=min(layer.threshold, low),
                        colormap=layer.colormap)


class ReviewSection(QWidget):
    """The figures of one result and its toggles; ``review`` is the last computed ``ResultReview``."""

    updated = Signal(object)  # ResultReview

    def __init__(self, entry, parent=None):
        super().__init__(parent)
        self.entry = entry
        self.review: ResultReview | None = None
        self.generation = 0
        self.busy = False
        self._again = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.figures = QLabel("")
        self.figures.setObjectName("review_figures")
        self.figures.setWordWrap(True)
        self.figures.setStyleSheet("font-weight: bold;")
        self.figures.setToolTip("AI original vs the segment now: Dice, 95% Hausdorff distance, volume change, "
                                "slices edited; detections accepted, rejected, moved, resized, added")
        layout.addWidget(self.figures)
        self.outlines: list[HeatmapLayer] = []
        self.outline_toggle = None
        if any(ed.original is not None for ed in entry.segmentations):
            self.outline_toggle = QCheckBox("Show the AI original's outline")
            self.outline_toggle.setToolTip("Draw the segment as the AI returned it (a cyan outline) beside the "
                                           "corrected one")
            self.outline_toggle.toggled.connect(self.show_outline)
            layout.addWidget(self.outline_toggle)
        self.unsure: dict[int, HeatmapLayer] = {}
        self.unsure_toggles = []
        for layer in entry.heatmaps:
            if layer.unit == "probability":  # 0.2-0.8 means nothing on a map in HU (MR-to-CT's spread)
                box = QCheckBox(f"{layer.name}: only where the AI was unsure ({UNSURE[0]:g}-{UNSURE[1]:g})")
                box.toggled.connect(lambda on, lay=layer: self.show_unsure(lay, on))
                layout.addWidget(box)
                self.unsure_toggles.append(box)
        if entry.heatmaps:
            from PySide6.QtWidgets import QPushButton

            self.export_maps = QPushButton("Export maps (DICOM Parametric Map, NIfTI)...")
            self.export_maps.setToolTip("Write the AI's heatmaps for other viewers")
            self.export_maps.clicked.connect(lambda: self.export_heatmaps())
            layout.addWidget(self.export_maps)
        self._sink = _Done()
        self._sink.done.connect(self._on_done)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self._start)
        self._watched = []
        # only where a person changed something is compared (and the original's own box)
        self.regions = {id(ed): EditRegion(ed) for ed in entry.segmentations if ed.original is not None}
        for ed in entry.segmentations:
            for sig in (ed.segmentation.changed, ed.segmentation.segments_changed):
                sig.connect(self.schedule)
                self._watched.append(sig)
        for ms in entry.marker_sets:
            ms.changed.connect(self.schedule)
            self._watched.append(ms.changed)
        self.setVisible(bool(entry.segmentations or entry.marker_sets or self.unsure_toggles))
        self.schedule()

    def schedule(self, *_a) -> None:
        self.timer.start()

    def _start(self) -> None:
        if self.busy:  # one at a time; the latest edit is computed when this one ends
            self._again = True
            return
        self.busy = True
        self.generation += 1
        QThreadPool.globalInstance().start(_Job(self.entry, self.generation, self._sink, self.regions))

    def _on_done(self, generation: int, review) -> None:
        self.busy = False
        if review is not None and generation == self.generation:
            self.review = review
            text = review.text()  # empty for a run with no segment or detection to review (a derived image)
            self.figures.setText(text)
            self.figures.setVisible(bool(text))
            self.updated.emit(review)
        if self._again:
            self._again = False
            self.timer.start()

    @property
    def idle(self) -> bool:
        return not self.busy and not self.timer.isActive() and self.review is not None

    def show_outline(self, on: bool) -> None:
        series = self.entry.series
        for layer in self.outlines:
            series.remove_overlay(layer)
        self.outlines = []
        if on:
            for ed in self.entry.segmentations:
                layer = outline_layer(ed, f"AI original: {ed.name}")
                if layer is not None:
                    series.add_overlay(layer)
                    self.outlines.append(layer)

    def show_unsure(self, layer: HeatmapLayer, on: bool) -> None:
        old = self.unsure.pop(id(layer), None)
        if old is not None:
            self.entry.series.remove_overlay(old)
        if on:
            self.unsure[id(layer)] = u = unsure_layer(layer)
            self.entry.series.add_overlay(u)
        layer.set(visible=not on)

    def export_heatmaps(self, folder: str | None = None) -> dict | None:
        """Write the result's heatmaps as DICOM Parametric Maps and NIfTI into ``folder`` (asked for when None)."""
        from viewer.core.errors import HounsfieldError

        if folder is None:
            from PySide6.QtWidgets import QFileDialog

            folder = QFileDialog.getExistingDirectory(self, "Export AI maps to")
            if not folder:
                return None
        series = self.entry.series
        try:
            return series.workspace.export_heatmaps(folder, series=series, layers=self.entry.heatmaps)
        except HounsfieldError as exc:
            self.figures.setText(str(exc))
            return None

    def dispose(self) -> None:
        self.timer.stop()
        for sig in self._watched:
            try:
                sig.disconnect(self.schedule)
            except (ValueError, RuntimeError):
                pass
        self._watched = []
        for r in self.regions.values():
            r.close()
        if self.outline_toggle is not None:
            self.show_outline(False)
        for u in self.unsure.values():
            self.entry.series.remove_overlay(u)
        self.unsure = {}
