"""The client's side of a batch: skip what is complete, submit the rest, collect rows as tasks end.

    report = run_batch(info, items, "results/", client, params={"dose": 0.25}, retries=1)

Futures are submitted a few per worker at a time (never the whole archive at once) and released as
they complete (``as_completed``), so the client, the scheduler and the workers hold a bounded number
of series whatever the archive's size.  A series whose task fails is tried again up to ``retries``
times in the run; its last row, with its one-sentence error, goes to the summary and the batch goes
on.  A Dask worker that dies mid-task loses only that task: the scheduler gives it to another worker.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from viewer.batch.summary import Summary
from viewer.batch.task import Job, clean_leftovers, done_state, process
from viewer.core.errors import HounsfieldError
from viewer.logs import log


@dataclass
class BatchReport:
    total: int
    skipped: int  # complete before this run
    ok: int
    failed: int
    seconds: float
    summary: Path
    tasks: int = 0  # tasks run (retries included)


class Progress:
    """``done/total``, the rate and the time left, on one line of stderr (a refreshed line on a terminal)."""

    def __init__(self, total: int, skipped: int, stream=None, every: float = 2.0):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.skipped = total, skipped
        self.done = skipped
        self.failed = 0
        self.t0 = time.monotonic()
        self.every = every
        self._last = 0.0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        ran = self.done - self.skipped
        rate = ran / elapsed * 60 if elapsed > 0 and ran else 0.0
        left = self.total - self.done
        eta = f", about {_duration(left / rate * 60)} left" if rate and left else ""
        extra = [f"{self.skipped} already done"] if self.skipped else []
        extra += [f"{self.failed} failed"] if self.failed else []
        return (f"batch: {self.done}/{self.total} series{' (' + ', '.join(extra) + ')' if extra else ''}, "
                f"{rate:.1f} series/min{eta}")

    def update(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += bool(failed)
        self.show()

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + self.line() + "   ")
            self.stream.flush()
        elif force or now - self._last >= self.every or self.done == self.total:
            print(self.line(), file=self.stream, flush=True)
            self._last = now

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@contextlib.contextmanager
def folder_lock(out: Path):
    """Keep two batches from writing into one results folder at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield
        return
    fd = os.open(out / ".batch.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise HounsfieldError(f"Another batch is writing to {out}; wait for it to finish or choose another "
                                  "--out folder.") from None
        yield
    finally:
        os.close(fd)


def _lost(exc: BaseException) -> str:
    """The one sentence for a task that ended in an exception instead of a row."""
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return ("The Dask workers running this series died each time (most likely it needs more memory than a "
                "worker has); run it with fewer workers or on a machine with more memory.")
    return (f"The task was lost ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); "
            "run the batch again to retry it.")


def pending(info, items, out, *, params: dict | None = None, send=None) -> list:
    """The items whose results under ``out`` are not complete for this plugin, version and parameters."""
    job = Job(info, info.resolve_params(params), str(Path(out).absolute()), send=send)
    out = Path(job.out)
    return [i for i in items if _needs_work(out / i.key, job)]


def _needs_work(folder: Path, job: Job) -> bool:
    done, needs_send = done_state(folder, job)
    return done is None or needs_send


def run_batch(info, items, out, client, *, params: dict | None = None, retries: int = 1, device: str | None = None,
              threads: int | None = None, workers_by_host: dict | None = None, workers: int = 1, send=None,
              local=None, stall_timeout: float = 300.0, progress=None) -> BatchReport:
    """Run ``info`` over ``items`` on ``client``'s cluster, writing under ``out``; see the module docstring.

    ``progress``: a stream for the progress line (default stderr), or False for none."""
    t0 = time.perf_counter()
    if retries < 0:
        raise HounsfieldError("--retries must be 0 or more.")
    out = Path(out).absolute()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HounsfieldError(f"The output folder {out} could not be created ({exc.strerror}).") from None
    resolved = info.resolve_params(params)  # bad parameters fail before anything is submitted
    job = Job(info, resolved, str(out), device, threads, dict(workers_by_host or {}), send, local, stall_timeout)
    with folder_lock(out):
        removed = clean_leftovers(out)
        if removed:
            log.info("batch: removed %d temporary folders left by killed tasks in %s", removed, out)
        summary = Summary(out / "summary.csv")
        todo: deque = deque()
        for item in items:
            if _needs_work(out / item.key, job):
                todo.append(item)
            else:
                summary.adopt(done_state(out / item.key, job)[0]["row"])
        skipped = len(items) - len(todo)
        summary.flush()
        shown = Progress(len(items), skipped, None if progress in (None, True) else progress)
        if progress is not False:
            shown.show(force=True)
        ok = failed = tasks = 0
        if todo:
            ok, failed, tasks = _run(client, job, todo, summary, shown if progress is not False else None,
                                     retries, max(1, workers))
        summary.flush()
        if progress is not False:
            shown.end()
    return BatchReport(len(items), skipped, ok, failed, time.perf_counter() - t0, out / "summary.csv", tasks)


def _run(client, job: Job, todo: deque, summary: Summary, progress: Progress | None, retries: int,
         workers: int) -> tuple[int, int, int]:
    from distributed import as_completed

    [job_future] = client.scatter([job], broadcast=True, hash=False)  # sent to each worker once
    window = 2 * workers  # in flight: one running and one waiting per worker
    prior = {item.key: summary.attempts(item.key) if summary.status(item.key) in ("failed", "unsent") else 0
             for item in todo}
    runs: dict[str, int] = {}
    inflight: dict = {}
    ac = as_completed()

    def submit() -> None:
        while todo and len(inflight) < window:
            item = todo.popleft()
            fut = client.submit(process, item, job_future, key=f"hounsfield-batch-{uuid.uuid4().hex}", pure=False)
            inflight[fut] = item
            ac.add(fut)

    ok = failed = tasks = 0
    submit()
    try:
        for fut in ac:
            item = inflight.pop(fut)
            tasks += 1
            try:
                row = fut.result()
            except Exception as exc:  # the worker died too often, or the task could not run at all
                log.warning("batch task for %s ended in %s: %s", item.key, type(exc).__name__, exc)
                from viewer.batch.task import base_row

                row = {**base_row(item, job), "worker": "", "error": _lost(exc)}
            fut.release()
            runs[item.key] = runs.get(item.key, 0) + 1
            row["attempts"] = prior[item.key] + runs[item.key]
            if row.get("status") != "ok" and runs[item.key] <= retries:
                todo.appendleft(item)  # try it again now
            else:
                summary.set(row)
                if row.get("status") == "ok":
                    ok += 1
                else:
                    failed += 1
                if progress is not None:
                    progress.update(failed=row.get("status") != "ok")
            submit()
    except BaseException:  # Ctrl-C: stop the cluster's work, keep every row that arrived
        client.cancel(list(inflight))
        raise
    finally:
        summary.flush()
        with contextlib.suppress(Exception):
            job_future.release()
    return ok, failed, tasks
