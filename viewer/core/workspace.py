"""The open study without a window: a ``Workspace`` owns the opened series, each series' overlays
(segmentations with their undo history and crash journal, measurements, heatmaps, detection sets),
the tool settings and the one tool registry.  No Qt, no VTK, no torch: a script reads a study with
it exactly as the viewer does.

    import viewer
    ws = viewer.Workspace()
    s = ws.open("/data/study")                    # viewer.load underneath (the study index)
    seg = s.segmentation()                        # the editable segmentation, journaled from the start
    tumour = seg.add_segment("Tumour")
    seg.brush(centre_lps, 5.0, segment=tumour.number); seg.undo(); seg.redo()
    m = s.measure("length", p1_lps, p2_lps)       # values computed, saved for the next session
    ws.apply(results, series=s)                   # a plugin's Results -> overlays, one undoable step
    ws.export("out/", series=s)                   # DICOM SEG + SR + CSV/JSON (core/io/report.py)
    ws.close()

Where state lives: ``OpenSeries.overlays`` is the one ordered list of a series' overlays
(``EditableSegmentation``, ``Measurement``, ``HeatmapLayer``, ``MarkerSet``); ``OpenSeries.derived_from``
links a derived series (an AI's denoised image) to its source.  Saved measurements are loaded from
``viewer.core.measurement_store`` when the series is opened, before anything can add to or read the
list (a list made empty first hid the saved ones, and the next save wrote the empty list over them);
every change saves the list again.  Unsaved segmentations are offered by ``OpenSeries.recoverable``
from their journals and brought back by ``OpenSeries.restore``.

``Workspace.tools`` is the one tool registry (``viewer.core.tools.REGISTRY`` unless another is given);
the viewer's model checks its tool against the same registry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from viewer.core import journal
from viewer.core.edits import Editor
from viewer.core.errors import HounsfieldError
from viewer.core.layers import HeatmapLayer, MarkerSet
from viewer.core.measurement_store import load_measurements, save_measurements
from viewer.core.measurements import KINDS, Measurement, compute
from viewer.core.segmentation import Segment, Segmentation, read_segmentation_file
from viewer.core.signals import Signal
from viewer.core.tools import REGISTRY, ToolRegistry
from viewer.core.volume import Volume
from viewer.logs import log

# ---------------------------------------------------------------------------------------------
# tool settings


@dataclass
class ToolSettings:
    """The editing tools' settings, shared by every series."""

    brush_mm: float = 5.0  # brush radius
    sphere: bool = False  # 3D brush (in a view; a headless brush without a plane is a sphere anyway)
    hu_range: tuple[float, float] = (-100.0, 300.0)  # threshold brush and fill range
    tolerance: float = 100.0  # flood fill: seed value +- this when no range is used
    fill_uses_range: bool = False
    fill_3d: bool = False
    overwrite: str = "all"  # "all" or "empty": what painting may take from other segments


# ---------------------------------------------------------------------------------------------
# overlays


