"""GPU ray-cast volume rendering of one Volume: composite (with a transfer-function preset), MIP
and MinIP, level of detail, clipping box.

The mapper reads ``VtkVolume.patient_image``: the volume's own buffer (no copy on the CPU side;
the GPU holds its texture) with origin, spacing and direction from the affine, so VTK's world
coordinates are LPS mm like the 2D planes'.  A sheared (gantry-tilt) affine has no direction-matrix
form, and a left-handed one (a reflection) is drawn wrongly by the ray caster (``VtkVolume``): the
residual shear or reflection goes into the vtkVolume's user matrix, which places it exactly.

Quality levels (sample distances in multiples of the finest voxel spacing; image sample distance
in pixels): "interactive" while the camera moves, "refined" when it stops, "full" for stills.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401  the OpenGL ray-cast mapper's factory
from vtkmodules.vtkCommonDataModel import vtkPlane, vtkPlaneCollection
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkRenderingCore import vtkVolume, vtkVolumeProperty
from vtkmodules.vtkRenderingVolume import vtkGPUVolumeRayCastMapper, vtkVolumePicker

import viewer.render.backends  # noqa: F401
from viewer.render.image import VtkVolume
from viewer.render.slice import set_matrix
from viewer.render.transfer import TransferEdit, VolumePreset, fill_preset, fill_ramp

MODES = ("composite", "mip", "minip")


@dataclass(frozen=True)
class Quality:
    sample: float  # ray step in multiples of the finest voxel spacing
    image_sample: float  # pixels per ray (1: every pixel)
    shade: bool  # lighting allowed (the preset decides whether it is used)


# The still frames jitter each ray's start (no wood-grain rings where a step of several voxels
# meets thin, faint structures such as the lung preset's); jitter turns the rings into speckle as
# strong as the step is long, so the refined frame also steps at 0.75 voxel, not 1.5: the lung
# preset then differs from a 0.35-voxel reference by a quarter as much, for twice the ray-marching
# time (tests/render/test_volume3d.py measures both).
QUALITY = {
    "interactive": Quality(4.0, 3.0, False),
    "refined": Quality(0.75, 1.5, True),
    "full": Quality(0.5, 1.0, True),
}


def residual_matrix(vtk_volume: VtkVolume) -> np.ndarray:
    """4x4 taking the patient image's (origin, spacing, direction) placement to the exact affine:
    identity unless the affine is sheared or left-handed."""
    img = vtk_volume.patient_image
    placed = np.eye(4)
    direction = np.array([img.GetDirectionMatrix().GetElement(r, c) for r in range(3) for c in range(3)])
    placed[:3, :3] = direction.reshape(3, 3) * np.asarray(img.GetSpacing())[None, :]
    placed[:3, 3] = img.GetOrigin()
    return vtk_volume.volume.affine @ np.linalg.inv(placed)


class VolumeRenderer:
    """The vtkVolume of one VtkVolume and its rendering settings."""

    def __init__(self, vtk_volume: VtkVolume):
        self.vtk_volume = vtk_volume
        self.volume = vtk_volume.volume
        self.mapper = vtkGPUVolumeRayCastMapper()
        self.mapper.SetInputData(vtk_volume.patient_image)
        self.mapper.AutoAdjustSampleDistancesOff()
        self.mapper.LockSampleDistanceToInputSpacingOff()
        self.property = vtkVolumeProperty()
        self.property.SetInterpolationTypeToLinear()
        self.property.SetIndependentComponents(True)
        self.actor = vtkVolume()
        self.actor.SetMapper(self.mapper)
        self.actor.SetProperty(self.property)
        residual = residual_matrix(vtk_volume)
        if not np.allclose(residual, np.eye(4), atol=1e-6):
            self.actor.SetUserMatrix(set_matrix(vtkMatrix4x4(), residual))
        self.mode = "composite"
        self.preset: VolumePreset | None = None
        self.edit = TransferEdit()
        self.window = tuple(self.volume.window or (40.0, 400.0))
        self.quality = "refined"
        self.clip_bounds: tuple | None = None
        self._planes = vtkPlaneCollection()
        self.set_quality("refined")

    # appearance
    def set_preset(self, preset: VolumePreset, edit: TransferEdit | None = None) -> None:
        self.preset = preset
        self.edit = edit or TransferEdit()
        self._apply()

    def set_edit(self, edit: TransferEdit) -> None:
        self.edit = edit
        self._apply()

    def set_window(self, centre: float, width: float) -> None:
        """The series window: the grey ramp of MIP / MinIP, and 'window' presets (MR)."""
        self.window = (float(centre), max(float(width), 1e-3))
        self._apply()

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown 3D mode {mode!r}; expected one of {MODES}")
        self.mode = mode
        blend = {"composite": self.mapper.SetBlendModeToComposite,
                 "mip": self.mapper.SetBlendModeToMaximumIntensity,
                 "minip": self.mapper.SetBlendModeToMinimumIntensity}
        blend[mode]()
        self._apply()

    def set_quality(self, name: str) -> None:
        q = QUALITY[name]
        self.quality = name
        step = float(self.volume.spacing.min())
        self.mapper.SetSampleDistance(q.sample * step)
        self.mapper.SetImageSampleDistance(q.image_sample)
        self.mapper.SetUseJittering(name != "interactive")  # no wood-grain rings in still frames (QUALITY)
        self._apply()

    def _apply(self) -> None:
        rescale = self.volume.rescale
        if self.mode != "composite" or self.preset is None:
            fill_ramp(self.property, self.window, rescale)
        else:
            fill_preset(self.property, self.preset, self.edit, self.window, rescale,
                        shade_allowed=QUALITY[self.quality].shade)

    # clipping
    def set_clip_box(self, bounds) -> None:
        """Keep only what lies inside the LPS box (xmin, xmax, ymin, ymax, zmin, zmax); None: no clipping."""
        self._planes.RemoveAllItems()
        self.clip_bounds = None if bounds is None else tuple(float(b) for b in bounds)
        if bounds is not None:
            for axis in range(3):
                for side, sign in ((0, 1.0), (1, -1.0)):
                    plane = vtkPlane()
                    origin = [0.0, 0.0, 0.0]
                    origin[axis] = self.clip_bounds[2 * axis + side]
                    normal = [0.0, 0.0, 0.0]
                    normal[axis] = sign  # towards the inside: the side kept
                    plane.SetOrigin(*origin)
                    plane.SetNormal(*normal)
                    self._planes.AddItem(plane)
        if bounds is None:
            self.mapper.RemoveAllClippingPlanes()
        else:
            self.mapper.SetClippingPlanes(self._planes)
        self.mapper.Modified()

    def set_clip_planes(self, planes) -> None:
        """Clip with arbitrary planes (a vtkPlanes / vtkPlaneCollection, normals towards what is kept)."""
        self.clip_bounds = None
        if planes is None:
            self.mapper.RemoveAllClippingPlanes()
        else:
            self.mapper.SetClippingPlanes(planes)
        self.mapper.Modified()

    def bounds(self) -> tuple:
        return tuple(self.actor.GetBounds())

    def vtk_picks(self) -> bool:
        """Whether vtkVolumePicker finds this volume: it misses every voxel of an image whose
        direction is not the identity (an oblique NIfTI, a file with rows running anterior);
        ``opacity_pick`` stands in for it there."""
        m = self.vtk_volume.patient_image.GetDirectionMatrix()
        return all(abs(m.GetElement(r, c) - (r == c)) < 1e-9 for r in range(3) for c in range(3))

    def modified(self) -> None:
        """The voxels changed (a load filled slices): upload the texture again on the next render."""
        self.vtk_volume.patient_image.Modified()
        self.mapper.Modified()


def make_picker(tolerance: float = 1e-3) -> vtkVolumePicker:
    """A picker that stops on the first visible (opacity above 0.1) sample of a volume, or a surface."""
    picker = vtkVolumePicker()
    picker.SetTolerance(tolerance)
    picker.SetVolumeOpacityIsovalue(0.1)
    picker.PickCroppingPlanesOff()
    picker.UseVolumeGradientOpacityOff()
    return picker


def _ray_samples(volume, near, far, clip_bounds=None, step: float | None = None):
    """The points of a ray from ``near`` to ``far`` (LPS, every ``step`` mm: half the finest spacing)
    that lie inside the volume (and the clip box), and the stored values at their nearest voxels."""
    near, far = np.asarray(near, dtype=np.float64), np.asarray(far, dtype=np.float64)
    step = step or float(volume.spacing.min()) / 2
    length = float(np.linalg.norm(far - near))
    t = np.arange(0.0, length, step) / max(length, 1e-9)
    points = near + t[:, None] * (far - near)
    if clip_bounds is not None:
        b = np.asarray(clip_bounds).reshape(3, 2)
        points = points[np.all((points >= b[:, 0]) & (points <= b[:, 1]), axis=1)]
    idx = np.round(volume.lps_to_index(points)).astype(int)
    nk, nj, ni = volume.shape
    inside = np.all((idx >= 0) & (idx < [ni, nj, nk]), axis=1)
    points, idx = points[inside], idx[inside]
    return points, volume.array[idx[:, 2], idx[:, 1], idx[:, 0]]


def projection_pick(volume, near, far, mode: str, clip_bounds=None, step: float | None = None):
    """The LPS point a MIP ("mip") or MinIP ("minip") ray from ``near`` to ``far`` shows: the
    brightest (darkest) voxel along it inside the volume (and the clip box); None if it misses."""
    points, values = _ray_samples(volume, near, far, clip_bounds, step)
    if not len(points):
        return None
    best = int(np.argmax(values) if mode == "mip" else np.argmin(values))
    return points[best]


def opacity_pick(volume, near, far, opacity, clip_bounds=None, isovalue: float = 0.1,
                 step: float | None = None):
    """The LPS point a composite ray from ``near`` to ``far`` stops at, as ``make_picker``'s: the
    first voxel along it (inside the volume and the clip box) whose opacity (``opacity``: the
    vtkPiecewiseFunction over stored values) is above ``isovalue``; None if it misses."""
    nodes = [[0.0] * 4 for _ in range(opacity.GetSize())]
    for n, node in enumerate(nodes):
        opacity.GetNodeValue(n, node)
    if not nodes:
        return None
    xs, alphas = np.array([n[0] for n in nodes]), np.array([n[1] for n in nodes])
    points, values = _ray_samples(volume, near, far, clip_bounds, step)
    hit = np.nonzero(np.interp(values.astype(np.float64), xs, alphas) > isovalue)[0]
    return points[hit[0]] if len(hit) else None
