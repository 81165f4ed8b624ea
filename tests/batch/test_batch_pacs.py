"""A batch whose series come from a real Orthanc (the PACS tests' fixture), retrieved inside each task by
C-GET or WADO-RS, with the DICOM SEG results stored back on it (--send)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest

import viewer
from tests.ai import fake_plugins
from tests.pacs.conftest import pacs_env  # noqa: F401  (the PACS tests' Orthanc, reused as it is)
from viewer.batch.runner import run_batch
from viewer.batch.sources import pacs_items
from viewer.pacs import Query, query


@pytest.fixture(scope="module")
def pacs_cluster(pacs_env):  # noqa: F811
    """Started after pacs_env, so its scheduler and workers live in Orthanc's private network namespace."""
    from viewer.batch.cluster import open_cluster

    with open_cluster(workers=2, threads=1, dashboard=None) as c:
        yield c


def _series(env, study_uid):
    return {s.series_uid: s for s in query(env.node("orthanc"), Query("SERIES", study_uid=study_uid), env.local)}


def test_a_batch_from_orthanc_sends_its_results_back(pacs_env, pacs_cluster, tmp_path):  # noqa: F811
    env, c = pacs_env, pacs_cluster
    # the query of the command line (--pacs NODE --modality CT --from ...): CT series only, no SEG, no MR
    planned = pacs_items(env.node("orthanc-web"), env.local, modality="CT", date_from="1900-01-01")
    studies = {i.study_uid for i in planned}
    assert {env.chest.study_uid, env.liver.study_uid} <= studies and env.brain.study_uid not in studies
    assert {i.kind for i in planned} == {"pacs"} and env.liver.series_uid in {i.series for i in planned}

    before = _series(env, env.liver.study_uid)
    runs = {}
    for name in ("orthanc", "orthanc-web"):  # C-GET, then WADO-RS, inside the task
        items = pacs_items(env.node(name), env.local, modality="CT", study_uid=env.liver.study_uid)
        assert [i.series for i in items] == [env.liver.series_uid]
        out = tmp_path / name
        send = env.node("orthanc") if name == "orthanc" else None
        report = run_batch(fake_plugins.info("threshold"), items, out, c.client, threads=c.threads,
                           workers=c.workers, send=send, local=env.local, progress=False)
        assert (report.ok, report.failed) == (1, 0)
        with open(out / "summary.csv", newline="") as f:
            [row] = list(csv.DictReader(f))
        assert row["status"] == "ok" and row["series_uid"] == env.liver.series_uid
        runs[name] = (out / row["series"], row)

    folder, row = runs["orthanc"]
    assert row["sent"] == "1"
    assert json.loads((folder / "done.json").read_text())["sent_to"] == "orthanc"
    seg = pydicom.dcmread(next(folder.glob("*.seg.dcm")), stop_before_pixels=True)
    after = _series(env, env.liver.study_uid)
    new = set(after) - set(before)
    try:
        assert new == {seg.SeriesInstanceUID} and after[seg.SeriesInstanceUID].modalities == "SEG"
        # the same series by either protocol gave the same result
        a = viewer.load(folder / "inverted.nii.gz").array
        b = viewer.load(runs["orthanc-web"][0] / "inverted.nii.gz").array
        assert a.shape[0] == env.liver.count and a.any()
        np.testing.assert_array_equal(a, b)
        assert not runs["orthanc-web"][1]["sent"]
    finally:
        for uid in new:
            env.orthanc.delete(uid)
