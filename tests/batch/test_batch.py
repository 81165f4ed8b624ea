"""Batch runs on a real two-worker LocalCluster: results, resumption, a killed worker, broken series, the CLI.

The plugins run in the real AI worker processes (one per Dask worker), as ``hounsfield run`` runs them."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

import viewer
from tests.ai import fake_plugins
from tests.batch.conftest import make_archive
from tests.batch.plugins import series_tag, slow_info
from tests.conftest import data_path
from tests.dicom_factory import make_undecodable
from viewer.batch.runner import run_batch
from viewer.batch.sources import folder_items, list_items, study_hash


def _manifest_version(plugin_id: str) -> str:
    from viewer.ai.discovery import Registry
    return Registry(models=Path("/nonexistent-models"), entry_points=False).get(plugin_id).version


def rows(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def batch(info, items, out, cluster, **kw):
    kw.setdefault("progress", False)
    return run_batch(info, items, out, cluster.client, threads=cluster.threads, workers=cluster.workers,
                     workers_by_host=cluster.workers_by_host, **kw)


def folder_of(out: Path, s) -> Path:
    return out / study_hash(s.study_uid) / s.series_uid


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    written = make_archive(root, 6)
    first = next(iter(written.values()))
    (root / "converted").mkdir()
    viewer.save(viewer.load(first.folder), root / "converted" / "volume.nii.gz")  # a NIfTI file in the tree
    return root, written


@pytest.fixture(scope="module")
def threshold_run(archive, cluster, tmp_path_factory):
    root, written = archive
    out = tmp_path_factory.mktemp("out")
    stream = io.StringIO()
    items = folder_items(str(root))
    report = batch(fake_plugins.info("threshold"), items, out, cluster, progress=stream)
    return out, items, report, stream.getvalue()


def test_every_series_ends_once_with_a_correct_result(archive, threshold_run, cluster):
    root, written = archive
    out, items, report, progress = threshold_run
    assert len(items) == 7 and {i.kind for i in items} == {"dicom", "volume"}
    assert (report.total, report.ok, report.failed, report.skipped, report.tasks) == (7, 7, 0, 0, 7)
    table = rows(out)
    assert sorted(r["series"] for r in table) == sorted(i.key for i in items)  # one row each, no duplicate
    assert {r["status"] for r in table} == {"ok"} and {r["attempts"] for r in table} == {"1"}
    assert {r["plugin"] for r in table} == {"test-threshold"}
    ai_pids = set()
    for uid, s in written.items():
        folder = folder_of(out, s)
        done = json.loads((folder / "done.json").read_text())
        assert done["row"]["series_uid"] == uid and done["signature"]["plugin"] == "test-threshold"
        source = viewer.load(s.folder)
        real = source.real_values().astype(np.float32)
        inverted = viewer.load(folder / "inverted.nii.gz")
        assert inverted.shape == source.shape
        np.testing.assert_allclose(inverted.array, -real, atol=1e-3)
        np.testing.assert_allclose(inverted.affine, source.affine, atol=1e-4)
        row = next(r for r in table if r["series_uid"] == uid)
        voxel_ml = float(np.prod(source.spacing)) / 1000
        assert float(row["label_volume_ml"]) == pytest.approx(np.count_nonzero(real > 0) * voxel_ml, rel=1e-3)
        assert row["detections"] == "1" and row["images"] == "1" and row["device"].startswith("CPU")
        assert len(json.loads((folder / "detections.json").read_text())) == 1
        ai_pids.add(json.loads((folder / "results.json").read_text())["provenance"]["pid"])
    # one model load per Dask worker, kept across its tasks: two AI worker processes served seven series
    assert len(ai_pids) <= 2 and len({r["worker"] for r in table}) <= 2
    assert not [p for p in out.rglob(".*") if p.name != ".batch.lock"]  # no temporary folder left
    assert "7/7 series" in progress and "series/min" in progress


def test_a_rerun_recomputes_nothing(archive, threshold_run, cluster):
    out, items, report, _ = threshold_run
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "summary.csv"}
    before = rows(out)
    again = batch(fake_plugins.info("threshold"), folder_items(str(archive[0])), out, cluster)  # planned anew
    assert (again.skipped, again.tasks, again.ok, again.failed) == (7, 0, 0, 0)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # not one result file written again
    assert rows(out) == before


def test_a_broken_series_gets_its_error_row_and_the_batch_goes_on(tmp_path, cluster):
    written = make_archive(tmp_path / "archive", 3)
    broken = list(written.values())[1]
    for f in broken.files:
        make_undecodable(f)
    listing = tmp_path / "paths.txt"
    listing.write_text(f"# what to run\n{tmp_path / 'archive'}\n\n{tmp_path / 'gone' / 'study'}\n")
    items = list_items(str(listing))
    assert len(items) == 4
    out = tmp_path / "out"
    report = batch(fake_plugins.info("threshold"), items, out, cluster, retries=1)
    assert (report.ok, report.failed, report.tasks) == (2, 2, 2 + 2 * 2)  # each failure tried twice
    table = {r["series"]: r for r in rows(out)}
    assert len(table) == 4
    bad = table[f"{study_hash(broken.study_uid)}/{broken.series_uid}"]
    assert bad["status"] == "failed" and bad["attempts"] == "2"
    assert "could be decoded" in bad["error"] and bad["error"].endswith(".") and "\n" not in bad["error"]
    gone = next(r for r in table.values() if "gone" in r["source"])
    assert gone["status"] == "failed" and gone["error"].startswith("There is no file or folder at")
    assert not folder_of(out, broken).exists()
    # a rerun leaves the complete ones alone, tries the failed ones again, and still has one row each
    again = batch(fake_plugins.info("threshold"), items, out, cluster, retries=0)
    assert (again.skipped, again.failed, again.tasks) == (2, 2, 2)
    table = {r["series"]: r for r in rows(out)}
    assert len(table) == 4 and table[bad["series"]]["attempts"] == "3"


def test_a_worker_killed_mid_batch_loses_only_its_task(archive, tmp_path, cluster):
    root, written = archive
    markers = tmp_path / "markers"
    markers.mkdir()
    items = [i for i in folder_items(str(root)) if i.kind == "dicom"]
    out = tmp_path / "out"
    result: dict = {}
    params = {"seconds": 1.0, "markers": str(markers)}
    worker_pids = set(cluster.client.run(os.getpid).values())

    def go():
        try:
            result["report"] = batch(slow_info(), items, out, cluster, params=params)
        except BaseException as exc:  # pragma: no cover - reported below
            result["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    deadline = time.monotonic() + 120
    while not list(markers.glob("run-*.json")):
        assert time.monotonic() < deadline, "no task started"
        time.sleep(0.05)
    victim = json.loads(next(markers.glob("run-*.json")).read_text())
    assert victim["ppid"] in worker_pids  # the AI worker's parent is a Dask worker process
    os.kill(victim["ppid"], signal.SIGKILL)
    thread.join(240)
    assert not thread.is_alive() and "error" not in result
    report = result["report"]
    assert (report.ok, report.failed) == (6, 0)
    table = rows(out)
    assert len(table) == 6 and {r["status"] for r in table} == {"ok"} and {r["attempts"] for r in table} == {"1"}
    runs = [json.loads(p.read_text()) for p in markers.glob("run-*.json")]
    tags = {series_tag(viewer.load(s.folder).array): s for s in written.values()}
    finished = [r["tag"] for r in runs if "end" in r]
    assert sorted(finished) == sorted(tags)  # every series ran to its end exactly once
    cut = [r for r in runs if "end" not in r]
    assert [r["tag"] for r in cut] == [victim["tag"]]  # the killed task, and only it, ran again
    for s in tags.values():
        negated = viewer.load(folder_of(out, s) / "negated.nii.gz")
        np.testing.assert_allclose(negated.array, -viewer.load(s.folder).real_values(), atol=1e-3)
    # one series at a time per worker: no two runs in one AI worker overlap
    for pid in {r["pid"] for r in runs}:
        spans = sorted((r["start"], r.get("end", r["start"])) for r in runs if r["pid"] == pid)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    cluster.client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker


def test_the_command_submits_to_an_existing_cluster(archive, cluster, tmp_path, capsys):
    from viewer.cli import main

    root, written = archive
    out = tmp_path / "out"
    address = cluster.client.scheduler.address
    assert main(["batch", "test-threshold", str(root), "--out", str(out), "--scheduler", address]) == 2
    assert "There is no AI plugin 'test-threshold'" in capsys.readouterr().err  # the registry's plugins only
    code = main(["batch", "ct-denoising", str(root), "--out", str(out), "--scheduler", address, "--param",
                 "heatmap=false"])
    err = capsys.readouterr().err
    assert f"cluster at {address}: 2 workers" in err and "7 series to process" in err
    assert code == 0
    table = rows(out)
    assert len(table) == 7 and {r["status"] for r in table} == {"ok"}  # the NIfTI file's HU range reads as CT
    assert {r["device"] for r in table} == {"CPU, 1 threads"}  # the cores shared between the two workers
    assert {r["images"] for r in table} == {"1"}  # the denoised image, no heatmap (heatmap=false)


def _real_series(src: Path, dest: Path, slices: range, series_uid: str | None = None) -> None:
    dest.mkdir(parents=True)
    files = sorted(src.iterdir())
    for f in (files[k] for k in slices):
        if series_uid is None:
            shutil.copy(f, dest / f.name)
        else:
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID = series_uid
            ds.save_as(dest / f.name)


def _roughness(a, mask) -> float:
    """Mean absolute difference of neighbouring pixels inside ``mask``: noise raises it."""
    return float(np.abs(np.diff(a.astype(np.float32), axis=2))[mask[:, :, 1:]].mean())


def test_the_command_runs_the_real_denoiser_on_real_ct(tmp_path, capsys):
    from pydicom.uid import generate_uid

    from viewer.cli import main

    chest = data_path("chest-ct")
    _real_series(chest, tmp_path / "archive" / "a", range(60, 64))
    _real_series(chest, tmp_path / "archive" / "b", range(90, 94), generate_uid())
    out = tmp_path / "out"
    argv = ["batch", "ct-denoising", str(tmp_path / "archive"), "--out", str(out), "--workers", "2",
            "--param", "dose=0.25", "--dashboard", "127.0.0.1:0"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "2 series to process" in err and "local cluster: 2 workers" in err
    assert "Dask dashboard: http://127.0.0.1:" in err and "2/2 series" in err
    table = rows(out)
    assert len(table) == 2 and {r["status"] for r in table} == {"ok"}
    assert {r["plugin"] for r in table} == {"ct-denoising"}
    assert {r["version"] for r in table} == {_manifest_version("ct-denoising")}
    for sub in ("a", "b"):
        source = viewer.load(tmp_path / "archive" / sub)
        key = f"{study_hash(source.source.study_instance_uid)}/{source.source.series_instance_uid}"
        folder = out / key
        denoised = viewer.load(folder / "denoised-dose-0-25.nii.gz")
        assert denoised.shape == source.shape == (4, 512, 512)
        hu = source.real_values().astype(np.float32)
        body = hu > -500
        assert abs(float(denoised.array[body].mean() - hu[body].mean())) < 10  # the HU level kept
        assert _roughness(denoised.array, body) < 0.9 * _roughness(hu, body)  # and the noise reduced
    assert main(argv) == 0  # a rerun: nothing to do
    assert "2 already done" in capsys.readouterr().err


def test_gpus_give_each_local_worker_its_own_device(monkeypatch):
    """No GPU here: the CUDA count is set by hand; the cluster, its workers and their environment are real."""
    import viewer.batch.cluster as cluster_module

    monkeypatch.setattr(cluster_module, "cuda_devices", lambda: 2)
    with cluster_module.open_cluster(gpus=True, dashboard=None) as c:
        seen = c.client.run(lambda: (os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("OMP_NUM_THREADS")))
    assert (c.workers, c.gpus) == (2, 2)
    assert sorted(seen.values()) == [("0", str(c.threads)), ("1", str(c.threads))]


def test_command_errors_are_one_sentence(tmp_path, capsys):
    from viewer.batch.cluster import cuda_devices
    from viewer.cli import main

    if cuda_devices():
        pytest.skip("this machine has a CUDA GPU: --gpus is not refused here")
    assert main(["batch", "ct-denoising", str(tmp_path), "--out", str(tmp_path / "o"), "--gpus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("hounsfield: --gpus asks for one worker per CUDA GPU but none is available here; "
                   "run without --gpus to use the CPU.")
    assert main(["batch", "ct-denoising", str(tmp_path), "--out", str(tmp_path / "o"), "--param", "dose=7"]) == 2
    assert "must lie between" in capsys.readouterr().err
    assert main(["batch", "ct-denoising", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "There is no file or folder" in capsys.readouterr().err


def test_the_command_runs_the_real_nodule_detector_on_real_ct(tmp_path, capsys):
    """The lung-nodule detector over a real LIDC slab and a real chest-CT slab on two workers: one row
    per series, its detection count that of the detections.json written beside it, centres in LPS
    inside the series' volume."""
    from pydicom.uid import generate_uid

    from viewer.cli import main

    lidc = data_path("lung-nodule-ct", "lidc-idri-0002")
    shutil.copytree(lidc, tmp_path / "archive" / "lidc", ignore=shutil.ignore_patterns("*.xml", "ATTRIBUTION*"))
    _real_series(data_path("chest-ct"), tmp_path / "archive" / "chest", range(64, 76), generate_uid())
    out = tmp_path / "out"
    assert main(["batch", "lung-nodules", str(tmp_path / "archive"), "--out", str(out), "--workers", "2"]) == 0
    assert "2/2 series" in capsys.readouterr().err
    table = rows(out)
    assert len(table) == 2 and {r["status"] for r in table} == {"ok"}
    assert {r["plugin"] for r in table} == {"lung-nodules"}
    for sub in ("lidc", "chest"):
        source = viewer.load(tmp_path / "archive" / sub)
        folder = out / study_hash(source.source.study_instance_uid) / source.source.series_instance_uid
        found = json.loads((folder / "detections.json").read_text())
        detections = found["detections"] if isinstance(found, dict) else found
        (row,) = [r for r in table if r["series_uid"] == source.source.series_instance_uid]
        assert int(row["detections"]) == len(detections)
        lo = np.minimum(source.index_to_lps([0, 0, 0]), source.index_to_lps(np.array(source.shape[::-1]) - 1))
        hi = np.maximum(source.index_to_lps([0, 0, 0]), source.index_to_lps(np.array(source.shape[::-1]) - 1))
        for d in detections:
            c = np.asarray(d["center_lps"], float)
            assert np.all(c >= lo - 1.0) and np.all(c <= hi + 1.0)


