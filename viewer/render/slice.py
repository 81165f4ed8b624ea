"""The 2D reslice pipeline of one view: vtkImageReslice -> vtkImageActor, window/level on the actor.

The reslice reads the shared index-space image (``VtkVolume.index_image``) through reslice axes
``inv(affine) @ plane_matrix``: output (x, y) are plane millimetres, so any affine (oblique,
sheared by gantry tilt) is sampled exactly, and only one slice is computed per frame.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.vtkCommonCore import vtkLookupTable
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkImagingCore import vtkImageReslice
from vtkmodules.vtkRenderingCore import vtkImageActor

from viewer.core.planes import SliceGeometry
from viewer.render.image import VtkVolume


def set_matrix(m: vtkMatrix4x4, a: np.ndarray) -> vtkMatrix4x4:
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    return m


def lookup_table(points, invert: bool = False, n: int = 256) -> vtkLookupTable:
    """A vtkLookupTable from colour-map points [(x, r, g, b), ...] with x and colours in [0, 1]."""
    pts = np.asarray(points, dtype=np.float64)
    x = np.linspace(0.0, 1.0, n)
    rgb = np.column_stack([np.interp(x, pts[:, 0], pts[:, c]) for c in (1, 2, 3)])
    if invert:
        rgb = rgb[::-1]
    lut = vtkLookupTable()
    lut.SetNumberOfTableValues(n)
    lut.SetRange(0.0, 1.0)
    for i, (r, g, b) in enumerate(rgb):
        lut.SetTableValue(i, r, g, b, 1.0)
    lut.Build()
    return lut


GREY = ((0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 1.0, 1.0))


class SlicePipeline:
    """One resliced plane of one volume, drawn as an image actor in plane coordinates."""

    def __init__(self, vtk_volume: VtkVolume, background: float = 0.0):
        self.vtk_volume = vtk_volume
        self.affine_inv = np.linalg.inv(vtk_volume.volume.affine)
        self._axes = vtkMatrix4x4()
        self.reslice = vtkImageReslice()
        self.reslice.SetInputData(vtk_volume.index_image)
        self.reslice.SetInterpolationModeToLinear()
        self.reslice.SetOutputDimensionality(2)
        self.reslice.SetBackgroundLevel(background)
        self.reslice.SetResliceAxes(self._axes)
        self.actor = vtkImageActor()
        self.actor.GetMapper().SetInputConnection(self.reslice.GetOutputPort())
        self.actor.GetMapper().BorderOn()  # texels reach the image edge exactly
        self.actor.ForceOpaqueOn()
        prop = self.actor.GetProperty()
        prop.SetInterpolationTypeToLinear()
        prop.SetUseLookupTableScalarRange(False)
        self._lut_key = None
        self._slab = ("mip", 1)
        self.geometry: SliceGeometry | None = None

    def set_geometry(self, geom: SliceGeometry) -> None:
        """Sample the plane ``geom`` (its extent at its spacing), output in plane mm."""
        self.geometry = geom
        set_matrix(self._axes, self.affine_inv @ geom.matrix())
        self._axes.Modified()
        nx, ny = geom.size
        s = geom.spacing
        self.reslice.SetOutputSpacing(s, s, 1.0)
        self.reslice.SetOutputOrigin(geom.extent[0], geom.extent[2], 0.0)
        self.reslice.SetOutputExtent(0, nx - 1, 0, ny - 1, 0, 0)
        self.reslice.Modified()

    def set_slab(self, mode: str = "mip", thickness: float = 0.0) -> None:
        """Project a slab ``thickness`` mm thick centred on the plane: "mip", "minip" or "mean";
        0 mm: the thin slice.  Samples are half the finest voxel spacing apart along the normal
        (VTK 9.7 centres the slab one step off when the spacing fraction is exactly 1)."""
        step = float(self.vtk_volume.volume.spacing.min()) / 2
        n = 1 if thickness <= 0 else 2 * max(1, int(round(thickness / step / 2))) + 1  # odd: one on the plane
        key = (mode, n)
        if key == self._slab:
            return
        self._slab = key
        self.reslice.SetSlabNumberOfSlices(n)
        self.reslice.SetSlabSliceSpacingFraction(step)  # the output z spacing is 1 mm
        {"mip": self.reslice.SetSlabModeToMax, "minip": self.reslice.SetSlabModeToMin,
         "mean": self.reslice.SetSlabModeToMean}[mode]()
        self.reslice.Modified()

    def set_window(self, center: float, width: float, rescale=(1.0, 0.0)) -> None:
        """Window/level in real units (HU for CT); converted to stored values for VTK."""
        slope, intercept = rescale
        slope = slope or 1.0
        prop = self.actor.GetProperty()
        prop.SetColorWindow(width / abs(slope))
        prop.SetColorLevel((center - intercept) / slope)

    def set_colormap(self, points, invert: bool) -> None:
        """Colour map points (see ``lookup_table``); plain grey uses VTK's own fast grey ramp."""
        key = (tuple(map(tuple, points)), invert)
        if key == self._lut_key:
            return
        self._lut_key = key
        plain = key[0] == tuple(map(tuple, GREY)) and not invert
        self.actor.GetProperty().SetLookupTable(None if plain else lookup_table(points, invert))

    def output_array(self) -> np.ndarray:
        """The last resliced plane as a [y, x] array (for tests and read-outs)."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        self.reslice.Update()
        out = self.reslice.GetOutput()
        nx, ny, _ = out.GetDimensions()
        return vtk_to_numpy(out.GetPointData().GetScalars()).reshape(ny, nx)
