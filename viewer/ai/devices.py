"""Choosing where a plugin runs: CUDA when present (mixed precision where allowed), else the CPU.

``preference`` is "auto", "cpu" or "cuda" (or "cuda:N"); the user setting that forces the CPU is
``HOUNSFIELD_DEVICE=cpu`` or the host's ``device="cpu"``.  Everything that touches torch runs in
the worker process; this module imports torch only inside functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from viewer.core.errors import HounsfieldError

PREFERENCES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DeviceChoice:
    name: str  # "cpu" or "cuda:0"
    amp: bool  # autocast to float16 allowed
    description: str  # "NVIDIA H100 (80 GB)" or "CPU, 2 threads"

    @property
    def is_cuda(self) -> bool:
        return self.name.startswith("cuda")


def preference(value: str | None = None) -> str:
    """The device preference: the explicit value, else $HOUNSFIELD_DEVICE, else 'auto'."""
    pref = (value or os.environ.get("HOUNSFIELD_DEVICE") or "auto").strip().lower()
    if pref not in PREFERENCES and not pref.startswith("cuda:"):
        raise HounsfieldError(f"Unknown device {pref!r}; choose auto, cpu or cuda.")
    return pref


def resolve(pref: str = "auto", plugin_amp: bool = False) -> DeviceChoice:
    """The device for a run (worker side: imports torch)."""
    import torch

    pref = preference(pref)
    cuda = torch.cuda.is_available()
    if pref.startswith("cuda") and not cuda:
        raise HounsfieldError("CUDA was asked for but no CUDA GPU is available here; run on the CPU instead.")
    if cuda and pref != "cpu":
        index = int(pref.split(":")[1]) if ":" in pref else 0
        if index >= torch.cuda.device_count():
            raise HounsfieldError(f"There is no CUDA device {index}; this machine has {torch.cuda.device_count()}.")
        props = torch.cuda.get_device_properties(index)
        return DeviceChoice(f"cuda:{index}", bool(plugin_amp),
                            f"{props.name} ({props.total_memory / 2**30:.0f} GB)")
    return DeviceChoice("cpu", False, f"CPU, {torch.get_num_threads()} threads")


def available() -> list[str]:
    """Human-readable list of the devices a run could use (worker side)."""
    import torch

    out = [f"cpu: CPU, {torch.get_num_threads()} threads"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append(f"cuda:{i}: {p.name} ({p.total_memory / 2**30:.0f} GB)")
    return out


def is_cuda_oom(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error (torch raises several kinds)."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    text = str(exc)
    return "CUDA out of memory" in text or "CUBLAS_STATUS_ALLOC_FAILED" in text


def free_cuda_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
