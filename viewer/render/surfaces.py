"""Segment surfaces and detection markers for the 3D view.

``label_surfaces`` turns a uint8/uint16 label-map Volume (same conventions as any Volume: array
[k, j, i], affine to LPS) into one smoothed surface actor per label.  Each label is meshed on the
bounding box of its voxels only (vtkSurfaceNets3D, which smooths as it goes) in voxel-index
space; the actor's user matrix is the label map's affine, so the surface sits exactly where the
voxels are for any affine, oblique or sheared.  Normals point outward; where the affine mirrors
(negative determinant, as in many NRRD and NIfTI files) the polygons are reversed so that the
outside still faces the light.

``detection_markers`` draws detections given as centre and size in LPS mm as spheres.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkFiltersCore import vtkAppendPolyData, vtkPolyDataNormals, vtkReverseSense, vtkSurfaceNets3D
from vtkmodules.vtkFiltersSources import vtkSphereSource
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

from viewer.core.volume import Volume
from viewer.render.slice import set_matrix

DEFAULT_COLOURS = ((0.90, 0.30, 0.25), (0.30, 0.75, 0.35), (0.25, 0.50, 0.95), (0.95, 0.80, 0.25),
                   (0.75, 0.35, 0.85), (0.25, 0.80, 0.85), (0.95, 0.55, 0.20), (0.85, 0.85, 0.85))


def label_colour(label: int) -> tuple[float, float, float]:
    return DEFAULT_COLOURS[(label - 1) % len(DEFAULT_COLOURS)]


def label_mesh(labels: np.ndarray, label: int, iterations: int = 20):
    """vtkPolyData of one label's boundary in voxel-index coordinates (i, j, k); None when absent.

    Only the label's bounding box (one voxel of margin, zero-padded so the surface closes) is
    meshed: a temporary of that size, never a copy of the whole map.
    """
    region = _bbox(labels, label)
    if region is None:
        return None
    inside = labels[region] == label
    crop = np.zeros(tuple(n + 2 for n in inside.shape), dtype=np.uint8)
    crop[1:-1, 1:-1, 1:-1] = inside
    image = vtkImageData()
    nk, nj, ni = crop.shape
    image.SetDimensions(ni, nj, nk)
    image.SetOrigin(region[2].start - 1, region[1].start - 1, region[0].start - 1)
    scalars = numpy_to_vtk(crop.reshape(-1), deep=False)
    image.GetPointData().SetScalars(scalars)
    nets = vtkSurfaceNets3D()
    nets.SetInputData(image)
    nets.SetLabel(0, 1)
    nets.SetBackgroundLabel(0)
    nets.SetSmoothing(iterations > 0)
    nets.SetNumberOfIterations(max(iterations, 1))
    nets.Update()
    mesh = nets.GetOutput()
    mesh.GetCellData().Initialize()  # the boundary labels are not needed: colour is per actor
    if mesh.GetNumberOfCells() == 0:
        return None
    return mesh


def _bbox(labels: np.ndarray, label: int):
    """Bounding box from per-slice projections (no full-size boolean temporary kept around)."""
    ks = [k for k in range(labels.shape[0]) if (labels[k] == label).any()]
    if not ks:
        return None
    k0, k1 = ks[0], ks[-1] + 1
    rows = np.zeros(labels.shape[1], bool)
    cols = np.zeros(labels.shape[2], bool)
    for k in range(k0, k1):
        m = labels[k] == label
        rows |= m.any(axis=1)
        cols |= m.any(axis=0)
    js, is_ = np.flatnonzero(rows), np.flatnonzero(cols)
    return (slice(k0, k1), slice(js[0], js[-1] + 1), slice(is_[0], is_[-1] + 1))


def label_surfaces(labels: Volume, colours: Mapping[int, tuple] | None = None, iterations: int = 20,
                   opacity: float = 1.0) -> dict[int, vtkActor]:
    """One smoothed surface actor per label present in ``labels`` (or per key of ``colours``)."""
    arr = labels.array
    if colours:
        wanted = sorted(int(x) for x in colours)
    else:
        wanted = [int(x) for x in np.flatnonzero(np.bincount(arr.reshape(-1))) if x != 0]
    out: dict[int, vtkActor] = {}
    for label in wanted:
        actor = segment_surface(arr, labels.affine, int(label), (colours or {}).get(label), iterations, opacity)
        if actor is not None:
            out[int(label)] = actor
    return out


def segment_surface(labels: np.ndarray, affine: np.ndarray, label: int, colour=None, iterations: int = 20,
                    opacity: float = 1.0) -> vtkActor | None:
    """The smoothed surface of one label of a label-map array on a grid with ``affine`` (index to
    LPS); ``colour`` as RGB in [0, 1] (default: the label's colour); None when the label is absent."""
    mesh = label_mesh(labels, int(label), iterations)
    if mesh is None:
        return None
    normals = vtkPolyDataNormals()
    normals.SetInputData(mesh)
    normals.SplittingOff()
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()  # outward (the mesh is closed: its box is zero-padded)
    normals.Update()
    out = normals.GetOutput()
    if np.linalg.det(np.asarray(affine, np.float64)[:3, :3]) < 0:
        # The user matrix mirrors the mesh: VTK carries the outward normals through it correctly, but
        # the polygons' winding turns round, so OpenGL takes the outside for back faces and lights
        # them with the normal negated (black).  Reverse the polygons, keep the normals.
        reverse = vtkReverseSense()
        reverse.SetInputData(out)
        reverse.ReverseCellsOn()
        reverse.ReverseNormalsOff()
        reverse.Update()
        out = reverse.GetOutput()
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(out)
    mapper.ScalarVisibilityOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.SetUserMatrix(set_matrix(vtkMatrix4x4(), affine))
    prop = actor.GetProperty()
    prop.SetColor(*(colour or label_colour(int(label))))
    prop.SetOpacity(opacity)
    prop.SetSpecular(0.2)
    prop.SetSpecularPower(15)
    return actor


def _detection_parts(d) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(d, Mapping):
        centre, size = d["centre"], d["size"]
    elif hasattr(d, "centre"):
        centre, size = d.centre, d.size
    else:
        centre, size = d
    size = np.broadcast_to(np.asarray(size, dtype=np.float64), (3,))
    return np.asarray(centre, dtype=np.float64), size


def detection_markers(detections: Iterable, colour=(1.0, 0.85, 0.1), opacity: float = 0.6) -> vtkActor | None:
    """Spheres at detections (centre in LPS mm; size: diameter in mm, one number or three)."""
    append = vtkAppendPolyData()
    count = 0
    for d in detections:
        centre, size = _detection_parts(d)
        sphere = vtkSphereSource()
        sphere.SetCenter(*centre)
        sphere.SetRadius(max(float(size.mean()) / 2, 0.5))
        sphere.SetThetaResolution(24)
        sphere.SetPhiResolution(16)
        append.AddInputConnection(sphere.GetOutputPort())
        count += 1
    if count == 0:
        return None
    append.Update()
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(append.GetOutput())
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*colour)
    actor.GetProperty().SetOpacity(opacity)
    return actor
