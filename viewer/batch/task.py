"""One batch task, run on a Dask worker: one series loaded, run through a plugin headless, written.

    row = process(item, job)      # never raises for a bad series: its row says "failed" and why

The steps are those of ``hounsfield run``: ``viewer.load``, ``AIHost.run`` (the plugin in its own
supervised worker process, kept with its loaded model across the tasks of this Dask worker), and
``write_results``.  The results are written into a hidden temporary folder beside their place,
with ``done.json`` (the summary row, the plugin, its version and parameters), then renamed into
``DIR/<hashed study>/<series>/`` in one step: a folder there is always complete, and a task killed
half-way leaves only a temporary folder that the next run removes.  A task holds this worker's lock
from start to end, so a worker holds one series at a time whatever its thread count.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from viewer.core.errors import HounsfieldError
from viewer.logs import log

DONE = "done.json"
TMP_TAG = ".tmp-"
OLD_TAG = ".old-"


@dataclass(frozen=True)
class Job:
    """What every task of a batch shares (sent to each worker once)."""

    info: object  # PluginInfo
    params: dict  # resolved: defaults overlaid with the --param values, coerced
    out: str
    device: str | None = None
    threads: int | None = None  # CPU threads for the model; None: the worker's cores / workers on its host
    workers_by_host: dict = field(default_factory=dict)
    send: object = None  # PacsNode to store the DICOM results on, or None
    local: object = None  # our LocalAE for DIMSE
    stall_timeout: float = 300.0

    def signature(self) -> dict:
        """What makes two runs' results the same: plugin, version and parameters."""
        return {"plugin": self.info.id, "version": self.info.version,
                "params": json.loads(json.dumps(self.params, sort_keys=True, default=str))}


# ------------------------------------------------------------------------------ worker-local state

_LOCK = threading.Lock()  # one series at a time in this worker process
_HOSTS: dict[tuple, object] = {}  # AIHost per (device, threads): the AI worker and its models stay loaded
_LOGGING = []


