"""A lean DICOM association for our SCU side: one thread, one socket, no reactor.

Why not pynetdicom's ``Association`` for the client side: it hands every PDU through two threads
and several queues, which made a 141-image C-GET 2-3x slower than dcmtk's ``getscu``; and its
reactor thread can take a response off the queue before the waiting ``send_c_*`` call does
("Received unexpected C-FIND service message"), which under load lost query results or left a
call waiting for its full time-out.  Here pynetdicom only encodes the A-ASSOCIATE request and
decodes the answer; the data phase (P-DATA PDUs and DIMSE command sets, PS3.7/PS3.8) is a few
struct calls, and a received data set can stream straight into a file as it arrives.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID
from pynetdicom import build_context, build_role
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.transport import AddressInformation

from viewer.pacs import association as A
from viewer.pacs.errors import TransferFailed
from viewer.pacs.nodes import LocalAE, PacsNode
from viewer.pacs.storage import IMPLEMENTATION_VERSION

MAX_PDU = 1 << 20  # what we accept (Orthanc sends 16 KiB PDUs whatever we say)
POLL = 0.25  # socket time-out slice: how soon Cancel is noticed while the server is silent
_RELEASE_RQ = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
_RELEASE_RP = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"
_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"

# Command set elements (group 0000) used by the services we call.
SOP_CLASS, FIELD, MSG_ID, RESPONDED_TO, MOVE_DEST = 0x00000002, 0x00000100, 0x00000110, 0x00000120, 0x00000600
PRIORITY, DATASET_TYPE, STATUS, SOP_INSTANCE = 0x00000700, 0x00000800, 0x00000900, 0x00001000
COMPLETED, FAILED = 0x00001021, 0x00001022
NO_DATASET = 0x0101


class Closed(Exception):
    """The peer closed the connection (or it broke)."""


class Silent(Exception):
    """The peer said nothing for the node's whole time-out."""


