"""Layers drawn over a series' slices: explanation heatmaps from AI runs (no Qt, no VTK).

A ``HeatmapLayer`` holds a float32 volume in [0, 1] (on its own grid; usually the series' grid),
and how to draw it: a colour map, an opacity, and a threshold below which nothing is drawn so
that the image stays readable where the map is low.  The views observe ``changed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.core.signals import Signal
from viewer.core.volume import Volume

HEATMAP_COLORMAPS = ("Hot", "Jet", "Viridis")


@dataclass(eq=False)
class HeatmapLayer:
    name: str
    volume: Volume  # float32 in [0, 1]
    description: str = ""
    provenance: str = ""  # e.g. "CT denoising 1.0.0 (removed-noise)"
    unit: str = ""  # what the colour bar's numbers are: "HU", "probability", "relative, 0-1"
    full_scale: float = 1.0  # 1.0 in the map stands for this many ``unit`` (and 0 for 0)
    opacity: float = 0.5
    threshold: float = 0.1
    colormap: str = "Hot"
    visible: bool = True
    changed: Signal = field(default_factory=Signal, repr=False)
    colour_bar: bool = True  # False for a map whose values say nothing (an outline): its name only

    def __post_init__(self) -> None:
        if self.volume.array.dtype != np.float32:
            raise ValueError("a heatmap volume must be float32 in [0, 1]")

    def set(self, *, opacity: float | None = None, threshold: float | None = None, visible: bool | None = None,
            colormap: str | None = None) -> None:
        if opacity is not None:
            self.opacity = float(np.clip(opacity, 0.0, 1.0))
        if threshold is not None:
            self.threshold = float(np.clip(threshold, 0.0, 1.0))
        if visible is not None:
            self.visible = bool(visible)
        if colormap is not None:
            if colormap not in HEATMAP_COLORMAPS:
                raise ValueError(f"unknown heatmap colour map {colormap!r}")
            self.colormap = colormap
        self.changed.emit()

    def value_at(self, lps) -> float | None:
        """The map's value at an LPS point (nearest voxel), or None outside its grid."""
        idx = np.rint(self.volume.lps_to_index(lps)).astype(int)
        nk, nj, ni = self.volume.shape
        i, j, k = (int(v) for v in idx[:3])
        if 0 <= i < ni and 0 <= j < nj and 0 <= k < nk:
            return float(self.volume.array[k, j, i])
        return None


MARKER_STATUSES = ("pending", "accepted", "rejected")


@dataclass(eq=False)
class Marker:
    """One AI detection as the radiologist reviews it: an ellipsoid (axis-aligned in LPS) with a
    score and a class; ``status`` is pending until accepted or rejected; moving or resizing it
    marks it edited by a person."""

    center: np.ndarray  # LPS mm
    size_mm: np.ndarray  # full extent along L, P, S
    score: float
    label: str
    description: str = ""
    status: str = "pending"
    edited: bool = False
    attributes: dict = field(default_factory=dict)  # the plugin's per-detection facts (diameters, type...)
    origin: str = "ai"  # "ai": proposed by a plugin; "person": added by the radiologist
    proposed: tuple | None = None  # (centre, size) as the AI returned them; never changed afterwards

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, np.float64)
        self.size_mm = np.asarray(self.size_mm, np.float64)
        if self.proposed is None and self.origin == "ai":
            self.proposed = (self.center.copy(), self.size_mm.copy())

    def to_dict(self) -> dict:
        return {"center_lps_mm": [round(float(c), 3) for c in self.center],
                "size_mm": [round(float(s), 3) for s in self.size_mm], "score": float(self.score),
                "label": self.label, "status": self.status, "edited_by_person": self.edited,
                "origin": self.origin, "attributes": dict(self.attributes),
                "proposed": None if self.proposed is None else
                {"center_lps_mm": [round(float(c), 3) for c in self.proposed[0]],
                 "size_mm": [round(float(s), 3) for s in self.proposed[1]]}}

    def cut(self, point, normal) -> tuple[np.ndarray, float] | None:
        """Where the plane through ``point`` with unit ``normal`` cuts the marker: (centre of the
        cut in LPS, its radius in mm), or None when the plane misses it.  The in-plane radius is
        the mean semi-axis across the plane; the depth is the semi-axis along the normal."""
        n = np.asarray(normal, np.float64)
        semi = np.maximum(np.asarray(self.size_mm, np.float64) / 2.0, 1e-3)
        depth = 1.0 / np.sqrt(np.sum((n / semi) ** 2))
        d = float((np.asarray(self.center) - np.asarray(point)) @ n)
        if abs(d) >= depth:
            return None
        across = float(np.sqrt(np.sum(semi ** 2 * (1 - n ** 2)) / 2.0))
        return np.asarray(self.center) - d * n, across * float(np.sqrt(1.0 - (d / depth) ** 2))


@dataclass(eq=False)
class MarkerSet:
    """The detections of one AI run on a series."""

    name: str
    markers: list[Marker]
    provenance: str = ""
    visible: bool = True
    min_score: float = 0.0  # the operating point: AI markers scored below it are not drawn
    changed: Signal = field(default_factory=Signal, repr=False)

    def shown(self, m: Marker) -> bool:
        """Whether marker ``m`` is drawn (and listed): below the operating point an AI detection
        is hidden, never deleted, unless it was accepted; a person's always shows."""
        return m.origin == "person" or m.status == "accepted" or m.score >= self.min_score

    def set_min_score(self, t: float) -> None:
        if float(t) != self.min_score:
            self.min_score = float(t)
            self.changed.emit()

    def set_status(self, index: int, status: str) -> None:
        if status not in MARKER_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self.markers[index].status = status
        self.changed.emit()

    def move(self, index: int, center) -> None:
        m = self.markers[index]
        m.center, m.edited = np.asarray(center, np.float64), True
        self.changed.emit()

    def set_size(self, index: int, size_mm) -> None:
        m = self.markers[index]
        m.size_mm, m.edited = np.maximum(np.asarray(size_mm, np.float64), 0.5), True
        self.changed.emit()

    def set_visible(self, on: bool) -> None:
        self.visible = bool(on)
        self.changed.emit()
