"""Click to segment: a lesion's 3D mask from clicks in any 2D view, refined by further clicks.

In a view, with the tool (Segment > Click to segment, key A): a left click adds a positive point,
Ctrl+click or a right click a negative one, Shift+drag a box (its depth through the plane is the mean
of its two sides).  Each click re-runs the promptable lesion-segmentation plugin in the AI worker on
a crop around the prompts (``viewer.ai.interactive``), with the mask so far as its starting point;
the model stays loaded in the worker between clicks.  Runs go one after the other, so every click is
one undo step: the mask is the active segment of the series' segmentation ("Lesion (proposed)"),
drawn in every plane and in 3D, and the measurements panel follows it.  Ctrl+Z while the tool is
active steps back one click (a click still running is dropped); Enter or Accept keeps the mask as an
ordinary segment ("Lesion", provenance SEMIAUTOMATIC, the plugin, its method and the clicks in its
algorithm parameters, so they travel into DICOM SEG); Discard removes it.  Choosing another tool
keeps the mask as it is (accepted).  The mask never takes voxels of another segment unless
"Overwrite other segments" is on.  A click off the image, or one that finds nothing (on air, say),
changes nothing and says so in the status bar.

Display: a click's mask is written into the label map on the crop's box only (one undo step of
that box); the 2D planes re-slice it on their next frame and the 3D view's surface of the segment is
re-meshed at once, in the same pass, so one frame of each view shows the click.  While a session is
on, the 3D view draws at its interactive quality only (``View3D.hold_refined``: its refined ray
casting takes seconds on a software renderer and would hold up the next click); Accept, Discard or
another tool bring the refined frame back.  The session keeps the box that holds every voxel of the
proposal, so the mask sent with the next click and its volume are read there, never from the whole
label map.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData, vtkPolyLine
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

from viewer.ai.api import Box, Point, Prompts
from viewer.core.codes import AlgorithmType
from viewer.core.errors import HounsfieldError
from viewer.core.segmentation import bbox_of, terminology
from viewer.logs import log
from viewer.ui import interaction

TOOL = "seg_click"
PLUGIN_ID = "lesion-segmentation"
PROPOSED = "Lesion (proposed)"
DRAG_PX = 4.0  # a Shift+drag shorter than this is no box


@dataclass
class Click:
    """One prompt the reader gave: a point, or a box (replacing any earlier box)."""

    point: Point | None = None
    box: Box | None = None
    t0: float = field(default_factory=time.perf_counter)
    done: bool = False
    history_index: int = -1  # the editor's history index after this click's step
    seconds: float = 0.0  # from the click to its mask in the segmentation
    run_seconds: float = 0.0  # of which the host's run (sending the crop, the plugin, the result back)
    plugin_seconds: float = 0.0  # of which the plugin itself, in the worker
    wait_seconds: float = 0.0  # before its run started (the run of the click before, or the warm-up)
    band: object = None  # the boundary-uncertainty HeatmapLayer of its result (None: none, or not asked)
    started: float = 0.0  # perf_counter when its run started


@dataclass
class _Run:
    job: int
    click: Click | None  # None: the warm-up run
    handle: object
    crop: tuple
    method: str
    stale: bool = False


class ClickSegmenter(QObject):
    """The window's click-to-segment session: the clicks, their runs, the proposed segment."""

    changed = Signal()  # clicks, proposal or busy state changed (toolbar, view marks)
    _finished = Signal(int, object)  # (job, RunHandle) from the host's supervisor thread

    def __init__(self, window, controller):
        super().__init__(window)
        self.window, self.controller, self.model = window, controller, window.model
        self.method = ""  # "" until the plugin's card is read: then the best one-click method
        self.overwrite = False
        self.show_band = True  # the plugin's boundary-uncertainty band over the views, where to click next
        self.band = None  # the HeatmapLayer shown (the last click's band)
        self.clicks: list[Click] = []
        self._redo: list[Click] = []
        self.key: str | None = None  # the series of the session
        self.number: int | None = None  # the proposed segment's number (undo re-creates Segment objects)
        self.editable = None  # its EditableSegmentation
        self.run: _Run | None = None
        self._jobs = 0
        self.timings: list[Click] = []  # the clicks applied, with their seconds (first, next...)
        self.last_message = ""
        self._warmed: set[str] = set()  # methods loaded in the worker by warm()
        self.quick_3d = True  # False: the display path before (benchmarks): 3D refined and re-meshed later
        self.box = None  # the box holding every voxel of the proposal (union of the boxes written on its layer)
        self._watched = None  # the Segmentation whose writes grow ``box``
        self._finished.connect(self._on_finished)
        self.model.tool_changed.connect(self._on_tool_changed)

    # the plugin ---------------------------------------------------------------------------------
    @property
    def host(self):
        return self.window.features.ai.controller.host

    def info(self):
        try:
            return self.host.get(PLUGIN_ID)
        except HounsfieldError:
            return None

    def methods(self) -> list[str]:
        info = self.info()
        return list(next((p.choices for p in info.parameters if p.name == "method"), ())) if info else []

    def default_method(self) -> str:
        from viewer.ai.interactive import best_method

        info = self.info()
        return best_method(info) if info is not None else ""

    def method_tip(self) -> str:
        from viewer.ai.interactive import one_click_dice

        info = self.info()
        if info is None:
            return "The lesion-segmentation plugin is not installed."
        dice = one_click_dice(info)
        best = self.default_method()
        figures = ", ".join(f"{m} {d:.2f}" for m, d in sorted(dice.items(), key=lambda t: -t[1]))
        others = ("The other methods are kept: on some lesions they do better (see the model card)."
                  if len(dice) > 1 else "")
        return (f"How each click is segmented. Mean 1-click Dice on the held-out lesions of the model card: {figures}; "
                f"the default, {best}, measured best. {others} A change applies from the next click.")

    def set_method(self, method: str) -> None:
        self.method = method
        if self.model.tool == TOOL:
            self.warm(method)
        self.changed.emit()

    def warm(self, method: str = "") -> None:
        """Load the plugin and the method's model in the worker before the first click, by a run on a
        small synthetic block of soft tissue; clicks made meanwhile wait for it."""
        method = method or self.method or self.default_method()
        # on an MR series the plugin also loads what MR clicks use (lesion segmentation: its whole-tumour network);
        # as the plugin does, every series not marked CT (a NIfTI MR reads as "OT") counts as MR
        state = self.model.active_state
        modality = "MR" if state is not None and state.volume.modality.upper() != "CT" else "CT"
        if not method or f"{method}:{modality}" in self._warmed or self.run is not None or self.info() is None:
            return
        from viewer.core.volume import Volume

        block = Volume(np.zeros((8, 32, 32), np.int16), np.eye(4), modality=modality,
                       units="HU" if modality == "CT" else "")
        self._jobs += 1
        job = self._jobs
        try:
            handle = self.host.run(PLUGIN_ID, {"image": block}, {"method": method, "heatmaps": False},
                                   prompts=Prompts((Point((16.0, 16.0, 4.0)),)),
                                   on_done=lambda h, job=job: self._finished.emit(job, h))
        except HounsfieldError:  # another AI run: the first click loads the model instead
            return
        self._warmed.add(f"{method}:{modality}")
        self.run = _Run(job, None, handle, (), method)

    # state --------------------------------------------------------------------------------------
    @property
    def segment(self):
        """The proposed segment (viewer.core.segmentation.Segment), or None."""
        if self.editable is None or self.number is None:
            return None
        return next((s for s in self.editable.segmentation.segments if s.number == self.number), None)

    @property
    def active(self) -> bool:
        return bool(self.clicks) or self.run is not None

    @property
    def busy(self) -> bool:
        """A click is waiting for its mask (the warm-up run does not count)."""
        return (self.run is not None and self.run.click is not None) or any(not c.done for c in self.clicks)

    def prompts(self, upto: int | None = None) -> Prompts:
        """The prompts of the first ``upto`` clicks (all): points in click order, the last box."""
        clicks = self.clicks if upto is None else self.clicks[:upto]
        box = None
        for c in clicks:
            if c.box is not None:
                box = c.box
        return Prompts(tuple(c.point for c in clicks if c.point is not None), box)

    def _state(self):
        return self.model.series.get(self.key) if self.key else None

    def _message(self, text: str, ms: int = 8000) -> None:
        self.last_message = text
        self.window.statusBar().showMessage(text, ms)

    # clicks -------------------------------------------------------------------------------------
    def add(self, state, point: Point | None = None, box: Box | None = None) -> bool:
        """A click on ``state``'s series; False (with a status message) when it is off the image."""
        if state is None or state.volume is None:
            return False
        if state.loaded is not None:
            self._message("The series is still loading; click on the lesion when it has loaded.")
            return False
        info = self.info()
        if info is None:
            self.window.show_error("Click to segment needs the lesion-segmentation plugin, which is not installed.")
            return False
        from viewer.ui.ai.modality import settle_modality

        if not settle_modality(self.window, state, info):  # a NIfTI or NRRD: the reader says CT or MR
            self._message(f"{info.name} needs to know whether the image is CT or MR; click again to say.")
            return False
        if self.key is not None and state.key != self.key:
            self.accept()  # another series: the mask so far is kept
        if point is not None and not _inside(state.volume, point.lps):
            self._message("The click is outside the image; click on the lesion.")
            return False
        if self.number is not None and self.segment is None:
            self._reset()  # the proposal was deleted meanwhile
        self.key = state.key
        self.clicks.append(Click(point, box))
        self._redo.clear()
        self._hold_3d(True)
        self.changed.emit()
        self._pump()
        return True

    # the display ---------------------------------------------------------------------------------
    def _views_3d(self) -> list:
        grid = getattr(self.window, "grid", None)
        return [v for v in getattr(grid, "views", ()) if hasattr(v, "hold_refined")]

    def _hold_3d(self, on: bool) -> None:
        """Interactive quality only in the 3D views while the session is on (see the module's doc)."""
        if self.quick_3d or not on:
            for v in self._views_3d():
                v.hold_refined(on)

    def _mesh_3d_now(self) -> None:
        """Re-mesh the changed surface now rather than after the 3D view's editing pause, so that the
        frame the views draw next shows the click in 3D as well (the views render when this returns)."""
        if not self.quick_3d:
            return
        for v in self._views_3d():
            layers = getattr(v, "layers", None)
            if layers is not None and getattr(layers, "state", None) is self._state():
                layers.flush()

    def _stats_soon(self) -> None:
        """The measurements panel's statistics of the new mask right after the views' frames (queued
        behind them), not after the panel's pause for painting."""
        if not self.quick_3d:
            return
        measure = getattr(getattr(self.window, "features", None), "measure", None)
        rows = getattr(getattr(measure, "controller", None), "segment_rows", None)
        if rows is not None and hasattr(rows, "start_now"):
            QTimer.singleShot(0, rows.start_now)

    def _watch(self, seg) -> None:
        """Grow ``box`` with every write to ``seg`` (the proposal's voxels lie inside it)."""
        if self._watched is seg:
            return
        if self._watched is not None:
            self._watched.changed.disconnect(self._on_voxels)
        self._watched = seg
        if seg is not None:
            seg.changed.connect(self._on_voxels)

    def _on_voxels(self, layer: int, box) -> None:
        s = self.segment
        if s is not None and layer == s.layer:
            from viewer.core.edits import union_box

            self.box = union_box(self.box, tuple(box))

    def _previous(self):
        """(The proposal's bounding box on the full grid or None, a function giving its mask on a box)
        read inside ``box``; (None, None) without a proposal."""
        s = self.segment
        if s is None:
            return None, None
        seg = self.editable.segmentation
        if self.box is None:
            return None, lambda crop: np.zeros(tuple(x.stop - x.start for x in crop), bool)
        inner = bbox_of(seg.mask(s, self.box))
        found = None if inner is None else tuple(slice(o.start + i.start, o.start + i.stop)
                                                 for o, i in zip(self.box, inner))
        return found, lambda crop: seg.mask(s, crop)

    def _volume_ml(self) -> float:
        s, seg = self.segment, self.editable.segmentation
        if s is None or self.box is None:
            return 0.0
        return np.count_nonzero(seg.mask(s, self.box)) * float(abs(np.linalg.det(seg.affine[:3, :3]))) / 1000.0

    def _pump(self) -> None:
        """Start the next click's run when none is running (runs go one after the other)."""
        if self.run is not None:
            return
        n = next((i for i, c in enumerate(self.clicks) if not c.done), None)
        state = self._state()
        if n is None:
            return
        if state is None:  # the series was closed
            self._reset()
            return
        from viewer.ai.interactive import crop_inputs, prompt_crop

        click = self.clicks[n]
        prompts = self.prompts(n + 1)
        vol = state.volume
        mask_box, prev_on = self._previous()
        try:
            crop = prompt_crop(vol, prompts, mask_box)
            inputs = crop_inputs(vol, crop, prev_on(crop) if prev_on is not None else None)
            method = self.method or self.default_method()
            ai = self.window.features.ai.controller
            self._jobs += 1
            job = self._jobs
            handle = self.host.run(PLUGIN_ID, inputs, {"method": method, "heatmaps": self._wants_band(method)},
                                   device="cpu" if ai.force_cpu else None, prompts=prompts,
                                   on_done=lambda h, job=job: self._finished.emit(job, h))
        except (HounsfieldError, ValueError) as exc:
            self.clicks.remove(click)
            self.window.show_error(str(exc))
            self.changed.emit()
            return
        self.run = _Run(job, click, handle, crop, method)
        click.started = time.perf_counter()
        click.wait_seconds = click.started - click.t0
        self.changed.emit()

    def _on_finished(self, job: int, handle) -> None:
        run = self.run
        if run is None or run.job != job:
            return
        self.run = None
        click = run.click
        try:
            if click is None and handle.state == "failed":
                log.warning("click to segment: warm-up failed: %s", handle.error)
            if run.stale or click not in self.clicks:
                return
            if handle.state != "done":
                self.clicks.remove(click)
                if handle.state != "cancelled":
                    self.window.show_error(handle.error or "Click to segment failed; details are in the log file.")
                return
            from viewer.ai.interactive import result_mask

            mask = result_mask(handle.results, run.crop)
            if not mask.any():
                self.clicks.remove(click)
                note = next((n for n in handle.notes if "ignored" in n or "nothing" in n.lower()), "")
                self._message(note or "Nothing was found at that click; click inside the lesion.")
                return
            self._apply(click, run, mask, handle)
        except Exception:  # never leave the session half-updated without saying so
            log.exception("click to segment: applying the result failed")
            if click in self.clicks and not click.done:
                self.clicks.remove(click)
            self.window.show_error("The click could not be applied; details are in the log file.")
        finally:
            self.changed.emit()
            self._pump()

    def _apply(self, click: Click, run: _Run, mask: np.ndarray, handle) -> None:
        from viewer.ai.interactive import format_prompts

        prov = handle.results.provenance
        click.run_seconds = float(prov.get("wall_seconds", 0.0))
        click.plugin_seconds = float(prov.get("seconds", 0.0))

        state = self._state()
        info = handle.info
        n = self.clicks.index(click) + 1
        prompts = self.prompts(n)
        if self.editable is None or self.segment is None:
            self.editable = self.controller.editable(True, state)
        ed = self.editable.editor
        seg = self.editable.segmentation
        self._watch(seg)
        self._hold_3d(True)  # the layout may have changed since the first click
        params = {"method": run.method, "prompts": format_prompts(prompts), "clicks": str(n)}
        # which of the plugin's networks drew the mask (lesion segmentation: 1.2.0 or its whole-tumour network)
        drawn_by = ", ".join(sorted({str(v) for v in prov.get("network", {}).values()}))
        algorithm = f"{info.name} ({run.method} {drawn_by})" if drawn_by else f"{info.name} ({run.method})"
        if drawn_by:
            params["network"] = drawn_by
        ed.begin("Click to segment")
        try:
            if self.segment is None:
                lesion = terminology().get("lesion", {})
                self.number = ed.add_segment(
                    PROPOSED, lesion.get("color", (255, 200, 40)), category=lesion.get("category"),
                    type=lesion.get("type"), algorithm_type=AlgorithmType.SEMIAUTOMATIC,
                    algorithm_name=algorithm, algorithm_version=info.version,
                    description="segmented from a reader's clicks").number
            s = self.segment
            box = run.crop
            if not self.overwrite:  # the voxels of other segments of its layer stay theirs
                cur = seg.layers[s.layer][box]
                mask = mask & ((cur == 0) | (cur == s.number))
            ed.set_mask(s, box, mask)
            s.edited = False  # the model drew it; a person's edits come later
            s.algorithm_name = algorithm
            s.algorithm_parameters = params
            seg.set_active(s.number)
        finally:
            ed.end()
        click.done = True
        click.band = self._band_of(handle.results, run.crop, state) if self._wants_band(run.method) else None
        self._show(click.band)
        click.history_index = ed.history.index
        self._mesh_3d_now()
        self._stats_soon()
        click.seconds = time.perf_counter() - click.t0
        self.timings.append(click)
        ml = self._volume_ml()
        log.info("click to segment: click %d (%s) in %.2f s (run %.2f s, plugin %.2f s)", n, run.method,
                 click.seconds, click.run_seconds, click.plugin_seconds)
        # which network drew it goes into the line itself; another note of the plugin's (a click it
        # ignored) leads the line rather than replacing it (it hid the volume and what to do next)
        drew = f"{run.method} {drawn_by}" if drawn_by else run.method
        notes = [x for x in handle.notes if "drawn by" not in x][:1]
        self._message(" ".join([*notes, f"{PROPOSED}: {ml:.2f} mL after {n} click{'s' if n > 1 else ''} ({drew}, "
                                         f"{click.seconds:.2f} s); Enter keeps it, Ctrl+Z steps back one click."]))

    # undo, accept, discard ----------------------------------------------------------------------
    def undo(self) -> bool:
        """Step back one click (Ctrl+Z while the tool is active); False when there is none to undo."""
        if not self.clicks or self.model.tool != TOOL:
            return False
        click = self.clicks[-1]
        if not click.done:  # still to run, or running: its mask never shows
            self.clicks.pop()
            if self.run is not None and self.run.click is click:
                self.run.stale = True
            self.changed.emit()
            return True
        ed = self.editable.editor
        if ed.history.index != click.history_index:  # something else was edited since: a plain undo
            self._reset()
            return False
        self.clicks.pop()
        ed.undo()
        self._redo.append(click)
        self._show(self.clicks[-1].band if self.clicks else None)
        if not self.clicks:
            self.number = None  # its creation was part of the first click's step
            self._hold_3d(False)
        self.changed.emit()
        return True

    def redo(self) -> bool:
        if not self._redo or self.model.tool != TOOL or self.busy or self.editable is None:
            return False
        click = self._redo[-1]
        ed = self.editable.editor
        if ed.history.index != click.history_index - 1 or not ed.redo():
            self._redo.clear()
            return False
        self._redo.pop()
        if self.number is None:
            self.number = self.editable.segmentation.active
        self.clicks.append(click)
        self._show(click.band)
        self._hold_3d(True)
        self.changed.emit()
        return True

    def accept(self) -> str | None:
        """Keep the proposal as an ordinary segment ("Lesion", "Lesion 2", ...); its name, or None."""
        if self.busy:  # the clicks still running would land after the session ended
            self._wait()
        s, editable = self.segment, self.editable
        name = None
        if s is not None:
            seg = editable.segmentation
            taken = {x.name for x in seg.segments if x is not s}
            name = next(n for n in ("Lesion", *(f"Lesion {i}" for i in range(2, 1000))) if n not in taken)
            editable.editor.begin("Accept lesion")
            try:
                seg.update_segment(s, name=name)
            finally:
                editable.editor.end()
            self._message(f"{name} kept ({seg.volume_ml(s):.2f} mL, {s.algorithm_name}); "
                          "every segment tool can edit it.")
        self._reset()
        return name

    def discard(self) -> None:
        if self.busy:
            self._wait()
        s, editable = self.segment, self.editable
        if s is not None:
            editable.editor.remove_segment(s)
            self._message("The proposed lesion was discarded (Ctrl+Z brings it back).")
        self._reset()

    def _wait(self, timeout: float = 30.0) -> None:
        """Let the clicks still running land (accept and discard are about the mask of every click)."""
        from PySide6.QtWidgets import QApplication

        end = time.monotonic() + timeout
        while self.busy and time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.01)

    def _reset(self) -> None:
        if self.run is not None:
            self.run.stale = True
        self._show(None)
        self.clicks, self._redo = [], []
        self.number = self.editable = None
        self.key = None
        self.box = None
        self._watch(None)
        self._hold_3d(False)  # the 3D view's refined frame follows
        self.changed.emit()

    # the boundary-uncertainty band --------------------------------------------------------------
    def _wants_band(self, method: str) -> bool:
        """Only the network has a probability: a classical method's 0/1 mask, resampled from its
        window, would give a thin shell along its edge that says nothing about where to click."""
        return self.show_band and method == "network"

    @staticmethod
    def _band_of(results, crop, state):
        """The run's boundary-uncertainty map as a layer on the crop's grid, or None when it is empty
        (the classical methods give a mask, no probability, so no band)."""
        from viewer.ai.interactive import crop_affine
        from viewer.core.ai_results import heatmap_layer

        hm = next((h for h in results.heatmaps if h.kind == "uncertainty"), None)
        if hm is None or not np.any(hm.array > 0.1) or tuple(hm.array.shape) != tuple(s.stop - s.start
                                                                                     for s in crop):
            return None
        hm.affine = crop_affine(state.volume, crop)  # the crop's grid, where the plugin drew it
        layer = heatmap_layer(hm, "Click to segment")
        layer.name = "Unsure boundary"
        layer.unit = ""
        layer.colour_bar = False  # its values need no scale; its name says what it is
        return layer

    def _show(self, layer) -> None:
        """Show ``layer`` (or nothing) as the band over the session's series."""
        state = self._state()
        if self.band is layer:
            return
        if self.band is not None and state is not None:
            state.open_series.remove_overlay(self.band)
        self.band = None
        if layer is not None and state is not None and self.show_band:
            state.open_series.add_overlay(layer)
            self.band = layer

    def set_show_band(self, on: bool) -> None:
        self.show_band = bool(on)
        self._show(self.clicks[-1].band if on and self.clicks and self.clicks[-1].done else None)

    def _on_tool_changed(self) -> None:
        if self.model.tool == TOOL:
            if not self.method:
                self.method = self.default_method()
                self.changed.emit()
            try:
                self.warm()  # the worker, torch and the model load now, not at the first click
            except Exception:
                log.warning("click to segment: warm-up failed", exc_info=True)
        elif self.active:
            self.accept()

    def shutdown(self) -> None:
        if self.run is not None:
            self.run.stale = True
            self.run.handle.cancel()


