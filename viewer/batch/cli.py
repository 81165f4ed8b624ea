"""``hounsfield batch``: run an AI plugin over an archive on a Dask cluster.

    hounsfield batch PLUGIN SOURCE --out DIR [--param k=v ...] [--scheduler tcp://HOST:8786]
                     [--workers N] [--threads-per-worker N] [--retries N] [--send NODE] [--gpus]
    hounsfield batch PLUGIN --pacs NODE [--modality CT] [--from DATE] [--to DATE] --out DIR ...

SOURCE is a folder tree (every image series the DICOM scanner finds, and every NIfTI/NRRD/MHA
file), or a text file (.txt, .lst, .list) naming one path a line.  Progress goes to stderr; the
exit status is 0 when every series has its results, 1 when some failed (their errors are in
DIR/summary.csv), 2 for bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from viewer.core.errors import HounsfieldError

LIST_SUFFIXES = (".txt", ".lst", ".list")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("plugin", help="plugin id (see 'hounsfield run --list')")
    p.add_argument("source", nargs="?", help="folder tree, or a .txt file listing paths (not with --pacs)")
    p.add_argument("--out", required=True, help="folder for the results and summary.csv")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="a plugin parameter; repeatable")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=int, help="local workers (default: sized to the cores and memory)")
    p.add_argument("--threads-per-worker", type=int, dest="threads",
                   help="CPU threads for each worker's model (default: the cores shared among the workers)")
    p.add_argument("--retries", type=int, default=1, help="tries again for a series that fails (default 1)")
    p.add_argument("--send", metavar="NODE", help="store the DICOM results (SEG, SR) on this PACS node")
    p.add_argument("--gpus", action="store_true", help="one local worker per CUDA GPU")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="where the model runs (default: $HOUNSFIELD_DEVICE or auto)")
    p.add_argument("--models", help="models folder to search (default: the user models folder)")
    p.add_argument("--dashboard", default=":8787", help="local dashboard address, or 'none' (default :8787)")
    pacs = p.add_argument_group("PACS source")
    pacs.add_argument("--pacs", metavar="NODE", help="query this PACS node for the series to run on")
    pacs.add_argument("--modality", default="", help="only series of this modality (e.g. CT)")
    pacs.add_argument("--from", dest="date_from", default="", help="study date from (YYYY-MM-DD)")
    pacs.add_argument("--to", dest="date_to", default="", help="study date to (YYYY-MM-DD)")
    pacs.add_argument("--patient-id", default="", help="only this patient's studies")
    pacs.add_argument("--accession", default="", help="only the study with this accession number")
    pacs.add_argument("--study", default="", help="only this StudyInstanceUID")


def plan(args: argparse.Namespace, settings=None) -> list:
    """The items of the command's source."""
    from viewer.batch.sources import folder_items, list_items, pacs_items

    out = os.path.abspath(args.out)
    if args.pacs:
        if args.source:
            raise HounsfieldError("Give either a SOURCE path or --pacs NODE, not both.")
        from viewer.pacs import PacsSettings

        settings = settings or PacsSettings.load()
        return pacs_items(settings.node(args.pacs), settings.local, modality=args.modality,
                          date_from=args.date_from, date_to=args.date_to, patient_id=args.patient_id,
                          accession=args.accession, study_uid=args.study)
    if not args.source:
        raise HounsfieldError("Give a SOURCE folder or list file, or --pacs NODE, e.g. "
                              "'hounsfield batch ct-denoising archive/ --out results/'.")
    if os.path.isfile(args.source) and args.source.lower().endswith(LIST_SUFFIXES):
        return list_items(args.source, exclude=out)
    return folder_items(args.source, exclude=out)


def batch_command(args: argparse.Namespace) -> int:
    from viewer.ai.discovery import Registry
    from viewer.ai.headless import parse_params
    from viewer.batch.cluster import open_cluster
    from viewer.batch.runner import pending, run_batch

    info = Registry(models=args.models).get(args.plugin)
    params = parse_params(args.param)
    info.resolve_params(params)  # bad parameters fail before the archive is scanned
    if args.gpus and not args.scheduler:
        from viewer.batch.cluster import cuda_devices

        if not cuda_devices():
            raise HounsfieldError("--gpus asks for one worker per CUDA GPU but none is available here; "
                                  "run without --gpus to use the CPU.")
    send = local = settings = None
    if args.send or args.pacs:
        from viewer.pacs import PacsSettings

        settings = PacsSettings.load()
        local = settings.local
        if args.send:
            send = settings.node(args.send)
    items = plan(args, settings)
    if not items:
        print("hounsfield: no image series were found; nothing to do.", file=sys.stderr)
        return 0
    todo = len(pending(info, items, args.out, params=params, send=send))
    print(f"{len(items)} series to process with {info.name} {info.version}"
          + (f" ({len(items) - todo} already done)" if todo < len(items) else ""), file=sys.stderr)
    if not todo:  # no cluster to start: the summary is brought up to date from the results' markers
        report = run_batch(info, items, args.out, None, params=params, send=send, local=local)
        return _report(report)
    dashboard = None if args.dashboard.lower() in ("none", "off", "") else args.dashboard
    try:
        with open_cluster(args.scheduler, workers=args.workers, threads=args.threads, gpus=args.gpus,
                          dashboard=dashboard) as cluster:
            where = "local cluster" if cluster.local else f"cluster at {args.scheduler}"
            gpus = f", one per GPU ({cluster.gpus})" if cluster.gpus else ""
            plural = "s" if cluster.threads != 1 else ""
            each = f", {cluster.threads} model thread{plural} each" if cluster.threads else ""
            print(f"{where}: {cluster.workers} workers{gpus}{each}", file=sys.stderr)
            if cluster.dashboard:
                print(f"Dask dashboard: {cluster.dashboard}", file=sys.stderr)
            try:
                report = run_batch(info, items, args.out, cluster.client, params=params, retries=args.retries,
                                   device=args.device, threads=cluster.threads,
                                   workers_by_host=cluster.workers_by_host, workers=cluster.workers, send=send,
                                   local=local)
            except KeyboardInterrupt:
                # the scheduler's complaints about the workers Ctrl-C stopped ("lose scattered data") are
                # no news to the reader: the sentence below says what stopped and what is kept
                logging.getLogger("distributed").setLevel(logging.CRITICAL)
                raise
    except KeyboardInterrupt:
        kept = len(items) - len(pending(info, items, args.out, params=params, send=send))
        print(f"hounsfield: the batch was interrupted; {kept} of {len(items)} series have their results in "
              f"{args.out} (summary.csv); run the same command again to do the rest.", file=sys.stderr)
        return 130
    return _report(report)


def _report(report) -> int:
    print(f"{report.total} series: {report.ok} done now, {report.skipped} already done, {report.failed} failed "
          f"({report.seconds:.1f} s); summary in {report.summary}", file=sys.stderr)
    return 1 if report.failed else 0
