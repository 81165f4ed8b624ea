"""``hounsfield run``: headless runs write NIfTI, DICOM SEG and JSON; errors are one sentence."""

from __future__ import annotations

import json

import numpy as np
import pytest

import viewer
from tests.ai.conftest import threshold_torchscript, write_descriptor
from tests.conftest import data_path
from viewer.cli import main


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    threshold_torchscript(folder / "threshold.ts")
    write_descriptor(folder / "threshold.ts", id="threshold", roi_size=[64, 64, 3])
    return folder


def test_run_segmentation_on_dicom_writes_nifti_seg_and_json(models, tmp_path, capsys):
    import highdicom as hd

    src = data_path("dicom-objects", "dcmqi-liver", "ct-3slice")
    out = tmp_path / "out"
    code = main(["run", "threshold", str(src), "--out", str(out), "--models", str(models), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote" in captured.out
    manifest = json.loads((out / "results.json").read_text())
    entry = next(r for r in manifest["results"] if r["kind"] == "label_map")
    ct = viewer.load(src)
    labels = viewer.load(out / entry["file"])
    assert labels.shape == ct.shape
    np.testing.assert_allclose(labels.affine, ct.affine, atol=1e-4)
    expected = ct.array > 0
    assert np.mean(labels.array.astype(bool) == expected) > 0.9999
    segments = json.loads((out / entry["segments"]).read_text())
    assert [s["name"] for s in segments] == ["above 0 HU"]
    # the DICOM SEG references the source series and holds the same masks, frame by frame
    seg = hd.seg.segread(out / entry["dicom_seg"])
    assert seg.number_of_segments == 1
    assert seg.get_segment_description(1).segment_label == "above 0 HU"
    ref_series = {s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence}
    assert ref_series == {ct.source.series_instance_uid}
    sops = list(ct.source.sop_instance_uids)
    import pydicom

    by_k = {}
    for f in src.iterdir():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        k = int(round(ct.lps_to_index([float(v) for v in ds.ImagePositionPatient])[2]))
        by_k[k] = ds.SOPInstanceUID
    assert set(by_k.values()) == set(sops)
    for k, uid in by_k.items():
        mask = seg.get_pixels_by_source_instance([uid], segment_numbers=[1],
                                                 assert_missing_frames_are_empty=True)[0, :, :, 0]
        assert np.array_equal(mask.astype(bool), expected[k])
    heat = next(r for r in manifest["results"] if r["kind"] == "heatmap")
    assert heat["explains"] == "probability"
    assert manifest["provenance"]["edited_by_person"] is False


def test_list_shows_builtins_and_models(models, capsys):
    assert main(["run", "--list", "--models", str(models)]) == 0
    out = capsys.readouterr().out
    assert "ct-denoising" in out and "threshold" in out and "segmentation" in out


@pytest.mark.parametrize("args, needle", [
    (["run", "no-such-plugin", "x", "--out", "y"], "There is no AI plugin"),
    (["run", "ct-denoising"], "Give a plugin, an input and an output folder"),
    (["run", "ct-denoising", "/nonexistent/scan", "--out", "/tmp/o", "--param", "dose"], "must look like name=value"),
    (["run", "ct-denoising", "/nonexistent/scan", "--out", "/tmp/o"], "There is no file or folder"),
    (["run", "ct-denoising", "/nonexistent/scan", "--out", "/tmp/o", "--param", "strength=2"], "no parameter"),
])
def test_bad_input_is_one_sentence_exit_2(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hounsfield: ") and needle in err and "\n" not in err and "Traceback" not in err


def test_plugin_refusing_the_input_modality(models, capsys):
    mr = data_path("flair-lesion", "FLAIR.nii.gz")  # a NIfTI says no modality: read as OT; the denoiser takes CT
    assert viewer.load(mr).modality == "OT"
    assert main(["run", "ct-denoising", str(mr), "--out", "/tmp/never-written"]) == 2
    err = capsys.readouterr().err.strip()  # a file without a modality: the sentence says how to give one
    assert "FLAIR.nii.gz does not say what it is; add --modality CT to say which it is." in err and "\n" not in err
    assert main(["run", "ct-denoising", str(mr), "--modality", "MR", "--out", "/tmp/never-written"]) == 2
    err = capsys.readouterr().err
    assert "cannot run on this image" in err and "accepts CT images, not MR" in err


def test_an_output_folder_it_cannot_write_is_said_before_the_model_runs(models, tmp_path, capsys, monkeypatch):
    """Before, the model ran first (70 s for the denoiser on 30 chest CT slices) and only then did a
    full disk say 'an unexpected error stopped the command (OSError)'."""
    import tempfile

    import viewer.ai.host

    def no_run(*_a, **_k):
        raise AssertionError("the model was started for an output folder that cannot be written")

    monkeypatch.setattr(viewer.ai.host, "AIHost", no_run)
    src = data_path("dicom-objects", "dcmqi-liver", "ct-3slice")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main(["run", "threshold", str(src), "--out", str(a_file / "out"), "--models", str(models)]) == 2
    err = capsys.readouterr().err.strip()
    assert "could not be created" in err and "\n" not in err
    real = tempfile.NamedTemporaryFile

    def on_a_full_disk(*a, **k):  # every write fails as on a full disk (root writes in read-only folders)
        f = real(*a, **k)
        f.write = lambda _b: (_ for _ in ()).throw(OSError(28, "No space left on device"))
        return f

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", on_a_full_disk)
    assert main(["run", "threshold", str(src), "--out", str(tmp_path / "out"), "--models", str(models)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Nothing can be written in the output folder" in err and "No space left" in err and "\n" not in err


def test_a_click_off_the_image_is_said_with_the_image_extent_before_the_run(tmp_path, capsys, monkeypatch):
    """--point 9999,0,0 (a typo, or the wrong sign) was dropped by the host and the plugin then said
    'Lesion segmentation needs a click on the lesion (--point X,Y,Z)...' although one was given."""
    import viewer.ai.host

    def no_run(*_a, **_k):
        raise AssertionError("the plugin was started without a prompt inside the image")

    monkeypatch.setattr(viewer.ai.host, "AIHost", no_run)
    src = data_path("dicom-objects", "dcmqi-liver", "ct-3slice")
    code = main(["run", "lesion-segmentation", str(src), "--out", str(tmp_path / "o"), "--point", "9999,0,0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "No --point or --box lies inside the image, which spans x " in err and "\n" not in err, err
    assert not (tmp_path / "o").exists()
