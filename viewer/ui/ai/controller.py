"""The viewer's side of AI runs: one host (created on first use, its worker started on the first
run, never at start-up), starting and cancelling a run, and its results put into the window's
``Workspace`` (``viewer.ui.ai.results``; the runs applied are ``workspace.results``).  No widgets:
the AI feature (``viewer.ui.ai.AIFeature``) shows progress and the results dock.

Callbacks from the host's supervisor thread arrive here as queued Qt signals, so the UI thread
only ever does quick work: the volume goes to the worker through shared memory and the result
comes back the same way.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from viewer.core.errors import HounsfieldError
from viewer.core.workspace import Applied
from viewer.logs import log
from viewer.ui.ai.results import apply_results, flicker, remove_entry
from viewer.ui.settings import read_bool


class AIController(QObject):
    progressed = Signal(float, str)
    finished = Signal(object)  # RunHandle
    started = Signal(str)  # the plugin's name
    ended = Signal()  # the run is over (done, failed or cancelled)
    status = Signal(str)  # "CT denoising: cancelling"
    result_added = Signal(object)  # viewer.core.workspace.Applied
    result_removed = Signal(object)  # viewer.core.workspace.Applied

    def __init__(self, window, workspace, host=None):
        super().__init__(window)
        self.window, self.workspace = window, workspace
        self._host = host
        self.handle = None
        self.source_key: str | None = None
        self.force_cpu = read_bool(window.settings, "ai/force_cpu", False)
        self.finished.connect(self._on_finished)

    @property
    def entries(self) -> list[Applied]:
        """The results shown, oldest first (the workspace's)."""
        return self.workspace.results

    # the host, made on first use
    @property
    def host(self):
        if self._host is None:
            from viewer.ai.host import AIHost

            self._host = AIHost()
        return self._host

    def plugins(self):
        return self.host.plugins()

    @property
    def running(self) -> bool:
        return self.handle is not None and not self.handle.done()

    def set_force_cpu(self, on: bool) -> None:
        self.force_cpu = bool(on)
        self.window.settings.setValue("ai/force_cpu", self.force_cpu)

    # running
    def open_dialog(self, plugin_id: str) -> None:
        from viewer.ui.ai.dialog import RunDialog

        state = self.window.model.active_state
        if state is None:
            self.window.show_error("Open a series first; AI plugins run on the series in the active view.")
            return
        info = self.host.get(plugin_id)
        label = state.volume.source.series_description or state.key
        dialog = RunDialog(info, label, "cpu" if self.force_cpu else "auto", self.window)
        if dialog.exec():
            self.start(plugin_id, dialog.values(), dialog.chosen_device())

    def start(self, plugin_id: str, params: dict | None = None, device: str | None = None, prompts=None):
        """Run a plugin on the active series (``prompts``: a ``viewer.ai.api.Prompts`` of a reader's
        clicks, for a plugin that takes them); returns the RunHandle (None when it cannot start)."""
        state = self.window.model.active_state
        if state is None:
            self.window.show_error("Open a series first; AI plugins run on the series in the active view.")
            return None
        if state.loaded is not None:
            self.window.show_error("The series is still loading; run the AI when it has loaded.")
            return None
        if self.running:
            self.window.show_error("An AI run is in progress; wait for it or cancel it first.")
            return None
        from viewer.ui.ai.modality import settle_modality

        try:
            if not settle_modality(self.window, state, self.host.get(plugin_id)):  # a NIfTI: CT or MR?
                return None
        except HounsfieldError as exc:
            self.window.show_error(str(exc))
            return None
        if self.force_cpu:
            device = "cpu"
        try:
            self.handle = self.host.run(plugin_id, state.volume, params, device=device, prompts=prompts,
                                        on_progress=lambda f, m: self.progressed.emit(f, m),
                                        on_done=lambda h: self.finished.emit(h))
        except HounsfieldError as exc:
            self.window.show_error(str(exc))
            return None
        self.source_key = state.key
        self.started.emit(self.handle.info.name)
        log.info("AI run of %s started", plugin_id)
        return self.handle

    def cancel(self) -> None:
        if self.running:
            self.handle.cancel()
            self.status.emit(f"{self.handle.info.name}: cancelling")

    def _on_finished(self, handle) -> None:
        self.ended.emit()
        if handle.state == "cancelled":
            self.window.statusBar().showMessage(f"The run of {handle.info.name} was cancelled.", 8000)
            return
        if handle.state != "done":
            self.window.show_error(handle.error or f"{handle.info.name} failed; details are in the log file.")
            return
        try:
            entry = apply_results(self.window, self.source_key, handle.results)
        except HounsfieldError as exc:
            self.window.show_error(str(exc))
            return
        except Exception:
            log.exception("showing AI results failed")
            self.window.show_error(f"The results of {handle.info.name} could not be shown; details are in the log.")
            return
        self.result_added.emit(entry)
        for note in handle.notes[:1]:
            self.window.statusBar().showMessage(note, 10000)

    # results
    def compare(self, entry: Applied) -> None:
        if entry.derived_keys and all(k in self.window.model.series for k in (entry.source_key,
                                                                              entry.derived_keys[0])):
            self.window.model.compare(entry.source_key, entry.derived_keys[0])

    def flicker(self) -> None:
        """Swap the newest result with its original in the active view (key T)."""
        for entry in reversed(self.entries):
            if entry.derived_keys and entry.derived_keys[0] in self.window.model.series:
                flicker(self.window.model, entry)
                return
        self.window.statusBar().showMessage("No AI result image to flicker with.", 5000)

    def flicker_entry(self, entry: Applied) -> None:
        flicker(self.window.model, entry)

    def jump(self, entry: Applied, lps) -> None:
        """Move the crosshair (and linked views) to a detection."""
        if entry.source_key in self.window.model.series:
            self.window.model.set_point(entry.source_key, lps)

    def remove(self, entry: Applied) -> None:
        remove_entry(self.window, entry)
        self.result_removed.emit(entry)

    def shutdown(self) -> None:
        if self._host is not None:
            self._host.shutdown()
