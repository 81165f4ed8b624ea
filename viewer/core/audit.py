"""The local audit log of AI results: how often each plugin (and version) was right, across studies
(no Qt; SQLite in the data folder, beside the study index: ``<data dir>/audit.sqlite``).

Every reviewed AI result is one row: when, which plugin and version, the study and series as
salted hashes (a random salt made once per install and kept in the file; never a patient's name,
id or a UID in clear), and the review figures of ``viewer.core.review``: the mean Dice, 95%
Hausdorff distance and volume change of its segments (AI original vs corrected), and its detections
proposed, accepted, rejected, pending, moved, resized, and added by a person (misses).

When a result is recorded (``Workspace`` calls ``record_applied``): when its series is exported (the
radiologist signs the reading off), and when its series is closed if a person reviewed it (edited a
segment or accepted/rejected/added a detection); a result neither exported nor touched is not a
review and is not recorded.  Recording the same result again (export, then close; or the result reopened
from its journal or its SEG in a later session, which has the same key: ``viewer.core.review.run_key``)
updates its row; a result reopened without its detections keeps the row's detection figures.

``summary`` gives per plugin and version: cases (series reviewed), median Dice, detection
acceptance rate (accepted / decided), false positives rejected per scan, misses added per scan,
and the first and last date; ``timeline`` the same per day, for the plot that shows drift.
``hounsfield audit`` (viewer.audit_cli) and AI > Performance show them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import secrets
import sqlite3
import statistics
import time
import uuid
from dataclasses import asdict, dataclass

from viewer.paths import data_dir

FILE = "audit.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reviews (
    result_key TEXT PRIMARY KEY, recorded_at REAL NOT NULL, day TEXT NOT NULL,
    study TEXT NOT NULL, series TEXT NOT NULL, plugin_id TEXT NOT NULL, plugin_name TEXT NOT NULL,
    plugin_version TEXT NOT NULL, segments INTEGER NOT NULL, dice REAL, hd95_mm REAL, volume_change_pct REAL,
    edited INTEGER NOT NULL, proposed INTEGER NOT NULL, accepted INTEGER NOT NULL, rejected INTEGER NOT NULL,
    pending INTEGER NOT NULL, moved INTEGER NOT NULL, resized INTEGER NOT NULL, added INTEGER NOT NULL);
"""


def audit_path() -> str:
    return os.path.join(data_dir(), FILE)


class AuditLog:
    def __init__(self, path: str | None = None):
        self.path = path or audit_path()
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=10)
        self.db.executescript(_SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key='salt'").fetchone()
        if row is None:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('salt', ?)", (secrets.token_hex(16),))
            self.db.commit()
            row = self.db.execute("SELECT value FROM meta WHERE key='salt'").fetchone()
        self._salt = row[0]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *_a) -> None:
        self.close()

    def hashed(self, uid: str) -> str:
        """A study or series UID, salted with this install's salt and hashed (never stored in clear)."""
        return hashlib.sha256((self._salt + "|" + (uid or "")).encode()).hexdigest()[:24]

    def record(self, review, *, study_uid: str, series_uid: str, result_key: str | None = None,
               when: float | None = None) -> str:
        """Store one ``viewer.core.review.ResultReview``; returns its key (the same key updates the row)."""
        key = result_key or uuid.uuid4().hex
        when = time.time() if when is None else float(when)
        segs = review.segments
        d = review.detections
        old = self.db.execute("SELECT proposed, accepted, rejected, pending, moved, resized, added FROM reviews "
                              "WHERE result_key = ?", (key,)).fetchone()
        dice = review.dice
        hds = [s.hd95_mm for s in segs if s.hd95_mm is not None]
        pcts = [s.volume_change_pct for s in segs if s.volume_change_pct is not None]
        row = (key, when, time.strftime("%Y-%m-%d", time.gmtime(when)), self.hashed(study_uid), self.hashed(series_uid),
               review.plugin_id or review.plugin_name, review.plugin_name, review.plugin_version, len(segs), dice,
               statistics.mean(hds) if hds else None, statistics.mean(pcts) if pcts else None,
               int(any(s.edited for s in segs)),
               *((d.proposed, d.accepted, d.rejected, d.pending, d.moved, d.resized, d.added) if d
                 else old or (0,) * 7))  # a result reopened without its detections keeps their figures
        self.db.execute(f"INSERT OR REPLACE INTO reviews VALUES ({','.join('?' * len(row))})", row)
        self.db.commit()
        return key

    def rows(self, plugin: str | None = None) -> list[dict]:
        cur = self.db.execute("SELECT * FROM reviews" + (" WHERE plugin_id = ? OR plugin_name = ?" if plugin else "")
                              + " ORDER BY recorded_at", (plugin, plugin) if plugin else ())
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def summary(self, plugin: str | None = None) -> list[PluginSummary]:
        groups: dict[tuple, list[dict]] = {}
        for r in self.rows(plugin):
            groups.setdefault((r["plugin_id"], r["plugin_version"]), []).append(r)
        return [_summarise(rows) for _k, rows in sorted(groups.items())]

    def timeline(self, plugin: str | None = None) -> list[tuple[str, str, PluginSummary]]:
        """(plugin "id version", day, summary of that day's results), oldest first."""
        groups: dict[tuple, list[dict]] = {}
        for r in self.rows(plugin):
            groups.setdefault((f"{r['plugin_id']} {r['plugin_version']}".strip(), r["day"]), []).append(r)
        return [(name, day, _summarise(rows)) for (name, day), rows in sorted(groups.items(), key=lambda kv: kv[0][1])]


