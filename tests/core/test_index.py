"""The study index: headers reused for unchanged files, re-read when changed, dropped when gone."""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile

import numpy as np
import pytest

import viewer
import viewer.core.dicom.scan as scan_module
from tests import dicom_factory as F
from viewer.core.dicom.header import HEADER_VERSION
from viewer.core.dicom.index import StudyIndex
from viewer.paths import data_dir


class Spy:
    """Counts the files each header reader is asked to read."""

    def __init__(self, monkeypatch):
        self.slow: list[str] = []
        self.fast: list[str] = []
        real_read, real_fast = scan_module.read_header, scan_module.scan_headers

        def read_header(path):
            self.slow.append(path)
            return real_read(path)

        def scan_headers(files):
            self.fast.extend(files)
            return real_fast(files)

        monkeypatch.setattr(scan_module, "read_header", read_header)
        monkeypatch.setattr(scan_module, "scan_headers", scan_headers)

    @property
    def read(self) -> list[str]:
        return self.fast + [p for p in self.slow if p not in self.fast]

    def reset(self) -> None:
        self.slow.clear()
        self.fast.clear()


def test_data_dir_is_private_to_the_test_session():
    folder = os.environ.get("HOUNSFIELD_DATA_DIR")
    assert folder, "conftest must set HOUNSFIELD_DATA_DIR"
    assert str(data_dir()) == folder
    assert os.path.realpath(folder).startswith(os.path.realpath(tempfile.gettempdir()))
    viewer.scan(F.write_series(os.path.join(folder, "..", "probe"), F.phantom((1, 4, 4)), F.axial()).folder)
    assert os.path.isfile(os.path.join(folder, "index.sqlite"))  # the index went there


def test_second_scan_reads_no_header(tmp_path, monkeypatch):
    ws = F.write_series(tmp_path, F.phantom((12, 16, 16)), F.axial())
    F.write_non_image(tmp_path, "SR", study_uid=ws.study_uid)
    spy = Spy(monkeypatch)
    first = viewer.scan(tmp_path)
    assert sorted(spy.read) == sorted([*ws.files, str(tmp_path / "sr-object.dcm")])
    assert len(spy.slow) >= 1  # the SR went through pydicom
    spy.reset()
    second = viewer.scan(tmp_path)
    assert spy.read == []
    assert second.changed == 0 and second.vanished == 0
    assert [len(s.frames) for s in second.image_series] == [12]
    assert len(second.other_objects) == 1
    # the reused headers describe the same tree
    assert [s.id for s in second.series] == [s.id for s in first.series]
    a = {f.instance.path: f.instance for s in first.image_series for f in s.frames}
    b = {f.instance.path: f.instance for s in second.image_series for f in s.frames}
    assert a == b


def test_load_after_scan_uses_the_index_and_gives_the_same_volume(tmp_path, monkeypatch):
    stored = F.phantom((8, 16, 16))
    F.write_series(tmp_path, stored, F.oblique(), names="shuffled")
    fresh = viewer.load(tmp_path)
    spy = Spy(monkeypatch)
    again = viewer.load(tmp_path)
    assert spy.read == []
    np.testing.assert_array_equal(again.array, fresh.array)
    np.testing.assert_array_equal(again.affine, fresh.affine)