def command(elements: list[tuple[int, str, object]]) -> bytes:
    """An implicit-VR little-endian command set from (tag, 'UI'|'AE'|'US'|'UL', value), tags ascending."""
    body = b""
    for tag, vr, value in elements:
        if vr in ("UI", "AE"):
            raw = str(value).encode("ascii")
            raw += (b"\0" if vr == "UI" else b" ") * (len(raw) % 2)
        else:
            raw = struct.pack("<H" if vr == "US" else "<I", value)
        body += struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(raw)) + raw
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def parse_command(raw: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    while pos + 8 <= len(raw):
        group, elem, length = struct.unpack_from("<HHI", raw, pos)
        out[(group << 16) | elem] = raw[pos + 8:pos + 8 + length]
        pos += 8 + length
    return out


def us(cmd: dict, tag: int, default: int = 0) -> int:
    v = cmd.get(tag)
    return struct.unpack("<H", v[:2])[0] if v and len(v) >= 2 else default


def text(cmd: dict, tag: int) -> str:
    return cmd.get(tag, b"").rstrip(b"\0 ").decode("ascii", "replace")


class Dropped:
    """A sink that drops a data set (one that could not be written)."""

    def write(self, data) -> None:
        pass

    def discard(self) -> None:
        pass


@dataclass
class Message:
    context_id: int
    cmd: dict[int, bytes]
    data: bytes | None = None  # the data set, when it was collected in memory
    sink: object = None  # what streamed the data set instead (see ``receive``)
    error: OSError | None = None  # why the sink had to drop it (disk full...)

    @property
    def field(self) -> int:
        return us(self.cmd, FIELD)

    @property
    def status(self) -> int:
        return us(self.cmd, STATUS)


class Association:
    """``open()``, then ``send``/``receive`` DIMSE messages, then ``release()`` (or ``abort()``).

    ``contexts`` are (abstract syntax, [transfer syntaxes]); ``scp_roles`` the SOP classes we
    accept C-STOREs for on this association (C-GET).  ``cancel`` (an Event) is checked while
    waiting; ``on_cancel`` is then called once per wait slice (it may send C-CANCEL or raise).
    """

    def __init__(self, node: PacsNode, local: LocalAE, contexts: list[tuple[str, list[str] | None]],
                 scp_roles: Iterable[str] = ()):
        self.node, self.local = node, local
        self.proposed = [build_context(a, ts) for a, ts in contexts]
        for i, cx in enumerate(self.proposed):
            cx.context_id = 2 * i + 1
        self.roles = [build_role(c, scp_role=True) for c in dict.fromkeys(scp_roles)]
        self.sock: socket.socket | None = None
        self.accepted: dict[int, tuple[str, str]] = {}  # context id -> (abstract syntax, transfer syntax)
        self.peer_max = 0
        self.last_heard = time.monotonic()
        self.msg_id = 0
        self.cancel: threading.Event | None = None
        self.on_cancel: Callable[[], None] | None = None

    # -- association ---------------------------------------------------------------------------
    def open(self) -> Association:
        node = self.node
        try:
            sock = socket.create_connection((node.host, node.port), timeout=node.timeout)
        except OSError as exc:
            raise A.unreachable(node, A.describe_os_error(node, exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if node.tls.enabled:
            try:
                sock = A.tls_context(node).wrap_socket(sock, server_hostname=node.host if node.tls.verify else None)
            except (ssl.SSLError, OSError) as exc:
                sock.close()
                raise A.tls_failed(node) from exc
        self.sock = sock
        try:
            self._associate()
        except BaseException:
            self.sock.close()
            self.sock = None
            raise
        sock.settimeout(POLL)
        return self

    def _associate(self) -> None:
        node = self.node
        rq = A_ASSOCIATE()
        rq.application_context_name = UID("1.2.840.10008.3.1.1.1")
        rq.calling_ae_title, rq.called_ae_title = self.local.ae_title, node.ae_title
        rq.calling_presentation_address = AddressInformation("127.0.0.1", 0)
        rq.called_presentation_address = AddressInformation("127.0.0.1", node.port)  # not sent in the PDU
        rq.presentation_context_definition_list = self.proposed
        ml, impl, ver = (MaximumLengthNotification(), ImplementationClassUIDNotification(),
                         ImplementationVersionNameNotification())
        ml.maximum_length_received = MAX_PDU
        impl.implementation_class_uid = UID(PYDICOM_IMPLEMENTATION_UID)
        ver.implementation_version_name = IMPLEMENTATION_VERSION
        rq.user_information = [ml, impl, ver, *self.roles]
        pdu = A_ASSOCIATE_RQ()
        pdu.from_primitive(rq)
        self.sock.sendall(pdu.encode())
        self.last_heard = time.monotonic()
        try:
            kind, data = self._read_pdu()
        except Silent as exc:
            raise A.no_answer(node) from exc
        except Closed as exc:
            raise A.refused_connection(node) from exc
        if kind == 3:
            rj = A_ASSOCIATE_RJ()
            rj.decode(bytes(data))
            raise A.rejected(node, self.local, rj.reason_str)
        if kind != 2:
            raise A.refused_connection(node)
        ac = A_ASSOCIATE_AC()
        ac.decode(bytes(data))
        prim = ac.to_primitive()
        for item in prim.user_information:
            if isinstance(item, MaximumLengthNotification):
                self.peer_max = item.maximum_length_received or 0
        by_id = {cx.context_id: cx for cx in self.proposed}
        for cx in prim.presentation_context_definition_results_list:
            if cx.result == 0 and cx.context_id in by_id and cx.transfer_syntax:
                self.accepted[cx.context_id] = (str(by_id[cx.context_id].abstract_syntax), str(cx.transfer_syntax[0]))

    def context_for(self, abstract: str, syntax: str | None = None) -> int:
        """An accepted context id for ``abstract`` (and ``syntax``), or 0."""
        return next((i for i, (a, ts) in self.accepted.items() if a == abstract and syntax in (None, ts)), 0)

    def syntax(self, context_id: int) -> UID:
        return UID(self.accepted[context_id][1])

    def release(self) -> None:
        """Release politely (waiting at most 2 s for the answer), then close."""
        if self.sock is None:
            return
        try:
            self.sock.sendall(_RELEASE_RQ)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                try:
                    self.sock.recv(64)  # A-RELEASE-RP, or b"" when the server just closes
                    break
                except TimeoutError:
                    continue
        except OSError:
            pass
        finally:
            self.sock.close()
            self.sock = None

    def abort(self) -> None:
        if self.sock is not None:
            try:
                self.sock.sendall(_ABORT)
            except OSError:
                pass
            self.sock.close()
            self.sock = None

    def __enter__(self) -> Association:
        return self.open() if self.sock is None else self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abort()

    # -- transport -----------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytearray:
        out = bytearray(n)
        view, got = memoryview(out), 0
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except TimeoutError:
                if self.cancel is not None and self.cancel.is_set() and self.on_cancel is not None:
                    self.on_cancel()
                if time.monotonic() - self.last_heard >= self.node.timeout:
                    raise Silent() from None
                continue
            except OSError as exc:
                raise Closed(str(exc)) from exc
            if not k:
                raise Closed("closed by the peer")
            got += k
            self.last_heard = time.monotonic()
        return out

    def _read_pdu(self) -> tuple[int, bytearray]:
        """(PDU type, its body); association answers (types 2 and 3) keep their header for decoding."""
        head = self._recv_exact(6)
        kind, length = head[0], struct.unpack(">I", head[2:6])[0]
        body = self._recv_exact(length)
        return kind, (head + body if kind in (2, 3) else body)

    def send(self, context_id: int, cmd: bytes, data: bytes | Iterable[bytes] | None = None) -> None:
        """One DIMSE message: the command set, then the data set (bytes, or chunks streamed as read)."""
        self._send_pdv(context_id, cmd, True, True)
        if data is None:
            return
        chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
        limit = (self.peer_max - 6) if self.peer_max else 1 << 20
        pending = b""
        for chunk in chunks:
            pending = pending + bytes(chunk) if pending else bytes(chunk)
            while len(pending) > limit:
                self._send_pdv(context_id, pending[:limit], False, False)
                pending = pending[limit:]
        self._send_pdv(context_id, pending, False, True)

    def _send_pdv(self, context_id: int, payload: bytes, is_command: bool, last: bool) -> None:
        limit = (self.peer_max - 6) if self.peer_max else len(payload) or 1
        for start in range(0, max(len(payload), 1), limit):
            part = payload[start:start + limit]
            final = last and start + limit >= len(payload)
            pdv = struct.pack(">IBB", len(part) + 2, context_id, (1 if is_command else 0) | (2 if final else 0))
            self.sock.sendall(struct.pack(">BBI", 4, 0, len(pdv) + len(part)) + pdv + part)

    def receive(self, sink_for: Callable[[int, dict], object] | None = None) -> Message:
        """The next DIMSE message.  Its data set is collected in memory, or, when ``sink_for(context,
        command)`` returns a writer, streamed into it (``write`` per fragment; the caller commits)."""
        cmd_parts: list[bytes] = []
        message: Message | None = None
        data = bytearray()
        while True:
            if self.cancel is not None and self.cancel.is_set() and self.on_cancel is not None:
                self.on_cancel()
            kind, body = self._read_pdu()
            if kind == 7:
                raise Closed("aborted by the peer")
            if kind == 5:  # a release request in the middle of an operation
                self.sock.sendall(_RELEASE_RP)
                raise Closed("released by the peer")
            if kind != 4:
                raise TransferFailed(f"{A.who(self.node)} sent an unexpected message; try again.")
            view, pos = memoryview(body), 0
            while pos < len(body):
                length, ctx, ctrl = struct.unpack_from(">IBB", body, pos)
                fragment = view[pos + 6:pos + 4 + length]
                pos += 4 + length
                if ctrl & 1:  # a command fragment
                    cmd_parts.append(bytes(fragment))
                    if ctrl & 2:
                        cmd = parse_command(b"".join(cmd_parts))
                        message = Message(ctx, cmd)
                        if us(cmd, DATASET_TYPE, NO_DATASET) == NO_DATASET:
                            return message
                        message.sink = sink_for(ctx, cmd) if sink_for is not None else None
                elif message is not None:
                    if message.sink is not None:
                        try:
                            message.sink.write(fragment)
                        except OSError as exc:  # keep the association in step; report it with the message
                            message.sink.discard()
                            message.sink, message.error = Dropped(), exc
                    else:
                        data += fragment
                    if ctrl & 2:
                        if message.sink is None:
                            message.data = bytes(data)
                        return message

    def next_id(self) -> int:
        self.msg_id = self.msg_id % 0xFFFF + 1
        return self.msg_id
