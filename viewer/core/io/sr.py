"""Measurements as a DICOM Comprehensive 3D SR holding a TID 1500 Measurement Report (highdicom),
and back.

Each measurement is one Planar ROI measurement group (TID 1411) whose tracking identifier is its
label and UID and whose image region is an SCOORD3D in the series' frame of reference:

- length: POLYLINE of 2 points, "Length" (mm);   angle: POLYLINE of 3 points, "Angle" (deg);
- bidirectional: POLYLINE [long0, long1, short0, short1], "Long axis" and "Short axis" (mm);
- ellipse: ELLIPSE (major axis end points, then minor), polygon: closed POLYGON; both with
  "Area" (mm2), "Mean", "Standard Deviation", "Minimum", "Maximum" (HU for CT);
- point: POINT, "Mean" (the value of the voxel there).

Every group references the source images by their SOP instance UIDs (the evidence).  Segment
statistics become Volumetric ROI groups (TID 1411) when a DICOM SEG segment is given to refer to.
"""

from __future__ import annotations

import copy

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from viewer.core.measurements import KIND_TITLES, Measurement, SegmentStats, ellipse_axes
from viewer.core.volume import SourceInfo

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
MANUFACTURER = "Hounsfield"


def _unit(value: str, meaning: str):
    import highdicom as hd

    return hd.sr.CodedConcept(value, "UCUM", meaning)


def _units():
    return {"mm": _unit("mm", "millimeter"), "mm2": _unit("mm2", "square millimeter"),
            "deg": _unit("deg", "degree"), "HU": _unit("[hnsf'U]", "Hounsfield unit"),
            "1": _unit("1", "no units"), "ml": _unit("ml", "milliliter")}


# (values key, code, unit key or None for the image's unit)
_LINE_VALUES = {"length": [("length_mm", codes.SCT.Length, "mm")],
                "angle": [("angle_deg", codes.SCT.Angle, "deg")],
                "bidirectional": [("long_mm", codes.SCT.LongAxis, "mm"), ("short_mm", codes.SCT.ShortAxis, "mm")]}
_ROI_VALUES = [("area_mm2", codes.SCT.Area, "mm2"), ("mean", codes.SCT.Mean, None),
               ("sd", codes.SCT.StandardDeviation, None), ("min", codes.SCT.Minimum, None),
               ("max", codes.SCT.Maximum, None)]
_SEGMENT_VALUES = [("volume_ml", codes.SCT.Volume, "ml"), ("mean", codes.SCT.Mean, None),
                   ("sd", codes.SCT.StandardDeviation, None), ("min", codes.SCT.Minimum, None),
                   ("max", codes.SCT.Maximum, None), ("longest_diameter_mm", codes.SCT.Diameter, "mm"),
                   ("axial_long_mm", codes.SCT.LongAxis, "mm"), ("axial_short_mm", codes.SCT.ShortAxis, "mm")]
# reading an SR back: a measurement's (value, scheme) -> its values key, from the codes written above
_CODE_KEYS = {(str(c.value), str(c.scheme_designator)): key
              for key, c, _ in [v for vs in _LINE_VALUES.values() for v in vs] + _ROI_VALUES}


def evidence_datasets(src: SourceInfo, modality: str = "CT") -> list[Dataset]:
    """Minimal datasets standing for the source images (patient, study, series, SOP UIDs)."""
    out = []
    for uid in src.sop_instance_uids:
        ds = Dataset()
        ds.PatientName, ds.PatientID = src.patient_name, src.patient_id
        ds.PatientBirthDate, ds.PatientSex = src.patient_birth_date, src.patient_sex
        ds.StudyInstanceUID, ds.SeriesInstanceUID = src.study_instance_uid, src.series_instance_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID = src.study_date, "", ""
        ds.AccessionNumber, ds.ReferringPhysicianName = src.accession_number, ""
        ds.SOPClassUID = src.sop_class_uid or CT_IMAGE_STORAGE
        ds.SOPInstanceUID = uid
        ds.Modality = modality
        ds.FrameOfReferenceUID = src.frame_of_reference_uid
        out.append(ds)
    return out


def _region(m: Measurement, frame_uid: str):
    import highdicom as hd

    p = m.points
    if m.kind == "ellipse":
        c, a, b = ellipse_axes(m)
        if np.linalg.norm(b) > np.linalg.norm(a):
            a, b = b, a
        data, kind = np.stack([c - a, c + a, c - b, c + b]), "ELLIPSE"
    elif m.kind == "polygon":
        data, kind = np.vstack([p, p[:1]]), "POLYGON"
    elif m.kind == "point":
        data, kind = p[:1], "POINT"
    else:
        data, kind = p, "POLYLINE"
    return hd.sr.ImageRegion3D(kind, data.astype(np.float64), frame_uid)


