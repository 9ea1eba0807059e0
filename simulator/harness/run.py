"""`lbsim run`: start a lab, run the built-in scenario suite against it, write the results directory.

    lbsim run                        # the built-in default lab -> lbsim-out/run/
    lbsim run -c lab.yaml --require pci-dss-4.0 --format html

The suite runs in this process (pytest, with the lab handed to the scenario fixtures). Results:
report.json (schema in docs/run.md), junit.xml, report.md or report.html, connections.jsonl, traffic.csv.
The exit code is 0 only if every scenario passed, every matrix matched and report.json's `problems` is empty
(a failed traffic comparison, a pytest usage error).
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simulator.model.config import workers_argument
from simulator.errors import LbsimError

DEFAULT_OUT = "lbsim-out/run"
DEFAULT_TIME_SCALE = 0.01
BASELINE_TITLES = {
    "mozilla-modern": "Mozilla modern",
    "mozilla-intermediate": "Mozilla intermediate",
    "pci-dss-4.0": "PCI DSS 4.0",
    "nist-sp-800-52r2": "NIST SP 800-52r2",
}


def suite_dir() -> Path:
    """The built-in suite: a checkout's `scenarios/`, else the copy the installed package carries."""
    from simulator.resources import data_dir

    suite = data_dir("scenarios")
    if not (suite / "conftest.py").is_file():
        raise LbsimError("SuiteNotFound", f"the built-in scenario suite is not at {suite}",
                         hint="reinstall lbsim (pip install lbsim, or make setup in a checkout)")
    return suite


def suite_pytest_args(suite: Path) -> list[str]:
    """pytest's configuration for the built-in suite, the same from a checkout and from a wheel: our own
    ini file (not whatever pytest.ini or pyproject.toml sits above site-packages), the suite's parent as
    rootdir (node ids read `scenarios/test_...` either way), no conftest.py from above the suite."""
    return ["-c", str(Path(__file__).with_name("suite.ini")), "--rootdir", str(suite.parent),
            "--confcutdir", str(suite), *(arg for name in UNUSED_PLUGINS for arg in ("-p", f"no:{name}"))]


# pytest plugins that the dev and notebook extras install and the built-in suite does not use: loading them
# (nbmake, hypothesis, anyio, Locust's) took about 2.5 s of each `lbsim run`. Blocking a name that is not
# installed is a no-op, so a wheel install without them is unaffected.
UNUSED_PLUGINS = ("nbmake", "hypothesispytest", "anyio", "locust", "platformdirs")


def lbsim_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lbsim")
    except PackageNotFoundError:
        return "unknown"


# ---- watching pytest --------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    name: str
    statement: str | None
    outcome: str = "passed"
    duration_s: float = 0.0
    message: str = ""
    details: str = ""


