"""Pieces of the 3D scene around the volume: standard camera views, the volume's outline and the
orientation cube.  World coordinates are LPS mm: +x patient left, +y posterior, +z superior.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

# name: (direction from the focal point to the camera, view up), in LPS
STANDARD_VIEWS = {
    "anterior": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "posterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "left": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "right": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "superior": ((0.0, 0.0, 1.0), (0.0, -1.0, 0.0)),
    "inferior": ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0)),
}


def set_standard_view(camera, name: str, corners, aspect: float = 1.0, view_angle: float = 30.0,
                      margin: float = 1.08) -> None:
    """Point ``camera`` at the box ``corners`` (8 x 3, LPS) from the ``name`` side, close enough
    that the box just fills a viewport of width / height ``aspect`` (perspective included)."""
    direction, up = (np.asarray(a, dtype=np.float64) for a in STANDARD_VIEWS[name])
    corners = np.asarray(corners, dtype=np.float64)
    centre = (corners.min(axis=0) + corners.max(axis=0)) / 2
    right = np.cross(-direction, up)
    rel = corners - centre
    half_w, half_h = np.abs(rel @ right).max(), np.abs(rel @ up).max()
    near = (rel @ direction).max()  # the box's face nearest the camera
    tan = np.tan(np.radians(view_angle) / 2)
    distance = near + margin * max(half_h, half_w / max(aspect, 1e-3)) / tan
    camera.SetViewAngle(view_angle)
    camera.SetFocalPoint(*centre)
    camera.SetPosition(*(centre + direction * distance))
    camera.SetViewUp(*up)


def content_corners(volume, threshold: float | None = None) -> np.ndarray:
    """The 8 LPS corners of the box around the volume's content (voxels above ``threshold`` real
    units; CT: -500 HU, the body and not the air), from a strided sample; the whole box if empty."""
    arr = volume.array
    step = max(1, int(round((arr.size / 2e6) ** (1 / 3))))
    sample = volume.real_values(np.s_[::step, ::step, ::step])
    if threshold is None:
        threshold = -500.0 if volume.units == "HU" else float(np.percentile(sample, 60))
    hit = np.argwhere(sample > threshold)
    nk, nj, ni = arr.shape
    if len(hit) < 10:
        lo, hi = np.zeros(3), np.array([ni - 1, nj - 1, nk - 1], float)
    else:
        lo = np.maximum(hit.min(axis=0)[::-1] * step - step, 0)
        hi = np.minimum(hit.max(axis=0)[::-1] * step + step, [ni - 1, nj - 1, nk - 1])
    idx = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], float)
    return volume.index_to_lps(idx)


def outline_actor(corners: np.ndarray) -> vtkActor:
    """The 12 edges of the volume's box (corners ordered i, j, k bits as in ``volume_corners``)."""
    points, lines = vtkPoints(), vtkCellArray()
    for c in corners:
        points.InsertNextPoint(*c)
    for a in range(8):
        for bit in (1, 2, 4):
            b = a | bit
            if b != a:
                lines.InsertNextCell(2)
                lines.InsertCellPoint(a)
                lines.InsertCellPoint(b)
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetLines(lines)
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(poly)
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(0.55, 0.6, 0.68)
    actor.GetProperty().LightingOff()
    actor.PickableOff()
    return actor


def orientation_cube() -> vtkAnnotatedCubeActor:
    """A cube labelled with patient directions (L/R, P/A, S/I on the LPS axes)."""
    cube = vtkAnnotatedCubeActor()
    for face, text in (("XPlus", "L"), ("XMinus", "R"), ("YPlus", "P"), ("YMinus", "A"),
                       ("ZPlus", "S"), ("ZMinus", "I")):
        getattr(cube, f"Set{face}FaceText")(text)
    cube.SetFaceTextScale(0.6)
    cube.GetCubeProperty().SetColor(0.25, 0.28, 0.33)
    cube.GetTextEdgesProperty().SetColor(0.6, 0.6, 0.6)
    for face in ("XPlus", "XMinus", "YPlus", "YMinus", "ZPlus", "ZMinus"):
        getattr(cube, f"Get{face}FaceProperty")().SetColor(1.0, 0.82, 0.5)
    return cube
