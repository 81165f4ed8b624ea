"""The comparison's work, without widgets: registering one series to another off the UI thread
(``viewer.core.registration.register`` in a ``RegistrationThread``, with progress and a working
Cancel; the result is kept by the workspace, ``Workspace.add_registration``) and fusion: the *top*
layer (another series, or a heatmap) drawn over every 2D view of the *bottom* series through the
registration that joins them (``viewer.render.fusion``), and in the 3D view when it shows the bottom.

Linked scrolling through the registration is the model's (``ViewerModel.map_point``): once the
workspace holds the registration, scrolling either series moves the other to the same anatomy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np
from PySide6.QtCore import QObject, QThread, QTimer, Signal

from viewer.core.errors import HounsfieldError
from viewer.core.planes import PLANES
from viewer.logs import log
from viewer.render.fusion import FUSION_MODES, FusionSlice, FusionVolume, affine_of
from viewer.render.heatmap import HEATMAP_POINTS
from viewer.render.overlays import TEXT_COLOUR, text_actor

HEATMAP_PREFIX = "heatmap:"  # a top layer id naming a heatmap: "heatmap:<series key>|<index>"
FLICKER_MS = 600


@dataclass(frozen=True)
class Fusion:
    """What is fused: ``top`` (a series key or a heatmap id) over ``bottom`` (a series key)."""

    bottom: str
    top: str
    colormap: str = "Hot iron"
    opacity: float = 0.5
    window: tuple[float, float] = (40.0, 400.0)  # of the top layer, in its real units
    mode: str = "blend"  # one of FUSION_MODES


class RegistrationThread(QThread):
    """``register(fixed, moving, kind)`` on a worker thread; its signals arrive on the UI thread."""

    progressed = Signal(float, str)
    finished_ok = Signal(object)  # Registration
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, fixed, moving, kind: str, parent=None):
        super().__init__(parent)
        self.fixed, self.moving, self.kind = fixed, moving, kind
        self._stop = threading.Event()

    def cancel(self) -> None:
        self._stop.set()

    def run(self) -> None:
        from viewer.core.registration import RegistrationCancelled, register

        try:
            reg = register(self.fixed, self.moving, self.kind,
                           progress=lambda f, text: self.progressed.emit(float(f), str(text)),
                           cancel=self._stop.is_set)
        except RegistrationCancelled:
            self.cancelled.emit()
        except HounsfieldError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # one sentence for the user; the traceback goes to the log
            log.exception("registration failed")
            self.failed.emit(f"The registration failed ({type(exc).__name__}); the log file has the details.")
        else:
            if self._stop.is_set():  # cancelled after the last iteration: nothing changes either
                self.cancelled.emit()
            else:
                self.finished_ok.emit(reg)


class ResampleThread(QThread):
    """A deformable registration's top image resampled onto the bottom grid (fusion)."""

    finished_ok = Signal(object)  # Volume on the bottom grid
    failed = Signal(str)

    def __init__(self, reg, forward: bool, top, bottom, parent=None):
        super().__init__(parent)
        self.reg, self.forward, self.top, self.bottom = reg, forward, top, bottom

    def run(self) -> None:
        from viewer.core.volume import Volume

        try:
            reg = self.reg if self.forward else self.reg.inverse()  # bottom -> top (an inverse takes seconds)
            arr = reg.resample(self.top, self.bottom, default=float(self.top.real_values(np.s_[0, 0, 0]))
                                    if self.top.modality != "CT" else -1024.0)
            vol = Volume(np.ascontiguousarray(arr, dtype=np.float32), self.bottom.affine.copy(),
                         modality=self.top.modality, units=self.top.units, source=self.top.source)
        except Exception as exc:
            log.exception("resampling for fusion failed")
            self.failed.emit(f"The top series could not be resampled ({type(exc).__name__}); "
                             "the log file has the details.")
        else:
            self.finished_ok.emit(vol)


