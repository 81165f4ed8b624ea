"""Layers drawn over a series' slices: explanation heatmaps from AI runs (no Qt, no VTK).

A ``HeatmapLayer`` holds a float32 volume in [0, 1] (on its own grid; usually the series' grid),
and how to draw it: a colour map, an opacity, and a threshold below which nothing is drawn so
that the image stays readable where the map is low.  The views observe ``changed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.core.viewstate import Signal
from viewer.core.volume import Volume

HEATMAP_COLORMAPS = ("Hot", "Jet", "Viridis")


@dataclass(eq=False)
class HeatmapLayer:
    name: str
    volume: Volume  # float32 in [0, 1]
    description: str = ""
    provenance: str = ""  # e.g. "CT denoising 1.0.0 (removed-noise)"
    opacity: float = 0.5
    threshold: float = 0.1
    colormap: str = "Hot"
    visible: bool = True
    changed: Signal = field(default_factory=Signal, repr=False)

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
