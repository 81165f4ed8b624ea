"""DIMSE client for one node: C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE (over ``dul.Association``).

Received instances are never decoded: their data set streams from the socket into a hidden file
in the ``LocalStore`` behind a hand-made file header, renamed into place when whole;
``on_stored(study, series, sop, new)`` follows each one.  C-MOVE transfers arrive at our
``StorageSCP`` instead.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from io import BytesIO

from pydicom.dataset import Dataset
from pynetdicom.dsutils import decode, encode
from pynetdicom.status import (
    QR_FIND_SERVICE_CLASS_STATUS,
    QR_GET_SERVICE_CLASS_STATUS,
    QR_MOVE_SERVICE_CLASS_STATUS,
    STORAGE_SERVICE_CLASS_STATUS,
)

from viewer.pacs.association import who
from viewer.pacs.dul import (
    DATASET_TYPE,
    FAILED,
    FIELD,
    MOVE_DEST,
    MSG_ID,
    NO_DATASET,
    PRIORITY,
    RESPONDED_TO,
    SOP_CLASS,
    SOP_INSTANCE,
    STATUS,
    Association,
    Closed,
    Dropped,
    Silent,
    command,
    text,
    us,
)
from viewer.pacs.errors import AssociationRejected, PacsError, PacsTimeout, TransferCancelled, TransferFailed, UnknownAE
from viewer.pacs.listing import InstanceRef, SeriesListing
from viewer.pacs.nodes import LocalAE, PacsNode
from viewer.pacs.query import Query, QueryResult
from viewer.pacs.storage import LocalStore, file_header
from viewer.pacs.syntaxes import COMMON_STORAGE, get_contexts

VERIFICATION = "1.2.840.10008.1.1"
QR_FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model
QR_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
QR_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PENDING = (0xFF00, 0xFF01)
_BATCH = 400  # SOP Instance UIDs per image-level retrieve (an explicit-VR UI value holds < 64 KiB)


def _status_text(code: int, table: dict) -> str:
    return table.get(code, ("", f"status 0x{code:04X}"))[1]


def _request(sop_class: str, field: int, msg_id: int, extra=(), has_data: bool = True) -> bytes:
    elements = [(SOP_CLASS, "UI", sop_class), (FIELD, "US", field), (MSG_ID, "US", msg_id), *extra,
                (PRIORITY, "US", 0), (DATASET_TYPE, "US", 0x0001 if has_data else NO_DATASET)]
    return command(elements)


class DimseClient:
    """Talks to ``node`` as ``local``; a running ``StorageSCP`` (``scp``) receives C-MOVE transfers."""

    def __init__(self, node: PacsNode, local: LocalAE | None = None, scp=None):
        self.node = node.validate()
        self.local = (local or LocalAE()).validate()
        self.scp = scp

    @contextlib.contextmanager
    def _association(self, contexts, what: str, advice: str, *, scp_roles=(), refused_hint: str = ""):
        """An open association; lost connections and silences become one-sentence errors."""
        assoc = Association(self.node, self.local, contexts, scp_roles).open()
        try:
            yield assoc
        except Closed as exc:
            assoc.abort()
            if "aborted" in str(exc) and refused_hint:
                raise TransferFailed(f"{who(self.node)} aborted the {what}; {refused_hint}.") from exc
            raise TransferFailed(f"The connection to {who(self.node)} was lost during the {what}; {advice}.") from exc
        except Silent as exc:
            assoc.abort()
            raise PacsTimeout(f"{who(self.node)} stopped answering for {self.node.timeout:g} s during the {what}; "
                              f"{advice}.") from exc
        except BaseException:
            assoc.abort()
            raise
        assoc.release()

    def _context(self, assoc: Association, abstract: str, service: str) -> int:
        ctx = assoc.context_for(abstract)
        if not ctx:
            assoc.abort()
            raise AssociationRejected(f"{who(self.node)} does not offer {service} to us; check the node's settings "
                                      "with its administrator.")
        return ctx

    # -- C-ECHO --------------------------------------------------------------------------------
    def echo(self) -> float:
        """Test the connection; returns the round trip in milliseconds (association included)."""
        t0 = time.perf_counter()
        with self._association([(VERIFICATION, None)], "connection test", "try again") as a:
            ctx = self._context(a, VERIFICATION, "C-ECHO")
            a.send(ctx, _request(VERIFICATION, 0x0030, a.next_id(), has_data=False))
            rsp = a.receive()
        if rsp.field != 0x8030 or rsp.status != 0x0000:
            raise PacsError(f"{who(self.node)} accepted the association but did not confirm the echo; check the "
                            "node with its administrator.")
        return (time.perf_counter() - t0) * 1000.0

    # -- C-FIND --------------------------------------------------------------------------------
    def _find_on(self, a: Association, identifier: Dataset, what: str) -> list[Dataset]:
        ctx = self._context(a, QR_FIND, "queries (C-FIND)")
        ts = a.syntax(ctx)
        a.send(ctx, _request(QR_FIND, 0x0020, a.next_id()),
               encode(identifier, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated))
        out = []
        while True:
            rsp = a.receive()
            if rsp.status in PENDING:
                if rsp.data:
                    out.append(decode(BytesIO(rsp.data), ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated))
                continue
            if rsp.status == 0x0000:
                return out
            raise PacsError(f"{who(self.node)} refused the {what} "
                            f"({_status_text(rsp.status, QR_FIND_SERVICE_CLASS_STATUS)}); check the search terms.")

    def _query_association(self, what: str):
        return self._association([(QR_FIND, None)], what, "try again",
                                 refused_hint=f"check that it lets our AE title '{self.local.ae_title}' query it")

    def find(self, query: Query) -> list[QueryResult]:
        q = query.normalized()
        with self._query_association("query") as a:
            found = self._find_on(a, q.identifier(), "query")
        return [QueryResult.from_dataset(ds, q.level) for ds in found]

    def list_series(self, study_uid: str, series_uids: list[str] | None = None) -> list[SeriesListing]:
        """The study's series (or the chosen ones) with their sizes, and the study's SOP classes."""
        study = Dataset()
        study.QueryRetrieveLevel = "STUDY"
        study.StudyInstanceUID, study.SOPClassesInStudy = study_uid, ""
        with self._query_association("series query") as a:
            found = self._find_on(a, study, "study query")
            series = self._find_on(a, Query("SERIES", study_uid=study_uid).identifier(), "series query")
        classes: list[str] = []
        for ds in found[:1]:
            value = ds.get("SOPClassesInStudy") or []
            classes = [str(v) for v in ([value] if isinstance(value, str) else value) if v]
        wanted = set(series_uids or [])
        return [SeriesListing.from_dataset(study_uid, ds, classes) for ds in series
                if ds.get("SeriesInstanceUID") and (not wanted or str(ds.SeriesInstanceUID) in wanted)]

    def list_instances(self, listing: SeriesListing) -> None:
        """Fill ``listing.instances`` (image-level C-FIND)."""
        ident = Dataset()
        ident.QueryRetrieveLevel = "IMAGE"
        ident.StudyInstanceUID, ident.SeriesInstanceUID = listing.study_uid, listing.series_uid
        ident.SOPInstanceUID = ident.SOPClassUID = ""
        with self._query_association("instance query") as a:
            found = self._find_on(a, ident, "instance query")
        listing.set_instances([InstanceRef(str(i.SOPInstanceUID), str(i.get("SOPClassUID", "") or ""))
                               for i in found if i.get("SOPInstanceUID")])

    # -- C-GET / C-MOVE ------------------------------------------------------------------------
    @staticmethod
    def _identifiers(listing: SeriesListing, sop_uids: list[str] | None):
        batches = [None] if sop_uids is None else [sop_uids[i:i + _BATCH] for i in range(0, len(sop_uids), _BATCH)]
        for batch in batches:
            ds = Dataset()
            ds.QueryRetrieveLevel = "SERIES" if batch is None else "IMAGE"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = listing.study_uid, listing.series_uid
            if batch is not None:
                ds.SOPInstanceUID = batch
            yield ds

    def fetch(self, listing: SeriesListing, sop_uids: list[str] | None, store: LocalStore,
              on_stored: Callable[[str, str, str, bool], None], cancel: threading.Event | None = None,
              method: str | None = None) -> None:
        """Retrieve a series (``sop_uids``: only those instances) by C-GET or C-MOVE into ``store``."""
        if (method or self.node.retrieve_method) == "C-MOVE":
            return self._move(listing, sop_uids, store, on_stored, cancel)
        return self._get(listing, sop_uids, store, on_stored, cancel)

    def _watch_cancel(self, a: Association, ctx: int, msg_id: int, cancel) -> None:
        """While waiting: on Cancel send C-CANCEL once; if the server ignores it for 3 s, give up."""
        sent = [0.0]

        def on_cancel() -> None:
            if not sent[0]:
                sent[0] = time.monotonic()
                a.send(ctx, command([(FIELD, "US", 0x0FFF), (RESPONDED_TO, "US", msg_id),
                                     (DATASET_TYPE, "US", NO_DATASET)]))
            elif time.monotonic() - sent[0] > 3.0:
                raise TransferCancelled("The retrieval was cancelled.")

        a.cancel, a.on_cancel = cancel, on_cancel

    def _get(self, listing: SeriesListing, sop_uids, store: LocalStore, on_stored, cancel) -> None:
        storage = get_contexts(listing.sop_classes or COMMON_STORAGE, limit=126)
        errors: list[OSError] = []
        got = [0]
        hint = f"check that it lets our AE title '{self.local.ae_title}' retrieve by C-GET"
        with self._association([(QR_GET, None), *storage], "retrieval", "retrieve again later",
                               scp_roles=[c for c, _ in storage], refused_hint=hint) as a:
            ctx = self._context(a, QR_GET, "retrieval by C-GET")
            for ident in self._identifiers(listing, sop_uids):
                current: list = [None]

                def sink_for(context_id: int, cmd: dict, current=current):
                    if us(cmd, FIELD) != 0x0001:  # only C-STORE requests carry instances
                        return None
                    sop = text(cmd, SOP_INSTANCE)
                    try:
                        writer = store.open_writer(listing.study_uid, listing.series_uid, sop)
                        writer.write(file_header(text(cmd, SOP_CLASS), sop, a.accepted[context_id][1],
                                                 self.node.ae_title))
                    except OSError as exc:
                        errors.append(exc)
                        writer = Dropped()
                    current[0] = writer
                    return writer

                ts = a.syntax(ctx)
                msg_id = a.next_id()
                a.send(ctx, _request(QR_GET, 0x0010, msg_id),
                       encode(ident, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated))
                self._watch_cancel(a, ctx, msg_id, cancel)
                try:
                    status, failed = self._serve_get(a, sink_for, current, listing, on_stored, got, errors)
                except BaseException:
                    if current[0] is not None:
                        current[0].discard()  # never half an instance on disk
                    raise
                if errors:
                    raise TransferFailed(f"Retrieved images could not be written to disk ({errors[0]}); free some "
                                         "space and retrieve again.")
                self._final_status(status, failed, QR_GET_SERVICE_CLASS_STATUS, got[0])

    def _serve_get(self, a: Association, sink_for, current, listing, on_stored, got, errors) -> tuple[int, int]:
        while True:
            msg = a.receive(sink_for)
            if msg.field == 0x0001:  # C-STORE-RQ: an instance has arrived
                sop, status, new = text(msg.cmd, SOP_INSTANCE), 0xA700, False  # out of resources, unless written
                writer, current[0] = msg.sink, None
                if msg.error is not None:
                    errors.append(msg.error)
                if writer is not None and not isinstance(writer, Dropped):
                    try:
                        _path, new = writer.commit()
                        status = 0x0000
                    except OSError as exc:
                        errors.append(exc)
                got[0] += 1
                a.send(msg.context_id, command([(SOP_CLASS, "UI", text(msg.cmd, SOP_CLASS)), (FIELD, "US", 0x8001),
                                                (RESPONDED_TO, "US", us(msg.cmd, MSG_ID)),
                                                (DATASET_TYPE, "US", NO_DATASET), (STATUS, "US", status),
                                                (SOP_INSTANCE, "UI", sop)]))
                if status == 0x0000:
                    on_stored(listing.study_uid, listing.series_uid, sop, new)
            elif msg.field == 0x8010 and msg.status not in PENDING:  # the final C-GET-RSP
                return msg.status, us(msg.cmd, FAILED)

    def _move(self, listing: SeriesListing, sop_uids, store: LocalStore, on_stored, cancel) -> None:
        from viewer.pacs.store_scp import StorageSCP

        scp, own = self.scp, self.scp is None
        if own:
            scp = StorageSCP(self.local).start()
        try:
            with self._association([(QR_MOVE, None)], "retrieval", "retrieve again later") as a:
                ctx = self._context(a, QR_MOVE, "retrieval by C-MOVE")

                def stored(study: str, series: str, sop: str, new: bool) -> None:
                    a.last_heard = time.monotonic()  # instances arriving on the other association count as news
                    on_stored(study, series, sop, new)

                with scp.listening(stored, store=store, series={listing.series_uid}):
                    for ident in self._identifiers(listing, sop_uids):
                        ts = a.syntax(ctx)
                        msg_id = a.next_id()
                        a.send(ctx, _request(QR_MOVE, 0x0021, msg_id, [(MOVE_DEST, "AE", self.local.ae_title)]),
                               encode(ident, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated))
                        self._watch_cancel(a, ctx, msg_id, cancel)
                        while True:
                            rsp = a.receive()
                            if rsp.field == 0x8021 and rsp.status not in PENDING:
                                break
                        self._final_status(rsp.status, us(rsp.cmd, FAILED), QR_MOVE_SERVICE_CLASS_STATUS,
                                           us(rsp.cmd, 0x00001021), move=True)
        finally:
            if own:
                scp.stop()

    def _final_status(self, code: int, failed: int, table: dict, completed: int, move: bool = False) -> None:
        if code == 0x0000 and not failed:
            return
        if code == 0xFE00:
            raise TransferCancelled("The retrieval was cancelled.")
        if code == 0xA801:
            raise UnknownAE(f"{who(self.node)} does not know our AE title '{self.local.ae_title}' as a C-MOVE "
                            f"destination; ask its administrator to add it with this computer's address and "
                            f"port {self.local.storage_port}, or retrieve by C-GET.")
        if move and code >= 0xA000 and code != 0xB000 and not completed:
            raise PacsError(f"{who(self.node)} refused the C-MOVE ({_status_text(code, table)}) before sending "
                            f"anything; check that it knows our AE title '{self.local.ae_title}' as a destination "
                            f"(this computer, port {self.local.storage_port}), or retrieve by C-GET.")
        if code in (0x0000, 0xB000) or failed:
            raise TransferFailed(f"{who(self.node)} could not send {failed or 'some'} of the images; retrieve "
                                 "again, or ask its administrator if this persists.")
        raise PacsError(f"{who(self.node)} refused the retrieval ({_status_text(code, table)}); check the node's "
                        "settings with its administrator.")

    # -- C-STORE -------------------------------------------------------------------------------
    def send(self, items, on_sent: Callable[[object], None] | None = None,
             cancel: threading.Event | None = None) -> list[str]:
        """C-STORE ``items`` (``send.SendItem``); returns one sentence per object the server refused."""
        failures: list[str] = []
        pairs = list(dict.fromkeys((i.sop_class, i.transfer_syntax) for i in items))
        for start in range(0, len(pairs), 120):
            chunk = pairs[start:start + 120]
            batch = [i for i in items if (i.sop_class, i.transfer_syntax) in set(chunk)]
            with self._association([(c, [ts]) for c, ts in chunk], "sending", "send again") as a:
                for item in batch:
                    if cancel is not None and cancel.is_set():
                        raise TransferCancelled("Sending was cancelled.")
                    failure = self._store_one(a, item)
                    if failure:
                        failures.append(failure)
                    elif on_sent is not None:
                        on_sent(item)
        return failures

    def _store_one(self, a: Association, item) -> str:
        ctx = a.context_for(item.sop_class, item.transfer_syntax)
        if not ctx:
            return f"{who(self.node)} does not accept {item.describe()} in its transfer syntax."
        a.send(ctx, command([(SOP_CLASS, "UI", item.sop_class), (FIELD, "US", 0x0001), (MSG_ID, "US", a.next_id()),
                             (PRIORITY, "US", 0), (DATASET_TYPE, "US", 0x0001), (SOP_INSTANCE, "UI", item.sop_uid)]),
               item.data_set_chunks())
        rsp = a.receive()
        category = STORAGE_SERVICE_CLASS_STATUS.get(rsp.status, ("Failure",))[0]
        if rsp.status == 0x0000 or category == "Warning":
            return ""
        return (f"{who(self.node)} refused {item.describe()} "
                f"({_status_text(rsp.status, STORAGE_SERVICE_CLASS_STATUS)}).")