class CompareController(QObject):
    progress = Signal(float, str)  # a running registration: fraction, what it is doing
    registered = Signal(object)  # Registration, kept by the workspace
    registration_failed = Signal(str)
    registration_cancelled = Signal()
    running_changed = Signal(bool)
    registrations_changed = Signal()  # the workspace keeps a new registration (from anywhere)
    fusion_changed = Signal()
    message = Signal(str)

    def __init__(self, window, workspace):
        super().__init__(window)
        self.window, self.workspace, self.model = window, workspace, window.model
        self.thread: RegistrationThread | None = None
        self.fusion: Fusion | None = None
        self.shown = True  # flicker: whether the top is drawn now
        self._top = None  # (VtkVolume, M) of the fused top layer
        self._resample: ResampleThread | None = None
        self._slices: dict[int, FusionSlice] = {}  # by slot
        self._volume3d: FusionVolume | None = None
        self._own_vtk: dict[int, object] = {}  # VtkVolumes made here (heatmaps, resampled images)
        self.flicker_timer = QTimer(self)
        self.flicker_timer.setInterval(FLICKER_MS)
        self.flicker_timer.timeout.connect(self.flick)
        for view in window.grid.slice_views:
            view.scene_hooks.append(self._scene_hook)
        self.model.viewport_changed.connect(self._on_viewport)
        self.model.series_removed.connect(self._on_series_removed)
        added = getattr(workspace, "registration_added", None)
        if added is not None:  # one made elsewhere (lesion change) or found saved with the study
            added.connect(self._registration_added)

    # registration ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.thread is not None

    def candidates(self, key: str) -> list[str]:
        """The open series ``key`` can be registered to (every other one)."""
        return [k for k in self.model.series if k != key]

    def start_registration(self, fixed: str, moving: str, kind: str = "rigid") -> RegistrationThread:
        """Register series ``moving`` to series ``fixed`` (keys) on a worker thread."""
        if self.thread is not None:
            raise HounsfieldError("A registration is running already; wait for it or cancel it.")
        if fixed == moving or fixed not in self.model.series or moving not in self.model.series:
            raise HounsfieldError("Choose two different open series to register.")
        states = self.model.series[fixed], self.model.series[moving]
        if any(s.loaded is not None for s in states):
            raise HounsfieldError("Wait until both series have loaded, then register them.")
        thread = self.thread = RegistrationThread(states[0].volume, states[1].volume, kind, self)
        thread.keys = (fixed, moving)
        thread.progressed.connect(self.progress)
        thread.finished_ok.connect(self._registered)
        thread.failed.connect(self.registration_failed)
        thread.cancelled.connect(self.registration_cancelled)
        thread.finished.connect(self._thread_ended)
        thread.start()
        self.running_changed.emit(True)
        return thread

    def cancel_registration(self) -> None:
        if self.thread is not None:
            self.thread.cancel()

    def _thread_ended(self) -> None:
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.deleteLater()
        self.running_changed.emit(False)

    def _registered(self, reg) -> None:
        fixed, moving = self.thread.keys if self.thread is not None else (None, None)
        add = getattr(self.workspace, "add_registration", None)
        if add is None:  # the workspace keeps no registrations (an older core)
            self.registration_failed.emit("This workspace cannot keep a registration; update Hounsfield.")
            return
        add(reg)
        if fixed in self.model.series:  # the moving series jumps to the anatomy the fixed one shows
            self.model.set_point(fixed, self.model.series[fixed].point)
        self.registered.emit(reg)
        log.info("registered %s to %s (%s, %.1f s)", moving, fixed, reg.kind, reg.seconds)

    def _registration_added(self, _reg) -> None:
        """A new transform for a pair: what is fused is drawn through it, and linked views meet again."""
        if self.fusion is not None:
            try:
                self.set_fusion(self.fusion)
            except HounsfieldError as exc:
                self.message.emit(str(exc))
        self.registrations_changed.emit()

    # fusion: the top layers on offer --------------------------------------------------------
    def top_choices(self, bottom: str) -> list[tuple[str, str]]:
        """(id, label) of what can go over ``bottom``: the other open series, and heatmaps of any."""
        out = []
        for key, state in self.model.series.items():
            src = state.volume.source
            if key != bottom:
                out.append((key, f"{state.volume.modality} {src.series_description or key}".strip()))
            for n, layer in enumerate(state.open_series.heatmaps):
                out.append((f"{HEATMAP_PREFIX}{key}|{n}", f"Heatmap: {layer.name}"))
        return out

    def _resolve(self, top: str):
        """(volume, owner series key, default window, default colour map) of a top layer id."""
        if top.startswith(HEATMAP_PREFIX):
            key, _, n = top[len(HEATMAP_PREFIX):].rpartition("|")
            state = self.model.series.get(key)
            layers = state.open_series.heatmaps if state is not None else []
            if not n.isdigit() or int(n) >= len(layers):
                raise HounsfieldError("That heatmap is no longer open; choose another top layer.")
            layer = layers[int(n)]
            lo = float(np.clip(layer.threshold, 0.0, 0.95))  # below the layer's threshold: clear, as drawn alone
            return (layer.volume, key, ((lo + 1.0) / 2, 1.0 - lo),
                    layer.colormap if layer.colormap in HEATMAP_POINTS else "Hot")
        state = self.model.series.get(top)
        if state is None:
            raise HounsfieldError("That series is no longer open; choose another top layer.")
        return state.volume, top, tuple(state.window), "Hot iron"

    def defaults(self, bottom: str, top: str) -> Fusion:
        """A fusion of ``top`` over ``bottom`` with the top's own window and a fitting colour map."""
        _vol, _owner, window, cmap = self._resolve(top)
        return Fusion(bottom, top, colormap=cmap, window=window)

    def points(self, name: str):
        return self.window.session.colormap_points(name) or HEATMAP_POINTS.get(name) or HEATMAP_POINTS["Hot"]

    def colormap_names(self) -> list[str]:
        from viewer.ui.resources import colormaps

        return list(colormaps()) + [n for n in HEATMAP_POINTS if n not in colormaps()]

    # fusion: on, off, style --------------------------------------------------------------------
    def set_fusion(self, fusion: Fusion | None) -> None:
        """Fuse (None: stop).  The transform comes from the registration joining the two series
        (the same frame of reference without one); a deformable one resamples the top first."""
        if fusion is None:
            self._stop()
            return
        if fusion.mode not in FUSION_MODES:
            raise HounsfieldError(f"Unknown fusion mode {fusion.mode!r}.")
        if fusion.bottom not in self.model.series:
            raise HounsfieldError("Show the series to fuse onto in a view first.")
        volume, owner, _w, _c = self._resolve(fusion.top)
        same = self.fusion is not None and (self.fusion.bottom, self.fusion.top) == (fusion.bottom, fusion.top)
        top = self._top if same and self._top is not None and self._top[2] == self._reg_token(fusion, owner) else None
        if top is None:
            top = self._make_top(fusion, volume, owner)
        self.fusion = fusion
        if top == "pending":
            return  # a deformable resample is running; it applies the fusion when done
        self._top = top
        self._after_change()

    def _pair(self, bottom: str, owner: str):
        """(registration, forward) from the bottom series to the top's (None: the same series, or none)."""
        return None if owner == bottom else self.model.joined(bottom, owner)

    def _reg_token(self, fusion: Fusion, owner: str):
        pair = self._pair(fusion.bottom, owner)
        return (id(pair[0]), pair[1]) if pair is not None else None

    def _make_top(self, fusion: Fusion, volume, owner: str):
        bottom = self.model.series[fusion.bottom]
        pair = self._pair(fusion.bottom, owner)
        if pair is None:
            same_for = bottom.frame_of_reference == self.model.series[owner].frame_of_reference
            if owner != fusion.bottom and not (bottom.frame_of_reference and same_for):
                raise HounsfieldError("These series are not registered; "
                                      "register them first (Compare > Register to...).")
            m = np.eye(4)
        elif pair[0].kind in ("identity", "rigid"):
            reg, forward = pair
            nk, nj, ni = bottom.volume.shape
            m = affine_of(reg.to_moving if forward else reg.to_fixed,
                          bottom.volume.index_to_lps([ni / 2, nj / 2, nk / 2]))
        else:
            self._start_resample(fusion, pair, volume, bottom.volume)
            return "pending"
        is_series = owner == fusion.top
        vtk = self.window.session.vtk_volume(owner) if is_series else self._own(volume)
        return vtk, m, self._reg_token(fusion, owner)

    def _own(self, volume):
        from viewer.render.image import VtkVolume

        vtk = self._own_vtk.get(id(volume))
        if vtk is None or vtk.volume is not volume:
            vtk = self._own_vtk[id(volume)] = VtkVolume(volume)
        return vtk

    def _start_resample(self, fusion: Fusion, pair, top, bottom) -> None:
        if self._resample is not None:
            return
        self.window.statusBar().showMessage("Resampling the top series through the deformable registration...")
        thread = self._resample = ResampleThread(*pair, top, bottom, self)
        token = (id(pair[0]), pair[1])

        def done(vol, fusion=fusion, token=token):
            if self.fusion is not None and (self.fusion.bottom, self.fusion.top) == (fusion.bottom, fusion.top):
                self._top = (self._own(vol), np.eye(4), token)
                self._after_change()
            self.window.statusBar().clearMessage()

        thread.finished_ok.connect(done)
        thread.failed.connect(self.message)
        thread.finished.connect(self._resample_ended)
        thread.start()

    def _resample_ended(self) -> None:
        thread, self._resample = self._resample, None
        if thread is not None:
            thread.deleteLater()

    def update(self, **changes) -> None:
        """Change the fusion's colour map, opacity, window or mode (nothing when none is on)."""
        if self.fusion is not None:
            self.set_fusion(replace(self.fusion, **changes))

    def _stop(self) -> None:
        self.fusion, self._top = None, None
        self.flicker_timer.stop()
        self.shown = True
        self._own_vtk.clear()
        self._after_change()

    def _after_change(self) -> None:
        f = self.fusion
        if f is not None and f.mode == "flicker":
            if not self.flicker_timer.isActive():
                self.shown = True
                self.flicker_timer.start()
        else:
            self.flicker_timer.stop()
            self.shown = True
        for view in self.window.grid.slice_views:
            view._on_overlay()  # the scene hook (below) draws the top layer
        self._sync_3d()
        self.fusion_changed.emit()

    def flick(self) -> None:
        """Flicker: show the top layer instead of the bottom, or the bottom again."""
        self.shown = not self.shown
        for slot, fs in self._slices.items():
            fs.set_visible(self.shown)
            self.window.grid.views[slot].request_render()

    # drawing -------------------------------------------------------------------------------------
    def _scene_hook(self, view) -> None:
        f, top = self.fusion, self._top
        fs = self._slices.get(view.slot)
        want = (f is not None and top is not None and view.state is not None and view.state.key == f.bottom
                and view.plane in PLANES and view.pipeline is not None and view.pipeline.geometry is not None)
        if fs is not None and (not want or fs.vtk_volume is not top[0] or not np.allclose(fs.to_top, top[1])):
            fs.remove_from(view.renderer)
            view.renderer.RemoveViewProp(fs.label)
            del self._slices[view.slot]
            fs = None
        if not want:
            return
        if fs is None:
            fs = self._slices[view.slot] = FusionSlice(top[0], top[1])
            fs.add_to(view.renderer)
            fs.label = text_actor(13, TEXT_COLOUR)
            fs.label.GetTextProperty().SetVerticalJustificationToTop()
            view.renderer.AddViewProp(fs.label)
        _w, h = view.size_px()
        fs.label.SetInput(self.label_text())
        fs.label.SetDisplayPosition(8, int(h - 72))  # under the top-left corner's three lines
        fs.set_style(self.points(f.colormap), f.window, f.opacity, f.mode)
        fs.set_visible(f.mode != "flicker" or self.shown)
        geom, old = view.pipeline.geometry, fs.geometry
        if old is None or not (np.allclose(old.origin, geom.origin) and np.allclose(old.n, geom.n)
                               and np.allclose(old.u, geom.u) and old.extent == geom.extent):
            fs.set_geometry(geom)

    def label_text(self) -> str:
        """What the fused views say about the top layer: which, how, through what."""
        f = self.fusion
        if f is None:
            return ""
        label = dict(self.top_choices(f.bottom)).get(f.top, f.top)
        _vol, owner, _w, _c = self._resolve(f.top)
        pair = self._pair(f.bottom, owner)
        reg = pair[0] if pair is not None else None
        how = {"blend": f"{f.colormap} {int(round(100 * f.opacity))}%", "checkerboard": "checkerboard",
               "flicker": "flicker"}[f.mode]
        through = f"{reg.kind} registration" if reg is not None else "same frame of reference"
        return f"Fused: {label}\n{how}, {through}"

    def fused_slice(self, slot: int) -> FusionSlice | None:
        """The top layer drawn in a 2D slot (tests)."""
        return self._slices.get(slot)

    def _on_viewport(self, slot: int) -> None:
        if slot == 3:
            self._sync_3d()

    def _sync_3d(self) -> None:
        view = self.window.grid.views[3]
        f, top = self.fusion, self._top
        want = (f is not None and top is not None and view.state is not None and view.state.key == f.bottom
                and f.mode == "blend")
        vol = self._volume3d
        if vol is not None and (not want or vol.vtk_volume is not top[0]):
            vol.remove_from(view.renderer)
            self._volume3d = vol = None
        if want:
            if vol is None:
                vol = self._volume3d = FusionVolume(top[0], top[1])
                vol.add_to(view.renderer)
            vol.set_style(self.points(f.colormap), f.window, f.opacity)
        if hasattr(view, "changed"):
            view.changed()

    def _on_series_removed(self, key: str) -> None:
        f = self.fusion
        if f is not None and (key == f.bottom or key == f.top or f.top.startswith(f"{HEATMAP_PREFIX}{key}|")):
            self._stop()

    def shutdown(self) -> None:
        self.flicker_timer.stop()
        for thread in (self.thread, self._resample):
            if thread is not None:
                if hasattr(thread, "cancel"):
                    thread.cancel()
                thread.wait(30000)
