"""The viewing state of the reading viewer, with no Qt and no VTK (napari's ViewerModel role).

Qt widgets observe a ``ViewerModel`` through its ``Signal``s and change it only through its
methods, so every view of a series agrees on one point, one set of crosshair axes and one
window/level, and tests can drive the viewer's logic without a display.

The plane geometry (axes, sampling, orientation letters) lives in ``viewer.core.planes`` and the
window heuristics in ``viewer.core.windowing``; geometry is LPS millimetres throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viewer.core.planes import (
    FORWARD,
    PLANES,
    SliceGeometry,
    acquisition_rotation,
    aligned_axis,
    plane_axes,
    rotation_about,
    slice_geometry,
    slice_step,
)
from viewer.core.signals import Signal
from viewer.core.tools import REGISTRY, ToolRegistry
from viewer.core.volume import Volume
from viewer.core.workspace import OpenSeries, Workspace

SLOT_PLANES = ("axial", "coronal", "sagittal", "3d")
SLAB_MODES = ("mip", "minip", "mean")
LAYOUTS = ("1x1", "1x3", "2x2")


# ---------------------------------------------------------------------------------------------
# the state of one opened series and of the whole viewer

class SeriesState:
    """How one opened series is viewed: point, crosshair axes, window/level, colour.

    What is drawn over it (segmentations, measurements, heatmaps, detection sets) is not kept here:
    it is the overlay list of ``open_series`` (``viewer.core.workspace.OpenSeries``), which the
    headless ``Workspace`` and the viewer share.  A state made on its own (a test, a script) gets
    a workspace of its own."""

    def __init__(self, key: str, volume: Volume, window: tuple[float, float] | None = None,
                 open_series: OpenSeries | None = None):
        if open_series is None:
            open_series = Workspace().add(volume, key)
        self.open_series = open_series
        self.key = key
        self.volume = volume
        self.loaded: np.ndarray | None = None  # bool per k slice while loading, None when complete
        self.home_rotation = acquisition_rotation(volume.affine)
        self.rotation = self.home_rotation.copy()
        nk, nj, ni = volume.shape
        self.point = volume.index_to_lps([ni // 2, nj // 2, nk // 2])
        self.home_window = window or volume.window or (40.0, 400.0)
        self.window = tuple(self.home_window)
        self.preset = ""
        self.invert = False
        self.colormap = "Grey"
        self.point_changed = Signal()
        self.rotation_changed = Signal()
        self.window_changed = Signal()  # window, invert, colour map or preset
        self.data_changed = Signal()  # slices were decoded: (k or None for many)

    @property
    def frame_of_reference(self) -> str:
        return self.volume.source.frame_of_reference_uid

    def axes(self, plane: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return plane_axes(plane, self.rotation)

    def geometry(self, plane: str) -> SliceGeometry:
        return slice_geometry(self.volume, *self.axes(plane), self.point)

    def clamp(self, lps) -> np.ndarray:
        """``lps`` moved into the volume's box and snapped to slices along grid-aligned normals."""
        idx = self.volume.lps_to_index(lps)
        for plane in PLANES:
            axis = aligned_axis(self.volume, self.axes(plane)[2])
            if axis is not None:
                idx[axis] = np.round(idx[axis])
        nk, nj, ni = self.volume.shape
        idx = np.clip(idx, 0, [ni - 1, nj - 1, nk - 1])
        return self.volume.index_to_lps(idx)

    def set_point(self, lps) -> bool:
        new = self.clamp(lps)
        if np.allclose(new, self.point, atol=1e-6):
            return False
        self.point = new
        self.point_changed.emit()
        return True

    def step(self, plane: str, count: float) -> bool:
        """Move ``count`` slices forward (positive) or back along ``plane``'s normal."""
        n = self.axes(plane)[2] * FORWARD[plane]
        return self.set_point(self.point + count * slice_step(self.volume, n) * n)

    def slice_position(self, plane: str) -> tuple[int, int] | None:
        """(1-based slice number, slice count) along a grid-aligned plane, else None."""
        n = self.axes(plane)[2]
        axis = aligned_axis(self.volume, n)
        if axis is None:
            return None
        idx = self.volume.lps_to_index(self.point)
        count = self.volume.shape[2 - axis]
        return int(round(idx[axis])) + 1, count

    def rotate(self, plane: str, angle: float) -> None:
        """Turn the crosshair axes by ``angle`` radians about ``plane``'s normal (seen on screen)."""
        n = self.axes(plane)[2]
        self.rotation = rotation_about(n, angle) @ self.rotation
        self.point = self.clamp(self.point)
        self.rotation_changed.emit()

    def reset_rotation(self) -> None:
        if not np.allclose(self.rotation, self.home_rotation):
            self.rotation = self.home_rotation.copy()
            self.point = self.clamp(self.point)
            self.rotation_changed.emit()

    @property
    def oblique(self) -> bool:
        return not np.allclose(self.rotation, self.home_rotation)

    def set_window(self, center: float, width: float, preset: str = "") -> None:
        width = max(float(width), 1e-3)
        if (center, width) != self.window or preset != self.preset:
            self.window, self.preset = (float(center), width), preset
            self.window_changed.emit()

    def set_invert(self, on: bool) -> None:
        if on != self.invert:
            self.invert = bool(on)
            self.window_changed.emit()

    def set_colormap(self, name: str) -> None:
        if name != self.colormap:
            self.colormap = name
            self.window_changed.emit()

    def value_at(self, lps) -> tuple[float, tuple[int, int, int]] | None:
        """(real value, (i, j, k)) of the voxel nearest ``lps``; None outside or not yet loaded."""
        idx = np.round(self.volume.lps_to_index(lps)).astype(int)
        nk, nj, ni = self.volume.shape
        i, j, k = (int(x) for x in idx)
        if not (0 <= i < ni and 0 <= j < nj and 0 <= k < nk):
            return None
        if self.loaded is not None and not self.loaded[k]:
            return None
        return float(self.volume.real_values(np.s_[k, j, i])), (i, j, k)


