"""Transfer functions of 3D rendering: presets (data from ``resources/presets/volume_presets.json``),
a live edit on top of a preset (shift in real units, opacity factor), and the grey ramp of the
MIP / MinIP projections.

Preset points are in real units (HU for CT) or, for modalities without absolute units, in [0, 1]
across the series' window.  VTK sees stored values: points go through the volume's rescale.
"""

from __future__ import annotations

from dataclasses import dataclass

from vtkmodules.vtkCommonDataModel import vtkPiecewiseFunction
from vtkmodules.vtkRenderingCore import vtkColorTransferFunction, vtkVolumeProperty


@dataclass(frozen=True)
class VolumePreset:
    name: str
    colour: tuple  # ((x, r, g, b), ...) sorted by x
    opacity: tuple  # ((x, alpha), ...) sorted by x
    units: str = "HU"  # "HU" (real units) or "window" (x in [0, 1] across the series window)
    modalities: tuple = ("CT",)
    shade: bool = True
    ambient: float = 0.25
    diffuse: float = 0.8
    specular: float = 0.2
    specular_power: float = 10.0

    @classmethod
    def from_dict(cls, d: dict) -> VolumePreset:
        colour = tuple(tuple(float(x) for x in p) for p in d["colour"])
        opacity = tuple(tuple(float(x) for x in p) for p in d["opacity"])
        for points, n in ((colour, 4), (opacity, 2)):
            xs = [p[0] for p in points]
            if any(len(p) != n for p in points) or xs != sorted(xs) or len(xs) < 2:
                raise ValueError(f"volume preset {d.get('name')!r}: points must be sorted [x, ...] rows of {n}")
        return cls(name=str(d["name"]), colour=colour, opacity=opacity, units=str(d.get("units", "HU")),
                   modalities=tuple(d.get("modalities", ("CT",))), shade=bool(d.get("shade", True)),
                   ambient=float(d.get("ambient", 0.25)), diffuse=float(d.get("diffuse", 0.8)),
                   specular=float(d.get("specular", 0.2)),
                   specular_power=float(d.get("specular_power", 10.0)))


@dataclass(frozen=True)
class TransferEdit:
    """A live change of a preset: every point moved by ``shift`` real units, opacity times ``opacity``."""

    shift: float = 0.0
    opacity: float = 1.0


def presets_for_modality(presets: list[VolumePreset], modality: str) -> list[VolumePreset]:
    """The presets that suit a modality (CT gets its HU presets; others the window-relative ones)."""
    own = [p for p in presets if modality.upper() in p.modalities]
    return own or [p for p in presets if "default" in p.modalities]


def _to_stored(x: float, rescale) -> float:
    slope, intercept = rescale
    return (x - intercept) / (slope or 1.0)


def real_x(preset: VolumePreset, x: float, window) -> float:
    """A preset point's abscissa in real units."""
    if preset.units == "window":
        centre, width = window
        return centre - width / 2 + x * width
    return x


def fill_preset(prop: vtkVolumeProperty, preset: VolumePreset, edit: TransferEdit = TransferEdit(),
                window=(40.0, 400.0), rescale=(1.0, 0.0), shade_allowed: bool = True) -> None:
    """Write ``preset`` (with ``edit``) into a volume property's colour and opacity functions."""
    ctf, otf = _functions(prop)
    ctf.RemoveAllPoints()
    otf.RemoveAllPoints()
    for x, r, g, b in preset.colour:
        ctf.AddRGBPoint(_to_stored(real_x(preset, x, window) + edit.shift, rescale), r, g, b)
    for x, a in preset.opacity:
        otf.AddPoint(_to_stored(real_x(preset, x, window) + edit.shift, rescale),
                     min(1.0, max(0.0, a * edit.opacity)))
    prop.SetShade(bool(preset.shade and shade_allowed))
    prop.SetAmbient(preset.ambient)
    prop.SetDiffuse(preset.diffuse)
    prop.SetSpecular(preset.specular)
    prop.SetSpecularPower(preset.specular_power)


def fill_ramp(prop: vtkVolumeProperty, window, rescale=(1.0, 0.0)) -> None:
    """A grey ramp across ``window`` (centre, width), fully opaque: the MIP / MinIP look."""
    ctf, otf = _functions(prop)
    ctf.RemoveAllPoints()
    otf.RemoveAllPoints()
    centre, width = window
    lo, hi = _to_stored(centre - width / 2, rescale), _to_stored(centre + width / 2, rescale)
    if hi < lo:
        lo, hi = hi, lo
    hi = max(hi, lo + 1e-3)
    ctf.AddRGBPoint(lo, 0.0, 0.0, 0.0)
    ctf.AddRGBPoint(hi, 1.0, 1.0, 1.0)
    otf.AddPoint(lo - 1.0, 1.0)
    otf.AddPoint(hi + 1.0, 1.0)
    prop.ShadeOff()


def _functions(prop: vtkVolumeProperty) -> tuple[vtkColorTransferFunction, vtkPiecewiseFunction]:
    """The property's colour and opacity functions, made (RGB) on first use."""
    if prop.GetColorChannels() != 3:
        prop.SetColor(vtkColorTransferFunction())
    if prop.GetScalarOpacity(0) is None:
        prop.SetScalarOpacity(vtkPiecewiseFunction())
    return prop.GetRGBTransferFunction(0), prop.GetScalarOpacity(0)
