"""What can go wrong talking to a PACS, one exception type per case a person acts on differently.

Every one is a ``HounsfieldError`` whose ``str()`` is one sentence: the CLI prints it and exits
with status 2, the GUI shows it.  Nothing half-written is left in the study index by any of them.
"""

from __future__ import annotations

from viewer.core.errors import HounsfieldError


class PacsError(HounsfieldError):
    """A PACS operation failed; a transfer cut short says how far it got (``received`` of ``expected``)."""

    def __init__(self, message: str, received: int | None = None, expected: int | None = None):
        super().__init__(message)
        self.received, self.expected = received, expected


class ServerUnreachable(PacsError):
    """No connection: the server is down, the host or port is wrong, or a firewall is in the way."""


class AssociationRejected(PacsError):
    """The server answered but refused the DICOM association."""


class UnknownAE(AssociationRejected):
    """An AE title is not known to the server (ours, the one we called, or a C-MOVE destination)."""


class AuthenticationFailed(PacsError):
    """The DICOMweb server refused our credentials."""


class PacsTimeout(PacsError):
    """The server stopped answering for longer than the node's time-out."""


class TransferFailed(PacsError):
    """A transfer ended before every instance arrived (connection lost, server refused some); what
    did arrive is kept whole and a later retrieve fetches only the rest."""


class TransferCancelled(TransferFailed):
    """The person pressed Cancel; what had arrived is kept, a later retrieve resumes."""
