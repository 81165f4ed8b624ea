"""Series thumbnails for the study browser, made in a background thread and cached on disk.

A thumbnail is the series' middle image, windowed (its DICOM window, else the 1-99 % range),
scaled to ``SIZE`` pixels.  They are cached as PNG files named by a hash of the series id in the
user cache folder, so a known study shows its thumbnails without decoding anything.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage

from viewer.logs import log
from viewer.paths import thumbnails_dir

SIZE = 64


def windowed_image(pixels: np.ndarray, window: tuple[float, float] | None) -> QImage:
    """A greyscale QImage of a 2D array, windowed and scaled to fit SIZE x SIZE."""
    pixels = pixels.astype(np.float32)
    if window is None:
        lo, hi = np.percentile(pixels, [1, 99])
    else:
        lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
    grey = np.clip((pixels - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    grey = np.ascontiguousarray(grey)
    image = QImage(grey.data, grey.shape[1], grey.shape[0], grey.strides[0], QImage.Format.Format_Grayscale8)
    return image.scaled(SIZE, SIZE, Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation).copy()


def _middle_frame(series):
    """The header of the middle image of a series (sorted along its slice normal)."""
    frames = [f for f in series.frames if f.frame.position is not None]
    if frames and frames[0].frame.orientation is not None:
        o = np.asarray(frames[0].frame.orientation, dtype=np.float64)
        normal = np.cross(o[:3], o[3:])
        frames.sort(key=lambda f: float(np.dot(f.frame.position, normal)))
    else:
        frames = list(series.frames)
    return frames[len(frames) // 2]


def series_thumbnail(series) -> QImage:
    from viewer.core.dicom.decode import read_native, read_pydicom

    ref = _middle_frame(series)
    h = ref.instance
    raw = read_native(h)
    if raw is None:
        raw = read_pydicom(h)[ref.frame.index or 0]
    if raw.ndim == 3:
        raw = raw[..., :3].mean(axis=-1)
    values = raw.astype(np.float32) * ref.frame.slope + ref.frame.intercept
    return windowed_image(values, h.window if h.window else None)


class ThumbnailLoader(QObject):
    """Make thumbnails one at a time off the UI thread; ``ready(series_id, QImage)`` for each."""

    ready = Signal(str, QImage)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._seen: set[str] = set()

    def request(self, series) -> None:
        if series.id in self._seen or not series.frames:
            return
        self._seen.add(series.id)
        self._queue.put(series)
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="hounsfield-thumbnails", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            series = self._queue.get()
            path = os.path.join(thumbnails_dir(), hashlib.sha1(series.id.encode()).hexdigest() + ".png")
            try:
                image = QImage(path) if os.path.exists(path) else QImage()
                if image.isNull():
                    image = series_thumbnail(series)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    image.save(path)
                self.ready.emit(series.id, image)
            except Exception:  # a thumbnail is a nicety: log and go on
                log.exception("thumbnail of series %s failed", series.uid)
