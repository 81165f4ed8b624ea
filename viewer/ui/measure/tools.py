"""The measuring tools of the 2D views (left button; names, titles and keys in ``viewer.core.tools``,
handlers attached with ``viewer.ui.interaction.attach`` and given the measure controller).

Every tool first looks for a handle under the cursor: dragging a handle edits that measurement
(any tool), a click on a label selects it.  Otherwise it draws a new one:

- length, ellipse (corner to corner), bidirectional (the long axis; a short axis half as long is
  added across its middle, then adjusted with its handles): press, drag, release;
- angle: drag the first arm (end to vertex), then click the end of the second arm;
- polygon / freehand: drag to draw freehand, or click corners and click the first one (or
  double-click) to close;
- point: click.
"""

from __future__ import annotations

import math

import numpy as np

from viewer.core.measurements import Measurement, ellipse_axes
from viewer.core.tools import REGISTRY
from viewer.ui.interaction import attach

TOOLS = {name: name.removeprefix("measure_") for name in REGISTRY.names("measure")}  # tool -> measurement kind
GRAB_PX = 8.0
MIN_DRAG_PX = 4.0
FREEHAND_STEP_PX = 5.0


def _unit(v):
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def edit_handle(m: Measurement, index: int, p: np.ndarray) -> None:
    """Move handle ``index`` of ``m`` (see ``annotations2d.handle_points``) to LPS ``p``."""
    p = np.asarray(p, dtype=np.float64)
    pts = m.points.copy()
    if m.kind == "ellipse":
        c, a, b = ellipse_axes(m)
        if index == 4:  # the centre moves the whole ellipse
            m.points = pts + (p - c)
            return
        d = p - c
        if index in (0, 1):  # an end of the first axis: its length and direction; the other stays across
            a = d if index == 0 else -d
            b = np.linalg.norm(b) * _unit(np.cross(m.normal, _unit(a)))
        else:
            b_dir = _unit(b) if np.linalg.norm(b) > 0 else _unit(np.cross(m.normal, _unit(a)))
            b = abs(float(d @ b_dir)) * b_dir
        m.points = np.stack([c, c + a, c + b])
        return
    if m.kind == "bidirectional" and index >= 2:  # short-axis ends slide across the long axis only
        long_dir = _unit(pts[1] - pts[0])
        across = _unit(np.cross(m.normal, long_dir))
        mid = 0.5 * (pts[2] + pts[3])
        other = pts[5 - index]
        t = float((p - mid) @ across)
        pts[index] = mid + t * across
        pts[5 - index] = other
        m.points = pts
        return
    if m.kind == "bidirectional":  # a long-axis end: the short axis keeps its place along and its lengths
        old0, old1 = pts[0], pts[1]
        L = np.linalg.norm(old1 - old0)
        d_old = _unit(old1 - old0)
        across_old = _unit(np.cross(m.normal, d_old))
        mid = 0.5 * (pts[2] + pts[3])
        frac = float((mid - old0) @ d_old) / L if L > 0 else 0.5
        s2, s3 = float((pts[2] - mid) @ across_old), float((pts[3] - mid) @ across_old)
        pts[index] = p
        d_new = _unit(pts[1] - pts[0])
        across = _unit(np.cross(m.normal, d_new))
        mid_new = pts[0] + frac * np.linalg.norm(pts[1] - pts[0]) * d_new
        pts[2], pts[3] = mid_new + s2 * across, mid_new + s3 * across
        m.points = pts
        return
    pts[index] = p
    m.points = pts


