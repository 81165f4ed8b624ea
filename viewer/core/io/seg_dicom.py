"""DICOM Segmentation objects (highdicom): writing a ``Segmentation`` that references its source
series, and loading a SEG file onto the volume of the images it references.

Writing: one binary frame per source slice and segment (overlapping segments are fine), each
segment with its label, colour, coded category and type, and its provenance: the segment
algorithm type (MANUAL, SEMIAUTOMATIC, AUTOMATIC) and, for the latter two, the algorithm
identification (name, version, the segment's ``algorithm_parameters`` as Algorithm Parameters, e.g.
a promptable model's method and the reader's clicks; family "Artificial Intelligence"), and a
Tracking UID that stays the same across exports of the same segment (``tracking_uid``).  The source datasets are read
from ``volume.source.path`` (headers only) and matched by SOP Instance UID.

Reading: each frame is placed by its Image Position (Patient) on the target volume's grid, which
must share the frame of reference and in-plane orientation.  Fractional segmentations are
thresholded at one half; segments that overlap go to separate layers.  The segmentation read keeps
the file's SOP Instance UID and its segments' Tracking UIDs (``Segmentation.dicom_uids``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from viewer.core.codes import AlgorithmType, Code
from viewer.core.errors import HounsfieldError
from viewer.core.segmentation import Segmentation, add_masks
from viewer.core.volume import Volume
from viewer.logs import log


def source_datasets(source: Volume) -> list:
    """The headers of the DICOM files ``source`` was loaded from (empty when it was not DICOM)."""
    import pydicom

    folder = source.source.path
    uids = set(source.source.sop_instance_uids)
    if not folder or not uids or not os.path.isdir(folder):
        return []
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if getattr(ds, "SOPInstanceUID", None) in uids:
            if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
                del ds.SpecificCharacterSet  # empty in some files; highdicom rejects it
            found.append(ds)
    return found


def slices_by_k(source: Volume, datasets: list) -> dict[int, object]:
    by_k = {}
    for ds in datasets:
        k = int(round(float(source.lps_to_index([float(v) for v in ds.ImagePositionPatient])[2])))
        if 0 <= k < source.shape[0]:
            by_k.setdefault(k, ds)
    return by_k


def write_dicom_seg(seg: Segmentation, source: Volume, path, *, series_description: str = "Segmentation",
                    model_name: str = "Hounsfield", software_version: str = "", sop_instance_uid: str | None = None,
                    series_instance_uid: str | None = None, deidentifier=None) -> Path:
    """Write ``seg`` as a binary DICOM SEG referencing ``source``'s series; returns the path.

    Segments are numbered 1..n in their list order (DICOM wants consecutive numbers).  The UIDs
    are new unless given; a ``deidentifier`` (viewer.core.io.deid) de-identifies the object
    before it is written."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    datasets = source_datasets(source)
    if not datasets:
        raise HounsfieldError("DICOM SEG needs the DICOM images the segmentation was drawn on; "
                              "export NIfTI or NRRD instead.")
    if any(int(getattr(ds, "NumberOfFrames", 1) or 1) > 1 for ds in datasets):
        raise HounsfieldError("DICOM SEG export on multi-frame images is not supported yet; export NIfTI instead.")
    if not seg.matches(source):
        raise HounsfieldError("The segmentation is not on this series' grid; open the series it was drawn on.")
    by_k = slices_by_k(source, datasets)
    ks = sorted(by_k)
    segments = list(seg.segments)
    if not ks or not segments:
        raise HounsfieldError("There is nothing to export: add a segment first.")
    pixels = np.zeros((len(ks), seg.shape[1], seg.shape[2], len(segments)), bool)
    for n, s in enumerate(segments):
        pixels[..., n] = seg.layers[s.layer][ks] == s.number
    descriptions = []
    for n, s in enumerate(segments):
        algo = None
        if s.algorithm_type != AlgorithmType.MANUAL:
            algo = hd.AlgorithmIdentificationSequence(
                name=(s.algorithm_name or "Hounsfield")[:64], family=codes.cid7162.ArtificialIntelligence,
                version=(s.algorithm_version or "1.0")[:64],
                parameters={k: str(v).replace(",", ";") for k, v in s.algorithm_parameters.items()} or None)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=n + 1, segment_label=s.name[:64],
            segmented_property_category=Code.of(s.category).to_highdicom(),
            segmented_property_type=Code.of(s.type).to_highdicom(), algorithm_type=str(s.algorithm_type),
            algorithm_identification=algo, display_color=hd.color.CIELabColor.from_rgb(*s.color),
            tracking_uid=tracking_uid(seg, s), tracking_id=s.name[:64] or f"Segment {n + 1}"))
    try:
        with warnings.catch_warnings(record=True) as caught:  # e.g. odd patient names in the source
            warnings.simplefilter("always")
            obj = hd.seg.Segmentation(
                source_images=[by_k[k] for k in ks], pixel_array=pixels,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
                series_instance_uid=series_instance_uid or hd.UID(), series_number=9001,
                sop_instance_uid=sop_instance_uid or hd.UID(), instance_number=1,
                manufacturer="Hounsfield", manufacturer_model_name=model_name[:64],
                software_versions=software_version or "hounsfield", device_serial_number="0",
                series_description=series_description[:64], content_label="SEGMENTATION",
                content_description=seg.name[:64] or None)
            if deidentifier is not None:
                deidentifier.dataset(obj)
            path = Path(path)
            obj.save_as(path)
        for w in caught:
            log.info("DICOM SEG: %s", w.message)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        log.warning("DICOM SEG not written", exc_info=True)
        raise HounsfieldError(f"The DICOM SEG could not be written ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:100]}).") from None
    log.info("wrote DICOM SEG (%d frames, %d segments)", len(ks), len(segments))
    return path


