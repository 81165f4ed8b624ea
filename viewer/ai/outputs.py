"""Writing a run's results to a folder: NIfTI volumes, DICOM SEG, JSON (the headless output).

    results.json       plugin, version, device, parameters, notes, provenance, the files below
    <image>.nii.gz     each derived image (e.g. the denoised CT), same grid as the input
    <labels>.nii.gz    each label map, with <labels>.segments.json, and <labels>.seg.dcm (DICOM
                       SEG via highdicom) when the input was a DICOM series
    <heatmap>.nii.gz   each explanation heatmap, float32 in [0, 1]
    detections.json    detections: centre and size in LPS mm, score, class
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from viewer.ai.api import PluginInfo, Results, Task
from viewer.core.ai_results import convert_results, on_grid
from viewer.core.errors import HounsfieldError
from viewer.core.volume import Volume


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "result"
    name, n = base, 2
    while name in used:
        name, n = f"{base}-{n}", n + 1
    used.add(name)
    return name


def output_folder(out_dir) -> Path:
    """Create ``out_dir`` and check that a file can be written in it, so that a run into a folder it
    cannot write says so before the model runs, not after (a read-only or full disk, a file's name)."""
    import tempfile

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HounsfieldError(f"The output folder {out} could not be created ({exc.strerror}).") from None
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".hounsfield-probe-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise HounsfieldError(f"Nothing can be written in the output folder {out} ({exc.strerror}).") from None
    return out


def write_results(results: Results, source: Volume, out_dir, info: PluginInfo) -> list[Path]:
    """Write every result under ``out_dir`` and return the paths written (results.json last)."""
    out = output_folder(out_dir)
    try:
        return _write_all(results, source, out, info)
    except OSError as exc:
        raise HounsfieldError(f"The results could not all be written to {out} ({exc.strerror or exc}); "
                              f"check the folder and free space.") from exc


def _write_all(results: Results, source: Volume, out: Path, info: PluginInfo) -> list[Path]:
    import viewer

    used: set[str] = set()
    written: list[Path] = []
    # the one conversion of results into overlays (the viewer's too): label maps -> segmentations
    conv = convert_results(results, source, images=False)
    segs = iter(conv.segmentations)
    entries: list[dict] = []
    for img in results.images:
        path = out / f"{_slug(img.name, used)}.nii.gz"
        viewer.save(Volume(img.array, img.affine, modality=img.modality, units=img.units), path)
        written.append(path)
        entries.append({"kind": "image", "name": img.name, "file": path.name, "description": img.description})
    for lm in results.label_maps:
        stem = _slug(lm.name, used)
        path = out / f"{stem}.nii.gz"
        viewer.save(Volume(lm.array, lm.affine, modality="SEG"), path)
        seg_json = out / f"{stem}.segments.json"
        seg_json.write_text(json.dumps([{"label": s.label, "name": s.name, "color": list(s.color),
                                         "description": s.description, "code": s.code._asdict() if s.code else None}
                                        for s in lm.segments], indent=2))
        written += [path, seg_json]
        entry = {"kind": "label_map", "name": lm.name, "file": path.name, "segments": seg_json.name}
        dcm = out / f"{stem}.seg.dcm"
        seg = next(segs) if on_grid(lm, source) else None
        try:
            if seg is None:
                entry["dicom_seg_skipped"] = "The label map is not on the image's grid."
            elif _write_seg(seg, source, dcm, info):
                written.append(dcm)
                entry["dicom_seg"] = dcm.name
        except HounsfieldError as exc:
            entry["dicom_seg_skipped"] = str(exc)
        entries.append(entry)
    for hm in results.heatmaps:
        path = out / f"{_slug(hm.name, used)}.heatmap.nii.gz"
        viewer.save(Volume(hm.array.astype(np.float32), hm.affine), path)
        written.append(path)
        entries.append({"kind": "heatmap", "name": hm.name, "explains": hm.kind, "file": path.name,
                        "description": hm.description})
    if results.detections or info.task == Task.DETECTION:  # a detector's "nothing found" is a result too
        path = out / "detections.json"
        path.write_text(json.dumps([d.to_dict() for d in results.detections], indent=2))
        written.append(path)
        entries.append({"kind": "detections", "count": len(results.detections), "file": path.name})
    manifest = {
        "plugin": {"id": info.id, "name": info.name, "version": info.version, "task": info.task.value},
        "provenance": results.provenance,
        "notes": results.notes,
        "results": entries,
        "input": {"shape_kji": list(source.shape), "spacing_mm": [float(s) for s in source.spacing],
                  "modality": source.modality, "series_instance_uid": source.source.series_instance_uid,
                  "warnings": list(source.warnings)},  # files left out, slices left blank: what the run stood on
    }
    path = out / "results.json"
    path.write_text(json.dumps(manifest, indent=2, default=str))
    written.append(path)
    return written


def _write_seg(seg, source: Volume, path: Path, info: PluginInfo) -> bool:
    """A DICOM Segmentation of ``seg`` referencing the source series (AUTOMATIC, with the model's name
    and version); False when the input was not DICOM or nothing was segmented.  The writing is the
    segmentation editor's own (``viewer.core.io.seg_dicom``), so AI results and edited
    segmentations export alike."""
    from viewer.core.io.seg_dicom import source_datasets, write_dicom_seg

    if not source_datasets(source) or not seg.segments:
        return False
    write_dicom_seg(seg, source, path, series_description=f"AI: {info.name}", model_name=f"{info.name} (AI plugin)",
                    software_version=f"hounsfield {info.id} {info.version}")
    return True