class EditableSegmentation:
    """A segmentation of a series with its editor (undo/redo) and its crash journal.

    ``original``: the model's label map when the segmentation came from an AI plugin (kept as it was,
    whatever a person edits afterwards), with the run's ``provenance``; kept beside the journal, and
    on export as DICOM SEG where reopening that SEG finds it again (``viewer.core.review``: ``kept``)."""

    def __init__(self, series: OpenSeries, seg: Segmentation, *, journal_path: str | None = None,
                 exported: bool = True, original: np.ndarray | None = None, provenance: dict | None = None):
        self.kept = None
        if original is None and journal_path is None and getattr(seg, "dicom_uids", None):
            from viewer.core.review import find_kept  # a SEG exported with its AI original kept

            self.kept = find_kept(seg)
            if self.kept is not None:
                original, provenance = self.kept.original, self.kept.provenance
                for s in seg.segments:  # who changed what, as at the export (before the journal starts)
                    s.edited = self.kept.edited.get(s.number, s.edited)
        self.series, self.segmentation, self.original = series, seg, original
        self.provenance = dict(provenance or {})
        self.editor = Editor(seg, series.volume)
        self.editor.overwrite = series.workspace.settings.overwrite
        self.journal: journal.Journal | None = None
        self.unexported = not exported
        self.journal_error = ""
        try:  # one journal record per edit; a restored journal starts afresh, unsaved
            self.journal = journal.Journal(seg, journal.series_id(series.volume), path=journal_path,
                                           editor=self.editor, unsaved=True if journal_path else None)
        except OSError as exc:
            log.warning("segmentation journal not writable", exc_info=True)
            self.journal_error = f"Edits cannot be saved for recovery ({exc.strerror or exc}); export when done."
        if self.journal is not None:  # the model's original survives beside the journal (viewer.core.review)
            from viewer.core.review import load_original, save_original

            if original is not None:
                save_original(self.journal.path, original, self.provenance)
            elif journal_path:
                from viewer.core.review import load_provenance

                self.original = load_original(journal_path)
                self.provenance = self.provenance or load_provenance(journal_path)
        seg.changed.connect(self._touched)
        seg.segments_changed.connect(self._touched)

    def _touched(self, *_a) -> None:
        self.unexported = True

    # what it is
    @property
    def name(self) -> str:
        return self.segmentation.name

    @property
    def uid(self) -> str:
        return self.segmentation.uid

    @property
    def segments(self) -> list[Segment]:
        return self.segmentation.segments

    def segment(self, which: int | str | Segment | None = None) -> Segment:
        """A segment by number or name; the active one when ``which`` is None."""
        seg = self.segmentation
        if isinstance(which, Segment):
            return which
        found = (seg.active_segment if which is None else seg.by_name(which) if isinstance(which, str)
                 else next((s for s in seg.segments if s.number == int(which)), None))
        if found is None:
            raise HounsfieldError(f"The segmentation has no segment {which!r}; add it first."
                                  if which is not None else "The segmentation has no segment; add one first.")
        return found

    def label_map(self) -> np.ndarray:
        return self.segmentation.label_map()

    def mask(self, which=None) -> np.ndarray:
        return self.segmentation.mask(self.segment(which))

    # editing: every call is one undoable step
    def add_segment(self, name: str | None = None, color=None, **kw) -> Segment:
        return self.editor.add_segment(name, color, **kw)

    def remove_segment(self, which) -> None:
        self.editor.remove_segment(self.segment(which))

    def brush(self, center_lps, radius_mm: float | None = None, segment=None, *, to_lps=None, normal=None,
              erase: bool = False, threshold: bool = False) -> bool:
        """Paint (or ``erase``) a round brush at ``center_lps`` (to ``to_lps``: a stroke): a disc in the
        plane of ``normal``, a sphere without one; ``threshold`` keeps to the settings' HU range."""
        settings = self.series.workspace.settings
        r = settings.brush_mm if radius_mm is None else radius_mm
        return self.editor.brush(self.segment(segment), center_lps, to_lps, r, normal=normal, erase=erase,
                                 hu_range=settings.hu_range if threshold else None)

    def fill(self, seed_lps, segment=None, *, normal=None, erase: bool = False) -> bool:
        """Flood fill from ``seed_lps`` (in the plane of ``normal``, or in 3D without one) with the
        settings' tolerance or HU range."""
        st = self.series.workspace.settings
        return self.editor.flood_fill(self.segment(segment), seed_lps, tolerance=st.tolerance,
                                      hu_range=st.hu_range if st.fill_uses_range else None,
                                      normal=normal, erase=erase)

    def polygon(self, points_lps, normal, segment=None, *, erase: bool = False) -> bool:
        return self.editor.polygon(self.segment(segment), points_lps, normal, erase=erase)

    def undo(self) -> bool:
        return self.editor.undo()

    def redo(self) -> bool:
        return self.editor.redo()

    @property
    def can_undo(self) -> bool:
        return self.editor.history.can_undo()

    @property
    def can_redo(self) -> bool:
        return self.editor.history.can_redo()

    # saving
    def mark_exported(self, path: str = "") -> None:
        """The segmentation was written to ``path``: its journal records that (nothing to recover)."""
        self.unexported = False
        if self.journal is not None:
            self.journal.mark_saved(path)
        if self.original is not None and str(path).lower().endswith(".dcm"):
            from viewer.core.review import keep_exported  # so that reopening the SEG finds the original

            keep_exported(self, path)

    def close(self, discard: bool = False) -> None:
        if self.journal is not None:
            if not discard and self.original is not None:
                from viewer.core.review import save_detections  # the run's decisions come back with it

                save_detections(self)
            self.journal.close(discard=discard)
            if discard:
                from viewer.core.review import discard_original

                discard_original(self.journal.path)


