"""Retrieve a study or some of its series into the managed folder and the study index.

    job = RetrieveJob(node, study_uid)                 # or series_uids=[...], method="C-MOVE"
    result = job.run(progress=on_progress, on_series=open_when_ready)   # blocking; job.cancel() from any thread

The job asks the server which instances the study holds, skips those already stored (so an
interrupted retrieve resumes and no instance is stored twice), fetches the rest series by series
(images first), and records each series in the study index once it is complete; ``on_series``
then fires, so the viewer can open the first series while the others still arrive.  Callbacks
run on the job's own threads: a GUI must hand them over to its UI thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from viewer.core.dicom.index import StudyIndex
from viewer.core.errors import HounsfieldError
from viewer.logs import log
from viewer.pacs.client import client_for
from viewer.pacs.errors import PacsError, TransferCancelled, TransferFailed
from viewer.pacs.listing import SeriesListing
from viewer.pacs.nodes import LocalAE, PacsNode
from viewer.pacs.storage import LocalStore, index_series

_NON_IMAGE = {"SR", "SEG", "KO", "PR", "RTSTRUCT", "RTPLAN", "DOC", "REG", "OT"}


@dataclass
class RetrieveProgress:
    done: int  # instances of this retrieve now stored (kept from before + received)
    total: int
    received: int  # written by this run
    skipped: int  # already stored before this run
    series_done: int
    series_total: int
    series_uid: str = ""  # the series being fetched
    series_label: str = ""

    @property
    def fraction(self) -> float:
        """0..1 for a progress bar (0 while the server has not said how many images there are)."""
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass
class RetrievedSeries:
    study_uid: str
    series_uid: str
    folder: Path  # open it with viewer.load(folder)
    instances: int
    modality: str = ""
    number: int | None = None
    description: str = ""


@dataclass
class RetrieveResult:
    study_uid: str
    method: str
    series: list[RetrievedSeries] = field(default_factory=list)
    received: int = 0
    skipped: int = 0
    seconds: float = 0.0


def _order(listing: SeriesListing):
    return (listing.modality in _NON_IMAGE, listing.number is None, listing.number or 0, listing.series_uid)


class RetrieveJob:
    def __init__(self, node: PacsNode, study_uid: str, series_uids: list[str] | None = None, *,
                 method: str | None = None, local: LocalAE | None = None, scp=None,
                 store: LocalStore | None = None):
        self.node = node.validate()
        self.study_uid = study_uid.strip()
        self.series_uids = list(series_uids or [])
        self.method = method or node.retrieve_method
        allowed = ("WADO-RS",) if node.is_dicomweb else ("C-GET", "C-MOVE")
        if self.method not in allowed:
            raise HounsfieldError(f"PACS node '{node.name}' cannot retrieve by {self.method}; use "
                                  f"{' or '.join(allowed)}.")
        self.local, self.scp = local, scp
        self.store = store or LocalStore()
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Stop as soon as possible (thread-safe); ``run`` then raises ``TransferCancelled``."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self, progress: Callable[[RetrieveProgress], None] | None = None,
            on_series: Callable[[RetrievedSeries], None] | None = None) -> RetrieveResult:
        t0 = time.perf_counter()
        client = client_for(self.node, self.local, self.scp)
        listings = self._plan(client)
        total = sum(s.count or 0 for s in listings)
        state = RetrieveProgress(0, total, 0, 0, 0, len(listings))
        result = RetrieveResult(self.study_uid, self.method)
        self.store.clean_partial(self.study_uid)
        index = StudyIndex()
        try:
            for listing in listings:
                self._check_cancel(state)
                result.series.append(self._one_series(client, listing, state, progress, index))
                state.series_done += 1
                if on_series is not None:
                    on_series(result.series[-1])
        finally:
            index.close()
        result.received, result.skipped = state.received, state.skipped
        result.seconds = time.perf_counter() - t0
        log.info("retrieved study %s from node %s by %s: %d received, %d already here, %.2f s", self.study_uid,
                 self.node.name, self.method, state.received, state.skipped, result.seconds)
        return result

    def _plan(self, client) -> list[SeriesListing]:
        listings = [s for s in client.list_series(self.study_uid, self.series_uids or None) if s.count != 0]
        if not listings:
            what = f"series {', '.join(self.series_uids)} of study" if self.series_uids else "study"
            raise PacsError(f"PACS '{self.node.name}' has no images of {what} {self.study_uid}; query it again to "
                            "check the UID.")
        missing = set(self.series_uids) - {s.series_uid for s in listings}
        if missing:
            raise PacsError(f"PACS '{self.node.name}' has no series {sorted(missing)[0]} in study {self.study_uid}; "
                            "query the study's series to check the UID.")
        return sorted(listings, key=_order)

    def _check_cancel(self, state: RetrieveProgress) -> None:
        if self._cancel.is_set():
            raise TransferCancelled(f"The retrieval was cancelled after {state.done} of {state.total} images; they "
                                    "are kept and retrieving again fetches only the rest.", state.done, state.total)

    def _one_series(self, client, listing: SeriesListing, state: RetrieveProgress, progress,
                    index: StudyIndex) -> RetrievedSeries:
        study, series = listing.study_uid, listing.series_uid
        have: set[str] = set()
        if self.store.count(study, series):  # partly here already: ask which instances are missing
            client.list_instances(listing)
            have = self.store.present(study, series, listing.sop_uids)
            state.total += len(listing.instances) - (listing.count or 0)
        expected = set(listing.sop_uids)
        arrived = set(have)
        state.skipped += len(have)
        state.done += len(have)
        state.series_uid, state.series_label = series, listing.label()
        if progress is not None:
            progress(RetrieveProgress(**vars(state)))

        def on_stored(study_uid: str, series_uid: str, sop: str, new: bool) -> None:
            if series_uid != series or (expected and sop not in expected):
                return  # something else the storage SCP received meanwhile
            with self._lock:
                if sop in arrived:
                    return
                arrived.add(sop)
                state.done += 1
                state.received += 1
                snapshot = RetrieveProgress(**vars(state))
            if progress is not None:
                progress(snapshot)

        if not expected or expected - have:
            missing = [u for u in listing.sop_uids if u not in have]
            try:
                client.fetch(listing, missing if have else None, self.store, on_stored, self._cancel, self.method)
            except TransferCancelled:
                self._check_cancel(state)
                raise
            except PacsError as exc:
                kept = f"; {state.done} of {state.total} images had arrived and are kept" if state.done else ""
                raise type(exc)(f"{str(exc).rstrip('.')}{kept}.", state.done, state.total) from exc
            self._check_complete(listing, state)
        folder = self.store.series_dir(study, series)
        index_series([folder], index)
        return RetrievedSeries(study, series, folder, self.store.count(study, series), listing.modality,
                               listing.number, listing.description)

    def _check_complete(self, listing: SeriesListing, state: RetrieveProgress) -> None:
        if listing.instances:
            expected = set(listing.sop_uids)
            short = len(expected - self.store.present(listing.study_uid, listing.series_uid, expected))
        else:
            short = (listing.count or 0) - self.store.count(listing.study_uid, listing.series_uid)
        if short > 0:
            raise TransferFailed(f"PACS '{self.node.name}' did not send {short} of the {listing.expected} images of "
                                 f"{listing.label()}; {state.done} of {state.total} images had arrived and are kept, "
                                 "retrieve again to fetch the rest.", state.done, state.total)


def retrieve_study(node: PacsNode, study_uid: str, series_uids: list[str] | None = None, **kwargs) -> RetrieveResult:
    """Blocking one-call form of ``RetrieveJob(...).run(progress=..., on_series=...)``."""
    progress, on_series = kwargs.pop("progress", None), kwargs.pop("on_series", None)
    return RetrieveJob(node, study_uid, series_uids, **kwargs).run(progress=progress, on_series=on_series)
