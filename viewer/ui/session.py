"""Loading and the VTK images of a viewer window.

``Session`` is the one place that turns a path (or the demo) into an opened series: it starts a
``LoadJob``, opens the volume in the window's ``Workspace`` (``OpenSeries``: its overlays, the
saved measurements first) as soon as it is allocated, makes its VTK image and its ``SeriesState``
in the ``ViewerModel``, shows it with its first decoded slice, forwards decoded slices to the views
(throttled), and reports progress and errors as signals.  It keeps only what Qt and VTK need: the
VTK image of each series and how its loading goes (``images``); what a series holds lives in the
workspace.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from viewer.core.viewstate import SeriesState, ViewerModel
from viewer.core.volume import Volume
from viewer.core.windowing import auto_window, own_window, window_saturates
from viewer.core.workspace import OpenSeries, Workspace
from viewer.logs import log
from viewer.ui.loading import VOLUME_SUFFIXES, LoadJob
from viewer.ui.resources import colormaps


@dataclass
class SeriesImage:
    """The VTK image of an opened series and how its loading goes."""

    state: SeriesState  # its viewing state (state.open_series: its overlays, in the workspace)
    vtk: object  # viewer.render.image.VtkVolume
    job: LoadJob | None = None
    done: int = 0
    total: int = 0
    pending: set = field(default_factory=set)
    auto_window: bool = False  # the window comes from the histogram and follows the loading
    shown: bool = True  # False until its first slice decodes: a file that cannot be read changes nothing
    slots: list[int] | None = None  # where to show it then


def series_key(volume: Volume, fallback: str) -> str:
    return volume.source.series_instance_uid or fallback


def same_grid(a: Volume, b: Volume) -> bool:
    """Whether two loads of one series hold the same images (same voxel grid)."""
    return a.shape == b.shape and np.allclose(a.affine, b.affine, atol=1e-4)


class Session(QObject):
    message = Signal(str)  # one sentence for the user: something went wrong
    note = Signal(str)  # one sentence for the status bar: something worth knowing
    progress = Signal(str, int, int)  # label, done, total (total 0: busy, unknown length)
    load_started = Signal(object)  # LoadJob
    load_ended = Signal(object)  # LoadJob
    series_opened = Signal(str)  # key
    object_opened = Signal(object, str)  # a SEG, SR or RTSTRUCT (references.DicomObject) and the key of its images
    first_slice = Signal(str)  # key: the first decoded slice of a series is in its volume
    scanned = Signal(object)  # ScanResult of an opened folder

    FLUSH_MS = 80

    def __init__(self, model: ViewerModel, workspace: Workspace, parent=None):
        super().__init__(parent)
        self.model, self.workspace = model, workspace
        self.images: dict[str, SeriesImage] = {}  # by series key, shown or still waiting for its first slice
        self.jobs: list[LoadJob] = []
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self._flush)
        self._last_flush = 0.0
        self.startup_done = False  # until the first slice is in (or a load ended) only slot 0 renders
        self._repeats: dict[LoadJob, tuple[str, list[int] | None]] = {}  # loads of a series already open

    # what the views ask for
    def vtk_volume(self, key: str):
        return self.images[key].vtk

    def colormap_points(self, name: str):
        return colormaps().get(name)

    def loading_text(self, key: str) -> str:
        o = self.images.get(key)
        if o is None or o.job is None or o.total == 0:
            return ""
        return f"Loading {o.done} / {o.total}"

    # opening
    def open_path(self, path: str, series: str | None = None, slots: list[int] | None = None,
                  restore_planes: bool = False) -> LoadJob:
        """Open ``path`` (shown in ``slots``, default every slot; ``restore_planes``: the standard planes
        come back when it is shown, not before, so that a failed open changes nothing)."""
        path = os.path.abspath(os.path.expanduser(path))
        if self._object_of_open_series(path):
            return None
        job = LoadJob(path, series)
        job.restore_planes = restore_planes
        return self._start(job, slots)

    def key_of_series(self, series_uid: str) -> str | None:
        return next((k for k, o in self.images.items()
                     if series_uid and o.state.volume.source.series_instance_uid == series_uid), None)

    def _object_of_open_series(self, path: str) -> bool:
        """A SEG, SR or RT structure set whose images are open already goes onto them (wherever the
        file lies); other objects open their images first (``LoadJob`` finds them beside the file)."""
        if not os.path.isfile(path) or path.lower().endswith(VOLUME_SUFFIXES):
            return False
        from viewer.core.references import dicom_object

        obj = dicom_object(path)
        key = self.key_of_series(obj.series_uid) if obj is not None else None
        if key is None:
            return False
        self.object_opened.emit(obj, key)
        return True

    def open_builtin(self, make_volume, label: str, slots: list[int] | None = None) -> LoadJob:
        return self._start(LoadJob(make_volume=make_volume, label=label), slots)

    def _start(self, job: LoadJob, slots) -> LoadJob:
        self.adopt(job, slots, started=False)
        job.start()
        return job

    def adopt(self, job: LoadJob, slots=None, started: bool = True) -> LoadJob:
        """Take charge of ``job`` (possibly started early with ``hold=True``) and let it go on."""
        self.jobs.append(job)
        job.scanned.connect(self.scanned)
        job.allocated.connect(lambda vol, loaded, j=job: self._on_allocated(j, vol, loaded, slots))
        job.slice_done.connect(lambda k, done, total, j=job: self._on_slice(j, k, done, total))
        job.finished.connect(lambda j=job: self._on_end(j, None))
        job.failed.connect(lambda msg, j=job: self._on_end(j, msg))
        job.cancelled.connect(lambda j=job: self._on_end(j, "cancelled"))
        self.load_started.emit(job)
        self.progress.emit(f"Opening {job.label}", 0, 0)
        if started:
            job.release()
        return job

    def add_volume(self, volume: Volume, key: str, slots: list[int],
                   window: tuple[float, float] | None = None, derived_from: OpenSeries | None = None) -> SeriesState:
        """Open a volume made in memory (an AI result, ``derived_from`` a series) as a series, shown in
        ``slots`` (a series no slot shows is closed, so give at least one)."""
        if key in self.images:
            raise ValueError(f"series {key!r} is already open")
        return self.show_open_series(self.workspace.add(volume, key, derived_from=derived_from), slots, window)

    def show_open_series(self, series: OpenSeries, slots: list[int],
                         window: tuple[float, float] | None = None) -> SeriesState:
        """Show a series already in the workspace (one ``Workspace.apply`` derived) in ``slots``."""
        from viewer.render.image import VtkVolume

        key, volume = series.key, series.volume
        state = SeriesState(key, volume, window=window or own_window(volume), open_series=series)
        self.images[key] = SeriesImage(state, VtkVolume(volume))
        self._show(key, slots, new_state=state)
        self.series_opened.emit(key)
        return state

    def cancel_all(self) -> None:
        for job in list(self.jobs):
            job.cancel()

    def _job_entry(self, job: LoadJob) -> SeriesImage | None:
        return next((o for o in self.images.values() if o.job is job), None)

    def _on_allocated(self, job: LoadJob, volume: Volume, loaded, slots) -> None:
        """A progressive load is shown with its first decoded slice (``_reveal``), not here: until then
        the file may still prove unreadable, and a failed open must leave the views as they were."""
        key = series_key(volume, job.path or job.label)
        # Another copy of an open series (more or fewer of its images: a half-transferred folder, then
        # the whole one) opens under a key of its own and replaces it in the views; before, the
        # 30-slice copy stayed on screen without a word when the whole 141-slice folder was opened.
        key = next((k for k, o in self.images.items() if k.split("#")[0] == key
                    and same_grid(o.state.volume, volume)), key)
        if key in self.images and same_grid(self.images[key].state.volume, volume):
            # already open: keep the first copy, show it where asked once readable
            if loaded is None:
                self._show_again(job, key, slots)
            else:
                self._repeats[job] = (key, slots)
            return
        window = volume.window
        auto = volume.modality != "CT"  # follows the histogram while slices arrive
        if auto and loaded is None:
            window = self._fitting_window(volume, None)
        # into the workspace now: its saved measurements are loaded before anything can show the list
        series = self.workspace.add(volume, key, complete=loaded is None)
        key = series.key
        state = SeriesState(key, volume, window=window or (40.0, 400.0), open_series=series)
        state.loaded = loaded
        from viewer.render.image import VtkVolume

        entry = SeriesImage(state, VtkVolume(volume), job if loaded is not None else None, auto_window=auto,
                       shown=False, slots=slots)
        entry.total = int(loaded.size) if loaded is not None else 0
        self.images[key] = entry
        if loaded is None:
            self._reveal(entry, job)
            self._first(key)

    def _reveal(self, entry: SeriesImage, job: LoadJob) -> None:
        """Show a newly opened series (it has pixels to show)."""
        entry.shown = True
        if job.restore_planes:
            self.model.restore_planes()
        key = entry.state.key
        self._show(key, entry.slots, new_state=entry.state)
        self.series_opened.emit(key)
        for note in entry.state.volume.warnings[:1]:
            self.note.emit(note if note.endswith(".") else note + ".")

    def _show_again(self, job: LoadJob, key: str, slots) -> None:
        """``job`` loads a series that is open already: stop it and show the open copy."""
        job.quiet = True
        job.cancel()
        if self.images[key].shown:  # else its own load shows it with its first slice
            if job.restore_planes:
                self.model.restore_planes()
            self._show(key, slots)

    def _show(self, key: str, slots, new_state: SeriesState | None = None) -> None:
        if new_state is not None:
            self.model.add_series(new_state, slots)
        else:
            for slot in slots if slots is not None else range(len(self.model.viewports)):
                self.model.show_series(slot, key)
        self.release_unshown()

    def release_unshown(self) -> None:
        """Close series that no view shows any more (their memory goes back; reopening is quick)."""
        shown = {vp.series for vp in self.model.viewports}
        for key in [k for k, o in self.images.items() if k not in shown and o.shown]:
            entry = self.images.pop(key)
            if entry.job is not None:
                entry.job.quiet = True  # no "cancelled" message: the user moved on
                entry.job.cancel()
            self.model.remove_series(key)
            self.workspace.remove(entry.state.open_series)  # its journals are closed (kept to recover)
            log.info("closed series %s (no longer shown)", key)

    def _on_slice(self, job: LoadJob, k: int, done: int, total: int) -> None:
        if job in self._repeats:  # readable: show the copy already open
            self._show_again(job, *self._repeats.pop(job))
            return
        entry = self._job_entry(job)
        if entry is None:
            return
        if not entry.shown:
            self._reveal(entry, job)
        first = entry.done == 0
        entry.done, entry.total = done, total
        entry.pending.add(k)
        self.progress.emit(f"Loading {job.label}", done, total)
        if first or time.perf_counter() - self._last_flush > self.FLUSH_MS / 1000:
            self._flush(rewindow=first)
            if first:
                self._first(entry.state.key)
        elif not self._flush_timer.isActive():
            self._flush_timer.start(self.FLUSH_MS)

    @staticmethod
    def _fitting_window(volume: Volume, loaded) -> tuple[float, float]:
        """The study's own window if it fits the pixels, else one from the histogram (not CT)."""
        if volume.window is not None and not window_saturates(volume, volume.window, loaded):
            return volume.window
        return auto_window(volume, loaded)

    def _first(self, key: str) -> None:
        self.startup_done = True
        self.first_slice.emit(key)

    def _flush(self, rewindow: bool = False) -> None:
        self._last_flush = time.perf_counter()
        for entry in self.images.values():
            if not entry.pending:
                continue
            entry.pending.clear()
            entry.vtk.modified()
            state = entry.state
            if rewindow and entry.auto_window and not state.preset and state.window == state.home_window:
                state.home_window = self._fitting_window(state.volume, state.loaded)
                state.set_window(*state.home_window)
            state.data_changed.emit(None)

    def _on_end(self, job: LoadJob, error: str | None) -> None:
        if job in self.jobs:
            self.jobs.remove(job)
        repeat = self._repeats.pop(job, None)
        if repeat is not None and error is None:
            self._show_again(job, *repeat)
        entry = self._job_entry(job)
        if entry is not None and not entry.shown:
            if error is None:
                self._reveal(entry, job)
            else:  # nothing of it was ever shown: the views stay as they were
                del self.images[entry.state.key]
                self.workspace.remove(entry.state.open_series)
                entry = None
        if entry is not None:
            self._flush_timer.stop()
            entry.pending.add(-1)
            self._flush(rewindow=True)
            entry.job = None
            state = entry.state
            if error is None:
                state.loaded = None
                state.open_series.recompute()  # the saved measurements' values, now that every slice is in
            elif error == "cancelled":
                n = int(state.loaded.sum())
                self.message.emit(f"Loading was cancelled; {n} of {state.loaded.size} slices are shown.")
            state.data_changed.emit(None)
        if job.quiet:
            pass
        elif error not in (None, "cancelled"):
            self.message.emit(error)
        elif error == "cancelled" and entry is None:
            self.message.emit(f"Opening {job.label} was cancelled.")
        log.info("load of %s ended: %s", job.path or job.label, error or "complete")
        self.startup_done = True
        self.progress.emit("", 1, 1)
        obj = getattr(job, "object", None)
        if obj is not None and (error is None or (error == "cancelled" and job.quiet)):
            key = self.key_of_series(obj.series_uid)  # its images, newly opened or open already
            if key is not None:
                self.object_opened.emit(obj, key)
        self.load_ended.emit(job)

    def close_all(self) -> None:
        self.cancel_all()
        for job in list(self.jobs):
            job.done.wait(5.0)
