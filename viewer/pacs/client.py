"""One entry point for both protocols: ``client_for(node)`` gives a DIMSE or DICOMweb client.

Both offer the same methods: ``echo() -> ms``, ``find(Query) -> [QueryResult]``,
``list_series(study, series_uids) -> [SeriesListing]``, ``list_instances(listing)``,
``fetch(listing, sop_uids, store, on_stored, cancel, method)`` and
``send(items, on_sent, cancel) -> [failure sentences]``.
"""

from __future__ import annotations

from viewer.pacs.nodes import LocalAE, PacsNode


def client_for(node: PacsNode, local: LocalAE | None = None, scp=None):
    node.validate()
    if node.is_dicomweb:
        from viewer.pacs.dicomweb import WebClient

        return WebClient(node)
    from viewer.pacs.dimse import DimseClient

    return DimseClient(node, local, scp=scp)
