"""Fusion: a second series (the *top* layer) drawn over a view of another (the *bottom*) through the
registration that joins them, in 2D and in 3D.

The top image is sampled on the bottom view's own plane: the reslice axes are
``inv(top.affine) @ M @ plane_matrix`` where ``M`` (4x4) maps the bottom series' LPS to the top's
(``Registration.to_moving`` of a rigid or identity registration, see ``affine_of``).  A deformable
registration has no such matrix: the top image is resampled onto the bottom grid first
(``Registration.resample``, off the UI thread) and drawn with ``M`` = identity.

Modes: ``blend`` (the top in a colour map over its window, at an opacity, transparent below the
window), ``checkerboard`` (squares of the top in grey over the bottom: edges must continue across
squares when the registration is right) and ``flicker`` (the top alone, opaque, shown and hidden in
turn by the caller).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from vtkmodules.vtkCommonCore import vtkLookupTable
from vtkmodules.vtkCommonDataModel import vtkPiecewiseFunction
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkImagingCore import vtkImageMapToColors
from vtkmodules.vtkImagingGeneral import vtkImageCheckerboard
from vtkmodules.vtkRenderingCore import vtkColorTransferFunction, vtkVolume, vtkVolumeProperty

from viewer.render.image import VtkVolume
from viewer.render.slice import GREY, SlicePipeline, set_matrix
from viewer.render.volume import residual_matrix

FUSION_MODES = ("blend", "checkerboard", "flicker")
CHECKER_DIVISIONS = 8  # squares along each side of the plane


def affine_of(to_moving: Callable[[np.ndarray], np.ndarray], centre=(0.0, 0.0, 0.0), span: float = 100.0) -> np.ndarray:
    """The 4x4 of an affine point map (a rigid registration's ``to_moving``), from four points
    around ``centre`` (exact for an affine map)."""
    c = np.asarray(centre, dtype=np.float64)
    pts = np.vstack([c, c + span * np.eye(3)])
    out = np.asarray(to_moving(pts), dtype=np.float64).reshape(4, 3)
    m = np.eye(4)
    m[:3, :3] = ((out[1:] - out[0]) / span).T
    m[:3, 3] = out[0] - m[:3, :3] @ c
    return m


def window_range(window, rescale=(1.0, 0.0)) -> tuple[float, float]:
    """(low, high) stored values of a real-unit window (centre, width)."""
    centre, width = window
    slope, intercept = rescale
    slope = slope or 1.0
    lo, hi = ((centre - width / 2 - intercept) / slope, (centre + width / 2 - intercept) / slope)
    lo, hi = min(lo, hi), max(lo, hi)
    return lo, max(hi, lo + 1e-3)


def colour_table(points, lo: float, hi: float, clear_below: bool = True, n: int = 256) -> vtkLookupTable:
    """Colour-map points [(x, r, g, b)] across [lo, hi] stored values, opaque; the lowest entry
    (everything at or below ``lo``) transparent when ``clear_below``."""
    pts = np.asarray(points, dtype=np.float64)
    x = np.linspace(0.0, 1.0, n)
    rgb = np.column_stack([np.interp(x, pts[:, 0], pts[:, c]) for c in (1, 2, 3)])
    lut = vtkLookupTable()
    lut.SetNumberOfTableValues(n)
    lut.SetRange(lo, hi)
    for i, (r, g, b) in enumerate(rgb):
        lut.SetTableValue(i, r, g, b, 0.0 if (clear_below and i == 0) else 1.0)
    lut.Build()
    return lut


def _clear_table() -> vtkLookupTable:
    lut = vtkLookupTable()
    lut.SetNumberOfTableValues(2)
    lut.SetTableValue(0, 0.0, 0.0, 0.0, 0.0)
    lut.SetTableValue(1, 0.0, 0.0, 0.0, 0.0)
    lut.Build()
    return lut


class FusionSlice(SlicePipeline):
    """The top layer on a bottom view's plane: reslice through ``M`` -> colours -> (checkerboard) -> actor."""

    def __init__(self, vtk_volume: VtkVolume, to_top: np.ndarray, background: float = -1e9):
        super().__init__(vtk_volume, background)
        self.to_top = np.asarray(to_top, dtype=np.float64)
        self.affine_inv = np.linalg.inv(vtk_volume.volume.affine) @ self.to_top  # used by set_geometry
        self.colours = vtkImageMapToColors()
        self.colours.SetOutputFormatToRGBA()
        self.colours.SetInputConnection(self.reslice.GetOutputPort())
        self.clear = vtkImageMapToColors()  # the other squares of the checkerboard: nothing
        self.clear.SetOutputFormatToRGBA()
        self.clear.SetLookupTable(_clear_table())
        self.clear.SetInputConnection(self.reslice.GetOutputPort())
        self.checker = vtkImageCheckerboard()
        self.checker.SetInputConnection(0, self.colours.GetOutputPort())
        self.checker.SetInputConnection(1, self.clear.GetOutputPort())
        self.checker.SetNumberOfDivisions(CHECKER_DIVISIONS, CHECKER_DIVISIONS, 1)
        self.actor.ForceOpaqueOff()
        self.actor.ForceTranslucentOn()
        self.actor.SetPosition(0, 0, -0.75)  # over the image, under heatmaps and text
        self.mode = ""
        self.window = (0.0, 1.0)
        self.style: tuple = ()
        self.set_style(GREY, (float(vtk_volume.volume.array.min()), 1.0), 0.5, "blend")

    def set_style(self, points, window, opacity: float, mode: str = "blend") -> None:
        """Colour map ``points`` over ``window`` (real units), ``opacity``; ``mode`` one of FUSION_MODES
        (checkerboard and flicker draw the top opaque in grey, to be compared with the bottom)."""
        if mode not in FUSION_MODES:
            raise ValueError(f"unknown fusion mode {mode!r}")
        style = (tuple(map(tuple, points)), tuple(window), float(opacity), mode)
        if style == self.style:
            return
        self.style, self.window = style, tuple(window)
        lo, hi = window_range(window, self.vtk_volume.volume.rescale)
        judging = mode != "blend"
        table = colour_table(GREY if judging else points, lo, hi, clear_below=not judging)
        prop = self.actor.GetProperty()
        if mode == "checkerboard":  # RGBA made on the CPU, squares cut out of it
            self.colours.SetLookupTable(table)
            self.colours.Modified()
            prop.SetLookupTable(None)
        else:  # the actor maps the resliced values through the table itself (no RGBA image per frame)
            prop.SetLookupTable(table)
            prop.SetUseLookupTableScalarRange(True)
        if mode != self.mode:
            port = (self.checker if mode == "checkerboard" else self.reslice).GetOutputPort()
            self.actor.GetMapper().SetInputConnection(port)
            self.mode = mode
        prop.SetOpacity(1.0 if judging else float(np.clip(opacity, 0.0, 1.0)))

    def set_visible(self, on: bool) -> None:
        self.actor.SetVisibility(bool(on))

    def rgba(self) -> np.ndarray:
        """The top layer's last RGBA plane [y, x, 4] (tests)."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        if self.mode != "checkerboard":
            self.colours.SetLookupTable(self.actor.GetProperty().GetLookupTable())
        src = self.checker if self.mode == "checkerboard" else self.colours
        src.Update()
        out = src.GetOutput()
        nx, ny, _ = out.GetDimensions()
        return vtk_to_numpy(out.GetPointData().GetScalars()).reshape(ny, nx, 4)

    def add_to(self, renderer) -> None:
        renderer.AddViewProp(self.actor)

    def remove_from(self, renderer) -> None:
        renderer.RemoveViewProp(self.actor)


class FusionVolume:
    """The top layer in 3D: its own ray-cast volume, placed in the bottom's LPS space by ``inv(M)``,
    coloured by the colour map over its window, opacity rising from 0 at the window's low end to
    ``opacity`` at its high end."""

    def __init__(self, vtk_volume: VtkVolume, to_top: np.ndarray):
        from vtkmodules.vtkRenderingVolume import vtkGPUVolumeRayCastMapper

        self.vtk_volume = vtk_volume
        self.mapper = vtkGPUVolumeRayCastMapper()
        self.mapper.SetInputData(vtk_volume.patient_image)
        self.mapper.AutoAdjustSampleDistancesOff()
        self.mapper.SetSampleDistance(float(vtk_volume.volume.spacing.min()) * 1.5)
        self.property = vtkVolumeProperty()
        self.property.SetInterpolationTypeToLinear()
        self.property.ShadeOff()
        self.ctf, self.otf = vtkColorTransferFunction(), vtkPiecewiseFunction()
        self.property.SetColor(self.ctf)
        self.property.SetScalarOpacity(self.otf)
        self.actor = vtkVolume()
        self.actor.SetMapper(self.mapper)
        self.actor.SetProperty(self.property)
        placed = np.linalg.inv(np.asarray(to_top, dtype=np.float64)) @ residual_matrix(vtk_volume)
        if not np.allclose(placed, np.eye(4), atol=1e-9):
            self.actor.SetUserMatrix(set_matrix(vtkMatrix4x4(), placed))

    def set_style(self, points, window, opacity: float) -> None:
        lo, hi = window_range(window, self.vtk_volume.volume.rescale)
        self.ctf.RemoveAllPoints()
        self.otf.RemoveAllPoints()
        for x, r, g, b in points:
            self.ctf.AddRGBPoint(lo + x * (hi - lo), r, g, b)
        a = float(np.clip(opacity, 0.0, 1.0))
        self.otf.AddPoint(lo - 1.0, 0.0)
        self.otf.AddPoint(lo, 0.0)
        self.otf.AddPoint(hi, 0.6 * a)
        self.otf.AddPoint(hi + 1.0, 0.6 * a)

    def add_to(self, renderer) -> None:
        renderer.AddVolume(self.actor)

    def remove_from(self, renderer) -> None:
        renderer.RemoveVolume(self.actor)