@dataclass
class PluginSummary:
    plugin_id: str
    plugin_version: str
    cases: int
    median_dice: float | None
    acceptance_rate: float | None
    rejected_per_scan: float
    added_per_scan: float
    edited_fraction: float  # of results with segments, the share a person edited
    first_day: str
    last_day: str

    def to_dict(self) -> dict:
        return asdict(self)


def _summarise(rows: list[dict]) -> PluginSummary:
    dices = [r["dice"] for r in rows if r["dice"] is not None]
    acc = sum(r["accepted"] for r in rows)
    rej = sum(r["rejected"] for r in rows)
    with_segs = [r for r in rows if r["segments"]]
    n = len(rows)
    return PluginSummary(rows[0]["plugin_id"], rows[0]["plugin_version"], n,
                         statistics.median(dices) if dices else None, acc / (acc + rej) if acc + rej else None,
                         rej / n, sum(r["added"] for r in rows) / n,
                         sum(r["edited"] for r in with_segs) / len(with_segs) if with_segs else 0.0,
                         min(r["day"] for r in rows), max(r["day"] for r in rows))


HEADERS = ("plugin", "version", "cases", "median Dice", "acceptance", "FP rejected/scan", "misses added/scan",
           "edited", "first", "last")


def table_rows(summaries: list[PluginSummary]) -> list[list[str]]:
    """The summary as text cells (the CLI and the dialog show exactly these)."""
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)
    return [[s.plugin_id, s.plugin_version, str(s.cases), f(s.median_dice, ".3f"), f(s.acceptance_rate, ".0%"),
             f(s.rejected_per_scan, ".2f"), f(s.added_per_scan, ".2f"), f(s.edited_fraction, ".0%"), s.first_day,
             s.last_day] for s in summaries]


def to_csv(summaries: list[PluginSummary]) -> str:
    buf = io.StringIO()
    fields = list(PluginSummary.__dataclass_fields__)
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for s in summaries:
        w.writerow(s.to_dict())
    return buf.getvalue()


def reviewed(step) -> bool:
    """Whether a person did anything to a result: edited a segment, or decided or added a detection."""
    if any(ed.segmentation is not None and any(s.edited for s in ed.segments) for ed in step.segmentations):
        return True
    return any(m.status != "pending" or m.edited or m.origin == "person" for ms in step.marker_sets for m in ms.markers)


def record_applied(step, *, exported: bool = False, log_: AuditLog | None = None) -> str | None:
    """Record an ``Applied`` (one AI run) in the audit log when it was exported or reviewed; the row's
    key is kept on the result so a later record updates it.  Never raises: the log is a by-product."""
    from viewer.core.review import review_applied, run_key
    from viewer.logs import log

    if not (step.segmentations or step.marker_sets) or not (exported or reviewed(step)):
        return None
    try:
        review = review_applied(step)
        src = step.series.volume.source
        audit = log_ or AuditLog()
        try:
            key = audit.record(review, study_uid=src.study_instance_uid or src.path,
                               series_uid=src.series_instance_uid or src.path,
                               result_key=getattr(step, "audit_key", None)
                               or run_key(step.provenance or {}, src.series_instance_uid or src.path))
        finally:
            if log_ is None:
                audit.close()
        step.audit_key = key
        return key
    except (OSError, sqlite3.Error):
        log.warning("the AI audit log could not be written", exc_info=True)
        return None
