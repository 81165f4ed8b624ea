"""The viewer's side of the AI worker: one persistent process, runs supervised from a thread.

    host = AIHost()                                   # nothing starts yet
    handle = host.run("ct-denoising", volume, {"dose": 0.25}, on_progress=cb, on_done=done)
    handle.cancel()                                   # stops within about a second
    results = handle.result()                         # Results, or HounsfieldError (one sentence)

The worker ('spawn' start method) is started on the first run (or by ``start()``, e.g. after
the window has painted) and kept: torch and the models load there once.  Volumes travel through
shared memory.  Each run is watched by a supervisor thread: Cancel sets a shared flag the plugin
polls and, if the plugin has not stopped after ``cancel_grace`` seconds, kills the worker; a
crash, a hang (no progress for ``stall_timeout`` s) or an out-of-memory kill ends the run with
one sentence, and the next run starts a fresh worker.  Nothing here blocks the caller's thread
(except ``result``/``wait``/``run_sync``, which are meant for scripts and tests).

Callbacks ``on_progress(fraction, message)`` and ``on_done(handle)`` are called from the
supervisor thread: a Qt caller forwards them to the GUI thread with a queued signal, or simply
polls ``handle.progress`` / ``handle.done()`` from a QTimer.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime

from viewer.ai import shm
from viewer.ai.api import PluginInfo, Prompts, Results, check_prompts
from viewer.ai.discovery import Registry
from viewer.core.errors import HounsfieldError
from viewer.core.volume import Volume
from viewer.logs import log

DEFAULT_STALL_TIMEOUT = 300.0
DEFAULT_CANCEL_GRACE = 0.8
START_TIMEOUT = 120.0


class RunCancelled(HounsfieldError):
    """The user cancelled the run."""


@contextlib.contextmanager
def _main_hidden():
    """Keep 'spawn' from re-running the caller's main script in the worker.

    Spawn re-imports the parent's ``__main__`` in the child; a script (or notebook runner) without
    an ``if __name__ == "__main__"`` guard would then run again there.  The worker needs nothing
    from ``__main__``, so while the process starts, an empty module stands in for it.
    """
    with _MAIN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


_MAIN_LOCK = threading.Lock()


class WorkerProcess:
    """One spawned worker process with its pipe and cancel flag."""

    def __init__(self, threads: int | None = None):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.cancel_event = ctx.Event()
        config = {"threads": threads, "parent_pid": os.getpid()}
        from viewer.ai.worker import worker_main  # light: torch is imported inside the worker only

        self.process = ctx.Process(target=worker_main, args=(child, self.cancel_event, config),
                                   name="hounsfield-ai-worker", daemon=True)
        with _main_hidden():
            self.process.start()
        child.close()
        self.pid: int | None = None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.conn.poll(0.1):
                msg = self.conn.recv()
                if msg[0] == "ready":
                    self.pid = msg[1]
                    return
            elif not self.process.is_alive():
                raise HounsfieldError(f"The AI worker could not start (exit code {self.process.exitcode}); "
                                      "details are in the log file.")
        self.kill()
        raise HounsfieldError(f"The AI worker did not start within {timeout:.0f} s; try again.")

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        if self.process.is_alive():
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, AttributeError):  # gone already, or no SIGKILL (Windows)
                self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(("quit",))
        except (OSError, BrokenPipeError):
            pass
        self.process.join(3)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


class RunHandle:
    """One run: its progress, its outcome, and a way to cancel it."""

    def __init__(self, info: PluginInfo, params: dict, on_progress=None, on_done=None):
        self.info = info
        self.params = params
        self.on_progress = on_progress
        self.on_done = on_done
        self.prompts = Prompts()  # the prompts sent (checked: points off the volume dropped)
        self.prompt_notes: list[str] = []
        self.state = "starting"  # starting | running | done | failed | cancelled
        self.progress: tuple[float, str] = (0.0, "starting")
        self.notes: list[str] = []
        self.error: str | None = None
        self.results: Results | None = None
        self.worker_restarted = False
        self._done = threading.Event()
        self._cancel = threading.Event()
        self.cancel_requested_at: float | None = None
        self.finished_at: float | None = None

    def cancel(self) -> None:
        """Ask the run to stop; returns at once.  The run ends within about a second."""
        if not self._done.is_set() and not self._cancel.is_set():
            self.cancel_requested_at = time.monotonic()
            self._cancel.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> Results:
        """The results; raises ``RunCancelled`` or ``HounsfieldError`` (one sentence) otherwise."""
        if not self._done.wait(timeout):
            raise TimeoutError("the run has not finished")
        if self.state == "cancelled":
            raise RunCancelled(f"The run of {self.info.name} was cancelled.")
        if self.state == "failed":
            raise HounsfieldError(self.error or f"{self.info.name} failed.")
        assert self.results is not None
        return self.results

    # supervisor side
    def _set_progress(self, fraction: float, message: str) -> None:
        self.state = "running"
        self.progress = (fraction, message)
        if self.on_progress is not None:
            try:
                self.on_progress(fraction, message)
            except Exception:
                log.exception("on_progress callback failed")

    def _finish(self, state: str, results: Results | None = None, error: str | None = None) -> None:
        self.state, self.results, self.error = state, results, error
        self.finished_at = time.monotonic()
        self._done.set()
        if self.on_done is not None:
            try:
                self.on_done(self)
            except Exception:
                log.exception("on_done callback failed")


def _volume_payload(volume: Volume) -> tuple:
    block, ref = shm.put(volume.array)
    desc = {"array": ref, "affine": volume.affine.copy(), "modality": volume.modality, "units": volume.units,
            "rescale": tuple(volume.rescale), "window": volume.window,  # no patient data leaves the viewer
            "series_description": volume.source.series_description}  # a protocol name (e.g. "t1_mpr"), for plugins
    return block, desc


class AIHost:
    """The viewer's entry to AI plugins: discovery, one persistent worker, supervised runs."""

    _ids = itertools.count(1)

    def __init__(self, registry: Registry | None = None, *, device: str | None = None, threads: int | None = None,
                 stall_timeout: float = DEFAULT_STALL_TIMEOUT, cancel_grace: float = DEFAULT_CANCEL_GRACE,
                 start_timeout: float = START_TIMEOUT):
        from viewer.ai.devices import preference

        self.registry = registry if registry is not None else Registry()
        self.device = preference(device)
        self.threads = threads
        self.stall_timeout = stall_timeout
        self.cancel_grace = cancel_grace
        self.start_timeout = start_timeout
        self._worker: WorkerProcess | None = None
        self._lock = threading.Lock()  # guards _current (held briefly: run() is called from the GUI thread)
        self._worker_lock = threading.Lock()  # guards _worker (held while a worker starts)
        self._current: RunHandle | None = None
        self._starting: threading.Thread | None = None

    # ------------------------------------------------------------------ plugins
    def plugins(self) -> list[PluginInfo]:
        return self.registry.plugins()

    def get(self, plugin_id: str) -> PluginInfo:
        return self.registry.get(plugin_id)

    def compatible(self, volume: Volume) -> list[PluginInfo]:
        return self.registry.compatible(volume)

    # ------------------------------------------------------------------ worker
    @property
    def worker_pid(self) -> int | None:
        w = self._worker
        return w.pid if w is not None and w.alive() else None

    @property
    def busy(self) -> bool:
        return self._current is not None and not self._current.done()

    def _ensure_worker(self, warm: bool = False) -> WorkerProcess:
        with self._worker_lock:
            if self._worker is not None and self._worker.alive():
                return self._worker
            if self._worker is not None:
                self._worker.kill()
            worker = WorkerProcess(self.threads)
            try:
                worker.wait_ready(self.start_timeout)
            except HounsfieldError:
                self._worker = None
                raise
            self._worker = worker
            log.info("AI worker started (pid %s)", worker.pid)
            if warm:
                worker.conn.send(("warm",))  # import torch now, before the first run asks for it
            return worker

    def start(self) -> None:
        """Start the worker in the background (optional warm-up; runs start it anyway)."""
        if self._starting is None or not self._starting.is_alive():
            def go():
                try:
                    self._ensure_worker(warm=True)
                except HounsfieldError as exc:
                    log.warning("AI worker warm-up failed: %s", exc)

            self._starting = threading.Thread(target=go, name="hounsfield-ai-start", daemon=True)
            self._starting.start()

    def _kill_worker(self) -> None:
        with self._worker_lock:
            if self._worker is not None:
                self._worker.kill()
                self._worker = None

    def shutdown(self) -> None:
        if self._current is not None:
            self._current.cancel()
            self._current.wait(5)
        with self._worker_lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

    def devices(self, timeout: float = 60.0) -> list[str]:
        """The devices the worker can use (starts the worker; blocks, so not for the GUI thread)."""
        if self.busy:
            raise HounsfieldError("The AI worker is busy; ask for its devices after the run.")
        worker = self._ensure_worker()
        worker.conn.send(("devices",))
        if not worker.conn.poll(timeout):
            raise HounsfieldError("The AI worker did not answer; try again.")
        return worker.conn.recv()[1]

    # ------------------------------------------------------------------ runs
    def run(self, plugin: str | PluginInfo, inputs: Volume | dict[str, Volume], params: dict | None = None, *,
            device: str | None = None, on_progress: Callable[[float, str], None] | None = None,
            on_done: Callable[[RunHandle], None] | None = None, timeout: float | None = None,
            prompts: Prompts | None = None) -> RunHandle:
        """Start a run and return at once.  Bad parameters or input raise HounsfieldError here.

        ``prompts`` (points, a box, in LPS mm) go to a plugin that declares them; points off the
        volume are dropped with a note; a run with prompts is recorded as SEMIAUTOMATIC."""
        from viewer.ai.devices import preference

        info = plugin if isinstance(plugin, PluginInfo) else self.registry.get(plugin)
        if isinstance(inputs, Volume):
            inputs = {(info.inputs[0].name if info.inputs else "image"): inputs}
        first = next(iter(inputs.values()))
        info.check_input(first)
        resolved = info.resolve_params(params)
        checked, prompt_notes = check_prompts(prompts, first, info.prompts, info.name)
        dev = preference(device or self.device)
        with self._lock:
            if self._current is not None and not self._current.done():
                raise HounsfieldError("Another AI run is in progress; wait for it to finish or cancel it.")
            handle = RunHandle(info, resolved, on_progress, on_done)
            handle.prompts, handle.prompt_notes = checked, prompt_notes
            self._current = handle
        thread = threading.Thread(target=self._supervise, args=(handle, inputs, dev, timeout),
                                  name=f"hounsfield-ai-run-{info.id}", daemon=True)
        thread.start()
        return handle

    def run_sync(self, plugin, inputs, params=None, **kw) -> Results:
        """Run and wait (scripts, tests, the command line)."""
        return self.run(plugin, inputs, params, **kw).result()

    def _supervise(self, handle: RunHandle, inputs: dict[str, Volume], device: str, timeout: float | None) -> None:
        job = next(self._ids)
        prefix = f"hf{os.getpid()}_{job}_"
        blocks = []
        t_start = time.monotonic()
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        info = handle.info
        final: tuple = ("failed", None, f"{info.name} failed.")
        try:
            if handle._cancel.is_set():
                final = ("cancelled", None, None)
                return
            handle._set_progress(0.0, "starting the AI worker" if self.worker_pid is None else "sending the image")
            worker = self._ensure_worker()
            descs = {}
            for key, vol in inputs.items():
                block, desc = _volume_payload(vol)
                blocks.append(block)
                descs[key] = desc
            payload = {"info": info, "params": handle.params, "inputs": descs, "device": device,
                       "result_prefix": prefix, "prompts": handle.prompts}
            worker.cancel_event.clear()
            worker.conn.send(("run", job, payload))
            outcome = self._watch(handle, worker, job, timeout)
            if outcome[0] == "result":
                results = self._unpack(outcome[1])
                results.provenance = {"plugin_id": info.id, "plugin_name": info.name, "plugin_version": info.version,
                                      "task": info.task.value, "parameters": dict(handle.params),
                                      "started": started_at, "edited_by_person": False,
                                      **results.provenance,
                                      "wall_seconds": round(time.monotonic() - t_start, 3)}
                if handle.prompts:  # a person's clicks guided the result
                    results.provenance.update(prompts=handle.prompts.to_dict(), algorithm_type="SEMIAUTOMATIC")
                results.notes = [*handle.prompt_notes, *results.notes]
                handle.notes = list(results.notes)
                final = ("done", results, None)
            elif outcome[0] == "cancelled":
                final = ("cancelled", None, None)
            else:
                final = ("failed", None, outcome[1])
        except HounsfieldError as exc:
            final = ("failed", None, str(exc))
        except Exception as exc:
            log.exception("AI run supervisor failed")
            final = ("failed", None, f"The AI run failed unexpectedly ({type(exc).__name__}); "
                                     "details are in the log file.")
        finally:
            for block in blocks:
                block.close()
                try:
                    block.unlink()
                except FileNotFoundError:
                    pass
            for n in range(64):  # result blocks of a worker that died before handing them over
                shm.unlink_quietly(f"{prefix}{n}")
            handle._finish(final[0], final[1], final[2])  # last: waiters see a cleaned-up state

    def _watch(self, handle: RunHandle, worker: WorkerProcess, job: int, timeout: float | None) -> tuple:
        """Relay messages until the run ends; enforce cancel, stall and total timeouts."""
        name = handle.info.name
        t0 = last = time.monotonic()
        cancel_sent: float | None = None
        while True:
            now = time.monotonic()
            if handle._cancel.is_set() and cancel_sent is None:
                worker.cancel_event.set()
                cancel_sent = now
                handle.progress = (handle.progress[0], "cancelling")
            if cancel_sent is not None and now - cancel_sent > self.cancel_grace:
                log.info("AI plugin %s ignored Cancel for %.1f s; worker killed", handle.info.id, self.cancel_grace)
                self._kill_worker()
                handle.worker_restarted = True
                return ("cancelled",)
            if self.stall_timeout and now - last > self.stall_timeout:
                self._kill_worker()
                handle.worker_restarted = True
                return ("failed", f"{name} stopped responding (no progress for {self.stall_timeout:.0f} s) and was "
                                  "stopped; the AI worker restarts on the next run.")
            if timeout and now - t0 > timeout:
                self._kill_worker()
                handle.worker_restarted = True
                return ("failed", f"{name} took longer than {timeout:.0f} s and was stopped; "
                                  "try a smaller volume or a faster device.")
            try:
                msg = worker.conn.recv() if worker.conn.poll(0.05) else None
            except (EOFError, OSError):  # the pipe broke: the worker is gone
                return self._crashed(handle, worker)
            if msg is None:
                if not worker.alive():
                    return self._crashed(handle, worker)
                continue
            kind = msg[0]
            if msg[1] != job:
                continue
            last = time.monotonic()
            if kind == "progress":
                if cancel_sent is None:
                    handle._set_progress(msg[2], msg[3])
            elif kind == "note":
                handle.notes.append(msg[2])
            elif kind == "result":
                return ("result", msg[2])
            elif kind == "cancelled":
                return ("cancelled",)
            elif kind == "error":
                _, _, err_kind, sentence, tb = msg
                log.warning("AI plugin %s failed (%s): %s\n%s", handle.info.id, err_kind, sentence, tb)
                return ("failed", sentence)

    def _crashed(self, handle: RunHandle, worker: WorkerProcess) -> tuple:
        worker.process.join(2)
        code = worker.process.exitcode
        self._kill_worker()
        handle.worker_restarted = True
        name = handle.info.name
        log.error("AI worker died while running %s (exit code %s)", handle.info.id, code)
        if handle._cancel.is_set():
            return ("cancelled",)
        if code == -signal.SIGKILL:
            return ("failed", f"The AI worker was killed while running {name}, most likely because memory ran out; "
                              "close other programs or try a smaller volume (the worker restarts on the next run).")
        return ("failed", f"The AI worker stopped unexpectedly while running {name} (exit code {code}); "
                          "it restarts on the next run.")

    @staticmethod
    def _unpack(packed: Results) -> Results:
        import dataclasses

        out = Results(detections=list(packed.detections), notes=list(packed.notes),
                      provenance=dict(packed.provenance))
        for group in ("images", "label_maps", "heatmaps"):
            for item in getattr(packed, group):
                getattr(out, group).append(dataclasses.replace(item, array=shm.take(item.array)))
        return out
