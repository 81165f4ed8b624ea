"""The cine player of a main window: Space plays and pauses the active view's stack (as in Horos),
a frame-rate spin box and a Loop/Bounce choice on a "Cine" toolbar and in View > Cine.

The stepping is ``viewer.core.cine.Cine``; this holds the timer.  Series linked to the played one
follow it (they follow every point change).  Renders are coalesced as for scrolling, so a frame rate
the machine cannot draw drops frames instead of queueing them.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QSpinBox

from viewer.core.cine import FPS_RANGE, MODES, Cine
from viewer.ui.actions import Command


class CinePlayer(QObject):
    playing_changed = Signal(bool)

    def __init__(self, window, fps: float = 15.0):
        super().__init__(window)
        self.window, self.model = window, window.model
        self.cine = Cine(window.model, fps)
        self.slot: int | None = None
        self.frames = 0  # slices stepped since play started (tests, the benchmark)
        self.timer = QTimer(self)  # single-shot, set each frame for the next frame's due time
        self.timer.setSingleShot(True)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.timer.setInterval(self.cine.interval_ms)
        self._t0, self._n0 = 0.0, 0  # the schedule: frame n is due at t0 + (n - n0) / fps
        self._playing = False
        self.model.series_removed.connect(lambda _k: self._check_slot())
        self.model.viewport_changed.connect(lambda _s: self._check_slot())

    @property
    def playing(self) -> bool:
        return self._playing

    def toggle(self) -> None:
        self.stop() if self.playing else self.play()

    def play(self, slot: int | None = None) -> bool:
        slot = self.cine.slot_for(self.model.active if slot is None else slot)
        if slot is None:
            return False
        self.slot, self.frames = slot, 0
        self.cine.direction = 1
        self._playing = True
        self._restart_schedule()
        self.timer.start(self.cine.interval_ms)
        self.playing_changed.emit(True)
        return True

    def stop(self) -> None:
        self.timer.stop()
        if self._playing:
            self._playing = False
            self.playing_changed.emit(False)

    def set_fps(self, fps: float) -> None:
        self.cine.set_fps(fps)
        self.timer.setInterval(self.cine.interval_ms)
        self._restart_schedule()

    def _restart_schedule(self) -> None:
        self._t0, self._n0 = time.perf_counter(), self.frames

    def set_mode(self, mode: str) -> None:
        self.cine.set_mode(mode)

    def _check_slot(self) -> None:
        if self.playing and (self.slot is None or self.model.state(self.slot) is None):
            self.stop()

    def _tick(self) -> None:
        """One frame, then the timer for the next frame's due time: a frame drawn late shortens the
        wait for the next one, so the rate asked for is kept as long as the machine can draw it."""
        if not self._playing or self.slot is None or not self.cine.tick(self.slot):
            self.stop()
            return
        self.frames += 1
        now = time.perf_counter()
        due = self._t0 + (self.frames - self._n0 + 1) / self.cine.fps
        if due < now - 0.5:  # far behind (the machine was busy): start the schedule again from now
            self._restart_schedule()
            due = now + 1.0 / self.cine.fps
        self.timer.start(max(0, int(round((due - now) * 1000))))


def install(feature, window) -> CinePlayer:
    """The player, its command (Space, views only), the Cine toolbar and View > Cine."""
    player = CinePlayer(window)
    act = feature.commands.add(
        Command("cine_play", "Play / pause cine", "Navigate", ("Space",), "cine", checkable=True, views_only=True,
                tip="Play the active view's stack at the frame rate of the Cine toolbar; Space again stops"),
        lambda _on: player.toggle())
    player.playing_changed.connect(act.setChecked)
    fps = QSpinBox()
    fps.setRange(*FPS_RANGE)
    fps.setValue(int(player.cine.fps))
    fps.setSuffix(" fps")
    fps.setToolTip("Cine frame rate (frames per second)")
    fps.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
    fps.valueChanged.connect(player.set_fps)
    mode = QComboBox()
    mode.addItems([m.capitalize() for m in MODES])
    mode.setToolTip("At the end of the stack: loop back to the start, or bounce back and forth")
    mode.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
    mode.currentIndexChanged.connect(lambda i: player.set_mode(MODES[i]))
    tb = window.addToolBar("Cine")
    tb.setObjectName("cine")
    tb.addAction(act)
    tb.addWidget(QLabel(" "))
    tb.addWidget(fps)
    tb.addWidget(mode)
    player.toolbar, player.fps_box, player.mode_box, player.action = tb, fps, mode, act
    view_menu = next((a.menu() for a in window.menuBar().actions() if a.text() == "&View"), None)
    if view_menu is not None:
        sub = view_menu.addMenu("&Cine")
        sub.addAction(act)
        for n, m in enumerate(MODES):
            ma = sub.addAction(m.capitalize())
            ma.setCheckable(True)
            ma.setChecked(n == 0)
            ma.triggered.connect(lambda _c=False, i=n: mode.setCurrentIndex(i))
            mode.currentIndexChanged.connect(lambda i, a=ma, n=n: a.setChecked(i == n))
    return player
