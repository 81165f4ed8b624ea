"""Cine: stepping through a stack at a frame rate, looping or bouncing at the ends.  No Qt.

``Cine`` moves one view of a ``ViewerModel`` one slice per frame along its plane (series linked to
it follow, as they do when scrolling).  The Qt player (``viewer.ui.cine``) calls ``tick()`` from a
timer of ``interval_ms``.  At the end of the stack *loop* jumps back to the first slice, *bounce*
turns round (..., n-2, n-1, n-2, ...).
"""

from __future__ import annotations

import numpy as np

from viewer.core.planes import PLANES

MODES = ("loop", "bounce")
FPS_RANGE = (1, 60)


class Cine:
    def __init__(self, model, fps: float = 10.0, mode: str = "loop"):
        self.model = model
        self.fps = 10.0
        self.mode = "loop"
        self.direction = 1  # +1: forward (the next-slice direction), -1: back
        self.set_fps(fps)
        self.set_mode(mode)

    def set_fps(self, fps: float) -> None:
        self.fps = float(np.clip(fps, *FPS_RANGE))

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown cine mode {mode!r}; use loop or bounce")
        self.mode = mode

    @property
    def interval_ms(self) -> int:
        return max(1, int(round(1000.0 / self.fps)))

    def slot_for(self, slot: int) -> int | None:
        """The 2D slot to play when ``slot`` is active (the 3D view plays the first 2D view)."""
        vps = self.model.viewports
        for s in (slot, *range(len(vps))):
            if vps[s].plane in PLANES and self.model.state(s) is not None:
                return s
        return None

    def tick(self, slot: int) -> bool:
        """One frame in ``slot``: the next slice, or at the end the first (loop) or the one before (bounce).
        False when there is nothing to play (no series, or a stack of one slice)."""
        state, plane = self.model.state(slot), self.model.viewports[slot].plane
        if state is None or plane not in PLANES:
            return False
        before = state.point.copy()
        self.model.step(slot, self.direction)  # linked series follow, as when scrolling
        if not np.allclose(state.point, before):
            return True
        # at the end of the stack
        if self.mode == "bounce":
            self.direction = -self.direction
            self.model.step(slot, self.direction)
        else:
            self.model.step(slot, -self.direction * 1_000_000)  # clamped: the other end
        return not np.allclose(state.point, before)
