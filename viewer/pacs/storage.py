"""The managed folder retrieved instances land in: ``<data dir>/studies/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``.

Each file is written whole or not at all (a hidden ``.part`` file renamed into place), so an
interrupted transfer leaves only complete instances, and a later retrieve skips those already
present: no instance is ever stored twice.  A series enters the study index only once all its
instances are here (``index_series``), so the index never lists half a series.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
from collections.abc import Iterable
from pathlib import Path

from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from viewer.core.dicom.index import StudyIndex
from viewer.paths import data_dir

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")  # a DICOM UID: digits and dots, no empty component
_PREAMBLE = bytes(128) + b"DICM"
IMPLEMENTATION_VERSION = "HOUNSFIELD_01"


def studies_dir() -> Path:
    return data_dir() / "studies"


def safe_name(uid: str) -> str:
    """A UID as a file or folder name; anything that is not a plain UID is hashed (no path tricks)."""
    uid = uid.strip(" \0")
    if len(uid) <= 64 and _UID.fullmatch(uid):
        return uid
    return "x" + hashlib.sha1(uid.encode("utf-8", "surrogatepass")).hexdigest()


def _element(group: int, elem: int, vr: str, value: bytes) -> bytes:
    if vr == "OB":
        return struct.pack("<HH2sHI", group, elem, b"OB", 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value


def _text(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def file_header(sop_class: str, sop_instance: str, transfer_syntax: str, source_ae: str = "") -> bytes:
    """Preamble, 'DICM' and the file meta group for a dataset encoded in ``transfer_syntax``.

    Encoded by hand (a few microseconds) so received datasets are written as they came off the
    wire, never decoded and re-encoded.
    """
    body = (_element(2, 0x0001, "OB", b"\x00\x01")
            + _element(2, 0x0002, "UI", _text(sop_class, b"\0"))
            + _element(2, 0x0003, "UI", _text(sop_instance, b"\0"))
            + _element(2, 0x0010, "UI", _text(transfer_syntax, b"\0"))
            + _element(2, 0x0012, "UI", _text(PYDICOM_IMPLEMENTATION_UID, b"\0"))
            + _element(2, 0x0013, "SH", _text(IMPLEMENTATION_VERSION, b" ")))
    if source_ae.strip():
        body += _element(2, 0x0016, "AE", _text(source_ae.strip(), b" "))
    return _PREAMBLE + _element(2, 0x0000, "UL", struct.pack("<I", len(body))) + body


class LocalStore:
    """Where retrieved studies live on disk (``root`` defaults to ``<data dir>/studies``)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else studies_dir()

    def series_dir(self, study_uid: str, series_uid: str) -> Path:
        return self.root / safe_name(study_uid) / safe_name(series_uid)

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return self.series_dir(study_uid, series_uid) / f"{safe_name(sop_uid)}.dcm"

    def present(self, study_uid: str, series_uid: str, sop_uids: Iterable[str]) -> set[str]:
        """Which of ``sop_uids`` are already stored whole."""
        try:
            names = set(os.listdir(self.series_dir(study_uid, series_uid)))
        except OSError:  # not there (yet)
            return set()
        return {u for u in sop_uids if f"{safe_name(u)}.dcm" in names}

    def count(self, study_uid: str, series_uid: str) -> int:
        """How many whole instances the series folder holds."""
        try:
            return sum(1 for n in os.listdir(self.series_dir(study_uid, series_uid))
                       if n.endswith(".dcm") and not n.startswith("."))
        except OSError:  # not there (yet)
            return 0

    def open_writer(self, study_uid: str, series_uid: str, sop_uid: str) -> InstanceWriter:
        """A writer that streams one instance to a hidden file and renames it into place on ``commit``."""
        return InstanceWriter(self.path_for(study_uid, series_uid, sop_uid))

    def write(self, study_uid: str, series_uid: str, sop_uid: str, parts: Iterable) -> tuple[Path, bool]:
        """Write one instance from its byte ``parts`` atomically; (path, False) if it was there already."""
        writer = self.open_writer(study_uid, series_uid, sop_uid)
        try:
            for part in parts:
                writer.write(part)
        except BaseException:
            writer.discard()
            raise
        return writer.commit()

    def clean_partial(self, study_uid: str, series_uid: str | None = None) -> int:
        """Remove ``.part`` files left by a process that died mid-write; returns how many."""
        base = self.root / safe_name(study_uid)
        folders = [base / safe_name(series_uid)] if series_uid else [p for p in base.glob("*") if p.is_dir()]
        removed = 0
        for folder in folders:
            for tmp in folder.glob(".*.part"):
                pid = tmp.name.rsplit(".", 2)[-2].split("-")[0]
                if pid.isdigit() and int(pid) == os.getpid():
                    continue  # one of ours, being written right now
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed


class InstanceWriter:
    """Streams one instance to ``.<name>.<pid>-<thread>.part`` beside its final path; ``commit`` renames it.

    If the instance is already stored, writes are dropped and ``commit`` reports it as not new.
    """

    def __init__(self, final: Path):
        self.final = final
        self.exists = final.exists()
        self._file = None
        if not self.exists:
            final.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = final.parent / f".{final.name}.{os.getpid()}-{threading.get_ident()}.part"
            self._file = open(self.tmp, "wb")  # noqa: SIM115 - closed by commit/discard

    def write(self, data) -> None:
        if self._file is not None:
            self._file.write(data)

    def commit(self) -> tuple[Path, bool]:
        if self._file is None:
            return self.final, False
        try:
            self._file.close()
            self._file = None
            os.replace(self.tmp, self.final)
        except BaseException:
            self.discard()
            raise
        return self.final, True

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self.exists:
            self.tmp.unlink(missing_ok=True)


def index_series(folders: Iterable[Path], index: StudyIndex | None = None) -> None:
    """Record complete series folders in the study index (each folder is one scan root)."""
    from viewer.core.dicom.scan import scan_path

    own = index is None
    index = index or StudyIndex()
    try:
        for folder in folders:
            scan_path(os.fspath(folder), index)
    finally:
        if own:
            index.close()
