"""Volumes between the viewer and the AI worker through shared memory, never through pickling.

Only an ``ArrayRef`` (block name, shape, dtype) crosses the pipe.  The process that creates a
block unlinks it: the viewer its input blocks after the run, and the viewer also the worker's
result blocks once it has copied them out (their names are deterministic per run, so blocks of
a worker that died mid-run are found and removed too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

from viewer.core.errors import HounsfieldError

# What may cross between the processes: numbers and booleans.  An object array's memory holds
# pointers into the process that made it; copied into the other process they point nowhere and
# reading them kills it.  Strings, records and the like have no meaning as an image either.
ALLOWED_KINDS = "biuf"


def check_dtype(dtype) -> np.dtype:
    """``dtype`` as a numpy dtype if it may travel through shared memory, else HounsfieldError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise HounsfieldError(f"An array of type {dtype!r} cannot be passed between the viewer and "
                              "the AI worker; only numbers and booleans can.") from None
    if dt.kind not in ALLOWED_KINDS or dt.hasobject or dt.fields is not None or dt.subdtype is not None:
        raise HounsfieldError(f"An array of {dt} values cannot be passed between the viewer and the AI worker; "
                              "only numbers and booleans can.")
    return dt


@dataclass(frozen=True)
class ArrayRef:
    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def _check_room(nbytes: int, folder: str = "/dev/shm") -> None:
    """Writing past the end of a full /dev/shm kills the process (SIGBUS): refuse in time instead."""
    if not os.path.isdir(folder):
        return
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    if free < nbytes:
        raise HounsfieldError(f"Shared memory ({folder}) has {free / 2**20:.0f} MB free but the image needs "
                              f"{nbytes / 2**20:.0f} MB; close other programs or enlarge it (for Docker: --shm-size).")


def put(array: np.ndarray, name: str | None = None) -> tuple[shared_memory.SharedMemory, ArrayRef]:
    """Copy ``array`` into a new shared block; the caller keeps the block and unlinks it later."""
    array = np.asarray(array)
    check_dtype(array.dtype)
    _check_room(int(array.nbytes))
    shm = shared_memory.SharedMemory(name=name, create=True, size=max(int(array.nbytes), 1))
    view = np.ndarray(array.shape, dtype=array.dtype, buffer=shm.buf)
    view[...] = array
    del view
    return shm, ArrayRef(shm.name, tuple(int(s) for s in array.shape), array.dtype.str)


def attach(ref: ArrayRef) -> tuple[shared_memory.SharedMemory, np.ndarray]:
    """A numpy view on an existing block (no copy); close the block when done with the view.
    Refuses (before attaching) a dtype that must not cross, and a shape the block cannot hold."""
    dtype = check_dtype(ref.dtype)
    shape = tuple(int(s) for s in ref.shape)
    if any(s < 0 for s in shape):
        raise HounsfieldError(f"An array of shape {shape} cannot be passed between the viewer and the AI worker.")
    shm = shared_memory.SharedMemory(name=ref.name)
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > shm.size:
        shm.close()
        raise HounsfieldError(f"A shared array of shape {shape} does not fit its memory block; "
                              "the AI worker sent inconsistent data.")
    return shm, np.ndarray(shape, dtype=dtype, buffer=shm.buf)


def take(ref: ArrayRef) -> np.ndarray:
    """Copy a block's array out, then close and unlink the block (also when it is refused)."""
    try:
        shm, view = attach(ref)
    except HounsfieldError:
        unlink_quietly(ref.name)
        raise
    try:
        out = np.array(view, copy=True)
    finally:
        del view
        shm.close()
        shm.unlink()
    return out


def unlink_quietly(name: str) -> bool:
    try:
        shm = shared_memory.SharedMemory(name=name)
    except (FileNotFoundError, OSError, ValueError):
        return False
    shm.close()
    try:
        shm.unlink()
    except FileNotFoundError:
        return False
    return True
