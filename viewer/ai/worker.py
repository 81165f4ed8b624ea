"""The AI worker process: loads plugins and models once, runs them, streams progress back.

Started by ``viewer.ai.host`` with the 'spawn' method; this module is its main.  torch is
imported here lazily, on the first run, never in the viewer's process.  Messages (tuples) on the
pipe, viewer -> worker: ("run", job, payload), ("devices",), ("quit",); worker -> viewer:
("ready", pid), ("progress", job, fraction, message), ("note", job, text),
("result", job, results_with_array_refs), ("cancelled", job), ("error", job, kind, sentence,
traceback), ("devices", list).  Cancellation is a shared Event the plugin polls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import signal
import threading
import time
import traceback

import numpy as np

from viewer.ai import devices, shm
from viewer.ai.api import Cancelled, DerivedImage, Detection, Heatmap, LabelMap, PluginInfo, Prompts, Results
from viewer.core.errors import HounsfieldError
from viewer.core.volume import SourceInfo, Volume

PROGRESS_INTERVAL = 0.1  # seconds between progress messages


class WorkerContext:
    """The ``RunContext`` a plugin receives in the worker."""

    def __init__(self, send, job: int, cancel_event, device: devices.DeviceChoice, info: PluginInfo,
                 prompts: Prompts | None = None):
        self._send = send
        self.prompts = prompts if prompts is not None else Prompts()
        self.job = job
        self._cancel = cancel_event
        self.info = info
        self.choice = device
        self.device = device.name
        self.amp = device.amp
        self.notes: list[str] = []
        self._last = 0.0
        self._last_message = ""
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def progress(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_INTERVAL and fraction < 1.0 and message == self._last_message:
            return  # throttled; a new message always goes through
        self._last, self._last_message = now, message
        with self._lock:
            self._send(("progress", self.job, float(min(max(fraction, 0.0), 1.0)), str(message)))

    def note(self, message: str) -> None:
        self.notes.append(str(message))
        with self._lock:
            self._send(("note", self.job, str(message)))

    # helpers that need torch -------------------------------------------------------------
    @property
    def torch_device(self):
        import torch

        return torch.device(self.device)

    def autocast(self):
        """Mixed precision on CUDA when the plugin allows it; a no-op otherwise."""
        if self.amp and self.device.startswith("cuda"):
            import torch

            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def sliding_window(self, predictor, image, roi_size, **kw):
        from viewer.ai.inference import sliding_window

        return sliding_window(predictor, image, roi_size, context=self, **kw)

    def use_cpu(self) -> None:
        self.choice = devices.DeviceChoice("cpu", False, "CPU")
        self.device, self.amp = "cpu", False


# ------------------------------------------------------------------------------- plugins

_instances: dict[tuple, object] = {}


def load_plugin(info: PluginInfo):
    """The plugin object for ``info``, created once per worker and kept (models stay loaded)."""
    key = (info.id, info.version, info.entry, info.model_path)
    if key in _instances:
        return _instances[key]
    if info.entry.startswith("model:"):
        from viewer.ai.adapters import ModelPlugin

        obj = ModelPlugin(info)
    else:
        module, _, attr = info.entry.partition(":")
        if not module or not attr:
            raise HounsfieldError(f"Plugin {info.id} has an invalid entry {info.entry!r}; use 'module:Class'.")
        try:
            target = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise HounsfieldError(f"Plugin {info.id}'s code {info.entry} could not be imported ({exc}).") from None
        if getattr(target, "takes_info", False):
            obj = target(info)  # a runner for model files of a kind (e.g. a MONAI detection bundle)
        elif isinstance(target, type) or (callable(target) and not hasattr(target, "run")):
            obj = target()  # a plugin class, or a factory function
        else:
            obj = target  # a ready plugin object
    if not callable(getattr(obj, "run", None)):
        raise HounsfieldError(f"Plugin {info.id}'s code {info.entry} has no run(inputs, params, context) method.")
    _instances[key] = obj
    return obj


def execute(plugin, inputs: dict, params: dict, ctx: WorkerContext) -> Results:
    """Run a plugin; a CUDA out-of-memory error repeats the run on the CPU and says so."""
    try:
        return plugin.run(inputs, params, ctx)
    except Cancelled:
        raise
    except Exception as exc:
        if not ctx.device.startswith("cuda") or not devices.is_cuda_oom(exc):
            raise
    devices.free_cuda_memory()
    ctx.use_cpu()
    ctx.note("The GPU ran out of memory, so the run was repeated on the CPU.")
    ctx.progress(0.0, "repeating on the CPU")
    return plugin.run(inputs, params, ctx)


def _check_array(what: str, array, ndim: int = 3, name: str = "The plugin") -> np.ndarray:
    """``array`` as a numpy array of numbers or booleans with ``ndim`` dimensions, else one sentence.
    Nothing else may go back to the viewer: an object array would send it pointers into this process."""
    try:
        array = np.asarray(array)
    except (TypeError, ValueError):  # ragged nested lists and the like
        raise HounsfieldError(f"{name} returned a {what} that is not a regular array of numbers.") from None
    if array.dtype.kind not in shm.ALLOWED_KINDS or array.dtype.hasobject or array.dtype.fields is not None:
        raise HounsfieldError(f"{name} returned a {what} of {array.dtype} values instead of real numbers.")
    if array.ndim != ndim:
        raise HounsfieldError(f"{name} returned a {what} with {array.ndim} dimensions instead of {ndim}.")
    return array


def validate(results, info: PluginInfo) -> Results:
    """Check and normalise what a plugin returned (types, dimensions, heatmap range, label dtype)."""
    if isinstance(results, list | tuple):
        results = Results(
            images=[r for r in results if isinstance(r, DerivedImage)],
            label_maps=[r for r in results if isinstance(r, LabelMap)],
            detections=[r for r in results if isinstance(r, Detection)],
            heatmaps=[r for r in results if isinstance(r, Heatmap)])
    if not isinstance(results, Results):
        raise HounsfieldError(f"{info.name} returned {type(results).__name__} instead of Results.")
    for img in results.images:
        img.array = _check_array("derived image", img.array, name=info.name)
        img.affine = np.asarray(img.affine, np.float64).reshape(4, 4)
    for lm in results.label_maps:
        a = _check_array("label map", lm.array, name=info.name)
        if a.dtype.kind not in "iub":
            raise HounsfieldError(f"{info.name} returned a label map of {a.dtype} values instead of integers.")
        lm.array = a.astype(np.uint8 if a.max(initial=0) <= 255 else np.uint16, copy=False)
        lm.affine = np.asarray(lm.affine, np.float64).reshape(4, 4)
    for hm in results.heatmaps:
        a = np.nan_to_num(_check_array("heatmap", hm.array, name=info.name).astype(np.float32, copy=False), nan=0.0)
        hm.array = np.clip(a, 0.0, 1.0)
        try:
            hm.full_scale = float(hm.full_scale)
        except (TypeError, ValueError):
            hm.full_scale = float("nan")
        if not np.isfinite(hm.full_scale) or hm.full_scale <= 0:
            raise HounsfieldError(f"{info.name} returned a heatmap whose full scale is not a positive number.")
        hm.unit = str(hm.unit or "")[:24]
        hm.affine = np.asarray(hm.affine, np.float64).reshape(4, 4)
    for d in results.detections:
        values = [*d.center_lps, *d.size_mm, d.score]
        if len(d.center_lps) != 3 or len(d.size_mm) != 3 or not np.all(np.isfinite(values)):
            raise HounsfieldError(f"{info.name} returned a detection without a finite 3D centre and size.")
        d.score = float(min(max(d.score, 0.0), 1.0))
        d.center_lps = tuple(float(c) for c in d.center_lps)
        d.size_mm = tuple(float(c) for c in d.size_mm)
    return results


def _pack(results: Results, prefix: str) -> tuple[Results, list]:
    """Replace every array by an ArrayRef to a shared block named ``prefix<n>``."""
    blocks = []
    packed = Results(detections=results.detections, notes=results.notes, provenance=results.provenance)
    n = 0
    for group in ("images", "label_maps", "heatmaps"):
        for item in getattr(results, group):
            block, ref = shm.put(item.array, name=f"{prefix}{n}")
            n += 1
            blocks.append(block)
            getattr(packed, group).append(dataclasses.replace(item, array=ref))
    return packed, blocks


def _one_sentence(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def _run(conn, cancel_event, job: int, payload: dict) -> None:
    send = conn.send
    info: PluginInfo = payload["info"]
    attached = []
    try:
        inputs = {}
        for key, desc in payload["inputs"].items():
            block, view = shm.attach(desc["array"])
            attached.append(block)
            view.flags.writeable = False
            inputs[key] = Volume(view, desc["affine"], modality=desc["modality"], units=desc["units"],
                                 rescale=tuple(desc["rescale"]), window=desc["window"],
                                 source=SourceInfo(series_description=desc.get("series_description", "")))
        choice = devices.resolve(payload.get("device", "auto"), info.amp)
        ctx = WorkerContext(send, job, cancel_event, choice, info, payload.get("prompts"))
        ctx.progress(0.0, f"loading {info.name}")
        plugin = load_plugin(info)
        t0 = time.perf_counter()
        results = validate(execute(plugin, inputs, payload["params"], ctx), info)
        results.provenance = {**results.provenance, "device": ctx.device,
                              "device_description": ctx.choice.description,
                              "seconds": round(time.perf_counter() - t0, 3)}
        results.notes = [*ctx.notes, *[n for n in results.notes if n not in ctx.notes]]
        del inputs
        packed, blocks = _pack(results, payload["result_prefix"])
        send(("result", job, packed))
        for b in blocks:
            b.close()  # the viewer unlinks them after copying
    except Cancelled:
        send(("cancelled", job))
    except HounsfieldError as exc:
        send(("error", job, "user", str(exc), traceback.format_exc()))
    except MemoryError:
        send(("error", job, "oom", f"{info.name} ran out of memory; close other programs or try a smaller volume.",
              traceback.format_exc()))
    except Exception as exc:
        if devices.is_cuda_oom(exc):
            msg = f"{info.name} ran out of GPU memory; run it on the CPU or on a smaller volume."
            send(("error", job, "oom", msg, traceback.format_exc()))
        else:
            send(("error", job, "internal", f"{info.name} failed ({_one_sentence(exc)})", traceback.format_exc()))
    finally:
        for block in attached:
            with contextlib.suppress(BufferError):
                block.close()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)  # the viewer died without telling us


WORKER_NICE = 10  # scheduling priority of the worker (POSIX nice increment)


def worker_main(conn, cancel_event, config: dict) -> None:
    """The worker's main loop (target of the spawned process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the viewer, which stops us
    threading.Thread(target=_watch_parent, args=(config["parent_pid"],), daemon=True).start()
    try:  # inference yields the CPU to the viewer: the UI must answer while a model runs
        os.nice(int(config.get("nice", WORKER_NICE)))
    except (AttributeError, OSError):
        pass
    threads = config.get("threads")
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(threads))
    conn.send(("ready", os.getpid()))
    torch_ready = False
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        kind = msg[0]
        if kind == "quit":
            break
        if not torch_ready and kind in ("run", "devices", "warm"):
            if kind == "run":
                conn.send(("progress", msg[1], 0.0, "loading torch"))
            import torch

            if threads:
                torch.set_num_threads(int(threads))
            torch_ready = True
        if kind == "run":
            try:
                _run(conn, cancel_event, msg[1], msg[2])
            except (BrokenPipeError, ConnectionResetError, EOFError):
                break  # whoever asked has gone (its process stopped mid-run): no one to answer, no traceback
        elif kind == "devices":
            conn.send(("devices", devices.available()))
        elif kind == "ping":
            conn.send(("pong", os.getpid()))
