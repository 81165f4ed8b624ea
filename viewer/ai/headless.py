"""``hounsfield run``: run an AI plugin without the viewer, for scripts and batches.

    hounsfield run PLUGIN INPUT --out DIR [--device auto|cpu|cuda] [--param k=v ...]
                   [--series UID] [--models DIR] [--threads N]
                   [--point X,Y,Z[,neg] ...] [--box X0,Y0,Z0,X1,Y1,Z1] [--modality CT|MR]
    hounsfield run --list [--models DIR]

INPUT is anything ``hounsfield open`` reads (DICOM folder or file, DICOMDIR, NIfTI/NRRD/MHA).
``--point`` and ``--box`` are prompts in LPS mm for a plugin that takes them (``,neg`` marks a
negative point; ``,pos`` or nothing a positive one; write ``--point=-40,12,-88`` with ``=`` when
the first coordinate is negative); ``--modality`` says what a file without a modality of its own
(NIfTI, NRRD, MHA) is.
Results are written by ``viewer.ai.outputs.write_results``.  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
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
    p.add_argument("--point", action="append", default=[], metavar="X,Y,Z[,neg]",
                   help="a prompt point in LPS mm (',neg' for a negative one; --point=-1,2,3 when the first "
                        "coordinate is negative); repeatable")
    p.add_argument("--box", metavar="X0,Y0,Z0,X1,Y1,Z1",
                   help="a prompt box in LPS mm, two opposite corners (--box=-1,... when negative)")
    p.add_argument("--modality", type=str.upper, choices=("CT", "MR"),
                   help="the modality of an input file that has none (NIfTI, NRRD, MHA)")


def _numbers(text: str, n: int, what: str, example: str) -> list[float]:
    parts = [t.strip() for t in str(text).split(",")]
    try:
        values = [float(t) for t in parts[:n]]
    except ValueError:
        values = []
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise HounsfieldError(f"{what} {text!r} must be {n} numbers in mm separated by commas, e.g. {example}.")
    return values


def parse_point(text: str):
    """``"X,Y,Z"``, ``"X,Y,Z,pos"`` or ``"X,Y,Z,neg"`` (LPS mm) as a ``Point``."""
    from viewer.ai.api import Point

    parts = [t.strip() for t in str(text).split(",")]
    sign = parts[3].lower() if len(parts) == 4 else "pos"
    if len(parts) not in (3, 4) or sign not in ("pos", "neg", "+", "-"):
        raise HounsfieldError(f"--point {text!r} must look like X,Y,Z or X,Y,Z,neg (LPS mm), e.g. -40.5,12,-88,neg.")
    return Point(tuple(_numbers(",".join(parts[:3]), 3, "--point", "-40.5,12,-88")), sign in ("pos", "+"))


BOX_EXAMPLE = "-60,0,-100,-30,30,-70"


def parse_box(text: str):
    """``"X0,Y0,Z0,X1,Y1,Z1"`` (two opposite corners, LPS mm) as a ``Box``."""
    from viewer.ai.api import Box

    if len(str(text).split(",")) != 6:
        raise HounsfieldError(f"--box {text!r} must be six numbers X0,Y0,Z0,X1,Y1,Z1 in mm, "
                              f"e.g. {BOX_EXAMPLE}.")
    v = _numbers(text, 6, "--box", BOX_EXAMPLE)
    if any(a == b for a, b in zip(v[:3], v[3:])):
        raise HounsfieldError(f"--box {text!r} is flat: its two corners must differ in x, y and z.")
    return Box(tuple(v[:3]), tuple(v[3:])).normalised()


def parse_prompts(points: list[str], box: str | None):
    """The ``Prompts`` of ``--point`` and ``--box`` arguments."""
    from viewer.ai.api import Prompts

    return Prompts(tuple(parse_point(p) for p in points), parse_box(box) if box else None)


def apply_modality(volume, modality: str | None):
    """Give ``volume`` the ``--modality`` when its file had none; a DICOM series keeps its own."""
    from viewer.ai.modality import assume_modality, is_dicom

    if not modality or volume.modality.upper() == modality:
        return volume
    if is_dicom(volume):
        raise HounsfieldError(f"The input is a DICOM {volume.modality} series; --modality is only for files "
                              "without a modality (NIfTI, NRRD, MHA).")
    return assume_modality(volume, modality)


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


def _extent(volume) -> str:
    """The LPS box of a volume's voxel centres, in words: 'x -250.0 to 250.0, y ... mm (LPS)'."""
    import numpy as np

    ends = [(0, n - 1) for n in volume.shape[::-1]]
    corners = np.array([volume.index_to_lps([i, j, k]) for i in ends[0] for j in ends[1] for k in ends[2]])
    lo, hi = corners.min(0), corners.max(0)
    return ", ".join(f"{a} {lo[d]:.1f} to {hi[d]:.1f}" for d, a in enumerate("xyz")) + " mm (LPS)"


def run_command(args: argparse.Namespace) -> int:
    import viewer
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost
    from viewer.ai.outputs import output_folder, write_results

    registry = Registry(models=args.models)
    if args.list:
        return list_plugins(registry)
    if not args.plugin or not args.input or not args.out:
        raise HounsfieldError("Give a plugin, an input and an output folder, "
                              "e.g. 'hounsfield run ct-denoising scan/ --out results/'.")
    info = registry.get(args.plugin)
    params = parse_params(args.param)
    info.resolve_params(params)  # bad parameters fail before the volume loads
    prompts = parse_prompts(getattr(args, "point", []) or [], getattr(args, "box", None))
    if prompts and not info.prompts:
        raise HounsfieldError(f"{info.name} takes no --point or --box prompts.")
    volume = apply_modality(viewer.load(args.input, series=args.series), getattr(args, "modality", None))
    accepts = {m.upper() for m in info.inputs[0].modalities} if info.inputs else set()
    if volume.modality.upper() in ("OT", "") and accepts and "OT" not in accepts:
        wanted = "/".join(info.inputs[0].modalities)
        options = " or ".join(f"--modality {m}" for m in info.inputs[0].modalities)
        raise HounsfieldError(f"{info.name} takes {wanted} images and {os.path.basename(args.input.rstrip('/'))} "
                              f"does not say what it is; add {options} to say which it is.")
    if prompts:  # a click off the image is said before the run (the plugin said only "needs a click")
        from viewer.ai.api import check_prompts

        if not check_prompts(prompts, volume, info.prompts, info.name)[0]:  # (a partial drop: the run's note)
            raise HounsfieldError(f"No --point or --box lies inside the image, which spans {_extent(volume)}.")
    output_folder(args.out)  # a folder it cannot write in is said before the model runs, not after
    host = AIHost(registry, device=args.device, threads=args.threads)
    progress = _Progress()
    t0 = time.perf_counter()
    handle = host.run(info, volume, params, on_progress=progress, prompts=prompts)
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
    for w in volume.warnings:  # what the load left out or filled in: the results stand on this input
        print(f"warning: {w}", file=sys.stderr)
    for note in results.notes:
        print(f"note: {note}", file=sys.stderr)
    prov = results.provenance
    print(f"{info.name} {info.version} ran on {prov.get('device_description', prov.get('device'))} "
          f"in {time.perf_counter() - t0:.1f} s; wrote {len(files)} files to {args.out}:")
    for f in files:
        print(f"  {f.name}")
    return 0
