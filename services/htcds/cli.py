"""`casebridge export htcds`: one case, or the cases opened in a date range, as HTCDS 2.0
records (JSON Lines), cut for the agency that asks (see services/htcds/export.py)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import sys
from pathlib import Path

from services.runtime.settings import get_settings


def _htcds(args: argparse.Namespace) -> int:
    from services.htcds.export import Selection, export_htcds

    if args.case_id is None and (args.until is None or args.since > args.until):
        print("a date range needs --since and --until, --since first", file=sys.stderr)
        return 2
    selection = Selection(case_id=args.case_id, since=args.since, until=args.until)
    written = io.BytesIO()  # nothing reaches --output unless the export succeeds
    code = asyncio.run(
        export_htcds(
            get_settings(),
            selection,
            agency=args.agency,
            out=written,
            say=lambda line: print(line, file=sys.stderr),
        )
    )
    if code == 0:
        if args.output is not None:
            args.output.write_bytes(written.getvalue())
        else:
            sys.stdout.buffer.write(written.getvalue())
    return code


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="case data in published standards (HTCDS 2.0)")
    export_sub = p.add_subparsers(dest="export_command", required=True)
    p = export_sub.add_parser(
        "htcds",
        help="cases as HTCDS 2.0 records (JSON Lines), minimised for --agency",
        description=__doc__,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--case-id", help="one case")
    which.add_argument(
        "--since", type=dt.date.fromisoformat, help="cases opened on or after (YYYY-MM-DD, UTC)"
    )
    p.add_argument(
        "--until", type=dt.date.fromisoformat, help="...and on or before (YYYY-MM-DD, UTC)"
    )
    p.add_argument(
        "--agency",
        help="the agency asking: only what the data-sharing policy lets it see (default: all)",
    )
    p.add_argument("--output", type=Path, help="file to write (default: stdout)")
    p.set_defaults(func=_htcds)
