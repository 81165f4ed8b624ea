"""Lesion change over time in the main window: the *Lesion change* dock (``ChangesPanel``) compares the
prior and the current series of a patient (``viewer.core.longitudinal.Comparison``): *Carry segments
from prior* carries the prior's segments and calipers through the workspace's registration between the
two (registering them first, rigid or deformable as chosen in the panel, on a worker thread with progress
and Cancel, when there is none),
*Fit to current image* fits each carried segment to the current image (one undoable edit each), the
table gives per lesion the diameters, volume, change and volume doubling time, and below it the
RECIST 1.1 target sum with the suggested response and its rule; *Export SR + CSV* writes the TID 1500
SRs of both time points (shared tracking UIDs), their SEGs and a CSV (``viewer.core.io.changes``).
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFileDialog

from viewer.core.errors import HounsfieldError
from viewer.core.longitudinal import Comparison, oriented, study_date
from viewer.logs import log
from viewer.ui.actions import Command
from viewer.ui.changes.panel import ChangesPanel
from viewer.ui.compare.controller import RegistrationThread
from viewer.ui.feature import Feature


class ChangesFeature(Feature):
    name = "changes"

    def __init__(self, window, workspace):
        super().__init__(window, workspace)
        self.comparisons: dict[tuple[str, str], Comparison] = {}
        self._thread: RegistrationThread | None = None  # the same registration thread as Compare's
        self.busy = False
        self.panel = ChangesPanel(self)
        dock = self.dock = self.add_dock("Lesion change", "lesion_change", self.panel)
        dock.visibilityChanged.connect(self._visible)
        self._placed = False
        table = self.commands
        menu = self.menu = self.add_menu("&Lesion change")
        self.actions = {
            "dock": table.add(Command("changes_dock", "Lesion change panel", "Lesion change"),
                              action=dock.toggleViewAction()),
            "carry": table.add(Command("changes_carry", "Carry segments from prior", "Lesion change"), self.carry),
            "export": table.add(Command("changes_export", "Export lesion change (SR, CSV)...", "Lesion change"),
                                self.export),
        }
        for act in self.actions.values():
            menu.addAction(act)
        self._timer = QTimer(window)
        self._timer.setSingleShot(True)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self.refresh)
        self._watched: list = []
        workspace.series_added.connect(lambda *_a: self._series_changed())
        workspace.series_removed.connect(lambda *_a: self._series_changed())
        workspace.overlay_added.connect(lambda *_a: self._rewatch())
        workspace.overlay_removed.connect(lambda *_a: self._rewatch())

    # ------------------------------------------------------------------ series
    def candidates(self) -> list:
        """The opened series one could compare (not derived images), oldest study first."""
        out = [s for s in self.workspace if s.derived_from is None]
        return sorted(out, key=lambda s: (study_date(s.volume) is None, study_date(s.volume) or 0, s.key))

    def pair(self):
        """(prior, current) OpenSeries chosen in the panel, or (None, None)."""
        p, c = self.panel.chosen()
        ws = self.workspace.series
        return ws.get(p), ws.get(c)

    def _series_changed(self) -> None:
        self.panel.set_series(self.candidates())
        self._watch()
        self._later()

    def _watch(self) -> None:
        for sig, fn in self._watched:
            sig.disconnect(fn)
        self._watched = []
        for s in self.workspace:
            for sig in (s.changed,):
                sig.connect(self._later)
                self._watched.append((sig, self._later))
            for ed in s.segmentations:
                ed.segmentation.changed.connect(self._later)
                self._watched.append((ed.segmentation.changed, self._later))

    def _rewatch(self) -> None:
        self._watch()
        self._later()

    def _later(self, *_a) -> None:
        self._timer.start()

    def registration(self, prior, current):
        """The workspace's registration between the two (current -> prior), or None."""
        find = getattr(self.workspace, "registration", None)
        if find is None:
            return None
        try:
            reg = find(current, prior)
        except (KeyError, ValueError, HounsfieldError):
            return None
        if reg is None:
            return None
        try:
            return oriented(reg, current.volume, prior.volume)
        except HounsfieldError:
            return None

    def comparison(self, create: bool = True) -> Comparison | None:
        prior, current = self.pair()
        if prior is None or current is None or prior is current:
            return None
        key = (prior.key, current.key)
        cmp = self.comparisons.get(key)
        if cmp is None and create:
            cmp = self.comparisons[key] = Comparison(prior, current, self.registration(prior, current))
        if cmp is not None:  # the workspace's newest registration of the pair (a later deformable one, say)
            cmp.reg = self.registration(prior, current) or cmp.reg
        return cmp

    def refresh(self) -> None:
        if not self.dock.isVisible() and not self.panel.force_refresh:
            return
        cmp = self.comparison()
        if cmp is None:
            self.panel.show_comparison(None, None)
            return
        try:
            cmp.update()
            response = cmp.response()
        except HounsfieldError as exc:
            self.window.show_error(str(exc))
            return
        except Exception:  # noqa: BLE001 (one table must not take the window down)
            log.exception("lesion change table")
            self.window.show_error("The lesion table could not be made; the log has the details.")
            return
        self.panel.show_comparison(cmp, response)

    def _visible(self, on: bool) -> None:
        if not on:
            return
        if not self._placed:  # the first time: a tab over the measurements (room for the table), on top
            self._placed = True
            measure = getattr(self.window.features, "measure", None)
            if measure is not None and measure.dock.isVisible() and not measure.dock.isFloating():
                self.window.tabifyDockWidget(measure.dock, self.dock)
                QTimer.singleShot(0, self.dock.raise_)
        self.panel.set_series(self.candidates())
        self._watch()
        self._later()

    def show_dock(self) -> None:
        self.panel.set_series(self.candidates())
        self._watch()
        self.dock.show()
        self.dock.raise_()
        self.refresh()

    # ------------------------------------------------------------------ registering
    def register(self, then=None) -> bool:
        """Register the current series to the prior (the panel's choice: rigid, the default, or deformable)
        on a worker thread; ``then`` runs after."""
        prior, current = self.pair()
        if prior is None or current is None or prior is current:
            self.window.show_error("Open a prior and a current series of the patient to compare them.")
            return False
        if self.busy:
            return False
        self.busy = True
        kind = self.panel.kind()
        self.panel.set_busy(True, f"Registering the current series to the prior ({kind})...")
        thread = self._thread = RegistrationThread(current.volume, prior.volume, kind, self.window)
        thread.progressed.connect(self._progressed)
        thread.finished_ok.connect(lambda reg: self._registered(reg, then))
        thread.failed.connect(self._failed)
        thread.cancelled.connect(lambda: self._failed("The registration was cancelled; nothing was changed."))
        thread.finished.connect(self._thread_ended)
        thread.start()
        return True

    def cancel(self) -> None:
        if self._thread is not None:
            self._thread.cancel()

    def _thread_ended(self) -> None:
        if self._thread is not None:
            self._thread.deleteLater()
            self._thread = None

    def _progressed(self, fraction: float, text: str) -> None:
        self.panel.set_progress(fraction, text)

    def _registered(self, reg, then) -> None:
        self.busy = False
        self.panel.set_busy(False, f"Registered ({reg.kind}, {reg.seconds:.1f} s).")
        add = getattr(self.workspace, "add_registration", None)
        if add is not None:
            try:
                add(reg)
            except Exception:  # noqa: BLE001 (keep it in the comparison anyway)
                log.warning("registration not kept in the workspace", exc_info=True)
        cmp = self.comparison()
        if cmp is not None:
            cmp.reg = oriented(reg, cmp.current.volume, cmp.prior.volume)
        if then is not None:
            then()
        self.refresh()

    def _failed(self, text: str) -> None:
        self.busy = False
        self.panel.set_busy(False, text)
        if "cancelled" not in text:
            self.window.show_error(text)

    # ------------------------------------------------------------------ actions
    def carry(self) -> None:
        """Carry the prior's segments and calipers onto the current series (registering first if needed)."""
        if not self.dock.isVisible():
            self.show_dock()
        cmp = self.comparison()
        if cmp is None:
            self.window.show_error("Open a prior and a current series of the patient to compare them.")
            return
        if not any(ed.segments for ed in cmp.prior.segmentations) and not cmp.prior.measurements:
            self.window.show_error("The prior has no segments or measurements to carry; segment its lesions first.")
            return
        if cmp.reg is None:
            self.register(then=self.carry)
            return
        try:
            carried = cmp.carry()
        except HounsfieldError as exc:
            self.window.show_error(str(exc))
            return
        if not carried and not any(k[0] == "measurement" for k in cmp.links):
            self.panel.set_status("The prior's segments are on the current study already; correct them there.")
            self.refresh()
            return
        self.panel.set_status(f"Carried {sum(len(e.segments) for e in carried)} segment(s) from the prior "
                              f"({cmp.reg.kind} registration); fit or correct them on the current study.")
        self.refresh()

    def fit(self) -> None:
        """Fit the carried segments to the current image."""
        cmp = self.comparison()
        if cmp is None or cmp.reg is None:
            self.window.show_error("Carry the prior's segments first.")
            return
        carried = [ed for ed in cmp.current.segmentations
                   if any(k[0] == "segment" and k[1] == ed.segmentation.uid for k in cmp.links)]
        if not carried:
            self.window.show_error("Carry the prior's segments first.")
            return
        for ed in carried:
            cmp.fit(ed)
        self.panel.set_status("Fitted the carried segments to the current image (Ctrl+Z undoes); check them.")
        self.refresh()

    def side_by_side(self) -> None:
        prior, current = self.pair()
        if prior is not None and current is not None and prior is not current:
            self.window.model.compare(current.key, prior.key)

    def set_target(self, uid: str, on: bool) -> None:
        """A person ticks or unticks a target lesion: the automatic choice becomes theirs, then changes."""
        cmp = self.comparison(create=False)
        if cmp is None:
            return
        for c in cmp.changes:
            c.track.target = c.target
        for c in cmp.changes:
            if c.track.uid == uid:
                c.track.target = on
        self.refresh()

    def export(self, folder: str | None = None):
        cmp = self.comparison()
        if cmp is None:
            self.window.show_error("Open a prior and a current series of the patient to compare them.")
            return None
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self.window, "Write the lesion change report into")
            if not folder:
                return None
        from viewer.core.io.changes import export_changes

        try:
            cmp.update()
            out = export_changes(folder, cmp)
        except HounsfieldError as exc:
            self.window.show_error(str(exc))
            return None
        except OSError as exc:
            self.window.show_error(f"The report could not be written ({exc.strerror or exc}); choose another folder.")
            return None
        n = sum(len(v) for v in out.values())
        self.window.statusBar().showMessage(f"Lesion change: {n} files written to {folder}.", 10000)
        self.panel.set_status(f"Exported {n} files (SR, SEG, CSV) to {folder}.")
        return out

    def shutdown(self) -> None:
        self._timer.stop()
        if self._thread is not None:
            self._thread.cancel()
            self._thread.wait()