def _measurements(pairs, values: dict, image_unit, units) -> list:
    import highdicom as hd

    out = []
    for key, code, unit in pairs:
        if key in values and np.isfinite(values[key]):
            out.append(hd.sr.Measurement(name=code, value=float(values[key]),
                                         unit=units[unit] if unit else image_unit))
    return out


# the AI review (viewer.core.review) of a finding: a private coding scheme, as DICOM allows ("99" prefix)
REVIEW_SCHEME = "99HNSF"
REVIEW_CONCEPT = ("AIREVIEW", "AI result review")
REVIEW_VALUES = {"produced by an algorithm": "AIPRODUCED", "accepted as is": "AIACCEPTED",
                 "edited by a person": "AIEDITED", "rejected by a person": "AIREJECTED",
                 "added by a person": "PERSONADDED",
                 "drawn by a person": "PERSONDRAWN"}
_REVIEW_FIGURES = [("dice", ("AIDICE", "Dice similarity coefficient, AI vs corrected"), "1"),
                   ("hd95_mm", ("AIHD95", "95% Hausdorff distance, AI vs corrected"), "mm"),
                   ("volume_change_ml", ("AIDVOL", "Volume change from the AI result"), "ml"),
                   ("volume_change_pct", ("AIDVOLPCT", "Volume change from the AI result, percent"), "%"),
                   ("moved_mm", ("AIMOVED", "Distance moved from the AI's proposal"), "mm")]


def _review_items(review: dict | None, units) -> tuple[list, list]:
    """(qualitative evaluations, measurements) saying how a finding was reviewed."""
    import highdicom as hd

    if not review:
        return [], []
    quals = [hd.sr.QualitativeEvaluation(
        hd.sr.CodedConcept(REVIEW_CONCEPT[0], REVIEW_SCHEME, REVIEW_CONCEPT[1]),
        hd.sr.CodedConcept(REVIEW_VALUES.get(review["review"], "AIPRODUCED"), REVIEW_SCHEME, review["review"]))]
    figures = []
    for key, (value, meaning), unit in _REVIEW_FIGURES:
        v = review.get(key)
        if isinstance(v, (int, float)) and np.isfinite(v):
            u = units.get(unit) or _unit(unit, "percent" if unit == "%" else unit)
            figures.append(hd.sr.Measurement(name=hd.sr.CodedConcept(value, REVIEW_SCHEME, meaning),
                                             value=float(v), unit=u))
    return quals, figures


def read_reviews(path) -> list[dict]:
    """Per measurement group of an SR written here: its tracking identifier, the review flag and
    the review figures (what ``_review_items`` wrote), for groups that carry one."""
    ds = pydicom.dcmread(str(path))
    out = []

    def walk(items, group):
        for it in items:
            name = it.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in it else None
            if name is not None and name.CodingSchemeDesignator == REVIEW_SCHEME:
                if it.ValueType == "CODE":
                    group["review"] = str(it.ConceptCodeSequence[0].CodeMeaning)
                elif it.ValueType == "NUM":
                    group[str(name.CodeValue)] = float(it.MeasuredValueSequence[0].NumericValue)
            elif name is not None and it.ValueType == "TEXT" and name.CodeValue == "112039":
                group["tracking_identifier"] = str(it.TextValue)
            if "ContentSequence" in it and it.ValueType != "CONTAINER":
                walk(it.ContentSequence, group)

    def groups(items):
        for it in items:
            if it.ValueType == "CONTAINER" and "ContentSequence" in it:
                name = it.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in it else ""
                if name == "125007":  # Measurement Group
                    g = {}
                    walk(it.ContentSequence, g)
                    if "review" in g:
                        out.append(g)
                else:
                    groups(it.ContentSequence)

    groups(ds.ContentSequence)
    return out


def add_seg_evidence(evidence: list[Dataset], seg_uid: str, seg_series_uid: str | None = None) -> None:
    """Add the DICOM SEG a group refers to to an SR's evidence (same patient and study as the
    images, a series of its own), once."""
    if any(e.SOPInstanceUID == seg_uid for e in evidence):
        return
    seg = copy.deepcopy(evidence[0]) if evidence else Dataset()
    seg.SOPClassUID, seg.SOPInstanceUID, seg.Modality = SEG_STORAGE, seg_uid, "SEG"
    seg.SeriesInstanceUID = seg_series_uid or generate_uid()
    evidence.append(seg)


