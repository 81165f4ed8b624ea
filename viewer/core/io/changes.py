"""Lesion change over time as DICOM and CSV: one TID 1500 SR per time point whose volumetric groups keep
each lesion's TrackingIdentifier and TrackingUniqueIdentifier (the same UID at both time points, as
TID 1500 intends for following a finding), each group referring to that time point's DICOM SEG; the
current study's SR adds per lesion the change figures (volume change, percent, volume doubling time)
and one group for the target lesions (sum of diameters at baseline, nadir and now, and the suggested
RECIST 1.1 response with its rule as text).  Plus a CSV with one row per lesion and one for the sum.

The change figures and the response have no standard codes: they use the private coding scheme of
``viewer.core.io.sr`` ("99HNSF"), as DICOM allows.  Built on ``viewer.core.io.sr.build_sr`` (evidence,
observer, report) and ``viewer.core.io.seg_dicom.write_dicom_seg``.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from viewer.core.io import sr as sr_io
from viewer.core.io.seg_dicom import write_dicom_seg
from viewer.core.segmentation import Segmentation

SCHEME = sr_io.REVIEW_SCHEME
CHANGE_CODES = {"volume_change_ml": ("LCDVOL", "Volume change from prior", "ml"),
                "volume_change_pct": ("LCDVOLPCT", "Volume change from prior, percent", "%"),
                "vdt_days": ("LCVDT", "Volume doubling time", "d")}
SUM_CODES = {"baseline_sum": ("LCSUMB", "Sum of target lesion diameters at baseline", "mm"),
             "nadir_sum": ("LCSUMN", "Sum of target lesion diameters at nadir", "mm"),
             "current_sum": ("LCSUMC", "Sum of target lesion diameters now", "mm")}
RESPONSE_CONCEPT = ("LCRECIST", "Suggested RECIST 1.1 response")
RESPONSES = {"CR": "Complete response", "PR": "Partial response", "SD": "Stable disease",
             "PD": "Progressive disease", "NE": "Not evaluable"}
CSV_COLUMNS = ("kind", "tracking_identifier", "tracking_uid", "organ", "nodal", "target", "status", "matched_by",
               "prior_date", "current_date", "days", "prior_long_mm", "prior_short_mm", "prior_volume_ml",
               "current_long_mm", "current_short_mm", "current_volume_ml", "volume_change_ml", "volume_change_pct",
               "vdt_days", "vdt", "baseline_sum_mm", "nadir_sum_mm", "current_sum_mm", "response", "rule")


def _unit(key: str):
    import highdicom as hd

    u = sr_io._units()  # noqa: SLF001 (the same unit codes as the measurement SR)
    if key in u:
        return u[key]
    return hd.sr.CodedConcept(key, "UCUM", {"%": "percent", "d": "day"}.get(key, key))


def _num(code, value: float):
    import highdicom as hd

    value_code, meaning, unit = code
    return hd.sr.Measurement(name=hd.sr.CodedConcept(value_code, SCHEME, meaning), value=float(value), unit=_unit(unit))


def _r(v, nd=2):
    return "" if v is None or not np.isfinite(v) else round(float(v), nd)


def _time_point(label: str, order: int):
    import highdicom as hd

    return hd.sr.TimePointContext(time_point=label, time_point_order=order)


def _lesion_groups(cmp, which: str, seg_ref: dict, src_uid: str, with_change: bool) -> list:
    """The volumetric (segment) and planar (caliper) groups of one time point."""
    import highdicom as hd

    groups = []
    tp = _time_point("baseline" if which == "prior" else "follow-up", 1 if which == "prior" else 2)
    for c in cmp.changes:
        obs = getattr(c, which)
        if obs is None:
            continue
        tracking = hd.sr.TrackingIdentifier(uid=c.track.uid, identifier=c.track.identifier[:64])
        values = []
        if obs.volume_ml is not None:
            values.append(hd.sr.Measurement(name=codes.SCT.Volume, value=float(obs.volume_ml), unit=_unit("ml")))
        values.append(hd.sr.Measurement(name=codes.SCT.LongAxis, value=float(obs.long_mm), unit=_unit("mm")))
        if obs.short_mm:
            values.append(hd.sr.Measurement(name=codes.SCT.ShortAxis, value=float(obs.short_mm), unit=_unit("mm")))
        if with_change:
            for key, code in CHANGE_CODES.items():
                v = getattr(c, key)
                if v is not None and np.isfinite(v):
                    values.append(_num(code, v))
        sites = [hd.sr.FindingSite(codes.SCT.Lung)] if c.track.organ == "lung" else None
        if obs.ref[0] == "segment" and obs.ref in seg_ref:
            seg_uid, number, seg_series = seg_ref[obs.ref]
            ref = hd.sr.ReferencedSegment(sop_class_uid=sr_io.SEG_STORAGE, sop_instance_uid=seg_uid,
                                          segment_number=number,
                                          source_series=hd.sr.SourceSeriesForSegmentation(src_uid))
            groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking, referenced_segment=ref, finding_type=codes.SCT.Lesion,
                finding_sites=sites, time_point_context=tp, measurements=values))
        else:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking, finding_type=codes.SCT.Lesion, finding_sites=sites,
                time_point_context=tp, measurements=values))
    return groups


def _response_group(response) -> object:
    import highdicom as hd

    tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="Target lesions (RECIST 1.1)")
    values = [_num(code, getattr(response, key)) for key, code in SUM_CODES.items()]
    qual = hd.sr.QualitativeEvaluation(
        hd.sr.CodedConcept(RESPONSE_CONCEPT[0], SCHEME, RESPONSE_CONCEPT[1]),
        hd.sr.CodedConcept(f"LC{response.category}", SCHEME, RESPONSES.get(response.category, response.category)))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, measurements=values, qualitative_evaluations=[qual],
        finding_type=hd.sr.CodedConcept(RESPONSE_CONCEPT[0], SCHEME, response.text[:64]))


def _segmentation_of(cmp, series, folder: str, stem: str, written: dict) -> dict:
    """Write the lesions of ``series`` (its segments that are in the table) as one DICOM SEG; returns
    {observation ref: (SEG SOP instance UID, segment number, SEG series UID)}."""
    refs = [getattr(c, "prior" if series is cmp.prior else "current") for c in cmp.changes]
    refs = {o.ref for o in refs if o is not None and o.ref[0] == "segment"}
    if not refs:
        return {}
    out = Segmentation.for_volume(series.volume, "Lesions")
    numbers = {}
    for ed in series.segmentations:
        seg = ed.segmentation
        for s in seg.segments:
            ref = ("segment", seg.uid, s.number)
            if ref not in refs:
                continue
            t = out.add_segment(s.name, s.color, category=s.category, type=s.type, layer="new" if numbers else 0,
                                algorithm_type=s.algorithm_type, algorithm_name=s.algorithm_name,
                                algorithm_version=s.algorithm_version)
            out.layers[t.layer][seg.mask(s)] = t.number
            numbers[ref] = t.number
    path = os.path.join(folder, f"{stem}-segmentation.dcm")
    seg_uid, seg_series = generate_uid(), generate_uid()
    write_dicom_seg(out, series.volume, path, series_description="SEG lesions", sop_instance_uid=seg_uid,
                    series_instance_uid=seg_series)
    written.setdefault("seg", []).append(path)
    # write_dicom_seg numbers the segments 1..n in list order
    order = {s.number: n for n, s in enumerate(out.segments, start=1)}
    return {ref: (seg_uid, order[num], seg_series) for ref, num in numbers.items()}


def export_changes(folder, cmp, *, basename: str = "lesion-change") -> dict[str, list[str]]:
    """Write ``basename``-prior.dcm and ``basename``-current.dcm (SRs), their SEGs and ``basename``.csv
    for a ``viewer.core.longitudinal.Comparison`` (``cmp.update()`` run); returns paths by kind."""
    os.makedirs(folder, exist_ok=True)
    if not cmp.changes:
        cmp.update()
    out: dict[str, list[str]] = {"sr": [], "seg": [], "csv": []}
    response = cmp.response()
    for which, series in (("prior", cmp.prior), ("current", cmp.current)):
        stem = f"{basename}-{which}"
        seg_ref = _segmentation_of(cmp, series, folder, stem, out)
        groups = _lesion_groups(cmp, which, seg_ref, series.volume.source.series_instance_uid,
                                with_change=which == "current")
        if which == "current":
            groups.append(_response_group(response))
        if not groups:
            continue
        seg_refs = sorted({(u, s) for u, _n, s in seg_ref.values()})
        ds = sr_io.build_sr([], series.volume.source, modality=series.volume.modality, units=series.volume.units,
                            groups=groups, seg_refs=seg_refs,
                            title=f"Lesion change ({'baseline' if which == 'prior' else 'follow-up'})")
        path = os.path.join(folder, f"{stem}.dcm")
        ds.save_as(path, enforce_file_format=True)
        out["sr"].append(path)
    path = os.path.join(folder, f"{basename}.csv")
    write_csv(path, cmp, response)
    out["csv"].append(path)
    return out


def csv_rows(cmp, response) -> list[dict]:
    from viewer.core.longitudinal import study_date

    pd, cd = study_date(cmp.prior.volume), study_date(cmp.current.volume)
    rows = []
    for c in cmp.changes:
        p, q = c.prior, c.current
        rows.append({
            "kind": "lesion", "tracking_identifier": c.track.identifier, "tracking_uid": c.track.uid,
            "organ": c.track.organ, "nodal": int(c.track.nodal), "target": int(c.target), "status": c.status,
            "matched_by": c.matched_by, "prior_date": pd.isoformat() if pd else "",
            "current_date": cd.isoformat() if cd else "", "days": "" if c.days is None else c.days,
            "prior_long_mm": _r(p.long_mm if p else None), "prior_short_mm": _r(p.short_mm if p else None),
            "prior_volume_ml": _r(p.volume_ml if p else None, 3),
            "current_long_mm": _r(q.long_mm if q else None), "current_short_mm": _r(q.short_mm if q else None),
            "current_volume_ml": _r(q.volume_ml if q else None, 3),
            "volume_change_ml": _r(c.volume_change_ml, 3), "volume_change_pct": _r(c.volume_change_pct, 1),
            "vdt_days": _r(c.vdt_days, 0), "vdt": c.vdt_text})
    rows.append({"kind": "target sum", "tracking_identifier": ", ".join(response.targets),
                 "baseline_sum_mm": _r(response.baseline_sum), "nadir_sum_mm": _r(response.nadir_sum),
                 "current_sum_mm": _r(response.current_sum), "response": response.category,
                 "rule": response.rule + (" (" + "; ".join(response.notes) + ")" if response.notes else "")})
    return rows


def write_csv(path, cmp, response=None) -> None:
    response = response or cmp.response()
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for row in csv_rows(cmp, response):
            w.writerow(row)


def read_change_sr(path) -> list[dict]:
    """Per measurement group of an SR written here: tracking identifier and UID, the time point, and
    its numeric values by code meaning (plus "response" for the target-lesion group)."""
    ds = pydicom.dcmread(str(path))
    out = []

    def walk(items, g):
        for it in items:
            name = it.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in it else None
            code = str(name.CodeValue) if name is not None else ""
            if it.ValueType == "TEXT" and code == "112039":
                g["tracking_identifier"] = str(it.TextValue)
            elif it.ValueType == "UIDREF" and code == "112040":
                g["tracking_uid"] = str(it.UID)
            elif it.ValueType == "TEXT" and code == "C2348792":
                g["time_point"] = str(it.TextValue)
            elif it.ValueType == "NUM":
                g[str(name.CodeMeaning)] = float(it.MeasuredValueSequence[0].NumericValue)
            elif it.ValueType == "CODE" and code == RESPONSE_CONCEPT[0]:
                g["response"] = str(it.ConceptCodeSequence[0].CodeValue)[2:]
            if "ContentSequence" in it and it.ValueType != "CONTAINER":
                walk(it.ContentSequence, g)
            elif "ContentSequence" in it:  # a time point context container and the like
                walk(it.ContentSequence, g)

    def groups(items):
        for it in items:
            if it.ValueType == "CONTAINER" and "ContentSequence" in it:
                if it.ConceptNameCodeSequence[0].CodeValue == "125007":
                    g = {}
                    walk(it.ContentSequence, g)
                    out.append(g)
                else:
                    groups(it.ContentSequence)

    groups(ds.ContentSequence)
    return out
