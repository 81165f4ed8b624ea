"""Opening an association: TLS, and one sentence for every way it can fail.

Used by the lean client (``dul``) and the storage SCP; ``who(node)`` names a node in messages
without secrets or patient data.
"""

from __future__ import annotations

import socket
import ssl

from viewer.pacs.errors import AssociationRejected, PacsTimeout, ServerUnreachable, UnknownAE
from viewer.pacs.nodes import LocalAE, PacsNode


def who(node: PacsNode) -> str:
    return f"PACS '{node.name}' ({node.describe()})"


def nodelay(event) -> None:
    """pynetdicom event handler: switch Nagle's algorithm off (each small DIMSE response would
    otherwise wait for a delayed ACK, ~40 ms on Linux)."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def tls_context(node: PacsNode) -> ssl.SSLContext:
    tls = node.tls
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file or None)
        if not tls.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ServerUnreachable(f"The TLS certificates of PACS node '{node.name}' could not be loaded "
                                f"({type(exc).__name__}); check the file names in its TLS settings.") from exc
    return ctx


def describe_os_error(node: PacsNode, exc: BaseException) -> str:
    """Why a TCP connection failed, as a phrase."""
    if isinstance(exc, socket.gaierror):
        return f"the host name '{node.host}' is unknown"
    if isinstance(exc, ConnectionRefusedError):
        return "nothing accepts connections on that port"
    if isinstance(exc, TimeoutError):
        return f"the connection timed out after {node.timeout:g} s"
    return getattr(exc, "strerror", None) or type(exc).__name__


def unreachable(node: PacsNode, why: str) -> ServerUnreachable:
    return ServerUnreachable(f"Could not connect to {who(node)}: {why}; check that the server is running and the "
                             "host and port are right.")


def tls_failed(node: PacsNode) -> ServerUnreachable:
    return ServerUnreachable(f"The TLS handshake with {who(node)} failed; check its certificate and the node's TLS "
                             "settings.")


def rejected(node: PacsNode, local: LocalAE, reason: str) -> AssociationRejected:
    reason = (reason or "").lower()
    if "calling ae" in reason:
        return UnknownAE(f"{who(node)} does not know our AE title '{local.ae_title}'; ask its administrator to add "
                         "it, or change our AE title in the PACS settings.")
    if "called ae" in reason:
        return UnknownAE(f"{who(node)} does not answer to the AE title '{node.ae_title}'; check the node's AE title.")
    return AssociationRejected(f"{who(node)} rejected the association ({reason or 'no reason given'}); check the "
                               "node's settings with its administrator.")


def refused_connection(node: PacsNode) -> AssociationRejected:
    return AssociationRejected(f"{who(node)} closed the connection instead of accepting the association; check the "
                               "node's AE title, whether it expects TLS, and that it accepts us.")


def no_answer(node: PacsNode) -> PacsTimeout:
    return PacsTimeout(f"{who(node)} took the connection but did not answer within {node.timeout:g} s; check "
                       "whether it expects TLS, or try again later.")
