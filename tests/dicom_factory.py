"""Write synthetic DICOM series (and broken files) with pydicom, for tests of the imaging core.

A ``Grid`` says where a volume lies in the patient (LPS mm): the unit directions of +i (along a
row) and +j (down a column), the voxel spacing (si, sj, sk), and an optional gantry tilt that
shears slice positions along the column direction.  ``write_series`` writes one CT or MR file
per slice of a ``[k, j, i]`` array of *stored* values with the geometry and rescale a scanner
would write, and returns what was written (paths and positions per k, UIDs, the true affine).

Options cover what real folders hold: oblique orientation, reversed or shuffled file names and
InstanceNumbers, a missing slice, gantry tilt, per-slice RescaleSlope/Intercept, compressed
transfer syntaxes, files without preamble; helpers add non-image objects (SR, SEG), truncated
files, non-DICOM files and undecodable pixel data.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"


# --------------------------------------------------------------------------------------------
# geometry


def rotation(ax: float = 0.0, ay: float = 0.0, az: float = 0.0) -> np.ndarray:
    """Rotation matrix (degrees about x, then y, then z) whose columns are the new axes."""
    a, b, c = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class Grid:
    """Placement of a [k, j, i] volume in LPS millimetres."""

    origin: Sequence[float] = (-100.0, -120.0, 40.0)
    row_dir: Sequence[float] = (1.0, 0.0, 0.0)  # +i: along a row (DICOM's first IOP triplet)
    col_dir: Sequence[float] = (0.0, 1.0, 0.0)  # +j: down a column (second triplet)
    spacing: Sequence[float] = (0.8, 0.9, 2.5)  # (si, sj, sk): column spacing, row spacing, slice step
    tilt_degrees: float = 0.0  # gantry tilt: positions sheared along the column direction

    def __post_init__(self) -> None:
        self.origin = np.asarray(self.origin, dtype=np.float64)
        self.row_dir = np.asarray(self.row_dir, dtype=np.float64)
        self.col_dir = np.asarray(self.col_dir, dtype=np.float64)
        self.spacing = tuple(float(s) for s in self.spacing)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @property
    def step(self) -> np.ndarray:
        """LPS displacement from slice k to slice k + 1."""
        sk = self.spacing[2]
        return sk * self.normal + sk * math.tan(math.radians(self.tilt_degrees)) * self.col_dir

    @property
    def affine(self) -> np.ndarray:
        a = np.eye(4)
        a[:3, 0] = self.row_dir * self.spacing[0]
        a[:3, 1] = self.col_dir * self.spacing[1]
        a[:3, 2] = self.step
        a[:3, 3] = self.origin
        return a

    def position(self, k: int) -> np.ndarray:
        return self.origin + k * self.step


def axial(**kw) -> Grid:
    return Grid(**kw)


def oblique(ax: float = 20.0, ay: float = -15.0, az: float = 10.0, **kw) -> Grid:
    """An oblique stack: the axial axes rotated about x, y and z."""
    r = rotation(ax, ay, az)
    return Grid(row_dir=r[:, 0], col_dir=r[:, 1], **kw)


def sagittal(**kw) -> Grid:
    """A sagittal stack: +i posterior, +j inferior, slice normal towards the patient's right (PIR)."""
    return Grid(row_dir=(0.0, 1.0, 0.0), col_dir=(0.0, 0.0, -1.0), **kw)


# --------------------------------------------------------------------------------------------
# volumes


def phantom(shape=(20, 48, 64), *, modality: str = "CT", seed: int = 0) -> np.ndarray:
    """Stored values [k, j, i] with structure that differs along every axis (uint16, 12 bits)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape)
    base = 24 * k + 7 * j + 3 * i  # a ramp: any flip or transposition changes values
    ball = ((k - shape[0] * 0.4) ** 2 / 9 + (j - shape[1] * 0.6) ** 2 / 25 + (i - shape[2] * 0.3) ** 2 / 49) < 4
    vol = base + 900 * ball + rng.integers(0, 20, size=shape)
    if modality == "CT":
        vol = vol % 4000  # 0..3999 stored -> -1024..2975 HU with the usual intercept
    return vol.astype(np.uint16)


# --------------------------------------------------------------------------------------------
# writing


@dataclass
class WrittenSeries:
    folder: str
    paths: list[str | None]  # per k; None where a slice was left out
    positions: np.ndarray  # (depth, 3) LPS positions written (or that would have been) per k
    affine: np.ndarray
    series_uid: str
    study_uid: str
    frame_uid: str
    modality: str
    slopes: list[float] = field(default_factory=list)
    intercepts: list[float] = field(default_factory=list)
    sop_uids: list[str | None] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return [p for p in self.paths if p is not None]

    def real(self, stored: np.ndarray) -> np.ndarray:
        """Real values (float64) of ``stored`` under each slice's rescale."""
        s = np.asarray(self.slopes)[:, None, None]
        b = np.asarray(self.intercepts)[:, None, None]
        return stored.astype(np.float64) * s + b