def _inside(volume, lps) -> bool:
    ijk = volume.lps_to_index(lps)
    return bool(np.all(ijk >= -0.5) and np.all(ijk <= np.array(volume.shape[::-1]) - 0.5))


# ------------------------------------------------------------------------------------------------
# the view handler


def _polylines(groups) -> vtkPolyData:
    pts, cells = vtkPoints(), vtkCellArray()
    for xy, closed in groups:
        n = len(xy)
        first = pts.GetNumberOfPoints()
        for x, y in xy:
            pts.InsertNextPoint(float(x), float(y), 0.0)
        line = vtkPolyLine()
        count = n + 1 if closed else n
        line.GetPointIds().SetNumberOfIds(count)
        for i in range(count):
            line.GetPointIds().SetId(i, first + i % n)
        cells.InsertNextCell(line)
    poly = vtkPolyData()
    poly.SetPoints(pts)
    poly.SetLines(cells)
    return poly


class _Marks:
    """Lines in a view's plane coordinates in one colour (the clicks, the box)."""

    def __init__(self, renderer, colour, width: float = 2.0):
        self.mapper = vtkPolyDataMapper()
        self.actor = vtkActor()
        self.actor.SetMapper(self.mapper)
        prop = self.actor.GetProperty()
        prop.SetColor(*colour)
        prop.SetLineWidth(width)
        prop.LightingOff()
        self.actor.PickableOff()
        self.actor.VisibilityOff()
        renderer.AddViewProp(self.actor)

    def set(self, groups) -> None:
        if not groups:
            self.actor.VisibilityOff()
            return
        self.mapper.SetInputData(_polylines(groups))
        self.actor.VisibilityOn()


