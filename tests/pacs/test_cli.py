"""``hounsfield pacs ...`` for scripting: nodes, echo, query, get, send; errors exit 2 with one line."""

from __future__ import annotations

import json

import pytest

from tests.pacs.helpers import assert_one_sentence, assert_same_volume
from tests.pacs.objects import ct_slices, make_seg
from viewer.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_node_management(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOUNSFIELD_CONFIG_DIR", str(tmp_path / "cfg"))
    assert run(capsys, "pacs", "node", "add", "main", "--aet", "PACS", "--host", "10.0.0.5", "--port", "104",
               "--retrieve", "C-MOVE")[0] == 0
    assert run(capsys, "pacs", "node", "add", "web", "--url", "https://pacs/dicom-web", "--user", "u",
               "--password", "p")[0] == 0
    code, out, _ = run(capsys, "pacs", "node", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and [n["name"] for n in listed["nodes"]] == ["main", "web"]
    assert "password" not in listed["nodes"][1]  # secrets stay in the file
    code, _, err = run(capsys, "pacs", "node", "add", "main", "--aet", "PACS", "--host", "h")
    assert code == 2 and err.startswith("hounsfield: ") and err.count("\n") == 1
    assert run(capsys, "pacs", "local", "--aet", "READER7", "--port", "11200")[1].strip() == \
        "READER7 (storage port 11200)"
    assert run(capsys, "pacs", "node", "remove", "web")[0] == 0
    assert [n["name"] for n in json.loads(run(capsys, "pacs", "node", "list", "--json")[1])["nodes"]] == ["main"]


def test_echo_query_get(orthanc, data_dir, capsys):
    code, out, _ = run(capsys, "pacs", "echo", "orthanc")
    assert code == 0 and "connection works" in out
    code, out, _ = run(capsys, "pacs", "query", "orthanc-web", "--name", "VS-SEG*", "--json")
    assert code == 0 and [r["study_uid"] for r in json.loads(out)] == [orthanc.brain.study_uid]
    code, out, _ = run(capsys, "pacs", "query", "orthanc", "--from", "2000-01-01", "--sort", "study_date")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[0] == "Patient" and len(lines) == 3
    assert orthanc.liver.study_uid in lines[1] and orthanc.chest.study_uid in lines[2]  # 2003 before 2007
    code, out, _ = run(capsys, "pacs", "query", "orthanc", "--study", orthanc.liver.study_uid, "--json")
    assert sorted(r["modalities"] for r in json.loads(out)) == ["CT", "SEG"]

    code, out, _ = run(capsys, "pacs", "get", "orthanc-move", orthanc.chest.study_uid, "--json")
    got = json.loads(out)
    assert code == 0 and got["received"] == 141 and got["method"] == "C-MOVE"
    assert_same_volume(got["series"][0]["folder"], orthanc.chest.folder)
    code, out, _ = run(capsys, "pacs", "get", "orthanc", orthanc.chest.study_uid, "--method", "C-GET", "--json")
    assert json.loads(out)["skipped"] == 141


def test_send(orthanc, capsys, tmp_path):
    seg = make_seg(ct_slices(orthanc.chest.folder))
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    try:
        code, out, _ = run(capsys, "pacs", "send", "orthanc", str(path))
        assert code == 0 and out.strip() == "sent 1 of 1 objects to orthanc"
        code, out, _ = run(capsys, "pacs", "query", "orthanc", "--study", orthanc.chest.study_uid, "--json")
        assert "SEG" in {r["modalities"] for r in json.loads(out)}
    finally:
        orthanc.orthanc.delete(seg.SeriesInstanceUID)


@pytest.mark.parametrize("argv", [
    ["pacs", "echo", "no-such-node"],
    ["pacs", "query", "orthanc", "--from", "yesterday"],
    ["pacs", "get", "orthanc-web", "1.2.3.4"],
    ["pacs", "get", "orthanc", "1.2.3", "--method", "WADO-RS"],
    ["pacs", "send", "orthanc", "/no/such/file.dcm"],
])
def test_errors_are_one_line_and_exit_2(orthanc, data_dir, capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("hounsfield: ") and err.endswith("\n") and err.count("\n") == 1
    assert_one_sentence(err[len("hounsfield: "):].strip())


def test_server_down_exit_2(orthanc, data_dir, capsys):
    orthanc.orthanc.stop()
    code, _, err = run(capsys, "pacs", "get", "orthanc", orthanc.chest.study_uid)
    assert code == 2 and "Could not connect" in err
