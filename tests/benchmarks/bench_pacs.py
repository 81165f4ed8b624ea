"""PACS retrieve benchmark: Hounsfield's C-GET against dcmtk's ``getscu`` on the same Orthanc, same run.

Like the PACS tests, it runs Debian's Orthanc in a private network namespace holding only
loopback (root needed; ``orthanc``, ``orthanc-dicomweb`` and ``dcmtk`` are apt-installed when
missing), seeds it with the real 141-slice chest CT, then retrieves the study in alternating
rounds: ``getscu`` (a fresh process writing into a fresh folder, with and without DCMTK's
TCP_NODELAY=1) and ``RetrieveJob(...).run()`` in this process (query the study's series, C-GET,
write each instance atomically, record the series in a fresh study index).  Printed: median and
best wall time of each, the ratio against the faster getscu baseline, and for information C-MOVE,
WADO-RS and the ``hounsfield pacs get`` command end to end (Python start-up included).

    python tests/benchmarks/bench_pacs.py [--rounds 5]

Target (PACS issue): C-GET of the 141-slice chest CT <= 1.5x getscu's time.
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
sys.path.insert(0, str(REPO))

from tests.pacs import netns  # noqa: E402
from tests.pacs.orthanc import OrthancServer, ensure_packages  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    chest = DATA / "chest-ct"
    if not chest.exists():
        raise SystemExit(f"bench_pacs: {chest} is absent (set VIEWER_TEST_DATA)")
    if os.geteuid() != 0:
        raise SystemExit("bench_pacs: needs root (a private network namespace for Orthanc)")
    ensure_packages()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pacs-"))
    old_ns = netns.enter()
    orthanc = OrthancServer(tmp / "orthanc", modalities={"hounsfield": ("HOUNSFIELD", "127.0.0.1", 11112),
                                                         "getscu": ("GETSCU", "127.0.0.1", 11113)})
    try:
        orthanc.start()
        nodelay = {**os.environ, "TCP_NODELAY": "1"}
        subprocess.run(["storescu", "-R", "-aec", "ORTHANC", "+sd", "127.0.0.1", "4242", str(chest)], env=nodelay,
                       check=True, capture_output=True, timeout=300)
        run_rounds(orthanc, chest, tmp, args.rounds, nodelay)
    finally:
        orthanc.stop()
        netns.leave(old_ns)
        shutil.rmtree(tmp, ignore_errors=True)


def run_rounds(orthanc: OrthancServer, chest: Path, tmp: Path, rounds: int, nodelay: dict) -> None:
    import pydicom

    study = str(pydicom.dcmread(next(chest.iterdir()), stop_before_pixels=True).StudyInstanceUID)
    os.environ["HOUNSFIELD_CONFIG_DIR"] = str(tmp / "config")
    from viewer.pacs import LocalAE, PacsNode, PacsSettings, RetrieveJob, StorageSCP

    local = LocalAE("HOUNSFIELD", 11112)
    dimse = PacsNode("orthanc", ae_title="ORTHANC", host="127.0.0.1", port=orthanc.dicom_port)
    web = PacsNode("web", "dicomweb", url=orthanc.dicomweb_url)
    settings = PacsSettings(local)
    settings.add(dimse)
    settings.save()

    def getscu(env):
        out = tmp / "getscu"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        subprocess.run(["getscu", "-aet", "GETSCU", "-aec", "ORTHANC", "-S", "-k", "QueryRetrieveLevel=STUDY",
                        "-k", f"StudyInstanceUID={study}", "-od", str(out), "127.0.0.1", str(orthanc.dicom_port)],
                       env=env, check=True, capture_output=True, timeout=120)
        assert count(out) == 141, count(out)

    def ours(node, method, scp=None):
        data = tmp / "data"
        shutil.rmtree(data, ignore_errors=True)
        os.environ["HOUNSFIELD_DATA_DIR"] = str(data)
        result = RetrieveJob(node, study, method=method, local=local, scp=scp).run()
        assert result.received == 141 and count(data / "studies") == 141

    def cli():
        shutil.rmtree(tmp / "data", ignore_errors=True)
        subprocess.run([sys.executable, "-m", "viewer.cli", "pacs", "get", "orthanc", study], check=True,
                       capture_output=True, timeout=120, cwd=REPO,
                       env={**os.environ, "HOUNSFIELD_DATA_DIR": str(tmp / "data")})

    with StorageSCP(local) as scp:
        cases = {
            "getscu (dcmtk)": lambda: getscu(os.environ),
            "getscu, TCP_NODELAY=1": lambda: getscu(nodelay),
            "hounsfield C-GET": lambda: ours(dimse, "C-GET"),
            "hounsfield C-MOVE": lambda: ours(dimse, "C-MOVE", scp),
            "hounsfield WADO-RS": lambda: ours(web, "WADO-RS"),
            "hounsfield pacs get (CLI)": cli,
        }
        for fn in cases.values():  # warm-up: page cache, imports
            fn()
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(rounds):
            for name, fn in cases.items():
                times[name].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    version = orthanc.rest("/system")["Version"]
    print(f"\nPACS retrieve: 141-slice chest CT (74 MiB) from Orthanc {version} over loopback, "
          f"{rounds} alternating rounds")
    print(f"  {'method':<28}{'median s':>10}{'best s':>9}")
    for k, v in times.items():
        print(f"  {k:<28}{med[k]:>10.3f}{min(v):>9.3f}")
    base_name = min(("getscu (dcmtk)", "getscu, TCP_NODELAY=1"), key=med.get)
    ratio = med["hounsfield C-GET"] / med[base_name]
    best = min(times["hounsfield C-GET"]) / min(times[base_name])
    print(f"  ratio C-GET / {base_name}: {ratio:.2f}x median, {best:.2f}x best (target <= 1.5x)")
    print("  (the CLI line includes the Python interpreter and imports; the target compares the retrieve itself)")


if __name__ == "__main__":
    main()