def tracking_uid(seg: Segmentation, segment) -> str:
    """A segment's Tracking UID: the same for every export of one segment of one segmentation (the
    finding it is), so a SEG written again, or its copy elsewhere, is still known as that finding."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["hounsfield-segment", seg.uid, str(segment.number)])


def is_dicom_seg(path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:
        return False
    return str(getattr(ds, "SOPClassUID", "")) == "1.2.840.10008.5.1.4.1.1.66.4"


def referenced_series(path) -> str:
    """The SeriesInstanceUID of the images a SEG file was drawn on."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)


def read_dicom_seg(path, volume: Volume) -> Segmentation:
    """Load a DICOM SEG onto ``volume`` (the images it references)."""
    import pydicom

    ds = pydicom.dcmread(path)
    if str(ds.SOPClassUID) != "1.2.840.10008.5.1.4.1.1.66.4":
        raise HounsfieldError(f"{os.path.basename(path)} is not a DICOM Segmentation.")
    for_uid = str(getattr(ds, "FrameOfReferenceUID", ""))
    if for_uid and volume.source.frame_of_reference_uid and for_uid != volume.source.frame_of_reference_uid:
        raise HounsfieldError(f"{os.path.basename(path)} belongs to other images (another frame of reference); "
                              "open the series it references first.")
    frames = ds.pixel_array
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    frames = frames.reshape(n_frames, int(ds.Rows), int(ds.Columns))
    fractional = ds.SegmentationType == "FRACTIONAL"
    threshold = float(getattr(ds, "MaximumFractionalValue", 1)) / 2 if fractional else 0
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    seg = Segmentation.for_volume(volume, str(getattr(ds, "SeriesDescription", "")) or "DICOM SEG")
    nk, nj, ni = volume.shape
    masks: dict[int, np.ndarray] = {}
    for f, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        number = int(_item(group, shared, "SegmentIdentificationSequence", path).ReferencedSegmentNumber)
        plane = _item(group, shared, "PlanePositionSequence", path)
        ijk = volume.lps_to_index([float(v) for v in plane.ImagePositionPatient])
        rk = np.round(ijk).astype(int)
        if np.abs(ijk - rk).max() > 0.1:
            raise HounsfieldError(f"{os.path.basename(path)} is not on this series' voxel grid.")
        i0, j0, k = (int(v) for v in rk)
        if not 0 <= k < nk:
            continue
        data = frames[f] > threshold
        j1, i1 = min(nj, j0 + data.shape[0]), min(ni, i0 + data.shape[1])
        if j1 <= max(j0, 0) or i1 <= max(i0, 0):
            continue
        m = masks.setdefault(number, np.zeros(volume.shape, bool))
        m[k, max(j0, 0):j1, max(i0, 0):i1] |= data[max(0, -j0):j1 - j0, max(0, -i0):i1 - i0]
    _check_orientation(ds, shared, volume, path)
    pairs = []
    for item in ds.SegmentSequence:
        number = int(item.SegmentNumber)
        color = None
        if "RecommendedDisplayCIELabValue" in item:
            import highdicom as hd

            color = hd.color.CIELabColor.from_dicom_value(tuple(item.RecommendedDisplayCIELabValue)).to_rgb()
        algo = item.SegmentationAlgorithmIdentificationSequence[0] \
            if "SegmentationAlgorithmIdentificationSequence" in item else None
        s = seg.add_segment(str(item.SegmentLabel), color, category=Code.of(item.SegmentedPropertyCategoryCodeSequence),
                            type=Code.of(item.SegmentedPropertyTypeCodeSequence),
                            algorithm_type=str(item.SegmentAlgorithmType), number=number,
                            algorithm_name=str(getattr(item, "SegmentAlgorithmName", "")
                                               or (algo.AlgorithmName if algo else "")),
                            algorithm_version=str(algo.AlgorithmVersion) if algo else "",
                            algorithm_parameters=_parameters(algo))
        if number in masks:
            pairs.append((s, masks[number]))
    add_masks(seg, pairs)
    # what identifies the file and its findings: an AI original kept when it was exported is found by
    # these (viewer.core.review.find_kept)
    seg.dicom_uids = {"sop_instance_uid": str(getattr(ds, "SOPInstanceUID", "")),
                      "tracking_uids": {int(it.SegmentNumber): str(it.TrackingUID)
                                        for it in ds.SegmentSequence if "TrackingUID" in it}}
    log.info("loaded DICOM SEG with %d segments in %d layers", len(seg.segments), len(seg.layers))
    return seg


