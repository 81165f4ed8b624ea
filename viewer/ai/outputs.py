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
import warnings
from pathlib import Path

import numpy as np

from viewer.ai.api import LabelMap, PluginInfo, Results
from viewer.core.errors import HounsfieldError
from viewer.core.volume import Volume
from viewer.logs import log


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "result"
    name, n = base, 2
    while name in used:
        name, n = f"{base}-{n}", n + 1
    used.add(name)
    return name


def write_results(results: Results, source: Volume, out_dir, info: PluginInfo) -> list[Path]:
    """Write every result under ``out_dir`` and return the paths written (results.json last)."""
    import viewer

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HounsfieldError(f"The output folder {out} could not be created ({exc.strerror}).") from None
    used: set[str] = set()
    written: list[Path] = []
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
                                         "description": s.description, "code": list(s.code) if s.code else None}
                                        for s in lm.segments], indent=2))
        written += [path, seg_json]
        entry = {"kind": "label_map", "name": lm.name, "file": path.name, "segments": seg_json.name}
        dcm = out / f"{stem}.seg.dcm"
        try:
            if write_dicom_seg(lm, source, dcm, info):
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
    if results.detections:
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
                  "modality": source.modality, "series_instance_uid": source.source.series_instance_uid},
    }
    path = out / "results.json"
    path.write_text(json.dumps(manifest, indent=2, default=str))
    written.append(path)
    return written


def _source_datasets(source: Volume) -> list:
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


def write_dicom_seg(lm: LabelMap, source: Volume, path: Path, info: PluginInfo) -> bool:
    """A DICOM Segmentation of ``lm`` referencing the source series; False when the input was not DICOM."""
    datasets = _source_datasets(source)
    if not datasets:
        return False
    if any(int(getattr(ds, "NumberOfFrames", 1) or 1) > 1 for ds in datasets):
        raise HounsfieldError("DICOM SEG export of results on multi-frame images is not supported yet.")
    import highdicom as hd
    from pydicom.sr.codedict import codes

    by_k = {}
    for ds in datasets:
        k = int(round(float(source.lps_to_index([float(v) for v in ds.ImagePositionPatient])[2])))
        if 0 <= k < source.shape[0]:
            by_k.setdefault(k, ds)
    ks = sorted(by_k)
    segments = [s for s in lm.segments if s.label != 0]
    if not ks or not segments:
        return False
    number = {s.label: n + 1 for n, s in enumerate(segments)}
    remap = np.zeros(int(lm.array.max()) + 1, np.uint16)
    for lab, n in number.items():
        if lab < remap.size:
            remap[lab] = n
    pixels = remap[lm.array[ks]]
    algorithm = hd.AlgorithmIdentificationSequence(name=info.name, family=codes.cid7162.ArtificialIntelligence,
                                                   version=info.version)
    descriptions = []
    for s in segments:
        ptype = hd.sr.CodedConcept(s.code[1], s.code[0], s.code[2]) if s.code else codes.SCT.Tissue
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number[s.label], segment_label=s.name[:64],
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=ptype,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm))
    try:
        with warnings.catch_warnings(record=True) as caught:  # e.g. odd patient names in the source
            warnings.simplefilter("always")
            seg = _segmentation(hd, by_k, ks, pixels, segments, descriptions, info)
            seg.save_as(path)
        for w in caught:
            log.info("DICOM SEG: %s", w.message)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        log.warning("DICOM SEG not written", exc_info=True)
        raise HounsfieldError(f"The DICOM SEG could not be written ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:100]}).") from None
    log.info("wrote DICOM SEG %s (%d frames, %d segments)", path, len(ks), len(segments))
    return True


def _segmentation(hd, by_k, ks, pixels, segments, descriptions, info):
    return hd.seg.Segmentation(
        source_images=[by_k[k] for k in ks], pixel_array=pixels.astype(np.uint8 if len(segments) < 256 else np.uint16),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=9000, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="Hounsfield", manufacturer_model_name=f"{info.name} (AI plugin)",
        software_versions=f"hounsfield {info.id} {info.version}", device_serial_number="0",
        series_description=f"AI: {info.name}"[:64])
