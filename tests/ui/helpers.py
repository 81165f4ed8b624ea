"""Helpers shared by the GUI tests: waiting for loads, and mapping LPS points to view pixels."""

from __future__ import annotations

import numpy as np


def wait_loaded(qtbot, win, timeout: int = 60000) -> None:
    """Wait until every load job of the window has ended and a series is shown."""
    qtbot.waitUntil(lambda: bool(win.model.series) and not win.session.jobs, timeout=timeout)
    settle(qtbot)


def settle(qtbot, ms: int = 30) -> None:
    """Let queued signals and coalesced renders run."""
    qtbot.wait(ms)


def display_of(view, lps) -> tuple[float, float]:
    """Display pixel (VTK: origin bottom-left) of an LPS point in a 2D view."""
    view.update_scene()
    return view.view2d.to_display(*view.pipeline.geometry.from_lps(lps))


def qt_pos(view, lps):
    """Qt widget position (logical, top-left origin) of an LPS point in a 2D view."""
    from PySide6.QtCore import QPointF

    x, y = display_of(view, lps)
    _, h = view.size_px()
    dpr = view.size_px()[0] / view.width()
    return QPointF(x / dpr, (h - y) / dpr)


def pixels_at(image: np.ndarray, view, lps_points) -> np.ndarray:
    """Captured RGB values (N, 3) of a view at LPS points (image row 0 is the top)."""
    out = []
    h = image.shape[0]
    for p in lps_points:
        x, y = display_of(view, p)
        out.append(image[h - 1 - int(round(y)), int(round(x))])
    return np.asarray(out)
