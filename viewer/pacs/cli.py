"""``hounsfield pacs ...``: PACS nodes, test, query, retrieve and send from the command line.

    hounsfield pacs node add NAME --aet AET --host HOST --port PORT [--retrieve C-GET|C-MOVE] [--tls ...]
    hounsfield pacs node add NAME --url URL [--user U --password P | --token T]
    hounsfield pacs node list [--json] | node remove NAME
    hounsfield pacs local [--aet AET] [--port PORT]          our AE title and storage port
    hounsfield pacs echo NODE                                 "Test connection"
    hounsfield pacs query NODE [--name 'DOE^*'] [--id ID] [--from DATE] [--to DATE] [--modality CT]
                               [--accession N] [--study UID (lists its series)] [--sort COLUMN] [--json]
    hounsfield pacs get NODE STUDY_UID [--series UID ...] [--method C-GET|C-MOVE|WADO-RS] [--json]
    hounsfield pacs send NODE PATH...

Errors are one sentence on stderr and exit status 2 (the ``hounsfield`` command's contract).
"""

from __future__ import annotations

import argparse
import json
import sys

from viewer.core.errors import shown
from viewer.pacs.nodes import PacsNode, PacsSettings, TlsSettings
from viewer.pacs.query import COLUMNS, Query, sort_results


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hounsfield pacs", description="Query, retrieve and send with a PACS.")
    sub = p.add_subparsers(dest="action", required=True)

    node = sub.add_parser("node", help="add, list or remove PACS nodes").add_subparsers(dest="node_action",
                                                                                       required=True)
    add = node.add_parser("add", help="add a DIMSE (--aet/--host/--port) or DICOMweb (--url) node")
    add.add_argument("name")
    add.add_argument("--aet", default="", help="the server's AE title")
    add.add_argument("--host", default="")
    add.add_argument("--port", type=int, default=104)
    add.add_argument("--retrieve", default="C-GET", choices=["C-GET", "C-MOVE"], help="DIMSE retrieve method")
    add.add_argument("--tls", action="store_true", help="DICOM TLS")
    add.add_argument("--ca", default="", help="CA certificates (PEM) that signed the server's certificate")
    add.add_argument("--cert", default="", help="our client certificate (PEM)")
    add.add_argument("--key", default="", help="its private key (PEM)")
    add.add_argument("--no-verify", action="store_true", help="do not check the server's certificate")
    add.add_argument("--url", default="", help="DICOMweb base URL")
    add.add_argument("--user", default="", help="basic authentication user")
    add.add_argument("--password", default="")
    add.add_argument("--token", default="", help="bearer token")
    add.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    add.add_argument("--replace", action="store_true", help="replace a node of the same name")
    lst = node.add_parser("list", help="list the nodes")
    lst.add_argument("--json", action="store_true")
    rm = node.add_parser("remove", help="remove a node")
    rm.add_argument("name")

    local = sub.add_parser("local", help="show or set our AE title and storage port")
    local.add_argument("--aet")
    local.add_argument("--port", type=int)

    echo = sub.add_parser("echo", help="test the connection (C-ECHO or a DICOMweb ping)")
    echo.add_argument("node")

    q = sub.add_parser("query", help="find studies, or the series of one study (--study)")
    q.add_argument("node")
    q.add_argument("--name", default="", help="patient name, wildcards * and ?")
    q.add_argument("--id", default="", help="patient ID")
    q.add_argument("--from", dest="date_from", default="", help="study date from (YYYY-MM-DD)")
    q.add_argument("--to", dest="date_to", default="", help="study date to (YYYY-MM-DD)")
    q.add_argument("--modality", default="")
    q.add_argument("--accession", default="")
    q.add_argument("--study", default="", help="StudyInstanceUID: list its series")
    q.add_argument("--sort", default="", help="column to sort on (e.g. study_date, patient_name)")
    q.add_argument("--desc", action="store_true", help="sort descending")
    q.add_argument("--json", action="store_true")

    get = sub.add_parser("get", help="retrieve a study (or some series) into the local study index")
    get.add_argument("node")
    get.add_argument("study")
    get.add_argument("--series", action="append", default=[], help="SeriesInstanceUID (repeatable)")
    get.add_argument("--method", choices=["C-GET", "C-MOVE", "WADO-RS"], help="default: the node's")
    get.add_argument("--json", action="store_true")

    send = sub.add_parser("send", help="send DICOM files or folders (SEG, SR, key images...)")
    send.add_argument("node")
    send.add_argument("paths", nargs="+")
    return p


