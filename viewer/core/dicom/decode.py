"""Decode a sorted stack of frames into one preallocated array, in parallel.

Uncompressed little-endian single-frame files are read straight from disk into the volume's
buffer (no pydicom dataset, no intermediate copy); everything else (JPEG, JPEG-LS, JPEG 2000,
RLE, big-endian, deflated, multi-frame) goes through pydicom's pixel handlers (pylibjpeg,
python-gdcm).  CT becomes int16 Hounsfield units with each frame's own rescale applied; other
modalities keep their stored type when all frames share one rescale, else become float32 values.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed, wait

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from viewer.core.dicom.geometry import StackGeometry
from viewer.core.dicom.header import InstanceHeader
from viewer.core.dicom.safe_decode import IN_PROCESS_SYNTAXES, DecodeFailed, decode_file, is_panic
from viewer.core.errors import HounsfieldError

_NATIVE_LE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
_PIXEL_TAG = b"\xe0\x7f\x10\x00"


class LoadCancelled(HounsfieldError):
    """Loading was cancelled by the user."""


def stored_dtype(h: InstanceHeader) -> np.dtype:
    signed = h.pixel_representation == 1
    bits = {8: "8", 16: "16", 32: "32"}.get(h.bits_allocated)
    if bits is None:
        raise HounsfieldError(f"Images with {h.bits_allocated} bits per pixel are not supported.")
    return np.dtype(("int" if signed else "uint") + bits)


def finite_rescale(frames: list, modality: str, rescale_type: str = "") -> tuple[list, list[str]]:
    """The frames whose RescaleSlope and RescaleIntercept are finite numbers, and a warning about the rest.

    A NaN or infinite rescale gives no real value at all.  Frames with one are left out (a blank
    slot, like a frame without a valid position) while others remain.  When every frame has one, a
    CT (or any HU series) is refused: an assumed rescale would show Hounsfield units silently wrong;
    other modalities, whose values are not calibrated units, show their stored values (slope 1,
    intercept 0) and say so.
    """
    import dataclasses
    import math

    def ok(ref) -> bool:
        return math.isfinite(ref.frame.slope) and math.isfinite(ref.frame.intercept)

    good = [f for f in frames if ok(f)]
    if len(good) == len(frames):
        return frames, []
    what = "RescaleSlope or RescaleIntercept"
    if good:
        bad = len({f.instance.path for f in frames if not ok(f)})
        return good, [f"{bad} image(s) have a {what} that is not a finite number and were left out."]
    if modality == "CT" or rescale_type.upper() == "HU":
        raise HounsfieldError(f"The series' {what} is not a finite number, so its Hounsfield units are unknown; "
                              "ask for the series to be sent again.")
    fixed = [dataclasses.replace(f, frame=dataclasses.replace(f.frame, slope=1.0, intercept=0.0)) for f in frames]
    return fixed, [f"The images' {what} is not a finite number; the stored pixel values are shown "
                   "(slope 1, intercept 0), not real-world values."]


def output_plan(geom: StackGeometry) -> tuple[np.dtype, tuple[float, float], str]:
    """Choose the volume dtype and rescale: (dtype, (slope, intercept), mode)."""
    first = geom.frames[0].instance
    if first.samples_per_pixel != 1:  # colour: luma in the stored sample type (8, 16 or 32 bits)
        return stored_dtype(first), (1.0, 0.0), "luma"
    rescales = {(f.frame.slope, f.frame.intercept) for f in geom.frames}
    if first.modality == "CT" or first.rescale_type.upper() == "HU":
        return np.dtype(np.int16), (1.0, 0.0), "hu"
    if len(rescales) == 1:
        return stored_dtype(first), next(iter(rescales)), "stored"
    return np.dtype(np.float32), (1.0, 0.0), "real"


def _native_offset(h: InstanceHeader, nbytes: int) -> int | None:
    """File offset of the pixel bytes when they are the file's last element, else None."""
    if h.transfer_syntax not in _NATIVE_LE or h.frames[0].index is not None:
        return None
    length = nbytes + (nbytes & 1)
    explicit = h.transfer_syntax == ExplicitVRLittleEndian
    start = h.size - length - (12 if explicit else 8)
    if start < 0:
        return None
    with open(h.path, "rb") as fh:
        fh.seek(start)
        head = fh.read(12 if explicit else 8)
    if head[:4] != _PIXEL_TAG:
        return None
    got = int.from_bytes(head[8:12] if explicit else head[4:8], "little")
    return start + len(head) if got == length else None


