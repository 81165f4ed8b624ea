"""The lung nodule report (plugins/lung_nodules/report.py): SEG, TID 1500 SR and CSV for two nodules
on real CT slices (the chest-ct right-lung tumour), read back with pydicom/highdicom."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pydicom
import pytest

import viewer
from plugins.lung_nodules.lungrads import suggest_for
from plugins.lung_nodules.measure import measure_nodule
from plugins.lung_nodules.report import read_nodule_sr, write_nodule_report
from viewer.core.io.seg_dicom import read_dicom_seg

TUMOUR_K = (72, 86)  # chest-ct slices holding the right-lung tumour (k grows toward the head)
TUMOUR_KJI = (77, 252, 168)


@pytest.fixture(scope="module")
def slab(tmp_path_factory):
    from tests.conftest import data_path

    src = data_path("chest-ct")
    files = []
    for p in sorted(src.iterdir()):
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["ImagePositionPatient"])
        files.append((float(ds.ImagePositionPatient[2]), p))
    files.sort()
    folder = tmp_path_factory.mktemp("chest-slab")
    for _z, p in files[TUMOUR_K[0]:TUMOUR_K[1]]:
        shutil.copy(p, folder / p.name)
    return viewer.load(folder)


def test_sr_seg_and_csv_round_trip(slab, tmp_path):
    vol = slab
    assert vol.shape[0] == TUMOUR_K[1] - TUMOUR_K[0]
    hu = vol.real_values()
    sp = tuple(float(s) for s in vol.spacing[::-1])
    tumour = measure_nodule(hu, sp, (TUMOUR_KJI[0] - TUMOUR_K[0], *TUMOUR_KJI[1:]), affine=vol.affine)
    assert tumour["found"] and tumour["side"] == "right" and tumour["mean_diameter_mm"] > 15
    tumour.update(number=1, score=0.93, source="test detector 1.0", lobe="right upper lobe")
    # a second, part-solid nodule in the left lung (constructed: the report does not judge it)
    mask = np.zeros((3, 9, 9), bool)
    mask[1, 2:7, 2:7] = True
    mask[0, 3:6, 3:6] = mask[2, 3:6, 3:6] = True
    other = {"number": 2, "center_kji": [7.0, 250.0, 360.0], "bbox": (6, 9, 246, 255, 356, 365), "mask": mask,
             "long_mm": 12.3, "short_mm": 9.8, "mean_diameter_mm": 11.1, "volume_ml": 0.412, "mean_hu": -420.5,
             "type": "part-solid", "solid_mean_diameter_mm": 6.4, "calcified": False, "side": "left",
             "lobe": None, "edited": True}
    out = write_nodule_report(tmp_path, vol, [tumour, other])
    assert set(out) == {"seg", "sr", "csv"}

    groups = read_nodule_sr(out["sr"])
    assert [g["number"] for g in groups] == [1, 2]
    g1, g2 = groups
    ds = pydicom.dcmread(out["sr"])
    seg_ds = pydicom.dcmread(out["seg"])
    assert g1["seg_uid"] == g2["seg_uid"] == str(seg_ds.SOPInstanceUID)
    assert (g1["seg_segment"], g2["seg_segment"]) == (1, 2)
    evidence = {str(s.ReferencedSOPInstanceUID) for st in ds.CurrentRequestedProcedureEvidenceSequence
                for se in st.ReferencedSeriesSequence for s in se.ReferencedSOPSequence}
    assert str(seg_ds.SOPInstanceUID) in evidence and set(vol.source.sop_instance_uids) <= evidence
    assert ds.StudyInstanceUID == vol.source.study_instance_uid == seg_ds.StudyInstanceUID
    # every value is found again
    assert g1["Long axis"] == pytest.approx(tumour["long_mm"]) and g1["Short axis"] == pytest.approx(tumour["short_mm"])
    assert g1["Mean diameter"] == pytest.approx(tumour["mean_diameter_mm"])
    assert g1["Volume"] == pytest.approx(tumour["volume_ml"] * 1000, abs=0.1)
    assert g1["Mean"] == pytest.approx(tumour["mean_hu"])
    assert g1["Detection score"] == pytest.approx(0.93)
    assert g1["finding_site"] == "Upper lobe of lung" and g1["laterality"] == "Right"
    assert g1["Nodule composition"] == "Solid"
    lr1 = suggest_for(tumour)
    assert g1["Lung-RADS v2022 category (suggested)"] == f"Lung-RADS {lr1.category}" == "Lung-RADS 4B"
    assert lr1.rule in g1["Lung-RADS rule applied"]
    assert "test detector 1.0" in g1["Provenance"] and "edited" not in g1["Provenance"]
    assert g2["finding_site"] == "Lung" and g2["laterality"] == "Left"
    assert g2["Nodule composition"] == "Part-solid" and g2["Solid component mean diameter"] == pytest.approx(6.4)
    assert g2["Lung-RADS v2022 category (suggested)"] == "Lung-RADS 4A"  # solid component 6-8 mm
    assert g2["Volume"] == pytest.approx(412.0) and "edited by a person" in g2["Provenance"]
    assert g2["uid"] == other["uid"] and g1["uid"] != g2["uid"]

    # the SEG holds the two masks where they were, on the slab's grid
    seg = read_dicom_seg(out["seg"], vol)
    assert [s.name for s in seg.segments] == ["Nodule 1", "Nodule 2"]
    m1 = seg.layers[seg.segment(1).layer] == 1
    k0, k1, j0, j1, i0, i1 = tumour["bbox"]
    assert m1.sum() == tumour["mask"].sum() and np.array_equal(m1[k0:k1, j0:j1, i0:i1], tumour["mask"])
    assert (seg.layers[seg.segment(2).layer] == 2).sum() == mask.sum()

    with open(out["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["number"] for r in rows] == ["1", "2"]
    assert rows[0]["lungrads"] == lr1.category and rows[1]["lungrads"] == "4A"
    assert float(rows[0]["mean_diameter_mm"]) == tumour["mean_diameter_mm"] and rows[1]["region"] == "left lung"
    assert float(rows[0]["center_x"]) < 0 and rows[1]["edited"] == "True"
