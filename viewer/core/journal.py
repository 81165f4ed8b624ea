"""Never lose a segmentation: an append-only, compressed journal of every change, on disk at once.

A ``Journal`` observes one ``Segmentation``.  Its file (``<data dir>/segmentations/<series>/
<segmentation uid>.hjournal``) starts with the segmentation's geometry, metadata and layers, then
gets one record per change: the box of a layer that changed (its new voxels) or the new metadata.
Each record is written and flushed to the operating system as the change happens (a killed
process loses nothing), and the file is synced to the disk at most a second after a change
(``sync`` is also called by a timer in the GUI).

Record framing: ``u32 length`` + zlib(``u32 header length`` + JSON header + raw voxels).  A record
cut short by a crash is ignored on replay.  ``mark_saved`` appends a "saved" record after an
export; a journal with changes after its last "saved" record is *recoverable*:
``recoverable(series_uid)`` lists them and ``replay(path)`` rebuilds the segmentation exactly.
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

from viewer.core.dicom.index import data_dir
from viewer.core.segmentation import Segmentation
from viewer.core.volume import Volume

SUFFIX = ".hjournal"


def series_id(volume_or_uid) -> str:
    """The folder name journals of a series live in: its SeriesInstanceUID, or a hash of its path."""
    if isinstance(volume_or_uid, Volume):
        src = volume_or_uid.source
        uid = src.series_instance_uid or ("file-" + hashlib.sha1(src.path.encode()).hexdigest()[:16]
                                          if src.path else "unsaved")
    else:
        uid = str(volume_or_uid) or "unsaved"
    return re.sub(r"[^A-Za-z0-9._-]", "_", uid)


def journal_dir(series: str) -> str:
    return os.path.join(data_dir(), "segmentations", series_id(series))


def _pack(header: dict, payload: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    body = zlib.compress(struct.pack("<I", len(h)) + h + payload, 1)
    return struct.pack("<I", len(body)) + body


def _records(path: str):
    """(header, payload) of each complete record; stops at a truncated or damaged one."""
    with open(path, "rb") as f:
        data = f.read()
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


class Journal:
    """Writes every change of ``seg`` to its journal file as it happens."""

    def __init__(self, seg: Segmentation, series: str | None = None, path: str | None = None):
        self.seg = seg
        if path is None:
            folder = journal_dir(series if series is not None else seg.series_uid)
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, seg.uid + SUFFIX)
        self.path = path
        self._last_sync = 0.0
        self._dirty = False
        self.closed = False
        fresh = not os.path.exists(path)
        self._file = open(path, "ab")  # noqa: SIM115 (kept open for appends)
        if fresh:
            self._write({"kind": "open", "shape": list(seg.shape), "affine": seg.affine.tolist(),
                         "uid": seg.uid, "series_uid": seg.series_uid, "for_uid": seg.frame_of_reference_uid,
                         "meta": seg.meta(), "time": time.time()})
            for n, layer in enumerate(seg.layers):
                if layer.any():
                    self._write({"kind": "layer", "layer": n, "dtype": str(layer.dtype)}, layer.tobytes())
        seg.changed.connect(self._on_changed)
        seg.segments_changed.connect(self._on_meta)
        seg.layers_changed.connect(self._on_meta)

    def _write(self, header: dict, payload: bytes = b"") -> None:
        self._file.write(_pack(header, payload))
        self._file.flush()  # in the OS's hands: survives a killed process
        self._dirty = True
        if time.monotonic() - self._last_sync >= 1.0:
            self.sync()

    def sync(self) -> None:
        """Push written records to the disk (survives a power cut)."""
        if self._dirty and not self.closed:
            os.fsync(self._file.fileno())
            self._dirty = False
            self._last_sync = time.monotonic()

    def _on_changed(self, layer: int, box) -> None:
        data = np.ascontiguousarray(self.seg.layers[layer][box])
        self._write({"kind": "box", "layer": layer, "box": [[int(s.start), int(s.stop)] for s in box],
                     "dtype": str(data.dtype)}, data.tobytes())

    def _on_meta(self) -> None:
        self._write({"kind": "meta", "meta": self.seg.meta()})

    def mark_saved(self, where: str = "") -> None:
        self._write({"kind": "saved", "where": os.path.basename(where), "time": time.time()})
        self.sync()

    def close(self, discard: bool = False) -> None:
        """Stop journaling; ``discard`` deletes the file (the user threw the segmentation away)."""
        if self.closed:
            return
        for sig, fn in ((self.seg.changed, self._on_changed), (self.seg.segments_changed, self._on_meta),
                        (self.seg.layers_changed, self._on_meta)):
            sig.disconnect(fn)
        self.sync()
        self._file.close()
        self.closed = True
        if discard and os.path.exists(self.path):
            os.remove(self.path)


@dataclass
class Recoverable:
    path: str
    name: str
    segments: list[str]
    modified: float  # seconds since the epoch
    changes: int  # records after the last save


def replay(path: str) -> Segmentation:
    """The segmentation as its journal last recorded it."""
    seg = None
    for header, payload in _records(path):
        kind = header["kind"]
        if kind == "open":
            seg = Segmentation(header["shape"], np.asarray(header["affine"]), header["meta"].get("name", ""),
                               series_uid=header.get("series_uid", ""),
                               frame_of_reference_uid=header.get("for_uid", ""), uid=header["uid"])
            seg.set_meta(header["meta"])
        elif seg is None:
            raise ValueError(f"{os.path.basename(path)} is not a segmentation journal")
        elif kind == "layer":
            seg.layers[header["layer"]][...] = np.frombuffer(payload, header["dtype"]).reshape(seg.shape)
        elif kind == "meta":
            seg.set_meta(header["meta"])
        elif kind == "box":
            box = tuple(slice(a, b) for a, b in header["box"])
            shape = tuple(b - a for a, b in header["box"])
            layer = seg.layers[header["layer"]]
            layer[box] = np.frombuffer(payload, header["dtype"]).reshape(shape)
    if seg is None:
        raise ValueError(f"{os.path.basename(path)} is empty")
    return seg


def recoverable(series_uid) -> list[Recoverable]:
    """Journals of a series with changes not yet saved, newest first."""
    folder = journal_dir(series_uid)
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
                if kind in ("open", "meta"):
                    meta = header["meta"]
                changes = 0 if kind == "saved" else changes + (kind in ("box", "meta", "layer"))
        except (OSError, ValueError, KeyError):
            continue
        if meta is not None and changes:
            out.append(Recoverable(path, meta.get("name", ""), [s["name"] for s in meta["segments"]],
                                   os.path.getmtime(path), changes))
    return sorted(out, key=lambda r: -r.modified)


def discard(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)
