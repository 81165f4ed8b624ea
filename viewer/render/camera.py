"""The 2D view's camera: plane millimetres <-> display pixels, fit, zoom and pan.

The scene of a 2D view is its plane: x to the right, y up, in mm.  A parallel camera looks down
-z at ``focal``; ``scale`` is half the view's height in mm (VTK's parallel scale).  Display
pixels follow VTK: origin at the bottom-left corner.
"""

from __future__ import annotations

from dataclasses import dataclass

from vtkmodules.vtkRenderingCore import vtkCamera


@dataclass(frozen=True)
class View2D:
    width: int
    height: int
    focal: tuple[float, float]
    scale: float

    @property
    def mm_per_pixel(self) -> float:
        return 2.0 * self.scale / max(self.height, 1)

    def to_display(self, x: float, y: float) -> tuple[float, float]:
        k = 1.0 / self.mm_per_pixel
        return self.width / 2 + (x - self.focal[0]) * k, self.height / 2 + (y - self.focal[1]) * k

    def to_plane(self, dx: float, dy: float) -> tuple[float, float]:
        k = self.mm_per_pixel
        return self.focal[0] + (dx - self.width / 2) * k, self.focal[1] + (dy - self.height / 2) * k


def fit_scale(extent, width: int, height: int, margin: float = 1.02) -> float:
    """Parallel scale that shows the whole ``extent`` (xmin, xmax, ymin, ymax) in the view."""
    x0, x1, y0, y1 = extent
    aspect = max(width, 1) / max(height, 1)
    return margin * max((y1 - y0) / 2, (x1 - x0) / 2 / aspect, 1e-3)


def view_for(extent, width: int, height: int, zoom: float, pan: tuple[float, float]) -> View2D:
    x0, x1, y0, y1 = extent
    focal = ((x0 + x1) / 2 + pan[0], (y0 + y1) / 2 + pan[1])
    return View2D(width, height, focal, fit_scale(extent, width, height) / zoom)


def apply_camera(camera: vtkCamera, view: View2D) -> None:
    fx, fy = view.focal
    camera.ParallelProjectionOn()
    camera.SetFocalPoint(fx, fy, 0.0)
    camera.SetPosition(fx, fy, 1000.0)
    camera.SetViewUp(0.0, 1.0, 0.0)
    camera.SetParallelScale(view.scale)
    camera.SetClippingRange(1.0, 2000.0)
