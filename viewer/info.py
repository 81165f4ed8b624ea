"""``hounsfield info``: what a path holds, as text or JSON."""

from __future__ import annotations

import json

import numpy as np

from viewer.core.dicom.geometry import stack_geometry
from viewer.core.dicom.scan import ScanResult
from viewer.core.errors import HounsfieldError, shown
from viewer.core.formats import is_volume_file, read_volume
from viewer.core.volume import Volume


def _orientation(affine: np.ndarray) -> str:
    return Volume(np.zeros((1, 1, 1), np.uint8), affine).orientation_code()


def series_summary(s) -> dict:
    out = {"id": s.id, "uid": s.uid, "number": s.number, "modality": s.modality,
           "description": s.description, "sop_class": s.sop_class_name}
    if not s.is_image:
        out["objects"] = len(s.objects)
        return out
    g = stack_geometry(s.frames)
    spacing = np.linalg.norm(g.affine[:3, :3], axis=0)
    h = s.first
    out.update({
        "images": len(s.frames), "files": len(s.instances),
        "dimensions": [h.columns, h.rows, g.depth],
        "spacing_mm": [round(float(x), 4) for x in spacing],
        "orientation": _orientation(g.affine),
        "origin_lps_mm": [round(float(x), 3) for x in g.affine[:3, 3]],
        "transfer_syntax": h.transfer_syntax,
        "gantry_tilt_degrees": round(g.tilt_degrees, 3),
        "warnings": g.warnings + ([f"split from its DICOM series by {s.split_reason}"] if s.split_reason else []),
    })
    return out


def describe(result: ScanResult) -> dict:
    return {
        "path": result.root,
        "patients": [{
            "name": p.name, "id": p.id, "birth_date": p.birth_date, "sex": p.sex,
            "studies": [{"uid": st.uid, "date": st.date, "description": st.description,
                         "accession_number": st.accession_number,
                         "series": [series_summary(s) for s in st.series]} for st in p.studies],
        } for p in result.patients],
        "unreadable_files": result.errors,
        "non_dicom_files": result.skipped,
    }


def describe_volume_file(path: str) -> dict:
    v = read_volume(path)
    return {"path": path, "volume": {"dimensions": [v.shape[2], v.shape[1], v.shape[0]],
                                     "dtype": str(v.array.dtype), "modality": v.modality,
                                     "spacing_mm": [round(float(x), 4) for x in v.spacing],
                                     "orientation": v.orientation_code(),
                                     "origin_lps_mm": [round(float(x), 3) for x in v.origin]}}


def print_info(path: str, as_json: bool = False) -> int:
    from viewer.core.loader import scan

    if is_volume_file(path):
        data = describe_volume_file(path)
    else:
        result = scan(path)
        if not result.series:  # nothing to list: a failure, with the exit status of one (2)
            if not result.errors:
                raise HounsfieldError(f"No DICOM files were found in {result.root}.")
            if len(result.errors) == 1:
                raise HounsfieldError(result.errors[0])
            raise HounsfieldError(f"None of the {len(result.errors)} DICOM files in {result.root} could be read; "
                                  f"the first: {result.errors[0]}")
        data = describe(result)
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    print(format_text(data))
    return 0


def format_text(data: dict) -> str:
    lines = [f"{data['path']}"]
    if "volume" in data:
        v = data["volume"]
        lines.append(f"  volume {'x'.join(map(str, v['dimensions']))} {v['dtype']} {v['modality']}, "
                     f"spacing {' x '.join(f'{s:g}' for s in v['spacing_mm'])} mm, {v['orientation']}")
        return "\n".join(lines)
    for p in data["patients"]:  # values from the files, shown short: a corrupt length can make them huge
        lines.append(f"Patient {shown(p['name']) or '(no name)'}  ID {shown(p['id']) or '-'}  "
                     f"born {shown(p['birth_date']) or '-'}")
        for st in p["studies"]:
            lines.append(f"  Study {shown(st['date']) or '(no date)'} {shown(st['description'])}  [{shown(st['uid'])}]")
            for s in st["series"]:
                head = f"    Series {s['number'] if s['number'] is not None else '-'} {shown(s['modality'])} " \
                       f"{shown(s['description']) or '(no description)'}"
                if "images" not in s:
                    lines.append(f"{head}: {s['objects']} {shown(s['sop_class'])} object(s)  [{shown(s['id'])}]")
                    continue
                dims = "x".join(map(str, s["dimensions"]))
                sp = " x ".join(f"{x:g}" for x in s["spacing_mm"])
                lines.append(f"{head}: {s['images']} images, {dims}, {sp} mm, {s['orientation']}  "
                             f"[{shown(s['id'])}]")
                for w in s["warnings"]:
                    lines.append(f"      warning: {w}")
    if data["unreadable_files"]:
        lines.append(f"{len(data['unreadable_files'])} unreadable file(s):")
        lines.extend(f"  {e}" for e in data["unreadable_files"][:20])
    return "\n".join(lines)