@dataclass(eq=False)  # pluggy keeps plugins in sets
class Recorder:
    """A pytest plugin object: hands the lab to the fixtures, prints progress, records every outcome."""

    lab: Any
    quiet: bool = False
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    total: int = 0
    done: int = 0
    collect_errors: list[str] = field(default_factory=list)

    def pytest_configure(self, config: Any) -> None:
        from simulator.harness.plugin import attach

        attach(config, self.lab)
        # Our progress lines replace pytest's terminal output (its options stay registered).
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)

    pytest_configure.pytest_impl = {"trylast": True}  # type: ignore[attr-defined]  # after terminal's own configure

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collect_errors.append(f"{report.nodeid}: {report.longreprtext[-1500:]}")
            print(f"  collection error in {report.nodeid}:\n{report.longreprtext[-1500:]}", flush=True)

    def pytest_collection_finish(self, session: Any) -> None:
        self.total = len(session.items)
        for item in session.items:
            marker = item.get_closest_marker("seed")
            statement = marker.args[0] if marker and marker.args else None
            self.outcomes[item.nodeid] = Outcome(_short_name(item.nodeid), statement)
        print(f"running {self.total} scenarios", flush=True)

    def pytest_runtest_logreport(self, report: Any) -> None:
        out = self.outcomes.get(report.nodeid)
        if out is None:
            return
        out.duration_s += report.duration
        if report.failed and out.outcome != "failed":
            out.outcome = "failed"
            crash = getattr(report.longrepr, "reprcrash", None)
            phase = "" if report.when == "call" else f"(in {report.when}) "
            out.message = phase + (crash.message if crash else str(report.longrepr).strip().splitlines()[-1])[:2000]
            out.details = report.longreprtext[-6000:]
        elif report.skipped and out.outcome == "passed":
            if hasattr(report, "wasxfail"):  # an expected failure: a known bug, reported with its reason
                out.outcome, out.message = "xfailed", report.wasxfail
            else:
                out.outcome = "skipped"
                out.message = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        if report.when == "teardown":
            self.done += 1
            if not self.quiet:
                mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "xfailed": "XFAIL"}[out.outcome]
                line = f"[{self.done:>3}/{self.total}] {mark}  {out.name}  ({out.duration_s:.2f} s)"
                if out.outcome == "failed":
                    line += f"\n           {out.message.splitlines()[0] if out.message else ''}"
                print(line, flush=True)


def _short_name(nodeid: str) -> str:
    return nodeid.split("scenarios/", 1)[-1]


# ---- the report ----------------------------------------------------------------------------------------------------

def lab_summary(lab: Any, source: str) -> dict[str, Any]:
    config = lab.running.config
    return {
        "source": source,
        "profile": config.profile,
        "time_scale": config.time_scale,
        "workers": config.workers,
        "api": lab.api_url,
        "certificates": [{"name": c.name, "type": c.type} for c in config.certificates],
        "backends": [b.name for b in config.backends],
        "listeners": [{"name": l.name, "port": lab.port(l.name), "profile": l.profile, "policy": l.policy.name,
                       "mutual": l.client_verification != "off", "client_verification": l.client_verification}
                      for l in config.listeners],
    }


def listeners_section(lab: Any) -> list[dict[str, Any]]:
    out = []
    checks = lab.shared.sslyze or {}
    for name in lab.config_listeners():
        entry = lab.observe(name).to_dict()
        if name in checks:
            entry["cross_check"] = checks[name]
        out.append(entry)
    return out


def policies_section(lab: Any) -> list[dict[str, Any]]:
    """The named policies of the lab's profiles that no configured listener uses, each measured like a listener
    on a temporary one-way listener (a configured one-way listener's certificate): the report's policy matrix
    then covers the vendor's whole table, not only what the lab configures. A profile without a one-way
    listener in the lab is left out (its certificate type would be a guess)."""
    from simulator.policies.resolve import PROFILES

    specs = [lab.running.listener(name).active.spec for name in lab.config_listeners()]
    used = {spec.policy.name for spec in specs}
    out = []
    for profile in sorted({spec.profile for spec in specs}):
        template = next((spec for spec in specs if spec.profile == profile
                         and spec.client_verification == "off"), None)
        if template is None:
            continue
        for policy in (p for p in PROFILES[profile].policies if p not in used):
            entry = lab.observe_policy(profile, policy, template.server_certificate).to_dict()
            out.append({**entry, "temporary": True})
    return out


