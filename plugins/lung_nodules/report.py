"""The lung nodule report: a DICOM SEG of the accepted nodules, a Comprehensive 3D SR (TID 1500)
with one volumetric measurement group (TID 1411) per nodule referring to its SEG segment, and a
CSV table.  The SR is built by viewer.core.io.sr.build_sr (the viewer's measurement SR) from the
groups made here; the SEG by viewer.core.io.seg_dicom.write_dicom_seg.

A nodule is a dict as ``measure.measure_nodule`` returns it (``mask`` and ``bbox`` for the SEG,
``center_kji``, ``long_mm``, ``short_mm``, ``mean_diameter_mm``, ``volume_ml``, ``mean_hu``,
``type``, ``solid_mean_diameter_mm``, ``calcified``, ``side``, ``lobe``), plus optionally
``number`` (default: its place in the list, from 1), ``uid`` (tracking UID), ``score``,
``lungrads`` (a ``lungrads.Suggestion``; suggested from the measurement when absent),
``edited`` (changed by a person) and ``source`` (who proposed it: the model's name).

Each group holds: tracking identifier "Nodule N" and UID; finding type Nodule; finding site
(the lobe: upper/middle/lower lobe of lung with laterality, or the lung with laterality when no
lobe is known); long and short axis, mean diameter (Diameter,
derivation Mean), volume (mm3), mean attenuation (HU), the solid component's mean diameter
(part-solid), the detection score; qualitative evaluations: composition (solid, part-solid,
non-solid) and the Lung-RADS v2022 category suggestion, with the rule text beside it.  Concepts
without a standard code use the private coding scheme ``99HNSF``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from viewer.core.codes import AlgorithmType, Code
from viewer.core.io import sr as sr_io
from viewer.core.segmentation import Segmentation, add_masks
from viewer.core.volume import Volume

SCHEME = "99HNSF"
SEG_STORAGE = sr_io.SEG_STORAGE
LOBE_CODES = {  # DICOM CID 6124 (lobes) with laterality
    "right upper lobe": (("45653009", "SCT", "Upper lobe of lung"), "right"),
    "right middle lobe": (("72481006", "SCT", "Middle lobe of right lung"), "right"),
    "right lower lobe": (("90572001", "SCT", "Lower lobe of lung"), "right"),
    "left upper lobe": (("45653009", "SCT", "Upper lobe of lung"), "left"),
    "left lower lobe": (("90572001", "SCT", "Lower lobe of lung"), "left"),
}
LUNG = ("39607008", "SCT", "Lung")
LATERALITY = {"right": ("24028007", "SCT", "Right"), "left": ("7771000", "SCT", "Left")}
TYPE_CODES = {"solid": "Solid", "part-solid": "Part-solid", "ground-glass": "Non-solid (ground-glass)"}
NODULE_CATEGORY = Code("49755003", "SCT", "Morphologically Abnormal Structure")
NODULE_TYPE = Code("27925004", "SCT", "Nodule")
CSV_COLUMNS = ("number", "tracking_uid", "region", "side", "lobe", "center_x", "center_y", "center_z", "long_mm",
               "short_mm", "mean_diameter_mm", "volume_mm3", "mean_hu", "type", "solid_mean_diameter_mm",
               "calcified", "lungrads", "lungrads_rule", "score", "edited", "source", "seg_segment")


def _private(value: str, meaning: str):
    import highdicom as hd

    return hd.sr.CodedConcept(value, SCHEME, meaning)


def _cc(code):
    import highdicom as hd

    return hd.sr.CodedConcept(*code)


CONCEPTS = {"composition": ("COMPOSITION", "Nodule composition"),
            "lungrads": ("LUNGRADS2022", "Lung-RADS v2022 category (suggested)"),
            "rule": ("LUNGRADSRULE", "Lung-RADS rule applied"),
            "solid": ("SOLIDMEANDIAM", "Solid component mean diameter"),
            "score": ("DETSCORE", "Detection score"),
            "calcification": ("CALCIFICATION", "Calcification"),
            "provenance": ("PROVENANCE", "Provenance")}


def _concept(key):
    return _private(*CONCEPTS[key])


def _lungrads(n: dict):
    from plugins.lung_nodules.lungrads import Suggestion, suggest_for

    s = n.get("lungrads")
    if isinstance(s, Suggestion):
        return s
    if isinstance(s, dict):
        return Suggestion(str(s["category"]), str(s["rule"]), s.get("size_mm"), s.get("volume_mm3"))
    return suggest_for(n)


def _numbers(nodules) -> list[int]:
    return [int(n.get("number", i + 1)) for i, n in enumerate(nodules)]


def center_lps(n: dict, volume: Volume) -> np.ndarray:
    if n.get("center_lps") is not None:
        return np.asarray(n["center_lps"], float)
    return volume.index_to_lps(np.asarray(n["center_kji"], float)[::-1])


def region(n: dict) -> str:
    return n.get("lobe") or (f"{n['side']} lung" if n.get("side") else "lung")


# ------------------------------------------------------------------------------- SEG


def nodule_segmentation(volume: Volume, nodules: list[dict], *, algorithm_name: str = "Hounsfield lung nodules",
                        algorithm_version: str = "") -> Segmentation:
    """The nodules' masks as one Segmentation on ``volume``'s grid, segment i+1 for nodule i."""
    seg = Segmentation.for_volume(volume, "Lung nodules")
    pairs = []
    for n, num in zip(nodules, _numbers(nodules), strict=True):
        edited = bool(n.get("edited"))
        s = seg.add_segment(f"Nodule {num}", category=NODULE_CATEGORY, type=NODULE_TYPE,
                            algorithm_type=AlgorithmType.SEMIAUTOMATIC if edited else AlgorithmType.AUTOMATIC,
                            algorithm_name=n.get("source") or algorithm_name, algorithm_version=algorithm_version,
                            description=region(n))
        full = np.zeros(volume.shape, bool)
        k0, k1, j0, j1, i0, i1 = n["bbox"]
        if k1 > k0:
            full[k0:k1, j0:j1, i0:i1] = n["mask"]
        pairs.append((s, full))
    add_masks(seg, pairs)
    return seg


def write_nodule_seg(volume: Volume, nodules: list[dict], path, **kw) -> tuple[str, str]:
    """Write the nodules' DICOM SEG; returns its (SOP instance UID, series instance UID)."""
    from highdicom import UID

    from viewer.core.io.seg_dicom import write_dicom_seg

    sop, series = str(UID()), str(UID())
    seg = nodule_segmentation(volume, nodules, **{k: v for k, v in kw.items() if k.startswith("algorithm")})
    write_dicom_seg(seg, volume, path, series_description="Lung nodules", model_name="Hounsfield lung nodules",
                    sop_instance_uid=sop, series_instance_uid=series, deidentifier=kw.get("deidentifier"))
    return sop, series


