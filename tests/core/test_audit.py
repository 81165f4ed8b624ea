"""The AI audit log: reviewed results of several studies gather per plugin and version, with no
UID in clear; ``hounsfield audit`` prints the same numbers (and writes them as CSV)."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from viewer.core.audit import AuditLog, table_rows
from viewer.core.review import DetectionReview, ResultReview, SegmentAgreement


def _review(dice, rejected=0, accepted=0, added=0, plugin="seg-plugin", version="1.0"):
    segs = [SegmentAgreement("Liver", 1, dice, 2.0, 100.0, 100.0 * dice, [3] if dice < 1 else [])] if dice else []
    det = DetectionReview(proposed=accepted + rejected, accepted=accepted, rejected=rejected, added=added)
    return ResultReview(plugin, plugin.title(), version, segs, det if accepted + rejected + added else None)


def fill(path):
    with AuditLog(path) as log:
        day = 86400.0
        log.record(_review(0.9), study_uid="1.2.3", series_uid="1.2.3.1", when=20 * 365 * day)
        log.record(_review(0.7), study_uid="1.2.4", series_uid="1.2.4.1", when=20 * 365 * day + day)
        log.record(_review(1.0), study_uid="1.2.5", series_uid="1.2.5.1", when=20 * 365 * day + day)
        log.record(_review(None, rejected=2, accepted=3, added=1, plugin="nodules"), study_uid="1.2.3",
                   series_uid="1.2.3.1", when=20 * 365 * day)
        k = log.record(_review(None, rejected=1, accepted=0, added=0, plugin="nodules"), study_uid="1.2.6",
                       series_uid="1.2.6.1")
        # recorded again (exported, then closed): the row is updated, not doubled
        log.record(_review(None, rejected=1, accepted=1, added=0, plugin="nodules"), study_uid="1.2.6",
                   series_uid="1.2.6.1", result_key=k)


def test_summary_per_plugin_and_version_with_hashed_uids(tmp_path):
    path = str(tmp_path / "audit.sqlite")
    fill(path)
    with AuditLog(path) as log:
        seg, nod = log.summary()[::-1] if log.summary()[0].plugin_id == "nodules" else log.summary()
        assert (seg.plugin_id, seg.cases, seg.median_dice) == ("seg-plugin", 3, pytest.approx(0.9))
        assert seg.edited_fraction == pytest.approx(2 / 3)
        assert (nod.cases, nod.acceptance_rate) == (2, pytest.approx(4 / 7))
        assert nod.rejected_per_scan == pytest.approx(1.5) and nod.added_per_scan == pytest.approx(0.5)
        assert [s.plugin_id for s in log.summary("nodules")] == ["nodules"]
        days = [(name, day) for name, day, _ in log.timeline("seg-plugin")]
        assert len(days) == 2 and days[0][1] < days[1][1]
    raw = open(path, "rb").read()
    assert b"1.2.3" not in raw and b"1.2.6.1" not in raw  # no UID in clear
    # another install (another salt) hashes the same study differently
    with AuditLog(str(tmp_path / "other.sqlite")) as other, AuditLog(path) as log:
        assert other.hashed("1.2.3") != log.hashed("1.2.3")
    assert sqlite3.connect(path).execute("SELECT count(*) FROM reviews").fetchone()[0] == 5


def test_hounsfield_audit_prints_the_same_table(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    fill(str(data / "audit.sqlite"))
    env = {"HOUNSFIELD_DATA_DIR": str(data), "HOUNSFIELD_LOG_DIR": str(tmp_path / "log"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "viewer.cli", "audit", "--csv", str(tmp_path / "a.csv")],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    with AuditLog(str(data / "audit.sqlite")) as log:
        want = table_rows(log.summary())
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["plugin", "version", "cases"]
    for row, line in zip(want, lines[1:]):
        assert line.split() == row
    rows = list(csv.DictReader(open(tmp_path / "a.csv")))
    assert {r["plugin_id"]: int(r["cases"]) for r in rows} == {"seg-plugin": 3, "nodules": 2}
    only = subprocess.run([sys.executable, "-m", "viewer.cli", "audit", "--plugin", "nodules"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert only.returncode == 0 and "seg-plugin" not in only.stdout and "nodules" in only.stdout
    assert np.isclose(float(rows[0]["median_dice"] or "nan"), 0.9) or np.isclose(float(rows[1]["median_dice"]), 0.9)
