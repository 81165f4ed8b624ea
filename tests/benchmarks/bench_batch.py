"""Batch throughput: ``hounsfield batch`` on 1 and 2 local Dask workers beside a plain loop of ``hounsfield run``.

    python tests/benchmarks/bench_batch.py [--series 40] [--loop-series 8] [--skip-real] [--repeat N]

The baseline, measured in the same run: a sequential loop that runs ``hounsfield run ct-denoising
SERIES --out DIR`` as a subprocess per series (what a script without the batch command does; each
run pays for its process, torch and the weights).  Then the same plugin over the same series with
``hounsfield batch --workers 1`` (one worker, the model on both cores) and ``--workers 2`` (one
core each).  Every figure is end to end, as a user meets it: the batch rows include starting the
cluster and its AI workers.  The loop runs on the first --loop-series series only (it is slow);
its rate is series per minute over those.

Archives: a generated one of --series small CT series (20 slices of 160x160, one study each), and
the real CT series in ../shared/data (chest-ct DICOM, the two radiomics lung CTs, the aorta crop and
TotalSegmentator's example CT).  Overhead per task: a plugin that does nothing, on one warm worker,
over the generated archive (load, dispatch, the AI worker round trip and the writing of its
results.json), and for the denoiser the time a task spends outside the network.

Targets (issue 18): the batch with one worker not slower than the loop; two workers approaching
2x one worker for a CPU-bound plugin on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("VIEWER_TEST_DATA", REPO.parent / "shared" / "data"))
SHAPE = (20, 160, 160)
REAL = ["chest-ct", "lung-nodule-ct/radiomics-lung1/image.nrrd", "lung-nodule-ct/radiomics-lung2/image.nrrd",
        "ct-aorta/ct_cropped.nii.gz", "totalseg-examples/example_ct.nii.gz"]


def generate(root: Path, count: int) -> list[Path]:
    from tests.dicom_factory import axial, phantom, write_series

    folders = []
    for n in range(count):
        folder = root / f"patient{n:02d}" / "ct"
        write_series(folder, phantom(SHAPE, seed=n), axial(spacing=(0.8, 0.8, 2.5)), seed=n, series_number=n + 1)
        folders.append(folder)
    return folders


def hounsfield(*args: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "viewer.cli", *args], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def loop(inputs: list[Path], out: Path, env: dict) -> float:
    return sum(hounsfield("run", "ct-denoising", str(p), "--out", str(out / f"s{n}"), env=env)
               for n, p in enumerate(inputs))


def batch(source: Path, out: Path, workers: int, env: dict) -> tuple[float, list[dict]]:
    wall = hounsfield("batch", "ct-denoising", str(source), "--out", str(out), "--workers", str(workers),
                      "--dashboard", "none", env=env)
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"batch failed on {len(bad)} series: {bad[0]['error']}")
    return wall, rows


def noop_overhead(source: Path, out: Path) -> tuple[float, int]:
    """Seconds per task of a plugin that does nothing, one warm worker (first task excluded)."""
    from tests.ai.fake_plugins import info
    from viewer.batch import folder_items, open_cluster, run_batch

    items = folder_items(str(source))
    with open_cluster(workers=1, dashboard=None) as c:
        run_batch(info("pid"), items[:1], out / "warm", c.client, threads=c.threads, progress=False)
        t0 = time.perf_counter()
        report = run_batch(info("pid"), items[1:], out / "noop", c.client, threads=c.threads, progress=False)
        return (time.perf_counter() - t0) / max(1, report.ok), report.ok


def compare(loop_inputs: list[Path], source: Path, out: Path, cores: int, repeat: int, env: dict):
    """The loop and the batch on 1 and 2 workers, ``repeat`` rounds in turn (the order rotated each round, so
    a spell of load from other work falls on each in turn); the best round of each."""
    best: dict[str, tuple] = {}
    jobs = ["loop", 1, 2]
    for n in range(repeat):
        for what in jobs[n % 3:] + jobs[:n % 3]:
            tag = out / f"{what}-{n}"
            if what == "loop":
                result: tuple = (loop(loop_inputs, tag, env), [])
            else:
                result = batch(source, tag, what, env)
            if what not in best or result[0] < best[what][0]:
                best[what] = result
    names = {1: f"batch, 1 worker ({cores} model threads)", 2: f"batch, 2 workers ({max(1, cores // 2)} model "
                                                               "thread(s) each)"}
    return best["loop"][0], [(names[w], *best[w]) for w in (1, 2)]


def table(title: str, n: int, loop_n: int, loop_s: float, runs: list[tuple[str, float, list[dict]]]) -> None:
    base = loop_n / loop_s * 60
    print(f"\n{title}")
    print(f"  {'method':58s} {'series':>7s} {'wall s':>8s} {'series/min':>11s} {'vs loop':>8s}")
    print(f"  {'loop: hounsfield run per series, sequential (baseline)':58s} {loop_n:7d} {loop_s:8.1f} "
          f"{base:11.2f} {1.0:7.2f}x")
    for name, wall, _rows in runs:
        rate = n / wall * 60
        print(f"  {name:58s} {n:7d} {wall:8.1f} {rate:11.2f} {rate / base:7.2f}x")
    for name, _wall, rows in runs:
        load, net, write = (_median(rows, k) for k in ("load_seconds", "run_seconds", "write_seconds"))
        rest = statistics.median(float(r["seconds"]) - sum(float(r[k]) for k in ("load_seconds", "run_seconds",
                                                                                    "write_seconds")) for r in rows)
        print(f"  {name}, per series (median): load {load:.2f} s, network {net:.2f} s, writing {write:.2f} s, "
              f"the rest (AI worker round trip) {rest:.2f} s")


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(float(r[key]) for r in rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=40)
    p.add_argument("--loop-series", type=int, default=8)
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--repeat", type=int, default=1, help="rounds of each measurement; the best is shown")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "HOUNSFIELD_DATA_DIR": str(root / "data"), "HOUNSFIELD_LOG_DIR": str(root / "log"),
               "PYTHONPATH": str(REPO)}
        os.environ.update({k: env[k] for k in ("HOUNSFIELD_DATA_DIR", "HOUNSFIELD_LOG_DIR")})
        folders = generate(root / "archive", args.series)
        cores = len(os.sched_getaffinity(0))
        print(f"ct-denoising on the CPU ({cores} cores, no GPU); other work on this machine adds noise")
        loop_n = min(args.loop_series, len(folders))
        loop_s, runs = compare(folders[:loop_n], root / "archive", root / "gen", cores, args.repeat, env)
        table(f"Generated archive: {len(folders)} CT series of {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} (slices x rows x "
              f"columns), the loop on the first {loop_n}", len(folders), loop_n, loop_s, runs)
        per_task, count = noop_overhead(root / "archive", root / "noop")
        print(f"\nOverhead per task: {per_task * 1000:.0f} ms (a plugin that does nothing, 1 warm worker, "
              f"{count} series: load, dispatch, AI worker round trip, results.json)")
        if not args.skip_real:
            real = [DATA / r for r in REAL if (DATA / r).exists()]
            if not real:
                print(f"\nreal CT series: none found under {DATA}")
                return 0
            listing = root / "real.txt"
            listing.write_text("\n".join(str(r) for r in real) + "\n")
            loop_s, runs = compare(real, listing, root / "real", cores, args.repeat, env)
            names = ", ".join(r.relative_to(DATA).as_posix() for r in real)
            table(f"Real CT series ({len(real)}: {names})", len(real), len(real), loop_s, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