def build_sr(measurements: list[Measurement], src: SourceInfo, *, modality: str = "CT", units: str = "HU",
             segments: list[tuple[str, SegmentStats, tuple]] | None = None,
             series_number: int = 900, deidentifier=None, title: str = "Hounsfield measurements",
             groups: list | None = None, seg_refs: list[tuple[str, str]] | None = None,
             reviews: dict | None = None, detections: list | None = None) -> Dataset:
    """A Comprehensive 3D SR of ``measurements`` on the series ``src`` describes, plus ``segments``:
    (name, stats, (SEG SOP instance UID, segment number[, SEG series UID])) volumetric groups, plus
    ready-made measurement ``groups`` (highdicom templates, e.g. a plugin's own TID 1411 groups)
    whose SEGs ``seg_refs`` [(SEG SOP instance UID, SEG series UID)] join the evidence.

    ``reviews``: {(SEG SOP instance UID, segment number): review dict (viewer.core.review.segment_review)}
    adds to a segment's group whether an algorithm produced it, and whether a person accepted it as
    is or edited it, with the agreement figures; ``detections``: [(label, centre LPS, review dict of
    viewer.core.review.marker_flags)] become point findings with the same flag."""
    import highdicom as hd

    u = _units()
    image_unit = u["HU"] if units == "HU" else u["1"]
    frame = src.frame_of_reference_uid or generate_uid()
    extra_groups, groups = list(groups or []), []
    for m in measurements:
        tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=(m.label or m.title)[:64])
        pairs = _LINE_VALUES.get(m.kind) or (_ROI_VALUES if m.kind in ("ellipse", "polygon")
                                             else [("value", codes.SCT.Mean, None)])
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_region=_region(m, frame), finding_type=codes.SCT.Lesion,
            measurements=_measurements(pairs, m.values, image_unit, u)))
    evidence = evidence_datasets(src, modality)
    for name, stats, seg_ref in segments or []:
        seg_uid, number = seg_ref[0], int(seg_ref[1])
        add_seg_evidence(evidence, seg_uid, seg_ref[2] if len(seg_ref) > 2 else None)  # the SEG is evidence too
        ref = hd.sr.ReferencedSegment(sop_class_uid=SEG_STORAGE, sop_instance_uid=seg_uid, segment_number=number,
                                      source_series=hd.sr.SourceSeriesForSegmentation(src.series_instance_uid))
        tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=name[:64])
        values = {k: v for k, v in stats.to_dict().items() if isinstance(v, float | int)}
        rv = (reviews or {}).get((seg_uid, number))
        quals, figures = _review_items(rv, u)
        algo = None
        if rv and rv.get("algorithm_name"):
            algo = hd.sr.AlgorithmIdentification(rv["algorithm_name"][:64], (rv.get("algorithm_version") or "1.0")[:64])
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_segment=ref, finding_type=codes.SCT.Lesion,
            measurements=_measurements(_SEGMENT_VALUES, values, image_unit, u) + figures,
            qualitative_evaluations=quals or None, algorithm_id=algo))
    for label, centre, rv in detections or []:
        tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=str(label)[:64])
        quals, figures = _review_items(rv, u)
        region = hd.sr.ImageRegion3D("POINT", np.asarray(centre, np.float64).reshape(1, 3), frame)
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_region=region, finding_type=codes.SCT.Lesion,
            measurements=figures or None, qualitative_evaluations=quals or None))
    for seg_uid, seg_series in seg_refs or []:
        add_seg_evidence(evidence, seg_uid, seg_series)
    groups += extra_groups
    observer = hd.sr.ObserverContext(observer_type=codes.cid270.Device,
                                     observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                                         uid=generate_uid(), name=MANUFACTURER))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion if modality == "CT" else codes.SCT.ImagingProcedure,
        imaging_measurements=groups, title=codes.DCM.ImagingMeasurementReport)
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description=title)
    if deidentifier is not None:
        deidentifier.dataset(sr)
    return sr


def write_sr(path, measurements: list[Measurement], src: SourceInfo, **kwargs) -> Dataset:
    sr = build_sr(measurements, src, **kwargs)
    sr.save_as(str(path), enforce_file_format=True)
    return sr


