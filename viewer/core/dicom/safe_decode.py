"""Decode untrusted compressed pixel data where a crashing decoder cannot take the viewer down.

The C, C++ and Rust decoders behind pydicom (GDCM, libjpeg, OpenJPEG, pylibjpeg-rle) trust the
codestream: a corrupt precision byte or a JPEG-LS stream whose size disagrees with the header
has made GDCM segfault or abort, and pylibjpeg-rle raises a Rust ``PanicException``, which is a
``BaseException`` that ``except Exception`` does not catch.  So encapsulated pixel data is
decoded in a small pool of persistent worker processes (``python -m
viewer.core.dicom.safe_decode``): a crash, an abort or a hang there costs one worker (restarted
on the next request) and becomes one sentence about that file.  Before any decoder sees a
codestream the worker also checks its header (JPEG SOF, JPEG-LS SOF55, JPEG 2000 SIZ, the RLE
header) against the DICOM header, which names the disagreement instead of crashing at all.

Uncompressed data never comes here: it is read in-process (``decode.read_native``), where
nothing can crash.  Protocol on the worker's stdin/stdout: one JSON line per request; the
reply is one JSON line, followed for a decoded array by its raw bytes.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time

import numpy as np

log = logging.getLogger("hounsfield.decode")

_POOL_SIZE = max(1, min(8, os.cpu_count() or 2))  # as many as decode.py has threads, at most 8
# Pixel data pydicom decodes with numpy and zlib alone (nothing there can crash): read in-process.
IN_PROCESS_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                                 "1.2.840.10008.1.2.1.99"})
_START_TIMEOUT_S = 60.0


class DecodeFailed(Exception):
    """A file's pixel data could not be decoded; ``str()`` is a clause for a sentence about that file."""


def is_panic(exc: BaseException) -> bool:
    """True for the Rust ``PanicException`` of a PyO3 extension (pylibjpeg-rle): a BaseException that is
    a decoder failure, unlike KeyboardInterrupt and SystemExit, which must still propagate."""
    return type(exc).__name__ == "PanicException"


# ----------------------------------------------------------------------------------- codestream checks


def _frame_of(ds, index: int) -> bytes | None:
    from pydicom.encaps import generate_frames

    n = int(ds.get("NumberOfFrames", 1) or 1)
    for k, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=n)):
        if k == index:
            return frame
    return None


def _jpeg_sof(data: bytes, markers: set[int]) -> tuple[int, int, int, int] | None:
    """(precision, lines, samples per line, components) of the first SOF marker among ``markers``."""
    if data[:2] != b"\xff\xd8":
        return None  # no start-of-image marker where expected: left to the decoder
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None  # entropy-coded data or damage before any frame header
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker in markers:
            if pos + 10 > len(data):
                return None
            p, y, x, nf = struct.unpack(">BHHB", data[pos + 4:pos + 10])
            return p, y, x, nf
        if marker == 0xDA or length < 2:
            return None
        pos += 2 + length
    return None


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_LS_SOF = {0xF7}


def check_codestream(ds, rows: int, columns: int, samples: int, bits_allocated: int) -> None:
    """Raise DecodeFailed when the first frame's codestream header contradicts the DICOM header.

    The decoders size their output from one of the two and write by the other: a mismatch is
    what made them crash.  Streams whose header cannot be found are left to the decoder.
    """
    import pydicom.uid as u

    ts = ds.file_meta.TransferSyntaxUID
    if rows <= 0 or columns <= 0 or samples <= 0:
        raise DecodeFailed(f"the header gives an image of {columns} x {rows} pixels with {samples} sample(s)")
    frame = _frame_of(ds, 0)
    if frame is None or not frame:
        raise DecodeFailed("its pixel data holds no compressed frame")
    name, sof = None, None
    if ts in u.JPEGLSTransferSyntaxes:
        name, sof = "JPEG-LS", _jpeg_sof(frame, _JPEG_LS_SOF)
    elif ts in u.JPEGTransferSyntaxes:
        name, sof = "JPEG", _jpeg_sof(frame, _JPEG_SOF)
    elif ts in u.JPEG2000TransferSyntaxes or str(ts).startswith("1.2.840.10008.1.2.4.20"):
        name, sof = "JPEG 2000", _j2k_siz(frame)
    elif ts == u.RLELossless:
        _check_rle(frame, rows, columns, samples, bits_allocated)
        return
    if sof is None:
        return
    precision, y, x, components = sof
    if not 1 <= precision <= (38 if name == "JPEG 2000" else 16):
        raise DecodeFailed(f"its {name} stream declares a precision of {precision} bits")
    if precision > max(bits_allocated, 8):
        raise DecodeFailed(f"its {name} stream holds {precision}-bit samples but the header allocates "
                           f"{bits_allocated} bits")
    if (y and y != rows) or x != columns:
        raise DecodeFailed(f"its {name} stream is {x} x {y} pixels but the header says {columns} x {rows}")
    if components != samples:
        raise DecodeFailed(f"its {name} stream has {components} component(s) but the header says {samples}")


