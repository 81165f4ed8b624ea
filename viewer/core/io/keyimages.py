"""Key images: a captured view (RGB, with its overlays) as PNG and as DICOM Secondary Capture.

The PNG is written with zlib alone (no imaging library in core); the Secondary Capture is a
highdicom ``SCImage`` in the study of the series shown, in a new series of its own.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from pydicom.uid import generate_uid

from viewer.core.volume import SourceInfo


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG of an (H, W, 3) uint8 image, first row at the top."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def write_png(path, rgb: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(png_bytes(rgb))


def read_png(path) -> np.ndarray:
    """Read back a PNG written by ``write_png`` (8-bit RGB, filter 0): for tests and round trips."""
    data = open(path, "rb").read()
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    if np.any(raw[:, 0]):
        raise ValueError("only unfiltered PNG rows are supported")
    return raw[:, 1:].reshape(h, w, 3)


def secondary_capture(rgb: np.ndarray, src: SourceInfo, *, orientation=("L", "P"), series_uid: str | None = None,
                      series_number: int = 901, instance_number: int = 1, description: str = "Key image",
                      source_uid: str | None = None, deidentifier=None, burned_in_annotation: bool = True):
    """A DICOM Secondary Capture of an RGB view capture in the study of ``src``.

    ``orientation``: patient directions of the image's rows and columns (screen right, screen down);
    ``source_uid``: the SOP instance UID of the source image shown (default: none referenced);
    ``burned_in_annotation``: whether text that could identify the patient is in the pixels (a view
    captured with its corner text is; one rendered without its identity blocks and typed words is not).
    """
    import highdicom as hd

    sc = hd.sc.SCImage(
        pixel_array=np.ascontiguousarray(rgb, dtype=np.uint8), photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", study_instance_uid=src.study_instance_uid or generate_uid(),
        series_instance_uid=series_uid or generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=instance_number, manufacturer="Hounsfield",
        patient_id=src.patient_id, patient_name=src.patient_name, patient_birth_date=src.patient_birth_date or None,
        patient_sex=src.patient_sex or None, accession_number=src.accession_number or None,
        study_date=src.study_date or None, patient_orientation=tuple(orientation))
    sc.SeriesDescription = description
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES" if burned_in_annotation else "NO"
    if source_uid:
        from pydicom.dataset import Dataset

        ref = Dataset()
        ref.ReferencedSOPClassUID = src.sop_class_uid or "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = source_uid
        sc.SourceImageSequence = [ref]
    if deidentifier is not None:
        deidentifier.dataset(sc)
    return sc


def write_key_image(png_path, dcm_path, rgb: np.ndarray, src: SourceInfo, **kwargs):
    """Write a capture as PNG (``png_path``) and Secondary Capture (``dcm_path``); either may be None."""
    if png_path:
        write_png(png_path, rgb)
    sc = None
    if dcm_path:
        sc = secondary_capture(rgb, src, **kwargs)
        sc.save_as(str(dcm_path), enforce_file_format=True)
    return sc
