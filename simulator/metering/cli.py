"""`lbsim report traffic`: wire vs billed bytes per listener, from a connection log or the API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any, TextIO

from simulator.errors import LbsimError
from simulator.metering.ledger import TrafficLedger
from simulator.metering.meter import CATEGORIES, DIRECTIONS


def report_subcommands(subparsers: Any) -> Any:
    """The `report` command's own subparsers, shared by every concern that adds a report."""
    report = subparsers.choices.get("report")
    if report is None:
        report = subparsers.add_parser("report", help="reports over a lab's connection log (traffic: wire against billed bytes)",
                                       description="Reports over a lab's connection log or a running lab.")
    for action in report._actions:  # argparse keeps no public handle on a parser's subparsers
        if isinstance(action, argparse._SubParsersAction):
            return action
    return report.add_subparsers(dest="report", metavar="REPORT", required=True)


def register(subparsers: Any) -> None:
    p = report_subcommands(subparsers).add_parser(
        "traffic", help="wire vs billed bytes per listener",
        description="Per listener: connections, new connections/s, full vs resumed handshakes, wire vs "
                    "billed bytes, overhead and LCU estimate. wire = handshake + record_overhead + payload "
                    "+ closure; billed = the payload bytes of the directions the vendor bills.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--log", metavar="FILE.jsonl", help="connection log (one JSON record a line)")
    src.add_argument("--api", metavar="URL", help="a running lab's API base URL (GET URL/v1/traffic)")
    p.add_argument("--token", default=os.environ.get("LBSIM_API_TOKEN"),
                   help="the API's bearer token (api.token; default: $LBSIM_API_TOKEN)")
    p.add_argument("--csv", metavar="FILE", help="write one row per connection")
    p.add_argument("--jsonl", metavar="FILE", help="write the connection records, one JSON object a line")
    p.add_argument("--window", type=float, metavar="SECONDS",
                   help="rate window (default: first connection start to last end, at least 1 s)")
    p.add_argument("--json", action="store_true", help="print the summaries as JSON")
    p.set_defaults(func=run)


def fetch(api: str, connections: bool, token: str | None = None) -> dict[str, Any]:
    url = api.rstrip("/") + "/v1/traffic" + ("?connections=1" if connections else "")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        raise LbsimError("ApiError", f"{url}: HTTP {e.code} {e.reason}", field="api",
                         hint="pass --token (or set LBSIM_API_TOKEN)" if e.code == 401 else None) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise LbsimError("ApiUnreachable", f"cannot read {url}: {e}", field="api",
                         hint="is the lab running (lbsim up)?") from None


def run(args: argparse.Namespace) -> int:
    exports = bool(args.csv or args.jsonl)
    if args.log:
        ledger = TrafficLedger.from_jsonl(args.log)
        summaries = ledger.summary(args.window)
    elif args.api:
        body = fetch(args.api, connections=exports, token=args.token)
        ledger = TrafficLedger()
        ledger.extend(body.get("connections") or [])
        summaries = ledger.summary(args.window) if ledger.records else body.get("listeners", [])
        if exports and not ledger.records:
            raise LbsimError("NoConnections", "the API returned no connection records to export",
                             field="api", hint="use --log with the lab's connection log")
    else:
        raise LbsimError("NoTrafficSource", "no traffic source given", hint="--log FILE.jsonl or --api URL")
    if args.csv:
        ledger.write_csv(args.csv)
    if args.jsonl:
        ledger.write_jsonl(args.jsonl)
    if args.json:
        print(json.dumps(summaries, indent=2, sort_keys=True, default=str))
    else:
        print_table(summaries)
    return 0


_ARROWS = {"client_to_lb": "client->LB", "lb_to_client": "LB->client"}


def _lcu(s: dict[str, Any]) -> str:
    lcu = s.get("lcu")
    return "-" if not lcu else f"{lcu['lcu']:.3f} {lcu['billed_dimension'].split('_')[0]}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


def print_table(summaries: list[dict[str, Any]], out: TextIO | None = None) -> None:
    """A fixed-width table, then each listener's bytes by category."""
    out = out or sys.stdout
    head = ("PORT", "PROFILE", "MODEL", "CONNS", "NEW/S", "FULL", "RESUMED", "FAILED", "REQS",
            "WIRE IN", "WIRE OUT", "BILLED", "OVERHEAD", "LCU")
    rows = [(str(s["listener_port"]), str(s["profile"] or "-"), s["billing_model"], str(s["connections"]),
             f"{s['new_connections_per_s']:.2f}", str(s["handshakes_full"]), str(s["handshakes_resumed"]),
             str(s["handshakes_failed"]), str(s["requests"]), f"{s['wire_in']:,}", f"{s['wire_out']:,}",
             f"{s['billed_bytes']:,}", _pct(s["overhead_pct"]), _lcu(s)) for s in summaries]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip(),
              file=out)
    if not summaries:
        print("(no connections)", file=out)
    for s in summaries:
        print(f"\n:{s['listener_port']} ({s['billing_model']})", file=out)
        if s.get("unmetered"):
            print(f"  {s['unmetered']} connection(s) without byte counts (metering off, or gone before the "
                  "ClientHello was whole)", file=out)
        for d in DIRECTIONS:
            b = s["bytes"][d]
            parts = ", ".join(f"{c} {b[c]:,} ({100 * b[c] / b['wire']:.1f}%)" if b["wire"] else f"{c} 0"
                              for c in CATEGORIES)
            print(f"  {_ARROWS[d]}: wire {b['wire']:,} = {parts}", file=out)
