"""The PACS side of a main window: settings, our Storage SCP, retrieves and sends, and their
progress (shown in the status bar by ``viewer.ui.pacs.PacsFeature``).  One per window; the dialogs
use it.  No widgets here.

Nothing here blocks the UI thread: viewer.pacs (pydicom, pynetdicom, requests) is imported and
every network call made on worker threads (``Task``).  Every failure is one sentence in the
window's message bar; tracebacks go to the log.
"""

from __future__ import annotations

import os
import time

from PySide6.QtCore import QObject, QTimer, Signal

from viewer.logs import log
from viewer.ui.pacs.workers import Task

SCP_START_DELAY_MS = 1500  # after start-up, so the first study opens undisturbed
INCOMING_QUIET_S = 2.0  # an incoming series is indexed once nothing arrived for it this long
_NON_IMAGE = {"SR", "SEG", "KO", "PR", "RTSTRUCT", "RTPLAN", "DOC", "REG", "OT"}


class PacsController(QObject):
    settings_changed = Signal()
    scp_changed = Signal()  # started or stopped
    retrieve_progress = Signal(object)  # RetrieveProgress
    series_retrieved = Signal(object)  # RetrievedSeries
    retrieve_ended = Signal(str)  # "" when complete, else the sentence shown
    send_ended = Signal(str)  # a sentence: what was sent, or what went wrong
    incoming_indexed = Signal(int)  # how many series from unsolicited transfers entered the index
    transfer_status = Signal(str, int, int)  # "Retrieving from PACS", done, total: shown in the status bar
    transfer_idle = Signal()  # no transfer runs any more
    _incoming = Signal(str, str)  # study, series received by our SCP (from its thread)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.settings = None  # viewer.pacs.PacsSettings, once loaded
        self.scp = None
        self.scp_error = ""
        self.retrieve_task: Task | None = None
        self.send_task: Task | None = None
        self.tasks: set[Task] = set()
        self.opened_first = False
        self._listening = None
        self._scp_task: Task | None = None
        self._scp_again = False
        self._closed = False
        self._pending: dict[tuple[str, str], float] = {}
        self._incoming.connect(self._on_incoming)
        self._incoming_timer = QTimer(self)
        self._incoming_timer.setSingleShot(True)
        self._incoming_timer.timeout.connect(self._index_incoming)

    def _show_status(self, text: str, done: int, total: int) -> None:
        self.transfer_status.emit(text, done, total)

    def _hide_status(self) -> None:
        if not self.busy:
            self.transfer_idle.emit()

    @property
    def busy(self) -> bool:
        return self.retrieve_task is not None or self.send_task is not None

    def error(self, text: str) -> None:
        if not self._closed:
            self.window.show_error(text)

    def note(self, text: str) -> None:
        if not self._closed:
            self.window.statusBar().showMessage(text, 10000)

    def _task(self, fn, what: str) -> Task:
        task = Task(fn, what, self)
        self.tasks.add(task)
        task.ended.connect(lambda t=task: self.tasks.discard(t))
        return task

    # settings and the storage SCP
    def load_settings(self):
        """The PACS settings (read again from disk); on a broken file, one sentence and empty settings."""
        from viewer.pacs import PacsSettings

        try:
            self.settings = PacsSettings.load()
        except Exception as exc:  # noqa: BLE001 - shown as one sentence
            from viewer.ui.pacs.workers import sentence

            self.error(sentence(exc, "reading of the PACS settings"))
            self.settings = PacsSettings()
        return self.settings

    def start_background(self, delay_ms: int = SCP_START_DELAY_MS) -> None:
        """After ``delay_ms``: load viewer.pacs and the settings on a worker thread, then start the SCP."""
        QTimer.singleShot(delay_ms, self._preload)

    def _preload(self) -> None:
        if self._closed:
            return

        def work(_task):
            import viewer.pacs  # noqa: F401 - the import is the work (pydicom, off the UI thread)
            from viewer.pacs import PacsSettings

            return PacsSettings.load()

        task = self._task(work, "reading of the PACS settings")
        task.done.connect(self._on_preloaded)
        task.failed.connect(self.error)
        task.start()

    def _on_preloaded(self, settings) -> None:
        if self.settings is None:
            self.settings = settings
        if os.path.exists(self.settings.path):  # configured: a PACS may send to us
            self.start_scp()

    def start_scp(self) -> None:
        """Start (or restart, after the local settings changed) our Storage SCP on a worker thread."""
        if self._closed or self.settings is None:
            return
        if self._scp_task is not None:  # one start at a time: start again once this one is done
            self._scp_again = True
            return
        local, old = self.settings.local, self.scp
        if old is not None:
            if (old.local.ae_title, old.local.storage_port) == (local.ae_title, local.storage_port):
                return
            self._detach(old)

        def work(_task):
            from viewer.pacs.store_scp import StorageSCP

            if old is not None:  # stopping waits for the server loop: not on the UI thread
                old.stop()
            scp = StorageSCP(local).start()
            if self._closed:  # the window closed meanwhile
                scp.stop()
                return None
            return scp

        task = self._task(work, "start of the storage service")
        task.done.connect(self._on_scp_started)
        task.failed.connect(self._on_scp_failed)
        self._scp_task, self._scp_again = task, False
        task.start()

    def _on_scp_started(self, scp) -> None:
        self._scp_task = None
        if scp is None:
            return
        if self._closed:
            scp.stop()
            return
        self.scp, self.scp_error = scp, ""
        self._listening = scp.listening(lambda study, series, _sop, _new: self._incoming.emit(study, series))
        self._listening.__enter__()
        self.scp_changed.emit()
        if self._scp_again:
            self.start_scp()

    def _on_scp_failed(self, text: str) -> None:
        self._scp_task = None
        self.scp_error = text
        self.error(text)
        self.scp_changed.emit()
        if self._scp_again:
            self.start_scp()

    def _detach(self, scp) -> None:
        if self.scp is scp:
            self.scp = None
        if self._listening is not None:
            self._listening.__exit__(None, None, None)
            self._listening = None

    def stop_scp(self) -> None:
        """Stop our Storage SCP now (blocks up to half a second: used when the window closes)."""
        scp = self.scp
        if scp is None:
            return
        self._detach(scp)
        try:
            scp.stop()
        except Exception:  # noqa: BLE001 - closing must go on
            log.exception("stopping the storage SCP failed")
        if not self._closed:
            self.scp_changed.emit()

    def shutdown(self) -> None:
        """The window closes: cancel transfers, stop the SCP (instances half received are not kept)."""
        self._closed = True
        self._incoming_timer.stop()
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            task.wait(3.0)
        self.stop_scp()

    # instances a PACS sends us on its own (not part of one of our retrieves)
    def _on_incoming(self, study: str, series: str) -> None:
        job = getattr(self.retrieve_task, "job", None)
        if job is not None and job.study_uid == study:
            return  # the retrieve indexes its own series once complete
        self._pending[(study, series)] = time.monotonic()
        self._incoming_timer.start(int(INCOMING_QUIET_S * 1000))

    def _index_incoming(self) -> None:
        now = time.monotonic()
        quiet = [k for k, t in self._pending.items() if now - t >= INCOMING_QUIET_S - 0.05]
        for k in quiet:
            del self._pending[k]
        if self._pending:
            self._incoming_timer.start(int(INCOMING_QUIET_S * 1000))
        if not quiet or self.scp is None:
            return
        store = self.scp.store

        def work(_task):
            from viewer.pacs.storage import index_series

            index_series([store.series_dir(study, series) for study, series in quiet])
            return len(quiet)

        task = self._task(work, "indexing of received images")
        task.done.connect(self._on_incoming_indexed)
        task.failed.connect(self.error)
        task.start()

    def _on_incoming_indexed(self, count: int) -> None:
        self.note(f"{count} series received from a PACS {'is' if count == 1 else 'are'} in the study list.")
        self.window.browser.refresh()
        self.incoming_indexed.emit(count)

    # retrieve
    def retrieve(self, node, study_uid: str, series_uids: list[str] | None = None, open_first: bool = True):
        """Retrieve a study (or some of its series) by the node's method; the first image series
        opens in the viewer as soon as it is complete.  Returns the Task, or None (message shown)."""
        if self.retrieve_task is not None:
            self.error("A retrieval is already running; wait for it to finish or cancel it.")
            return None
        from viewer.pacs.retrieve import RetrieveJob

        try:
            job = RetrieveJob(node, study_uid, series_uids, local=self.settings.local if self.settings else None,
                              scp=self.scp)
        except Exception as exc:  # noqa: BLE001 - invalid node or method: one sentence
            from viewer.ui.pacs.workers import sentence

            self.error(sentence(exc, "retrieval"))
            return None
        task = self._task(lambda t: job.run(progress=t.report, on_series=t.emit_item), "retrieval")
        task.job, task.on_cancel = job, job.cancel
        task.open_first = open_first
        self.retrieve_task, self.opened_first = task, False
        task.progress.connect(self._on_retrieve_progress)
        task.item.connect(self._on_series_retrieved)
        task.done.connect(self._on_retrieved)
        task.failed.connect(self._on_retrieve_failed)
        self._show_status(f"Retrieving from {node.name}", 0, 0)
        log.info("retrieve of study %s from node %s by %s started", study_uid, node.name, job.method)
        return task.start()

    def _on_retrieve_progress(self, p) -> None:
        label = f"Retrieving series {p.series_done + 1} of {p.series_total}" if p.series_total > 1 else "Retrieving"
        self._show_status(label, p.done, p.total)
        self.retrieve_progress.emit(p)

    def _on_series_retrieved(self, s) -> None:
        task = self.retrieve_task
        if task is not None and task.open_first and not self.opened_first and s.modality not in _NON_IMAGE:
            self.opened_first = True
            self.window.open_path(os.fspath(s.folder))
        self.series_retrieved.emit(s)

    def _on_retrieved(self, result) -> None:
        self.retrieve_task = None
        self._hide_status()
        n = len(result.series)
        fetched = f"{result.received} images received" + (f", {result.skipped} were here already"
                                                         if result.skipped else "")
        self.note(f"Retrieved {n} series ({fetched}) in {result.seconds:.1f} s by {result.method}.")
        self.window.browser.refresh()
        self.retrieve_ended.emit("")

    def _on_retrieve_failed(self, text: str) -> None:
        self.retrieve_task = None
        self._hide_status()
        self.error(text)
        self.window.browser.refresh()  # complete series that did arrive are listed
        self.retrieve_ended.emit(text)

    def cancel_transfers(self) -> None:
        for task in (self.retrieve_task, self.send_task):
            if task is not None:
                task.cancel()

    # send
    def send_files(self, paths: list[str], node_name: str | None = None):
        """Send DICOM files or folders to a node (C-STORE or STOW-RS); returns the Task or None."""
        if self.send_task is not None:
            self.error("Objects are being sent already; wait for that to finish or cancel it.")
            return None
        settings = self.load_settings()
        if not settings.nodes:
            self.error("No PACS node is configured; add one with PACS > Nodes first.")
            return None
        try:
            node = settings.node(node_name) if node_name else settings.nodes[0]
        except Exception as exc:  # noqa: BLE001
            from viewer.ui.pacs.workers import sentence

            self.error(sentence(exc, "send"))
            return None
        local = settings.local
        paths = [os.fspath(p) for p in paths]

        def work(task):
            from viewer.pacs.send import send

            return send(node, paths, local=local, progress=lambda done, total: task.report((done, total)),
                        cancel=task.cancel_event)

        task = self._task(work, "send")
        task.node = node
        self.send_task = task
        task.progress.connect(lambda p: self._show_status(f"Sending to {node.name}", *p))
        task.done.connect(self._on_sent)
        task.failed.connect(self._on_send_failed)
        self._show_status(f"Sending to {node.name}", 0, 0)
        return task.start()

    def _on_sent(self, report) -> None:
        node = self.send_task.node
        self.send_task = None
        self._hide_status()
        text = f"Sent {len(report.sent)} of {report.total} objects to PACS '{node.name}'."
        self.note(text)
        self.send_ended.emit(text)

    def _on_send_failed(self, text: str) -> None:
        self.send_task = None
        self._hide_status()
        self.error(text)
        self.send_ended.emit(text)
