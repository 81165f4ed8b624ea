"""The Dask cluster a batch runs on: a LocalCluster sized to this machine, one worker per GPU, or an
existing cluster's scheduler.

    with open_cluster(workers=2) as c:        # or scheduler="tcp://host:8786", or gpus=True
        c.client.submit(...); c.workers; c.dashboard

Local workers are processes with one task thread each (a worker holds one series at a time); the
model's CPU threads are the cores shared out among the workers (``threads``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from dataclasses import dataclass, field

from viewer.core.errors import HounsfieldError

GIB = 2**30
MEMORY_PER_WORKER = 3 * GIB  # what one series, its results and a model may take; fewer workers on less memory


@dataclass
class Cluster:
    client: object
    workers: int
    threads: int | None  # CPU threads for each worker's model (None: each worker shares out its host's cores)
    dashboard: str = ""
    local: bool = True
    workers_by_host: dict = field(default_factory=dict)
    gpus: int = 0


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def local_size(workers: int | None = None, threads: int | None = None) -> tuple[int, int, int]:
    """(workers, model threads per worker, memory limit per worker in bytes) for this machine."""
    import psutil

    total = psutil.virtual_memory().total
    n = workers or max(1, min(cores(), total // MEMORY_PER_WORKER))
    return n, threads or max(1, cores() // n), int(total / n)


def cuda_devices() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install reads as none
        return 0


def _workers_by_host(client) -> dict[str, int]:
    info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
    return dict(Counter(w.get("host", "") for w in info.get("workers", {}).values()))


def _takes_n_workers(client) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


@contextlib.contextmanager
def open_cluster(scheduler: str | None = None, *, workers: int | None = None, threads: int | None = None,
                 gpus: bool = False, dashboard: str | None = ":8787", wait_timeout: float = 60.0):
    """Start (or connect to) the cluster, yield a ``Cluster``, and close what was started."""
    from distributed import Client

    if workers is not None and workers < 1:
        raise HounsfieldError("--workers must be at least 1.")
    if threads is not None and threads < 1:
        raise HounsfieldError("--threads-per-worker must be at least 1.")
    if scheduler:
        if gpus:
            raise HounsfieldError("--gpus sizes the local cluster; on an existing cluster start one worker per GPU "
                                  "instead (CUDA_VISIBLE_DEVICES=N dask worker ...).")
        try:
            client = Client(scheduler, timeout=wait_timeout)
        except (OSError, TimeoutError) as exc:
            raise HounsfieldError(f"The Dask scheduler at {scheduler} could not be reached ({type(exc).__name__}); "
                                  "check the address and that 'dask scheduler' runs there.") from None
        try:
            try:
                client.wait_for_workers(1, timeout=wait_timeout)
            except TimeoutError:
                raise HounsfieldError(f"The Dask scheduler at {scheduler} has no workers; start some with "
                                      f"'dask worker {scheduler}'.") from None
            by_host = _workers_by_host(client)
            yield Cluster(client, sum(by_host.values()), threads, client.dashboard_link or "", False, by_host)
        finally:
            client.close()
        return
    cluster, n, model_threads, gpu_count = _start_local(workers, threads, gpus, dashboard)
    client = Client(cluster)
    try:
        link = client.dashboard_link if dashboard else ""
        yield Cluster(client, n, model_threads, link or "", True, _workers_by_host(client), gpu_count)
    finally:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            cluster.close()


def _start_local(workers: int | None, threads: int | None, gpus: bool, dashboard: str | None):
    import dask

    config = {
        # a task only waits on its AI worker: sampling its stack 100 times a second would only take CPU from it
        "distributed.worker.profile.enabled": False,
        # Dask's defaults for workers of many small tasks (one OpenMP/BLAS thread, glibc trimming freed memory
        # above 64 KiB) slow a model that allocates large arrays, and Dask writes them into the environment of
        # the process that starts the workers (this one) for good; the workers get the model's threads by
        # their own env below instead, and glibc's own malloc settings
        "distributed.nanny.pre-spawn-environ": {},
    }
    with dask.config.set(config):
        return _start(workers, threads, gpus, dashboard)


def _thread_env(threads: int) -> dict[str, str]:
    return {var: str(threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def _start(workers: int | None, threads: int | None, gpus: bool, dashboard: str | None):
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    quiet = {"silence_logs": logging.ERROR}
    if not gpus:
        n, model_threads, memory = local_size(workers, threads)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=memory,
                               host="127.0.0.1", scheduler_port=0, dashboard_address=dashboard,
                               env=_thread_env(model_threads), **quiet)
        return cluster, n, model_threads, 0
    count = cuda_devices()
    if count == 0:
        raise HounsfieldError("--gpus asks for one worker per CUDA GPU but none is available here; "
                              "run without --gpus to use the CPU.")
    n = min(workers or count, count)
    _, model_threads, memory = local_size(n, threads)
    specs = {f"gpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "memory_limit": memory,
                                                    "env": {"CUDA_VISIBLE_DEVICES": str(i),
                                                            **_thread_env(model_threads)}, **quiet}}
             for i in range(n)}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "port": 0, "dashboard": bool(dashboard),
                                               "dashboard_address": dashboard or ":0"}}
    return SpecCluster(workers=specs, scheduler=scheduler, **quiet), n, model_threads, n