def _j2k_siz(data: bytes) -> tuple[int, int, int, int] | None:
    """(largest component precision, height, width, components) from a J2K codestream's SIZ marker."""
    if data[:4] != b"\xff\x4f\xff\x51" or len(data) < 42:
        return None  # a JP2 file wrapper or damage: left to the decoder
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", data[8:24])
    csiz = struct.unpack(">H", data[40:42])[0]
    if csiz == 0 or len(data) < 42 + 3 * csiz:
        raise DecodeFailed(f"its JPEG 2000 stream declares {csiz} components")
    precision = max((data[42 + 3 * c] & 0x7F) + 1 for c in range(csiz))
    if xo >= xsiz or yo >= ysiz:
        raise DecodeFailed("its JPEG 2000 stream declares an empty image area")
    return precision, ysiz - yo, xsiz - xo, csiz


def _check_rle(frame: bytes, rows: int, columns: int, samples: int, bits_allocated: int) -> None:
    if len(frame) < 64:
        raise DecodeFailed("its RLE frame is shorter than the 64-byte RLE header")
    segments = struct.unpack("<I", frame[:4])[0]
    expected = samples * max(bits_allocated // 8, 1)
    if segments != expected:
        raise DecodeFailed(f"its RLE header lists {segments} segment(s) where the image needs {expected}")
    offsets = struct.unpack("<15I", frame[4:64])[:segments]
    if any(o < 64 or o >= len(frame) for o in offsets) or list(offsets) != sorted(offsets):
        raise DecodeFailed("its RLE header points outside its frame")
    # A replicate run turns 2 bytes into at most 128: no frame decodes to more than 64 times its size.
    if rows * columns * expected > 64 * len(frame):
        raise DecodeFailed(f"its RLE frame of {len(frame)} bytes cannot hold {columns} x {rows} pixels")


# ----------------------------------------------------------------------------------- the worker process


def _decode_request(req: dict) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(req["path"])
    if "PixelData" not in ds:
        raise DecodeFailed("it has no pixel data")
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 0) or 0)
    if req.get("check", True):
        check_codestream(ds, rows, columns, samples, bits)
    frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    with _memory_cap(4 * rows * columns * samples * max(bits // 8, 4) * frames + (1 << 30)):
        return np.ascontiguousarray(ds.pixel_array)


class _memory_cap:
    """Within the block, this process may map at most ``allowance`` bytes more than it has now: a decoder
    that a corrupt codestream sends allocating without end gets a MemoryError here, instead of
    taking the machine's memory (the viewer's included) until the system kills something."""

    def __init__(self, allowance: int):
        self.allowance = allowance
        self.saved = None

    def __enter__(self):
        try:
            import resource

            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            with open("/proc/self/statm") as f:
                mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            cap = mapped + self.allowance
            if hard != resource.RLIM_INFINITY:
                cap = min(cap, hard)
            if soft == resource.RLIM_INFINITY or cap < soft:
                resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
                self.saved = (soft, hard)
        except (ImportError, OSError, ValueError):
            self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, self.saved)
        return False


def guarded(fn, *args):
    """``fn(*args)``, with any decoder failure, a Rust panic included, raised as DecodeFailed.
    KeyboardInterrupt and SystemExit propagate."""
    try:
        return fn(*args)
    except DecodeFailed:
        raise
    except Exception as exc:
        raise DecodeFailed(_describe(exc)) from exc
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise DecodeFailed(_describe(exc)) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DecodeFailed):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "decoding it needed far more memory than its image size; its data may be corrupt"
    text = " ".join(str(exc).split())[:150]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _serve() -> None:
    """The worker's loop: requests on stdin, replies on the original stdout (fd 1 then points to stderr,
    so nothing a library prints can corrupt a reply)."""
    import traceback

    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    import importlib

    # Warm: the first request does not pay the imports of pydicom and its decoder plugins.
    for name in ("pydicom", "pydicom.pixels", "gdcm", "rle", "libjpeg", "openjpeg",
                 "pydicom.pixels.decoders.gdcm", "pydicom.pixels.decoders.pylibjpeg"):
        try:
            importlib.import_module(name)
        except Exception:
            pass

    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
        except ValueError:
            return
        try:
            arr = guarded(_decode_request, req)
        except DecodeFailed as exc:
            reply, arr = {"ok": False, "error": str(exc), "detail": traceback.format_exc()[-4000:]}, None
        else:
            reply = {"ok": True, "dtype": arr.dtype.str, "shape": list(arr.shape), "nbytes": int(arr.nbytes)}
        out.write(json.dumps(reply).encode() + b"\n")
        if arr is not None:
            view = memoryview(arr.reshape(-1).view(np.uint8))
            while view.nbytes:
                n = out.write(view)
                view = view[n:]


# ----------------------------------------------------------------------------------- the host side