def pacs_command(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = PacsSettings.load()
    if args.action == "node":
        return _node(args, settings)
    if args.action == "local":
        if args.aet is not None or args.port is not None:
            settings.local.ae_title = args.aet if args.aet is not None else settings.local.ae_title
            settings.local.storage_port = args.port if args.port is not None else settings.local.storage_port
            settings.save()
        print(f"{settings.local.ae_title} (storage port {settings.local.storage_port})")
        return 0
    node = settings.node(args.node)
    if args.action == "echo":
        from viewer.pacs import echo

        print(f"{node.name}: connection works ({echo(node, settings.local):.0f} ms)")
        return 0
    if args.action == "query":
        return _query(args, node, settings)
    if args.action == "get":
        return _get(args, node, settings)
    return _send(args, node, settings)


def _node(args, settings: PacsSettings) -> int:
    if args.node_action == "list":
        if args.json:
            nodes = [{k: v for k, v in n.to_json().items() if k not in ("password", "token")} for n in settings.nodes]
            print(json.dumps({"local": vars(settings.local), "nodes": nodes}, indent=2))
        else:
            for n in settings.nodes:
                how = "DICOMweb" if n.is_dicomweb else f"DIMSE {n.retrieve_method}{' TLS' if n.tls.enabled else ''}"
                print(f"{n.name}\t{how}\t{n.describe()}")
        return 0
    if args.node_action == "remove":
        settings.remove(args.name)
        settings.save()
        print(f"removed {args.name}")
        return 0
    web = bool(args.url)
    auth = "bearer" if args.token else "basic" if args.user else "none"
    node = PacsNode(args.name, "dicomweb" if web else "dimse", ae_title=args.aet, host=args.host, port=args.port,
                    retrieve_method="WADO-RS" if web else args.retrieve,
                    tls=TlsSettings(args.tls, args.ca, args.cert, args.key, not args.no_verify),
                    url=args.url, auth=auth, username=args.user, password=args.password, token=args.token,
                    timeout=args.timeout)
    settings.add(node, replace=args.replace)
    path = settings.save()
    print(f"added {node.name} ({node.describe()}) to {path}")
    return 0


def results_table(results, level: str) -> list[str]:
    """The lines of the query listing: a header, then one line per result in aligned columns.

    Every cell comes from the server: it is shown as one line of printable text, at most 64 characters
    (a whole UID), so a hostile server's control characters and escape sequences never reach the
    terminal and a huge value cannot flood it."""
    columns = COLUMNS[level]
    rows = [[h for _, h in columns]] + [["" if getattr(r, c) is None else shown(getattr(r, c), 64)
                                          for c, _ in columns] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _query(args, node: PacsNode, settings: PacsSettings) -> int:
    from viewer.pacs import query

    q = Query("SERIES" if args.study else "STUDY", args.name, args.id, args.date_from, args.date_to, args.modality,
              args.accession, args.study)
    results = query(node, q, settings.local)
    if args.sort:
        results = sort_results(results, args.sort, args.desc)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
        return 0
    for line in results_table(results, q.normalized().level):
        print(line)
    print(f"{len(results)} {'series' if q.study_uid else 'studies'}", file=sys.stderr)
    return 0


def _get(args, node: PacsNode, settings: PacsSettings) -> int:
    from viewer.pacs.retrieve import RetrieveJob

    tty = sys.stderr.isatty()

    def progress(p) -> None:
        if tty:
            print(f"\r{p.done}/{p.total} images, series {p.series_done + 1}/{p.series_total}", end="",
                  file=sys.stderr, flush=True)

    def on_series(s) -> None:
        if tty:
            print(file=sys.stderr)
        if not args.json:
            print(f"series {s.number if s.number is not None else '?'} {shown(s.modality, 16)} {s.instances} images: "
                  f"{s.folder}")

    job = RetrieveJob(node, args.study, args.series, method=args.method, local=settings.local)
    result = job.run(progress=progress, on_series=on_series)
    if args.json:
        print(json.dumps({"study_uid": result.study_uid, "method": result.method, "received": result.received,
                          "skipped": result.skipped, "seconds": round(result.seconds, 3),
                          "series": [{"series_uid": s.series_uid, "modality": s.modality, "number": s.number,
                                      "instances": s.instances, "folder": str(s.folder)} for s in result.series]},
                         indent=2))
    else:
        print(f"{result.received} images received, {result.skipped} already here, {result.seconds:.1f} s "
              f"({result.method})", file=sys.stderr)
    return 0


def _send(args, node: PacsNode, settings: PacsSettings) -> int:
    from viewer.pacs.send import send

    report = send(node, args.paths, local=settings.local)
    print(f"sent {len(report.sent)} of {report.total} objects to {node.name}")
    return 0