def _normal_and_u(kind: str, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plane a measurement read from an SR lies in (an SR holds points, not view planes)."""
    if len(p) >= 3:
        _, s, vt = np.linalg.svd(p - p.mean(axis=0))
        if s[1] > 1e-6 * max(s[0], 1e-12):
            n = vt[2]
            std = {0: np.array([0.0, 1.0, 0.0]), 1: np.array([1.0, 0.0, 0.0]), 2: np.array([1.0, 0.0, 0.0])}
            n = n * np.sign(n[int(np.argmax(np.abs(n)))])
            return n, std[int(np.argmax(np.abs(n)))]
    # a line or a point: the standard plane that contains it best (axial first)
    d = p[-1] - p[0] if len(p) > 1 else np.zeros(3)
    for n, u in ((np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])),
                 (np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])),
                 (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))):
        if abs(d @ n) <= 1e-3 * max(np.linalg.norm(d), 1.0):
            return n, u
    n = np.cross(d, [0.0, 0.0, 1.0])
    return n / np.linalg.norm(n), d / np.linalg.norm(d)


def _image_points(roi, xy: np.ndarray, volume) -> np.ndarray | None:
    """LPS points of 2D image coordinates (SCOORD: column, row from the top-left corner of the
    top-left pixel) on the image the region was selected from, when ``volume`` holds that image."""
    if volume is None:
        return None
    try:
        uid = str(roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    except (AttributeError, IndexError, KeyError):
        return None
    uids = list(volume.source.sop_instance_uids)
    if uid not in uids or len(uids) != volume.shape[0]:
        return None
    k = float(uids.index(uid))
    return volume.index_to_lps(np.c_[xy - 0.5, np.full(len(xy), k)])


def read_sr(path, volume=None) -> list[Measurement]:
    """The planar measurements of a TID 1500 SR (ours or another tool's) as ``Measurement``s; regions
    given in 2D image coordinates (SCOORD) are placed on ``volume`` when it holds their image."""
    import highdicom as hd

    ds = pydicom.dcmread(str(path))
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    report = sr.content
    series = [s for study in getattr(ds, "CurrentRequestedProcedureEvidenceSequence", [])
              for s in getattr(study, "ReferencedSeriesSequence", [])]
    # the measured series: the one with the most referenced images (a SEG adds a series of one)
    series_uid = str(max(series, key=lambda s: len(s.ReferencedSOPSequence)).SeriesInstanceUID) if series else ""
    out = []
    for group in report.get_planar_roi_measurement_groups():
        roi = group.roi
        if roi is None or not hasattr(roi, "value"):
            continue
        pts = np.asarray(roi.value, dtype=np.float64)
        gtype = str(roi.graphic_type.value if hasattr(roi.graphic_type, "value") else roi.graphic_type)
        for_uid = str(getattr(roi, "frame_of_reference_uid", "") or "")
        if pts.ndim == 2 and pts.shape[1] == 2:  # SCOORD: on one image
            pts = _image_points(roi, pts, volume)
            if pts is None:
                continue
            for_uid = volume.source.frame_of_reference_uid
            if gtype == "CIRCLE":  # centre and a point of the circle: an ellipse with equal axes
                r = float(np.linalg.norm(pts[1] - pts[0]))
                d = volume.direction
                c = pts[0]
                gtype, pts = "ELLIPSE", np.stack([c - r * d[:, 0], c + r * d[:, 0], c - r * d[:, 1], c + r * d[:, 1]])
            elif gtype == "POLYLINE" and len(pts) > 2:
                gtype = "POLYGON"
        else:
            pts = pts.reshape(-1, 3)
        values = {}
        for meas in group.get_measurements():
            key = _CODE_KEYS.get((str(meas.name.value), str(meas.name.scheme_designator)))
            if key is not None:
                values[key] = float(meas.value)
        if gtype == "ELLIPSE":
            c = pts[:2].mean(axis=0)
            kind, pts = "ellipse", np.stack([c, pts[1], pts[3]])
        elif gtype == "POLYGON":
            kind, pts = "polygon", pts[:-1] if np.allclose(pts[0], pts[-1]) else pts
        elif gtype == "POINT":
            kind = "point"
            if "mean" in values:
                values = {"value": values.pop("mean")}
        elif "long_mm" in values and len(pts) == 4:
            kind = "bidirectional"
        elif "angle_deg" in values and len(pts) == 3:
            kind = "angle"
        elif len(pts) == 2:
            kind = "length"
        else:
            continue
        n, u = _normal_and_u(kind, pts)
        label = str(group.tracking_identifier or "")
        label = "" if label == KIND_TITLES[kind] else label
        out.append(Measurement(kind, pts, n, u, label=label, series_uid=series_uid,
                               frame_of_reference_uid=for_uid, values=values))
    return out
