"""The local study index: a SQLite database of scanned folders and their instance headers.

Reopening a known folder reads no DICOM header again: files whose size and modification time
are unchanged reuse the stored header; changed files are re-read and vanished ones dropped.
It lives in the user's data directory (``HOUNSFIELD_DATA_DIR`` overrides it, as tests do).

Paths are stored as their bytes on disk (``os.fsencode``), never as text: a file or folder name that
is not UTF-8 (old media, Latin-1 folders) is a perfectly good name, and SQLite text must be UTF-8.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time

from viewer.core.dicom.header import HEADER_VERSION, InstanceHeader
from viewer.paths import data_dir

# Bump when the tables change: an index of an older layout is emptied and rebuilt by the next scans.
_LAYOUT = "2"  # 2: paths as BLOBs (os.fsencode)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (root BLOB PRIMARY KEY, scanned_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    path BLOB PRIMARY KEY, root BLOB NOT NULL, study_uid TEXT, series_uid TEXT, header TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS instances_root ON instances(root);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
"""
_DROP = "DROP TABLE IF EXISTS instances; DROP TABLE IF EXISTS folders;"


def _text(value: str) -> str:
    """A header string SQLite can store (text from a damaged file may hold lone surrogates)."""
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class StudyIndex:
    def __init__(self, path: str | None = None):
        if path is None:
            os.makedirs(data_dir(), exist_ok=True)
            path = os.path.join(data_dir(), "index.sqlite")
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        layout = self._db.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()
        if layout is None or layout[0] != _LAYOUT:
            self._db.executescript(_DROP)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('layout', ?)", (_LAYOUT,))
            self._db.commit()
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'header_version'").fetchone()
        if row is None or row[0] != str(HEADER_VERSION):  # headers of an older reader: read again
            with self._db:
                self._db.execute("DELETE FROM instances")
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('header_version', ?)", (str(HEADER_VERSION),))

    def close(self) -> None:
        self._db.close()

    def folders(self) -> list[tuple[str, float]]:
        """Scanned roots, most recent first: (root, unix time of the scan)."""
        with self._lock:
            rows = self._db.execute("SELECT root, scanned_at FROM folders ORDER BY scanned_at DESC")
            return [(os.fsdecode(r), t) for r, t in rows]

    def headers_under(self, root: str) -> dict[str, InstanceHeader]:
        """Stored headers of files recorded for ``root`` (exactly that scan root)."""
        with self._lock:
            rows = self._db.execute("SELECT header FROM instances WHERE root = ?",
                                    (os.fsencode(root),)).fetchall()
        out = {}
        for (text,) in rows:
            h = InstanceHeader.from_json(json.loads(text))
            out[h.path] = h
        return out

    def series_of_patient(self, patient_id: str) -> list[tuple[str, int, InstanceHeader]]:
        """One stored header per series of ``patient_id`` in every scanned folder: (root, number of
        files, header).  An empty PatientID matches nothing (anonymous studies are not one patient)."""
        if not patient_id:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT root, COUNT(*), MIN(header) FROM instances WHERE json_extract(header, '$.patient_id') = ? "
                "GROUP BY root, series_uid", (patient_id,)).fetchall()
        return [(os.fsdecode(r), n, InstanceHeader.from_json(json.loads(text))) for r, n, text in rows]

    def record(self, root: str, headers: list[InstanceHeader], files: list[str]) -> None:
        """Replace what is stored for ``root`` with ``headers`` (one transaction)."""
        key = os.fsencode(root)
        # json.dumps writes ASCII: names with undecodable bytes travel as \udcXX escapes and come back.
        rows = [(os.fsencode(h.path), key, _text(h.study_uid), _text(h.series_uid), json.dumps(h.to_json()))
                for h in headers]
        with self._lock, self._db:
            self._db.execute("DELETE FROM instances WHERE root = ?", (key,))
            self._db.executemany("INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?)", rows)
            self._db.execute("INSERT OR REPLACE INTO folders VALUES (?, ?)", (key, time.time()))

    def forget(self, root: str) -> None:
        key = os.fsencode(root)
        with self._lock, self._db:
            self._db.execute("DELETE FROM instances WHERE root = ?", (key,))
            self._db.execute("DELETE FROM folders WHERE root = ?", (key,))