def traffic_section(lab: Any, problems: list[str]) -> dict[str, Any]:
    """The lab's traffic totals and the three-way comparison. A lab where no listener can carry the comparison
    (only mutual listeners and no client certificate) still gets its report: `skipped` says why. A comparison
    that failed (a 502, a refused handshake) is no skip: `error` says why, and so does `problems`."""
    from simulator.harness.scenario import NoTrafficListener

    skipped = error = None
    try:
        comparison = lab.traffic_comparison()
    except NoTrafficListener as e:
        comparison, skipped = [], str(e)
    except Exception as e:  # the report is still written; the run fails
        comparison, error = [], f"{type(e).__name__}: {e}"
        problems.append(f"traffic comparison failed: {error}")
    lab.wait_log_settled()
    names = {(lab.address(n), lab.port(n)): n for n in lab.config_listeners()}  # two load balancers may share a port
    summary = lab.running.lab.ledger.summary()
    for row in summary:
        row["listener"] = names.get(_where(row), "(created by a scenario)")
    summary.sort(key=lambda row: _where(row) not in names)  # the configured listeners first
    out: dict[str, Any] = {"listeners": summary, "by_kind": traffic_by_kind(lab, names), "comparison": comparison}
    if skipped:
        out["skipped"] = skipped
    if error:
        out["error"] = error
    return out


CREATED = "created by scenarios"


def _where(record: dict[str, Any]) -> tuple[Any, Any]:
    """A record's listener as (address, port): two load balancers may share a port."""
    return record.get("listener_address"), record.get("listener_port")


TRAFFIC_KINDS = {  # key -> what the report calls it; the order of the report's rows
    "requests": "carried requests",
    "handshake_only": "handshake only",
    "failed": "handshake failed",
}


def traffic_kind(record: dict[str, Any]) -> str:
    """What a connection was for, from its record: it carried requests (the scenarios' and the traffic
    comparison's), it only shook hands (the probes enumerating suites, SNI and certificate checks), or its
    handshake failed (refused clients: the mutual matrix, versions and suites a policy refuses)."""
    t = record.get("traffic")
    if not isinstance(t, dict) or not t.get("handshake_complete"):
        return "failed"
    return "requests" if int(record.get("requests") or t.get("requests") or 0) else "handshake_only"


def traffic_by_kind(lab: Any, names: dict[tuple[str, int], str]) -> list[dict[str, Any]]:
    """The run's traffic per configured listener and kind of connection (:func:`traffic_kind`), the
    listeners the scenarios created summed into one group. A listener's totals mix its probes' thousands
    of handshake-only connections, which bill nothing, with the few that carry requests: their overhead
    (e.g. 3000 %) describes the probing, not the listener. Per kind, `overhead_pct` of the `requests` rows
    is what a client sending requests pays on the wire; the other kinds bill nothing (`overhead_pct` None)."""
    from simulator.metering.ledger import TrafficLedger, is_connection_record

    ledgers: dict[tuple[str, str], TrafficLedger] = {}
    ports: dict[str, set[Any]] = {}
    for record in lab.running.lab.ledger.records:
        if not is_connection_record(record):
            continue
        group = names.get(_where(record), CREATED)
        ports.setdefault(group, set()).add(_where(record))
        kind = traffic_kind(record)  # one row per group: the ledger keys by address too
        ledgers.setdefault((group, kind), TrafficLedger()).add({**record, "listener_port": group, "listener_address": None})
    order = [*names.values(), CREATED]
    rows = []
    for (group, kind), ledger in sorted(ledgers.items(), key=lambda item: (order.index(item[0][0]), list(TRAFFIC_KINDS).index(item[0][1]))):
        for row in ledger.summary():
            rows.append({"listener": group, "listeners": len(ports[group]), "kind": kind,
                         **{k: row[k] for k in ("profile", "billing_model", "connections", "handshakes_full",
                                                "handshakes_resumed", "handshakes_failed", "unmetered", "requests", "wire_in",
                                                "wire_out", "billed_bytes", "overhead_pct")}})
    return rows


def matrix_failures(listeners: list[dict[str, Any]]) -> list[str]:
    out = []
    for l in listeners:
        if not l["tls_matrix"]["match"]:
            out.append(f"{l['name']}: TLS matrix differs from its policy")
        out += [f"{l['name']}: mutual matrix, client {r['client']}: expected {r['expected']}, observed {r['observed']}"
                for r in l["mutual_matrix"] if not r["ok"]]
        groups = l.get("groups")
        if groups and not groups["match"]:
            out.append(f"{l['name']}: key-exchange groups {groups['observed']} instead of {groups['expected']}")
    return out