def _fix_bits(raw: np.ndarray, h: InstanceHeader) -> np.ndarray:
    """Mask unused high bits (and sign-extend) as the DICOM pixel module requires."""
    ba, bs = h.bits_allocated, h.bits_stored
    if not bs or bs >= ba or raw.dtype.kind not in "iu":
        return raw
    if h.pixel_representation == 0:
        raw &= (1 << bs) - 1
    else:
        shift = ba - bs
        raw <<= shift
        raw >>= shift  # arithmetic shift on a signed dtype
    return raw


def read_native(h: InstanceHeader) -> np.ndarray | None:
    """Read an uncompressed single-frame image straight from its file, or None if not possible."""
    dtype = stored_dtype(h)
    nbytes = h.rows * h.columns * dtype.itemsize
    offset = _native_offset(h, nbytes)
    if offset is None or h.samples_per_pixel != 1:
        return None
    raw = np.fromfile(h.path, dtype=dtype.newbyteorder("<"), count=h.rows * h.columns, offset=offset)
    if raw.size != h.rows * h.columns:
        return None
    return _fix_bits(raw.reshape(h.rows, h.columns), h)


def read_pydicom(h: InstanceHeader) -> np.ndarray:
    """Decode all frames of a file with pydicom: (frames, rows, cols[, samples]).

    Uncompressed data (any byte order, deflated) is decoded here; compressed data in a decoder
    process (``safe_decode``), where a decoder that crashes on a corrupt codestream takes down
    only that process: it raises DecodeFailed for this file instead.
    """
    if h.transfer_syntax in IN_PROCESS_SYNTAXES:
        arr = pydicom.dcmread(h.path).pixel_array
    else:
        arr = decode_file(h.path)
    n_frames = len(h.frames)
    if n_frames == 1 and arr.ndim == (2 if h.samples_per_pixel == 1 else 3):
        arr = arr[None]
    return arr


def _stored_range(h: InstanceHeader) -> tuple[int, int]:
    """The smallest and largest value the header's BitsStored and PixelRepresentation allow."""
    bits = h.bits_stored or h.bits_allocated
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if h.pixel_representation else (0, (1 << bits) - 1)


def _to_output(raw: np.ndarray, out: np.ndarray, slope: float, intercept: float, mode: str,
               stored: tuple[int, int] = (-(1 << 31), 1 << 32)) -> None:
    if mode == "luma":
        out[...] = raw if raw.ndim == 2 else np.rint(raw[..., :3] @ np.array([0.299, 0.587, 0.114]))
    elif mode == "stored":
        out[...] = raw
    elif mode == "hu" and slope == 1.0 and float(intercept).is_integer():
        icpt = int(intercept)
        if raw.dtype.itemsize <= 2 and -32768 <= stored[0] + icpt and stored[1] + icpt <= 32767:
            # Every possible value fits int16 (12-bit CT, say): one pass, no temporary array.
            np.add(raw, np.int32(icpt), out=out, casting="unsafe")
        else:
            np.clip(raw.astype(np.int32) + icpt, -32768, 32767, out=out, casting="unsafe")
    elif mode == "hu":
        vals = raw.astype(np.float64) * slope + intercept
        np.clip(np.rint(vals), -32768, 32767, out=out, casting="unsafe")
    else:
        out[...] = raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def blank_value(mode: str, dtype: np.dtype) -> float:
    return -1024 if mode == "hu" else 0