def test_modified_file_is_read_again(tmp_path, monkeypatch):
    stored = F.phantom((6, 16, 16))
    ws = F.write_series(tmp_path, stored, F.axial())
    viewer.scan(tmp_path)
    spy = Spy(monkeypatch)
    import pydicom

    ds = pydicom.dcmread(ws.paths[2])  # a rewritten slice
    ds.SeriesDescription = "Changed!"
    ds.save_as(ws.paths[2])
    st = os.stat(ws.paths[2])  # make sure the clock moved on even on coarse file systems
    os.utime(ws.paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    result = viewer.scan(tmp_path)
    assert spy.read == [ws.paths[2]]
    assert result.changed == 1
    h = next(f.instance for f in result.image_series[0].frames if f.instance.path == ws.paths[2])
    assert h.series_description == "Changed!"


def test_touched_file_is_read_again(tmp_path, monkeypatch):
    ws = F.write_series(tmp_path, F.phantom((5, 16, 16)), F.axial())
    viewer.scan(tmp_path)
    st = os.stat(ws.paths[0])
    os.utime(ws.paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # only the time changes
    spy = Spy(monkeypatch)
    result = viewer.scan(tmp_path)
    assert spy.read == [ws.paths[0]] and result.changed == 1


def test_deleted_file_is_dropped(tmp_path, monkeypatch):
    ws = F.write_series(tmp_path, F.phantom((7, 16, 16)), F.axial())
    viewer.scan(tmp_path)
    os.remove(ws.paths[3])
    spy = Spy(monkeypatch)
    result = viewer.scan(tmp_path)
    assert spy.read == []
    assert result.vanished == 1
    paths = {f.instance.path for f in result.image_series[0].frames}
    assert ws.paths[3] not in paths and len(paths) == 6
    index = StudyIndex()
    try:
        assert ws.paths[3] not in index.headers_under(str(tmp_path))
        assert len(index.headers_under(str(tmp_path))) == 6
    finally:
        index.close()
    vol = viewer.load(tmp_path)  # the gap shows up as a missing slice
    assert vol.shape[0] == 7 and any("missing" in w for w in vol.warnings)


def test_new_file_is_read_and_others_reused(tmp_path, monkeypatch):
    grid = F.axial()
    a = F.write_series(tmp_path, F.phantom((4, 16, 16)), grid)
    viewer.scan(tmp_path)
    b = F.write_series(tmp_path, F.phantom((3, 16, 16)), F.oblique(), prefix="NEW", study_uid=a.study_uid)
    spy = Spy(monkeypatch)
    result = viewer.scan(tmp_path)
    assert sorted(spy.read) == sorted(b.files)
    assert sorted(len(s.frames) for s in result.image_series) == [3, 4]


def test_files_that_fail_are_not_remembered_as_good(tmp_path, monkeypatch):
    ws = F.write_series(tmp_path, F.phantom((4, 16, 16)), F.axial())
    F.truncate(ws.paths[1], 500)
    first = viewer.scan(tmp_path)
    assert len(first.errors) == 1
    spy = Spy(monkeypatch)
    second = viewer.scan(tmp_path)
    assert spy.read == [ws.paths[1]]  # tried again, still broken
    assert len(second.errors) == 1


def test_index_without_scan_index_reads_everything(tmp_path, monkeypatch):
    ws = F.write_series(tmp_path, F.phantom((3, 8, 8)), F.axial())
    viewer.scan(tmp_path)
    spy = Spy(monkeypatch)
    from viewer.core.loader import scan

    scan(tmp_path, use_index=False)
    assert sorted(spy.read) == sorted(ws.files)


def test_index_records_folders_and_can_forget(tmp_path):
    F.write_series(tmp_path, F.phantom((3, 8, 8)), F.axial())
    viewer.scan(tmp_path)
    index = StudyIndex()
    try:
        roots = [r for r, _ in index.folders()]
        assert str(tmp_path) in roots
        assert len(index.headers_under(str(tmp_path))) == 3
        index.forget(str(tmp_path))
        assert index.headers_under(str(tmp_path)) == {}
        assert str(tmp_path) not in [r for r, _ in index.folders()]
    finally:
        index.close()


def test_headers_of_an_older_version_are_dropped(tmp_path):
    db = tmp_path / "index.sqlite"
    ws = F.write_series(tmp_path / "s", F.phantom((2, 8, 8)), F.axial())
    from viewer.core.dicom.scan import read_headers

    headers, _, _, _ = read_headers(ws.files)
    index = StudyIndex(str(db))
    index.record(str(tmp_path / "s"), headers, ws.files)
    index.close()
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'header_version'", (str(HEADER_VERSION - 1),))
    con.close()
    index = StudyIndex(str(db))
    try:
        assert index.headers_under(str(tmp_path / "s")) == {}
    finally:
        index.close()


def test_stored_headers_round_trip_exactly(tmp_path):
    ws = F.write_series(tmp_path / "s", F.phantom((3, 8, 8)), F.oblique(), slope=[1, 2, 1], intercept=[-1024, 0, 3])
    from viewer.core.dicom.scan import read_headers

    headers, _, _, _ = read_headers(ws.files)
    index = StudyIndex(str(tmp_path / "i.sqlite"))
    try:
        index.record(str(tmp_path / "s"), headers, ws.files)
        stored = index.headers_under(str(tmp_path / "s"))
        assert stored == {h.path: h for h in headers}
        row = index._db.execute("SELECT header FROM instances LIMIT 1").fetchone()[0]
        assert "Test^Hounsfield" in json.loads(row)["patient_name"]
    finally:
        index.close()


def test_unwritable_data_dir_does_not_stop_scanning(tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(blocker / "data"))
    ws = F.write_series(tmp_path / "s", F.phantom((3, 8, 8)), F.axial())
    result = viewer.scan(tmp_path / "s")
    assert [len(s.frames) for s in result.image_series] == [3]
    assert len(ws.files) == 3


@pytest.mark.parametrize("fast", [True, False])
def test_chest_ct_index_round_trip(chest_ct_dir, fast, monkeypatch):
    from viewer.core.dicom.scan import list_files, read_headers

    files = list_files(str(chest_ct_dir))
    headers, errors, _, _ = read_headers(files, fast_path=fast)
    assert errors == []
    index = StudyIndex(os.path.join(os.environ["HOUNSFIELD_DATA_DIR"], f"chest-{fast}.sqlite"))
    try:
        index.record(str(chest_ct_dir), headers, files)
        assert index.headers_under(str(chest_ct_dir)) == {h.path: h for h in headers}
    finally:
        index.close()


def test_an_index_of_the_old_text_layout_is_rebuilt(tmp_path):
    """Paths were TEXT (UTF-8 only); the index now keeps their bytes and empties an old one."""
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    with con:
        con.executescript("""
            CREATE TABLE folders (root TEXT PRIMARY KEY, scanned_at REAL NOT NULL);
            CREATE TABLE instances (path TEXT PRIMARY KEY, root TEXT NOT NULL, study_uid TEXT,
                                    series_uid TEXT, header TEXT NOT NULL);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);""")
        con.execute("INSERT INTO folders VALUES ('/old/root', 1.0)")
        con.execute("INSERT INTO meta VALUES ('header_version', ?)", (str(HEADER_VERSION),))
    con.close()
    ws = F.write_series(tmp_path / "s", F.phantom((2, 8, 8)), F.axial())
    from viewer.core.dicom.scan import read_headers

    headers, _, _, _ = read_headers(ws.files)
    index = StudyIndex(str(db))
    try:
        assert index.folders() == []
        index.record(str(tmp_path / "s"), headers, ws.files)
        assert set(index.headers_under(str(tmp_path / "s"))) == set(ws.files)
    finally:
        index.close()
