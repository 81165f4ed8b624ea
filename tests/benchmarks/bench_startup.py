"""Start-up benchmark: time from running `hounsfield PATH` to the first rendered slice of the real chest CT.

The viewer runs with HOUNSFIELD_STARTUP_PROBE=1: when the first decoded slice is on screen it prints
the time and the heavy modules imported so far, and quits.  Measured from just before the process
is spawned, in a fresh study index (first opening: headers scanned) and again with the folder
already indexed (reopening).  Baselines measured in the same run:

- the bare interpreter (`python -c pass`);
- Qt + VTK floor: import PySide6 and VTK, show one QVTK widget and render it once;
- core only: scan the folder and decode its middle slice, no GUI.

    python tests/benchmarks/bench_startup.py [--runs 3]

It starts its own Xvfb (1920x1080x24), as `make bench` gives it only a small 8-bit screen.

Target (issue 3): under 2 s; torch and other heavy modules not imported on the way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIEWER_TEST_DATA", REPO.parent / "shared" / "data"))

QT_VTK_FLOOR = r"""
import sys, time
from PySide6.QtWidgets import QApplication
import vtkmodules.vtkRenderingOpenGL2
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.vtkRenderingCore import vtkRenderer
app = QApplication(sys.argv[:1])
w = QVTKRenderWindowInteractor()
w.GetRenderWindow().AddRenderer(vtkRenderer())
w.resize(800, 600)
w.show()
app.processEvents()
w.GetRenderWindow().Render()
print("DONE", time.time(), flush=True)
"""

CORE_ONLY = r"""
import sys, time
from viewer.core.loader import SeriesLoader, choose_series, scan
loader = SeriesLoader(choose_series(scan(sys.argv[1]), None)[0])
first = []
def on_slice(k):
    if not first:
        first.append(time.time())
        loader.cancel()
try:
    loader.run(on_slice)
except Exception:
    pass
print("DONE", first[0], flush=True)
"""


def timed(cmd: list[str], env: dict, marker: str) -> tuple[float, str]:
    """Seconds from spawning ``cmd`` to the wall-clock time it prints after ``marker``, and the rest."""
    t0 = time.time()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    for line in out.stdout.splitlines():
        if line.startswith(marker):
            parts = line.split()
            return float(parts[1]) - t0, " ".join(parts[2:])
    raise RuntimeError(f"{cmd[:3]} did not report ({out.returncode}): {out.stderr[-800:]}")


def hounsfield_cmd() -> list[str]:
    script = Path(sys.executable).parent / "hounsfield"
    return [str(script)] if script.exists() else [sys.executable, "-m", "viewer.cli"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    folder = DATA / "chest-ct"
    if not folder.exists():
        print(f"skipped: real data {folder} is absent")
        return 0
    if not os.environ.get("HOUNSFIELD_BENCH_CHILD"):  # its own Xvfb: 24-bit, big enough for the window
        env = dict(os.environ, HOUNSFIELD_BENCH_CHILD="1")
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1920x1080x24", sys.executable, __file__,
               "--runs", str(args.runs)]
        return subprocess.call(cmd, env=env)
    for f in sorted(folder.iterdir()):  # files in the page cache, as when a study was just received
        f.read_bytes()
    results: dict[str, list[float]] = {k: [] for k in ("python", "floor", "core", "first", "indexed")}
    heavy = set()
    for _ in range(args.runs):
        data_dir = tempfile.mkdtemp(prefix="hounsfield-start-")
        env = dict(os.environ, HOUNSFIELD_DATA_DIR=data_dir, HOUNSFIELD_LOG_DIR=data_dir,
                   HOUNSFIELD_STARTUP_PROBE="1", PYTHONDONTWRITEBYTECODE="1")
        t0 = time.time()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        results["python"].append(time.time() - t0)
        results["floor"].append(timed([sys.executable, "-c", QT_VTK_FLOOR], env, "DONE")[0])
        results["core"].append(timed([sys.executable, "-c", CORE_ONLY, str(folder)],
                                     dict(env, HOUNSFIELD_DATA_DIR=tempfile.mkdtemp()), "DONE")[0])
        secs, mods = timed(hounsfield_cmd() + [str(folder)], env, "HOUNSFIELD_FIRST_SLICE")
        results["first"].append(secs)
        heavy.update(m for m in mods.split(",") if m and m != "-")
        secs, mods = timed(hounsfield_cmd() + [str(folder)], env, "HOUNSFIELD_FIRST_SLICE")
        results["indexed"].append(secs)
        heavy.update(m for m in mods.split(",") if m and m != "-")
        shutil.rmtree(data_dir, ignore_errors=True)

    def row(label: str, key: str) -> str:
        v = results[key]
        return f"  {label:<58} best {min(v):5.2f} s  median {statistics.median(v):5.2f} s"

    floor = min(results["floor"])
    print(f"time to the first rendered slice of the chest CT (512x512x141), {args.runs} runs, "
          "best and median:")
    print(row("bare interpreter: python -c pass (baseline)", "python"))
    print(row("Qt + VTK floor: one QVTK widget rendered (baseline)", "floor"))
    print(row("core only: scan + first decoded slice, no GUI (baseline)", "core"))
    print(row("hounsfield PATH, folder not yet indexed", "first"))
    print(row("hounsfield PATH, folder already in the study index", "indexed"))
    print(f"  ratio first slice / Qt+VTK floor: {min(results['first']) / floor:.2f}x (new folder), "
          f"{min(results['indexed']) / floor:.2f}x (indexed)")
    print(f"  heavy modules imported before the first slice: {', '.join(sorted(heavy)) or 'none'} "
          "(checked: torch, monai, SimpleITK, pyvista, pyvistaqt, scipy, matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
