"""Fixtures for the batch tests: a generated archive of small CT series and a real two-worker LocalCluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dicom_factory import axial, phantom, write_series

SHAPE = (6, 24, 32)  # tiny series: the tests are about the batch, not the plugin


def make_archive(root: Path, count: int, *, shape=SHAPE) -> dict:
    """``count`` CT series, each its own study, in a folder tree; returns {series UID: WrittenSeries}."""
    written = {}
    for n in range(count):
        s = write_series(root / f"patient{n:02d}" / "study" / "ct", phantom(shape, seed=n),
                         axial(spacing=(0.8, 0.9, 2.5)), seed=n, series_number=n + 1)
        written[s.series_uid] = s
    return written


@pytest.fixture(scope="module")
def cluster():
    """A real LocalCluster: two worker processes, one task thread and one model thread each."""
    from viewer.batch.cluster import open_cluster

    with open_cluster(workers=2, threads=1, dashboard=None) as c:
        yield c
