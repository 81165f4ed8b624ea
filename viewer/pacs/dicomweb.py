"""DICOMweb client for one node: QIDO-RS (query, ping), WADO-RS (retrieve), STOW-RS (send).

Plain ``requests`` with a handful of lines per transaction, rather than dicomweb-client, for two
reasons found against Orthanc: dicomweb-client percent-encodes the wildcards of a QIDO-RS query
(``PatientName=DOE%5E%2A``), which Orthanc then matches literally, and when a WADO-RS stream is
cut it hands out the truncated last part as if it were a whole instance.  Objects travel byte for
byte both ways (no decode and re-encode).  Every HTTP failure becomes one sentence: server down,
time-out, refused credentials, wrong URL.

Every UID that goes into a URL (typed by the user or sent by the server) passes ``uid_segment``: a
value that is not a DICOM UID is refused, so ``../`` or ``?`` from a hostile or broken server can
never reach outside the base URL; instances whose UIDs are not UIDs are not stored.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
import time
import uuid
from collections.abc import Callable
from urllib.parse import quote

import pydicom
import requests
from pydicom.dataset import Dataset

from viewer.pacs.errors import (
    AuthenticationFailed,
    PacsError,
    PacsTimeout,
    ServerUnreachable,
    TransferCancelled,
    TransferFailed,
)
from viewer.pacs.listing import InstanceRef, SeriesListing
from viewer.pacs.multipart import Truncated, boundary_of, iter_parts
from viewer.pacs.nodes import PacsNode
from viewer.pacs.query import RETURN_KEYS, Query, QueryResult
from viewer.pacs.storage import LocalStore

_STOW_BATCH_BYTES = 32 * 1024 * 1024
_UID_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]


_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def who(node: PacsNode) -> str:
    return f"PACS '{node.name}' ({node.url})"


def uid_segment(uid, what: str, source: str = "") -> str:
    """``uid`` as one URL path segment, or PacsError if it is not a DICOM UID (digits and dots, <= 64)."""
    text = str(uid).strip(" \0")
    if len(text) > 64 or not _UID.fullmatch(text):
        shown = ascii(text[:40] + ("..." if len(text) > 40 else ""))
        if source:
            raise PacsError(f"{source} sent a {what} UID that is not a DICOM UID ({shown}); it was not used; "
                            "ask the server's administrator.")
        raise PacsError(f"The {what} UID {shown} is not a DICOM UID; a UID is digits and dots, at most 64 "
                        "characters.")
    return quote(text, safe="")


class WebClient:
    def __init__(self, node: PacsNode):
        self.node = node.validate()
        self.session = requests.Session()
        if node.auth == "basic":
            self.session.auth = (node.username, node.password)
        elif node.auth == "bearer":
            self.session.headers["Authorization"] = f"Bearer {node.token}"
        if node.url.startswith("https://"):
            self.session.verify = (node.tls.ca_file or True) if node.tls.verify else False
            if node.tls.cert_file:
                self.session.cert = (node.tls.cert_file, node.tls.key_file) if node.tls.key_file else node.tls.cert_file
        self.base = node.url.rstrip("/")

    @contextlib.contextmanager
    def _errors(self, what: str, advice: str = "try again"):
        """Turn requests' and dicomweb-client's exceptions into one-sentence ``PacsError``s."""
        node = self.node
        try:
            yield
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code in (401, 403):
                raise AuthenticationFailed(f"{who(node)} refused our credentials (HTTP {code}) for the {what}; check "
                                           "the node's user name, password or token.") from exc
            if code == 404:
                raise PacsError(f"{who(node)} answered 'not found' (HTTP 404) to the {what}; check the DICOMweb "
                                "base URL, or the object is no longer there.") from exc
            raise PacsError(f"{who(node)} failed the {what} with HTTP {code}; {advice}.") from exc
        except requests.exceptions.SSLError as exc:
            raise ServerUnreachable(f"The TLS handshake with {who(node)} failed; check its certificate and the "
                                    "node's TLS settings.") from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise ServerUnreachable(f"Could not connect to {who(node)} within {node.timeout:g} s; check that the "
                                    "server is running and the URL is right.") from exc
        except (requests.exceptions.ReadTimeout, TimeoutError) as exc:
            raise PacsTimeout(f"{who(node)} stopped answering for {node.timeout:g} s during the {what}; "
                              f"{advice}.") from exc
        except requests.exceptions.ConnectionError as exc:
            text = str(exc)
            if "Read timed out" in text:  # a stalled stream: requests reports it as a connection error
                raise PacsTimeout(f"{who(node)} stopped answering for {node.timeout:g} s during the {what}; "
                                  f"{advice}.") from exc
            if any(k in text for k in ("NewConnectionError", "Connection refused", "Name or service not known",
                                       "Failed to resolve")):
                raise ServerUnreachable(f"Could not connect to {who(node)}; check that the server is running and "
                                        "the URL is right.") from exc
            raise TransferFailed(f"The connection to {who(node)} was lost during the {what}; {advice}.") from exc
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError, Truncated) as exc:
            raise TransferFailed(f"The connection to {who(node)} was lost during the {what}; {advice}.") from exc
        except ValueError as exc:  # an answer that is not DICOMweb JSON
            raise PacsError(f"{who(node)} sent an answer to the {what} that is not DICOMweb ({exc}); check the "
                            "base URL.") from exc

    def _qido(self, path: str, filters: dict[str, str], fields: list[str], limit: int = 0) -> list[Dataset]:
        """A QIDO-RS search.  The query string is built here: wildcards ``*`` and ``?`` must reach the
        server as they are (Orthanc does not treat a percent-encoded ``%2A`` as a wildcard)."""
        params = [f"{k}={quote(str(v), safe='*?')}" for k, v in filters.items()]
        params += [f"includefield={f}" for f in fields]
        if limit:
            params.append(f"limit={int(limit)}")
        url = f"{self.base}/{path}" + ("?" + "&".join(params) if params else "")
        rsp = self.session.get(url, headers={"Accept": "application/dicom+json"}, timeout=float(self.node.timeout))
        rsp.raise_for_status()
        if rsp.status_code == 204 or not rsp.content:
            return []
        body = rsp.json()
        if not isinstance(body, list):
            raise ValueError("the answer is not a JSON list")
        return [Dataset.from_json(d) for d in body]

    def echo(self) -> float:
        """'Test connection': a one-result QIDO-RS study search; the round trip in milliseconds."""
        t0 = time.perf_counter()
        with self._errors("connection test"):
            self._qido("studies", {}, ["StudyInstanceUID"], limit=1)
        return (time.perf_counter() - t0) * 1000.0

    def find(self, query: Query) -> list[QueryResult]:
        q = query.normalized()
        filters = q.matching_keys()
        with self._errors("query", "check the search terms"):
            if q.level == "STUDY":
                found = self._qido("studies", filters, RETURN_KEYS["STUDY"], q.limit)
            else:
                filters.pop("StudyInstanceUID", None)
                study = uid_segment(q.study_uid, "study")
                found = self._qido(f"studies/{study}/series", filters, RETURN_KEYS["SERIES"], q.limit)
        return [QueryResult.from_dataset(ds, q.level) for ds in found]

    def list_series(self, study_uid: str, series_uids: list[str] | None = None) -> list[SeriesListing]:
        wanted = set(series_uids or [])
        study = uid_segment(study_uid, "study")
        with self._errors("series query"):
            series = self._qido(f"studies/{study}/series", {}, RETURN_KEYS["SERIES"])
        found = [SeriesListing.from_dataset(study_uid, ds) for ds in series
                 if ds.get("SeriesInstanceUID") and (not wanted or str(ds.SeriesInstanceUID) in wanted)]
        for listing in found:  # refused here, before anything is fetched, not half-way through
            uid_segment(listing.series_uid, "series", who(self.node))
        return found

    def list_instances(self, listing: SeriesListing) -> None:
        study, series = uid_segment(listing.study_uid, "study"), uid_segment(listing.series_uid, "series")
        with self._errors("instance query"):
            found = self._qido(f"studies/{study}/series/{series}/instances", {}, ["SOPClassUID"])
        refs = []
        for inst in found:
            if inst.get("SOPInstanceUID"):
                sop = str(inst.SOPInstanceUID)
                uid_segment(sop, "SOP instance", who(self.node))
                refs.append(InstanceRef(sop, str(inst.get("SOPClassUID", "") or "")))
        listing.set_instances(refs)

    def fetch(self, listing: SeriesListing, sop_uids: list[str] | None, store: LocalStore,
              on_stored: Callable[[str, str, str, bool], None], cancel: threading.Event | None = None,
              method: str | None = None) -> None:
        """WADO-RS: the whole series as one multipart stream, or only ``sop_uids`` one by one.

        Each part is written as it came (a DICOM file, in the syntax the server stores) once it is
        known to be whole."""
        series_url = (f"{self.base}/studies/{uid_segment(listing.study_uid, 'study')}"
                      f"/series/{uid_segment(listing.series_uid, 'series')}")
        urls = ([series_url] if sop_uids is None else
                [f"{series_url}/instances/{uid_segment(sop, 'SOP instance')}" for sop in sop_uids])
        with self._errors("retrieval", "retrieve again later"):
            for url in urls:
                for body in self._wado(url):
                    self._keep(body, store, on_stored)
                    if cancel is not None and cancel.is_set():
                        raise TransferCancelled("The retrieval was cancelled.")

    def _wado(self, url: str):
        headers = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
        with self.session.get(url, headers=headers, stream=True, timeout=float(self.node.timeout)) as rsp:
            rsp.raise_for_status()
            boundary = boundary_of(rsp.headers.get("Content-Type", ""))
            if boundary is None:  # a single application/dicom body: whole if its length is right
                body = rsp.content
                expected = rsp.headers.get("Content-Length")
                if expected is not None and int(expected) != len(body):
                    raise Truncated("short body")
                yield body
                return
            yield from iter_parts(rsp.iter_content(chunk_size=1 << 20), boundary)

    def _keep(self, body: bytes, store: LocalStore, on_stored) -> None:
        try:
            ds = pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True, specific_tags=_UID_TAGS)
            study, series, sop = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
        except Exception as exc:
            raise PacsError(f"{who(self.node)} sent something that is not a DICOM instance ({type(exc).__name__}); "
                            "ask its administrator.") from exc
        for uid, what in ((study, "study"), (series, "series"), (sop, "SOP instance")):
            uid_segment(uid, what, who(self.node))  # these name the folders and the file it goes to
        try:
            _path, new = store.write(study, series, sop, [body])
        except OSError as exc:
            raise TransferFailed(f"Retrieved images could not be written to disk ({exc}); free some space and "
                                 "retrieve again.") from exc
        on_stored(study, series, sop, new)

    def send(self, items, on_sent: Callable[[object], None] | None = None,
             cancel: threading.Event | None = None) -> list[str]:
        """STOW-RS ``items`` (``send.SendItem``) in batches; one sentence per object refused."""
        failures: list[str] = []
        batch, size = [], 0
        for item in items:
            if cancel is not None and cancel.is_set():
                raise TransferCancelled("Sending was cancelled.")
            data = item.encoded()
            batch.append((item, data))
            size += len(data)
            if size >= _STOW_BATCH_BYTES:
                failures += self._stow(batch, on_sent)
                batch, size = [], 0
        if batch:
            failures += self._stow(batch, on_sent)
        return failures

    def _stow(self, batch, on_sent) -> list[str]:
        boundary = uuid.uuid4().hex
        parts = []
        for _item, data in batch:
            parts += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), data, b"\r\n"]
        parts.append(f"--{boundary}--\r\n".encode())
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": "application/dicom+json"}
        with self._errors("sending", "send again"):
            rsp = self.session.post(f"{self.base}/studies", data=b"".join(parts), headers=headers,
                                    timeout=float(self.node.timeout))
            if rsp.status_code not in (200, 202, 409):
                rsp.raise_for_status()
            reply = Dataset.from_json(rsp.json()) if rsp.content else Dataset()
        failed = {str(f.get("ReferencedSOPInstanceUID", "")): f.get("FailureReason")
                  for f in reply.get("FailedSOPSequence", [])}
        if rsp.status_code == 409 and not failed:
            failed = {item.sop_uid: None for item, _ in batch}
        failures = []
        for item, _data in batch:
            if item.sop_uid in failed:
                reason = failed[item.sop_uid]
                failures.append(f"{who(self.node)} refused {item.describe()}"
                                f"{f' (failure reason {reason})' if reason is not None else ''}.")
            elif on_sent is not None:
                on_sent(item)
        return failures
