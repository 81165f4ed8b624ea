"""RT Structure Sets (RTSTRUCT) as segments: each ROI's planar contours rasterised onto the grid of
the images they were drawn on (no Qt, no VTK).

An RTSTRUCT holds, per ROI, closed polygons in patient coordinates (LPS mm), one or more per image
plane.  Each ROI becomes one segment (its name and display colour; its generation algorithm as
the provenance).  A polygon is filled on the slice it lies in, voxel centres inside it; the
contours of one ROI on one slice combine by the even-odd rule, so a contour inside another is a
hole and disjoint contours are separate islands.  ROIs overlap freely (a body outline holds
every organ), so overlapping segments go to separate layers as with an overlapping DICOM SEG.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from viewer.core.codes import AlgorithmType
from viewer.core.errors import HounsfieldError
from viewer.core.polygons import fill_polygons
from viewer.core.segmentation import Segmentation, add_masks
from viewer.core.volume import Volume
from viewer.logs import log

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
PLANE_TOLERANCE = 0.1  # voxels: how far off a slice centre a contour's plane may lie


@dataclass
class Roi:
    number: int
    name: str
    color: tuple[int, int, int] | None
    algorithm: AlgorithmType  # ROI Generation Algorithm: the same defined terms as a SEG segment's
    contours: list[np.ndarray] = field(default_factory=list)  # closed polygons (N, 3) in LPS mm


def is_rtstruct(path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:
        return False
    return str(getattr(ds, "SOPClassUID", "")) == RTSTRUCT_STORAGE


def referenced_series(ds) -> str:
    """The SeriesInstanceUID of the images the structure set was drawn on ("" when not given)."""
    for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        for study in getattr(fr, "RTReferencedStudySequence", []):
            for series in getattr(study, "RTReferencedSeriesSequence", []):
                if getattr(series, "SeriesInstanceUID", ""):
                    return str(series.SeriesInstanceUID)
    return ""


def read_rois(ds) -> list[Roi]:
    """The ROIs of an RTSTRUCT dataset with their closed planar contours (points and open curves,
    which enclose nothing, are left out)."""
    rois: dict[int, Roi] = {}
    for item in getattr(ds, "StructureSetROISequence", []):
        algo = str(getattr(item, "ROIGenerationAlgorithm", "") or "MANUAL").upper()
        number = int(item.ROINumber)
        rois[number] = Roi(number, str(getattr(item, "ROIName", "") or f"ROI {number}"), None,
                           AlgorithmType(algo) if algo in AlgorithmType.__members__ else AlgorithmType.MANUAL)
    for item in getattr(ds, "ROIContourSequence", []):
        number = int(item.ReferencedROINumber)
        roi = rois.setdefault(number, Roi(number, f"ROI {number}", None, AlgorithmType.MANUAL))
        color = getattr(item, "ROIDisplayColor", None)
        if color is not None and len(color) == 3:
            roi.color = tuple(int(max(0, min(255, int(c)))) for c in color)
        for contour in getattr(item, "ContourSequence", []):
            if str(getattr(contour, "ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue
            data = np.asarray([float(v) for v in contour.ContourData], dtype=np.float64)
            if data.size < 9 or data.size % 3 or not np.isfinite(data).all():
                continue
            roi.contours.append(data.reshape(-1, 3))
    return [rois[n] for n in sorted(rois)]


def roi_mask(roi: Roi, volume: Volume) -> tuple[np.ndarray, int]:
    """The ROI's mask on ``volume``'s grid and the number of contours that lie on none of its slices."""
    nk, nj, ni = volume.shape
    by_k: dict[int, list[np.ndarray]] = {}
    missed = 0
    for contour in roi.contours:
        ijk = volume.lps_to_index(contour)
        k = float(np.mean(ijk[:, 2]))
        kr = int(round(k))
        if np.abs(ijk[:, 2] - k).max() > PLANE_TOLERANCE or abs(k - kr) > PLANE_TOLERANCE or not 0 <= kr < nk:
            missed += 1  # not in a slice plane of these images (another series, oblique, or outside)
            continue
        by_k.setdefault(kr, []).append(ijk[:, :2])
    mask = np.zeros(volume.shape, bool)
    for k, polys in by_k.items():
        mask[k] = fill_polygons(polys, (nj, ni))
    return mask, missed


def read_rtstruct(path, volume: Volume) -> tuple[Segmentation, list[str]]:
    """The ROIs of the RTSTRUCT at ``path`` as the segments of a segmentation on ``volume``'s grid,
    and notes for the user (contours that lie on none of the slices)."""
    import pydicom

    name = os.path.basename(str(path))
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:
        raise HounsfieldError(f"{name} could not be read ({type(exc).__name__}); check the file.") from None
    if str(getattr(ds, "SOPClassUID", "")) != RTSTRUCT_STORAGE:
        raise HounsfieldError(f"{name} is not an RT Structure Set.")
    for_uids = {str(getattr(fr, "FrameOfReferenceUID", ""))
                for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", [])}
    for_uids.discard("")
    if for_uids and volume.source.frame_of_reference_uid and volume.source.frame_of_reference_uid not in for_uids:
        raise HounsfieldError(f"{name} belongs to other images (another frame of reference); "
                              "open the series it was drawn on.")
    rois = read_rois(ds)
    if not rois:
        raise HounsfieldError(f"{name} holds no ROIs.")
    label = str(getattr(ds, "StructureSetLabel", "") or getattr(ds, "SeriesDescription", "") or "RT structures")
    seg = Segmentation.for_volume(volume, label)
    pairs, missed = [], 0
    for roi in rois:
        mask, off = roi_mask(roi, volume)
        missed += off
        s = seg.add_segment(roi.name, roi.color, algorithm_type=roi.algorithm,
                            algorithm_name="RT structure set" if roi.algorithm != AlgorithmType.MANUAL else "")
        if mask.any():
            pairs.append((s, mask))
    add_masks(seg, pairs)
    log.info("RTSTRUCT: %d ROIs, %d with voxels, %d contours off the grid", len(rois), len(pairs), missed)
    notes = []
    if missed:
        total = sum(len(r.contours) for r in rois)
        notes.append(f"{missed} of the {total} contours of {name} lie on none of these images' slices "
                     f"and were left out ({len(pairs)} of {len(rois)} ROIs have voxels here).")
    return seg, notes
