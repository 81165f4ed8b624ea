"""The lung-nodule read without widgets: which detection sets of the current series are nodule runs,
one row per nodule, accept/reject, re-measuring a marker a person moved or resized, adding a nodule
the AI missed, the operating point (score threshold and the expected false positives per scan from
the plugin's FROC figures) and the report (``plugins.lung_nodules.report``: SEG + TID 1500 SR + CSV).

Measuring (``plugins.lung_nodules.measure.measure_nodule``, about a second on a chest CT) runs on a
background thread; its result comes back to the UI thread as a queued signal.  A nodule's mask goes
into the run's editable "Nodules" segmentation (segment "Nodule N"), so the segment tools correct
it; the report takes each nodule's mask from there and re-measures a segment a person changed.

What the AI proposed stays: ``Marker.proposed`` (centre and size) is never changed, and the plugin's
measurement is kept in ``attributes["ai_measurement"]`` before a person's edit replaces it.
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication

from viewer.core.codes import AlgorithmType
from viewer.core.errors import HounsfieldError
from viewer.core.layers import Marker, MarkerSet
from viewer.logs import log

PLUGIN_ID, PLUGIN_NAME = "lung-nodules", "Lung nodules"
PERSON_SET = "Nodules added by a person"
NODULE_KEYS = ("mean_diameter_mm", "volume_ml", "type")
COLOR = (255, 200, 0)
TOOL = "nodule_add"


# --------------------------------------------------------------------------------------- helpers


def is_nodule_set(ms: MarkerSet) -> bool:
    """A lung-nodule run's detections (by its title), the person's added nodules, or any set whose
    markers carry nodule measurements."""
    prov = (ms.provenance or "").lower()
    if prov.startswith(PLUGIN_NAME.lower()) or PLUGIN_ID in prov or ms.name == PERSON_SET:
        return True
    return any(all(k in m.attributes for k in NODULE_KEYS) for m in ms.markers)


def region_text(attrs: dict) -> str:
    lobe, side = attrs.get("lobe"), attrs.get("side") or attrs.get("lung")
    if lobe:
        return str(lobe)
    return f"{side} lung" if side else ""


def jsonable(v):
    if isinstance(v, (str, bool, int)) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return jsonable(v.item())
    if isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.size <= 64):
        return [jsonable(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return None


def lungrads_of(attrs: dict):
    """The Lung-RADS suggestion (``plugins.lung_nodules.lungrads.Suggestion``) or None."""
    if attrs.get("type") not in ("solid", "part-solid", "ground-glass") or not attrs.get("mean_diameter_mm"):
        return None
    try:
        from plugins.lung_nodules.lungrads import suggest_for

        return suggest_for(attrs)
    except (ImportError, KeyError, ValueError, TypeError):
        log.warning("no Lung-RADS suggestion for %s", attrs.get("type"), exc_info=True)
        return None


FP_METRIC = re.compile(r"score threshold for ([0-9.]+) fp/scan", re.I)


def froc_points(card=None, provenance: dict | None = None) -> list[tuple[float, float]]:
    """(score threshold, false positives per scan) pairs the plugin measured: the model card's
    "Score threshold for F FP/scan" figures, or a run's ``provenance["froc"]["thresholds"]``."""
    pts = {}
    froc = (provenance or {}).get("froc") or {}
    for rate, t in (froc.get("thresholds") or {}).items():
        try:
            pts[float(rate)] = float(t)
        except (TypeError, ValueError):
            continue
    for fig in getattr(card, "evaluation", ()) or ():
        metric = getattr(fig, "metric", None) or (fig.get("metric") if isinstance(fig, dict) else "")
        value = getattr(fig, "value", None) if not isinstance(fig, dict) else fig.get("value")
        hit = FP_METRIC.search(str(metric or ""))
        if hit and isinstance(value, (int, float)):
            pts.setdefault(float(hit.group(1)), float(value))
    return sorted((t, r) for r, t in pts.items())


DEFAULT_FP_RATE = 1.0  # the panel opens at the score threshold measured for this many false positives per scan


def default_threshold(points: list[tuple[float, float]]) -> float:
    """The score threshold of the measured point nearest DEFAULT_FP_RATE false positives per scan (0 when
    nothing was measured: every detection shows)."""
    if not points:
        return 0.0
    return float(min(points, key=lambda p: abs(p[1] - DEFAULT_FP_RATE))[0])


