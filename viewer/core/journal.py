"""Never lose a segmentation: an append-only, compressed journal of every change, on disk at once.

A ``Journal`` observes one ``Segmentation``.  Its file (``<data dir>/segmentations/<series>/
<segmentation uid>.hjournal``) starts with a snapshot of the segmentation (geometry, metadata and
layers) and then gets one record per edit.  An edit is one *step* of the ``Editor`` the journal
follows (a brush stroke, adding or removing a segment, an undo): everything the step changed (the
boxes of the layers it touched, with their new voxels, and the new metadata when that changed) is
written as ONE record when the step ends, so replay never sees half a step.  Changes made outside
an editor step are one record each.  Records are written and handed to the operating system as
the step ends (a killed process loses nothing), and the file is synced to the disk at most a
second after a change (``sync`` is also called by a timer in the GUI).

File format: ``MAGIC``, then records framed as ``u32 length`` + ``u32 CRC-32`` + body, where the
body is zlib(``u32 header length`` + JSON header + raw voxels).  Replay stops at the first record
that is cut short or whose checksum fails (a torn tail from a kill, a power cut or a full disk):
what comes before it is a state the session really had.  A journal is never appended to after
such a record: a journal is always *started* by writing its snapshot to a temporary file, syncing
it and renaming it over the old one, so restoring a segmentation compacts its journal into a
fresh, undamaged one.  A write that fails mid-session (a full disk) is cut back to the last whole
record, and the next change is written as a fresh snapshot.

``mark_saved`` appends a "saved" record after an export; a journal with changes after its last
"saved" record is *recoverable*: ``recoverable(series_uid)`` lists them and ``replay(path)``
rebuilds the segmentation exactly.

Paths: the series folder is the SeriesInstanceUID only when it is a well-formed UID (digits and
dots, at most 64 characters); anything else (a file's hostile UID, ``..``) is hashed, and so is a
segmentation uid that is not a plain name.  Nothing from a file becomes a path unchecked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
import zlib
from dataclasses import dataclass

import numpy as np

from viewer.core.segmentation import Box, Segmentation
from viewer.core.signals import Signal
from viewer.core.volume import Volume
from viewer.logs import log
from viewer.paths import data_dir

SUFFIX = ".hjournal"
MAGIC = b"HJOURNAL2\n"
_FRAME = struct.Struct("<II")  # body length, CRC-32 of the body
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_OURS = re.compile(r"(file|uid)-[0-9a-f]{16}|unsaved")  # names series_id makes itself
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _hashed(prefix: str, value: str) -> str:
    return f"{prefix}-" + hashlib.sha1(value.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def series_id(volume_or_uid) -> str:
    """The folder name journals of a series live in: its SeriesInstanceUID when that is a UID, a
    hash of anything else (or of the file's path when there is no UID).  Always one safe path
    component, and series_id(series_id(x)) == series_id(x)."""
    if isinstance(volume_or_uid, Volume):
        src = volume_or_uid.source
        uid = src.series_instance_uid or (_hashed("file", src.path) if src.path else "unsaved")
    else:
        uid = str(volume_or_uid) or "unsaved"
    if (len(uid) <= 64 and _UID.fullmatch(uid)) or _OURS.fullmatch(uid):
        return uid
    return _hashed("uid", uid)


def file_stem(seg_uid: str) -> str:
    """The journal file name (without suffix) of a segmentation uid: the uid when it is a plain name."""
    return seg_uid if _NAME.fullmatch(seg_uid) else _hashed("seg", seg_uid)


def journal_dir(series) -> str:
    return os.path.join(data_dir(), "segmentations", series_id(series))


def _pack(header: dict, chunks=()) -> bytes:
    """One framed record: the header and the raw bytes of ``chunks`` (arrays), compressed."""
    h = json.dumps(header).encode()
    z = zlib.compressobj(1)
    body = [z.compress(struct.pack("<I", len(h)) + h)]
    body += [z.compress(memoryview(np.ascontiguousarray(c)).cast("B")) for c in chunks]
    body.append(z.flush())
    body = b"".join(body)
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def _scan(data: bytes) -> tuple[list[tuple[int, int]], int]:
    """(start, end) of each whole record of a journal's bytes, and where the good part ends."""
    if not data.startswith(MAGIC):
        return [], 0
    spans, pos = [], len(MAGIC)
    while pos + _FRAME.size <= len(data):
        n, crc = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + n
        if end > len(data) or zlib.crc32(data[pos + _FRAME.size:end]) != crc:
            break
        spans.append((pos, end))
        pos = end
    return spans, pos


def _records(path: str):
    """(header, payload) of each whole record; stops at a torn or damaged one."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        yield from _legacy_records(data)
        return
    spans, _ = _scan(data)
    for start, end in spans:
        body = zlib.decompress(data[start + _FRAME.size:end])
        (hn,) = struct.unpack_from("<I", body, 0)
        yield json.loads(body[4:4 + hn]), body[4 + hn:]


def _legacy_records(data: bytes):
    """Journals written before the checksummed format (u32 length + zlib body)."""
    pos = 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        if pos + 4 + n > len(data):
            return
        try:
            body = zlib.decompress(data[pos + 4:pos + 4 + n])
        except zlib.error:
            return
        (hn,) = struct.unpack_from("<I", body, 0)
        yield json.loads(body[4:4 + hn]), body[4 + hn:]
        pos += 4 + n


def _box_list(box: Box) -> list[list[int]]:
    return [[int(s.start), int(s.stop)] for s in box]


def _size(box: Box) -> int:
    return int(np.prod([s.stop - s.start for s in box]))


def _merge(boxes: list[Box]) -> list[Box]:
    """The boxes to write for one layer: their union when it is no bigger than their sum."""
    if len(boxes) < 2:
        return boxes
    union = tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))
    return [union] if _size(union) <= sum(_size(b) for b in boxes) else boxes


class Journal:
    """Writes every change of ``seg`` to its journal file, one record per step of ``editor``.

    The file at ``path`` (by default in the series' journal folder) is replaced by a snapshot of
    ``seg``; ``unsaved`` says whether that snapshot is work not saved anywhere else (a restored
    segmentation; by default: whether it has any voxels)."""

    def __init__(self, seg: Segmentation, series: str | None = None, path: str | None = None, *,
                 editor=None, unsaved: bool | None = None):
        self.seg = seg
        if path is None:
            folder = journal_dir(series if series is not None else seg.series_uid)
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, file_stem(seg.uid) + SUFFIX)
        self.path = path
        self._last_sync = 0.0
        self._dirty = False
        self.closed = False
        self.error: OSError | None = None  # the last write that failed
        self.failed = Signal()  # (OSError): a record could not be written
        self._file = None
        self._depth = 0
        self._boxes: dict[int, list[Box]] = {}
        self._meta = False
        self._name = ""
        self._needs_snapshot = False
        self._editor = None
        self._snapshot(any(a.any() for a in seg.layers) if unsaved is None else unsaved, fail=True)
        seg.changed.connect(self._on_changed)
        seg.segments_changed.connect(self._on_meta)
        seg.layers_changed.connect(self._on_meta)
        if editor is not None:
            self.follow(editor)

    # steps
    def follow(self, editor) -> None:
        """Write one record per step of ``editor`` (a viewer.core.edits.Editor)."""
        self._editor = editor
        editor.step_begun.connect(self.begin)
        editor.step_ended.connect(self.commit)

    def begin(self, name: str = "") -> None:
        """Hold the changes until the matching ``commit`` (nested pairs make one record)."""
        if self._depth == 0:
            self._name = name
        self._depth += 1

    def commit(self) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            self._flush()

    def _on_changed(self, layer: int, box) -> None:
        self._boxes.setdefault(layer, []).append(tuple(box))
        if self._depth == 0:
            self._flush()

    def _on_meta(self) -> None:
        self._meta = True
        if self._depth == 0:
            self._flush()

    def _flush(self) -> None:
        """Write the pending changes (their voxels as they are now) as one record."""
        if self.closed or not (self._boxes or self._meta):
            return
        boxes, meta = self._boxes, self._meta
        self._boxes, self._meta = {}, False
        if self._needs_snapshot:
            self._snapshot(True)
            return
        entries, chunks = [], []
        for layer, found in sorted(boxes.items()):
            for box in _merge(found):
                data = self.seg.layers[layer][box]
                entries.append({"layer": layer, "box": _box_list(box), "dtype": str(data.dtype)})
                chunks.append(data)
        header = {"kind": "step", "name": self._name, "boxes": entries,
                  "meta": self.seg.meta() if meta else None}
        self._append(_pack(header, chunks))

    # writing
    def _snapshot(self, unsaved: bool, fail: bool = False) -> None:
        """Start the journal afresh with the segmentation as it is: written to a temporary file,
        synced, and renamed over the journal (atomic), then opened for appending."""
        seg = self.seg
        layers = [n for n, a in enumerate(seg.layers) if a.any()]
        header = {"kind": "open", "shape": list(seg.shape), "affine": seg.affine.tolist(), "uid": seg.uid,
                  "series_uid": seg.series_uid, "for_uid": seg.frame_of_reference_uid, "meta": seg.meta(),
                  "time": time.time(), "unsaved": bool(unsaved),
                  "layers": [{"layer": n, "dtype": str(seg.layers[n].dtype)} for n in layers]}
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(MAGIC)
                f.write(_pack(header, [seg.layers[n] for n in layers]))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            _sync_dir(os.path.dirname(os.path.abspath(self.path)))
            if self._file is not None:
                self._file.close()
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 (kept open for appends)
            self._size = os.path.getsize(self.path)
            self._needs_snapshot = False
            self._dirty = False
            self._last_sync = time.monotonic()
        except OSError as exc:
            if os.path.exists(tmp):
                os.remove(tmp)
            if fail:
                raise
            self._failed(exc)

    def _append(self, record: bytes) -> None:
        try:
            view = memoryview(record)
            while view:
                view = view[self._file.write(view):]
        except OSError as exc:
            try:  # cut a partly written record off: later records must follow whole ones
                os.ftruncate(self._file.fileno(), self._size)
            except OSError:
                pass
            self._needs_snapshot = True
            self._failed(exc)
            return
        self._size += len(record)
        self._dirty = True
        if time.monotonic() - self._last_sync >= 1.0:
            self.sync()

    def _failed(self, exc: OSError) -> None:
        self.error = exc
        log.warning("segmentation journal not written: %s", exc.strerror or exc)
        self.failed.emit(exc)

    def sync(self) -> None:
        """Push written records to the disk (survives a power cut)."""
        if self._dirty and not self.closed:
            try:
                os.fsync(self._file.fileno())
            except OSError as exc:
                self._needs_snapshot = True
                self._failed(exc)
            self._dirty = False
            self._last_sync = time.monotonic()

    def mark_saved(self, where: str = "") -> None:
        self._flush()
        if self._needs_snapshot:  # the last records were not written: start afresh, as saved
            self._snapshot(False)
            return
        self._append(_pack({"kind": "saved", "where": os.path.basename(where), "time": time.time()}))
        self.sync()

    def close(self, discard: bool = False) -> None:
        """Stop journaling; ``discard`` deletes the file (the user threw the segmentation away)."""
        if self.closed:
            return
        self._depth = 0
        self._flush()
        for sig, fn in ((self.seg.changed, self._on_changed), (self.seg.segments_changed, self._on_meta),
                        (self.seg.layers_changed, self._on_meta)):
            sig.disconnect(fn)
        if self._editor is not None:
            self._editor.step_begun.disconnect(self.begin)
            self._editor.step_ended.disconnect(self.commit)
        self.sync()
        self._file.close()
        self.closed = True
        if discard and os.path.exists(self.path):
            os.remove(self.path)


def _sync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass
class Recoverable:
    path: str
    name: str
    segments: list[str]
    modified: float  # seconds since the epoch
    changes: int  # records after the last save


def _put(seg: Segmentation, layer: int, box, dtype: str, payload: bytes, pos: int) -> int:
    box = tuple(slice(int(a), int(b)) for a, b in box)
    shape = tuple(s.stop - s.start for s in box)
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if any(s.start < 0 or s.stop > d or s.stop < s.start for s, d in zip(box, seg.shape)) or pos + n > len(payload):
        raise ValueError("a record does not fit the segmentation")
    seg.layers[layer][box] = np.frombuffer(payload, dtype, count=n // np.dtype(dtype).itemsize,
                                           offset=pos).reshape(shape)
    return pos + n


def replay(path: str) -> Segmentation:
    """The segmentation as its journal last recorded it (whole records only)."""
    seg = None
    try:
        for header, payload in _records(path):
            kind = header["kind"]
            if kind == "open":
                seg = Segmentation(header["shape"], np.asarray(header["affine"], np.float64),
                                   header["meta"].get("name", ""), series_uid=header.get("series_uid", ""),
                                   frame_of_reference_uid=header.get("for_uid", ""), uid=header["uid"])
                seg.set_meta(header["meta"])
                pos = 0
                for entry in header.get("layers", []):
                    pos = _put(seg, entry["layer"], [[0, s] for s in seg.shape], entry["dtype"], payload, pos)
            elif seg is None:
                raise ValueError("no snapshot first")
            elif kind == "step":
                if header["meta"] is not None:
                    seg.set_meta(header["meta"])
                pos = 0
                for entry in header["boxes"]:
                    pos = _put(seg, entry["layer"], entry["box"], entry["dtype"], payload, pos)
            elif kind == "layer":  # the legacy format's records
                seg.layers[header["layer"]][...] = np.frombuffer(payload, header["dtype"]).reshape(seg.shape)
            elif kind == "meta":
                seg.set_meta(header["meta"])
            elif kind == "box":
                _put(seg, header["layer"], header["box"], header["dtype"], payload, 0)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, zlib.error, struct.error) as exc:
        raise ValueError(f"{os.path.basename(path)} is not a readable segmentation journal") from exc
    if seg is None:
        raise ValueError(f"{os.path.basename(path)} is empty")
    return seg


def recoverable(series_uid) -> list[Recoverable]:
    """Journals of a series with changes not yet saved, newest first."""
    return recoverable_in(journal_dir(series_uid))


def recoverable_in(folder: str) -> list[Recoverable]:
    """Journals in ``folder`` with changes not yet saved, newest first."""
    if not os.path.isdir(folder):
        return []
    out = []
    for name in os.listdir(folder):
        if not name.endswith(SUFFIX):
            continue
        path = os.path.join(folder, name)
        meta, changes = None, 0
        try:
            for header, _ in _records(path):
                kind = header["kind"]
                if kind == "open":
                    meta, changes = header["meta"], int(bool(header.get("unsaved", False)))
                elif kind == "saved":
                    changes = 0
                else:
                    meta = header.get("meta") or meta
                    changes += kind in ("step", "box", "meta", "layer")
            names = [str(s["name"]) for s in meta["segments"]] if meta is not None else []
        except (OSError, ValueError, KeyError, TypeError, zlib.error, struct.error):
            continue
        if meta is not None and changes:
            out.append(Recoverable(path, str(meta.get("name", "")), names, os.path.getmtime(path), changes))
    return sorted(out, key=lambda r: -r.modified)


def discard(path: str) -> None:
    # and the AI original and the reviewed detections kept beside it (viewer.core.review)
    for p in (path, path + ".original.npz", path + ".detections.json"):
        if os.path.exists(p):
            os.remove(p)