class MeasureTool:
    """One view's handler for one kind of measurement."""

    def __init__(self, view, kind: str, controller):
        self.view, self.kind, self.ctl = view, kind, controller
        self.grab = None  # (measurement, handle index) being dragged
        self.drawing: Measurement | None = None
        self.start_px = None
        self.stage = 0  # angle: 1 after the first arm; polygon: clicked corners so far
        self.last_px = None
        self.anchor = None
        self.moved = False

    # geometry helpers
    def _lps(self, pos):
        lps = self.view.lps_at(pos)
        if lps is None:
            return None
        geom = self.view.pipeline.geometry
        return lps - ((lps - self.view.state.point) @ geom.n) * geom.n  # on this view's slice

    def _key(self) -> str:
        return self.view.state.key

    def _overlay(self):
        return self.ctl.overlays.get(self.view.slot)

    def _display(self, pos) -> tuple[float, float]:
        dpr = self.view._dpr()
        _, h = self.view.size_px()
        return pos.x() * dpr, h - pos.y() * dpr

    def _hit(self, pos):
        """('handle', measurement, index) or ('label', measurement, None) under ``pos``, or None."""
        overlay = self._overlay()
        if overlay is None:
            return None
        x, y = self._display(pos)
        best = None
        for d in overlay.drawn:
            for i, (hx, hy) in enumerate(d.handles):
                dist = math.hypot(hx - x, hy - y)
                if dist <= GRAB_PX * self.view._dpr() and (best is None or dist < best[0]):
                    best = (dist, "handle", d.measurement, i)
        if best is not None:
            return best[1:]
        for d in overlay.drawn:
            x0, y0, x1, y1 = d.label_box
            if x0 <= x <= x1 and y0 <= y <= y1:
                return "label", d.measurement, None
        return None

    def _new(self, points) -> Measurement:
        geom = self.view.pipeline.geometry
        src = self.view.state.volume.source
        return Measurement(self.kind, points, normal=geom.n, u=geom.u, series_uid=src.series_instance_uid,
                           frame_of_reference_uid=src.frame_of_reference_uid)

    # events
    def press(self, pos, modifiers) -> None:
        if self.view.state is None:
            return
        p = self._lps(pos)
        if p is None:
            return
        if self.drawing is not None and self.stage:  # the angle's second arm or the next polygon corner
            self._next_click(pos, p)
            return
        hit = self._hit(pos)
        if hit is not None:
            kind, m, index = hit
            self.ctl.select(m.uid)
            self.grab = (m, index) if kind == "handle" else None
            return
        self.start_px = (pos.x(), pos.y())
        self.last_px = self.start_px
        self.anchor = p
        self.moved = False
        kind = self.kind
        if kind == "point":
            self.ctl.add(self._key(), self._new([p]))
            return
        if kind == "ellipse":
            self.drawing = self._new([p, p + 1e-6 * self.view.pipeline.geometry.u, p])
        elif kind == "polygon":
            self.drawing = self._new([p, p, p])
            self.drawing.points = p[None, :]  # grows while drawing
        elif kind == "angle":
            self.drawing = self._new([p, p, p])
        elif kind == "bidirectional":
            self.drawing = self._new([p, p, p, p])
        else:
            self.drawing = self._new([p, p])
        self.ctl.begin(self._key(), self.drawing)

    def move(self, pos) -> None:
        p = self._lps(pos)
        if p is None:
            return
        if self.grab is not None:
            m, index = self.grab
            edit_handle(m, index, p)
            self.ctl.updated(self._key(), m, save=False)
            return
        m = self.drawing
        if m is None:
            return
        if self.start_px is not None and math.hypot(pos.x() - self.start_px[0],
                                                    pos.y() - self.start_px[1]) >= MIN_DRAG_PX:
            self.moved = True
        if self.kind == "polygon":
            if self.stage:
                return
            if math.hypot(pos.x() - self.last_px[0], pos.y() - self.last_px[1]) >= FREEHAND_STEP_PX:
                m.points = np.vstack([m.points, p])
                self.last_px = (pos.x(), pos.y())
        else:
            self._shape(m, p)
        self.ctl.updated(self._key(), m, save=False)

    def hover(self, pos) -> None:
        m = self.drawing
        if m is None or not self.stage:
            return
        p = self._lps(pos)
        if p is None:
            return
        m.points = m.points.copy()
        m.points[-1] = p
        self.ctl.updated(self._key(), m, save=False)

    def release(self, pos) -> None:
        if self.grab is not None:
            m, _ = self.grab
            self.grab = None
            self.ctl.updated(self._key(), m)
            return
        m = self.drawing
        if m is None:
            return
        dragged = self.moved or math.hypot(pos.x() - self.start_px[0], pos.y() - self.start_px[1]) >= MIN_DRAG_PX
        p = self._lps(pos)
        if self.kind == "polygon":
            if self.stage:
                return
            if dragged:  # freehand
                if p is not None and not np.allclose(m.points[-1], p):
                    m.points = np.vstack([m.points, p])
                self._finish() if len(m.points) >= 3 else self._cancel()
            else:  # click mode: the first corner is set, the next follows the mouse until clicked
                m.points = np.vstack([m.points[:1], m.points[:1]])
                self.stage = 1
            return
        if not dragged:
            self._cancel()
            return
        if p is not None:
            self._shape(m, p)
        if self.kind == "angle":
            m.points = np.stack([m.points[0], m.points[1], m.points[1]])
            self.stage = 1  # now the second arm follows the mouse until the next click
            self.ctl.updated(self._key(), m, save=False)
            return
        self._finish()

    def _next_click(self, pos, p) -> None:
        m = self.drawing
        if self.kind == "angle":
            m.points = np.stack([m.points[0], m.points[1], p])
            self._finish()
            return
        # polygon corners: a click near the first corner (or on the last one) closes it
        first = self.view.view2d.to_display(*self.view.pipeline.geometry.from_lps(m.points[0]))
        x, y = self._display(pos)
        near_first = math.hypot(first[0] - x, first[1] - y) <= GRAB_PX * self.view._dpr()
        corners = m.points[:-1]
        if near_first or (len(corners) and np.allclose(corners[-1], p, atol=1e-6)):
            if len(corners) >= 3:
                m.points = corners
                self._finish()
            return
        m.points = np.vstack([corners, p, p])
        self.ctl.updated(self._key(), m, save=False)

    def _shape(self, m: Measurement, p) -> None:
        a = self.anchor  # where the drag started
        geom = self.view.pipeline.geometry
        if self.kind == "ellipse":
            d = p - a
            x, y = float(d @ geom.u), float(d @ geom.v)
            c = a + 0.5 * d
            m.points = np.stack([c, c + 0.5 * max(abs(x), 1e-6) * geom.u, c + 0.5 * abs(y) * geom.v])
        elif self.kind == "bidirectional":
            d = p - a
            mid = a + 0.5 * d
            across = _unit(np.cross(geom.n, _unit(d))) * 0.25 * np.linalg.norm(d)
            m.points = np.stack([a, p, mid - across, mid + across])
        elif self.kind == "angle":
            m.points = np.stack([a, p, p])
        else:
            m.points = np.stack([a, p])

    def _finish(self) -> None:
        m = self.drawing
        self.drawing, self.stage = None, 0
        self.ctl.selected = m.uid
        self.ctl.updated(self._key(), m)
        self.ctl.selection_changed.emit()

    def _cancel(self) -> None:
        m = self.drawing
        self.drawing, self.stage = None, 0
        self.ctl.discard(self._key(), m)

    def leave(self) -> None:
        pass


def register(controller) -> None:
    for name, kind in TOOLS.items():
        attach(name, lambda view, ctl, kind=kind: MeasureTool(view, kind, ctl), controller)
