"""A minimal observer list with no Qt: the core's models announce changes through ``Signal``s.

Qt widgets, the render layer and plain scripts connect callables to them; nothing here knows who
listens, so the core stays free of Qt and can be driven without a display.
"""

from __future__ import annotations

from collections.abc import Callable


class Signal:
    """A minimal observer list: ``connect(fn)``, ``disconnect(fn)``, ``emit(*args)``."""

    def __init__(self) -> None:
        self._slots: list[Callable] = []

    def connect(self, fn: Callable) -> Callable:
        if fn not in self._slots:
            self._slots.append(fn)
        return fn

    def disconnect(self, fn: Callable) -> None:
        if fn in self._slots:
            self._slots.remove(fn)

    def emit(self, *args) -> None:
        for fn in list(self._slots):
            fn(*args)
