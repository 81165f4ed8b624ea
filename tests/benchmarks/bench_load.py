"""Load benchmark: Hounsfield's DICOM loader against SimpleITK and a plain pydicom loop.

Each method runs in a fresh subprocess (so imports and peak memory are its own) on files
already in the page cache (one warm-up read first), three times; the best time is kept.
Printed: full load time, time until the first slice is available, peak memory above the
interpreter's baseline after imports, and ratios against the baselines measured in this run.

    python tests/benchmarks/bench_load.py [--slices 600] [--keep]

Targets (issue 2): full load >= 2x faster than SimpleITK's ImageSeriesReader; first slice
< 0.3 s; peak memory <= 1.3x the volume's int16 size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIEWER_TEST_DATA", REPO.parent / "shared" / "data"))

CHILD = r"""
import json, os, resource, sys, time
method, folder = sys.argv[1], sys.argv[2]
import numpy as np
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
first = None
if method.startswith('hounsfield'):
    import viewer
    from viewer.core.loader import scan, choose_series, SeriesLoader
    if method == 'hounsfield-indexed':
        scan(folder)  # the folder is already in the study index, as when reopening a study
    base = rss(); t0 = time.perf_counter()
    result = scan(folder, use_index=(method == 'hounsfield-indexed'))
    loader = SeriesLoader(choose_series(result, None)[0])
    def on_slice(k):
        global first
        if first is None:
            first = time.perf_counter() - t0
    vol = loader.run(on_slice)
    arr = vol.array
elif method == 'simpleitk':
    import SimpleITK as sitk
    base = rss(); t0 = time.perf_counter()
    r = sitk.ImageSeriesReader()
    r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder))
    image = r.Execute()
    arr = sitk.GetArrayViewFromImage(image)
elif method == 'pydicom':
    import pydicom
    base = rss(); t0 = time.perf_counter()
    dss = [pydicom.dcmread(os.path.join(folder, f)) for f in os.listdir(folder)]
    normal = np.cross(*np.reshape(np.asarray(dss[0].ImageOrientationPatient, float), (2, 3)))
    dss.sort(key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, float), normal)))
    arr = np.empty((len(dss), dss[0].Rows, dss[0].Columns), np.int16)
    for k, d in enumerate(dss):
        arr[k] = d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
total = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({'total': total, 'first': first if first is not None else total,
                  'peak_above_base': peak - base, 'nbytes': int(np.prod(arr.shape)) * 2,
                  'checksum': float(np.asarray(arr, dtype=np.float64).sum())}))
"""

METHODS = ("hounsfield", "hounsfield-indexed", "simpleitk", "pydicom")


def run_child(method: str, folder: str, data_dir: str) -> dict:
    env = dict(os.environ, HOUNSFIELD_DATA_DIR=data_dir, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", CHILD, method, folder], capture_output=True, text=True,
                         env=env, cwd=REPO, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm(folder: str) -> None:
    for f in os.listdir(folder):
        with open(os.path.join(folder, f), "rb") as fh:
            while fh.read(1 << 20):
                pass


def generate_series(folder: Path, n: int) -> None:
    """An uncompressed 512x512xN CT series: real chest CT slices if present, else the demo phantom."""
    import numpy as np
    import pydicom
    from pydicom.uid import generate_uid

    src = DATA / "chest-ct"
    if src.exists():
        templates = [pydicom.dcmread(p) for p in sorted(src.iterdir())[::10]]
    else:
        raise SystemExit("bench_load: ../shared/data/chest-ct is needed as the template for the generated series")
    series_uid, rng = generate_uid(), np.random.default_rng(0)
    for k in range(n):
        ds = templates[k % len(templates)].copy()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-250, -164, round(-600 + 1.0 * k, 2)]
        ds.SliceLocation = ds.ImagePositionPatient[2]
        ds.save_as(folder / f"{rng.integers(1 << 30):010d}.dcm", enforce_file_format=True)


def bench(name: str, folder: str, data_dir: str, repeats: int) -> None:
    warm(folder)
    results = {}
    for m in METHODS:
        runs = [run_child(m, folder, data_dir) for _ in range(repeats)]
        results[m] = min(runs, key=lambda r: r["total"])
        results[m]["first"] = min(r["first"] for r in runs)
    sums = {m: r["checksum"] for m, r in results.items()}
    assert len(set(sums.values())) == 1, f"methods disagree on voxel values: {sums}"
    nbytes = results["hounsfield"]["nbytes"]
    print(f"\n{name}: volume {nbytes / 2**20:.0f} MiB int16, best of {repeats}, files in page cache")
    print(f"  {'method':<20}{'load s':>9}{'first slice s':>15}{'peak MiB':>10}{'peak/volume':>13}")
    for m, r in results.items():
        print(f"  {m:<20}{r['total']:>9.3f}{r['first']:>15.3f}{r['peak_above_base'] / 2**20:>10.0f}"
              f"{r['peak_above_base'] / nbytes:>13.2f}")
    h, hi = results["hounsfield"], results["hounsfield-indexed"]
    for base in ("simpleitk", "pydicom"):
        b = results[base]["total"]
        print(f"  speed-up vs {base}: cold {b / h['total']:.2f}x, indexed {b / hi['total']:.2f}x "
              f"(target >= 2x vs simpleitk)")
    print(f"  first slice: cold {h['first']:.3f} s, indexed {hi['first']:.3f} s (target < 0.3 s)")
    print(f"  peak memory: {h['peak_above_base'] / nbytes:.2f}x the volume (target <= 1.3x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "index")
        chest = DATA / "chest-ct"
        if chest.exists():
            bench("real chest CT (141 slices)", str(chest), data_dir, args.repeats)
        else:
            print(f"bench_load: {chest} is absent; skipping the real chest CT")
        gen = Path(tmp) / "generated"
        gen.mkdir()
        generate_series(gen, args.slices)
        bench(f"generated uncompressed CT (512x512x{args.slices})", str(gen), data_dir, args.repeats)


if __name__ == "__main__":
    main()
