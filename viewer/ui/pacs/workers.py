"""Blocking PACS calls off the UI thread: a ``Task`` runs one function in a Python thread and
reports through Qt signals, which reach the UI thread queued.

Threads are plain ``threading.Thread``s started when the task starts (not a pool made earlier),
so a task runs with the network context of the moment it was started.  A failure becomes one
sentence (``failed``); the traceback goes to the log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from viewer.logs import log


def sentence(exc: BaseException, what: str) -> str:
    """The one sentence a person sees for ``exc``; anything unexpected is logged with its traceback."""
    from viewer.core.errors import HounsfieldError

    if isinstance(exc, HounsfieldError):
        log.warning("%s failed: %s", what, exc, exc_info=exc)
        text = str(exc).strip().replace("\n", " ")
        return text if text.endswith((".", "?", "!")) else text + "."
    log.error("%s failed unexpectedly", what, exc_info=exc)
    return f"The {what} failed unexpectedly ({type(exc).__name__}); the log file has the details."


class Task(QObject):
    """``Task(fn, what).start()``: ``fn(task)`` runs in a thread; ``task.report(x)`` emits ``progress``.

    Exactly one of ``done(result)`` / ``failed(sentence)`` is emitted, then ``ended``.  ``cancel()``
    sets ``cancel_event`` and calls ``on_cancel`` (e.g. a retrieve job's own cancel).
    """

    progress = Signal(object)
    item = Signal(object)
    done = Signal(object)
    failed = Signal(str)
    ended = Signal()

    def __init__(self, fn: Callable[[Task], object], what: str, parent: QObject | None = None):
        super().__init__(parent)
        self.fn, self.what = fn, what
        self.cancel_event = threading.Event()
        self.on_cancel: Callable[[], None] | None = None
        self.thread: threading.Thread | None = None
        self.error = ""

    def start(self) -> Task:
        self.thread = threading.Thread(target=self._run, name=f"hounsfield-pacs-{self.what}", daemon=True)
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def cancel(self) -> None:
        self.cancel_event.set()
        if self.on_cancel is not None:
            self.on_cancel()

    def report(self, value) -> None:
        self._emit(self.progress, value)

    def emit_item(self, value) -> None:
        self._emit(self.item, value)

    def wait(self, seconds: float) -> bool:
        if self.thread is not None:
            self.thread.join(seconds)
        return not self.running

    def _run(self) -> None:
        try:
            result = self.fn(self)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes one sentence
            self.error = sentence(exc, self.what)
            self._emit(self.failed, self.error)
        else:
            self._emit(self.done, result)
        self._emit(self.ended)

    @staticmethod
    def _emit(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the receiver (a closed window or dialog) is gone
            pass
