"""Read what Hounsfield needs from a DICOM file's header, never its pixel data.

One ``InstanceHeader`` per file, made of plain values (JSON-serialisable, so the study index
can store it).  Enhanced multi-frame objects carry one ``FrameHeader`` per frame, taken from
the shared and per-frame functional groups; classic single-frame images carry one frame too,
so everything downstream sorts and stacks frames without caring where they came from.
"""

from __future__ import annotations

import os
import struct
from dataclasses import asdict, dataclass, field

import pydicom
from pydicom.errors import InvalidDicomError

from viewer.core.dicom.safe_decode import prestart as prestart_decoders

# Bump whenever what is read from a header changes: the study index drops headers of older versions.
HEADER_VERSION = 5

# Classes that are DICOM but not images to stack into a volume.  Matched on the SOP class name.
_NON_IMAGE_WORDS = ("Segmentation", "SR Storage", "Structure Set", "Presentation State", "Key Object",
                    "Encapsulated", "RT Plan", "RT Treatment", "Raw Data", "Spectroscopy",
                    "Waveform", "Registration", "Media Storage Directory", "Surface")
_NON_IMAGE_MODALITIES = {"SR", "SEG", "RTSTRUCT", "RTPLAN", "PR", "KO", "DOC", "REG", "RWV"}

_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "Modality", "PatientName", "PatientID", "PatientBirthDate",
    "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber",
    "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "FrameOfReferenceUID", "Manufacturer",
    "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
    "BitsAllocated", "BitsStored", "PixelRepresentation", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth",
    "AcquisitionNumber", "InstanceNumber", "EchoNumbers", "TemporalPositionIdentifier",
    "GantryDetectorTilt", "ImageType", "SharedFunctionalGroupsSequence", "GridFrameOffsetVector",
    "DoseGridScaling",
    "PerFrameFunctionalGroupsSequence", "ReferencedSeriesSequence", "DirectoryRecordSequence",
]


@dataclass
class FrameHeader:
    """Geometry and value mapping of one 2D frame."""

    index: int | None  # frame number in a multi-frame object (0-based), None for single-frame files
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None  # six direction cosines: row direction, column direction
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) in mm
    slope: float = 1.0
    intercept: float = 0.0
    stack: str = ""  # distinguishes frames that share a position (echo, phase, stack id)


@dataclass
class InstanceHeader:
    path: str
    mtime_ns: int
    size: int
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    modality: str
    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    study_uid: str
    study_date: str
    study_description: str
    accession_number: str
    series_uid: str
    series_number: int | None
    series_description: str
    frame_of_reference_uid: str
    manufacturer: str
    rows: int
    columns: int
    samples_per_pixel: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    rescale_type: str
    window: tuple[float, float] | None
    acquisition_number: int | None
    instance_number: int | None
    slice_thickness: float | None
    gantry_tilt: float
    is_image: bool
    frames: list[FrameHeader] = field(default_factory=list)

    @property
    def sop_class_name(self) -> str:
        return pydicom.uid.UID(self.sop_class_uid).name

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> InstanceHeader:
        data = dict(data)
        data["frames"] = [FrameHeader(**_tuples(f)) for f in data["frames"]]
        return cls(**_tuples(data))


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) and k != "frames" else v for k, v in d.items()}


class NotDicomError(Exception):
    """The file is not DICOM at all (quietly skipped when scanning folders)."""