def _groups_line(groups: dict[str, Any]) -> str:
    """The groups matrix in one sentence: TLS 1.3 clients offering a single key-exchange group each."""
    got = ", ".join(f"`{g}`" for g in groups["observed"]) or "none"
    line = f"Key-exchange groups (a TLS 1.3 client offering one group alone): accepted {got}"
    if groups["match"]:
        return line + " ✓ as the policy lists."
    return line + f" ✗ the policy lists {', '.join(f'`{g}`' for g in groups['expected'])}."


def _vendor_status(row: dict[str, Any]) -> str:
    """The vendor log's status for a mutual-matrix cell, where it differs from lbsim's."""
    vendor = row.get("vendor_status")
    return f" ({vendor})" if vendor and vendor != row["observed"] else ""


class Doc:
    """A small document model rendered to Markdown or HTML (the report is the same either way)."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (headers, rows)))

    def markdown(self) -> str:
        out = []
        for kind, data in self.blocks:
            if kind == "h":
                out.append("#" * data[0] + " " + data[1])
            elif kind == "p":
                out.append(data)
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in data))
            else:
                headers, rows = data
                lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                lines += ["| " + " | ".join(_cell(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
                out.append("\n".join(lines))
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
               "body{font-family:system-ui,sans-serif;margin:2em;max-width:90em}table{border-collapse:collapse;margin:1em 0}"
               "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%;vertical-align:top}th{background:#eee}"
               "code{font-size:95%}</style></head><body>"]
        for kind, data in self.blocks:
            if kind == "h":
                out.append(f"<h{data[0]}>{_inline_html(data[1])}</h{data[0]}>")
            elif kind == "p":
                out.append(f"<p>{_inline_html(data)}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in data) + "</ul>")
            else:
                headers, rows = data
                out.append("<table><tr>" + "".join(f"<th>{_inline_html(h)}</th>" for h in headers) + "</tr>"
                           + "".join("<tr>" + "".join(f"<td>{_inline_html(_cell(c))}</td>" for c in row) + "</tr>" for row in rows)
                           + "</table>")
        return "\n".join(out) + "</body></html>\n"


def _cell(value: Any) -> str:
    """A table cell: a missing value reads as a dash, never as Python's `None`."""
    return "–" if value is None else str(value)


def _inline_html(text: str) -> str:
    """Markdown's `code` and **bold**, enough for this report."""
    import re

    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


MARK = {True: "✓", False: "✗", None: "–"}