def decode_stack(geom: StackGeometry, out: np.ndarray, mode: str, *,
                 order: list[int] | None = None,
                 on_slice: Callable[[int], None] | None = None,
                 cancel: threading.Event | None = None,
                 workers: int | None = None) -> list[str]:
    """Fill ``out[k]`` for every frame of ``geom``; return one sentence per frame that failed.

    ``order`` lists positions in ``geom.frames`` in the order to decode (default: the middle
    slice first, then outwards).  ``on_slice(k)`` is called in this thread as each slot fills.
    """
    by_file: dict[str, list[int]] = defaultdict(list)
    for pos, ref in enumerate(geom.frames):
        by_file[ref.instance.path].append(pos)
    if order is None:
        mid = len(geom.frames) // 2
        order = sorted(range(len(geom.frames)), key=lambda p: (abs(p - mid), p))
    files, seen = [], set()
    for pos in order:
        path = geom.frames[pos].instance.path
        if path not in seen:
            seen.add(path)
            files.append(path)

    def work(path: str) -> list[int]:
        if cancel is not None and cancel.is_set():
            return []
        positions = by_file[path]
        first = geom.frames[positions[0]].instance
        raw = read_native(first) if len(positions) == 1 else None
        if raw is not None:
            f = geom.frames[positions[0]].frame
            _to_output(raw, out[geom.slots[positions[0]]], f.slope, f.intercept, mode, _stored_range(first))
            return [geom.slots[positions[0]]]
        arr = read_pydicom(first)
        done = []
        for pos in positions:
            ref = geom.frames[pos]
            idx = ref.frame.index or 0
            if idx >= len(arr):
                raise ValueError(f"frame {idx + 1} is missing from the pixel data")
            _to_output(arr[idx], out[geom.slots[pos]], ref.frame.slope, ref.frame.intercept, mode,
                       _stored_range(first))
            done.append(geom.slots[pos])
        return done

    failures: list[str] = []
    reported: set = set()
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        futures = {pool.submit(work, p): p for p in files}
        try:
            for fut in as_completed(futures):
                if cancel is not None and cancel.is_set():
                    _settle_after_cancel(futures, reported, out, by_file, geom, mode, on_slice)
                    raise LoadCancelled("Loading was cancelled.")
                reported.add(fut)
                try:
                    slots = fut.result()
                except BaseException as exc:  # a broken file must not stop the rest
                    if not isinstance(exc, Exception) and not is_panic(exc):
                        raise  # KeyboardInterrupt, SystemExit
                    path = futures[fut]
                    failures.append(_failure(os.path.basename(path), len(by_file[path]), exc))
                    for pos in by_file[path]:
                        out[geom.slots[pos]] = blank_value(mode, out.dtype)
                    continue
                if on_slice is not None:
                    for k in slots:
                        on_slice(k)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return failures


def _failure(name: str, frames: int, exc: BaseException) -> str:
    """One sentence for a file whose frames could not be decoded."""
    if isinstance(exc, (DecodeFailed, HounsfieldError)):
        why = " ".join(str(exc).split())
    else:
        text = " ".join(str(exc).split())
        why = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    # pydicom lists every plugin's complaint: the first is enough for a sentence (the log has them all)
    why = why.replace("Unable to decode as exceptions were raised by all available plugins: ", "")
    if len(why) > 90:
        why = why[:90].rsplit(" ", 1)[0] + "..."
    what = "its image" if frames == 1 else f"its {frames} frames"
    return f"{name}: {what} could not be decoded ({why.rstrip('.')})."


def _settle_after_cancel(futures, reported, out, by_file, geom, mode, on_slice) -> None:
    """On Cancel: stop what has not started, let running decodes finish, and report the slices they
    completed (they are whole), so that every slot not reported holds only the blank value."""
    for fut in futures:
        fut.cancel()
    wait(futures)
    for fut, path in futures.items():
        if fut in reported or fut.cancelled():
            continue
        if fut.exception() is not None:
            for pos in by_file[path]:
                out[geom.slots[pos]] = blank_value(mode, out.dtype)
        elif on_slice is not None:
            for k in fut.result():
                on_slice(k)