def read_header(path: str) -> InstanceHeader:
    """Read one file's header.  Raises NotDicomError or another exception for a broken file."""
    st = os.stat(path)
    marked = True  # the file has the "DICM" marker after its preamble
    with open(path, "rb") as fh:
        try:
            ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=_TAGS)
        except InvalidDicomError:
            marked = False
            fh.seek(0)
            head = fh.read(132)
            if head[128:132] == b"DICM":
                raise  # DICOM by its marker, but broken (e.g. cut inside its meta information): report it
            # Files without the 128-byte preamble are still DICOM when they start with a group-8 tag.
            if head[:2] not in (b"\x08\x00", b"\x02\x00"):
                raise NotDicomError(path) from None
            fh.seek(0)
            ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=_TAGS, force=True)
        if "SOPClassUID" not in ds and "DirectoryRecordSequence" not in ds:
            if marked:
                raise ValueError("it has a DICOM marker but no SOP Class UID; the file may be truncated")
            raise NotDicomError(path)
        # pydicom stopped at the pixel data element (if there is one): measure it before any frame is listed
        extent = pixel_extent(fh, ds, _int(ds, "NumberOfFrames") or 1)
    header = header_from_dataset(ds, path, st.st_mtime_ns, st.st_size, extent)
    if header.is_image:
        prestart_decoders(header.transfer_syntax)  # compressed: decoder processes start while the scan goes on
    if not header.rows and "Image Storage" in header.sop_class_name:
        # Every image class requires Rows: a file that ends before it was cut short.
        raise ValueError("the header ends before the image attributes; the file may be truncated")
    return header


def _str(ds, name: str) -> str:
    value = ds.get(name)
    return "" if value is None else str(value).strip()


def _joined(ds, name: str) -> str:
    """A value as DICOM writes it ("" when absent or empty, backslash between values), as GDCM reads it."""
    value = ds.get(name)
    if value is None or value == "":
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _int(ds, name: str) -> int | None:
    value = ds.get(name)
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _float(ds, name: str, default: float | None = None) -> float | None:
    value = ds.get(name)
    try:
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0]
        return default if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return default


def _floats(ds, name: str, n: int) -> tuple[float, ...] | None:
    value = ds.get(name)
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _window(ds) -> tuple[float, float] | None:
    c, w = _float(ds, "WindowCenter"), _float(ds, "WindowWidth")
    return (c, w) if c is not None and w is not None and w > 0 else None


def _group(item, seq: str):
    """The first item of a functional-group sequence, or None."""
    if item is None or seq not in item or not item[seq].value:
        return None
    return item[seq][0]


def _frames_from_functional_groups(ds, n: int) -> list[FrameHeader]:
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    frames = []
    for f in range(n):
        item = per_frame[f] if f < len(per_frame) else None

        def pick(seq, item=item):
            return _group(item, seq) or _group(shared, seq)

        pos = pick("PlanePositionSequence")
        ori = pick("PlaneOrientationSequence")
        meas = pick("PixelMeasuresSequence")
        vt = pick("PixelValueTransformationSequence")
        content = _group(item, "FrameContentSequence")
        ftype = pick("MRImageFrameTypeSequence") or pick("CTImageFrameTypeSequence")
        echo = pick("MREchoSequence")
        # Frames that share a position differ by stack, time point, image type (M/P/field map) or echo.
        stack = "/".join([
            *(str(content.get(k, "")) if content is not None else "" for k in ("StackID", "TemporalPositionIndex")),
            "\\".join(ftype.get("FrameType", [])) if ftype is not None else "",
            str(echo.get("EffectiveEchoTime", "")) if echo is not None else "",
        ])
        frames.append(FrameHeader(
            index=f,
            position=_floats(pos, "ImagePositionPatient", 3) if pos else None,
            orientation=_floats(ori, "ImageOrientationPatient", 6) if ori else None,
            pixel_spacing=_floats(meas, "PixelSpacing", 2) if meas else None,
            slope=_float(vt, "RescaleSlope", 1.0) if vt else _float(ds, "RescaleSlope", 1.0),
            intercept=_float(vt, "RescaleIntercept", 0.0) if vt else _float(ds, "RescaleIntercept", 0.0),
            stack=stack,
        ))
    return frames