class _Overlays:
    """The kinds of overlay in an ``overlays`` list, in its order (a series' and an AI run's alike)."""

    overlays: list

    def _of(self, kind) -> list:
        return [o for o in self.overlays if isinstance(o, kind)]

    @property
    def segmentations(self) -> list[EditableSegmentation]:
        return self._of(EditableSegmentation)

    @property
    def heatmaps(self) -> list[HeatmapLayer]:
        return self._of(HeatmapLayer)

    @property
    def marker_sets(self) -> list[MarkerSet]:
        return self._of(MarkerSet)


@dataclass(eq=False)
class Applied(_Overlays):
    """One AI run's results on a series, as ``Workspace.apply`` put them there (the viewer's AI results
    panel lists these): removed and put back together by undo and redo."""

    series: OpenSeries
    converted: object  # viewer.core.ai_results.Converted, the model's originals included
    overlays: list = field(default_factory=list)
    derived: list = field(default_factory=list)  # OpenSeries of the derived images
    applied: bool = True
    results: object = None  # the plugin's viewer.ai.api.Results


    @property
    def label_maps(self) -> list:
        """The plugin's label maps as it gave them (viewer.ai.api.LabelMap)."""
        return list(getattr(self.results, "label_maps", ()))

    @property
    def title(self) -> str:
        return self.converted.title

    @property
    def provenance(self) -> dict:
        return self.converted.provenance

    @property
    def notes(self) -> list[str]:
        return self.converted.notes

    @property
    def source_key(self) -> str:
        return self.series.key

    @property
    def derived_keys(self) -> list[str]:
        return [d.key for d in self.derived]

    def summary(self) -> str:
        """The run's parameters (the values used, where the plugin said them), device and time in one line."""
        p = self.provenance
        used = {**p.get("parameters", {}), **p.get("effective_parameters", {})}
        params = ", ".join(f"{k} {_shown(v)}" for k, v in used.items())
        device = p.get("device", "")
        secs = p.get("wall_seconds")
        timing = f", {secs:.1f} s" if isinstance(secs, (int, float)) else ""
        return f"{params} · {device}{timing}" if params else f"{device}{timing}"


# ---------------------------------------------------------------------------------------------
# series