def test_a_partial_copy_beside_its_series_leaves_each_part_loadable(tmp_path):
    """A re-sent, partial copy of a series (the same SeriesInstanceUID, 8 of the real LIDC slab's 12
    slices) in its own folder beside the whole series: the scan of the archive splits the two by their
    repeated positions (":1", ":2"). Each part must load in its task as planned; the part whose files
    all sat in one folder was given that folder alone, whose scan does not split, and failed with
    'No image series with UID ...:2'."""
    lidc = data_path("lung-nodule-ct", "lidc-idri-0002")
    root = tmp_path / "archive"
    shutil.copytree(lidc, root / "whole", ignore=shutil.ignore_patterns("*.xml", "ATTRIBUTION*"))
    (root / "resent").mkdir()
    for f in sorted((root / "whole").glob("*.dcm"))[:8]:
        shutil.copy(f, root / "resent" / f.name)
    items = folder_items(str(root))
    assert sorted(i.series[-2:] for i in items) == [":1", ":2"]
    depths = sorted(viewer.load(i.path, series=i.series).shape[0] for i in items)  # as task.load_item does
    assert depths == [8, 12]
    assert all(" )" not in i.label for i in items)  # no description: no blank before the bracket


def test_a_series_loaded_with_gaps_says_so_in_its_results(tmp_path, capsys):
    """Run on a series that arrived half (8 of the real LIDC slab's 12 slices, one of them cut short):
    the detector runs on 7 slices and a blank one, and the results said nothing of it (the summary row
    'ok', results.json silent), so the reader of the results could not tell. The load's warnings are now
    in results.json, in the summary's 'warnings' column and, for 'hounsfield run', on stderr."""
    from viewer.cli import main

    lidc = data_path("lung-nodule-ct", "lidc-idri-0002")
    half = tmp_path / "archive" / "half"
    half.mkdir(parents=True)
    for f in sorted(lidc.glob("*.dcm"))[:8]:
        shutil.copy(f, half / f.name)
    cut = sorted(half.glob("*.dcm"))[4]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    out = tmp_path / "out"
    assert main(["batch", "lung-nodules", str(tmp_path / "archive"), "--out", str(out), "--workers", "1",
                 "--dashboard", "none"]) == 0
    (row,) = rows(out)
    assert row["status"] == "ok"
    assert cut.name in row["warnings"] and "1 slice(s) missing" in row["warnings"]
    (manifest,) = out.glob("*/*/results.json")
    warned = json.loads(manifest.read_text())["input"]["warnings"]
    assert len(warned) == 2 and any("left blank" in w for w in warned)
    capsys.readouterr()
    assert main(["run", "lung-nodules", str(half), "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert f"warning: 1 file(s) could not be read and were left out: {cut.name}" in err
    assert "warning: 1 slice(s) missing" in err


def test_ctrl_c_says_what_is_kept_and_a_rerun_goes_on(tmp_path):
    """Ctrl-C in the terminal (SIGINT to the whole process group: the client, its Dask workers and their
    AI workers) after the first of three real series: the command ended with status 130 and nothing
    but Dask's 'lose scattered data' ERROR line (and at times a BrokenPipeError traceback from the AI
    worker whose Dask worker had gone), no word on what was kept. Now one sentence says so, and the
    rerun does only the rest."""
    import subprocess
    import sys

    from pydicom.uid import generate_uid

    lidc = data_path("lung-nodule-ct", "lidc-idri-0002")
    shutil.copytree(lidc, tmp_path / "archive" / "lidc", ignore=shutil.ignore_patterns("*.xml", "ATTRIBUTION*"))
    _real_series(data_path("chest-ct"), tmp_path / "archive" / "chest", range(64, 76), generate_uid())
    _real_series(data_path("chest-ct"), tmp_path / "archive" / "chest2", range(80, 92), generate_uid())
    out = tmp_path / "out"
    argv = [sys.executable, "-c", "import sys; from viewer.cli import main; sys.exit(main(sys.argv[1:]))",
            "batch", "lung-nodules", str(tmp_path / "archive"), "--out", str(out), "--workers", "1",
            "--threads-per-worker", "1", "--dashboard", "none"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("*/*/done.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the batch ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    done = len(list(out.glob("*/*/done.json")))
    assert 1 <= done < 3
    assert f"hounsfield: the batch was interrupted; {done} of 3 series have their results in {out}" in err
    assert "Traceback" not in err and "ERROR" not in err
    rerun = subprocess.run(argv, stderr=subprocess.PIPE, text=True, timeout=300)
    assert rerun.returncode == 0 and f"{done} already done" in rerun.stderr
    assert {r["status"] for r in rows(out)} == {"ok"} and len(rows(out)) == 3
