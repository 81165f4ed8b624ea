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
    _check_room(int(array.nbytes))
    shm = shared_memory.SharedMemory(name=name, create=True, size=max(int(array.nbytes), 1))
    view = np.ndarray(array.shape, dtype=array.dtype, buffer=shm.buf)
    view[...] = array
    del view
    return shm, ArrayRef(shm.name, tuple(int(s) for s in array.shape), array.dtype.str)


def attach(ref: ArrayRef) -> tuple[shared_memory.SharedMemory, np.ndarray]:
    """A numpy view on an existing block (no copy); close the block when done with the view."""
    shm = shared_memory.SharedMemory(name=ref.name)
    return shm, np.ndarray(ref.shape, dtype=np.dtype(ref.dtype), buffer=shm.buf)


def take(ref: ArrayRef) -> np.ndarray:
    """Copy a block's array out, then close and unlink the block."""
    shm, view = attach(ref)
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
