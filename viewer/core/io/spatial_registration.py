"""A rigid registration as a DICOM Spatial Registration object (SOP class 1.2.840.10008.5.1.4.1.1.66.1),
so other systems (PACS viewers, treatment planning) can read the alignment.

DICOM's convention (PS3.3 C.20.2): the object has its own frame of reference, the *registered* one; each
Registration Sequence item names a source frame of reference (``FrameOfReferenceUID``) and a
``FrameOfReferenceTransformationMatrix`` that maps points of that source frame into the registered one,
``x_registered = M @ [x_source, 1]`` (4x4, row major, patient coordinates in mm, LPS).  Here the
registered frame is the *fixed* series' frame: item 1 is the fixed frame with the identity, item 2 the
moving frame with ``M = to_fixed`` (moving LPS -> fixed LPS), the inverse of
``Registration.transform`` (fixed -> moving, ITK's convention).  Each item also references the
series' images, and the Common Instance Reference module names the two series, so reading the object
gives back the series instance UIDs of the pair.
"""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from viewer.core.errors import HounsfieldError
from viewer.core.registration import Registration, matrix_transform, rigid_matrix
from viewer.core.volume import Volume

SPATIAL_REGISTRATION = "1.2.840.10008.5.1.4.1.1.66.1"
RIGID = "RIGID"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _matrix_item(frame_uid: str, matrix: np.ndarray, images: tuple[str, str, tuple[str, ...]] | None,
                 method: Dataset) -> Dataset:
    item = Dataset()
    if frame_uid:
        item.FrameOfReferenceUID = frame_uid
    if images is not None and images[2]:
        refs = []
        for sop in images[2]:
            r = Dataset()
            r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = images[1], sop
            refs.append(r)
        item.ReferencedImageSequence = Sequence(refs)
    m = Dataset()
    m.FrameOfReferenceTransformationMatrixType = RIGID
    m.FrameOfReferenceTransformationMatrix = [f"{v:.10g}" for v in np.asarray(matrix, np.float64).ravel()]
    reg = Dataset()
    reg.MatrixSequence = Sequence([m])
    item.MatrixRegistrationSequence = Sequence([reg])
    item.RegistrationTypeCodeSequence = Sequence([method])
    return item


def build(reg: Registration, fixed: Volume, moving: Volume, *, series_number: int = 901,
          description: str = "Rigid registration") -> Dataset:
    """The Spatial Registration dataset of a rigid (or identity) ``reg`` between ``fixed`` and ``moving``."""
    if reg.kind not in ("rigid", "identity"):
        raise HounsfieldError("Only a rigid registration can be saved as a DICOM Spatial Registration object; "
                              "save a deformable one as a transform file.")
    fs, ms = fixed.source, moving.source
    if not fs.frame_of_reference_uid and not fs.sop_instance_uids:
        raise HounsfieldError("The fixed series has no frame of reference or image UIDs, so a DICOM registration "
                              "object cannot point at it; open the series from DICOM.")
    now = dt.datetime.now()
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SPATIAL_REGISTRATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SPATIAL_REGISTRATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "REG"
    # patient and study: the fixed series'
    ds.PatientName, ds.PatientID = fs.patient_name, fs.patient_id
    ds.PatientBirthDate, ds.PatientSex = fs.patient_birth_date, fs.patient_sex
    ds.StudyInstanceUID = fs.study_instance_uid or generate_uid()
    ds.StudyDate, ds.StudyTime = fs.study_date, ""
    ds.StudyDescription, ds.AccessionNumber = fs.study_description, fs.accession_number
    ds.ReferringPhysicianName, ds.StudyID = "", ""
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.FrameOfReferenceUID = fs.frame_of_reference_uid or generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "Hounsfield"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ContentLabel = "REGISTRATION"
    ds.ContentDescription = description[:64]
    ds.ContentCreatorName = ""
    to_fixed = np.linalg.inv(rigid_matrix(reg.transform))
    ds.RegistrationSequence = Sequence([
        _matrix_item(ds.FrameOfReferenceUID, np.eye(4),
                     (fs.series_instance_uid, fs.sop_class_uid, fs.sop_instance_uids),
                     _code("125021", "DCM", "Frame of Reference Identity")),
        _matrix_item(ms.frame_of_reference_uid, to_fixed,
                     (ms.series_instance_uid, ms.sop_class_uid, ms.sop_instance_uids),
                     _code("125024", "DCM", "Image Content-based Alignment")),
    ])
    # Common Instance Reference: which series (and study) the referenced images belong to
    studies: dict[str, list[Dataset]] = {}
    for src in (fs, ms):
        if not src.series_instance_uid:
            continue
        s = Dataset()
        s.SeriesInstanceUID = src.series_instance_uid
        refs = []
        for sop in src.sop_instance_uids:
            r = Dataset()
            r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = src.sop_class_uid, sop
            refs.append(r)
        s.ReferencedInstanceSequence = Sequence(refs)
        studies.setdefault(src.study_instance_uid or ds.StudyInstanceUID, []).append(s)
    ds.ReferencedSeriesSequence = Sequence(studies.pop(ds.StudyInstanceUID, []))
    others = []
    for study_uid, series in studies.items():
        st = Dataset()
        st.StudyInstanceUID = study_uid
        st.ReferencedSeriesSequence = Sequence(series)
        others.append(st)
    if others:
        ds.StudiesContainingOtherReferencedInstancesSequence = Sequence(others)
    return ds