def _shown(value) -> str:
    """A parameter's value as the run line says it: 0.25, on/off, text as it is."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


SAVE_FAILED = "The measurements could not be saved"  # how Workspace.save_failed's sentence begins


class OpenSeries(_Overlays):
    """One opened volume and its overlays, in one ordered list."""

    def __init__(self, workspace: Workspace, key: str, volume: Volume, *, derived_from: OpenSeries | None = None,
                 complete: bool = True):
        self.workspace, self.key, self.volume, self.derived_from = workspace, key, volume, derived_from
        self.overlays: list = []
        self.overlays_changed = Signal()  # a segmentation, heatmap or detection set was added or removed
        self.measurements_changed = Signal()  # a measurement was added, removed, moved or relabelled
        self.changed = Signal()  # either of the two
        # the saved measurements come first: nothing can see or add to the list before them
        self.overlays.extend(load_measurements(self.uid) if self.uid else [])
        # every measurement this series has had (saved ones, drawn ones, deleted ones): a save leaves the
        # others on disk, another window's, alone (viewer.core.measurement_store)
        self._known_uids = {m.uid for m in self.measurements}
        self._save_failing = False
        if complete:
            self.recompute()

    @property
    def uid(self) -> str:
        return self.volume.source.series_instance_uid

    def __repr__(self) -> str:
        return f"<OpenSeries {self.key} {self.volume.modality} {self.volume.shape} {len(self.overlays)} overlays>"

    @property
    def measurements(self) -> list[Measurement]:
        return self._of(Measurement)

    def add_overlay(self, overlay, *, save: bool = True) -> None:
        """Put ``overlay`` on the series (last in the list); a measurement list is saved unless ``save``
        is False (a measurement still being drawn)."""
        self.overlays.append(overlay)
        self._announce(overlay, added=True, save=save)

    def remove_overlay(self, overlay, *, discard: bool = False, save: bool = True) -> None:
        """Take ``overlay`` off the series; a segmentation's journal is closed (deleted with ``discard``)."""
        if overlay not in self.overlays:
            return
        self.overlays.remove(overlay)
        if isinstance(overlay, EditableSegmentation):
            overlay.close(discard=discard)
        self._announce(overlay, added=False, save=save)

    def _announce(self, overlay, added: bool, save: bool) -> None:
        if isinstance(overlay, Measurement):
            if save:
                self.save_measurements()
            self.measurements_changed.emit()
        else:
            self.overlays_changed.emit()
        (self.workspace.overlay_added if added else self.workspace.overlay_removed).emit(self, overlay)
        self.changed.emit()

    # measurements
    def recompute(self) -> None:
        """Compute every measurement's values (once all the series' slices are in)."""
        for m in self.measurements:
            compute(m, self.volume)

    def measure(self, kind: str, *points, label: str = "", normal=(0.0, 0.0, 1.0), u=(1.0, 0.0, 0.0)) -> Measurement:
        """A measurement of ``kind`` (length, angle, ellipse, polygon, point, bidirectional) through the
        LPS ``points``, drawn in the plane of ``normal`` (axial by default); computed and saved."""
        if kind not in KINDS:
            raise HounsfieldError(f"There is no measurement kind {kind!r}; use one of {', '.join(KINDS)}.")
        src = self.volume.source
        try:
            m = Measurement(kind, np.asarray(points, np.float64).reshape(-1, 3), np.asarray(normal, np.float64),
                            np.asarray(u, np.float64), label=label, series_uid=src.series_instance_uid,
                            frame_of_reference_uid=src.frame_of_reference_uid)
        except ValueError as exc:
            raise HounsfieldError(f"The measurement could not be made: {exc}.") from None
        compute(m, self.volume)
        self.add_overlay(m)
        return m

    def measurement_changed(self, m: Measurement) -> None:
        """``m`` was moved or relabelled: recompute and save."""
        compute(m, self.volume)
        self.save_measurements()
        self.measurements_changed.emit()
        self.changed.emit()

    def save_measurements(self) -> None:
        """Save the series' measurements; a failure (a full disk) is said once on the workspace's
        ``save_failed`` until a save works again, and the measurements stay in the list."""
        current = self.measurements
        self._known_uids |= {m.uid for m in current}
        try:
            save_measurements(self.uid, current, known=self._known_uids)
        except OSError as exc:
            log.warning("measurements not saved", exc_info=True)
            if not self._save_failing:
                self._save_failing = True
                reason = exc.strerror or str(exc)
                self.workspace.save_failed.emit(
                    f"{SAVE_FAILED} ({reason}); they stay open in this window, so free "
                    "some disk space or export them before closing it.")
        else:
            if self._save_failing:
                self._save_failing = False
                self.workspace.save_failed.emit("")

    # segmentations
    def segmentation(self, create: bool = True, name: str = "Segmentation") -> EditableSegmentation | None:
        """The segmentation being edited (the last one); a new, journaled one when there is none."""
        segs = self.segmentations
        if segs:
            return segs[-1]
        if not create:
            return None
        return self.add_segmentation(Segmentation.for_volume(self.volume, name))

    def add_segmentation(self, seg: Segmentation, *, journal_path: str | None = None, exported: bool = True,
                         original: np.ndarray | None = None, provenance: dict | None = None) -> EditableSegmentation:
        """Edit ``seg`` (on this series' grid) with undo and a journal (``exported``: it is in a file
        already, as an imported one is).  One that brings its AI original back (a journal, a SEG whose
        original was kept) is a result of the AI review again (``Workspace.reopened``)."""
        if not seg.matches(self.volume):
            raise HounsfieldError("The segmentation is not on this series' grid; open the series it was drawn on.")
        ed = EditableSegmentation(self, seg, journal_path=journal_path, exported=exported, original=original,
                                  provenance=provenance)
        self.add_overlay(ed)
        if original is None and ed.original is not None:
            self.workspace.reopened(self, ed)
        return ed

    def recoverable(self) -> list[journal.Recoverable]:
        """Segmentations of this series with changes never exported (a crash, or not exported), newest first."""
        try:
            found = journal.recoverable(journal.series_id(self.volume))
        except OSError:
            return []
        open_stems = {journal.file_stem(s.uid) for s in self.workspace.all_segmentations()}
        return [r for r in found if os.path.basename(r.path)[:-len(journal.SUFFIX)] not in open_stems]

    def restore(self, rec: journal.Recoverable | None = None) -> EditableSegmentation:
        """Bring back an unsaved segmentation from its journal (the newest when ``rec`` is None)."""
        if rec is None:
            found = self.recoverable()
            if not found:
                raise HounsfieldError("There is no unsaved segmentation of this series to restore.")
            rec = found[0]
        try:
            seg = journal.replay(rec.path)
        except (OSError, ValueError) as exc:
            raise HounsfieldError(f"The unsaved segmentation could not be restored ({exc}).") from None
        if not seg.matches(self.volume):
            raise HounsfieldError("The unsaved segmentation belongs to another grid of this series; it was kept.")
        return self.add_segmentation(seg, journal_path=rec.path, exported=False)

    def import_heatmap(self, path) -> HeatmapLayer:
        """A DICOM Parametric Map (an AI heatmap, viewer.core.io.parametric_map) on this series."""
        from viewer.core.io.parametric_map import read_parametric_map

        layer = read_parametric_map(path, self.volume)
        self.add_overlay(layer)
        return layer

    def import_segmentation(self, path) -> EditableSegmentation:
        """A DICOM SEG or a label map file (NIfTI, NRRD, ...) on this series, editable."""
        return self.add_segmentation(read_segmentation_file(path, self.volume))

    def close(self) -> None:
        for ed in self.segmentations:
            ed.close()


