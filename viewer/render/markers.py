"""AI detections drawn in a 2D view: where the view's plane cuts a marker, a circle in the
marker's status colour (pending yellow, accepted green, rejected red) with its number, class and
score beside it.  Geometry is in plane millimetres, like the image actor, so zoom and pan apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkTextActor

from viewer.core.planes import SliceGeometry

STATUS_COLOURS = {"pending": (1.0, 0.85, 0.1), "accepted": (0.25, 0.9, 0.35), "rejected": (0.95, 0.3, 0.25)}
Z = -0.2  # over the image (-1) and heatmaps (-0.5), under the 2D text overlays


@dataclass
class DrawnMarker:
    """A marker as drawn in this view, for hit-testing: plane-mm centre and radius."""

    marker_set: object
    index: int
    xy: tuple[float, float]
    radius: float


class MarkerOverlay:
    SEGMENTS = 64

    def __init__(self):
        self.actors: dict[str, tuple[vtkActor, vtkPolyData]] = {}
        for status, colour in STATUS_COLOURS.items():
            poly = vtkPolyData()
            mapper = vtkPolyDataMapper()
            mapper.SetInputData(poly)
            actor = vtkActor()
            actor.SetMapper(mapper)
            prop = actor.GetProperty()
            prop.SetColor(*colour)
            prop.SetLineWidth(1.5 if status == "rejected" else 2.5)
            prop.SetLighting(False)
            actor.PickableOff()
            self.actors[status] = (actor, poly)
        self.texts: list[vtkTextActor] = []
        self.renderer = None
        self.drawn: list[DrawnMarker] = []

    def add_to(self, renderer) -> None:
        self.renderer = renderer
        for actor, _ in self.actors.values():
            renderer.AddActor(actor)

    def remove_from(self, renderer) -> None:
        for actor, _ in self.actors.values():
            renderer.RemoveActor(actor)
        for t in self.texts:
            renderer.RemoveViewProp(t)
        self.texts = []

    def _text(self, n: int) -> vtkTextActor:
        while len(self.texts) <= n:
            t = vtkTextActor()
            tp = t.GetTextProperty()
            tp.SetFontSize(13)
            tp.SetShadow(True)
            t.GetPositionCoordinate().SetCoordinateSystemToWorld()
            self.renderer.AddViewProp(t)
            self.texts.append(t)
        return self.texts[n]

    def update(self, marker_sets, geom: SliceGeometry | None, point, mm_per_pixel: float | None = None) -> None:
        """Redraw for the plane ``geom`` through ``point``; with the view's ``mm_per_pixel`` labels that
        would overlap are stacked (the higher score keeps its place beside its circle)."""
        pts = {s: [] for s in STATUS_COLOURS}
        self.drawn = []
        labels: list[tuple[float, str, tuple, float, float]] = []  # score, text, colour, x, y (plane mm)
        if geom is not None:
            for ms in marker_sets:
                if not ms.visible:
                    continue
                for i, m in enumerate(ms.markers):
                    if not ms.shown(m):
                        continue
                    cut = m.cut(point, geom.n)
                    if cut is None:
                        continue
                    centre, r = cut
                    x, y = geom.from_lps(centre)
                    t = np.linspace(0, 2 * np.pi, self.SEGMENTS + 1)
                    pts[m.status].append(np.column_stack([x + r * np.cos(t), y + r * np.sin(t), np.full_like(t, Z)]))
                    self.drawn.append(DrawnMarker(ms, i, (float(x), float(y)), float(r)))
                    label = f"{i + 1} {m.label} {m.score:.2f}" + ("" if m.status == "pending" else f" ({m.status})")
                    labels.append((float(m.score), label, STATUS_COLOURS[m.status], x + 0.75 * r, y + 0.75 * r))
        used = 0
        if self.renderer is not None:
            for (_score, label, colour, _x, _y), (lx, ly) in zip(labels, stack_labels(labels, mm_per_pixel)):
                text = self._text(used)
                text.SetInput(label)
                text.GetTextProperty().SetColor(*colour)
                text.GetPositionCoordinate().SetValue(lx, ly, Z)
                text.SetVisibility(True)
                used += 1
        for t in self.texts[used:]:
            t.SetVisibility(False)
        for status, (actor, poly) in self.actors.items():
            _set_polylines(poly, pts[status])
            actor.SetVisibility(bool(pts[status]))

    def hit(self, xy, tolerance_mm: float):
        """The marker at plane point ``xy`` and how: ('move', m) inside, ('resize', m) on the rim."""
        best = None
        for d in self.drawn:
            dist = float(np.hypot(xy[0] - d.xy[0], xy[1] - d.xy[1]))
            if abs(dist - d.radius) <= tolerance_mm:
                cand = ("resize", d, abs(dist - d.radius))
            elif dist < d.radius:
                cand = ("move", d, dist)
            else:
                continue
            if best is None or cand[2] < best[2]:
                best = cand
        return None if best is None else best[:2]


LINE_PX, CHAR_PX = 17.0, 7.5  # a label's line height and mean character width at font size 13


def stack_labels(labels, mm_per_pixel: float | None) -> list[tuple[float, float]]:
    """Where to put each label (score, text, colour, x, y) so that none covers another: the labels are
    placed from the highest score down, each at its anchor or moved one line at a time (in plane mm)
    until it overlaps no label placed before it. Without ``mm_per_pixel`` every label stays at its anchor."""
    out = [(x, y) for *_rest, x, y in labels]
    if not mm_per_pixel or len(labels) < 2:
        return out
    line = LINE_PX * mm_per_pixel
    placed: list[tuple[float, float, float]] = []  # x, y, width in mm
    for n in sorted(range(len(labels)), key=lambda k: -labels[k][0]):
        _score, text, _colour, x, y = labels[n]
        width = len(text) * CHAR_PX * mm_per_pixel
        for _ in range(len(labels) + 1):
            if not any(abs(x - px) < max(width, pw) and abs(y - py) < line for px, py, pw in placed):
                break
            y += line
        placed.append((x, y, width))
        out[n] = (x, y)
    return out


def _set_polylines(poly: vtkPolyData, lines: list[np.ndarray]) -> None:
    points, cells = vtkPoints(), vtkCellArray()
    n = 0
    for line in lines:
        cells.InsertNextCell(len(line))
        for p in line:
            points.InsertNextPoint(*p)
            cells.InsertCellPoint(n)
            n += 1
    poly.SetPoints(points)
    poly.SetLines(cells)
    poly.Modified()
