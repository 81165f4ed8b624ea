"""The Qt-free observer list (viewer/core/signals.py)."""

from __future__ import annotations

from viewer.core.signals import Signal


def test_signal_calls_each_slot_once_in_order_and_forgets_disconnected_ones():
    sig, got = Signal(), []
    a = sig.connect(lambda x: got.append(("a", x)))
    sig.connect(a)  # connecting twice does not call twice
    sig.connect(lambda x: got.append(("b", x)))
    sig.emit(1)
    sig.disconnect(a)
    sig.emit(2)
    assert got == [("a", 1), ("b", 1), ("b", 2)]


def test_a_slot_may_disconnect_itself_while_the_signal_emits():
    sig, got = Signal(), []

    def once(x):
        got.append(x)
        sig.disconnect(once)

    sig.connect(once)
    sig.emit(1)
    sig.emit(2)
    assert got == [1]