def _legacy_frames(ds, base: FrameHeader, n: int) -> list[FrameHeader]:
    """Frames of a multi-frame object without functional groups (RT Dose, NM, US cine).

    With a GridFrameOffsetVector (RT Dose) each frame lies at its offset along the slice normal;
    without one the frames share the geometry of the first.
    """
    offsets = _floats(ds, "GridFrameOffsetVector", n)
    frames = []
    for f in range(n):
        position = base.position
        if offsets is not None and base.position is not None and base.orientation is not None:
            o = base.orientation
            normal = (o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3])
            position = tuple(p + offsets[f] * c for p, c in zip(base.position, normal))
        frames.append(FrameHeader(**{**asdict(base), "index": f, "position": position}))
    return frames


@dataclass(frozen=True)
class PixelExtent:
    """The pixel data element of a file, measured without reading its value."""

    length: int | None  # bytes of native pixel data in the file (None: encapsulated)
    items: int | None  # items of encapsulated pixel data counted, offset table included (None: native)


_ITEM = (0xFFFE, 0xE000)
_PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
_NATIVE = {pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian}


def pixel_extent(fh, ds, frames: int) -> PixelExtent | None:
    """Measure the pixel data element at ``fh``'s position (where pydicom stopped before the pixels).

    Native data: its length (no more than the file holds).  Encapsulated data: its items, counted by
    their headers alone and only up to ``frames`` + 1, so a huge declared number costs nothing.
    None when ``fh`` is not at a pixel data element (no pixels, a deflated file).
    """
    try:
        implicit, little = ds.original_encoding
    except (AttributeError, TypeError, ValueError):
        return None
    if implicit is None or little is None:
        return None
    e = "<" if little else ">"
    start = fh.tell()
    end = fh.seek(0, os.SEEK_END)
    fh.seek(start)
    head = fh.read(12)
    if len(head) < 8 or struct.unpack(e + "HH", head[:4]) not in _PIXEL_TAGS:
        return None
    if implicit:
        length, value = struct.unpack(e + "L", head[4:8])[0], start + 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            return None
        length, value = struct.unpack(e + "L", head[8:12])[0], start + 12
    else:
        length, value = struct.unpack(e + "H", head[6:8])[0], start + 8
    if length != 0xFFFFFFFF:
        return PixelExtent(max(0, min(length, end - value)), None)
    items, pos = 0, value
    while items <= frames:
        fh.seek(pos)
        item = fh.read(8)
        if len(item) < 8:
            break
        group, elem, size = struct.unpack("<HHL", item)  # encapsulated items are always little endian
        if (group, elem) != _ITEM or pos + 8 + size > end:
            break  # the delimiter, or a damaged or cut item: the items so far are what the file holds
        items += 1
        pos += 8 + size
    return PixelExtent(None, items)


def check_declared_size(ts: str, rows: int, columns: int, samples: int, bits_allocated: int, frames: int,
                        size: int, extent: PixelExtent | None) -> None:
    """Raise ValueError when the header declares more pixels or frames than the file can hold.

    Native data must hold every declared frame (Rows x Columns x Samples x Bits/8 bytes each);
    encapsulated data needs an item per frame; without a measured element each frame takes at
    least a byte of the file.  Called before frames are listed or pixels allocated.
    """
    if extent is not None and extent.items is not None:  # encapsulated
        if frames > 1 and frames > max(extent.items - 1, 1):
            raise ValueError(f"it declares {frames} frames but its pixel data holds "
                             f"{max(extent.items - 1, 0)} fragment(s)")
        return
    if ts in _NATIVE:
        room = extent.length if extent is not None and extent.length is not None else size
        need = (rows * columns * samples * frames * bits_allocated + 7) // 8
        if (room or extent is not None) and need > room:
            raise ValueError(f"it declares {frames} frame(s) of {columns} x {rows} pixels ({_mib(need)}) "
                             f"but holds {_mib(room)} of pixel data")
    if size and frames > size:  # whatever else is wrong (no Rows, say), no frame takes less than a byte
        raise ValueError(f"it declares {frames} frames in a file of {size} bytes")


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MB" if nbytes >= 2**20 else f"{nbytes} bytes"