@dataclass
class Viewport:
    """One slot of the layout: which series, which plane, and its own zoom and pan."""

    series: str | None
    plane: str
    zoom: float = 1.0  # 1 fits the whole plane in the view
    pan: tuple[float, float] = (0.0, 0.0)  # plane mm of the view centre from the plane's centre
    slab_mm: float = 0.0  # thick-slab projection thickness (0: a thin slice)
    slab_mode: str = "mip"  # one of SLAB_MODES


class ViewerModel:
    """Everything the viewer shows: opened series, layout, viewports, crosshair, tool, links."""

    def __init__(self, tools: ToolRegistry | None = None) -> None:
        self.tools = tools if tools is not None else REGISTRY  # what set_tool accepts
        self.series: dict[str, SeriesState] = {}
        self.viewports = [Viewport(None, p) for p in SLOT_PLANES]
        self.layout = "2x2"
        self.active = 0
        self.maximised: int | None = None
        self.crosshair_visible = True
        self.link_series = True
        self.tool = "wl"
        self.series_added = Signal()  # key
        self.series_removed = Signal()  # key
        self.layout_changed = Signal()  # layout or maximised
        self.viewport_changed = Signal()  # slot: series, zoom or pan
        self.active_changed = Signal()  # slot
        self.crosshair_changed = Signal()
        self.tool_changed = Signal()
        self.link_changed = Signal()

    # series
    def add_series(self, state: SeriesState, slots: list[int] | None = None) -> None:
        """Register an opened series and show it in ``slots`` (default: every slot)."""
        self.series[state.key] = state
        self.series_added.emit(state.key)
        for slot in range(len(self.viewports)) if slots is None else slots:
            self.show_series(slot, state.key)

    def remove_series(self, key: str) -> None:
        if self.series.pop(key, None) is None:
            return
        fallback = next(iter(self.series), None)
        for slot, vp in enumerate(self.viewports):
            if vp.series == key:
                self.show_series(slot, fallback)
        self.series_removed.emit(key)

    def show_series(self, slot: int, key: str | None, keep_view: bool = False) -> None:
        """Show ``key`` in ``slot``; ``keep_view`` keeps zoom and pan (flicker comparison)."""
        vp = self.viewports[slot]
        vp.series = key
        if not keep_view:
            vp.zoom, vp.pan = 1.0, (0.0, 0.0)
        self.viewport_changed.emit(slot)

    def set_plane(self, slot: int, plane: str) -> None:
        """Change the plane of a 2D slot (the 3D slot keeps its own)."""
        if plane not in PLANES or self.viewports[slot].plane not in PLANES:
            raise ValueError(f"slot {slot} cannot show the {plane!r} plane")
        vp = self.viewports[slot]
        if vp.plane != plane:
            vp.plane, vp.zoom, vp.pan = plane, 1.0, (0.0, 0.0)
            self.viewport_changed.emit(slot)

    def compare(self, first: str, second: str, plane: str = "axial") -> None:
        """Side by side: ``first`` and ``second`` in the same plane (slots 0 and 1), the first's
        next plane in slot 2 (the original, for orientation); layout 1 x 3.  Linked series scroll,
        zoom and pan together."""
        others = [p for p in PLANES if p != plane]
        for slot, (key, p) in enumerate(((first, plane), (second, plane), (first, others[0]))):
            self.set_plane(slot, p)
            self.show_series(slot, key)
        self.set_layout("1x3")

    def restore_planes(self) -> None:
        """Back to the standard planes per slot (axial, coronal, sagittal)."""
        for slot, plane in enumerate(SLOT_PLANES[:3]):
            self.set_plane(slot, plane)

    def state(self, slot: int) -> SeriesState | None:
        key = self.viewports[slot].series
        return self.series.get(key) if key is not None else None

    @property
    def active_state(self) -> SeriesState | None:
        return self.state(self.active)

    # layout
    def visible_slots(self) -> list[int]:
        if self.maximised is not None:
            return [self.maximised]
        return {"1x1": [self.active], "1x3": [0, 1, 2], "2x2": [0, 1, 2, 3]}[self.layout]

    def set_layout(self, name: str) -> None:
        if name not in LAYOUTS:
            raise ValueError(f"unknown layout {name!r}")
        if name != self.layout or self.maximised is not None:
            self.layout, self.maximised = name, None
            self.layout_changed.emit()

    def toggle_maximise(self, slot: int) -> None:
        self.maximised = None if self.maximised is not None else slot
        self.set_active(slot)
        self.layout_changed.emit()

    def set_active(self, slot: int) -> None:
        if slot != self.active:
            self.active = slot
            self.active_changed.emit(slot)

    # point, crosshair, links
    def set_point(self, key: str, lps) -> None:
        """Move a series' point; linked series follow: to the same LPS point in the same frame of
        reference, to the matching anatomy through a registration (``map_point``)."""
        state = self.series[key]
        state.set_point(lps)
        self._follow(state)

    def _follow(self, state: SeriesState) -> None:
        for other in self.linked(state.key):
            mapped = self.map_point(state.key, other.key, state.point)
            if mapped is not None:
                other.set_point(mapped)

    def registration(self, src: str, dst: str):
        """The registration joining two opened series (``fixed`` = ``src``: ``to_moving`` maps ``src``'s
        LPS points into ``dst``), from their workspace (``Workspace.registration``); None if none."""
        a, b = self.series.get(src), self.series.get(dst)
        if a is None or b is None or a.open_series.workspace is not b.open_series.workspace:
            return None
        find = getattr(a.open_series.workspace, "registration", None)
        if find is None:
            return None
        try:
            return find(a.open_series, b.open_series)
        except (KeyError, ValueError):
            return None

    def joined(self, src: str, dst: str):
        """(registration, forward) joining two opened series as the workspace keeps it: ``forward`` when
        ``src`` is its fixed series (``to_moving`` maps ``src`` to ``dst``), else ``to_fixed`` does.  No
        inverse is computed (a deformable one's takes seconds); None when they are not registered."""
        a, b = self.series.get(src), self.series.get(dst)
        if a is None or b is None or a.open_series.workspace is not b.open_series.workspace:
            return None
        ws = a.open_series.workspace
        kept = getattr(ws, "registrations", None)
        if not isinstance(kept, list):
            reg = self.registration(src, dst)
            return (reg, True) if reg is not None else None
        ua, ub = a.open_series.uid, b.open_series.uid
        if not ua or not ub or ua == ub:
            return None
        for forward in (True, False):
            for reg in kept:
                if (reg.fixed_uid, reg.moving_uid) == ((ua, ub) if forward else (ub, ua)):
                    return reg, forward
        return None

    def map_point(self, src: str, dst: str, lps) -> np.ndarray | None:
        """The point of series ``dst`` that shows what ``lps`` shows in series ``src``: through their
        registration when there is one, else the same point when they share a frame of reference;
        None when they are not joined."""
        pair = self.joined(src, dst)
        if pair is not None:
            reg, forward = pair
            p = np.asarray(lps, dtype=np.float64)
            return np.asarray(reg.to_moving(p) if forward else reg.to_fixed(p), dtype=np.float64).reshape(3)
        a, b = self.series[src], self.series[dst]
        if a.frame_of_reference and a.frame_of_reference == b.frame_of_reference:
            return np.asarray(lps, dtype=np.float64)
        return None

    def linked(self, key: str) -> list[SeriesState]:
        """The series that follow ``key``'s point: same frame of reference, or joined by a registration."""
        state = self.series[key]
        if not self.link_series:
            return []
        out = []
        for k, s in self.series.items():
            if k == key:
                continue
            if (state.frame_of_reference and s.frame_of_reference == state.frame_of_reference) \
                    or self.joined(key, k) is not None:
                out.append(s)
        return out

    def step(self, slot: int, count: float) -> None:
        state, vp = self.state(slot), self.viewports[slot]
        if state is not None and vp.plane in PLANES:
            state.step(vp.plane, count)
            self._follow(state)

    def set_crosshair_visible(self, on: bool) -> None:
        if on != self.crosshair_visible:
            self.crosshair_visible = bool(on)
            self.crosshair_changed.emit()

    def set_link_series(self, on: bool) -> None:
        if on != self.link_series:
            self.link_series = bool(on)
            self.link_changed.emit()

    def set_tool(self, tool: str) -> None:
        if tool not in self.tools:
            raise ValueError(f"unknown tool {tool!r}")
        if tool != self.tool:
            self.tool = tool
            self.tool_changed.emit()

    # zoom and pan
    def set_zoom(self, slot: int, zoom: float) -> None:
        """Zoom a view; views of linked series in the same plane (a comparison) zoom with it."""
        for s in (slot, *self.view_partners(slot)):
            self.viewports[s].zoom = float(np.clip(zoom, 0.05, 40.0))
            self.viewport_changed.emit(s)

    def view_partners(self, slot: int) -> list[int]:
        """The other 2D slots showing a series linked to ``slot``'s in the same plane: they zoom and
        pan together, so that original and result are compared at the same place."""
        vp, state = self.viewports[slot], self.state(slot)
        if state is None or vp.plane not in PLANES:
            return []
        keys = {s.key for s in self.linked(state.key)}
        return [n for n, other in enumerate(self.viewports)
                if n != slot and other.plane == vp.plane and other.series in keys]

    def set_slab(self, slot: int, thickness_mm: float, mode: str | None = None) -> None:
        """Thick-slab MIP / MinIP / mean of a 2D view (``thickness_mm`` 0: a thin slice)."""
        vp = self.viewports[slot]
        if mode is not None and mode not in SLAB_MODES:
            raise ValueError(f"unknown slab mode {mode!r}")
        vp.slab_mm = float(np.clip(thickness_mm, 0.0, 200.0))
        vp.slab_mode = mode or vp.slab_mode
        self.viewport_changed.emit(slot)

    def set_pan(self, slot: int, pan: tuple[float, float]) -> None:
        for s in (slot, *self.view_partners(slot)):
            self.viewports[s].pan = (float(pan[0]), float(pan[1]))
            self.viewport_changed.emit(s)

    def reset(self) -> None:
        """Home: fit every view (zoom, pan) and undo oblique rotation.  The window level, invert and
        colour map stay as the reader set them (the study's own window has its own key, 0)."""
        for slot, vp in enumerate(self.viewports):
            vp.zoom, vp.pan = 1.0, (0.0, 0.0)
            self.viewport_changed.emit(slot)
        for state in self.series.values():
            state.reset_rotation()
