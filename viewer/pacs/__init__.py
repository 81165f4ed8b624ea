"""PACS: query, retrieve and send over DIMSE (pynetdicom) and DICOMweb (dicomweb-client).  No Qt.

    from viewer import pacs
    settings = pacs.PacsSettings.load()                    # pacs.json in the user config dir
    node = settings.node("hospital")
    pacs.echo(node)                                        # "Test connection": milliseconds
    studies = pacs.query(node, pacs.Query(patient_name="DOE^*", date_from="2024-01-01", modality="CT"))
    series = pacs.query(node, pacs.Query("SERIES", study_uid=studies[0].study_uid))
    job = pacs.RetrieveJob(node, studies[0].study_uid, local=settings.local)
    result = job.run(progress=print, on_series=lambda s: viewer.load(s.folder))   # job.cancel() stops it
    pacs.retrieve_study(node, study_uid, method="C-MOVE")  # the same in one call
    pacs.send_objects(node, [seg_dataset, "/path/to/sr.dcm"])   # C-STORE or STOW-RS

    with pacs.StorageSCP(settings.local):                  # receives C-MOVE transfers while the app runs
        ...

Every failure is a ``viewer.pacs.PacsError`` (a ``HounsfieldError``) whose message is one sentence.
Blocking calls belong on a worker thread; their callbacks run on that thread.
"""

from viewer.pacs.errors import (
    AssociationRejected,
    AuthenticationFailed,
    PacsError,
    PacsTimeout,
    ServerUnreachable,
    TransferCancelled,
    TransferFailed,
    UnknownAE,
)
from viewer.pacs.nodes import LocalAE, PacsNode, PacsSettings, TlsSettings
from viewer.pacs.query import COLUMNS, Query, QueryResult, sort_results

__all__ = [
    "AssociationRejected", "AuthenticationFailed", "COLUMNS", "LocalAE", "PacsError", "PacsNode", "PacsSettings",
    "PacsTimeout", "Query", "QueryResult", "RetrieveJob", "RetrieveProgress", "RetrieveResult", "RetrievedSeries",
    "ServerUnreachable", "StorageSCP", "TlsSettings", "TransferCancelled", "TransferFailed", "UnknownAE", "echo",
    "query", "retrieve_study", "send_objects", "sort_results",
]


def echo(node: PacsNode, local: LocalAE | None = None) -> float:
    """Test the connection (C-ECHO, or a one-result QIDO-RS search); round trip in milliseconds."""
    from viewer.pacs.client import client_for

    return client_for(node, local).echo()


def query(node: PacsNode, q: Query, local: LocalAE | None = None) -> list[QueryResult]:
    """Studies or series matching ``q`` (C-FIND or QIDO-RS)."""
    from viewer.pacs.client import client_for

    return client_for(node, local).find(q)


def __getattr__(name: str):  # the heavier parts load on first use
    if name in ("RetrieveJob", "RetrieveProgress", "RetrieveResult", "RetrievedSeries", "retrieve_study"):
        import viewer.pacs.retrieve as _r

        return getattr(_r, name)
    if name == "send_objects":
        from viewer.pacs.send import send as _send

        return _send
    if name == "StorageSCP":
        from viewer.pacs.store_scp import StorageSCP

        return StorageSCP
    raise AttributeError(name)
