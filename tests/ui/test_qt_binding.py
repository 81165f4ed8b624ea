"""Guard the PySide6 pin: PySide6 6.12.0 on CPython 3.11 takes a reference away from None on
every void call (setText, update, processEvents...), and after a few thousand calls the
interpreter aborts with "Fatal Python error: none_dealloc".  pyproject.toml excludes it."""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = """
import sys
from PySide6.QtWidgets import QApplication, QLabel
app = QApplication(sys.argv[:1])
label = QLabel()
before = sys.getrefcount(None)
for _ in range(30000):
    app.processEvents()
    label.setText("x")
print("delta", sys.getrefcount(None) - before)
"""


def test_void_qt_calls_keep_none_alive():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    delta = int(out.stdout.split("delta")[-1])
    assert abs(delta) < 1000, f"the Qt binding leaks references to None ({delta} over 30000 calls)"