# ------------------------------------------------------------------------------- SR


def _group(n: dict, number: int, segment_number: int, volume: Volume, seg_uid: str, units: dict, uid: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    ms = [hd.sr.Measurement(codes.SCT.LongAxis, float(n["long_mm"]), units["mm"]),
          hd.sr.Measurement(codes.SCT.ShortAxis, float(n["short_mm"]), units["mm"]),
          hd.sr.Measurement(codes.SCT.Diameter, float(n["mean_diameter_mm"]), units["mm"], derivation=codes.SCT.Mean),
          hd.sr.Measurement(codes.SCT.Volume, round(float(n["volume_ml"]) * 1000.0, 1), units["mm3"])]
    if np.isfinite(n.get("mean_hu", np.nan)):
        ms.append(hd.sr.Measurement(codes.SCT.Mean, float(n["mean_hu"]), units["HU"]))
    if n.get("type") == "part-solid" and n.get("solid_mean_diameter_mm"):
        ms.append(hd.sr.Measurement(_concept("solid"), float(n["solid_mean_diameter_mm"]), units["mm"]))
    if n.get("score") is not None:
        ms.append(hd.sr.Measurement(_concept("score"), float(n["score"]), units["1"]))
    lr = _lungrads(n)
    quals = [hd.sr.QualitativeEvaluation(_concept("lungrads"),
                                         _private(f"LR{lr.category}", f"Lung-RADS {lr.category}"))]
    if n.get("type") in TYPE_CODES:
        quals.insert(0, hd.sr.QualitativeEvaluation(_concept("composition"),
                                                    _private(n["type"].upper(), TYPE_CODES[n["type"]])))
    if n.get("calcified"):
        quals.append(hd.sr.QualitativeEvaluation(_concept("calcification"), _cc(("237897009", "SCT", "Calcified"))))
    lobe = LOBE_CODES.get(n.get("lobe") or "")
    side = lobe[1] if lobe else n.get("side")
    site = hd.sr.FindingSite(_cc(lobe[0] if lobe else LUNG),
                             laterality=_cc(LATERALITY[side]) if side in LATERALITY else None)
    ref = hd.sr.ReferencedSegment(sop_class_uid=SEG_STORAGE, sop_instance_uid=seg_uid, segment_number=segment_number,
                                  source_series=hd.sr.SourceSeriesForSegmentation(
                                      volume.source.series_instance_uid))
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=f"Nodule {number}"),
        referenced_segment=ref, finding_type=codes.SCT.Nodule, finding_sites=[site], measurements=ms,
        qualitative_evaluations=quals)
    texts = [("rule", lr.text())]
    who = n.get("source") or "Hounsfield lung nodules"
    texts.append(("provenance", f"proposed by {who}" + ("; edited by a person" if n.get("edited") else "")))
    for key, text in texts:
        group[0].ContentSequence.append(hd.sr.TextContentItem(_concept(key), text[:1024],
                                                              relationship_type="CONTAINS"))
    return group