def expected_fp(points: list[tuple[float, float]], threshold: float) -> str:
    """The expected false positives per scan at ``threshold`` from the measured FROC points."""
    if not points:
        return "FP/scan: not measured"
    ts = [t for t, _ in points]
    rs = [r for _, r in points]
    if threshold >= ts[-1]:
        return f"≤ {rs[-1]:g} FP/scan"
    if threshold <= ts[0]:
        return f"≥ {rs[0]:g} FP/scan"
    r = float(np.interp(threshold, ts, rs))
    return f"≈ {r:.1f} FP/scan"


def _cropped(full: np.ndarray):
    """The box (k0, k1, j0, j1, i0, i1; half-open) around a non-empty mask's voxels, and the mask in it."""
    idx = np.argwhere(full)
    (k0, j0, i0), (k1, j1, i1) = idx.min(0), idx.max(0) + 1
    return (int(k0), int(k1), int(j0), int(j1), int(i0), int(i1)), full[k0:k1, j0:j1, i0:i1]


# --------------------------------------------------------------------------------------- rows


@dataclass(eq=False)
class NoduleRow:
    marker_set: MarkerSet
    index: int
    number: int

    @property
    def marker(self) -> Marker:
        return self.marker_set.markers[self.index]

    @property
    def attrs(self) -> dict:
        return self.marker.attributes


@dataclass
class ReportTask:
    """What one nodule report writes, fixed on the UI thread (copies of masks; no live objects)."""

    folder: str
    volume: object
    nodules: list
    lungs: object = None  # a label map for nodules still to be measured
    written: dict = field(default_factory=dict)
    what = "nodule report"

    def run(self, progress=None) -> dict[str, list[str]]:
        from plugins.lung_nodules.measure import measure_nodule
        from plugins.lung_nodules.report import write_nodule_report

        vol = self.volume
        sp = np.asarray(vol.spacing[::-1], float)
        hu = None
        for n, d in enumerate(self.nodules):
            if progress is not None:
                progress(n, len(self.nodules) + 1, f"nodule {d['number']}")
            if d.get("mask") is None:
                hu = vol.real_values() if hu is None else hu
                c = vol.lps_to_index(d["center_lps"])[::-1]
                m = measure_nodule(hu, sp, tuple(c), self.lungs, size_mm=d.get("mean_diameter_mm") or None,
                                   affine=vol.affine)
                d.update({k: v for k, v in m.items() if k not in d or k in ("mask", "bbox")})
            if d.get("type") not in ("solid", "part-solid", "ground-glass") or d.get("mask") is None \
                    or not np.asarray(d["mask"]).any():
                raise HounsfieldError(f"Nodule {d['number']} could not be measured (no nodule at its marker's "
                                      "centre); move its marker onto the nodule or reject it.")
        if progress is not None:
            progress(len(self.nodules), len(self.nodules) + 1, "SEG, SR and CSV")
        out = write_nodule_report(self.folder, vol, self.nodules)
        return {k: [v] for k, v in out.items()}

    def after(self, window, out: dict) -> None:
        pass


