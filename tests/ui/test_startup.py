"""`hounsfield PATH` shows the first slice without importing heavy modules (times are in
tests/benchmarks/bench_startup.py, not here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ui.conftest import needs_display

pytestmark = pytest.mark.gui


def test_first_slice_is_shown_without_torch_or_monai(chest_ct_dir, tmp_path):
    needs_display()
    script = Path(sys.executable).parent / "hounsfield"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "viewer.cli"]
    env = dict(os.environ, HOUNSFIELD_STARTUP_PROBE="1", HOUNSFIELD_DATA_DIR=str(tmp_path),
               HOUNSFIELD_LOG_DIR=str(tmp_path))
    out = subprocess.run(cmd + [str(chest_ct_dir)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-800:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("HOUNSFIELD_FIRST_SLICE"))
    heavy = line.split()[2].split(",")
    for module in ("torch", "monai", "pyvista", "scipy", "matplotlib"):
        assert module not in heavy
