"""A Volume's voxels as VTK images that share its numpy buffer (no copy).

Two vtkImageData wrap the same vtkDataArray, itself a view of ``volume.array``:

- ``index_image``: spacing 1, origin 0, no direction: VTK's structured coordinates are voxel
  indices (i, j, k).  Reslicing uses it with the full 4x4 affine in its reslice axes, which is
  exact for any affine, gantry-tilt shear included.
- ``patient_image``: origin, spacing and direction from the affine, so that VTK coordinates are
  LPS mm (for 3D rendering).  A sheared affine has no such form; its direction is then the
  orthonormalised in-plane frame and the image is only approximately placed.  Its direction is
  always right-handed (slice axis = row x column): VTK's GPU ray caster draws a volume whose
  direction matrix is a reflection (determinant -1, e.g. NRRD / NIfTI files stored with the rows
  running anterior, such as brain-tumor-mr's) with the wrong box faces, so each ray only grazes
  the first and last slices and the 3D view shows two faint rings instead of the head.  The 3D
  mappers put the rest of the affine (shear, reflection) into the actor's user matrix
  (``viewer.render.volume.residual_matrix``), which places every voxel exactly.

While a series loads, decoded slices land in the shared buffer; ``modified()`` tells VTK.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData

from viewer.core.volume import Volume


def is_sheared(affine: np.ndarray, tol: float = 1e-4) -> bool:
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    d = a / np.linalg.norm(a, axis=0)
    return not np.allclose(d.T @ d, np.eye(3), atol=tol)


class VtkVolume:
    """The VTK side of one Volume; keeps the numpy array alive as long as VTK uses it."""

    def __init__(self, volume: Volume):
        arr = volume.array
        if not arr.flags.c_contiguous:
            raise ValueError("a Volume's array must be C-contiguous to be shared with VTK")
        self.volume = volume
        self._flat = arr.reshape(-1)  # a view: VTK reads the volume's own memory
        self.scalars = numpy_to_vtk(self._flat, deep=False)
        self.scalars.SetName("voxels")
        nk, nj, ni = arr.shape
        self.index_image = vtkImageData()
        self.index_image.SetDimensions(ni, nj, nk)
        self.index_image.GetPointData().SetScalars(self.scalars)
        self.patient_image = vtkImageData()
        self.patient_image.SetDimensions(ni, nj, nk)
        self.patient_image.GetPointData().SetScalars(self.scalars)
        spacing = volume.spacing
        direction = volume.direction
        if is_sheared(volume.affine) or np.linalg.det(direction) < 0:
            i = direction[:, 0]
            j = direction[:, 1] - (direction[:, 1] @ i) * i
            j /= np.linalg.norm(j)
            direction = np.column_stack([i, j, np.cross(i, j)])
        self.patient_image.SetSpacing(*spacing)
        self.patient_image.SetOrigin(*volume.origin)
        self.patient_image.SetDirectionMatrix(*direction.ravel())

    def shares_memory(self) -> bool:
        """True while VTK's array is the volume's buffer (the zero-copy contract)."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        return np.shares_memory(vtk_to_numpy(self.scalars), self.volume.array)

    def modified(self) -> None:
        """New voxels were written into the shared buffer: make VTK pipelines re-execute."""
        self.scalars.Modified()
        self.index_image.Modified()
        self.patient_image.Modified()