def build_nodule_sr(volume: Volume, nodules: list[dict], seg_uid: str, seg_series_uid: str, **kw):
    """The TID 1500 SR of ``nodules`` (their SEG: ``seg_uid`` in the series ``seg_series_uid``)."""
    from highdicom import UID

    units = {**sr_io._units(), "mm3": sr_io._unit("mm3", "cubic millimeter")}
    groups = []
    for i, (n, num) in enumerate(zip(nodules, _numbers(nodules), strict=True)):
        uid = n.get("uid") or str(UID())
        n["uid"] = uid
        groups.append(_group(n, num, i + 1, volume, seg_uid, units, uid))
    return sr_io.build_sr([], volume.source, modality=volume.modality or "CT", groups=groups,
                          seg_refs=[(seg_uid, seg_series_uid)], title=kw.get("title", "Lung nodule report"),
                          deidentifier=kw.get("deidentifier"), series_number=kw.get("series_number", 901))


# ------------------------------------------------------------------------------- CSV and all


def nodule_rows(volume: Volume, nodules: list[dict]) -> list[dict]:
    rows = []
    for i, (n, num) in enumerate(zip(nodules, _numbers(nodules), strict=True)):
        c = center_lps(n, volume)
        lr = _lungrads(n)
        rows.append({"number": num, "tracking_uid": n.get("uid", ""), "region": region(n), "side": n.get("side", ""),
                     "lobe": n.get("lobe") or "", "center_x": round(float(c[0]), 2),
                     "center_y": round(float(c[1]), 2), "center_z": round(float(c[2]), 2),
                     "long_mm": round(float(n["long_mm"]), 1), "short_mm": round(float(n["short_mm"]), 1),
                     "mean_diameter_mm": float(n["mean_diameter_mm"]),
                     "volume_mm3": int(round(float(n["volume_ml"]) * 1000.0)),
                     "mean_hu": round(float(n.get("mean_hu", np.nan)), 1), "type": n.get("type", ""),
                     "solid_mean_diameter_mm": n.get("solid_mean_diameter_mm", "") if n.get("type") == "part-solid"
                     else "", "calcified": bool(n.get("calcified")), "lungrads": lr.category,
                     "lungrads_rule": lr.rule, "score": "" if n.get("score") is None else round(float(n["score"]), 4),
                     "edited": bool(n.get("edited")), "source": n.get("source") or "Hounsfield lung nodules",
                     "seg_segment": i + 1})
    return rows


def write_nodule_csv(path, volume: Volume, nodules: list[dict]) -> Path:
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for row in nodule_rows(volume, nodules):
            w.writerow(row)
    return path


def write_nodule_report(folder, volume: Volume, nodules: list[dict], *, basename: str = "nodules",
                        deidentifier=None) -> dict[str, str]:
    """Write ``basename``.csv always, and for DICOM input ``basename``-seg.dcm (the SEG) and
    ``basename``-sr.dcm (the SR referring to it); returns {"csv": .., "seg": .., "sr": ..}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    if nodules and volume.source.sop_instance_uids:
        seg_path, sr_path = folder / f"{basename}-seg.dcm", folder / f"{basename}-sr.dcm"
        seg_uid, seg_series = write_nodule_seg(volume, nodules, seg_path, deidentifier=deidentifier)
        sr = build_nodule_sr(volume, nodules, seg_uid, seg_series, deidentifier=deidentifier)
        sr.save_as(str(sr_path), enforce_file_format=True)
        out.update(seg=str(seg_path), sr=str(sr_path))
    out["csv"] = str(write_nodule_csv(folder / f"{basename}.csv", volume, nodules))
    return out


def read_nodule_sr(path) -> list[dict]:
    """The nodule groups of an SR written here (or of the same shape) as dicts: number, uid,
    finding site and laterality, the measurements by name, composition, Lung-RADS and its rule,
    and the referenced SEG (SOP instance UID, segment number)."""
    import highdicom as hd
    import pydicom

    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(str(path)))
    out = []
    for g in sr.content.get_volumetric_roi_measurement_groups():
        d: dict = {"tracking_identifier": str(g.tracking_identifier), "uid": str(g.tracking_uid)}
        d["number"] = int(d["tracking_identifier"].rsplit(" ", 1)[-1]) if d["tracking_identifier"][-1:].isdigit() \
            else None
        sites = g.finding_sites
        if sites:
            d["finding_site"] = str(sites[0].value.meaning)
            lat = getattr(sites[0], "laterality", None)
            d["laterality"] = str(lat.meaning) if lat is not None else None
        for m in g.get_measurements():
            name = str(m.name.meaning)
            if name == "Diameter" and m.derivation is not None:
                name = f"{m.derivation.meaning} diameter"
            d[name] = float(m.value)
        for q in g.get_qualitative_evaluations():
            d[str(q.name.meaning)] = str(q.value.meaning)
        for item in g[0].ContentSequence:
            if item.ValueType == "TEXT":
                d[str(item.ConceptNameCodeSequence[0].CodeMeaning)] = str(item.TextValue)
        seg = g.referenced_segment
        if seg is not None:
            d["seg_uid"] = str(seg.referenced_sop_instance_uid)
            d["seg_segment"] = int(seg.referenced_segment_numbers[0])
        out.append(d)
    return out