def is_image_object(sop_class_uid: str, modality: str, rows: int) -> bool:
    if rows <= 0 or modality in _NON_IMAGE_MODALITIES:
        return False
    name = pydicom.uid.UID(sop_class_uid).name
    return not any(word in name for word in _NON_IMAGE_WORDS)


def header_from_dataset(ds, path: str, mtime_ns: int = 0, size: int = 0,
                        extent: PixelExtent | None = None) -> InstanceHeader:
    """The header of a dataset read without its pixels; ``size`` (the file's bytes) and ``extent`` (its
    pixel data element, see ``pixel_extent``) bound the frames it may declare (0 and None: unchecked)."""
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not ts:
        ts = pydicom.uid.ImplicitVRLittleEndian
    sop_class = _str(ds, "SOPClassUID")
    if not sop_class and meta is not None:
        sop_class = str(meta.get("MediaStorageSOPClassUID", ""))
    modality = _str(ds, "Modality")
    rows = _int(ds, "Rows") or 0
    functional_groups = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    n = _int(ds, "NumberOfFrames") or (len(ds.get("PerFrameFunctionalGroupsSequence") or []) if functional_groups
                                       else 0) or 1
    # Before one frame is listed: a corrupt NumberOfFrames (2147483647) must not become a loop per frame.
    check_declared_size(ts, rows, _int(ds, "Columns") or 0, _int(ds, "SamplesPerPixel") or 1,
                        _int(ds, "BitsAllocated") or 0, n, size, extent)
    if functional_groups:
        frames = _frames_from_functional_groups(ds, n)
    else:
        base = FrameHeader(
            index=None,
            position=_floats(ds, "ImagePositionPatient", 3),
            orientation=_floats(ds, "ImageOrientationPatient", 6),
            pixel_spacing=_floats(ds, "PixelSpacing", 2),
            slope=_float(ds, "RescaleSlope", None) or _float(ds, "DoseGridScaling", 1.0),  # RT Dose: Gy
            intercept=_float(ds, "RescaleIntercept", 0.0),
            stack="/".join(_joined(ds, k) for k in ("EchoNumbers", "TemporalPositionIdentifier")),
        )
        frames = [base] if n == 1 else _legacy_frames(ds, base, n)
    return InstanceHeader(
        path=os.path.abspath(path), mtime_ns=mtime_ns, size=size, transfer_syntax=ts,
        sop_class_uid=sop_class, sop_instance_uid=_str(ds, "SOPInstanceUID"), modality=modality,
        patient_name=_str(ds, "PatientName"), patient_id=_str(ds, "PatientID"),
        patient_birth_date=_str(ds, "PatientBirthDate"), patient_sex=_str(ds, "PatientSex"),
        study_uid=_str(ds, "StudyInstanceUID"), study_date=_str(ds, "StudyDate"),
        study_description=_str(ds, "StudyDescription"), accession_number=_str(ds, "AccessionNumber"),
        series_uid=_str(ds, "SeriesInstanceUID"), series_number=_int(ds, "SeriesNumber"),
        series_description=_str(ds, "SeriesDescription"),
        frame_of_reference_uid=_str(ds, "FrameOfReferenceUID"), manufacturer=_str(ds, "Manufacturer"),
        rows=rows, columns=_int(ds, "Columns") or 0, samples_per_pixel=_int(ds, "SamplesPerPixel") or 1,
        photometric=_str(ds, "PhotometricInterpretation"), bits_allocated=_int(ds, "BitsAllocated") or 0,
        bits_stored=_int(ds, "BitsStored") or _int(ds, "BitsAllocated") or 0,
        pixel_representation=_int(ds, "PixelRepresentation") or 0, rescale_type=_str(ds, "RescaleType"),
        window=_window(ds), acquisition_number=_int(ds, "AcquisitionNumber"),
        instance_number=_int(ds, "InstanceNumber"), slice_thickness=_float(ds, "SliceThickness"),
        gantry_tilt=_float(ds, "GantryDetectorTilt", 0.0) or 0.0,
        is_image=is_image_object(sop_class, modality, rows), frames=frames,
    )