class _Worker:
    def __init__(self):
        env = dict(os.environ, PYTHONWARNINGS="ignore", RUST_BACKTRACE="0", OMP_NUM_THREADS="1")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        # cwd: ``-m`` looks in the working directory first, where another "viewer" folder may lie.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "viewer.core.dicom.safe_decode"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=root, close_fds=True, bufsize=0)
        self.fd = self.proc.stdout.fileno()
        self.fresh = True

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()

    def _wait_readable(self, deadline: float) -> None:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                return

    def _read_line(self, deadline: float) -> bytes:
        buf = bytearray()
        while not buf.endswith(b"\n"):
            self._wait_readable(deadline)
            chunk = os.read(self.fd, 1)  # replies are short lines: byte by byte keeps the array bytes unread
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    def _read_into(self, target: memoryview, deadline: float) -> None:
        pos = 0
        while pos < target.nbytes:
            self._wait_readable(deadline)
            n = os.readv(self.fd, [target[pos:]])
            if n == 0:
                raise EOFError
            pos += n

    def decode(self, request: dict, deadline: float) -> np.ndarray:
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        reply = json.loads(self._read_line(deadline))
        self.fresh = False
        if not reply["ok"]:
            log.info("decoding %s failed in the decoder process: %s", request["path"], reply.get("detail", ""))
            raise DecodeFailed(reply["error"])
        arr = np.empty(reply["shape"], dtype=np.dtype(reply["dtype"]))
        if arr.nbytes != reply["nbytes"]:
            raise EOFError
        self._read_into(memoryview(arr.reshape(-1).view(np.uint8)), deadline)
        return arr


class _Pool:
    """A few persistent decoder processes, started on first use; a broken one is replaced.

    A semaphore bounds the requests in flight to the pool's size; a request takes an idle worker
    or, when none is idle, starts one (so there are never more workers than the size, and a
    worker that dies frees its slot for a fresh one instead of leaving waiters stuck).
    """

    def __init__(self, size: int):
        self.size = size
        self.slots = threading.BoundedSemaphore(size)
        self.idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self.closed = False
        self.started = False  # a worker was ever started: prestart() has nothing to do
        self.lock = threading.Lock()

    def prestart(self) -> None:
        with self.lock:
            if self.started or self.closed:
                return
            self.started = True
            for _ in range(min(self.size, 2)):  # enough for the first slices; the rest start when needed
                self.idle.put(_Worker())

    def decode(self, request: dict, timeout: float) -> np.ndarray:
        with self.slots:
            try:
                worker = self.idle.get_nowait()
            except queue.Empty:
                self.started = True
                worker = _Worker()
            if not worker.alive():  # died while idle (killed from outside): not this file's fault
                worker.kill()
                worker = _Worker()
            try:
                arr = self._decode(worker, request, timeout)
            except BaseException:
                if worker.alive() and not self.closed:
                    self.idle.put(worker)  # it answered (DecodeFailed): still good
                raise
            if self.closed:
                worker.close()
            else:
                self.idle.put(worker)
            return arr

    @staticmethod
    def _decode(worker: _Worker, request: dict, timeout: float) -> np.ndarray:
        # A worker's first request also pays its start-up (imports), so it gets that time on top.
        deadline = time.monotonic() + timeout + (_START_TIMEOUT_S if worker.fresh else 0.0)
        try:
            return worker.decode(request, deadline)
        except DecodeFailed:
            raise
        except TimeoutError:
            worker.kill()
            raise DecodeFailed(f"the decoder did not finish within {timeout:.0f} s") from None
        except (EOFError, OSError, ValueError, KeyError):
            code = worker.proc.poll()
            worker.kill()
            how = f" (signal {-code})" if code is not None and code < 0 else ""
            log.warning("the decoder process crashed%s on %s", how, request["path"])
            raise DecodeFailed(f"the decoder crashed on it{how}") from None
        except BaseException:  # KeyboardInterrupt while waiting: the worker is mid-reply, discard it
            worker.kill()
            raise

    def shutdown(self) -> None:
        self.closed = True
        while True:
            try:
                worker = self.idle.get_nowait()
            except queue.Empty:
                break
            worker.close()


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None or _pool.closed:
            _pool = _Pool(_POOL_SIZE)
            atexit.register(_pool.shutdown)
        return _pool


def prestart(transfer_syntax: str) -> None:
    """Start the decoder processes now if ``transfer_syntax`` will need them: they import their
    decoders (about 0.3 s) while the caller goes on scanning, instead of before the first slice."""
    if os.name == "posix" and transfer_syntax and transfer_syntax not in IN_PROCESS_SYNTAXES:
        _get_pool().prestart()


def decode_file(path: str, *, check: bool = True, timeout: float | None = None) -> np.ndarray:
    """All frames of a file with encapsulated pixel data, as pydicom's ``pixel_array`` gives them,
    decoded in a decoder process.  Raises DecodeFailed with a clause saying what went wrong.

    ``check=False`` skips the codestream checks (tests use it to reach a decoder's crash);
    ``timeout`` defaults to 30 s plus 5 s per MB of file: only a decoder stuck in a loop reaches it.
    """
    if timeout is None:
        timeout = 30.0 + 5.0 * os.path.getsize(path) / 2**20
    request = {"path": os.path.abspath(path), "check": check}
    if os.name != "posix":  # no select() on pipes: decode here, still catching the decoders' panics
        return guarded(_decode_request, request)
    return _get_pool().decode(request, timeout)




if __name__ == "__main__":
    _serve()
