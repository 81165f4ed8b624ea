"""A Qt widget that owns one VTK render window and renders it on demand, coalescing requests.

Many changes in one pass of the event loop (a scroll step moves the point, the crosshair and
the corner text of three views) cost one render per view, done when Qt is idle again.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.vtkRenderingCore import vtkRenderer

import viewer.render.backends  # noqa: F401
from viewer.render.capture import capture


class VtkWidget(QVTKRenderWindowInteractor):
    """Base of the 2D and 3D views: a renderer, coalesced renders, pixel capture."""

    def __init__(self, parent=None, min_interval_ms: int = 0):
        super().__init__(parent)
        self.render_window = self.GetRenderWindow()
        self.render_window.SetMultiSamples(0)  # software OpenGL: multisampling halves the frame rate
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.0, 0.0, 0.0)
        self.render_window.AddRenderer(self.renderer)
        self._pending = False
        self._min_interval = min_interval_ms / 1000.0
        self._last_render = 0.0
        self.frames = 0  # renders done (benchmarks and tests count them)
        self._closed = False
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def request_render(self) -> None:
        if self._pending or self._closed:
            return
        self._pending = True
        wait = self._min_interval - (time.perf_counter() - self._last_render)
        QTimer.singleShot(max(0, int(wait * 1000)), self.render_now)

    def render_now(self) -> None:
        self._pending = False
        if self._closed or not self.isVisible() or self.width() < 2 or self.height() < 2:
            return
        if not self.may_render():
            return
        self.before_render()
        self.render_window.Render()
        self._last_render = time.perf_counter()
        self.frames += 1

    def may_render(self) -> bool:
        """Hook: False to skip drawing for now (at start-up only the first view draws, so that the
        first slice is not kept waiting by the other views' OpenGL set-up)."""
        return True

    def before_render(self) -> None:
        """Hook: bring the scene up to date just before it is drawn."""

    def capture(self):
        """The view's pixels (uint8 RGB, top row first), rendered now."""
        self.before_render()
        self.frames += 1
        return capture(self.render_window)

    def size_px(self) -> tuple[int, int]:
        w, h = self.render_window.GetSize()
        return max(int(w), 1), max(int(h), 1)

    # Qt plumbing: our own rendering, no VTK interactor style, keys go to the window's shortcuts
    def paintEvent(self, ev):  # noqa: N802
        self.request_render()

    def keyPressEvent(self, ev):  # noqa: N802
        ev.ignore()

    def keyReleaseEvent(self, ev):  # noqa: N802
        ev.ignore()

    def dispose(self) -> None:
        """Release the OpenGL window: close first, then Finalize (DESIGN.md)."""
        if self._closed:
            return
        self._closed = True
        self.close()
        self.render_window.Finalize()
