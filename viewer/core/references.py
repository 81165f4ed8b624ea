"""Non-image DICOM objects that refer to images (a SEG, an SR, an RT structure set) and finding
those images beside them, so that opening such a file opens it with its images.

``dicom_object(path)`` reads one header and says what the file is and which image series it
refers to; ``find_images(obj)`` scans the file's folder, then the folder above it, for that series.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from viewer.core.errors import HounsfieldError

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # every structured report storage class
PM_STORAGE = "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map (an AI heatmap: viewer.core.io.parametric_map)
TITLES = {"seg": "segmentation", "sr": "report", "rtstruct": "RT structure set", "pm": "AI map"}


@dataclass(frozen=True)
class DicomObject:
    kind: str  # "seg", "sr", "rtstruct" or "pm"
    path: str
    series_uid: str  # the image series it refers to ("" when it does not say)
    frame_of_reference_uid: str = ""

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def _sr_series(ds) -> str:
    """The measured series of an SR: of the series in its evidence, the one with the most images
    (a SEG it also refers to is a series of one)."""
    series = [s for study in getattr(ds, "CurrentRequestedProcedureEvidenceSequence", [])
              for s in getattr(study, "ReferencedSeriesSequence", [])]
    if not series:
        return ""
    return str(max(series, key=lambda s: len(getattr(s, "ReferencedSOPSequence", []))).SeriesInstanceUID)


def dicom_object(path) -> DicomObject | None:
    """What the DICOM file at ``path`` is, when it is a SEG, an SR or an RT structure set (None for
    images, other objects and anything unreadable)."""
    import pydicom

    path = os.fspath(path)
    if not os.path.isfile(path):
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return None
    sop = str(getattr(ds, "SOPClassUID", ""))
    for_uid = str(getattr(ds, "FrameOfReferenceUID", "") or "")
    try:
        if sop == SEG_STORAGE:
            refs = getattr(ds, "ReferencedSeriesSequence", [])
            return DicomObject("seg", path, str(refs[0].SeriesInstanceUID) if refs else "", for_uid)
        if sop == RTSTRUCT_STORAGE:
            from viewer.core.rtstruct import referenced_series

            frs = getattr(ds, "ReferencedFrameOfReferenceSequence", [])
            for_uid = str(getattr(frs[0], "FrameOfReferenceUID", "")) if frs else for_uid
            return DicomObject("rtstruct", path, referenced_series(ds), for_uid)
        if sop.startswith(SR_PREFIX):
            return DicomObject("sr", path, _sr_series(ds), for_uid)
        if sop == PM_STORAGE:
            refs = getattr(ds, "ReferencedSeriesSequence", [])
            return DicomObject("pm", path, str(refs[0].SeriesInstanceUID) if refs else "", for_uid)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None  # a damaged reference: treated as an ordinary file (its open says why it fails)
    return None


def search_folders(path: str) -> list[str]:
    """Where the images of the object at ``path`` are looked for: its folder, then the folder above
    (not the file system's root nor the home folder, which would scan a whole disk)."""
    folder = os.path.dirname(os.path.abspath(path))
    out = [folder]
    parent = os.path.dirname(folder)
    if parent and parent != folder and parent not in (os.path.abspath(os.sep), os.path.expanduser("~")):
        out.append(parent)
    return out


def find_images(obj: DicomObject, scan=None):
    """(scan result, SeriesInfo) of the image series ``obj`` refers to, from its folder or the folder
    above.  ``scan(folder)`` defaults to ``viewer.core.loader.scan``."""
    if scan is None:
        from viewer.core.loader import scan
    for folder in search_folders(obj.path):
        result = scan(folder)
        images = result.image_series
        found = [s for s in images if obj.series_uid and s.uid == obj.series_uid]
        if not found and not obj.series_uid and obj.frame_of_reference_uid:
            found = [s for s in images if s.first.frame_of_reference_uid == obj.frame_of_reference_uid]
        if found:
            return result, max(found, key=lambda s: len(s.frames))
    raise HounsfieldError(f"The images {obj.name} refers to are not in its folder or the folder above; "
                          f"open them first, then open {obj.name} again.")