def _per_slice(value, n: int) -> list[float]:
    if np.ndim(value) == 0:
        return [float(value)] * n
    value = [float(v) for v in value]
    if len(value) != n:
        raise ValueError("per-slice values need one entry per slice")
    return value


def _order(kind: str, n: int, rng: np.random.Generator) -> list[int]:
    if kind == "ordered":
        return list(range(n))
    if kind == "reversed":
        return list(range(n))[::-1]
    if kind == "shuffled":
        return rng.permutation(n).tolist()
    raise ValueError(kind)


def _ds(decimal: float) -> str:
    return f"{decimal:.10g}"


def base_dataset(*, sop_class: str, modality: str, study_uid: str, series_uid: str,
                 series_number: int = 1, patient_name: str = "Test^Hounsfield",
                 patient_id: str = "HF-0001", transfer_syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = "20240131"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC123"
    ds.Modality = modality
    ds.Manufacturer = "Hounsfield test factory"
    ds.StudyDescription = "Synthetic study"
    ds.SeriesDescription = f"Synthetic {modality}"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    return ds


def save(ds: Dataset, path: str, *, preamble: bool = True, meta: bool = True) -> str:
    """Write ``ds``: a normal DICOM file, or (``preamble=False``) one without the 128-byte
    preamble and "DICM" marker that starts with its group-2 meta information, or (also
    ``meta=False``) a bare implicit-VR dataset starting with its first group-8 element."""
    if preamble:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        return path
    ts = ds.file_meta.TransferSyntaxUID
    ds.preamble = None
    if not meta:
        if ts != ImplicitVRLittleEndian:
            raise ValueError("a file without meta information must be implicit VR little endian")
        del ds.file_meta
    pydicom.dcmwrite(path, ds, implicit_vr=ts == ImplicitVRLittleEndian, little_endian=True)
    with open(path, "rb") as fh:
        head = fh.read(132)
    assert head[:2] == (b"\x02\x00" if meta else b"\x08\x00") and head[128:132] != b"DICM"
    return path


def write_series(folder, stored: np.ndarray, grid: Grid | None = None, *, modality: str = "CT",
                 slope=1.0, intercept=None, names: str = "ordered", instance_numbers: str = "ordered",
                 omit: Sequence[int] = (), series_uid: str | None = None, study_uid: str | None = None,
                 frame_uid: str | None = None, acquisition_number: int | None = 1, series_number: int = 1,
                 prefix: str = "IM", suffix: str = ".dcm", transfer_syntax: str = ExplicitVRLittleEndian,
                 preamble: bool = True, meta: bool = True, bits_stored: int | None = None, seed: int = 0,
                 patient_name: str = "Test^Hounsfield", patient_id: str = "HF-0001") -> WrittenSeries:
    """Write ``stored`` ([k, j, i]; uint16 or int16) as one file per slice into ``folder``.

    ``slope``/``intercept`` are scalars or one value per slice (CT's intercept defaults to
    -1024).  ``names`` and ``instance_numbers`` are "ordered", "reversed" or "shuffled"
    (independently).  Slices in ``omit`` are not written.  ``transfer_syntax`` may be a
    compressed one pydicom can encode (RLE Lossless).
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    grid = grid or Grid()
    stored = np.asarray(stored)
    if stored.ndim != 3 or stored.dtype not in (np.uint16, np.int16):
        raise ValueError("stored must be a 3D uint16 or int16 array")
    n, rows, cols = stored.shape
    rng = np.random.default_rng(seed)
    if intercept is None:
        intercept = -1024.0 if modality == "CT" else 0.0
    slopes, intercepts = _per_slice(slope, n), _per_slice(intercept, n)
    name_of = _order(names, n, rng)  # file name index of slice k
    number_of = _order(instance_numbers, n, rng)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    signed = stored.dtype == np.int16
    bits = bits_stored or 16
    positions = np.array([grid.position(k) for k in range(n)])
    paths: list[str | None] = []
    sop_uids: list[str | None] = []
    for k in range(n):
        if k in omit:
            paths.append(None)
            sop_uids.append(None)
            continue
        ds = base_dataset(sop_class=SOP_CLASS[modality], modality=modality, study_uid=study_uid,
                          series_uid=series_uid, series_number=series_number, patient_name=patient_name,
                          patient_id=patient_id)
        ds.FrameOfReferenceUID = frame_uid
        if acquisition_number is not None:
            ds.AcquisitionNumber = acquisition_number
        ds.InstanceNumber = number_of[k] + 1
        ds.ImagePositionPatient = [_ds(x) for x in positions[k]]
        ds.ImageOrientationPatient = [_ds(x) for x in (*grid.row_dir, *grid.col_dir)]
        ds.PixelSpacing = [_ds(grid.spacing[1]), _ds(grid.spacing[0])]  # (between rows, between columns)
        ds.SliceThickness = _ds(grid.spacing[2])
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        if modality == "CT":
            ds.KVP = "120"
            ds.GantryDetectorTilt = _ds(grid.tilt_degrees)
        if modality == "CT" or slopes[k] != 1.0 or intercepts[k] != 0.0:
            ds.RescaleSlope = _ds(slopes[k])
            ds.RescaleIntercept = _ds(intercepts[k])
            ds.RescaleType = "HU" if modality == "CT" else "US"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated = 16
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = np.ascontiguousarray(stored[k]).astype("<i2" if signed else "<u2").tobytes()
        if transfer_syntax == ImplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        elif transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax)
        path = os.path.join(folder, f"{prefix}{name_of[k]:04d}{suffix}")
        save(ds, path, preamble=preamble, meta=meta)
        paths.append(path)
        sop_uids.append(str(ds.SOPInstanceUID))
    return WrittenSeries(folder, paths, positions, grid.affine, series_uid, study_uid, frame_uid, modality,
                         slopes, intercepts, sop_uids)


# --------------------------------------------------------------------------------------------
# other objects and broken files


def write_non_image(folder, kind: str = "SR", *, study_uid: str | None = None, series_uid: str | None = None,
                    name: str | None = None, rows: int = 16, columns: int = 16) -> str:
    """An SR document or a SEG-like object (with its own pixel data) in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    if kind == "SR":
        ds = base_dataset(sop_class=COMPREHENSIVE_SR, modality="SR", study_uid=study_uid,
                          series_uid=series_uid, series_number=99)
        ds.InstanceNumber = 1
        ds.ValueType = "CONTAINER"
        ds.ContinuityOfContent = "SEPARATE"
        ds.CompletionFlag = "COMPLETE"
        ds.VerificationFlag = "UNVERIFIED"
        concept = Dataset()
        concept.CodeValue = "126000"
        concept.CodingSchemeDesignator = "DCM"
        concept.CodeMeaning = "Imaging Measurement Report"
        ds.ConceptNameCodeSequence = [concept]
        ds.ContentSequence = []
    elif kind == "SEG":
        ds = base_dataset(sop_class=SEGMENTATION, modality="SEG", study_uid=study_uid,
                          series_uid=series_uid, series_number=98)
        ds.InstanceNumber = 1
        ds.FrameOfReferenceUID = generate_uid()
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, columns
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.ImagePositionPatient = ["0", "0", "0"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = ["1", "1"]
        ds.PixelData = np.ones((rows, columns), np.uint8).tobytes()
    else:
        raise ValueError(kind)
    path = os.path.join(folder, name or f"{kind.lower()}-object.dcm")
    return save(ds, path)


def truncate(path: str, keep: int | float = 0.6, out: str | None = None) -> str:
    """Cut a file to its first ``keep`` bytes (int) or fraction (float); in place unless ``out``."""
    with open(path, "rb") as fh:
        data = fh.read()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    out = out or path
    with open(out, "wb") as fh:
        fh.write(data[:n])
    return out


def write_not_dicom(folder, name: str = "notes.dat", size: int = 4000) -> str:
    """A file that is not DICOM (random bytes, no DICOM magic) with an innocent name."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    data = np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes()
    with open(path, "wb") as fh:
        fh.write(b"NOT DICOM " + data[10:])
    return path


def make_undecodable(path: str) -> str:
    """Replace a file's pixel data with a JPEG Baseline stream that no decoder can decode."""
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xdb" + b"\x13\x37" * 50 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def sitk_series(folder, series_uid: str = ""):
    """SimpleITK's own reading of a DICOM series (the reference the loader is checked against)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(os.fspath(folder), series_uid)
    if not files:
        raise AssertionError(f"SimpleITK found no series {series_uid!r} in {folder}")
    reader.SetFileNames(files)
    return reader.Execute()


__all__ = [
    "Grid", "WrittenSeries", "axial", "oblique", "sagittal", "phantom", "rotation", "write_series",
    "write_non_image", "truncate", "write_not_dicom", "make_undecodable", "sitk_series", "save",
    "base_dataset", "RLELossless",
]
