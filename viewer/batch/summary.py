"""``DIR/summary.csv``: one row per series, kept by the client as tasks complete.

Rows are keyed by the series' results folder, so a rerun or a retry replaces a row and never adds
a second one.  The file is rewritten whole and atomically (a temporary file renamed over it), at
most every ``interval`` seconds while tasks complete and once at the end: a reader, or a client
killed mid-write, never sees half a file.  The results folders' ``done.json`` markers are the truth
about what is complete; the summary can be rebuilt from them (``Summary.adopt``).
"""

from __future__ import annotations

import csv
import os
import time
import uuid
from pathlib import Path

COLUMNS = ("series", "study", "series_uid", "source", "plugin", "version", "status", "seconds", "load_seconds",
           "run_seconds", "write_seconds", "device", "detections", "label_volume_ml", "images", "files", "sent",
           "worker", "attempts", "error", "warnings",
           "finished")


class Summary:
    def __init__(self, path: Path, interval: float = 1.0):
        self.path = Path(path)
        self.interval = interval
        self.rows: dict[str, dict] = {}
        self._written = 0.0
        self._dirty = False
        self._read()

    def _read(self) -> None:
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    if row.get("series"):
                        self.rows[row["series"]] = {c: row.get(c, "") or "" for c in COLUMNS}
        except (OSError, csv.Error, UnicodeDecodeError):
            pass  # none yet, or unreadable: rebuilt from the markers and this run

    def attempts(self, key: str) -> int:
        try:
            return int(self.rows.get(key, {}).get("attempts") or 0)
        except ValueError:
            return 0

    def status(self, key: str) -> str:
        return self.rows.get(key, {}).get("status", "")

    def set(self, row: dict) -> None:
        self.rows[row["series"]] = {c: row.get(c, "") for c in COLUMNS}
        self._dirty = True
        if time.monotonic() - self._written >= self.interval:
            self.flush()

    def adopt(self, row: dict) -> None:
        """Take a complete series' row from its marker when the summary lacks it (a client killed before
        its last write) or holds an older failure of it."""
        key = row.get("series", "")
        if key and self.rows.get(key, {}).get("status") != "ok":
            self.set({**row, "attempts": row.get("attempts") or max(1, self.attempts(key))})

    def flush(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for key in sorted(self.rows):
                writer.writerow(self.rows[key])
        os.replace(tmp, self.path)
        self._written = time.monotonic()
        self._dirty = False

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows.values():
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out
