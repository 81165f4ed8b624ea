"""Volume: a voxel array plus the geometry that places it in the patient.

Conventions (DESIGN.md): ``array`` is indexed ``[k, j, i]`` (slice, row, column; C order) and
``affine`` maps ``(i, j, k, 1)`` to LPS millimetres.  Arrays are never flipped to look right.
CT is int16 Hounsfield units; MR keeps its stored integer type with ``rescale`` describing how
stored values map to real ones.  Identifying metadata lives in ``source`` (a ``SourceInfo``),
apart from the pixels, so that code handling voxels never touches patient identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.core.errors import HounsfieldError


@dataclass(frozen=True)
class SourceInfo:
    """Where a volume came from and whom it belongs to (kept apart from pixel data)."""

    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_instance_uid: str = ""
    study_date: str = ""
    study_description: str = ""
    accession_number: str = ""
    series_instance_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    frame_of_reference_uid: str = ""
    sop_class_uid: str = ""
    sop_instance_uids: tuple[str, ...] = ()
    # per k slice: the DICOM InstanceNumber (the frame number in a multi-frame object; None in a gap),
    # the "image number" a radiologist dictates; empty for volumes without one (NIfTI, the demo)
    instance_numbers: tuple[int | None, ...] = ()
    # k slices no file fills (gaps in the stack, slices left out for their damaged position): blank
    blank_slices: tuple[int, ...] = ()
    manufacturer: str = ""
    path: str = ""


def affine_from(spacing, origin, direction) -> np.ndarray:
    """Build the (i, j, k) -> LPS affine from spacing (si, sj, sk), origin and a 3x3 direction.

    ``direction``'s columns are the unit LPS vectors of the i, j and k axes (ITK's convention).
    """
    direction = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing, dtype=np.float64)[None, :]
    affine[:3, 3] = np.asarray(origin, dtype=np.float64)
    return affine


@dataclass
class Volume:
    """A 3D image on a regular grid in patient space."""

    array: np.ndarray
    affine: np.ndarray
    modality: str = "OT"
    units: str = ""
    rescale: tuple[float, float] = (1.0, 0.0)  # (slope, intercept): real = stored * slope + intercept
    source: SourceInfo = field(default_factory=SourceInfo)
    warnings: list[str] = field(default_factory=list)
    window: tuple[float, float] | None = None  # (center, width) suggested by the source

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a Volume needs a 3D array, got {self.array.ndim} dimensions")
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError("a Volume's affine must be 4x4")
        # Distances, the index <-> LPS mapping and every export rely on it: a NaN, infinite or
        # singular affine (zero spacing, collinear axes) would make them silently wrong.
        if not np.all(np.isfinite(self.affine)) or abs(float(np.linalg.det(self.affine[:3, :3]))) < 1e-12:
            raise HounsfieldError("The image's geometry is invalid (a spacing, position or direction that is zero, "
                                  "infinite or not a number); check the file or ask for it to be sent again.")

    # geometry derived from the affine: one source of truth
    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape  # (k, j, i)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (si, sj, sk) in mm along the i, j and k axes."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def origin(self) -> np.ndarray:
        """LPS position (mm) of voxel (0, 0, 0)'s centre."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit LPS directions of i, j, k."""
        return self.affine[:3, :3] / self.spacing[None, :]

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    def index_to_lps(self, ijk) -> np.ndarray:
        """LPS mm of continuous voxel index (i, j, k); accepts (..., 3) arrays."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def lps_to_index(self, lps) -> np.ndarray:
        """Continuous voxel index (i, j, k) of an LPS point; accepts (..., 3) arrays."""
        lps = np.asarray(lps, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        return lps @ inv[:3, :3].T + inv[:3, 3]

    def real_values(self, region=np.s_[...]) -> np.ndarray:
        """Real-world values (HU for CT) of a region, as float32 unless the rescale is identity."""
        data = self.array[region]
        slope, intercept = self.rescale
        if slope == 1.0 and intercept == 0.0:
            return data
        return data.astype(np.float32) * np.float32(slope) + np.float32(intercept)

    def orientation_code(self) -> str:
        """Three letters naming where +i, +j, +k point, e.g. 'LPS' for a standard axial CT."""
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        code = ""
        for axis in self.direction.T:
            dim = int(np.argmax(np.abs(axis)))
            code += letters[dim][0 if axis[dim] > 0 else 1]
        return code

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        return (f"Volume({self.modality}, shape={self.shape}, dtype={self.array.dtype}, "
                f"spacing=({sp}) mm, orientation={self.orientation_code()})")