def render(report: dict[str, Any]) -> Doc:
    doc = Doc()
    s = report["summary"]
    lab = report["lab"]
    doc.h(1, f"lbsim run: {s['passed']} passed, {s['failed']} failed"
             + (f", {s['xfailed']} expected failures (known bugs)" if s.get("xfailed") else ""))
    doc.p(f"Started {report['started']}, {report['duration_s']} s. Lab: {lab['source']} "
          f"({len(lab['listeners'])} listeners, time_scale {lab['time_scale']}, workers {lab.get('workers', 1)}). lbsim {report['lbsim_version']}.")
    if report.get("problems"):
        doc.p("**Problems outside the scenarios:**")
        doc.ul(report["problems"])

    doc.h(2, "Scenarios")
    doc.p("Each scenario with the vendor statement it checks; a parametrised one runs once per configured "
          "listener the statement is about (its id names the listener). Scenarios share one measurement per "
          "listener (the probes behind the matrices): whichever needs it first takes the time, the others "
          "read it in about 0 s.")
    doc.table(["", "scenario", "statement", "s"],
              [[{"passed": "✓", "failed": "✗"}.get(sc["outcome"], sc["outcome"]), f"`{sc['name']}`"
                + (f" ({sc['message'][:300]})" if sc["outcome"] in ("failed", "xfailed", "skipped") else ""), sc["statement"] or "",
                f"{sc['duration_s']:.2f}"] for sc in report["scenarios"]])

    doc.h(2, "TLS policy matrix")
    doc.p("Per listener: every suite its policy allows with its certificate type (expected) against what the "
          "probe found the listener accepts (observed; docs/compliance.md), rows in the server's preference "
          "order. ✓ both, **missing** expected but refused, **extra** accepted beyond the policy. The vendor's "
          "other named policies follow, each on a temporary one-way listener.")
    for l in report["listeners"] + report.get("policies", []):
        m = l["tls_matrix"]
        doc.h(3, f"{l['name']}{' (temporary)' if l.get('temporary') else ''}: {l['profile']}, `{l['policy']}`, "
                 f"{l['key_type']} certificate, {'match ✓' if m['match'] else 'MISMATCH ✗'}")
        if m["observed"] is None:
            doc.p(m.get("note") or "not observed")
            continue
        versions = [v for v in ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3") if v in m["expected"] or v in m["observed"]]
        suites: list[str] = []
        for v in versions:
            for suite in m["expected"].get(v, []) + m["observed"].get(v, []):
                if suite not in suites:
                    suites.append(suite)
        rows = []
        for suite in suites:
            row = [f"`{suite}`"]
            for v in versions:
                want, got = suite in m["expected"].get(v, []), suite in m["observed"].get(v, [])
                row.append("✓" if want and got else "**missing**" if want else "**extra**" if got else "")
            rows.append(row)
        doc.table(["suite"] + versions, rows)
        doc.ul(m.get("differences") or [])
        if l.get("groups"):
            doc.p(_groups_line(l["groups"]))
        if l.get("unavailable"):
            doc.p(f"Not negotiated here: {', '.join(f'`{u}`' for u in l['unavailable'])} — in the vendor's table for "
                  f"`{l['policy']}`, but this lab's OpenSSL build lacks it (no 3DES), so it is not expected above. "
                  "A client that offers only it cannot connect here, where a real listener would let it in "
                  "(docs/tls-policies.md).")

    doc.h(2, "Mutual authentication matrix")
    doc.p("The listener's own `tls_verify_status` for a client presenting each kind of certificate; "
          "✓ when it is what the listener's mode expects (and the request was served exactly when admitted, "
          "a refused client getting a TLS alert or, with `client_cert_refusal: http_400`, nginx's 400 page).")
    doc.p("`revoked` is a certificate from the right CA that a CRL of the listener's trust store revokes (a "
          "listener without revocation lists admits it like a valid one); `any` is a listener that asks for a "
          "certificate and admits every client (the ALB's passthrough). Where the vendor writes a connection log "
          "of its own and names a status differently, its value follows in brackets (AWS: `ClientCertCrlHit`).")
    kinds = ["none", "valid", "untrusted", "expired", "not_yet_valid", "revoked"]
    rows = []
    for l in report["listeners"]:
        cells = {r["client"]: f"{MARK[r['ok']]} {r['observed']}" + _vendor_status(r) for r in l["mutual_matrix"]}
        rows.append([l["name"], l["verify_client"], l.get("client_cert_refusal") or "–"]
                    + [cells.get(k, "not tested") for k in kinds])
    doc.table(["listener", "verify", "refusal"] + kinds, rows)

    doc.h(2, "Compliance")
    doc.p("Verdicts from what the probes observed, never from configuration (docs/compliance.md). A listener "
          "fails a baseline through its TLS policy (versions and suites: the vendor's table) or through the "
          "certificate it serves (key, signature, lifetime: the issuer's choice), so each cell says which: "
          "✓ passes, ✗ policy, ✗ certificate, or ✗ both. The Mozilla profile of the policy is the strictest "
          "Mozilla profile whose versions and suites cover everything the listener accepted, certificate aside "
          "(modern and intermediate from guidelines 6.0, old from 5.7, the last to define it; none: beyond old). "
          "The vendor's other named policies follow, each measured on a temporary one-way listener.")
    baselines = list(BASELINE_TITLES)
    judged = [l for l in report["listeners"] + report.get("policies", [])]
    doc.table(["listener", "policy", "Mozilla profile of the policy"] + [BASELINE_TITLES[b] for b in baselines]
              + ["sslyze cross-check"],
              [[l["name"] + (" (temporary)" if l.get("temporary") else ""), f"`{l['policy']}`",
                _level_cell(l)] + [_verdict_cell(l["compliance"].get(b)) for b in baselines]
               + [_cross_check_cell(l.get("cross_check")) if not l.get("temporary") else "–"] for l in judged])
    for l in judged:
        if not l["compliance"]:
            continue
        doc.h(3, f"Evidence: {l['name']}{' (temporary)' if l.get('temporary') else ''}")
        items = []
        for b, v in l["compliance"].items():
            if v["verdict"] == "pass":
                items.append(f"**{BASELINE_TITLES[b]}** (pass): " + _evidence(v["evidence"]))
                continue
            for kind in ("policy", "certificate"):
                if v.get(f"{kind}_findings"):
                    items.append(f"**{BASELINE_TITLES[b]}**, {kind} (fail): " + _evidence(v[f"{kind}_findings"]))
        doc.ul(items)

    doc.h(2, "Traffic: wire against billed")
    doc.p("The same requests sent three ways through one listener. Wire = every TLS byte both ways; billed = what "
          "the vendor's model bills (docs/metering.md).")
    if report["traffic"].get("skipped"):
        doc.p(f"**Comparison skipped:** {report['traffic']['skipped']}")
    elif report["traffic"].get("error"):
        doc.p(f"**Comparison failed:** {report['traffic']['error']}")
    else:
        doc.table(["case", "listener", "model", "connections", "requests", "wire bytes", "billed bytes", "wire / billed"],
                  [[c["case"], c["listener"], c["billing_model"], c["connections"], c["requests"], c["wire_bytes"],
                    c["billed_bytes"], c["ratio"]] for c in report["traffic"]["comparison"]])
    doc.p("Everything the lab carried during the run, per configured listener and kind of connection (the "
          "listeners scenarios created, summed in one group): carried requests are the scenarios' and the "
          "comparison's requests, handshake only the probes (suite enumeration, certificate and SNI checks), "
          "handshake failed the refused clients (docs/run.md). Overhead % = wire bytes in the billed "
          "directions beyond the billed bytes, per billed byte.")
    footnote = unmetered = False
    rows = []
    for t in report["traffic"].get("by_kind", []):
        overhead = t["overhead_pct"]
        if overhead is None:
            overhead, footnote = "n/a¹", True
        name = t["listener"] if t["listener"] != CREATED else f"{CREATED} ({t['listeners']})"
        handshakes = f"{t['handshakes_full']} / {t['handshakes_resumed']} / {t['handshakes_failed']}"
        if t["unmetered"]:
            handshakes, unmetered = f"{handshakes} (+{t['unmetered']}²)", True
        rows.append([name, TRAFFIC_KINDS[t["kind"]], t["billing_model"], t["connections"], handshakes, t["requests"],
                     t["wire_in"], t["wire_out"], t["billed_bytes"], overhead])
    doc.table(["listener", "connections that", "model", "connections", "full / resumed / failed handshakes",
               "requests", "wire in", "wire out", "billed", "overhead %"], rows)
    if footnote:
        doc.p("¹ Nothing billed (no request or response payload), so there is no billed byte to compare with: "
              "every wire byte of these connections is overhead.")
    if unmetered:
        doc.p("² Connections that closed without sending a ClientHello: no handshake to count and no bytes.")
    return doc


def _evidence(items: list[str], limit: int = 12) -> str:
    return "; ".join(items[:limit]) + (f"; … {len(items) - limit} more" if len(items) > limit else "")


def _verdict_cell(verdict: dict[str, Any] | None) -> str:
    if verdict is None:
        return "–"
    if verdict["verdict"] == "pass":
        return "✓"
    failed = [kind for kind in ("policy", "certificate") if verdict.get(kind) == "fail"]
    return "✗ " + (" + ".join(failed) if len(failed) < 2 else "both")


def _level_cell(listener: dict[str, Any]) -> str:
    if listener["tls_matrix"]["observed"] is None:
        return "not observed"
    return listener.get("mozilla_policy_level") or "none (beyond old)"


def _cross_check_cell(check: dict[str, Any] | None) -> str:
    if not check:
        return "not run"
    if check.get("agrees"):
        return "agrees ✓" + (" (after a rescan)" if check.get("rescanned") else "")
    return "DISAGREES ✗ " + "; ".join(check.get("differences") or []) + (check.get("error") or "")


# ---- the command ------------------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    import pytest  # a core dependency: the main job needs nothing optional

    from simulator.harness.plugin import configure_session
    from simulator.harness.scenario import start

    started_wall = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("connections.jsonl", "traffic.csv", "report.json", "report.md", "report.html", "junit.xml"):
        (out / stale).unlink(missing_ok=True)
    junit = Path(args.junit) if args.junit else out / "junit.xml"
    logging.getLogger("mitmproxy").setLevel(logging.ERROR)  # failed handshakes are the point, not news

    source = args.config or "built-in default lab"
    print(f"starting the lab ({source}, time_scale {args.time_scale})...", flush=True)
    lab = start(args.config, time_scale=args.time_scale, out_dir=out, workers=args.workers)
    problems: list[str] = []
    try:
        if not args.config:
            from simulator.runtime.defaults import default_lab_data

            (out / "lab.yaml").write_text(yaml.safe_dump(default_lab_data(lab.files, args.time_scale), sort_keys=False))
        try:
            configure_session(lab, args.client_cert, args.client_key, args.require or [])
        except pytest.UsageError as e:
            raise LbsimError("InvalidArgument", str(e), field="require") from None
        print(f"lab up in {time.perf_counter() - t0:.1f} s; {len(lab.config_listeners())} listeners", flush=True)
        console = lab.running.lab.console
        if console is not None:  # watch the run in a browser while it lasts
            print(f"console: {console.url}/  (while the run lasts)", flush=True)

        recorder = Recorder(lab, quiet=args.quiet)
        suite = suite_dir()
        pytest_args = [str(suite), *suite_pytest_args(suite), "-p", "no:cacheprovider", f"--junitxml={junit}",
                       "--tb=short", "-o", "junit_family=xunit2", "-o", "junit_suite_name=lbsim-run"]
        if args.k:
            pytest_args += ["-k", args.k]
        suite_started = time.perf_counter()
        code = pytest.main(pytest_args, plugins=[recorder])
        print(f"suite done in {time.perf_counter() - suite_started:.1f} s", flush=True)
        if code not in (0, 1):
            problems.append(f"pytest exited {int(code)} ({getattr(code, 'name', code)})")
        problems += [f"collection error: {e}" for e in recorder.collect_errors]

        print("writing the report (matrices, traffic)...", flush=True)
        listeners = listeners_section(lab)
        problems += matrix_failures(listeners)
        traffic = traffic_section(lab, problems)
        policies = policies_section(lab)  # after the traffic totals: its probes are no part of them
        problems += matrix_failures(policies)
        scenarios = [{"name": o.name, "statement": o.statement, "outcome": o.outcome, "duration_s": round(o.duration_s, 3),
                      "message": o.message} for o in recorder.outcomes.values()]
        failed = sum(1 for s in scenarios if s["outcome"] == "failed")
        report = {
            "lbsim_version": lbsim_version(),
            "started": started_wall.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "duration_s": 0.0,
            "lab": lab_summary(lab, source),
            "summary": {"passed": sum(1 for s in scenarios if s["outcome"] == "passed"), "failed": failed,
                        "skipped": sum(1 for s in scenarios if s["outcome"] == "skipped"),
                        "xfailed": sum(1 for s in scenarios if s["outcome"] == "xfailed"), "total": len(scenarios)},
            "scenarios": scenarios,
            "listeners": listeners,
            "policies": policies,
            "traffic": traffic,
            "problems": problems,
            "outputs": {},
        }
        lab.running.lab.ledger.write_csv(out / "traffic.csv")
        log = lab.running.lab.connection_log_path
        if log.resolve() != (out / "connections.jsonl").resolve():
            lab.running.lab.ledger.write_jsonl(out / "connections.jsonl")
    finally:
        lab.stop()
    if not (out / "connections.jsonl").exists():
        lab.running.lab.ledger.write_jsonl(out / "connections.jsonl")

    report["duration_s"] = round(time.perf_counter() - t0, 1)
    readable = out / f"report.{'html' if args.format == 'html' else 'md'}"
    report["outputs"] = {"report": str(readable), "junit": str(junit), "connections": str(out / "connections.jsonl"),
                         "traffic": str(out / "traffic.csv")}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    doc = render(report)
    readable.write_text(doc.html("lbsim run") if args.format == "html" else doc.markdown())
    if junit.resolve() != (out / "junit.xml").resolve() and junit.exists():
        shutil.copyfile(junit, out / "junit.xml")

    s = report["summary"]
    print(f"\n{s['passed']} passed, {s['failed']} failed" + (f", {s['skipped']} skipped" if s["skipped"] else "")
          + (f", {s['xfailed']} xfailed (known bugs)" if s["xfailed"] else "") + f" in {report['duration_s']} s")
    for sc in scenarios:
        if sc["outcome"] == "xfailed":
            print(f"XFAIL {sc['name']}: {sc['message'][:200]}")
    for sc in scenarios:
        if sc["outcome"] == "failed":
            print(f"FAILED {sc['name']}: {sc['message'].splitlines()[0] if sc['message'] else ''}")
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"results: {out}/ (report.json, {readable.name}, junit.xml, connections.jsonl, traffic.csv)")
    return 1 if failed or problems or s["total"] == 0 else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="check every vendor statement against a lab (the built-in scenarios) and write a report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", help="lab YAML (default: the built-in default lab)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})")
    p.add_argument("--junit", help="also write JUnit XML here (always written to OUT/junit.xml)")
    p.add_argument("--format", choices=("md", "html"), default="md", help="readable report: report.md or report.html")
    p.add_argument("-k", help="only scenarios matching this pytest -k expression (the matrices are always computed)")
    p.add_argument("--time-scale", type=float, default=DEFAULT_TIME_SCALE,
                   help=f"vendor timers x this, overriding the YAML (default {DEFAULT_TIME_SCALE})")
    p.add_argument("--workers", type=workers_argument, metavar="N|auto",
                   help="processes sharing every listener port, or auto: one per core (overrides the lab\'s `workers`)")
    p.add_argument("--require", action="append", metavar="[LISTENER=]BASELINE",
                   help="fail unless the listener (or every listener) passes the baseline: mozilla-modern, "
                        "mozilla-intermediate, pci-dss-4.0, nist-sp-800-52r2 (repeatable)")
    p.add_argument("--client-cert", help="a client certificate your mutual listeners' CA trusts (YAML labs)")
    p.add_argument("--client-key", help="its private key")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-scenario progress lines")
    p.set_defaults(func=run)


if __name__ == "__main__":  # pragma: no cover
    from simulator.output import run_command

    sys.exit(run_command(register, ["run", *sys.argv[1:]]))
