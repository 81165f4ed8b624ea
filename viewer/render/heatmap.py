"""A heatmap drawn over a 2D view: the same reslice as the image, coloured through a lookup table
whose alpha is 0 below the layer's threshold, and a colour bar that says what the colours mean.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.vtkCommonCore import vtkLookupTable
from vtkmodules.vtkRenderingAnnotation import vtkScalarBarActor
from vtkmodules.vtkRenderingCore import vtkTextActor

from viewer.core.layers import HeatmapLayer
from viewer.render.image import VtkVolume
from viewer.render.slice import SlicePipeline

# colour-map points (x, r, g, b) with x in [0, 1]
HEATMAP_POINTS = {
    "Hot": ((0.0, 0.35, 0.0, 0.0), (0.35, 0.9, 0.1, 0.0), (0.7, 1.0, 0.75, 0.0), (1.0, 1.0, 1.0, 0.85)),
    "Jet": ((0.0, 0.0, 0.0, 0.6), (0.25, 0.0, 0.5, 1.0), (0.5, 0.1, 1.0, 0.4), (0.75, 1.0, 0.8, 0.0),
            (1.0, 0.8, 0.0, 0.0)),
    "Viridis": ((0.0, 0.27, 0.0, 0.33), (0.33, 0.19, 0.41, 0.56), (0.66, 0.21, 0.72, 0.47), (1.0, 0.99, 0.91, 0.14)),
}


def heatmap_table(colormap: str, threshold: float, n: int = 256, full_scale: float = 1.0) -> vtkLookupTable:
    """Colours over [0, 1]; fully transparent below ``threshold``, opaque above (the actor's
    opacity then sets how much of the image shows through).  ``full_scale``: the table's range is
    [0, full_scale] (the colour bar's numbers in the layer's unit; the map itself stays [0, 1])."""
    pts = np.asarray(HEATMAP_POINTS[colormap], dtype=np.float64)
    x = np.linspace(0.0, 1.0, n)
    rgb = np.column_stack([np.interp(x, pts[:, 0], pts[:, c]) for c in (1, 2, 3)])
    lut = vtkLookupTable()
    lut.SetNumberOfTableValues(n)
    lut.SetRange(0.0, float(full_scale))
    for i, (r, g, b) in enumerate(rgb):
        lut.SetTableValue(i, r, g, b, 0.0 if x[i] < threshold else 1.0)
    lut.Build()
    return lut


class HeatmapPipeline(SlicePipeline):
    """One heatmap layer resliced on the view's plane (shares the layer's buffer)."""

    def __init__(self, layer: HeatmapLayer):
        self.layer = layer
        super().__init__(VtkVolume(layer.volume), background=0.0)
        self.actor.ForceOpaqueOff()
        self.actor.ForceTranslucentOn()
        prop = self.actor.GetProperty()
        prop.SetUseLookupTableScalarRange(True)
        self.actor.SetPosition(0, 0, -0.5)  # over the image, under the text overlays
        self.colour_bar = vtkScalarBarActor()
        self.colour_bar.SetNumberOfLabels(3)
        self.colour_bar.SetLabelFormat("%.1f")
        self.colour_bar.SetBarRatio(0.25)
        self.colour_bar.SetMaximumWidthInPixels(70)
        self.colour_bar.SetMaximumHeightInPixels(220)
        self.colour_bar.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        self.colour_bar.GetPositionCoordinate().SetValue(0.86, 0.3)
        self.colour_bar.SetWidth(0.12)
        self.colour_bar.SetHeight(0.4)
        for tp in (self.colour_bar.GetLabelTextProperty(), self.colour_bar.GetTitleTextProperty()):
            tp.SetFontSize(12)
            tp.SetShadow(False)
            tp.SetBold(False)
            tp.SetItalic(False)
        self.colour_bar.UnconstrainedFontSizeOn()
        self.colour_bar.SetTitle("")
        # the bar's own title is centred on the bar and clipped at the view's edge: the layer's
        # name is a text of its own, right-aligned under the bar
        self.title = vtkTextActor()
        tp = self.title.GetTextProperty()
        tp.SetFontSize(12)
        tp.SetJustificationToRight()
        tp.SetVerticalJustificationToTop()
        tp.SetColor(0.92, 0.92, 0.92)
        # on a dark box: the name stays legible over bright bone or contrast-filled mediastinum
        tp.SetBackgroundColor(0.0, 0.0, 0.0)
        tp.SetBackgroundOpacity(0.6)
        self.title.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        self.title.GetPositionCoordinate().SetValue(0.985, 0.29)
        self.update_style()

    def update_style(self) -> None:
        layer = self.layer
        lut = heatmap_table(layer.colormap, layer.threshold)
        prop = self.actor.GetProperty()
        prop.SetLookupTable(lut)
        prop.SetOpacity(layer.opacity)
        self.actor.SetVisibility(layer.visible)
        # the bar's numbers are in the layer's unit (HU removed, probability...), named in its title
        scale = float(layer.full_scale) if layer.full_scale > 0 else 1.0
        self.colour_bar.SetLookupTable(heatmap_table(layer.colormap, layer.threshold, full_scale=scale))
        self.colour_bar.SetLabelFormat("%.0f" if scale >= 10 else "%.1f")
        self.colour_bar.SetVisibility(layer.visible and layer.colour_bar)
        # "Nodule probability", not "Nodule probability (probability)"
        named = layer.unit and layer.unit.lower() in layer.name.lower()
        self.title.SetInput(f"{layer.name} ({layer.unit})" if layer.unit and not named else layer.name)
        self.title.SetVisibility(layer.visible)

    def add_to(self, renderer) -> None:
        renderer.AddViewProp(self.actor)
        renderer.AddViewProp(self.colour_bar)
        renderer.AddViewProp(self.title)

    def remove_from(self, renderer) -> None:
        renderer.RemoveViewProp(self.actor)
        renderer.RemoveViewProp(self.colour_bar)
        renderer.RemoveViewProp(self.title)
