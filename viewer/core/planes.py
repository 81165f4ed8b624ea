"""Plane geometry of the 2D views, with no Qt and no VTK: plane axes, slice sampling, orientation letters.

Geometry is LPS millimetres throughout.  A 2D view shows the plane through its series' ``point``
whose normal comes from the series' crosshair axes (``rotation``).  In-plane axes follow the
radiological convention: ``u`` is screen right and ``v`` screen up, with the viewer looking along
``-n`` where ``n = u x v``:

- axial: u = patient left (+x), v = anterior (-y); seen from the feet,
- coronal: u = patient left (+x), v = superior (+z); seen from the front,
- sagittal: u = posterior (+y), v = superior (+z); anterior on the left.

Rotating the crosshair axes turns the *other* planes: each plane keeps its screen axes as close
to the ones above as its normal allows, so the view in which one rotates stays still.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viewer.core.volume import Volume

PLANES = ("axial", "coronal", "sagittal")

_BASE = {  # (u, v) of each plane with no rotation: screen right and screen up, in LPS
    "axial": ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
}
# "Next image" goes to the feet (axial), backwards (coronal) and to the patient's left (sagittal).
FORWARD = {"axial": 1.0, "coronal": -1.0, "sagittal": 1.0}
_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))  # +x, -x; +y, -y; +z, -z


def plane_axes(plane: str, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, n) unit vectors in LPS of ``plane`` under the crosshair axes ``rotation``."""
    bu, bv = (np.asarray(a) for a in _BASE[plane])
    n = rotation @ np.cross(bu, bv)
    pu = bu - (bu @ n) * n
    if np.linalg.norm(pu) > 0.3:
        u = pu / np.linalg.norm(pu)
        return u, np.cross(n, u), n
    pv = bv - (bv @ n) * n
    v = pv / np.linalg.norm(pv) if np.linalg.norm(pv) > 1e-6 else rotation @ bv
    return np.cross(v, n), v, n


def direction_letters(vec, threshold: float = 0.25) -> str:
    """Orientation letters of an LPS direction, strongest first: (1, 0, 0) -> 'L', (0, -.7, .7) -> 'AS'."""
    vec = np.asarray(vec, dtype=np.float64)
    order = np.argsort(-np.abs(vec))
    out = [_LETTERS[d][0 if vec[d] > 0 else 1] for d in order if abs(vec[d]) >= threshold]
    return "".join(out[:2]) if out else "?"


def rotation_about(axis, angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about the unit vector ``axis`` (right-hand rule)."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    c, s, t = np.cos(angle), np.sin(angle), 1 - np.cos(angle)
    return np.array([[t * x * x + c, t * x * y - s * z, t * x * z + s * y],
                     [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
                     [t * x * z - s * y, t * y * z + s * x, t * z * z + c]])


def acquisition_rotation(affine: np.ndarray) -> np.ndarray:
    """Crosshair axes that show an oblique acquisition's own slices (identity for a standard stack).

    The volume's (orthonormalised) axes are matched to the nearest patient axes; the rotation
    between the two turns the standard planes onto the acquired ones.
    """
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    i = a[:, 0] / np.linalg.norm(a[:, 0])
    j = a[:, 1] - (a[:, 1] @ i) * i
    j /= np.linalg.norm(j)
    d = np.column_stack([i, j, np.cross(i, j)])  # columns: volume axes, orthonormal, right-handed
    p = np.zeros((3, 3))  # the signed permutation nearest to d
    for col in range(3):
        row = int(np.argmax(np.abs(d[:, col])))
        p[row, col] = np.sign(d[row, col])
    if np.linalg.matrix_rank(p) < 3 or np.linalg.det(p) < 0:
        return np.eye(3)
    return d @ p.T


@dataclass(frozen=True)
class SliceGeometry:
    """Where a 2D view's plane lies: plane (x, y) mm map to LPS ``origin + x u + y v``."""

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    n: np.ndarray
    extent: tuple[float, float, float, float]  # xmin, xmax, ymin, ymax in plane mm (voxel centres)
    spacing: float  # sampling step in plane mm

    @property
    def size(self) -> tuple[int, int]:
        x0, x1, y0, y1 = self.extent
        return int(round((x1 - x0) / self.spacing)) + 1, int(round((y1 - y0) / self.spacing)) + 1

    def to_lps(self, x: float, y: float) -> np.ndarray:
        return self.origin + x * self.u + y * self.v

    def from_lps(self, p) -> tuple[float, float]:
        d = np.asarray(p, dtype=np.float64) - self.origin
        return float(d @ self.u), float(d @ self.v)

    def matrix(self) -> np.ndarray:
        """4x4 mapping plane (x, y, z, 1) to LPS."""
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = self.u, self.v, self.n, self.origin
        return m


def volume_centre(volume: Volume) -> np.ndarray:
    nk, nj, ni = volume.shape
    return volume.index_to_lps([(ni - 1) / 2, (nj - 1) / 2, (nk - 1) / 2])


def volume_corners(volume: Volume) -> np.ndarray:
    nk, nj, ni = volume.shape
    idx = np.array([[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)], float)
    return volume.index_to_lps(idx)


def slice_geometry(volume: Volume, u, v, n, point, max_size: int = 2048) -> SliceGeometry:
    """The plane through ``point`` with axes (u, v, n) covering the whole volume.

    Plane coordinates are measured from the volume centre's projection, so that moving the point
    does not move the picture; sampling uses the finest voxel spacing, on voxel centres when the
    plane is aligned with the grid.
    """
    c = volume_centre(volume)
    origin = c + ((np.asarray(point, float) - c) @ n) * n
    rel = volume_corners(volume) - c
    xs, ys = rel @ u, rel @ v
    spacing = float(volume.spacing.min())
    span = max(xs.max() - xs.min(), ys.max() - ys.min())
    spacing = max(spacing, span / (max_size - 1))
    return SliceGeometry(origin, u, v, n, (xs.min(), xs.max(), ys.min(), ys.max()), spacing)


def slice_step(volume: Volume, n) -> float:
    """Distance (mm) along ``n`` that moves one voxel along the most aligned index axis."""
    inv = np.linalg.inv(volume.affine[:3, :3])
    return float(1.0 / np.abs(inv @ np.asarray(n, float)).max())


def aligned_axis(volume: Volume, n, tol: float = 1e-3) -> int | None:
    """The index axis (0=i, 1=j, 2=k) that ``n`` steps along alone, or None for an oblique plane."""
    m = np.linalg.inv(volume.affine[:3, :3]) @ np.asarray(n, float)
    m = np.abs(m) / np.abs(m).max()
    axis = int(np.argmax(m))
    return axis if np.sort(m)[1] < tol else None
