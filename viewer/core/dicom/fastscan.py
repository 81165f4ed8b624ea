"""Header scanning with GDCM's Scanner: the fast path for classic single-frame images.

gdcm.Scanner (C++) reads just the listed tags of many files about seven times faster than
pydicom on this machine (141-file chest CT: 0.04 s against 0.25 s).  Files it cannot take
(non-DICOM, multi-frame, non-ASCII text, anything missing) are returned for pydicom to read,
so results are the same either way; the tests compare both paths on the same files.
"""

from __future__ import annotations

import os

import gdcm
import pydicom

from viewer.core.dicom.header import FrameHeader, InstanceHeader, check_declared_size, is_image_object
from viewer.core.dicom.safe_decode import prestart as prestart_decoders

_TAGS = {
    "ts": (0x0002, 0x0010), "sop_class": (0x0008, 0x0016), "sop_uid": (0x0008, 0x0018),
    "modality": (0x0008, 0x0060), "charset": (0x0008, 0x0005),
    "patient_name": (0x0010, 0x0010), "patient_id": (0x0010, 0x0020), "birth": (0x0010, 0x0030),
    "sex": (0x0010, 0x0040), "study_uid": (0x0020, 0x000D), "study_date": (0x0008, 0x0020),
    "study_desc": (0x0008, 0x1030), "accession": (0x0008, 0x0050), "series_uid": (0x0020, 0x000E),
    "series_number": (0x0020, 0x0011), "series_desc": (0x0008, 0x103E), "for_uid": (0x0020, 0x0052),
    "manufacturer": (0x0008, 0x0070), "rows": (0x0028, 0x0010), "columns": (0x0028, 0x0011),
    "frames": (0x0028, 0x0008), "samples": (0x0028, 0x0002), "photometric": (0x0028, 0x0004),
    "bits_allocated": (0x0028, 0x0100), "bits_stored": (0x0028, 0x0101), "pixel_rep": (0x0028, 0x0103),
    "position": (0x0020, 0x0032), "orientation": (0x0020, 0x0037), "spacing": (0x0028, 0x0030),
    "thickness": (0x0018, 0x0050), "slope": (0x0028, 0x1053), "intercept": (0x0028, 0x1052),
    "rescale_type": (0x0028, 0x1054), "wc": (0x0028, 0x1050), "ww": (0x0028, 0x1051),
    "acquisition": (0x0020, 0x0012), "instance": (0x0020, 0x0013), "echo": (0x0018, 0x0086),
    "temporal": (0x0020, 0x0100), "tilt": (0x0018, 0x1120),
}
# Objects with functional groups (SOP class names with these words) need pydicom.  The
# functional-group tags themselves are not asked of GDCM: a tag as high as (5200,9230) makes
# it read past the pixel data, doubling the scan time.
_FUNCTIONAL_GROUP_WORDS = ("Enhanced", "Legacy Converted", "Segmentation", "Parametric Map",
                           "Whole Slide", "Multi-frame")
_REQUIRED = ("ts", "sop_class", "sop_uid", "rows", "columns", "bits_allocated")


class _Skip(Exception):
    pass


def _text(v: str | None) -> str:
    if v is None:
        return ""
    if not v.isascii():
        raise _Skip  # let pydicom apply the Specific Character Set
    return v.strip(" \x00")


def _nums(v: str | None, n: int | None = None) -> tuple[float, ...] | None:
    if v is None or not v.strip():
        return None
    try:
        out = tuple(float(x) for x in v.strip(" \x00").split("\\"))
    except ValueError:
        return None
    return out if n is None or len(out) == n else None


def _first(v: str | None, default=None):
    out = _nums(v)
    return out[0] if out else default


def _int(v: str | None) -> int | None:
    x = _first(v)
    return None if x is None else int(x)


def _header(path: str, get) -> InstanceHeader:
    if any(get(k) is None for k in _REQUIRED) or (_int(get("frames")) or 1) > 1:
        raise _Skip
    sop_class = _text(get("sop_class"))
    if any(w in pydicom.uid.UID(sop_class).name for w in _FUNCTIONAL_GROUP_WORDS):
        raise _Skip
    charset = _text(get("charset"))
    if charset not in ("", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"):
        raise _Skip
    st = os.stat(path)
    modality = _text(get("modality"))
    rows = _int(get("rows")) or 0
    # Rows x Columns that the file cannot hold: left to pydicom, which measures the pixel data and reports it.
    check_declared_size(_text(get("ts")), rows, _int(get("columns")) or 0, _int(get("samples")) or 1,
                        _int(get("bits_allocated")) or 0, 1, st.st_size, None)
    wc, ww = _first(get("wc")), _first(get("ww"))
    frame = FrameHeader(
        index=None, position=_nums(get("position"), 3), orientation=_nums(get("orientation"), 6),
        pixel_spacing=_nums(get("spacing"), 2), slope=_first(get("slope"), 1.0),
        intercept=_first(get("intercept"), 0.0),
        stack="/".join(_text(get(k)) for k in ("echo", "temporal")),
    )
    return InstanceHeader(
        path=path, mtime_ns=st.st_mtime_ns, size=st.st_size, transfer_syntax=_text(get("ts")),
        sop_class_uid=sop_class, sop_instance_uid=_text(get("sop_uid")), modality=modality,
        patient_name=_text(get("patient_name")), patient_id=_text(get("patient_id")),
        patient_birth_date=_text(get("birth")), patient_sex=_text(get("sex")),
        study_uid=_text(get("study_uid")), study_date=_text(get("study_date")),
        study_description=_text(get("study_desc")), accession_number=_text(get("accession")),
        series_uid=_text(get("series_uid")), series_number=_int(get("series_number")),
        series_description=_text(get("series_desc")), frame_of_reference_uid=_text(get("for_uid")),
        manufacturer=_text(get("manufacturer")), rows=rows, columns=_int(get("columns")) or 0,
        samples_per_pixel=_int(get("samples")) or 1, photometric=_text(get("photometric")),
        bits_allocated=_int(get("bits_allocated")) or 0,
        bits_stored=_int(get("bits_stored")) or _int(get("bits_allocated")) or 0,
        pixel_representation=_int(get("pixel_rep")) or 0, rescale_type=_text(get("rescale_type")),
        window=(wc, ww) if wc is not None and ww is not None and ww > 0 else None,
        acquisition_number=_int(get("acquisition")),
        instance_number=_int(get("instance")), slice_thickness=_first(get("thickness")),
        gantry_tilt=_first(get("tilt"), 0.0), is_image=is_image_object(sop_class, modality, rows),
        frames=[frame],
    )


def scan_headers(files: list[str]) -> tuple[list[InstanceHeader], list[str]]:
    """Headers of the files GDCM can take, and the files left for pydicom."""
    if not files:
        return [], []
    scanner = gdcm.Scanner()
    tags = {k: gdcm.Tag(*t) for k, t in _TAGS.items()}
    for tag in tags.values():
        scanner.AddTag(tag)
    if not scanner.Scan(files):
        return [], list(files)
    headers, rest = [], []
    for path in files:
        if not scanner.IsKey(path):
            rest.append(path)
            continue
        try:
            headers.append(_header(path, lambda k, path=path: scanner.GetValue(path, tags[k])))
        except (_Skip, OSError, ValueError):
            rest.append(path)
    for ts in {h.transfer_syntax for h in headers if h.is_image}:
        prestart_decoders(ts)  # compressed: decoder processes start while the caller goes on
    return headers, rest
