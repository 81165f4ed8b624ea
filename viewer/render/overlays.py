"""2D annotations drawn over a slice, in display pixels: crosshair, orientation letters,
corner text, scale bar and a centred notice.  Each class owns its actors; ``add_to(renderer)``
puts them in a scene and ``update(...)`` changes them from plain numbers and strings.
"""

from __future__ import annotations

import math

import numpy as np
from vtkmodules.vtkCommonCore import vtkPoints, vtkUnsignedCharArray
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkRenderingCore import vtkActor2D, vtkCoordinate, vtkPolyDataMapper2D, vtkTextActor

import viewer.render.backends  # noqa: F401

# Plane colours (as in 3D Slicer): a crosshair line has the colour of the plane it shows.
PLANE_COLOURS = {"axial": (0.93, 0.33, 0.30), "coronal": (0.42, 0.78, 0.35), "sagittal": (0.95, 0.83, 0.30)}
TEXT_COLOUR = (0.92, 0.92, 0.90)
LABEL_COLOUR = (1.0, 0.80, 0.45)
FONT_SIZE = 14


def text_actor(size: int = FONT_SIZE, colour=TEXT_COLOUR, bold: bool = False, backed: bool = False) -> vtkTextActor:
    """A 2D text actor; ``backed`` puts a half-dark box behind the words, so that light text stays
    legible over light image (an inverted window, bone, fat on MR)."""
    actor = vtkTextActor()
    prop = actor.GetTextProperty()
    if backed:
        prop.SetBackgroundColor(0.0, 0.0, 0.0)
        prop.SetBackgroundOpacity(0.5)
    prop.SetFontFamilyToArial()
    prop.SetFontSize(size)
    prop.SetColor(*colour)
    prop.SetBold(bold)
    prop.SetShadow(True)
    prop.SetShadowOffset(1, -1)
    prop.SetLineSpacing(1.15)
    actor.SetPickable(False)
    return actor


def _lines_actor() -> tuple[vtkActor2D, vtkPolyData]:
    poly = vtkPolyData()
    mapper = vtkPolyDataMapper2D()
    mapper.SetInputData(poly)
    coord = vtkCoordinate()
    coord.SetCoordinateSystemToDisplay()
    mapper.SetTransformCoordinate(coord)
    mapper.SetColorModeToDirectScalars()
    actor = vtkActor2D()
    actor.SetMapper(mapper)
    actor.SetPickable(False)
    return actor, poly


def _set_segments(poly: vtkPolyData, segments, colours) -> None:
    """Replace ``poly``'s content with line segments ((x0, y0), (x1, y1)) and RGB colours in [0, 1]."""
    points, cells, rgb = vtkPoints(), vtkCellArray(), vtkUnsignedCharArray()
    rgb.SetNumberOfComponents(3)
    for (a, b), colour in zip(segments, colours):
        i0 = points.InsertNextPoint(a[0], a[1], 0.0)
        i1 = points.InsertNextPoint(b[0], b[1], 0.0)
        cells.InsertNextCell(2)
        cells.InsertCellPoint(i0)
        cells.InsertCellPoint(i1)
        rgb.InsertNextTuple3(*(int(round(255 * c)) for c in colour))
    poly.SetPoints(points)
    poly.SetLines(cells)
    poly.GetCellData().SetScalars(rgb)
    poly.Modified()


