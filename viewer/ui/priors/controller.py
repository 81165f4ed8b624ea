"""Priors and hanging protocols of a main window, no widgets.

When a study opens (a series opened into every view, not an AI result or a series dropped on one
view) the controller hangs it by the best hanging protocol (``viewer.core.hanging``) and lists the
same patient's other studies from the local index (``viewer.core.priors``, on a worker thread).
*Compare with prior* opens the prior's matching series beside the current one
(``ViewerModel.compare``) and hangs the pair by the protocol for a study with a prior.  *Query PACS*
asks every configured node for the patient's studies (C-FIND / QIDO-RS, on a worker thread).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from viewer.core import hanging
from viewer.core.priors import PatientStudies, PriorStudy, best_series, patient_studies
from viewer.logs import log
from viewer.ui.pacs.workers import Task


class PriorsController(QObject):
    priors_changed = Signal()  # the local list (self.studies) was read again
    pacs_changed = Signal()  # self.remote: what the PACS answered
    pacs_failed = Signal(str)
    hung = Signal(str)  # the name of the hanging protocol just applied
    compared = Signal(str, str)  # current key, prior key: shown side by side

    def __init__(self, window):
        super().__init__(window)
        self.window, self.model, self.session = window, window.model, window.session
        self.current_key: str | None = None
        self.studies: PatientStudies | None = None
        self.remote: list[PriorStudy] = []
        self.prior_keys: dict[str, str] = {}  # prior study uid -> its series key shown
        self.applied: hanging.Protocol | None = None
        self._pending_prior: str | None = None  # series uid of a prior being opened
        self._pending_roles: dict[str, str] = {}  # series uid -> "current:flair" (series a protocol opens)
        self._pending_rule: hanging.Protocol | None = None
        self._tasks: set[Task] = set()
        self._closed = False
        self.errors: list[str] = []
        self.protocols = self.reload_protocols()
        self.session.series_opened.connect(self._on_series_opened)
        self.model.series_removed.connect(self._on_series_removed)

    # protocols
    def reload_protocols(self) -> list[hanging.Protocol]:
        errors: list[str] = []
        self.protocols = hanging.load_protocols(errors)
        for text in errors:
            self.window.show_error(text)
        return self.protocols

    def context(self, priors: int | None = None) -> hanging.StudyContext | None:
        state = self.model.series.get(self.current_key or "")
        if state is None:
            return None
        st = self.studies.current if self.studies is not None else None
        shown = sum(1 for k in self.prior_keys.values() if k in self.model.series)
        return hanging.context_of(state.volume, shown if priors is None else priors,
                                  st.body_part if st else "",
                                  tuple(s.description for s in st.series) if st else ())

    def keys(self) -> dict[str, str]:
        """Role -> series key of what is open: current, prior (the newest shown), current:<word>."""
        out = {}
        if self.current_key in self.model.series:
            out["current"] = self.current_key
        out.update(self._role_keys())
        shown = [k for k in self.prior_keys.values() if k in self.model.series]
        if shown:
            out["prior"] = shown[-1]
        return out

    def _role_keys(self) -> dict[str, str]:
        """``current:<word>`` for each open series of the current study, by the words of the rules."""
        cur = self.model.series.get(self.current_key or "")
        if cur is None:
            return {}
        study = cur.volume.source.study_instance_uid
        words = {s.description.lower() for p in self.protocols for s in p.slots if s.description}
        out = {}
        for key, state in self.model.series.items():
            src = state.volume.source
            if src.study_instance_uid != study:
                continue
            for w in words:
                if hanging._has_word(src.series_description, w) and f"current:{w}" not in out:
                    out[f"current:{w}"] = key
        if self.current_key is not None:  # the opened series itself takes its own role first
            for w in words:
                if hanging._has_word(cur.volume.source.series_description, w):
                    out[f"current:{w}"] = self.current_key
        return out

    def hang(self, priors: int | None = None) -> hanging.Protocol | None:
        """Apply the best protocol for what is shown; series it names that are not open (a FLAIR of the
        current study) are opened first, and the protocol is applied again once they are."""
        ctx = self.context(priors)
        if ctx is None:
            return None
        rule = hanging.best_match(self.protocols, ctx)
        if rule is None:
            return None
        self._open_missing(rule)
        hanging.apply(self.model, rule, self.keys())
        if rule != self.applied:
            log.info("hanging protocol applied: %s", rule.name)
        self.applied = rule
        self.hung.emit(rule.name)
        return rule

    def _open_missing(self, rule: hanging.Protocol) -> None:
        keys = self.keys()
        st = self.studies.current if self.studies is not None else None
        if st is None:
            return
        for n, slot in enumerate(rule.slots):
            if slot.series != "current" or not slot.description or slot.role in keys:
                continue
            match = next((s for s in st.series if hanging._has_word(s.description, slot.description)), None)
            if match is None or match.uid in self._pending_roles or self.session.key_of_series(match.uid):
                continue
            self._pending_roles[match.uid] = slot.role
            self._pending_rule = rule
            self.session.open_path(st.root, match.uid, [n])

    # the session
    def _on_series_opened(self, key: str) -> None:
        entry = self.session.images.get(key)
        state = self.model.series.get(key)
        if entry is None or state is None:
            return
        uid = state.volume.source.series_instance_uid
        if self._pending_prior is not None and uid == self._pending_prior:
            self._pending_prior = None
            self.prior_keys[state.volume.source.study_instance_uid] = key
            self.show_with_prior(key)
            return
        if uid in self._pending_roles:
            self._pending_roles.pop(uid)
            if self._pending_rule is not None and self.current_key in self.model.series:
                hanging.apply(self.model, self._pending_rule, self.keys())
            return
        if entry.slots is not None or state.open_series.derived_from is not None:
            return  # a series dropped on one view, or an AI result: not a study opening
        self.current_key = key
        self.prior_keys = {}
        self.remote = []
        self._pending_prior, self._pending_rule = None, None
        self._pending_roles.clear()
        self.studies = None
        self.hang(priors=0)  # what is known now (modality, descriptions); again once the index is read
        self.priors_changed.emit()
        self.refresh()

    def _on_series_removed(self, key: str) -> None:
        if key == self.current_key:
            self.current_key = None
        self.prior_keys = {u: k for u, k in self.prior_keys.items() if k != key}

    # the local index
    def refresh(self) -> Task | None:
        """Read the current study's priors from the local index (worker thread)."""
        state = self.model.series.get(self.current_key or "")
        if state is None:
            return None
        source, key = state.volume.source, self.current_key
        task = self._task(lambda _t: patient_studies(source), "listing of the priors")
        task.done.connect(lambda found, k=key: self._on_listed(k, found))
        task.failed.connect(self.window.show_error)
        return task.start()

    def _on_listed(self, key: str, found: PatientStudies) -> None:
        if self._closed or key != self.current_key:
            return
        self.studies = found
        before = self.applied
        ctx = self.context()
        rule = hanging.best_match(self.protocols, ctx) if ctx is not None else None
        if rule is not None and rule != before:  # the body part or the study's series decide otherwise
            self.hang()
        self.priors_changed.emit()

    @property
    def priors(self) -> list[PriorStudy]:
        return self.studies.priors if self.studies is not None else []

    # comparing
    def compare(self, study: PriorStudy | None = None) -> bool:
        """Open ``study`` (default: the newest prior) beside the current series.  False (and a sentence
        shown) when there is nothing to compare with."""
        state = self.model.series.get(self.current_key or "")
        if state is None:
            self.window.show_error("No study is open; open a study before comparing it with a prior.")
            return False
        study = study or (self.priors[0] if self.priors else None)
        if study is None:
            self.window.show_error("This patient has no other study in the local index; query the PACS for priors.")
            return False
        if not study.local:
            self.window.show_error("That prior is on the PACS only; retrieve it first (double-click it).")
            return False
        series = best_series(study, state.volume.source, state.volume.modality)
        if series is None:
            self.window.show_error("That prior has no image series to compare with; choose another study.")
            return False
        key = self.session.key_of_series(series.uid)
        if key is not None:
            self.prior_keys[study.study_uid] = key
            self.show_with_prior(key)
            return True
        self._pending_prior = series.uid
        self.session.open_path(study.root, series.uid, [1])
        return True

    def show_with_prior(self, prior_key: str) -> None:
        """Current and prior side by side in the same plane, then the protocol for a study with a prior."""
        if self.current_key not in self.model.series or prior_key not in self.model.series:
            return
        plane = self.model.viewports[0].plane if self.model.viewports[0].plane != "3d" else "axial"
        self.model.compare(self.current_key, prior_key, plane)
        self.hang(priors=1)
        self.compared.emit(self.current_key, prior_key)

    # the PACS
    def query_pacs(self) -> Task | None:
        state = self.model.series.get(self.current_key or "")
        if state is None:
            self.window.show_error("No study is open; open a study before asking the PACS for its priors.")
            return None
        source = state.volume.source
        if not source.patient_id:
            self.window.show_error("This study has no patient ID, so its priors cannot be found; open them by hand.")
            return None
        pacs = self.window.features.pacs.controller
        settings = pacs.settings or pacs.load_settings()
        nodes = list(settings.nodes)
        if not nodes:
            self.window.show_error("No PACS node is configured; add one with PACS > Nodes first.")
            return None
        local = settings.local

        def work(_task):
            from viewer import pacs
            from viewer.core.priors import newest_first, pacs_priors

            found: dict[str, PriorStudy] = {}  # a study on several nodes is listed once, with the first
            for node in nodes:  # C-FIND (or QIDO-RS) at study level by PatientID
                answers = pacs.query(node, pacs.Query(level="STUDY", patient_id=source.patient_id), local)
                for st in pacs_priors(answers, source, node.name):
                    found.setdefault(st.study_uid, st)
            return newest_first(list(found.values()))

        task = self._task(work, "query of the PACS for priors")
        task.done.connect(self._on_pacs)
        task.failed.connect(self._on_pacs_failed)
        return task.start()

    def _on_pacs(self, found: list[PriorStudy]) -> None:
        if self._closed:
            return
        here = {s.study_uid for s in self.priors}
        self.remote = [s for s in found if s.study_uid not in here]
        self.pacs_changed.emit()

    def _on_pacs_failed(self, text: str) -> None:
        if not self._closed:
            self.window.show_error(text)
            self.pacs_failed.emit(text)

    def retrieve(self, study: PriorStudy):
        """Retrieve a prior found on the PACS; the list is read again when it has arrived."""
        pacs = self.window.features.pacs.controller
        settings = pacs.settings or pacs.load_settings()
        node = next((n for n in settings.nodes if n.name == study.node), None)
        if node is None:
            self.window.show_error(f"The PACS node '{study.node}' is no longer configured; query again.")
            return None
        task = pacs.retrieve(node, study.study_uid, open_first=False)
        if task is not None:
            task.ended.connect(self.refresh)
        return task

    # saving the layout
    def save_protocol(self, name: str):
        """Save what the views show now as the reader's own hanging protocol (it wins over the
        defaults from the next opening on).  Returns the file written, or None (sentence shown)."""
        from viewer.core.errors import HounsfieldError

        state = self.model.series.get(self.current_key or "")
        if state is None:
            self.window.show_error("No study is open; open one and lay it out before saving a hanging protocol.")
            return None
        st = self.studies.current if self.studies is not None else None
        rule = hanging.rule_from_model(self.model, name.strip() or "My layout", self.keys(), state.volume.modality,
                                       st.body_part if st else "")
        try:
            path = hanging.save_user_rule(rule)
        except HounsfieldError as exc:
            self.window.show_error(str(exc))
            return None
        self.reload_protocols()
        self.applied = next((p for p in self.protocols if p.path == str(path)), rule)
        return path

    # plumbing
    def _task(self, fn, what: str) -> Task:
        task = Task(fn, what, self)
        self._tasks.add(task)
        task.ended.connect(lambda t=task: self._tasks.discard(t))
        return task

    def shutdown(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
            task.wait(2.0)