def _parameters(algo) -> dict:
    """Algorithm Parameters ("name=value,name=value", as highdicom writes them) as a dict."""
    text = str(getattr(algo, "AlgorithmParameters", "") or "") if algo is not None else ""
    pairs = (p.partition("=") for p in text.split(",") if "=" in p)
    return {k.strip(): v.strip() for k, _, v in pairs if k.strip()}


def _item(group, shared, keyword: str, path):
    """The first item of a functional group macro, per frame or else shared by all frames (highdicom
    shares the segment identification when there is one segment, the plane position when one frame)."""
    for where in (group, shared):
        if where is not None and keyword in where and len(where[keyword].value):
            return where[keyword].value[0]
    raise HounsfieldError(f"{os.path.basename(path)} is not a valid DICOM SEG (a frame has no {keyword}).")




def _check_orientation(ds, shared, volume: Volume, path) -> None:
    group = shared if shared is not None and "PlaneOrientationSequence" in shared \
        else ds.PerFrameFunctionalGroupsSequence[0]
    if "PlaneOrientationSequence" not in group:
        return
    iop = np.asarray([float(v) for v in group.PlaneOrientationSequence[0].ImageOrientationPatient])
    d = volume.direction
    if not (np.allclose(iop[:3], d[:, 0], atol=1e-3) and np.allclose(iop[3:], d[:, 1], atol=1e-3)):
        raise HounsfieldError(f"{os.path.basename(path)} has another in-plane orientation than this series; "
                              "loading it would need resampling, which is not supported yet.")