def _outside(a: np.ndarray, b: np.ndarray, box) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pieces (none, one or two) of segment a-b outside ``box`` (xmin, xmax, ymin, ymax)."""
    d = b - a
    t0, t1 = 0.0, 1.0  # Liang-Barsky: the part of the segment inside the box is t0..t1
    for p, q in ((-d[0], a[0] - box[0]), (d[0], box[1] - a[0]), (-d[1], a[1] - box[2]), (d[1], box[3] - a[1])):
        if abs(p) < 1e-12:
            if q < 0:
                return [(a, b)]  # parallel to this edge and beyond it
            continue
        if p < 0:
            t0 = max(t0, q / p)
        else:
            t1 = min(t1, q / p)
    if t0 >= t1:
        return [(a, b)]
    return [piece for piece, keep in (((a, a + t0 * d), t0 > 0), ((a + t1 * d, b), t1 < 1)) if keep]


class Crosshair:
    """Lines through the crosshair centre, with a gap around it so the point itself stays visible,
    and none behind a box given as ``hole`` (the centred notice: its words were struck through)."""

    def __init__(self, gap: float = 14.0):
        self.actor, self._poly = _lines_actor()
        self.actor.GetProperty().SetLineWidth(1.0)
        self.gap = gap
        self.lines: list[tuple[tuple[float, float], tuple[float, float], tuple]] = []

    def add_to(self, renderer) -> None:
        renderer.AddViewProp(self.actor)

    def update(self, centre, lines, width: int, height: int, visible: bool = True, hole=None,
               margin: float = 6.0) -> None:
        """``lines``: [(display direction (dx, dy), colour)], each through ``centre`` (display px);
        ``hole``: a display box (xmin, xmax, ymin, ymax) left clear, ``margin`` px round it."""
        self.actor.SetVisibility(bool(visible and lines))
        reach = 2.0 * math.hypot(width, height)
        segments, colours = [], []
        self.lines = []
        for (dx, dy), colour in lines:
            norm = math.hypot(dx, dy)
            if norm < 1e-9:
                continue
            d = np.array([dx, dy]) / norm
            c = np.asarray(centre, dtype=np.float64)
            self.lines.append((tuple(c), tuple(d), colour))
            for sign in (1.0, -1.0):
                seg = (c + sign * self.gap * d, c + sign * reach * d)
                pieces = _outside(*seg, _grown(hole, margin)) if hole is not None else [seg]
                segments += pieces
                colours += [colour] * len(pieces)
        _set_segments(self._poly, segments, colours)


def _grown(box, by: float) -> list[float]:
    return [box[0] - by, box[1] + by, box[2] - by, box[3] + by]


class OrientationLabels:
    """Letters naming the patient direction at the middle of each edge (right, left, top, bottom)."""

    def __init__(self):
        self.actors = {edge: text_actor(FONT_SIZE + 3, LABEL_COLOUR, bold=True)
                       for edge in ("right", "left", "top", "bottom")}
        for edge, actor in self.actors.items():
            prop = actor.GetTextProperty()
            prop.SetJustification({"right": 2, "left": 0}.get(edge, 1))
            prop.SetVerticalJustification({"top": 2, "bottom": 0}.get(edge, 1))

    def add_to(self, renderer) -> None:
        for actor in self.actors.values():
            renderer.AddViewProp(actor)

    def update(self, letters: dict[str, str], width: int, height: int, margin: int = 8) -> None:
        pos = {"right": (width - margin, height / 2), "left": (margin, height / 2),
               "top": (width / 2, height - margin), "bottom": (width / 2, margin)}
        for edge, actor in self.actors.items():
            actor.SetInput(letters.get(edge, ""))
            actor.SetDisplayPosition(int(pos[edge][0]), int(pos[edge][1]))

    def avoid(self, corners: CornerText, renderer, gap: int = 4, side: int = 8) -> None:
        """Move the top and bottom letters off the corner text they would overlap or touch (narrow
        views): below the top corners' lines, above the bottom corners' ones.  ``side`` px of space
        are kept beside a letter: on the chest CT's 2x2 axial the top 'A' stood 2 px before
        'Se: 10230', read as one line 'A Se: 10230'."""
        for edge, names in (("top", ("top_left", "top_right")), ("bottom", ("bottom_left", "bottom_right"))):
            actor = self.actors[edge]
            if not actor.GetInput():
                continue
            for _ in names:  # moved off one block, it may land on the other (stacked) one: once more
                x0, x1, y0, y1 = text_box(actor, renderer)
                hits = corners.hitting([x0 - side, x1 + side, y0, y1], names, renderer)
                if not hits:
                    break
                x, _y = actor.GetPosition()
                if edge == "top":
                    actor.SetDisplayPosition(int(x), int(min(b[2] for b in hits) - gap))
                else:
                    actor.SetDisplayPosition(int(x), int(max(b[3] for b in hits) + gap))

    def text(self, edge: str) -> str:
        return self.actors[edge].GetInput() or ""


def text_box(actor, renderer) -> list[float]:
    """(xmin, xmax, ymin, ymax) of a text actor in display pixels (VTK gives it relative to the
    actor's position)."""
    box = [0.0, 0.0, 0.0, 0.0]
    actor.GetBoundingBox(renderer, box)
    x, y = actor.GetPositionCoordinate().GetComputedDisplayValue(renderer)
    return [box[0] + x, box[1] + x, box[2] + y, box[3] + y]


def _width(actor, renderer) -> float:
    box = [0.0, 0.0, 0.0, 0.0]
    actor.GetBoundingBox(renderer, box)
    return box[1] - box[0]


def boxes_overlap(a, b) -> bool:
    """Whether two (xmin, xmax, ymin, ymax) boxes share any area."""
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


class CornerText:
    """Four blocks of text in the view's corners.

    The top ones say whose images these are (patient, ID, dates, study and series descriptions):
    ``hide(IDENTITY)`` leaves them out, e.g. for a de-identified key image, until ``hide(())``."""

    CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
    IDENTITY = ("top_left", "top_right")

    def __init__(self):
        self.hidden: frozenset[str] = frozenset()
        self.actors = {c: text_actor(backed=True) for c in self.CORNERS}
        self.words: dict[str, str] = {}  # each corner's whole text (the actor may show it shortened)
        self._fitted: dict[str, int] = {}  # corner -> the width its actor's text was fitted to
        self._ruler = text_actor(backed=True)  # measures single lines
        for corner, actor in self.actors.items():
            prop = actor.GetTextProperty()
            prop.SetJustification(2 if corner.endswith("right") else 0)
            prop.SetVerticalJustification(2 if corner.startswith("top") else 0)

    def add_to(self, renderer) -> None:
        for actor in self.actors.values():
            renderer.AddViewProp(actor)

    def hide(self, corners) -> None:
        """Leave these corners' blocks out of the picture (none: show all again)."""
        self.hidden = frozenset(corners)
        for corner, actor in self.actors.items():
            actor.SetVisibility(corner not in self.hidden)

    def update(self, texts: dict[str, str], width: int, height: int, margin: int = 8) -> None:
        for corner, actor in self.actors.items():
            actor.SetVisibility(corner not in self.hidden)
            text = texts.get(corner, "")
            if text != self.words.get(corner, ""):
                self.words[corner] = text
                actor.SetInput(text)
                self._fitted.pop(corner, None)
            x = width - margin if corner.endswith("right") else margin
            y = height - margin if corner.startswith("top") else margin
            actor.SetDisplayPosition(int(x), int(y))

    def fit_width(self, renderer, width: int, margin: int = 8) -> None:
        """Shorten, with '...', the lines wider than the view (a long study description in a narrow
        view ran off its edge: 'RoutineImage Gui' in a 217 px view), keeping their beginnings."""
        room = max(int(width) - 2 * margin, 24)
        for corner, actor in self.actors.items():
            if self._fitted.get(corner) == room:
                continue
            self._fitted[corner] = room
            words = self.words.get(corner, "")
            actor.SetInput(words)
            if not words or _width(actor, renderer) <= room:
                continue
            self._ruler.GetTextProperty().ShallowCopy(actor.GetTextProperty())
            actor.SetInput("\n".join(self._fit_line(line, room, renderer) for line in words.split("\n")))

    def _fit_line(self, line: str, room: int, renderer) -> str:
        def fits(text: str) -> bool:
            self._ruler.SetInput(text)
            return _width(self._ruler, renderer) <= room

        if not line or fits(line):
            return line
        lo, hi = 0, len(line)  # the longest beginning that fits with '...' after it
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(line[:mid].rstrip() + "..."):
                lo = mid
            else:
                hi = mid - 1
        return line[:lo].rstrip() + "..."

    def stack_if_crowded(self, renderer, gap: int = 2) -> None:
        """In a narrow view, where the left and right blocks of a row would overlap, the right one
        goes below (top row) or above (bottom row) the left one instead of over it."""
        for left, right, top in (("top_left", "top_right", True), ("bottom_left", "bottom_right", False)):
            if not (self.text(left) and self.text(right)):
                continue
            a, b = text_box(self.actors[left], renderer), text_box(self.actors[right], renderer)
            if b[0] >= a[1] + 8:
                continue
            x, _y = self.actors[right].GetPosition()
            self.actors[right].SetDisplayPosition(int(x), int(a[2] - gap if top else a[3] + gap))

    def hitting(self, box, corners, renderer) -> list[list[float]]:
        """The display boxes of those of ``corners`` that show text overlapping ``box``."""
        shown = (text_box(self.actors[c], renderer) for c in corners if self.text(c))
        return [b for b in shown if boxes_overlap(b, box)]

    def text(self, corner: str) -> str:
        """The words shown in a corner ("" when it is hidden)."""
        return "" if corner in self.hidden else self.actors[corner].GetInput() or ""


def nice_length(target_mm: float) -> float:
    """The largest 1, 2 or 5 x 10^n mm not longer than ``target_mm``."""
    if target_mm <= 0:
        return 0.0
    base = 10 ** math.floor(math.log10(target_mm))
    return max(m * base for m in (1, 2, 5) if m * base <= target_mm)


def bar_length(width_px: float, mm_per_pixel: float, share: float = 0.2, min_px: float = 56.0,
               max_share: float = 0.4) -> float:
    """The round length (1, 2 or 5 x 10^n mm) of a scale bar in a view ``width_px`` wide: the one
    whose bar comes nearest, by ratio, to ``share`` of the width (to ``min_px`` in a narrow view,
    where a fifth is a stub shorter than its own label), and no longer than ``max_share`` of it.
    The largest round length under a fifth, used before, fell to 8% of the view where a fifth was
    just under 5 cm (the brain MR's 217 px panes in 1x3: a 2 cm bar of 20 px)."""
    if width_px <= 0 or mm_per_pixel <= 0:
        return 0.0
    target = max(share * width_px, min_px) * mm_per_pixel
    limit = max_share * width_px * mm_per_pixel
    base = 10 ** math.floor(math.log10(target))
    options = [float(f"{m * base * f:.6g}") for f in (0.1, 1.0, 10.0) for m in (1, 2, 5)]
    fitting = [mm for mm in options if mm <= limit]
    if not fitting:
        return nice_length(limit)
    return min(fitting, key=lambda mm: abs(math.log(mm / target)))


def length_label(mm: float) -> str:
    if mm >= 10 and mm % 10 == 0:
        return f"{mm / 10:g} cm"
    return f"{mm:g} mm"


class ScaleBar:
    """A ruler along the bottom edge with ticks every fifth of its length and its length in words."""

    def __init__(self, colour=TEXT_COLOUR):
        self.actor, self._poly = _lines_actor()
        self.label = text_actor(FONT_SIZE - 1, backed=True)
        self.label.GetTextProperty().SetJustification(1)
        self.label.GetTextProperty().SetVerticalJustification(0)
        self.colour = colour
        self.length_mm = 0.0
        self._at = (0.0, 0.0, 0.0)  # x0, x1, y of the bar in display pixels

    def add_to(self, renderer) -> None:
        renderer.AddViewProp(self.actor)
        renderer.AddViewProp(self.label)

    def update(self, mm_per_pixel: float, width: int, height: int, bottom: int = 34) -> None:
        length = bar_length(width, mm_per_pixel)
        self.length_mm = length
        visible = length > 0 and width > 120
        self.actor.SetVisibility(visible)
        self.label.SetVisibility(visible)
        if not visible:
            return
        x1 = width - 16.0
        self.label.SetInput(length_label(length))
        self._place(x1 - length / mm_per_pixel, x1, float(bottom + 44))

    def _place(self, x0: float, x1: float, y: float) -> None:
        self._at = (x0, x1, y)
        segs = [((x0, y), (x1, y))]
        for t in range(6):
            x = x0 + t * (x1 - x0) / 5
            h = 7.0 if t in (0, 5) else 4.0
            segs.append(((x, y), (x, y + h)))
        _set_segments(self._poly, segs, [self.colour] * len(segs))
        self.label.SetDisplayPosition(int((x0 + x1) / 2), int(y + 9))

    def avoid(self, corners: CornerText, renderer, gap: int = 4) -> None:
        """Lift the bar and its label above the bottom corner text they would overlap (narrow views,
        where the corners' lines stack)."""
        if not self.label.GetVisibility():
            return
        x0, x1, y = self._at
        label = text_box(self.label, renderer)
        box = [min(x0, label[0]), max(x1, label[1]), y, label[3]]
        hits = corners.hitting(box, ("bottom_left", "bottom_right"), renderer)
        if hits:
            self._place(x0, x1, max(b[3] for b in hits) + gap)


class Notice:
    """A line of text in the middle of the view (e.g. 'Loading slice...'), broken into lines where it
    is wider than the view: 'No image at this position: missing from the series' is 363 px, and ran
    off both edges of the chest CT's 2x2 axial view (331 px)."""

    def __init__(self):
        self.actor = text_actor(FONT_SIZE + 2, LABEL_COLOUR, backed=True)
        self.actor.GetTextProperty().SetJustification(1)
        self.actor.GetTextProperty().SetVerticalJustification(1)
        self._ruler = text_actor(FONT_SIZE + 2, LABEL_COLOUR, backed=True)
        self._fitted: tuple[str, int, str] = ("", 0, "")  # text, room -> its lines (measured once)

    def add_to(self, renderer) -> None:
        renderer.AddViewProp(self.actor)

    def update(self, text: str, width: int, height: int, renderer=None, margin: int = 8) -> None:
        self.actor.SetInput(self._wrapped(text, width - 2 * margin, renderer) if text and renderer else text)
        self.actor.SetVisibility(bool(text))
        self.actor.SetDisplayPosition(int(width / 2), int(height / 2))

    def _wrapped(self, text: str, room: int, renderer) -> str:
        def fits(line: str) -> bool:
            self._ruler.SetInput(line)
            return _width(self._ruler, renderer) <= room

        if self._fitted[:2] == (text, room):
            return self._fitted[2]
        self._fitted = (text, room, self._broken(text, fits))
        return self._fitted[2]

    @staticmethod
    def _broken(text: str, fits) -> str:
        if fits(text):
            return text
        head, colon, tail = text.partition(": ")  # at its colon first, where the sentence turns
        if colon and fits(head + ":") and fits(tail):
            return f"{head}:\n{tail}"
        lines: list[str] = []
        for word in text.split(" "):
            if lines and fits(f"{lines[-1]} {word}"):
                lines[-1] += f" {word}"
            else:
                lines.append(word)
        return "\n".join(lines)
