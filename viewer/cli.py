"""The ``hounsfield`` command line.

    hounsfield                      open the viewer on the built-in demo study
    hounsfield PATH [--series UID]  open the viewer on a folder, file or DICOMDIR
    hounsfield info PATH [--json]   list studies and series with their geometry and warnings
    hounsfield convert PATH OUT [--series UID]   write NIfTI / NRRD / MHA
    hounsfield pacs {node,local,echo,query,get,send} ...   PACS query, retrieve and send (see 'pacs -h')
    hounsfield run PLUGIN INPUT --out DIR [--device cpu|cuda] [--param k=v]   run an AI plugin headless
    hounsfield batch PLUGIN SOURCE --out DIR [--scheduler ADDR] [--workers N]  run it over an archive on Dask

Bad input prints one sentence to stderr and exits with status 2; tracebacks go to the log file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from viewer.core.errors import HounsfieldError
from viewer.logs import log, setup_logging

COMMANDS = ("info", "convert", "run", "pacs", "batch", "audit")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hounsfield", description="Hounsfield reading viewer.")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="list studies, series, geometry and warnings")
    info.add_argument("path")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    conv = sub.add_parser("convert", help="write a series as NIfTI (.nii/.nii.gz), NRRD or MHA")
    conv.add_argument("path")
    conv.add_argument("out")
    conv.add_argument("--series", help="SeriesInstanceUID (or id from 'info') to convert")
    from viewer.ai.headless import add_arguments as add_run_arguments

    add_run_arguments(sub.add_parser("run", help="run an AI plugin headless and write its results"))
    from viewer.batch.cli import add_arguments as add_batch_arguments

    add_batch_arguments(sub.add_parser("batch", help="run an AI plugin over an archive on a Dask cluster"))
    return p


def _open_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hounsfield", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", nargs="?", help="folder, DICOM file, DICOMDIR or NIfTI/NRRD/MHA file")
    p.add_argument("--series", help="SeriesInstanceUID to open")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log_file = setup_logging()
    _names_as_on_disk()
    try:
        if argv and argv[0] == "audit":  # the AI audit log (viewer.audit_cli)
            from viewer.audit_cli import audit_command

            return audit_command(argv[1:])
        if argv and argv[0] == "pacs":
            from viewer.pacs.cli import pacs_command

            return pacs_command(argv[1:])
        if argv and argv[0] in COMMANDS:
            args = _parser().parse_args(argv)
            if args.command == "info":
                from viewer.info import print_info

                return print_info(args.path, as_json=args.json)
            if args.command == "convert":
                return convert(args.path, args.out, args.series)
            if args.command == "run":
                from viewer.ai.headless import run_command

                return run_command(args)
            if args.command == "batch":
                from viewer.batch.cli import batch_command

                return batch_command(args)
        args = _open_parser().parse_args(argv)
        from viewer.ui.app import run_viewer

        return run_viewer(args.path, series=args.series)
    except HounsfieldError as exc:
        log.info("user error: %s", exc)
        print(f"hounsfield: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `hounsfield info ... | head`: the reader has gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second failure when Python flushes
        return 0
    except Exception as exc:  # never a traceback in the user's face
        log.exception("unexpected error")
        print(f"hounsfield: an unexpected error stopped the command ({type(exc).__name__}); "
              f"details are in {log_file}.", file=sys.stderr)
        return 1


def _names_as_on_disk() -> None:
    """Print file names whose bytes are not UTF-8 as those bytes (os.fsdecode's surrogates) instead of
    failing the whole listing with a UnicodeEncodeError."""
    out = sys.stdout
    if hasattr(out, "reconfigure") and (out.encoding or "").lower().replace("-", "") == "utf8":
        out.reconfigure(errors="surrogateescape")  # stderr keeps Python's backslashreplace


def one_line(message: str, limit: int = 400) -> str:
    """A message as one short line: control characters folded, an overlong one cut (a last guard;
    the messages themselves must quote file values short)."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[:limit - 5].rstrip() + " (…)."


def convert(path: str, out: str, series: str | None) -> int:
    import viewer
    from viewer.core.formats import is_volume_file

    if not is_volume_file(out):  # before a long load, not after it
        raise HounsfieldError(f"{out}: choose a .nii, .nii.gz, .nrrd, .mha or .mhd file name.")
    vol = viewer.load(path, series=series)
    viewer.save(vol, out)
    for w in vol.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {out}: {vol.shape[2]}x{vol.shape[1]}x{vol.shape[0]} {vol.array.dtype}, "
          f"spacing {', '.join(f'{s:.4g}' for s in vol.spacing)} mm")
    return 0


def dumps(obj) -> str:
    return json.dumps(obj, indent=2)


if __name__ == "__main__":
    sys.exit(main())