def _circle(x, y, r, n: int = 24):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([x + r * np.cos(a), y + r * np.sin(a)])


class ClickTool:
    """The tool in one 2D view: clicks become prompts in LPS through the view's own mapping."""

    def __init__(self, view, segmenter: ClickSegmenter):
        self.view, self.segmenter = view, segmenter
        self.positive = _Marks(view.renderer, (0.2, 1.0, 0.3))
        self.negative = _Marks(view.renderer, (1.0, 0.25, 0.25))
        self.box = _Marks(view.renderer, (1.0, 0.85, 0.2), 1.5)
        self.drag = None  # (start pos, start lps) of a Shift+drag
        segmenter.changed.connect(self._redraw)
        view.scene_hooks.append(lambda _v: self._draw())

    def claims(self, button, modifiers) -> bool:
        if button == Qt.MouseButton.RightButton:
            return True
        return button == Qt.MouseButton.LeftButton and bool(
            modifiers & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier))

    def press(self, pos, modifiers, button=Qt.MouseButton.LeftButton) -> None:
        lps = self.view.lps_at(pos)
        if lps is None:
            return
        if button == Qt.MouseButton.LeftButton and modifiers & Qt.KeyboardModifier.ShiftModifier:
            self.drag = (pos, lps)
            return
        negative = button == Qt.MouseButton.RightButton or bool(modifiers & Qt.KeyboardModifier.ControlModifier)
        self.segmenter.add(self.view.state, point=Point(tuple(float(c) for c in lps), not negative))

    def move(self, pos) -> None:
        if self.drag is None:
            return
        lps = self.view.lps_at(pos)
        geom = self.view.pipeline.geometry if self.view.pipeline is not None else None
        if lps is None or geom is None:
            return
        (x0, y0), (x1, y1) = geom.from_lps(self.drag[1]), geom.from_lps(lps)
        self.box.set([([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], True)])
        self.view.request_render()

    def release(self, pos) -> None:
        if self.drag is None:
            return
        start, a = self.drag
        self.drag = None
        b = self.view.lps_at(pos)
        geom = self.view.pipeline.geometry if self.view.pipeline is not None else None
        self._draw()
        self.view.request_render()
        if b is None or geom is None or max(abs(pos.x() - start.x()), abs(pos.y() - start.y())) < DRAG_PX:
            return
        (x0, y0), (x1, y1) = geom.from_lps(a), geom.from_lps(b)
        depth = (abs(x1 - x0) + abs(y1 - y0)) / 2  # through the plane: the mean of the two sides
        corners = np.array([geom.to_lps(x, y) + t * geom.n for x in (x0, x1) for y in (y0, y1)
                            for t in (-depth / 2, depth / 2)])
        box = Box(tuple(corners.min(0)), tuple(corners.max(0)))
        self.segmenter.add(self.view.state, box=box)

    def _redraw(self) -> None:
        self._draw()
        self.view.request_render()

    def _draw(self) -> None:
        view, seg = self.view, self.segmenter
        geom = view.pipeline.geometry if view.pipeline is not None else None
        state = view.state
        if geom is None or state is None or state.key != seg.key or not seg.clicks:
            for m in (self.positive, self.negative):
                m.set([])
            if self.drag is None:
                self.box.set([])
            return
        half = max(float(np.min(state.volume.spacing)), 1.0)  # points within about a voxel of the plane
        r = 2.5 * max(view.mm_per_pixel_logical(), 0.3)
        pos, neg = [], []
        prompts = seg.prompts()
        for p in prompts.points:
            d = float((np.asarray(p.lps) - geom.origin) @ geom.n)
            if abs(d) <= half:
                x, y = geom.from_lps(p.lps)
                (pos if p.positive else neg).append((_circle(x, y, r), True))
        self.positive.set(pos)
        self.negative.set(neg)
        if self.drag is None:
            b = prompts.box
            groups = []
            if b is not None:
                lo, hi = np.asarray(b.lo_lps), np.asarray(b.hi_lps)
                corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
                depth = corners @ geom.n - float(geom.origin @ geom.n)
                if depth.min() <= 0 <= depth.max():  # the plane cuts the box: its outline there
                    xy = np.array([geom.from_lps(c) for c in corners])
                    (xa, ya), (xb, yb) = xy.min(0), xy.max(0)
                    groups.append(([(xa, ya), (xb, ya), (xb, yb), (xa, yb)], True))
            self.box.set(groups)

    def leave(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------
# the toolbar part


def install(feature) -> ClickSegmenter:
    """The click-to-segment session of ``feature`` (the SegmentsFeature): its view handler, its
    widgets in the Segment toolbar and its commands (Accept: Enter; Discard) in the Segment menu."""
    from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel

    from viewer.ui.actions import Command

    window, c = feature.window, feature.controller
    segmenter = ClickSegmenter(window, c)
    interaction.attach(TOOL, ClickTool, segmenter)
    table, toolbar = feature.commands, feature.toolbar
    toolbar.addSeparator()
    label = QLabel(" Method ")
    combo = QComboBox()
    combo.setObjectName("click_segment_method")
    # filled when the tool is first chosen (reading the plugins then keeps the window's start fast)
    combo.setPlaceholderText("best measured")
    combo.setToolTip("How each click is segmented: the method with the best measured one-click Dice, unless you "
                     "choose another once the tool is on.")
    overwrite = QCheckBox("Overwrite other segments")
    overwrite.setObjectName("click_segment_overwrite")
    overwrite.setToolTip("Off: the mask never takes voxels of another segment. On: it may.")
    overwrite.toggled.connect(lambda on: setattr(segmenter, "overwrite", bool(on)))
    band = QCheckBox("Uncertainty")
    band.setObjectName("click_segment_uncertainty")
    band.setChecked(segmenter.show_band)
    band.setToolTip("With the network: show where it is unsure of the boundary (probability 0.2-0.8), where the "
                    "next click helps most. The classical methods give a plain mask, so no band.")
    band.toggled.connect(segmenter.set_show_band)
    accept = table.add(Command("segment_click_accept", "Accept lesion (click to segment)", "Segment",
                               ("Return", "Enter"), views_only=True), segmenter.accept)
    discard = table.add(Command("segment_click_discard", "Discard proposed lesion", "Segment"), segmenter.discard)
    for w in (label, combo):
        toolbar.addWidget(w)
    toolbar.addAction(accept)
    toolbar.addAction(discard)
    toolbar.addWidget(overwrite)
    toolbar.addWidget(band)
    feature.menu.addSeparator()
    feature.menu.addAction(accept)
    feature.menu.addAction(discard)
    segmenter.widgets = {"method": combo, "overwrite": overwrite, "uncertainty": band, "accept": accept,
                         "discard": discard}

    def fill_methods() -> None:
        if combo.count() == 0:
            methods = segmenter.methods()
            combo.blockSignals(True)
            combo.addItems(methods)
            combo.blockSignals(False)
            combo.setToolTip(segmenter.method_tip())
        if segmenter.method and combo.currentText() != segmenter.method:
            combo.blockSignals(True)
            combo.setCurrentText(segmenter.method)
            combo.blockSignals(False)

    def sync() -> None:
        has = segmenter.segment is not None or segmenter.busy
        accept.setEnabled(has)
        discard.setEnabled(has)
        if segmenter.method or combo.count():
            fill_methods()

    combo.currentTextChanged.connect(lambda text: segmenter.set_method(text) if text else None)
    segmenter.changed.connect(sync)
    window.model.tool_changed.connect(sync)
    sync()
    return segmenter
