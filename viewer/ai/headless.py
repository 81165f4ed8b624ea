"""``hounsfield run``: run an AI plugin without the viewer, for scripts and batches.

    hounsfield run PLUGIN INPUT --out DIR [--device auto|cpu|cuda] [--param k=v ...]
                   [--series UID] [--models DIR] [--threads N]
    hounsfield run --list [--models DIR]

INPUT is anything ``hounsfield open`` reads (DICOM folder or file, DICOMDIR, NIfTI/NRRD/MHA).
Results are written by ``viewer.ai.outputs.write_results``.  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time

from viewer.core.errors import HounsfieldError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("plugin", nargs="?", help="plugin id (see --list)")
    p.add_argument("input", nargs="?", help="DICOM folder/file, DICOMDIR or NIfTI/NRRD/MHA file")
    p.add_argument("--out", help="folder for the results")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="where to run (default: $HOUNSFIELD_DEVICE or auto: CUDA when present)")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="a plugin parameter; repeatable")
    p.add_argument("--series", help="SeriesInstanceUID to use when INPUT holds several")
    p.add_argument("--models", help="models folder to search (default: the user models folder)")
    p.add_argument("--threads", type=int, help="CPU threads for the model")
    p.add_argument("--list", action="store_true", help="list the installed plugins and exit")


def parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HounsfieldError(f"--param {item!r} must look like name=value.")
        out[key.strip()] = value.strip()
    return out


def list_plugins(registry) -> int:
    plugins = registry.plugins()
    for p in sorted(plugins, key=lambda p: p.id):
        params = ", ".join(f"{q.name}={q.default}" for q in p.parameters)
        extra = f"  ({params})" if params else ""
        print(f"{p.id:28s} {p.task.value:15s} {p.version:8s} {p.name} [{p.source}]{extra}")
    for problem in registry.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not plugins:
        print("no plugins installed", file=sys.stderr)
    return 0


class _Progress:
    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.last = (-1, "")
        self.tty = self.stream.isatty()

    def __call__(self, fraction: float, message: str) -> None:
        pct = int(fraction * 100)
        if self.tty:
            self.stream.write(f"\r{message} {pct:3d}%   ")
            self.stream.flush()
        elif (pct // 10, message) != (self.last[0] // 10, self.last[1]):
            print(f"{message} {pct}%", file=self.stream, flush=True)
        self.last = (pct, message)

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")


def run_command(args: argparse.Namespace) -> int:
    import viewer
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost
    from viewer.ai.outputs import write_results

    registry = Registry(models=args.models)
    if args.list:
        return list_plugins(registry)
    if not args.plugin or not args.input or not args.out:
        raise HounsfieldError("Give a plugin, an input and an output folder, "
                              "e.g. 'hounsfield run ct-denoising scan/ --out results/'.")
    info = registry.get(args.plugin)
    params = parse_params(args.param)
    info.resolve_params(params)  # bad parameters fail before the volume loads
    volume = viewer.load(args.input, series=args.series)
    host = AIHost(registry, device=args.device, threads=args.threads)
    progress = _Progress()
    t0 = time.perf_counter()
    handle = host.run(info, volume, params, on_progress=progress)
    try:
        try:
            results = handle.result()
        except KeyboardInterrupt:
            handle.cancel()
            handle.wait(5)
            raise
        finally:
            progress.end()
    finally:
        host.shutdown()
    files = write_results(results, volume, args.out, info)
    for note in results.notes:
        print(f"note: {note}", file=sys.stderr)
    prov = results.provenance
    print(f"{info.name} {info.version} ran on {prov.get('device_description', prov.get('device'))} "
          f"in {time.perf_counter() - t0:.1f} s; wrote {len(files)} files to {args.out}:")
    for f in files:
        print(f"  {f.name}")
    return 0
