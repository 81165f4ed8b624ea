"""The measurements table as CSV and JSON: one row per measurement (and per segment), the same
columns in both, values in mm, mm2, degrees, mL and the image's units (HU for CT)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from viewer.core.measurements import KIND_TITLES, Measurement, SegmentStats, summary
from viewer.core.volume import SourceInfo

COLUMNS = ("uid", "label", "kind", "series_uid", "centre_x", "centre_y", "centre_z", "length_mm", "angle_deg",
           "long_mm", "short_mm", "area_mm2", "sample_area_mm2", "count", "mean", "sd", "min", "max", "value",
           "volume_ml", "longest_diameter_mm", "units", "summary",
           # the AI review (viewer.core.review): who made the finding and what a person changed
           "algorithm", "review", "dice", "hd95_mm", "volume_change_ml", "volume_change_pct", "edited_slices",
           "status", "moved_mm", "resized")
REVIEW_KEYS = ("review", "dice", "hd95_mm", "volume_change_ml", "volume_change_pct", "edited_slices", "status",
               "moved_mm", "resized")


def _with_review(row: dict, review: dict | None) -> dict:
    for k in REVIEW_KEYS:
        v = (review or {}).get(k)
        if v is not None:
            row[k] = round(float(v), 4) if isinstance(v, float) else v
    if review and review.get("algorithm_name"):
        row["algorithm"] = f"{review['algorithm_name']} {review.get('algorithm_version', '')}".strip()
    return row


def detection_row(label: str, centre, flags: dict, series_uid: str = "", deidentifier=None,
                  algorithm: str = "") -> dict:
    """One AI detection (or one a person added) as reviewed (viewer.core.review.marker_flags)."""
    c = np.asarray(centre, np.float64)
    row = {"uid": "", "label": label, "kind": "detection",
           "series_uid": deidentifier.uid(series_uid) if deidentifier else series_uid,
           "centre_x": round(float(c[0]), 2), "centre_y": round(float(c[1]), 2), "centre_z": round(float(c[2]), 2),
           "algorithm": algorithm, "summary": flags.get("review", "")}
    return _with_review(row, flags)


def measurement_row(m: Measurement, units: str = "", deidentifier=None) -> dict:
    c = m.centre()
    row = {"uid": m.uid, "label": m.label or KIND_TITLES[m.kind], "kind": m.kind,
           "series_uid": deidentifier.uid(m.series_uid) if deidentifier else m.series_uid,
           "centre_x": round(float(c[0]), 2), "centre_y": round(float(c[1]), 2), "centre_z": round(float(c[2]), 2),
           "units": units if m.kind in ("ellipse", "polygon", "point") else "",
           "summary": summary(m, units).replace("\n", "  ")}
    for k, v in m.values.items():
        if k in COLUMNS:
            row[k] = round(float(v), 4) if k != "count" else int(v)
    return row


def segment_row(name: str, stats: SegmentStats, units: str = "", series_uid: str = "", deidentifier=None) -> dict:
    c = stats.centroid_lps
    return {"uid": "", "label": name, "kind": "segment",
            "series_uid": deidentifier.uid(series_uid) if deidentifier else series_uid,
            "centre_x": round(float(c[0]), 2), "centre_y": round(float(c[1]), 2), "centre_z": round(float(c[2]), 2),
            "count": stats.voxel_count, "mean": round(stats.mean, 4), "sd": round(stats.sd, 4),
            "min": stats.min, "max": stats.max, "volume_ml": round(stats.volume_ml, 4),
            "longest_diameter_mm": round(stats.longest_diameter_mm, 4), "long_mm": round(stats.axial_long_mm, 4),
            "short_mm": round(stats.axial_short_mm, 4), "units": units,
            "summary": f"{stats.volume_ml:.2f} mL, {stats.longest_diameter_mm:.1f} mm"}


def rows(measurements, units: str = "", segments=None, series_uid: str = "", deidentifier=None, *,
         reviews=None, detections=None) -> list[dict]:
    """``reviews``: per segment (aligned with ``segments``) its review dict or None; ``detections``:
    [(label, centre LPS, marker_flags dict)]."""
    out = [measurement_row(m, units, deidentifier) for m in measurements]
    reviews = list(reviews or [])
    for n, (name, s) in enumerate(segments or []):
        out.append(_with_review(segment_row(name, s, units, series_uid, deidentifier),
                                reviews[n] if n < len(reviews) else None))
    out += [detection_row(lab, c, f, series_uid, deidentifier, f.get("algorithm", ""))
            for lab, c, f in detections or []]
    return out


def to_csv(measurements, units: str = "", segments=None, series_uid: str = "", deidentifier=None, **review) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows(measurements, units, segments, series_uid, deidentifier, **review):
        w.writerow(row)
    return buf.getvalue()


def to_json(measurements, src: SourceInfo | None = None, units: str = "", segments=None, deidentifier=None,
            **review) -> str:
    """The table plus each measurement's points (LPS mm) and the series it belongs to."""
    src = src or SourceInfo()
    if deidentifier is not None:
        src = deidentifier.source(src)
    table = rows(measurements, units, segments, src.series_instance_uid, deidentifier, **review)
    for row, m in zip(table, measurements):
        row["points_lps"] = np.round(m.points, 3).tolist()
    for row, (_, s) in zip(table[len(measurements):], segments or []):
        row["longest_diameter_points_lps"] = np.round(s.longest_diameter_points, 3).tolist()
    doc = {"patient": {"name": src.patient_name, "id": src.patient_id, "birth_date": src.patient_birth_date},
           "study_instance_uid": src.study_instance_uid, "series_instance_uid": src.series_instance_uid,
           "frame_of_reference_uid": src.frame_of_reference_uid, "units": units, "measurements": table}
    if deidentifier is not None:
        doc["deidentified"] = True
    return json.dumps(doc, indent=1)


def write_csv(path, *args, **kwargs) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(to_csv(*args, **kwargs))


def write_json(path, *args, **kwargs) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(to_json(*args, **kwargs))
