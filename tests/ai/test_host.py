"""The AI host and its persistent worker: shared-memory round trip, progress, Cancel, crashes, hangs, memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from viewer.ai.api import Cancelled, Results
from viewer.core.errors import HounsfieldError

REPO = Path(__file__).resolve().parents[2]


def _no_blocks_left(prefix: str) -> bool:
    return not any(n.startswith(prefix) for n in os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else True


def test_round_trip_through_shared_memory(host, aorta_ct):
    events = []
    results = host.run("test-threshold", aorta_ct, on_progress=lambda f, m: events.append((f, m))).result(120)
    expected = aorta_ct.array > 0
    lm = results.label_maps[0]
    assert lm.array.shape == aorta_ct.shape and lm.array.dtype == np.uint8
    assert np.array_equal(lm.array.astype(bool), expected)
    np.testing.assert_allclose(lm.affine, aorta_ct.affine)
    img = results.images[0]
    assert np.array_equal(img.array, -aorta_ct.array.astype(np.float32))
    hm = results.heatmaps[0]
    assert hm.array.dtype == np.float32 and 0.0 <= hm.array.min() and hm.array.max() <= 1.0
    det = results.detections[0]
    k, j, i = np.argwhere(expected).mean(axis=0)
    np.testing.assert_allclose(det.center_lps, aorta_ct.index_to_lps([i, j, k]), atol=1e-6)
    assert results.provenance["pid"] == host.worker_pid != os.getpid()  # it ran in the worker
    assert results.provenance["plugin_id"] == "test-threshold" and results.provenance["edited_by_person"] is False
    assert any(m == "thresholding" for _, m in events)
    assert _no_blocks_left(f"hf{os.getpid()}_")


def test_worker_is_persistent(host, aorta_ct):
    first = host.run_sync("test-pid", aorta_ct).provenance["pid"]
    second = host.run_sync("test-pid", aorta_ct).provenance["pid"]
    assert first == second == host.worker_pid


def test_one_run_at_a_time(host, aorta_ct):
    handle = host.run("test-slow", aorta_ct)
    try:
        with pytest.raises(HounsfieldError, match="in progress"):
            host.run("test-pid", aorta_ct)
    finally:
        handle.cancel()
        assert handle.wait(30)


def test_cancel_stops_a_cooperative_plugin_and_keeps_the_worker(host, aorta_ct):
    host.run_sync("test-pid", aorta_ct)  # warm
    pid = host.worker_pid
    started = []
    handle = host.run("test-slow", aorta_ct, on_progress=lambda f, m: started.append(f))
    deadline = time.monotonic() + 60
    while not started or started[-1] <= 0.0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    handle.cancel()
    assert handle.wait(30)
    assert handle.state == "cancelled" and not handle.worker_restarted
    with pytest.raises(HounsfieldError, match="cancelled"):
        handle.result()
    assert host.worker_pid == pid  # the plugin stopped itself; no restart needed
    assert host.run_sync("test-pid", aorta_ct).provenance["pid"] == pid


def test_cancel_kills_a_plugin_that_ignores_it(host, aorta_ct):
    host.run_sync("test-pid", aorta_ct)
    old = host.worker_pid
    seen = []
    handle = host.run("test-stubborn", aorta_ct, on_progress=lambda f, m: seen.append(m))
    deadline = time.monotonic() + 60
    while "stuck" not in seen:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    handle.cancel()
    assert handle.wait(30)
    assert handle.state == "cancelled" and handle.worker_restarted
    assert host.run_sync("test-pid", aorta_ct).provenance["pid"] not in (None, old)


def _wait_for_progress(handle, timeout=60):
    deadline = time.monotonic() + timeout
    while handle.progress[0] <= 0.0 and not handle.done():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_worker_killed_mid_run_then_recovers(host, aorta_ct):
    host.run_sync("test-pid", aorta_ct)
    pid = host.worker_pid
    handle = host.run("test-slow", aorta_ct)
    _wait_for_progress(handle)
    os.kill(pid, signal.SIGKILL)
    assert handle.wait(30)
    assert handle.state == "failed"
    with pytest.raises(HounsfieldError) as err:
        handle.result()
    message = str(err.value)
    assert "killed" in message and message.count(". ") == 0 and "\n" not in message
    assert host.run_sync("test-pid", aorta_ct).provenance["pid"] != pid  # a fresh worker
    assert _no_blocks_left(f"hf{os.getpid()}_")


def test_crash_is_one_sentence_and_the_next_run_works(host, aorta_ct):
    handle = host.run("test-crash", aorta_ct)
    assert handle.wait(120)
    assert handle.state == "failed"
    assert "stopped unexpectedly" in handle.error and "exit code 3" in handle.error and "\n" not in handle.error
    assert host.run_sync("test-pid", aorta_ct).provenance["pid"] == host.worker_pid


def test_hang_without_progress_is_stopped(host, aorta_ct):
    host.run_sync("test-pid", aorta_ct)  # torch loaded: the clock below measures the plugin only
    old_timeout, host.stall_timeout = host.stall_timeout, 2.0
    try:
        handle = host.run("test-stubborn", aorta_ct)
        assert handle.wait(60)
    finally:
        host.stall_timeout = old_timeout
    assert handle.state == "failed" and "stopped responding" in handle.error
    host.run_sync("test-pid", aorta_ct)


def test_memory_error_and_plugin_errors_are_one_sentence(host, aorta_ct):
    with pytest.raises(HounsfieldError, match="ran out of memory") as err:
        host.run_sync("test-greedy", aorta_ct)
    assert "\n" not in str(err.value)
    with pytest.raises(HounsfieldError, match="ValueError: the model's weights do not match"):
        host.run_sync("test-broken", aorta_ct)
    host.run_sync("test-pid", aorta_ct)  # the worker survived both


def test_bad_parameters_and_inputs_fail_before_running(host, aorta_ct):
    from viewer.ai.api import InputSpec, Parameter, PluginInfo, Task

    info = PluginInfo("t", "T", "1", Task.SEGMENTATION, inputs=(InputSpec(modalities=("MR",)),),
                      parameters=(Parameter("n", "int", 3, minimum=1, maximum=5),), entry="x:y")
    with pytest.raises(HounsfieldError, match="accepts MR images"):
        host.run(info, aorta_ct)
    mr_like = type(aorta_ct)(aorta_ct.array, aorta_ct.affine, modality="MR")
    with pytest.raises(HounsfieldError, match="between 1 and 5"):
        host.run(info, mr_like, {"n": 9})
    with pytest.raises(HounsfieldError, match="no parameter"):
        host.run(info, mr_like, {"m": 1})


class _FakeContext:
    def __init__(self, device):
        self.device, self.amp, self.notes = device, False, []

    def use_cpu(self):
        self.device = "cpu"

    def note(self, message):
        self.notes.append(message)

    def progress(self, f, m=""):
        pass


def test_cuda_out_of_memory_repeats_on_cpu():
    """The fallback logic itself, without a GPU: the first (CUDA) attempt raises torch's OOM."""
    import torch

    from viewer.ai.worker import execute

    class Plugin:
        calls: list[str] = []

        def run(self, inputs, params, context):
            self.calls.append(context.device)
            if context.device.startswith("cuda"):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return Results(provenance={"device": context.device})

    ctx = _FakeContext("cuda:0")
    out = execute(Plugin(), {}, {}, ctx)
    assert Plugin.calls == ["cuda:0", "cpu"] and out.provenance["device"] == "cpu"
    assert ctx.notes == ["The GPU ran out of memory, so the run was repeated on the CPU."]

    class Other:
        def run(self, inputs, params, context):
            raise Cancelled()

    with pytest.raises(Cancelled):
        execute(Other(), {}, {}, _FakeContext("cuda:0"))


