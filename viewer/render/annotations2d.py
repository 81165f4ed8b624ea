"""Measurements drawn over a 2D view, in display pixels: lines, ellipses, polygons, angle arcs,
square handles and a label beside each (on a dark backing, so it reads on bright anatomy).

Only measurements whose plane is parallel to the view's and within half a slice of it are drawn.
``update`` is given the measurements, the view's plane geometry and camera (``View2D``) and
keeps, for hit-testing, where each handle and label landed on screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from viewer.core.measurements import Measurement, ellipse_axes, outline, summary
from viewer.render.overlays import _lines_actor, _set_segments, text_actor

COLOUR = (1.0, 0.82, 0.2)
SELECTED = (0.3, 0.9, 1.0)
HANDLE_PX = 4.0


def handle_points(m: Measurement) -> list[np.ndarray]:
    """LPS positions of a measurement's handles (the index is what ``edit_handle`` takes)."""
    if m.kind == "ellipse":
        c, a, b = ellipse_axes(m)
        return [c + a, c - a, c + b, c - b, c]
    return list(m.points)


@dataclass
class Drawn:
    measurement: Measurement
    handles: list[tuple[float, float]]  # display px, per handle index
    segments: list[tuple[tuple[float, float], tuple[float, float]]]  # display px
    label_box: tuple[float, float, float, float] = (0, 0, 0, 0)  # x0, y0, x1, y1 display px
    extra: dict = field(default_factory=dict)


class AnnotationOverlay:
    def __init__(self):
        self.actor, self._poly = _lines_actor()
        self.actor.GetProperty().SetLineWidth(2.0)
        self.handles_actor, self._handles_poly = _lines_actor()
        self.handles_actor.GetProperty().SetLineWidth(1.5)
        self.texts = []
        self.renderer = None
        self.drawn: list[Drawn] = []

    def add_to(self, renderer) -> None:
        self.renderer = renderer
        renderer.AddViewProp(self.actor)
        renderer.AddViewProp(self.handles_actor)

    def remove_from(self, renderer) -> None:
        renderer.RemoveViewProp(self.actor)
        renderer.RemoveViewProp(self.handles_actor)
        for t in self.texts:
            renderer.RemoveViewProp(t)
        self.texts = []

    def _text(self, n: int):
        while len(self.texts) <= n:
            t = text_actor(13, COLOUR)
            prop = t.GetTextProperty()
            prop.SetBackgroundColor(0.0, 0.0, 0.0)
            prop.SetBackgroundOpacity(0.55)
            prop.SetVerticalJustification(0)
            if self.renderer is not None:
                self.renderer.AddViewProp(t)
            self.texts.append(t)
        return self.texts[n]

    def update(self, measurements, geom, view2d, half_thickness: float, selected: str | None = None,
               units: str = "", width: int = 0, height: int = 0) -> None:
        segs, cols, hsegs, hcols = [], [], [], []
        self.drawn = []
        used = 0
        if geom is not None and view2d is not None:
            for m in measurements:
                if m.distance_to_plane(geom.origin, geom.n) > half_thickness + 1e-6:
                    continue

                def disp(p):
                    return view2d.to_display(*geom.from_lps(p))

                colour = SELECTED if m.uid == selected else COLOUR
                ms = self._segments(m, disp)
                segs += ms
                cols += [colour] * len(ms)
                handles = [disp(p) for p in handle_points(m)]
                show = m.kind != "polygon" or m.uid == selected
                if show:
                    for hx, hy in handles:
                        h = HANDLE_PX
                        corners = [(hx - h, hy - h), (hx + h, hy - h), (hx + h, hy + h), (hx - h, hy + h)]
                        for i in range(4):
                            hsegs.append((corners[i], corners[(i + 1) % 4]))
                            hcols.append(colour)
                d = Drawn(m, handles if show else [], ms)
                if self.renderer is not None:
                    text = self._text(used)
                    used += 1
                    words = summary(m, units)
                    title = m.label
                    text.SetInput(f"{title}\n{words}" if title else words)
                    text.GetTextProperty().SetColor(*colour)
                    pts = np.array([p for s in ms for p in s] or [disp(m.centre())])
                    x = float(pts[:, 0].max()) + 10
                    y = float(pts[:, 1].max()) + 4
                    lines = text.GetInput().count("\n") + 1
                    est_w = 7.5 * max(len(s) for s in text.GetInput().split("\n"))
                    if width and x + est_w > width - 8:  # keep it on screen: left of the shape instead
                        x = float(pts[:, 0].min()) - 10 - est_w
                    if height and y + 17 * lines > height - 8:
                        y = float(pts[:, 1].min()) - 4 - 17 * lines
                    x, y = max(x, 4.0), max(y, 4.0)
                    text.SetDisplayPosition(int(x), int(y))
                    text.SetVisibility(True)
                    d.label_box = (x, y, x + est_w, y + 17 * lines)
                self.drawn.append(d)
        for t in self.texts[used:]:
            t.SetVisibility(False)
        _set_segments(self._poly, segs, cols)
        _set_segments(self._handles_poly, hsegs, hcols)
        self.actor.SetVisibility(bool(segs))
        self.handles_actor.SetVisibility(bool(hsegs))

    @staticmethod
    def _segments(m: Measurement, disp) -> list:
        p = [disp(q) for q in m.points]
        if m.kind == "length":
            return [(p[0], p[1])]
        if m.kind == "bidirectional":
            return [(p[0], p[1]), (p[2], p[3])]
        if m.kind == "angle":
            out = [(p[0], p[1]), (p[1], p[2])]
            a0 = math.atan2(p[0][1] - p[1][1], p[0][0] - p[1][0])
            a1 = math.atan2(p[2][1] - p[1][1], p[2][0] - p[1][0])
            delta = math.remainder(a1 - a0, 2 * math.pi)
            r = 18.0
            arc = [(p[1][0] + r * math.cos(a0 + delta * t / 12), p[1][1] + r * math.sin(a0 + delta * t / 12))
                   for t in range(13)]
            return out + list(zip(arc[:-1], arc[1:]))
        if m.kind == "point":
            x, y = p[0]
            return [((x - 7, y), (x - 2, y)), ((x + 2, y), (x + 7, y)), ((x, y - 7), (x, y - 2)),
                    ((x, y + 2), (x, y + 7))]
        ring = [disp(q) for q in outline(m)]
        return list(zip(ring, ring[1:] + ring[:1]))