def write_spatial_registration(path, reg: Registration, fixed: Volume, moving: Volume, **kw) -> str:
    """Write ``reg`` (rigid) as a DICOM Spatial Registration object at ``path``; returns the path."""
    path = os.fspath(path)
    ds = build(reg, fixed, moving, **kw)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def _series_of_sops(ds: Dataset) -> dict[str, str]:
    out: dict[str, str] = {}
    series = list(ds.get("ReferencedSeriesSequence", []))
    for st in ds.get("StudiesContainingOtherReferencedInstancesSequence", []):
        series.extend(st.get("ReferencedSeriesSequence", []))
    for s in series:
        for r in s.get("ReferencedInstanceSequence", []):
            out[str(r.ReferencedSOPInstanceUID)] = str(s.SeriesInstanceUID)
    return out


def _item_matrix(item: Dataset) -> np.ndarray:
    m = np.eye(4)
    for reg in item.get("MatrixRegistrationSequence", []):
        for mat in reg.get("MatrixSequence", []):
            kind = str(mat.get("FrameOfReferenceTransformationMatrixType", RIGID))
            if kind not in (RIGID, "RIGID_SCALE"):
                raise HounsfieldError(f"The registration object holds a {kind} matrix; only rigid ones can be "
                                      "read.")
            values = np.asarray([float(v) for v in mat.FrameOfReferenceTransformationMatrix], np.float64)
            if values.size != 16:
                raise HounsfieldError("The registration object's matrix does not have 16 values; the file is "
                                      "damaged.")
            m = values.reshape(4, 4) @ m  # successive matrices apply in order
    return m


def read_spatial_registration(path) -> Registration:
    """A rigid :class:`Registration` from a DICOM Spatial Registration object: fixed = the object's own
    (registered) frame of reference, moving = the other item's."""
    try:
        ds = pydicom.dcmread(os.fspath(path))
    except Exception as exc:  # noqa: BLE001 - any reading failure is one user-facing message
        raise HounsfieldError(f"{os.fspath(path)} could not be read as DICOM ({exc}); check the file.") from exc
    if str(ds.get("SOPClassUID", "")) != SPATIAL_REGISTRATION:
        raise HounsfieldError(f"{os.fspath(path)} is not a DICOM Spatial Registration object.")
    items = list(ds.get("RegistrationSequence", []))
    registered = str(ds.get("FrameOfReferenceUID", ""))
    if len(items) < 2:
        raise HounsfieldError("The registration object names fewer than two frames of reference; it registers "
                              "nothing.")
    sops = _series_of_sops(ds)

    def series_of(item: Dataset) -> str:
        for r in item.get("ReferencedImageSequence", []):
            uid = sops.get(str(r.ReferencedSOPInstanceUID))
            if uid:
                return uid
        return ""

    fixed_item = next((it for it in items if str(it.get("FrameOfReferenceUID", "")) == registered
                       and np.allclose(_item_matrix(it), np.eye(4), atol=1e-6)), items[0])
    moving_item = next(it for it in items if it is not fixed_item)
    # both items map into the registered frame: moving -> fixed = inv(M_fixed) @ M_moving
    to_fixed = np.linalg.inv(_item_matrix(fixed_item)) @ _item_matrix(moving_item)
    to_moving = np.linalg.inv(to_fixed)
    transform = matrix_transform(to_moving)
    return Registration(series_of(fixed_item), series_of(moving_item), "rigid", transform,
                        fixed_frame_uid=str(fixed_item.get("FrameOfReferenceUID", "")),
                        moving_frame_uid=str(moving_item.get("FrameOfReferenceUID", "")))


__all__ = ["SPATIAL_REGISTRATION", "build", "write_spatial_registration", "read_spatial_registration"]
