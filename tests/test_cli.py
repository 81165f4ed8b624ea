"""The ``hounsfield`` command line: info (text and JSON), convert, and bad input."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from tests import dicom_factory as F
from tests.conftest import REPO, data_path
from viewer.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "viewer.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=os.environ.copy())


def assert_one_sentence_error(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("hounsfield: ")
    assert "Traceback" not in stderr
    assert lines[0].rstrip().endswith("."), lines[0]


# ---------------------------------------------------------------------------------- info


def test_info_text_on_generated_study(tmp_path, capsys):
    ws = F.write_series(tmp_path, F.phantom((9, 24, 32)), F.axial(spacing=(0.5, 0.75, 3.0)),
                        series_number=4, omit=[4])
    F.write_non_image(tmp_path, "SR", study_uid=ws.study_uid)
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Test^Hounsfield" in out and "HF-0001" in out
    assert "Series 4 CT" in out
    assert "8 images, 32x24x9, 0.5 x 0.75 x 3 mm, LPS" in out  # depth 9 keeps the missing slot
    assert "missing" in out  # the gap is a warning
    assert "Comprehensive SR Storage" in out
    assert ws.series_uid in out


def test_info_json_on_generated_study(tmp_path, capsys):
    grid = F.axial(tilt_degrees=12.0)
    ws = F.write_series(tmp_path, F.phantom((6, 16, 20)), grid, modality="CT")
    F.write_not_dicom(tmp_path, "junk.bin")
    assert main(["info", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["path"] == str(tmp_path)
    assert data["non_dicom_files"] == 1 and data["unreadable_files"] == []
    [patient] = data["patients"]
    [study] = patient["studies"]
    assert study["uid"] == ws.study_uid
    [series] = study["series"]
    assert series["uid"] == series["id"] == ws.series_uid
    assert series["images"] == 6 and series["files"] == 6
    assert series["dimensions"] == [20, 16, 6]
    np.testing.assert_allclose(series["spacing_mm"], np.linalg.norm(grid.affine[:3, :3], axis=0), atol=1e-3)
    assert series["orientation"] == "LPS"
    np.testing.assert_allclose(series["origin_lps_mm"], grid.origin, atol=1e-3)
    assert series["gantry_tilt_degrees"] == pytest.approx(12.0, abs=1e-3)
    assert any("tilt" in w for w in series["warnings"])


def test_info_json_on_real_chest_ct(chest_ct_dir):
    proc = run_cli("info", str(chest_ct_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    series = [s for p in data["patients"] for st in p["studies"] for s in st["series"]]
    assert len(series) == 1
    s = series[0]
    assert s["modality"] == "CT" and s["images"] == 141
    assert s["dimensions"] == [512, 512, 141]
    np.testing.assert_allclose(s["spacing_mm"], [0.9766, 0.9766, 2.0], atol=1e-4)
    assert s["orientation"] == "LPS" and s["warnings"] == []


def test_info_on_a_volume_file(tmp_path, capsys):
    path = data_path("brain-tumor-mr", "brain1_image.nrrd")
    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["volume"]["dimensions"] == [256, 256, 25]
    np.testing.assert_allclose(data["volume"]["spacing_mm"], [0.7813, 0.7813, 6.5], atol=1e-3)
    assert main(["info", str(path)]) == 0
    assert "256x256x25" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- convert


def test_convert_real_chest_ct_matches_simpleitk(chest_ct_dir, tmp_path):
    out = tmp_path / "chest.nii"
    proc = run_cli("convert", str(chest_ct_dir), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "512x512x141 int16" in proc.stdout
    assert "Traceback" not in proc.stderr
    written = sitk.ReadImage(str(out))
    reference = F.sitk_series(chest_ct_dir)  # SimpleITK's own reading of the DICOM files
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(written.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(written.GetSpacing(), reference.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(written.GetDirection(), reference.GetDirection(), atol=1e-6)
    assert sitk.GetArrayFromImage(written).dtype == np.int16


def test_convert_series_by_id_and_tilt_note(tmp_path, capsys):
    s1, s2 = F.phantom((8, 16, 16), seed=1), F.phantom((8, 16, 16), seed=2)
    a = F.write_series(tmp_path / "in", s1, F.axial(tilt_degrees=10), acquisition_number=1, prefix="A")
    F.write_series(tmp_path / "in", s2, F.axial(tilt_degrees=10), acquisition_number=2, prefix="B",
                   series_uid=a.series_uid, study_uid=a.study_uid, frame_uid=a.frame_uid)
    out = tmp_path / "second.nrrd"
    assert main(["convert", str(tmp_path / "in"), str(out), "--series", f"{a.series_uid}:2"]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out
    assert "tilt" in captured.err and "resampled" in captured.err
    image = sitk.ReadImage(str(out))
    # slice 0 is not moved by the tilt correction: it is acquisition 2's first slice
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[0], s2[0].astype(np.int32) - 1024)


# ---------------------------------------------------------------------------------- bad input


def test_missing_path_exits_2_with_one_sentence(tmp_path):
    proc = run_cli("info", str(tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert_one_sentence_error(proc.stderr)
    assert proc.stdout == ""


@pytest.mark.parametrize("case", ["empty", "only-sr", "not-dicom", "truncated", "undecodable", "bad-series",
                                  "bad-suffix", "bad-volume"])
def test_convert_bad_input_exits_2(tmp_path, capsys, case):
    src = tmp_path / "in"
    src.mkdir()
    out = tmp_path / "out.nii.gz"
    args = ["convert", str(src), str(out)]
    if case == "only-sr":
        F.write_non_image(src, "SR")
    elif case == "not-dicom":
        F.write_not_dicom(src, "a.dcm")
    elif case == "truncated":
        ws = F.write_series(src, F.phantom((1, 16, 16)), F.axial())
        F.truncate(ws.paths[0], 600)
    elif case == "undecodable":
        ws = F.write_series(src, F.phantom((2, 16, 16)), F.axial())
        for p in ws.files:
            F.make_undecodable(p)
    elif case == "bad-series":
        F.write_series(src, F.phantom((2, 16, 16)), F.axial())
        args += ["--series", "9.9.9"]
    elif case == "bad-suffix":
        F.write_series(src, F.phantom((2, 16, 16)), F.axial())
        args[2] = str(tmp_path / "out.png")
    elif case == "bad-volume":
        (tmp_path / "bad.nii").write_bytes(b"definitely not nifti")
        args[1] = str(tmp_path / "bad.nii")
    assert main(args) == 2
    captured = capsys.readouterr()
    assert_one_sentence_error(captured.err)
    assert not out.exists()


def test_convert_checks_the_output_name_before_loading(tmp_path, capsys, monkeypatch):
    import viewer

    def no_load(*_a, **_k):
        raise AssertionError("the study was loaded although the output name was refused")

    monkeypatch.setattr(viewer, "load", no_load)
    assert main(["convert", str(tmp_path), str(tmp_path / "out.jpg")]) == 2
    err = capsys.readouterr().err
    assert_one_sentence_error(err)
    assert ".nii" in err


def test_info_on_missing_volume_file_exits_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "absent.nii.gz")]) == 2
    assert_one_sentence_error(capsys.readouterr().err)


def test_bad_input_through_the_real_entry_point(tmp_path):
    F.write_non_image(tmp_path, "SR")
    proc = run_cli("convert", str(tmp_path), str(tmp_path / "x.nii"))
    assert proc.returncode == 2
    assert_one_sentence_error(proc.stderr)
    assert "SR" in proc.stderr


def test_unexpected_errors_are_logged_not_shown(tmp_path, capsys, monkeypatch):
    import viewer.info

    def boom(*_a, **_k):
        raise RuntimeError("internal detail that must not reach the user")

    monkeypatch.setattr(viewer.info, "print_info", boom)
    assert main(["info", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal detail" not in err
    assert len(err.strip().splitlines()) == 1
    log_dir = os.environ["HOUNSFIELD_LOG_DIR"]
    with open(os.path.join(log_dir, "hounsfield.log")) as fh:
        assert "internal detail that must not reach the user" in fh.read()


def test_info_on_an_empty_folder_exits_2(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "No DICOM files were found" in err and "\n" not in err


# ---------------------------------------------------------------------------------- issue 12, item 12


def _run_isolated(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """The real entry point in a fresh process with its own data and log folders."""
    env = {**os.environ, "HOUNSFIELD_DATA_DIR": str(tmp_path / "data"), "HOUNSFIELD_LOG_DIR": str(tmp_path / "log")}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([sys.executable, "-m", "viewer.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=env)


def test_info_on_a_single_unreadable_file_exits_2_like_convert(tmp_path):
    ws = F.write_series(tmp_path / "in", F.phantom((1, 16, 16)), F.axial())
    F.truncate(ws.paths[0], 600)
    for args in (["info", ws.paths[0]], ["info", ws.paths[0], "--json"], ["convert", ws.paths[0],
                                                                          str(tmp_path / "x.nii")]):
        proc = _run_isolated(tmp_path, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert_one_sentence_error(proc.stderr)
        assert proc.stdout == ""


def test_info_on_a_folder_of_only_unreadable_files_exits_2(tmp_path, capsys):
    ws = F.write_series(tmp_path, F.phantom((2, 16, 16)), F.axial())
    for p in ws.files:
        F.truncate(p, 600)
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert_one_sentence_error(err)
    assert "could not be read" in err


def test_pydicom_warnings_go_to_the_log_not_beside_the_sentence(tmp_path):
    """A damaged DICOMDIR makes pydicom warn ("Expected explicit VR..."): stderr keeps one sentence."""
    bad = tmp_path / "DICOMDIR"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00garbage")
    for args in (["info", str(bad)], ["convert", str(bad), str(tmp_path / "x.nii")]):
        proc = _run_isolated(tmp_path, *args)
        assert proc.returncode == 2, proc.stderr
        assert_one_sentence_error(proc.stderr)
        assert "Warning" not in proc.stderr
    with open(tmp_path / "log" / "hounsfield.log") as fh:
        assert "Expected explicit VR" in fh.read()  # kept where a developer looks, not lost


def test_info_prints_a_folder_whose_name_is_not_utf8(tmp_path):
    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/\xe9tude")
    ws = F.write_series(folder, F.phantom((2, 16, 16)), F.axial())
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", "info", folder], cwd=REPO, capture_output=True,
                          timeout=120, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0, proc.stderr
    assert os.fsencode(folder) in proc.stdout  # the name as it is on disk
    assert ws.series_uid.encode() in proc.stdout


def test_info_piped_into_a_reader_that_stops_early_is_quiet(chest_ct_dir):
    """`hounsfield info DIR | head -1`: the closed pipe is the reader's choice, not an error to report."""
    prog = "import sys; from viewer.cli import main; sys.exit(main())"
    cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(prog)} info {shlex.quote(str(chest_ct_dir))} | true"
    run = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert run.stderr == ""
    assert run.returncode == 0
