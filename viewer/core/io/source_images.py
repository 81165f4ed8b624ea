"""The series' own DICOM images in an export, so that the export stands on its own: the SEG and SR
beside them refer to these images, and a de-identified export carries the same new UIDs in all of
its files (one ``Deidentifier``), so the de-identified SEG opens on the de-identified images.

The files are found again by their SOP Instance UIDs in the folder the series was opened from
(``SourceInfo.path``) and rewritten whole (pixels as stored, transfer syntax kept).  De-identified,
each goes through the same PS3.15 E.1-1 profile as the SEG and SR; an image that says it has text
burnt into its pixels (BurnedInAnnotation YES) is refused, since no attribute profile removes that.
"""

from __future__ import annotations

import os

import pydicom

from viewer.core.errors import HounsfieldError
from viewer.core.volume import Volume

FOLDER = "images"  # the export's sub-folder for them


def opened_from_dicom(volume: Volume) -> bool:
    """Whether the series came from DICOM files that an export could include (the export dialog asks)."""
    return bool(volume.source.path and any(volume.source.sop_instance_uids))


def source_files(volume: Volume) -> list[str]:
    """The series' files, in slice order, found by SOP Instance UID where it was opened from."""
    src = volume.source
    wanted = list(dict.fromkeys(u for u in src.sop_instance_uids if u))  # multi-frame: one file, many slices
    if not opened_from_dicom(volume):
        raise HounsfieldError("The images cannot be exported: this series was not opened from DICOM files.")
    if not os.path.isdir(src.path):
        raise HounsfieldError(f"The images cannot be exported: the folder they were opened from, {src.path}, "
                              "is no longer there.")
    found: dict[str, str] = {}
    need = set(wanted)
    for name in sorted(os.listdir(src.path)):
        path = os.path.join(src.path, name)
        if not os.path.isfile(path):
            continue
        try:
            uid = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
                      .get("SOPInstanceUID", ""))
        except Exception:  # not DICOM, or damaged: not one of ours
            continue
        if uid in need:
            found[uid] = path
    missing = len(wanted) - len(found)
    if missing:
        raise HounsfieldError(f"The images cannot be exported: {missing} of the series' {len(wanted)} files are "
                              f"no longer in {src.path}.")
    return [found[u] for u in wanted]


def write_source_images(volume: Volume, folder: str, deidentifier=None, progress=None) -> list[str]:
    """Write the series' images into ``folder`` as IM-0001.dcm ... (de-identified with
    ``deidentifier`` when given); returns the paths.  Nothing is written when a file cannot be."""
    paths = source_files(volume)
    datasets = []
    for path in paths:
        ds = pydicom.dcmread(path)
        if deidentifier is not None:
            if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
                raise HounsfieldError("The images cannot be exported de-identified: they have text burnt into "
                                      "their pixels (BurnedInAnnotation YES); export without the images.")
            deidentifier.dataset(ds, pixels_cleaned=False)
        datasets.append(ds)
    os.makedirs(folder, exist_ok=True)
    out = []
    for n, ds in enumerate(datasets, start=1):
        if progress is not None:
            progress(n, len(datasets))
        path = os.path.join(folder, f"IM-{n:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out
