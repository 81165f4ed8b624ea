"""Our Storage SCP: where C-MOVE transfers (and anything a PACS pushes to us) arrive.

The application starts one while it runs (``StorageSCP(local).start()``, ``stop()`` on exit);
instances are written whole into the ``LocalStore`` as they came off the wire, and every
listener is told (``listening(callback)`` while a retrieve waits for its instances).  It also
answers C-ECHO, so a PACS administrator can test us.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable

from pydicom import dcmread
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from viewer.core.errors import HounsfieldError
from viewer.logs import log
from viewer.pacs.association import nodelay
from viewer.pacs.nodes import LocalAE
from viewer.pacs.storage import LocalStore, file_header
from viewer.pacs.syntaxes import RECEIVE_SYNTAXES

Listener = Callable[[str, str, str, bool], None]  # (study UID, series UID, SOP instance UID, newly written)
_UID_TAGS = ["StudyInstanceUID", "SeriesInstanceUID"]


class StorageSCP:
    def __init__(self, local: LocalAE | None = None, store: LocalStore | None = None, host: str = ""):
        self.local = (local or LocalAE()).validate()
        self._store = store
        self.host = host  # "" listens on every interface, as a PACS must reach us
        self.received = 0
        self._server = None
        self._listeners: list[tuple[Listener, LocalStore | None, set[str] | None]] = []
        self._lock = threading.Lock()

    @property
    def store(self) -> LocalStore:
        """Where unsolicited instances go: the given store, else the data dir's (looked up each time)."""
        return self._store or LocalStore()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> StorageSCP:
        if self._server is not None:
            return self
        ae = AE(ae_title=self.local.ae_title)
        ae.maximum_pdu_size = 0
        ae.acse_timeout = ae.dimse_timeout = 30.0
        ae.network_timeout = 60.0  # a sender that falls silent is dropped, never waited for forever
        ae.require_called_aet = True  # a PACS must address us by our AE title
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, RECEIVE_SYNTAXES)
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, nodelay)]
        try:
            self._server = ae.start_server((self.host, self.local.storage_port), block=False,
                                           evt_handlers=handlers)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise HounsfieldError(f"Our storage port {self.local.storage_port} cannot be opened ({why}); choose "
                                  "another port in the PACS settings.") from exc
        log.info("storage SCP %s listening on port %d", self.local.ae_title, self.local.storage_port)
        return self

    def stop(self) -> None:
        """Stop listening and abort transfers still coming in (their instances are not kept half)."""
        server, self._server = self._server, None
        if server is not None:
            for assoc in server.active_associations:
                assoc.abort()
            server.shutdown()

    def __enter__(self) -> StorageSCP:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @contextlib.contextmanager
    def listening(self, listener: Listener, store: LocalStore | None = None, series: set[str] | None = None):
        """Call ``listener`` for every instance received meanwhile; instances of ``series`` (all, if
        None) are written into ``store`` (a retrieve's own) instead of the default one."""
        entry = (listener, store, set(series) if series is not None else None)
        with self._lock:
            self._listeners.append(entry)
        try:
            yield self
        finally:
            with self._lock:
                self._listeners.remove(entry)

    def _store_for(self, series_uid: str) -> LocalStore:
        with self._lock:
            for _listener, store, wanted in self._listeners:
                if store is not None and (wanted is None or series_uid in wanted):
                    return store
        return self.store

    def _on_store(self, event) -> int:
        req = event.request
        sop = str(req.AffectedSOPInstanceUID)
        ts = str(event.context.transfer_syntax)
        header = file_header(str(req.AffectedSOPClassUID), sop, ts, event.assoc.requestor.ae_title)
        with req.DataSet.getbuffer() as body:
            try:
                ids = dcmread(io.BytesIO(header + bytes(body)), stop_before_pixels=True, specific_tags=_UID_TAGS)
                study, series = str(ids.StudyInstanceUID), str(ids.SeriesInstanceUID)
            except Exception:  # not DICOM we can read, or no study/series UID
                log.warning("storage SCP: instance %s has no readable study or series UID; refused", sop)
                return 0xC000  # cannot understand
            try:
                _path, new = self._store_for(series).write(study, series, sop, (header, body))
            except OSError:
                log.exception("storage SCP could not write instance %s", sop)
                return 0xA700  # out of resources
        with self._lock:
            self.received += 1
            listeners = [entry[0] for entry in self._listeners]
        for listener in listeners:
            try:
                listener(study, series, sop, new)
            except Exception:  # a listener's bug must not fail the transfer
                log.exception("storage SCP listener failed")
        return 0x0000
