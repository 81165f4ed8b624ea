"""The Workspace: a whole reading session headless through the public API on the real chest CT
(open, paint with undo, measure, apply a plugin's results, export SEG + SR, reopen and see it all
come back), the README's example as written, and the light ``import viewer``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, data_path


@pytest.fixture
def fresh_data_dir(tmp_path, monkeypatch):
    """The journal folder and the measurement store of this test alone."""
    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def plugin_results(volume):
    """What a detection + segmentation plugin returns: a label map on the input's grid, detections in
    LPS mm, a probability heatmap, and the provenance the host adds."""
    from viewer.ai.api import Detection, Heatmap, LabelMap, Results, Segment

    hu = volume.real_values()
    labels = np.zeros(volume.shape, np.uint8)
    k0 = volume.shape[0] // 2
    labels[k0 - 5:k0 + 5, 200:320, 200:320] = (hu[k0 - 5:k0 + 5, 200:320, 200:320] > 200).astype(np.uint8)
    assert labels.any()
    centre = volume.index_to_lps([260, 260, k0])
    prob = np.zeros(volume.shape, np.float32)
    prob[k0 - 2:k0 + 2, 250:270, 250:270] = 0.9
    return Results(label_maps=[LabelMap(labels, volume.affine.copy(), [Segment(1, "Bone", (240, 240, 200),
                                                                                code=("SCT", "3138006", "Bone"))],
                                        name="bones")],
                   detections=[Detection(tuple(centre), (8.0, 8.0, 6.0), 0.87, "nodule", "solid"),
                               Detection(tuple(centre + [40, 0, 0]), (5.0, 5.0, 4.0), 0.42, "nodule")],
                   heatmaps=[Heatmap(prob, volume.affine.copy(), "nodule probability", kind="probability")],
                   notes=["a test run"],
                   provenance={"plugin_id": "test-detector", "plugin_name": "Test detector", "plugin_version": "1.2"})


def test_a_whole_reading_session_headless_comes_back_when_the_study_is_reopened(fresh_data_dir, tmp_path):
    import viewer
    from viewer.core.io.sr import read_sr

    study = data_path("chest-ct")
    ws = viewer.Workspace()
    s = ws.open(study)
    vol = s.volume
    assert s.overlays == [] and s.derived_from is None and ws.current is s
    centre = vol.index_to_lps([256, 256, vol.shape[0] // 2])

    # paint with undo and redo
    manual = s.segmentation()
    assert s.segmentation() is manual  # the one being edited, not a new one
    tumour = manual.add_segment("Tumour")
    assert manual.brush(centre, 10.0, segment="Tumour")
    one = manual.mask(tumour).copy()
    assert manual.brush(centre + [0, 0, 8.0], 6.0, segment=tumour.number)
    two = manual.mask(tumour).copy()
    assert two.sum() > one.sum() > 0
    assert manual.undo() and np.array_equal(manual.mask(tumour), one)
    assert manual.redo() and np.array_equal(manual.mask(tumour), two)

    # measure: a ruler and an ellipse ROI, computed and saved at once
    ruler = s.measure("length", centre, centre + [30.0, 0, 0], label="ruler")
    roi = s.measure("ellipse", centre, centre + [10.0, 0, 0], centre + [0, 8.0, 0])
    assert ruler.values["length_mm"] == pytest.approx(30.0)
    assert roi.values["count"] > 0 and "mean" in roi.values
    assert [m.uid for m in s.measurements] == [ruler.uid, roi.uid]

    # a plugin's results: overlays in ONE undoable step, the model's original kept
    results = plugin_results(vol)
    before = list(s.overlays)
    step = ws.apply(results, series=s)
    assert len(s.overlays) == len(before) + 3
    assert len(s.heatmaps) == 1 and len(s.marker_sets) == 1 and len(s.marker_sets[0].markers) == 2
    assert s.heatmaps[0].unit == "probability"
    assert ws.undo() and s.overlays == before
    assert ws.redo() and len(s.overlays) == len(before) + 3
    ai = step.segmentations[0]
    assert ai in s.overlays and s.segmentation() is ai
    bone = ai.segment("Bone")
    assert bone.algorithm_type == "AUTOMATIC" and bone.algorithm_name == "Test detector"
    assert np.array_equal(ai.label_map(), results.label_maps[0].array)
    bone_voxel = np.argwhere(results.label_maps[0].array)[0][::-1]  # (i, j, k)
    assert ai.brush(vol.index_to_lps(bone_voxel), 6.0, segment="Bone", erase=True)
    assert bone.algorithm_type == "SEMIAUTOMATIC"  # a person edited the model's segment
    assert np.array_equal(ai.original, results.label_maps[0].array)  # ... and its original stays
    assert not np.array_equal(ai.label_map(), ai.original)

    # export the manual segmentation as DICOM SEG with the measurements as SR
    out = ws.export(tmp_path / "export", series=s, segmentation=manual)
    assert len(out["seg"]) == 1 and len(out["sr"]) == 1 and Path(out["csv"][0]).is_file()
    exported = manual.label_map().copy()
    assert len(read_sr(out["sr"][0], vol)) >= 2
    # one more stroke after the export: only the journal has it
    assert manual.brush(centre + [20.0, 0, 0], 5.0, segment="Tumour")
    unsaved = manual.label_map().copy()
    ws.close()

    # a new workspace on the same study: measurements from the store, segmentations from the journal
    # (what was not exported) and from the exported SEG
    ws2 = viewer.Workspace()
    s2 = ws2.open(study)
    assert [(m.uid, m.kind, m.label) for m in s2.measurements] == [(ruler.uid, "length", "ruler"),
                                                                   (roi.uid, "ellipse", "")]
    assert s2.measurements[0].values["length_mm"] == pytest.approx(30.0)
    assert s2.measurements[1].values["mean"] == pytest.approx(roi.values["mean"])
    offered = {tuple(r.segments): r for r in s2.recoverable()}
    assert set(offered) == {("Tumour",), ("Bone",)}
    restored = s2.restore(offered[("Tumour",)])
    assert np.array_equal(restored.label_map(), unsaved)
    assert restored.segment("Tumour").name == "Tumour"
    again = s2.restore(offered[("Bone",)])
    assert again.segment("Bone").algorithm_type == "SEMIAUTOMATIC"
    imported = s2.import_segmentation(out["seg"][0])
    assert np.array_equal(imported.label_map(), exported)
    assert s2.recoverable() == []  # both are open now
    # the restored one edits on, with undo
    assert restored.brush(centre - [20.0, 0, 0], 5.0, segment="Tumour") and restored.undo()
    assert np.array_equal(restored.label_map(), unsaved)
    ws2.close()


def test_saved_measurements_are_loaded_before_a_new_one_is_added(fresh_data_dir):
    """Adding a measurement to a reopened series keeps the saved ones (the bug of the empty list
    created before the store was read)."""
    import viewer
    from viewer.core.measurement_store import load_measurements

    vol = viewer.demo_volume()
    ws = viewer.Workspace()
    s = ws.add(vol)
    c = vol.index_to_lps([n // 2 for n in vol.shape[::-1]])
    first = s.measure("length", c, c + [10.0, 0, 0])
    ws.close()
    s2 = viewer.Workspace().add(vol)
    second = s2.measure("length", c, c + [0, 20.0, 0])
    assert [m.uid for m in load_measurements(vol.source.series_instance_uid)] == [first.uid, second.uid]


def test_two_windows_on_one_series_keep_each_others_measurements(fresh_data_dir):
    """Two workspaces (two windows, or two viewers) on the same series: each save leaves the other's
    measurements on disk, a deletion in one removes only that one, and reopening shows them all."""
    import viewer
    from viewer.core.measurement_store import load_measurements

    vol = viewer.demo_volume()
    uid = vol.source.series_instance_uid
    c = vol.index_to_lps([n // 2 for n in vol.shape[::-1]])
    a, b = viewer.Workspace().add(vol), viewer.Workspace().add(vol)
    ma = a.measure("length", c, c + [10.0, 0, 0])
    mb = b.measure("length", c, c + [0, 20.0, 0])  # b never saw ma: it must not drop it
    assert {m.uid for m in load_measurements(uid)} == {ma.uid, mb.uid}
    ma2 = a.measure("point", c)
    assert {m.uid for m in load_measurements(uid)} == {ma.uid, mb.uid, ma2.uid}
    b.remove_overlay(mb)  # b deletes its own: a's stay
    assert {m.uid for m in load_measurements(uid)} == {ma.uid, ma2.uid}
    a.measurement_changed(ma)  # a saves again: b's deletion holds (a never had mb)
    assert {m.uid for m in load_measurements(uid)} == {ma.uid, ma2.uid}
    assert {m.uid for m in viewer.Workspace().add(vol).measurements} == {ma.uid, ma2.uid}


def test_a_measurement_save_that_fails_is_said_once_and_loses_nothing(fresh_data_dir):
    """The store cannot be written (here: its file name is taken by a folder): the workspace says so
    in one sentence, once, keeps the measurements in the list, and says when saving works again."""
    import os
    import shutil

    import viewer
    from viewer.core.measurement_store import load_measurements, store_path

    vol = viewer.demo_volume()
    ws = viewer.Workspace()
    said: list[str] = []
    ws.save_failed.connect(said.append)
    s = ws.add(vol)
    c = vol.index_to_lps([n // 2 for n in vol.shape[::-1]])
    os.makedirs(store_path())  # a folder where the file goes: the rename fails with a real OSError
    m1 = s.measure("length", c, c + [10.0, 0, 0])
    m2 = s.measure("point", c)
    assert len(said) == 1 and said[0].startswith("The measurements could not be saved (")
    assert said[0].count(".") >= 1 and "\n" not in said[0]
    assert [m.uid for m in s.measurements] == [m1.uid, m2.uid]  # nothing lost in the window
    assert not [f for f in os.listdir(os.path.dirname(store_path())) if f.startswith(".measurements-")]
    shutil.rmtree(store_path())
    s.measurement_changed(m1)  # the next change saves everything, and says so
    assert said[1:] == [""]
    assert [m.uid for m in load_measurements(vol.source.series_instance_uid)] == [m1.uid, m2.uid]


def test_the_workspace_holds_the_one_tool_registry_and_the_settings():
    import viewer
    from viewer.core.tools import REGISTRY, ToolRegistry, default_tools

    assert viewer.Workspace().tools is REGISTRY
    ws = viewer.Workspace(tools=ToolRegistry(default_tools()))  # a registry of its own: the shared one stays as is
    assert {"wl", "seg_brush", "measure_length", "marker"} <= set(ws.tools.names())
    assert ws.tools.names("measure")[0] == "measure_length"
    ws.tools.register("seg_smooth", "smooth", "segment")
    assert "seg_smooth" in ws.tools and ws.tools["seg_smooth"].group == "segment"
    assert ws.settings.brush_mm == 5.0


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Public API"):]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    return next(b for b in blocks if "viewer.Workspace()" in b)


def test_the_readme_headless_example_runs_as_written(fresh_data_dir, tmp_path):
    code = _readme_example()
    assert '"/data/study"' in code and '"/data/out"' in code  # the placeholders this test replaces
    code = code.replace('"/data/study"', repr(str(data_path("chest-ct")))).replace('"/data/out"',
                                                                                   repr(str(tmp_path / "out")))
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 (the documented example, as written)
    assert ns["ruler"].values["length_mm"] == pytest.approx(30.0)
    assert ns["seg"].mask("Tumour").any()
    assert Path(ns["files"]["seg"][0]).is_file() and Path(ns["files"]["sr"][0]).is_file()


def test_import_viewer_and_its_workspace_stay_light():
    code = ("import sys, viewer; viewer.Workspace; import viewer.core.workspace, viewer.core.ai_results; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'PySide6', 'vtk', 'vtkmodules'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_the_real_denoiser_run_headless_is_applied_as_one_undoable_step(fresh_data_dir):
    """viewer.ai runs the built-in denoiser in its worker process on a 16-slice slab of the chest CT;
    the Workspace turns its Results into a derived series linked to the slab and a heatmap on it."""
    import viewer
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost
    from viewer.core.volume import Volume

    full = viewer.load(data_path("chest-ct"))
    k0 = full.shape[0] // 2
    affine = full.affine.copy()
    affine[:3, 3] = full.index_to_lps([0, 0, k0])
    slab = Volume(np.ascontiguousarray(full.array[k0:k0 + 16]), affine, modality=full.modality, units=full.units,
                  window=full.window, source=full.source)
    host = AIHost(Registry(), device="cpu", threads=2, stall_timeout=120)
    try:
        results = host.run("ct-denoising", slab, {"dose": 0.0, "heatmap": True, "ensemble": 2}).result()
    finally:
        host.shutdown()
    ws = viewer.Workspace()
    s = ws.add(slab)
    step = ws.apply(results, series=s)
    (derived,) = step.derived
    assert derived.derived_from is s and ws.series[derived.key] is derived and ws.current is s
    assert derived.volume.shape == slab.shape and np.allclose(derived.volume.affine, slab.affine)
    assert derived.volume.source.frame_of_reference_uid == slab.source.frame_of_reference_uid
    assert derived.volume.source.series_instance_uid != slab.source.series_instance_uid
    assert not np.array_equal(derived.volume.array, slab.array)  # it did denoise
    # the run line says what dose 0 stood for (the noise it measured), not "dose 0"
    assert step.summary().startswith("dose measured, noise ") and ", ensemble 2, heatmap on" in step.summary()
    (heat,) = s.heatmaps
    assert heat.volume.shape == slab.shape and heat.provenance.startswith("CT denoising")
    assert ws.undo() and s.overlays == [] and list(ws.series) == [s.key]
    assert ws.redo() and len(s.heatmaps) == 1 and len(ws.series) == 2
    ws.close()


def test_export_writes_only_the_files_asked_for_and_never_creates_the_others(fresh_data_dir, tmp_path,
                                                                               monkeypatch):
    """sr=False writes no SR and never makes one to delete it afterwards (likewise csv=False and the
    tables); a de-identified SEG + SR export keeps the SR's reference to the SEG right."""
    import pydicom

    import viewer
    from viewer.core.io import sr as sr_module
    from viewer.core.io import tables

    written = []  # every SR, CSV and JSON the export writes (the real writers, called through)
    for module, name in ((sr_module, "write_sr"), (tables, "write_csv"), (tables, "write_json")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda path, *a, _real=real, _name=name, **k: (
            written.append((_name, str(path))), _real(path, *a, **k))[1])

    ws = viewer.Workspace()
    s = ws.open(data_path("chest-ct"))
    centre = s.volume.index_to_lps([256, 256, s.volume.shape[0] // 2])
    seg = s.segmentation()
    seg.add_segment("Tumour")
    assert seg.brush(centre, 8.0, segment="Tumour")
    s.measure("length", centre, centre + [20.0, 0, 0], label="ruler")

    def files(folder):
        return sorted(p.name for p in folder.iterdir())

    out = ws.export(tmp_path / "no-sr", series=s, sr=False)
    assert files(tmp_path / "no-sr") == ["measurements-segmentation.dcm", "measurements.csv", "measurements.json"]
    assert sorted(k for k, v in out.items() if v) == ["csv", "json", "seg"]
    assert [n for n, _ in written] == ["write_csv", "write_json"]  # no SR was ever written

    written.clear()
    out = ws.export(tmp_path / "no-tables", series=s, csv=False, deidentify=True)
    assert files(tmp_path / "no-tables") == ["measurements-segmentation.dcm", "measurements.dcm"]
    assert [n for n, _ in written] == ["write_sr"]  # no table was ever written
    seg_ds = pydicom.dcmread(out["seg"][0])
    sr_ds = pydicom.dcmread(out["sr"][0])
    assert seg_ds.PatientID == sr_ds.PatientID != s.volume.source.patient_id  # one de-identification
    assert seg_ds.SOPInstanceUID in {str(v) for v in _uids(sr_ds)}  # the SR still refers to the SEG

    written.clear()
    out = ws.export(tmp_path / "seg-only", series=s, sr=False, csv=False)
    assert files(tmp_path / "seg-only") == ["measurements-segmentation.dcm"] and written == []
    ws.close()


def _uids(ds):
    """Every UID value anywhere in ``ds``."""
    for elem in ds.iterall():
        if elem.VR == "UI":
            yield elem.value