class NodulesController(QObject):
    rows_changed = Signal()
    measured = Signal(object, object, object, bool)  # marker set, marker, measurement dict (or exception), added
    message = Signal(str)
    report_done = Signal(object)  # {"csv": [...], "sr": [...], "seg": [...]}
    report_failed = Signal(str)

    def __init__(self, window, workspace):
        super().__init__(window)
        self.window, self.workspace = window, workspace
        self.threshold = 0.0  # until a run's sets come: then its card's DEFAULT_FP_RATE point, or the reader's
        self._threshold_chosen = False
        self.rows: list[NoduleRow] = []
        self._sets: list[MarkerSet] = []
        self._series = None
        self._measured: dict[Marker, tuple[np.ndarray, np.ndarray]] = {}  # centre, size last measured at
        self._pending: set[Marker] = set()
        self._busy: set[Marker] = set()
        self._hu: tuple | None = None  # (volume, HU array)
        self._where: dict[Marker, object] = {}  # the OpenSeries a marker's measurement is for
        self.froc_figures: list[tuple[float, float]] = []
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="nodule-measure")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self._remeasure_pending)
        # a nodule's segment corrected with the segment tools: its row measured again from the mask
        self._watched: list = []  # the nodule segmentations whose voxel changes are heard
        self._seg_timer = QTimer(self)
        self._seg_timer.setSingleShot(True)
        self._seg_timer.setInterval(400)
        self._seg_timer.timeout.connect(self.sync_from_segments)
        self.measured.connect(self._on_measured)
        self.report_thread = None
        self.last_report: dict | None = None
        self._closed = False
        workspace.overlay_added.connect(lambda *_a: self.refresh())
        workspace.overlay_removed.connect(lambda *_a: self.refresh())
        model = window.model
        model.active_changed.connect(lambda *_a: self.refresh(False))
        model.viewport_changed.connect(lambda *_a: self.refresh(False))
        model.series_removed.connect(lambda *_a: self.refresh(False))

    # ------------------------------------------------------------------ what is shown
    @property
    def state(self):
        """The SeriesState of the active view (the series whose nodules are listed)."""
        return self.window.model.active_state

    @property
    def series(self):
        st = self.state
        return st.open_series if st is not None else None

    def nodule_sets(self) -> list[MarkerSet]:
        s = self.series
        return [ms for ms in s.marker_sets if is_nodule_set(ms)] if s is not None else []

    def refresh(self, force: bool = True) -> None:
        """List the rows again (``force`` False: only when the nodule sets or the series changed, as
        after a view's zoom or pan)."""
        if self._closed:
            return
        sets = self.nodule_sets()
        moved = sets != self._sets or self.series is not self._series
        if not (moved or force):
            return
        if moved:
            for ms in self._sets:
                ms.changed.disconnect(self._set_changed)
            self._sets, self._series = sets, self.series
            for ms in sets:
                ms.min_score = self.threshold
                ms.changed.connect(self._set_changed)
                for m in ms.markers:
                    self._measured.setdefault(m, (m.center.copy(), m.size_mm.copy()))
        self.froc_figures = self.froc() if sets else []
        if sets and not self._threshold_chosen:  # open at the run's (else the card's) measured operating point
            self.threshold = default_threshold(self.froc_figures)
            for ms in sets:
                ms.set_min_score(self.threshold)  # the views redraw the markers
        self.rows = []
        for ms in sets:
            for i, m in enumerate(ms.markers):
                num = m.attributes.get("number")
                self.rows.append(NoduleRow(ms, i, int(num) if isinstance(num, (int, float)) else i + 1))
        self._watch_segmentations()
        self._show_segments()
        self.rows_changed.emit()

    def _watch_segmentations(self) -> None:
        segs = []
        for ms in self._sets:
            ed = self.nodule_segmentation(ms)
            if ed is not None and ed.segmentation not in segs:
                segs.append(ed.segmentation)
        if segs == self._watched:
            return
        for seg in self._watched:
            seg.changed.disconnect(self._on_voxels_changed)
        self._watched = segs
        for seg in segs:
            seg.changed.connect(self._on_voxels_changed)

    def _on_voxels_changed(self, *_a) -> None:
        if not self._closed:
            self._seg_timer.start()

    def sync_from_segments(self) -> list[NoduleRow]:
        """Measure again, from its segment, every nodule whose segment a person changed with the segment
        tools (its voxels no longer match the volume last measured): diameters, volume, mean HU and the
        Lung-RADS suggestion follow the corrected mask (the type stays as measured), and the row is marked
        edited by a person. Returns the rows that changed."""
        from plugins.lung_nodules.measure import mask_measurements

        st = self.state
        if st is None or self._closed:
            return []
        vol = st.volume
        sp = np.asarray(vol.spacing[::-1], float)
        changed = []
        for r in self.rows:
            m, a = r.marker, r.attrs
            ed, seg = self._segment_of(r)
            if seg is None or not seg.edited or not self._segment_changed(ed, seg, a):
                continue
            box, mask = _cropped(ed.segmentation.mask(seg))
            k0, k1, j0, j1, i0, i1 = box
            mm = mask_measurements(mask, sp)
            hu = self._hu_of(vol)[k0:k1, j0:j1, i0:i1][mask]
            if m.origin == "ai" and "ai_measurement" not in a:
                a["ai_measurement"] = {k: v for k, v in a.items() if k != "number"}
            a.update(long_mm=mm["long_mm"], short_mm=mm["short_mm"], mean_diameter_mm=mm["mean_diameter_mm"],
                     volume_ml=round(mm["volume_ml"], 4), mean_hu=round(float(hu.mean()), 1),
                     bbox_kji=list(box), measured_by="person")
            lr = lungrads_of(a)
            if lr is not None:
                a["lungrads"], a["lungrads_rule"] = lr.category, lr.rule
            m.edited = True
            changed.append(r)
        if changed:
            self.rows_changed.emit()
        return changed

    def visible(self, row: NoduleRow) -> bool:
        """Below the operating point an AI row is hidden (never deleted), its marker too; a
        person's nodule always shows."""
        return row.marker_set.shown(row.marker)

    def set_threshold(self, t: float) -> None:
        """The reader's operating point (kept for the next runs of this window)."""
        self._threshold_chosen = True
        self.threshold = float(t)
        for ms in self._sets:
            ms.set_min_score(self.threshold)  # the views redraw the markers
        self.rows_changed.emit()

    def froc(self) -> list[tuple[float, float]]:
        """The plugin's measured FROC points (threshold, FP/scan): its runs' provenance, else its card."""
        for entry in reversed(self.workspace.results):
            if any(ms in self._sets for ms in entry.marker_sets):
                pts = froc_points(None, entry.provenance)
                if pts:
                    return pts
        card = None
        try:
            card = self.window.features.ai.controller.host.get(PLUGIN_ID).card
        except Exception:  # no host, or the plugin is not installed: nothing measured to show
            log.info("no lung-nodule plugin card for the operating point", exc_info=True)
        return froc_points(card)

    # ------------------------------------------------------------------ review
    def jump(self, row: NoduleRow) -> None:
        st = self.state
        if st is not None:
            self.window.model.set_point(st.key, row.marker.center)

    def set_status(self, rows: list[NoduleRow], status: str) -> None:
        for r in rows:
            r.marker_set.set_status(r.index, status)

    def _set_changed(self, *_a) -> None:
        for ms in self._sets:
            for m in ms.markers:
                at = self._measured.get(m)
                if at is None:
                    self._measured[m] = (m.center.copy(), m.size_mm.copy())
                elif m.edited and not (np.allclose(at[0], m.center) and np.allclose(at[1], m.size_mm)):
                    self._pending.add(m)
        if self._pending:
            self._timer.start()
        self._show_segments()
        self.rows_changed.emit()

    def _remeasure_pending(self) -> None:
        if QApplication.mouseButtons() != Qt.MouseButton.NoButton:
            self._timer.start()  # still dragging: measure when the button is released
            return
        pending, self._pending = self._pending, set()
        for ms in self._sets:
            for m in ms.markers:
                if m in pending:
                    self.measure(ms, m)

    def measure(self, ms: MarkerSet, m: Marker, added: bool = False) -> None:
        """Measure the nodule at marker ``m``'s centre (in the background); the row updates after."""
        st = self.state
        if st is None:
            return
        vol = st.volume
        self._measured[m] = (m.center.copy(), m.size_mm.copy())
        self._busy.add(m)
        self._where[m] = st.open_series
        hu = self._hu_of(vol)
        sp = np.asarray(vol.spacing[::-1], float)
        centre = tuple(vol.lps_to_index(m.center)[::-1])
        size = float(np.mean(m.size_mm)) if m.size_mm is not None and np.all(m.size_mm > 0.6) else None
        lungs = self._lungs(ms)

        def work():
            from plugins.lung_nodules.measure import measure_nodule

            return measure_nodule(hu, sp, centre, lungs, size_mm=size, affine=vol.affine)

        def done(fut):
            try:
                result = fut.result()
            except Exception as exc:
                log.exception("nodule measurement failed")
                result = exc
            if not self._closed:
                self.measured.emit(ms, m, result, added)

        self._pool.submit(work).add_done_callback(done)

    @property
    def busy(self) -> bool:
        return bool(self._busy or self._pending)

    def _hu_of(self, vol) -> np.ndarray:
        if self._hu is None or self._hu[0] is not vol:
            self._hu = (vol, vol.real_values())
        return self._hu[1]

    def _entry_of(self, ms: MarkerSet):
        return next((e for e in self.workspace.results if ms in e.marker_sets), None)

    def _lungs(self, ms: MarkerSet):
        """The run's lung label map (1 right, 2 left) when it returned one."""
        entry = self._entry_of(ms)
        for ed in entry.segmentations if entry is not None else []:
            if ed.name.startswith("Lungs"):
                return ed.label_map()
        return None

    def nodule_segmentation(self, ms: MarkerSet, create: bool = False, series=None):
        """The editable segmentation holding the nodules' masks (the run's "Nodules", or one made
        for the nodules a person adds)."""
        s = series or self.series
        entry = self._entry_of(ms)
        for ed in entry.segmentations if entry is not None else []:
            if ed.name.startswith("Nodules"):
                return ed
        for ed in s.segmentations if s is not None else []:
            if ed.name == "Nodules (reviewed)":
                return ed
        if not create or s is None:
            return None
        from viewer.core.segmentation import Segmentation

        return s.add_segmentation(Segmentation.for_volume(s.volume, "Nodules (reviewed)"), exported=False)

    def _on_measured(self, ms: MarkerSet, m: Marker, result, added: bool) -> None:
        self._busy.discard(m)
        series = self._where.pop(m, None)
        if isinstance(result, Exception):
            self.message.emit(f"The nodule could not be measured ({type(result).__name__}); "
                              "the log file has the details.")
            return
        if not result.get("found"):
            self.message.emit("No nodule was found at that point; click on the nodule itself.")
            if added:
                return
        if series is None or series.workspace.series.get(series.key) is not series:
            return  # the series was closed meanwhile
        if not added and m not in ms.markers:
            return
        vol = series.volume
        if added:
            box = result["bbox"]
            sp = np.asarray(vol.spacing, float)  # x, y, z
            size = np.array([box[5] - box[4], box[3] - box[2], box[1] - box[0]], float) * sp
            centre = vol.index_to_lps(np.asarray(result["center_kji"], float)[::-1])
            numbers = [int(x.attributes.get("number", i + 1)) for s in self._sets for i, x in enumerate(s.markers)]
            m.center, m.size_mm = np.asarray(centre, float), np.maximum(size, 1.0)
            m.attributes["number"] = max(numbers, default=0) + 1
        elif m.origin == "ai" and "ai_measurement" not in m.attributes:
            m.attributes["ai_measurement"] = {k: v for k, v in m.attributes.items() if k != "number"}
        attrs = {k: jsonable(v) for k, v in result.items() if k not in ("mask", "bbox")}
        attrs = {k: v for k, v in attrs.items() if v is not None or k == "lobe"}
        attrs["bbox_kji"] = [int(b) for b in result["bbox"]]
        lr = lungrads_of(result)
        if lr is not None:
            attrs["lungrads"], attrs["lungrads_rule"] = lr.category, lr.rule
        m.attributes.update(attrs)
        m.attributes["measured_by"] = "person" if (added or m.edited) else "ai"
        if result.get("found"):
            self._write_mask(series, ms, m, result)
        if added:
            ms.markers.append(m)
            if ms not in series.marker_sets:
                series.add_overlay(ms)
        self._measured[m] = (m.center.copy(), m.size_mm.copy())
        ms.changed.emit()
        self.refresh()

    def _write_mask(self, series, ms: MarkerSet, m: Marker, result: dict) -> None:
        """Put the measured mask into the nodule segmentation (one undoable step)."""
        from plugins.lung_nodules.measure import paste_mask

        ed = self.nodule_segmentation(ms, create=True, series=series)
        if ed is None:
            return
        name = f"Nodule {m.attributes.get('number')}"
        seg = ed.segmentation.by_name(name)
        if seg is None:
            seg = ed.add_segment(name, COLOR, algorithm_type=AlgorithmType.SEMIAUTOMATIC,
                                 algorithm_name="Hounsfield lung nodules (a person's click)",
                                 description=region_text(m.attributes))
        full = paste_mask(result, ed.segmentation.layers[seg.layer].shape)
        old = ed.segmentation.mask(seg)
        both = full | old
        if not both.any():
            return
        idx = np.argwhere(both)
        lo, hi = idx.min(0), idx.max(0) + 1
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        ed.editor.set_mask(seg, box, full[box])

    def add_at(self, lps) -> None:
        """A nodule the AI missed, at ``lps`` (a person's click): measured, then listed as accepted."""
        s = self.series
        if s is None:
            raise HounsfieldError("Open a series first; nodules are added on the series in the active view.")
        sets = [ms for ms in self._sets if ms.name != PERSON_SET] or [ms for ms in self._sets]
        if sets:
            ms = sets[-1]
        else:
            ms = MarkerSet(PERSON_SET, [], provenance="person")
        m = Marker(np.asarray(lps, float), np.array([8.0, 8.0, 8.0]), 1.0, "nodule", "added by a person",
                   status="accepted", origin="person", attributes={"added_by": "person"})
        self.measure(ms, m, added=True)

    # ------------------------------------------------------------------ report
    def report_nodules(self) -> list[NoduleRow]:
        return [r for r in self.rows if r.marker.status == "accepted"]

    def prepare_report(self, folder: str) -> ReportTask:
        from highdicom import UID

        st = self.state
        if st is None:
            raise HounsfieldError("Open a series first; the report is of the series in the active view.")
        self.sync_from_segments()  # corrections not yet measured (the pause after the last stroke)
        rows = self.report_nodules()
        if not rows:
            raise HounsfieldError("No nodule is accepted yet; accept or add the nodules to report first.")
        vol = st.volume
        nodules = []
        lungs = None
        for r in rows:
            m, a = r.marker, r.attrs
            d = {k: a[k] for k in ("long_mm", "short_mm", "mean_diameter_mm", "volume_ml", "mean_hu", "type",
                                   "solid_mean_diameter_mm", "calcified", "side", "lobe") if k in a}
            if d.get("mean_hu") is None:
                d.pop("mean_hu", None)
            a.setdefault("tracking_uid", str(UID()))
            d.update(number=r.number, uid=a["tracking_uid"], center_lps=np.asarray(m.center, float),
                     score=None if m.origin == "person" else float(m.score),
                     source="person" if m.origin == "person" else (r.marker_set.provenance or PLUGIN_NAME))
            edited = m.edited or m.origin == "person"
            ed, seg = self._segment_of(r)
            if seg is not None:
                box, mask = _cropped(ed.segmentation.mask(seg))
                d["bbox"], d["mask"] = box, mask.copy()
            elif "mean_diameter_mm" not in d or "type" not in d:
                lungs = self._lungs(r.marker_set) if lungs is None else lungs
            d["edited"] = bool(edited)
            if edited and not m.edited:
                m.edited = True
            nodules.append(d)
        return ReportTask(folder, vol, nodules, lungs)

    def _segment_of(self, r: NoduleRow):
        """The row's editable nodule segmentation and its non-empty segment "Nodule N", or (None, None)."""
        ed = self.nodule_segmentation(r.marker_set)
        seg = ed.segmentation.by_name(f"Nodule {r.number}") if ed is not None else None
        return (ed, seg) if seg is not None and ed.segmentation.count(seg) else (None, None)

    def _show_segments(self) -> None:
        """Show a nodule's segment exactly when its row shows: below the operating point the segment is
        hidden with its marker (in 2D, 3D and the Measurements panel), never deleted."""
        for r in self.rows:
            ed, seg = self._segment_of(r)
            if seg is not None and seg.visible != self.visible(r):
                ed.segmentation.update_segment(seg, visible=self.visible(r))

    def _segment_changed(self, ed, seg, attrs: dict) -> bool:
        """Whether a person changed the nodule's segment after it was last measured: its voxel count
        differs from the measured volume."""
        vol_ml = ed.segmentation.volume_ml(seg)
        measured = attrs.get("volume_ml")
        return measured is None or abs(vol_ml - float(measured)) > max(1e-4, 0.005 * float(measured))

    def write_report(self, folder: str):
        """Write the report of the accepted nodules to ``folder`` on a background thread."""
        if self.report_thread is not None:
            raise HounsfieldError("A nodule report is being written; wait for it to finish.")
        from viewer.ui.measure.export import ExportThread

        task = self.prepare_report(folder)
        thread = self.report_thread = ExportThread(task, self)
        thread.finished_ok.connect(self._report_ok)
        thread.failed.connect(self.report_failed)
        thread.finished.connect(self._report_finished)
        thread.start()
        return thread

    def _report_ok(self, out: dict) -> None:
        self.last_report = out
        self.report_done.emit(out)

    def _report_finished(self) -> None:
        thread, self.report_thread = self.report_thread, None
        if thread is not None:
            thread.deleteLater()

    def shutdown(self) -> None:
        self._closed = True
        self._timer.stop()
        self._seg_timer.stop()
        for seg in self._watched:
            seg.changed.disconnect(self._on_voxels_changed)
        self._watched = []
        if self.report_thread is not None:
            self.report_thread.wait(120000)
        self._pool.shutdown(wait=True, cancel_futures=True)
