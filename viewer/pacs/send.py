"""Send DICOM objects (SEG, SR, key-object selections, any instance) to a node: C-STORE or STOW-RS.

``send(node, objects)`` takes files, folders and in-memory pydicom/highdicom datasets.  Files go
out byte for byte as stored; datasets are encoded in their own transfer syntax.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom.dsutils import encode, split_dataset

from viewer.core.errors import HounsfieldError
from viewer.pacs.errors import TransferFailed
from viewer.pacs.nodes import LocalAE, PacsNode


@dataclass
class SendItem:
    payload: str | Dataset  # a file path, or a dataset in memory
    sop_class: str
    sop_uid: str
    transfer_syntax: str
    modality: str = ""

    def describe(self) -> str:
        name = UID(self.sop_class).name if self.sop_class else "an object"
        return f"{name} {self.sop_uid}"

    def data_set_chunks(self):
        """The data set as C-STORE sends it: a file's bytes after its meta group, or the encoded dataset."""
        if isinstance(self.payload, str):
            _meta, offset = split_dataset(Path(self.payload))
            with open(self.payload, "rb") as f:
                f.seek(offset)
                while chunk := f.read(1 << 20):
                    yield chunk
            return
        ts = UID(self.transfer_syntax)
        data = encode(self.payload, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
        if data is None:
            raise HounsfieldError(f"{self.describe()} could not be encoded in its transfer syntax; check the object.")
        yield data

    def encoded(self) -> bytes:
        """The object as a DICOM file (what STOW-RS posts)."""
        if isinstance(self.payload, str):
            with open(self.payload, "rb") as f:
                return f.read()
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, self.payload, enforce_file_format=True)
        return buf.getvalue()


@dataclass
class SendReport:
    total: int
    sent: list[str] = field(default_factory=list)  # SOP Instance UIDs the server stored


def _item_from_file(path: str) -> SendItem:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["SOPClassUID", "SOPInstanceUID", "Modality"])
        meta = ds.file_meta
        return SendItem(path, str(meta.get("MediaStorageSOPClassUID") or ds.SOPClassUID),
                        str(meta.get("MediaStorageSOPInstanceUID") or ds.SOPInstanceUID),
                        str(meta.TransferSyntaxUID), str(ds.get("Modality", "")))
    except Exception as exc:
        raise HounsfieldError(f"The file {os.path.basename(path)} cannot be sent: it is not a DICOM file with file "
                              f"meta information ({type(exc).__name__}).") from exc


def _item_from_dataset(ds: Dataset) -> SendItem:
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise HounsfieldError("A dataset to send has no SOP Class UID or SOP Instance UID; build it with highdicom "
                              "or set them.")
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        ds.file_meta = meta = meta or FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.setdefault("MediaStorageSOPClassUID", ds.SOPClassUID)
    meta.setdefault("MediaStorageSOPInstanceUID", ds.SOPInstanceUID)
    return SendItem(ds, str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(meta.TransferSyntaxUID),
                    str(ds.get("Modality", "")))


def collect(objects: Iterable) -> list[SendItem]:
    """SendItems for files, folders (every file below them) and datasets; no duplicate instances."""
    from viewer.core.dicom.scan import list_files

    items: dict[str, SendItem] = {}
    for obj in objects:
        if isinstance(obj, Dataset):
            found = [_item_from_dataset(obj)]
        else:
            path = os.fspath(obj)
            if not os.path.exists(path):
                raise HounsfieldError(f"There is no file or folder at {path}; check the path.")
            found = [_item_from_file(p) for p in list_files(path)]
        for item in found:
            items.setdefault(item.sop_uid, item)
    if not items:
        raise HounsfieldError("There is nothing to send: no DICOM object was given.")
    return list(items.values())


def send(node: PacsNode, objects: Iterable, *, local: LocalAE | None = None,
         progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None) -> SendReport:
    """Store ``objects`` on ``node``; ``progress(sent, total)`` after each one.

    Raises ``TransferFailed`` (with ``.report``) when the server refused any object, and the
    connection errors of ``viewer.pacs.errors``.
    """
    from viewer.pacs.client import client_for

    items = collect(objects)
    report = SendReport(len(items))

    def on_sent(item: SendItem) -> None:
        report.sent.append(item.sop_uid)
        if progress is not None:
            progress(len(report.sent), report.total)

    failures = client_for(node, local).send(items, on_sent, cancel)
    if failures:
        err = TransferFailed(f"{len(failures)} of {report.total} objects were not stored: "
                             f"{failures[0].rstrip('.')}.", len(report.sent), report.total)
        err.report = report
        raise err
    return report