def test_forced_cpu_and_missing_cuda():
    import torch

    from viewer.ai import devices

    assert devices.resolve("cpu").name == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(HounsfieldError, match="no CUDA GPU"):
            devices.resolve("cuda")
        assert devices.resolve("auto").name == "cpu"
    with pytest.raises(HounsfieldError, match="Unknown device"):
        devices.preference("tpu")


def test_viewer_process_stays_free_of_torch_and_plugin_code():
    code = ("import sys; from viewer.ai import AIHost; h = AIHost(); ps = h.plugins(); "
            "assert any(p.id == 'ct-denoising' for p in ps), ps; "
            "bad = [m for m in ('torch', 'monai', 'plugins.ct_denoising.plugin', 'PySide6') if m in sys.modules]; "
            "assert not bad, bad; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_full_shared_memory_is_refused_in_one_sentence(tmp_path):
    from viewer.ai import shm

    with pytest.raises(HounsfieldError, match="Shared memory .* MB free but the image needs") as err:
        shm._check_room(1 << 60, folder=str(tmp_path))
    assert "\n" not in str(err.value)
    block, ref = shm.put(np.arange(12, dtype=np.int16).reshape(3, 4))
    try:
        assert ref.shape == (3, 4) and ref.dtype == "<i2"
    finally:
        block.close()
    assert np.array_equal(shm.take(ref), np.arange(12).reshape(3, 4))  # take() also unlinks
    assert not shm.unlink_quietly(ref.name)


def test_background_warm_up_then_run(aorta_ct):
    from tests.ai.conftest import make_registry
    from viewer.ai.host import AIHost

    h = AIHost(make_registry(), device="cpu", threads=1)
    try:
        assert h.worker_pid is None  # nothing starts with the host
        h.start()
        handle = h.run("test-pid", aorta_ct)  # returns at once, even while the worker is starting
        assert handle.wait(120) and handle.state == "done"
        assert handle.results.provenance["pid"] == h.worker_pid
    finally:
        h.shutdown()
    assert h.worker_pid is None


@pytest.mark.parametrize("what", ["object", "strings", "records", "complex", "object-heatmap", "ragged"])
def test_arrays_that_are_not_numbers_are_refused_in_the_worker(host, aorta_ct, what):
    """An object array's memory is pointers into the worker: copied out in the viewer they killed it.
    The worker refuses them (and strings, records...) in one sentence, and stays up."""
    pid = host.run_sync("test-pid", aorta_ct).provenance["pid"]
    with pytest.raises(HounsfieldError) as err:
        host.run_sync("test-hostile", aorta_ct, {"what": what})
    message = str(err.value)
    assert message.startswith("Test hostile returned a ") and message.endswith(".") and "\n" not in message
    assert message.count(". ") == 0, message
    assert host.run_sync("test-pid", aorta_ct).provenance["pid"] == pid  # the same worker: it survived
    assert _no_blocks_left(f"hf{os.getpid()}_")


def test_the_viewer_refuses_an_object_array_from_shared_memory():
    """The host's own check: a block that claims object dtype is refused before it is read, and removed."""
    from multiprocessing import shared_memory

    from viewer.ai import shm
    from viewer.ai.api import DerivedImage
    from viewer.ai.host import AIHost

    name = f"hf{os.getpid()}_hostile_0"
    block = shared_memory.SharedMemory(name=name, create=True, size=8 * 64)
    block.buf[:] = b"\xff" * (8 * 64)  # pointers to nowhere
    block.close()
    for dtype in ("|O", "<U4", "|V8"):
        if not os.path.exists(f"/dev/shm/{name}"):
            block = shared_memory.SharedMemory(name=name, create=True, size=8 * 64)
            block.close()
        packed = Results(images=[DerivedImage(shm.ArrayRef(name, (4, 4, 4), dtype), np.eye(4), "x")])
        with pytest.raises(HounsfieldError, match="only numbers and booleans"):
            AIHost._unpack(packed)
        assert not os.path.exists(f"/dev/shm/{name}")
    with pytest.raises(HounsfieldError, match="only numbers and booleans"):
        shm.put(np.empty((2, 2), dtype=object))
