"""Opening a series off the UI thread: scan, allocate, then decode slice by slice with signals.

A ``LoadJob`` runs in a Python thread; its Qt signals reach the UI thread queued.  The volume is
handed over as soon as it is allocated (``allocated``), so the first decoded slice (the middle
one) is shown while the rest arrive (``slice_done``).  ``cancel()`` stops decoding; what was
decoded stays usable.  Failures become one sentence (``failed``); tracebacks go to the log.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QObject, Signal

from viewer.core.errors import HounsfieldError
from viewer.logs import log

# Files read whole through SimpleITK (same list as viewer.core.formats, kept here so that opening a
# DICOM folder does not import SimpleITK)
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


class LoadJob(QObject):
    scanned = Signal(object)  # ScanResult (or None for a volume file / a built-in volume)
    allocated = Signal(object, object)  # Volume, loaded mask (bool per k, shared) or None when complete
    slice_done = Signal(int, int, int)  # k, slices done, total
    finished = Signal()
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, path: str | None = None, series: str | None = None,
                 make_volume: Callable | None = None, label: str = ""):
        super().__init__()
        self.path, self.series, self.make_volume = path, series, make_volume
        self.label = label or (os.path.basename(os.path.normpath(path)) if path else "volume")
        self._cancel = threading.Event()
        self._go = threading.Event()
        self.quiet = False  # cancelled by the viewer itself: no message for the user
        self.object = None  # viewer.core.references.DicomObject when path is a SEG, SR or RTSTRUCT file
        self.restore_planes = False  # the standard planes come back when the series is shown
        self._loader = None
        self.thread: threading.Thread | None = None
        self.done = threading.Event()

    def start(self, hold: bool = False) -> None:
        """Start the thread.  With ``hold``, it scans and allocates but emits nothing until ``release()``
        (the viewer starts opening the study while it is still building its window)."""
        if not hold:
            self._go.set()
        self.thread = threading.Thread(target=self._run, name="hounsfield-load", daemon=True)
        self.thread.start()

    def release(self) -> None:
        self._go.set()

    def cancel(self) -> None:
        self._cancel.set()
        self._go.set()
        if self._loader is not None:
            self._loader.cancel()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def _run(self) -> None:
        try:
            try:
                prepared = self._prepare()
            finally:
                self._go.wait()
            self._emit_and_decode(prepared)
        except HounsfieldError as exc:
            from viewer.core.dicom.decode import LoadCancelled

            if isinstance(exc, LoadCancelled) or self._cancel.is_set():
                self.cancelled.emit()
            else:
                log.info("could not open %s: %s", self.path, exc)
                self.failed.emit(str(exc))
        except MemoryError:
            log.exception("out of memory opening %s", self.path)
            self.failed.emit(f"There is not enough memory to open {self.label}; "
                             "close other series and retry.")
        except Exception as exc:  # never a crash: one sentence here, the traceback in the log
            log.exception("unexpected error opening %s", self.path)
            self.failed.emit(f"{self.label} could not be opened ({type(exc).__name__}); "
                             "details are in the log file.")
        finally:
            self.done.set()

    def _prepare(self):
        """Everything before the first signal: (scan result or None, volume, loaded mask or None, loader)."""
        if self.make_volume is not None:
            return None, self.make_volume(), None, None
        if not os.path.exists(self.path):
            raise HounsfieldError(f"There is no file or folder at {self.path}; check the path.")
        if os.path.isfile(self.path) and self.path.lower().endswith(VOLUME_SUFFIXES):
            from viewer.core.formats import read_volume

            return None, read_volume(self.path), None, None
        from viewer.core.loader import SeriesLoader, choose_series, scan
        from viewer.core.references import dicom_object, find_images

        self.object = dicom_object(self.path)  # a SEG, SR or RT structure set: open it with its images
        if self.object is not None:
            result, chosen = find_images(self.object)
            notes = []
        else:
            result = scan(self.path)
            if self._cancel.is_set():
                return result, None, None, None
            chosen, notes = choose_series(result, self.series)
        if result.errors:
            notes.append(f"{len(result.errors)} file(s) could not be read and were left out: "
                         f"{result.errors[0]}")
        loader = SeriesLoader(chosen, notes)
        self._loader = loader
        if self._cancel.is_set():
            loader.cancel()
        blank_slices(loader.volume.array, loader.loaded, -1024 if loader.volume.units == "HU" else 0)
        return result, loader.volume, loader.loaded, loader

    def _emit_and_decode(self, prepared) -> None:
        result, volume, loaded, loader = prepared
        self.scanned.emit(result)
        if volume is None or self._cancel.is_set():
            self.cancelled.emit()
            return
        self.allocated.emit(volume, loaded)
        if loader is not None:
            total = len(loader.geometry.frames)
            done = [0]

            def on_slice(k: int) -> None:
                done[0] += 1
                self.slice_done.emit(int(k), done[0], total)

            loader.run(on_slice)
        self.finished.emit()


def blank_slices(array: np.ndarray, loaded: np.ndarray, value) -> None:
    """Set not-yet-decoded slices to the blank value, so that no stale memory is ever shown."""
    for k in np.flatnonzero(~loaded):
        array[k] = value
