"""``hounsfield audit [--plugin ID] [--csv FILE]``: the AI audit log's table, headless (the same
numbers as AI > Performance; see viewer.core.audit)."""

from __future__ import annotations

import argparse
import os


def audit_command(argv: list[str]) -> int:
    from viewer.core.audit import HEADERS, AuditLog, audit_path, table_rows, to_csv

    p = argparse.ArgumentParser(prog="hounsfield audit",
                                description="How often each AI plugin was right (the local audit log).")
    p.add_argument("--plugin", help="only this plugin id (or name)")
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    args = p.parse_args(argv)
    if not os.path.exists(audit_path()):
        print("No AI result has been reviewed yet (the audit log is empty).")
        rows, summaries = [], []
    else:
        with AuditLog() as audit:
            summaries = audit.summary(args.plugin)
        rows = table_rows(summaries)
        if not rows:
            print("No reviewed AI results" + (f" of {args.plugin}." if args.plugin else "."))
    if rows:
        widths = [max(len(h), *(len(r[n]) for r in rows)) for n, h in enumerate(HEADERS)]
        print("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    if args.csv:
        with open(args.csv, "w", encoding="utf-8", newline="") as f:
            f.write(to_csv(summaries))
    return 0