def _threads(job: Job) -> int:
    if job.threads:
        return int(job.threads)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    here = job.workers_by_host.get(_host_name(), 0) or 1
    return max(1, cores // here)


def _host_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address.split("://")[-1].rsplit(":", 1)[0]
    except (ImportError, ValueError, AttributeError):
        return socket.gethostname()


def _allow_children() -> None:
    """Dask starts its workers as daemon processes, and a daemon may not start processes of its own.  The
    AI worker this one starts watches its parent and ends with it (``viewer.ai.worker._watch_parent``),
    which is what the rule protects against, so the flag is lifted here."""
    import multiprocessing as mp

    proc = mp.current_process()
    if proc.daemon:
        proc.daemon = False


def _model_environment(threads: int) -> None:
    """Dask starts its workers with one OpenMP/MKL/OpenBLAS thread and glibc's MALLOC_TRIM_THRESHOLD_ at 64 KiB
    (right for many small tasks in threads, wrong for a model that allocates large arrays again and again: the
    trimming hands each back to the system, to be faulted in anew).  The AI worker inherits this process's
    environment, so it is set for the model before the AI worker starts (the one Dask worker setting that
    ``hounsfield batch``'s local cluster avoids by itself; workers started by ``dask worker`` have it)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") == "65536":  # Dask's value, not one the user chose
        del os.environ["MALLOC_TRIM_THRESHOLD_"]


def host_for(job: Job):
    """This worker's AIHost for the job's device and threads (created on the first task, then kept)."""
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost

    threads = _threads(job)
    key = (job.device, threads, job.stall_timeout)
    host = _HOSTS.get(key)
    if host is None:
        if not _LOGGING:
            from viewer.logs import setup_logging

            setup_logging()
            _LOGGING.append(True)
        _allow_children()
        _model_environment(threads)
        host = AIHost(Registry(), device=job.device, threads=threads, stall_timeout=job.stall_timeout)
        _HOSTS[key] = host
    return host


# ------------------------------------------------------------------------------ markers


def read_done(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / DONE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("row"), dict) else None


def done_state(folder: Path, job: Job) -> tuple[dict | None, bool]:
    """(done.json's content if these results are complete for this job, whether they still need sending)."""
    done = read_done(folder)
    if done is None or done.get("signature") != job.signature():
        return None, False
    needs_send = job.send is not None and done.get("sent_to") != job.send.name
    return done, needs_send


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}{TMP_TAG}{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ the task


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def base_row(item, job: Job) -> dict:
    return {"series": item.key, "study": item.study_key, "series_uid": item.series_uid, "source": item.label,
            "plugin": job.info.id, "version": job.info.version, "status": "failed", "seconds": "",
            "load_seconds": "", "run_seconds": "", "write_seconds": "", "device": "", "detections": "",
            "label_volume_ml": "", "images": "", "files": "",
            "worker": f"{socket.gethostname()}:{os.getpid()}", "attempts": 1, "error": "", "warnings": "",
            "finished": ""}


def key_outputs(results) -> dict:
    """The summary's figures: detections, labelled volume (ml), derived images, device and run time."""
    ml = 0.0
    for lm in results.label_maps:
        voxel = abs(float(np.linalg.det(np.asarray(lm.affine, np.float64)[:3, :3])))
        ml += float(np.count_nonzero(lm.array)) * voxel / 1000.0
    prov = results.provenance
    return {"detections": len(results.detections),
            "label_volume_ml": round(ml, 3) if results.label_maps else "",
            "images": len(results.images), "device": prov.get("device_description") or prov.get("device", ""),
            "run_seconds": prov.get("seconds", "")}


def load_item(item, scratch: str | None):
    """The item's volume, as ``hounsfield run`` loads its input; a PACS series is retrieved first (C-GET or
    WADO-RS) into ``scratch``."""
    import viewer

    if item.kind == "pacs":
        from viewer.pacs.retrieve import RetrieveJob
        from viewer.pacs.storage import LocalStore

        method = "WADO-RS" if item.node.is_dicomweb else "C-GET"  # C-MOVE would need one storage port per worker
        got = RetrieveJob(item.node, item.study_uid, [item.series], method=method, local=item.local,
                          store=LocalStore(scratch)).run()
        folder = got.series[0].folder
        volume = viewer.load(folder, series=item.series)
        _forget(folder)
        return volume
    return viewer.load(item.path, series=item.series or None)


def _forget(folder) -> None:
    """Retrieval records the series in the study index; a batch's scratch copy goes away, so its record does too."""
    with contextlib.suppress(Exception):
        from viewer.core.dicom.index import StudyIndex

        index = StudyIndex()
        try:
            index.forget(os.fspath(folder))
        finally:
            index.close()


def send_results(folder: Path, job: Job) -> int:
    """Store the DICOM results (SEG, SR) of ``folder`` on ``job.send``; how many objects were sent."""
    from viewer.pacs.send import send

    files = sorted(str(p) for p in folder.glob("*.dcm"))
    if not files:
        return 0
    return len(send(job.send, files, local=job.local).sent)


def process(item, job: Job) -> dict:
    """Run one series end to end and return its summary row (never raises for a bad series)."""
    with _LOCK:
        return _process(item, job)


def _process(item, job: Job) -> dict:
    from viewer.ai.outputs import write_results

    t0 = time.perf_counter()
    out = Path(job.out)
    final = out / item.key
    row = base_row(item, job)
    done, needs_send = done_state(final, job)
    if done is not None:  # finished by an earlier attempt (a rerun, or a task dask ran twice)
        row = dict(done["row"])
        if needs_send:
            row = _send_and_mark(final, done, job, row)
        return row
    parent = final.parent
    tmp = parent / f".{final.name}{TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    scratch = tempfile.mkdtemp(prefix="hounsfield-batch-") if item.kind == "pacs" else None
    try:
        volume = load_item(item, scratch)
        row["load_seconds"] = round(time.perf_counter() - t0, 3)
        host = host_for(job)
        handle = host.run(job.info, volume, job.params)
        results = handle.result()
        t_write = time.perf_counter()
        parent.mkdir(parents=True, exist_ok=True)
        files = write_results(results, volume, tmp, job.info)
        row.update(key_outputs(results), warnings=" ".join(" ".join(w.split()) for w in volume.warnings))
        row.update(status="ok", files=len(files) + 1, write_seconds=round(time.perf_counter() - t_write, 3),
                   seconds=round(time.perf_counter() - t0, 3), finished=_now())
        done = {"row": row, "signature": job.signature(), "notes": list(results.notes),
                "files": sorted(p.name for p in files)}
        _write_json(tmp / DONE, done)
        _commit(tmp, final)
        tmp = None
        if job.send is not None:
            row = _send_and_mark(final, read_done(final) or done, job, row)
        return row
    except HounsfieldError as exc:
        row["error"] = " ".join(str(exc).split())
    except Exception as exc:  # a one-sentence row for the summary; the traceback to this worker's log
        log.exception("batch task for %s failed", item.key)
        row["error"] = (f"The task failed unexpectedly ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); "
                        "details are in the worker's log file.")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    row.update(seconds=round(time.perf_counter() - t0, 3), finished=_now())
    return row


def _commit(tmp: Path, final: Path) -> None:
    """Rename the finished temporary folder into place; results of another plugin or version there are
    replaced (renamed aside first, so the place never holds half of either)."""
    old = None
    if final.exists():
        if read_done(final) is not None and done_matches(final, tmp):
            shutil.rmtree(tmp, ignore_errors=True)  # an identical result got there first
            return
        old = final.with_name(f".{final.name}{OLD_TAG}{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def done_matches(a: Path, b: Path) -> bool:
    da, db = read_done(a), read_done(b)
    return bool(da and db and da.get("signature") == db.get("signature"))


def _send_and_mark(final: Path, done: dict, job: Job, row: dict) -> dict:
    row = dict(row)
    try:
        sent = send_results(final, job)
    except HounsfieldError as exc:
        row.update(status="unsent", error=f"The results are written but sending them to {job.send.name} failed: "
                                          f"{' '.join(str(exc).split())}")
        return row
    row.update(status="ok", error="", sent=sent)
    _write_json(final / DONE, {**done, "row": row, "sent_to": job.send.name, "sent": sent})
    return row


def clean_leftovers(out: Path) -> int:
    """Remove temporary and replaced folders that killed tasks left in ``out``; returns how many."""
    removed = 0
    if not out.is_dir():
        return 0
    for study in out.iterdir():
        if not study.is_dir() or study.name.startswith("."):
            continue
        for entry in study.iterdir():
            if entry.name.startswith(".") and (TMP_TAG in entry.name or OLD_TAG in entry.name):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
    return removed