# ---------------------------------------------------------------------------------------------
# the workspace


class Workspace:
    """The opened series, their overlays, the tool settings and the tool registry."""

    def __init__(self, tools: ToolRegistry | None = None):
        self.series: dict[str, OpenSeries] = {}
        self.tools = tools if tools is not None else REGISTRY  # the viewer's one registry (viewer.core.tools)
        self.settings = ToolSettings()
        self.current: OpenSeries | None = None  # the series a call without ``series=`` works on
        self.series_added = Signal()  # (OpenSeries)
        self.series_removed = Signal()  # (OpenSeries)
        self.overlay_added = Signal()  # (OpenSeries, overlay): one place to hear of every new overlay
        self.overlay_removed = Signal()  # (OpenSeries, overlay)
        self.result_reopened = Signal()  # (Applied): an AI result brought back with a segmentation (a journal, a SEG)
        self.save_failed = Signal()  # (str): one sentence when measurements could not be saved, "" when saved again
        # registrations between open series (viewer.core.registration), saved with the study and found again
        # when both series are open (viewer.core.registration_store); (Registration) when one is added
        self.registrations: list = []
        self.registration_added = Signal()
        self._inverses: dict[int, object] = {}
        self._done: list[Applied] = []  # applied results, for undo
        self._reopened: list[Applied] = []  # results brought back (not undoable: the segmentation was opened)
        self._undone: list[Applied] = []
        self._runs = 0

    def __iter__(self):
        return iter(list(self.series.values()))

    def __getitem__(self, key: str) -> OpenSeries:
        return self.series[key]

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # series
    def open(self, path, series: str | None = None, *, progress=None) -> OpenSeries:
        """Load a folder, file, DICOMDIR or NIfTI/NRRD/MHA (as ``viewer.load``) and open it."""
        from viewer.core.loader import load

        return self.add(load(path, series=series, progress=progress))

    def add(self, volume: Volume, key: str | None = None, *, derived_from: OpenSeries | None = None,
            complete: bool = True) -> OpenSeries:
        """Open an already loaded ``volume`` (``complete``: all its slices are in)."""
        base = key or volume.source.series_instance_uid or "series"
        key, n = base, 2
        while key in self.series:
            key, n = f"{base}#{n}", n + 1
        s = OpenSeries(self, key, volume, derived_from=derived_from, complete=complete)
        self.series[key] = s
        if derived_from is None or self.current is None:
            self.current = s
        self.series_added.emit(s)
        self._restore_registrations(s)
        return s

    # registrations
    def _uid_of(self, which) -> str:
        if isinstance(which, OpenSeries):
            return which.uid
        if isinstance(which, str) and which in self.series:
            return self.series[which].uid
        return str(which or "")

    def _volume_of(self, uid: str):
        return next((s.volume for s in self.series.values() if s.uid == uid and s.derived_from is None), None)

    def add_registration(self, reg, *, save: bool = True) -> None:
        """Keep ``reg`` (a ``viewer.core.registration.Registration``) for its pair of series, replacing one
        of the same pair in either direction; saved with the study unless ``save`` is false."""
        pair = {reg.fixed_uid, reg.moving_uid}
        self.registrations = [r for r in self.registrations if {r.fixed_uid, r.moving_uid} != pair]
        self._inverses.clear()
        self.registrations.append(reg)
        if save and reg.fixed_uid and reg.moving_uid:
            from viewer.core.registration_store import save_registration

            try:
                save_registration(reg, self._volume_of(reg.fixed_uid), self._volume_of(reg.moving_uid))
            except (HounsfieldError, OSError) as exc:
                log.warning("registration not saved: %s", exc, exc_info=True)
        self.registration_added.emit(reg)

    def registration(self, fixed, moving):
        """The registration mapping ``fixed``'s space to ``moving``'s (series keys, ``OpenSeries`` or series
        UIDs), the inverse of the stored one when only the other direction is kept; None when unregistered."""
        f, m = self._uid_of(fixed), self._uid_of(moving)
        for r in self.registrations:
            if (r.fixed_uid, r.moving_uid) == (f, m):
                return r
        for r in self.registrations:
            if (r.fixed_uid, r.moving_uid) == (m, f):
                if id(r) not in self._inverses:
                    self._inverses[id(r)] = r.inverse()
                return self._inverses[id(r)]
        return None

    def _restore_registrations(self, s: OpenSeries) -> None:
        if not s.uid or s.derived_from is not None:
            return
        from viewer.core.registration_store import load_registrations

        others = {o.uid for o in self.series.values() if o is not s and o.uid}
        if not others:
            return
        known = [{r.fixed_uid, r.moving_uid} for r in self.registrations]
        try:
            saved = load_registrations(others | {s.uid})
        except OSError:
            log.warning("saved registrations not read", exc_info=True)
            return
        for reg in saved:
            if s.uid in (reg.fixed_uid, reg.moving_uid) and {reg.fixed_uid, reg.moving_uid} not in known:
                self.add_registration(reg, save=False)

    def remove(self, series: OpenSeries) -> None:
        """Close a series: its journals are closed (kept on disk when there is something to recover)."""
        if self.series.get(series.key) is not series:
            return
        self.audit(series)
        del self.series[series.key]
        series.close()
        if self.current is series:
            self.current = next(iter(self.series.values()), None)
        self.series_removed.emit(series)

    def _series(self, series: OpenSeries | str | None) -> OpenSeries:
        if isinstance(series, str):
            series = self.series.get(series)
        series = series or self.current
        if series is None or self.series.get(series.key) is not series:
            raise HounsfieldError("Open a series first.")
        return series

    def audit(self, series: OpenSeries, exported: bool = False) -> None:
        """Record the AI results on ``series`` a person reviewed (or that were exported) in the audit log
        (viewer.core.audit)."""
        from viewer.core.audit import record_applied

        for step in self.results:
            if step.series is series:
                record_applied(step, exported=exported)

    def all_segmentations(self) -> list[Segmentation]:
        return [ed.segmentation for s in self.series.values() for ed in s.segmentations]

    # AI results
    def apply(self, results, series: OpenSeries | str | None = None) -> Applied:
        """A plugin's ``Results`` (``viewer.ai.api``) of a run on ``series`` as overlays, as ONE undoable
        step (``undo``/``redo``): label maps become editable segmentations (the model's label map kept
        as ``original``), heatmaps and detections layers, derived images series linked to ``series``."""
        from viewer.core.ai_results import convert_results

        s = self._series(series)
        self._runs += 1
        conv = convert_results(results, s.volume, run=self._runs)
        step = Applied(s, conv, results=results)
        for seg in conv.segmentations:
            step.overlays.append(s.add_segmentation(seg, exported=False, original=conv.originals.get(seg.uid),
                                                    provenance=conv.provenance))
        for overlay in conv.heatmaps + conv.marker_sets:
            s.add_overlay(overlay)
            step.overlays.append(overlay)
        for n, vol in enumerate(conv.images):
            step.derived.append(self.add(vol, f"{s.key}#ai{self._runs}.{n}", derived_from=s))
        self._done.append(step)
        self._undone.clear()
        return step

    @property
    def results(self) -> list[Applied]:
        """The AI results applied (and not undone or dismissed), oldest first, then those reopened."""
        return list(self._done) + [r for r in self._reopened if r.applied]

    def reopened(self, series: OpenSeries, ed: EditableSegmentation) -> Applied:
        """``ed`` came back with its AI original: its run is a result again (viewer.core.review.reopened_result)."""
        from viewer.core.review import reopened_result

        step = reopened_result(series, ed)
        if any(r.applied and getattr(r, "audit_key", None) == step.audit_key and r.marker_sets for r in self._reopened):
            # a second segmentation of the same run restored: its detections are on the series already
            step.overlays = [o for o in step.overlays if o not in step.marker_sets]
        for ms in step.marker_sets:
            series.add_overlay(ms)
        self._reopened.append(step)
        self.result_reopened.emit(step)
        return step

    def dismiss(self, step: Applied) -> None:
        """Take one result away for good (the viewer's "Remove result"): its heatmaps, detection sets
        and derived series go; its segmentations stay on the series (a person may have edited them)."""
        for found in (self._done, self._reopened):
            if step in found:
                found.remove(step)
        for o in [o for o in step.overlays if not isinstance(o, EditableSegmentation)]:
            step.series.remove_overlay(o)
        for d in step.derived:
            self.remove(d)
        step.applied = False

    def undo(self) -> bool:
        """Take the last applied result away (the journal of a segmentation a person edited is kept)."""
        if not self._done:
            return False
        step = self._done.pop()
        for o in step.overlays:
            step.series.remove_overlay(o, discard=isinstance(o, EditableSegmentation) and not o.can_undo)
        for d in step.derived:
            self.remove(d)
        step.applied = False
        self._undone.append(step)
        return True

    def redo(self) -> bool:
        if not self._undone:
            return False
        step = self._undone.pop()
        s = step.series
        overlays, step.overlays = step.overlays, []
        for o in overlays:
            if isinstance(o, EditableSegmentation):  # a fresh editor and journal on the same segmentation
                o = s.add_segmentation(o.segmentation, exported=False, original=o.original, provenance=o.provenance)
            else:
                s.add_overlay(o)
            step.overlays.append(o)
        derived, step.derived = step.derived, []
        for d in derived:
            step.derived.append(self.add(d.volume, d.key, derived_from=s))
        step.applied = True
        self._done.append(step)
        return True

    # export
    def export(self, folder, series: OpenSeries | str | None = None, *, seg: bool = True, sr: bool = True,
               csv: bool = True, deidentify: bool = False, segmentation: EditableSegmentation | None = None,
               basename: str = "measurements", images: bool = False) -> dict[str, list[str]]:
        """Write the series' work to ``folder``: its segmentation as DICOM SEG (``seg``), its measurements
        (and segment statistics) as a DICOM SR (``sr``) and CSV/JSON tables (``csv``), and with ``images``
        the series' own DICOM images (into ``folder``/images), de-identified on request.  The exported
        segmentation's journal records the export.  Returns paths by kind."""
        from viewer.core.io.report import export_report

        s = self._series(series)
        ed = segmentation or (s.segmentation(create=False) if seg else None)
        if ed is not None and not ed.segments:
            ed = None
        if not (sr or csv or images):
            if ed is None:
                raise HounsfieldError("There is nothing to export: draw a segmentation first.")
            from viewer.core.io.seg_dicom import write_dicom_seg

            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{basename}-segmentation.dcm")
            write_dicom_seg(ed.segmentation, s.volume, path, series_description=f"SEG {ed.name}"[:64],
                            deidentifier=_deidentifier() if deidentify else None)
            ed.mark_exported(path)
            return {"seg": [path]}
        from viewer.core.review import export_review

        review, detections = export_review(s, ed)  # who made each finding, what a person changed
        out = export_report(folder, s.measurements, s.volume, segmentation=ed.segmentation if ed else None,
                            deidentify=deidentify, basename=basename, write_sr=sr, write_tables=csv,
                            review=review, detections=detections, images=images)
        if ed is not None and out.get("seg"):
            ed.mark_exported(out["seg"][0])
        self.audit(s, exported=True)
        return out

    def export_heatmaps(self, folder, series: OpenSeries | str | None = None, *, dicom: bool = True,
                        nifti: bool = True, layers: list | None = None) -> dict[str, list[str]]:
        """Write the series' AI heatmaps (or ``layers``) as DICOM Parametric Maps (when the series came
        from DICOM) and NIfTI, one of each per map; returns paths by kind ("pm", "nifti")."""
        import re

        from viewer.core.io.parametric_map import write_heatmap_nifti, write_parametric_map

        s = self._series(series)
        layers = s.heatmaps if layers is None else layers
        if not layers:
            raise HounsfieldError("There is no AI map to export: run a plugin that gives one first.")
        os.makedirs(folder, exist_ok=True)
        out: dict[str, list[str]] = {"pm": [], "nifti": []}
        for n, layer in enumerate(layers, start=1):
            stem = os.path.join(folder, f"map-{n}-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", layer.name).strip("-") or "ai"))
            if nifti:
                write_heatmap_nifti(layer, stem + ".nii.gz")
                out["nifti"].append(stem + ".nii.gz")
            if dicom:
                try:
                    out["pm"].append(str(write_parametric_map(layer, s.volume, stem + ".dcm")))
                except HounsfieldError as exc:
                    if not nifti:
                        raise
                    log.info("AI map %s exported as NIfTI only: %s", layer.name, exc)
        return out

    def close(self) -> None:
        """Close every series (journals are synced and closed; unsaved work stays recoverable)."""
        for s in list(self.series.values()):
            self.remove(s)


def _deidentifier():
    from viewer.core.io.deid import Deidentifier

    return Deidentifier()
