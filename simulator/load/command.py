"""`lbsim load PROFILE`: a lab, Locust headless against one of its listeners, and one results directory.

    lbsim load new_connections --users 10 --duration 30s            # the default lab, started and stopped
    lbsim load keepalive -c lab.yaml --pki lbsim-out/pki --listener my-listener
    lbsim load mutual --api http://127.0.0.1:40517 -a invalid-share=0.5   # a lab `lbsim up` is running

The lab runs in its own process (`lbsim up`), never beside Locust: Locust monkey-patches the process with
gevent. Locust runs as a subprocess too (`python -m locust -f scenarios/load/PROFILE.py --headless --csv`),
with `--processes N` for a master and N workers on this machine. Afterwards the listener's connection log
is compared with what the clients saw (`agreement`), so a run also proves that Locust's handshake counts
and the bytes it measured on its sockets equal the listener's metering.

Results directory (`--out`):
    connections.jsonl   the listener's connection-log records of this run
    traffic.csv         one row per connection, TrafficLedger.write_csv
    load.json           the run: command, rates, CPU, Locust totals, traffic summary, agreement checks
    locust/             Locust's CSVs (locust_stats.csv, _stats_history.csv, _failures.csv, _exceptions.csv),
                        report.html, locust.log
    client/             client-<pid>.jsonl: one record per connection as the client saw it
    lab/                the lab this command started: pki/, store/, lab.yaml, up.log, its full connection log
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from simulator.errors import LbsimError
from simulator.load.cpu import CpuSampler
from simulator.metering import TrafficLedger, billing
from simulator.net import free_port
from simulator.policies.groups import pin_groups

PROFILES = ("keepalive", "new_connections", "mutual", "resumption", "mixed", "keepalive_fasthttp")
# The listener each profile targets in the default lab unless --listener says otherwise.
DEFAULT_LISTENER = {"mutual": "aliyun-mutual"}
LOCUST_PREFIX = "locust"  # Locust's --csv prefix inside locust/
MASTER_BIND_ATTEMPTS = 3  # --processes: fresh master ports to try if one is taken before Locust binds it
HANDSHAKE_ROWS = ("handshake full", "handshake resumed", "handshake rejected", "handshake failed")


# ---- the lab, in its own process ------------------------------------------------------------------------------


class LabProcess:
    """`lbsim up` as a child process; its API URL is read from the first line it prints."""

    def __init__(self, out_dir: Path, config: str | None = None, time_scale: float | None = None,
                 token: str | None = None, timeout: float = 60):
        out_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "simulator.cli", "up", "--out", str(out_dir)]
        if config:
            cmd += ["-c", config]
        if time_scale is not None:
            cmd += ["--time-scale", str(time_scale)]
        self.out_dir = out_dir
        self.log_path = out_dir / "up.log"
        self.token = token
        self.api = ""
        self.connection_log: Path | None = None
        deadline = time.monotonic() + timeout
        lines = []
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
            assert self.proc.stdout is not None
            fd, pending = self.proc.stdout.fileno(), b""
            # `lbsim up` prints its endpoints, then "connection log: PATH", then nothing until it stops.
            # Raw reads with a deadline: a buffered readline could hold lines select() no longer sees.
            while self.connection_log is None and select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                *complete, pending = (pending + chunk).split(b"\n")
                for raw in complete:
                    line = raw.decode(errors="replace")
                    lines.append(line)
                    log.write(line + "\n")
                    if m := re.match(r"management API: (\S+)", line):
                        self.api = m.group(1)
                    if line.startswith("connection log:"):
                        self.connection_log = Path(line.split(":", 1)[1].strip())
        if not self.api:
            try:  # its stdout closed: it is exiting
                exited: int | None = self.proc.wait(2)
            except subprocess.TimeoutExpired:
                exited = None
            self.stop()
            # `lbsim up` writes its errors (a bad lab.yaml, ...) to stderr, which is the log
            said = [l for l in self.log_path.read_text(errors="replace").splitlines() if l.strip()]
            what = f"exited with code {exited}" if exited is not None else f"did not start in {timeout:g} s"
            raise LbsimError("load.lab_failed", f"the lab {what}; see {self.log_path}",
                             field="config" if config else None,
                             hint="\n".join(said[-5:]) or "run `lbsim up` by hand to see why")
        wait_healthy(self.api, deadline, token)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            rest = self.proc.stdout.read()
            with self.log_path.open("a") as log:
                log.write(rest.decode(errors="replace"))
            self.proc.stdout.close()


# ---- the lab's API -------------------------------------------------------------------------------------------------


def api_get(api: str, path: str, token: str | None = None, timeout: float = 10) -> Any:
    request = urllib.request.Request(api.rstrip("/") + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        if e.code == 503 and path == "/health":
            return {"status": "starting"}
        raise LbsimError("load.api_error", f"{api}{path}: HTTP {e.code} {e.reason}", field="api") from None
    except (urllib.error.URLError, OSError) as e:
        raise LbsimError("load.api_unreachable", f"cannot reach {api}{path}: {e}", field="api",
                         hint="is the lab running? `lbsim up` prints its management API URL") from None


def wait_healthy(api: str, deadline: float, token: str | None = None) -> None:
    while True:
        try:
            if api_get(api, "/health", token, timeout=2).get("status") == "ok":
                return
        except LbsimError:
            pass
        if time.monotonic() > deadline:
            raise LbsimError("load.lab_not_ready", f"{api}/health did not report ok in time")
        time.sleep(0.1)


def listener_port(api: str, name: str, token: str | None = None) -> int:
    listeners = api_get(api, "/v1/listeners", token)["listeners"]
    for listener in listeners:
        if name in (listener["name"], str(listener["port"])):
            return int(listener["port"])
    raise LbsimError("load.no_listener", f"the lab has no listener {name!r}", field="listener",
                     hint="listeners: " + ", ".join(l["name"] for l in listeners))


def wait_logged(api: str, token: str | None = None, timeout: float = 15) -> None:
    """Until the lab has logged every connection (none active), or its log stops growing."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        body = api_get(api, "/v1/connections?limit=1", token)
        if body.get("active", 0) == 0:
            return
        now = (body["active"], json.dumps(body["connections"]))
        if now == last:  # a shared lab with other clients: settled is good enough
            return
        last = now
        time.sleep(0.25)


def api_connections(api: str, port: int, since: float, token: str | None = None) -> list[dict[str, Any]]:
    """This run's records of one listener from `GET /v1/connections` (the lab keeps the last 10,000)."""
    records = api_get(api, f"/v1/connections?listener={port}&limit=10000", token, timeout=30)["connections"]
    return [r for r in records if epoch(r.get("time")) >= since]  # connections started during this run


def epoch(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if not value:
        return 0.0
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def read_jsonl(paths: Iterable[Path]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        with path.open() as f:
            out += [json.loads(line) for line in f if line.strip()]
    return out


# ---- agreement: what Locust and its clients saw against the listener's log ---------------------------------------


def lb_handshake_kind(record: Mapping[str, Any]) -> str:
    if record.get("tls_verify_status") == "Success":
        return "handshake resumed" if record.get("resumed") else "handshake full"
    return "handshake refused"


def _client_kind(c: Mapping[str, Any]) -> str:
    if c["outcome"] == "rejected":
        return "handshake refused"
    return "handshake resumed" if c.get("resumed") else "handshake full"


def strays(lb: list[dict[str, Any]], clients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log records of connections that sent no ClientHello and belong to no client of this run: a port
    probe from some other process (a busy machine has them). Our clients send their ClientHello at once."""
    ours = {c.get("local_port") for c in clients}
    return [r for r in lb if "traffic" not in r and r.get("tls_verify_status") == "Failed:HandshakeIncomplete"
            and int(str(r["client"]).rsplit(":", 1)[1]) not in ours]


def agreement(locust_rows: list[dict[str, Any]], clients: list[dict[str, Any]], lb: list[dict[str, Any]],
              target_port: int) -> dict[str, Any]:
    """Compare Locust's statistics and the clients' records with the listener's connection log.

    * handshakes: Locust's TLS rows (full, resumed, rejected + refusals reported as failures) against the
      log's Success/resumed and Failed:* records;
    * connections: each client record matched to the log record with the same client port, and their
      wire bytes (both directions), HTTP bytes (= the log's payload) and resumption compared. For a
      refused handshake the listener may not have read what the client sent after its Finished (TLS 1.3:
      the request), so there the listener's inbound count lies between the client's handshake bytes and
      everything it sent (docs/metering.md, Limitations);
    * bytes: Locust's WIRE-IN/WIRE-OUT/GET totals against the log's sums, and the log's billed bytes
      against the billing model applied to the clients' own HTTP counts.

    Connections that never sent a byte and belong to no client (`strays`) are counted, not compared.
    """
    stray = strays(lb, clients)
    lb = [r for r in lb if not any(r is s for s in stray)]
    rows = {(r["method"], r["name"]): r for r in locust_rows}

    def count(name: str) -> int:
        return rows.get(("TLS", name), {}).get("num_requests", 0)

    # An invalid client that was served counts as a failure in Locust's rejected row and as a Success in
    # the log, and a valid client refused as "handshake failed": either way the counts differ, as they should.
    locust_counts = {"handshake full": count("handshake full"), "handshake resumed": count("handshake resumed"),
                     "handshake refused": count("handshake rejected")}
    lb_counts = dict.fromkeys(locust_counts, 0)
    for r in lb:
        lb_counts[lb_handshake_kind(r)] += 1
    client_counts = dict.fromkeys(locust_counts, 0)
    reached = [c for c in clients if c.get("local_port") and c["outcome"] in ("ok", "rejected")]
    for c in reached:
        client_counts[_client_kind(c)] += 1
    handshakes = {"locust": locust_counts, "clients": client_counts, "listener": lb_counts,
                  "locust_handshake_failures": count("handshake failed"),
                  "ok": locust_counts == lb_counts == client_counts}

    # per connection, matched by the client's port (in start order where a port was reused)
    by_port: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(lb, key=lambda r: epoch(r.get("time"))):
        by_port[int(str(r["client"]).rsplit(":", 1)[1])].append(r)
    mismatches: list[dict[str, Any]] = []
    matched = unmatched_clients = 0
    for c in sorted(clients, key=lambda c: c["started"]):
        port = c.get("local_port")
        if not port or c["outcome"] not in ("ok", "rejected"):
            continue  # never reached the listener (connect failed) or stopped mid-way
        if not by_port.get(port):
            unmatched_clients += 1
            mismatches.append({"client_port": port, "problem": "no record in the listener's log"})
            continue
        r = by_port[port].pop(0)
        matched += 1
        problems = connection_mismatch(c, r)
        if problems:
            mismatches.append({"client_port": port, "problem": "; ".join(problems)})
    aborted = [c for c in clients if c["outcome"] in ("aborted", "open") and c.get("local_port")]
    unmatched_lb = sum(len(v) for v in by_port.values())
    connections = {"matched": matched, "unmatched_client_records": unmatched_clients,
                   "unmatched_listener_records": unmatched_lb - len(aborted), "aborted_by_stop": len(aborted),
                   "mismatches": len(mismatches), "examples": mismatches[:10],
                   "ok": not mismatches and unmatched_lb - len(aborted) == 0}

    # totals
    def total(method: str) -> int:
        return sum(r.get("total_content_length", 0) for (m, _), r in rows.items() if m == method)

    lb_in = sum(r["traffic"]["client_to_lb"]["wire"] for r in lb if "traffic" in r)
    lb_out = sum(r["traffic"]["lb_to_client"]["wire"] for r in lb if "traffic" in r)
    lb_payload_out = sum(r["traffic"]["lb_to_client"]["payload"] for r in lb if "traffic" in r)
    http_received = sum(r.get("total_content_length", 0) for (m, n), r in rows.items() if m not in ("TLS", "HTTP-OUT", "WIRE-IN", "WIRE-OUT"))
    lb_billed = sum(r["billed"]["billed_bytes"] for r in lb if "billed" in r)
    expected_billed = 0
    for c in reached:
        model = next((r.get("billing_model") or r.get("profile") for r in lb), None)
        if model:
            expected_billed += billing.billed(model, {"traffic": {
                "client_to_lb": {"payload": c["http_sent"], "wire": c["sent"]},
                "lb_to_client": {"payload": c["http_received"], "wire": c["received"]}}})["billed_bytes"]
    rejected_slack = sum(c["sent"] - c["handshake_sent"] for c in reached if c["outcome"] == "rejected")
    wire_in_ok = total("WIRE-OUT") - rejected_slack <= lb_in <= total("WIRE-OUT")
    bytes_ = {
        "locust_wire_out": total("WIRE-OUT"), "listener_wire_in": lb_in,
        "locust_wire_in": total("WIRE-IN"), "listener_wire_out": lb_out,
        "locust_http_in": http_received, "listener_payload_out": lb_payload_out,
        "locust_http_out": total("HTTP-OUT"),
        "listener_billed": lb_billed, "billed_from_client_http_bytes": expected_billed,
        "refused_handshake_slack": rejected_slack,
        "ok": wire_in_ok and total("WIRE-IN") == lb_out and http_received == lb_payload_out and lb_billed == expected_billed,
    }
    other_ports = sorted({r["listener_port"] for r in lb} - {target_port})
    ran = bool(lb or clients)  # agreeing on nothing proves nothing
    return {"ok": ran and handshakes["ok"] and connections["ok"] and bytes_["ok"] and not other_ports,
            "handshakes": handshakes, "connections": connections, "bytes": bytes_,
            "other_listeners_in_log": other_ports, "stray_connections": len(stray)}


def connection_mismatch(c: Mapping[str, Any], r: Mapping[str, Any]) -> list[str]:
    t = r.get("traffic")
    if t is None:
        return ["the listener did not meter this connection"]
    wire_in, wire_out = t["client_to_lb"]["wire"], t["lb_to_client"]["wire"]
    problems = []
    if c["outcome"] == "rejected":
        if not c["handshake_sent"] <= wire_in <= c["sent"]:
            problems.append(f"refused: listener read {wire_in} B, client sent {c['handshake_sent']}..{c['sent']} B")
        if r.get("tls_verify_status") == "Success":
            problems.append("the client saw a refusal, the listener logged Success")
    else:
        if wire_in != c["sent"]:
            problems.append(f"client->LB wire: client {c['sent']} B, listener {wire_in} B")
        if t["client_to_lb"]["payload"] != c["http_sent"]:
            problems.append(f"client->LB HTTP: client {c['http_sent']} B, listener payload {t['client_to_lb']['payload']} B")
        if t["lb_to_client"]["payload"] != c["http_received"]:
            problems.append(f"LB->client HTTP: client {c['http_received']} B, listener payload {t['lb_to_client']['payload']} B")
        if bool(r.get("resumed")) != bool(c.get("resumed")):
            problems.append(f"resumed: client {c.get('resumed')}, listener {r.get('resumed')}")
        if r.get("requests") != c["requests"]:
            problems.append(f"requests: client {c['requests']}, listener {r.get('requests')}")
    if wire_out != c["received"]:
        problems.append(f"LB->client wire: client {c['received']} B, listener {wire_out} B")
    return problems


# ---- the command -----------------------------------------------------------------------------------------------------


def locustfile_for(profile: str) -> Path:
    path = Path(profile)
    if path.suffix == ".py" and path.exists():
        return path.resolve()
    from simulator.resources import data_file

    candidate = data_file("scenarios", "load", f"{profile}.py")
    if not candidate.exists():
        raise LbsimError("load.unknown_profile", f"no load profile {profile!r}", field="profile",
                         hint=f"one of {', '.join(PROFILES)}, or a path to a locustfile")
    return candidate


def master_args(port: int) -> list[str]:
    """The Locust master on loopback and a port of this run's own. Locust's default is *:5557 on every
    interface: two runs at once would collide, or one run's forked workers would join the other's master."""
    return ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
            "--master-host", "127.0.0.1", "--master-port", str(port)]


def master_bind_failed(log: Path) -> bool:
    return log.exists() and "Socket bind failure" in log.read_text(errors="replace")


def run_locust(cmd: list[str], log_path: Path, env: dict[str, str], timeout: float) -> int:
    """Locust in a session of its own; afterwards nothing of it is left (a master that failed leaves its
    forked workers waiting for it)."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            exit_code = proc.wait(timeout)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            os.killpg(proc.pid, signal.SIGTERM)
            exit_code = proc.wait(30)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return exit_code


def parse_duration(text: str) -> float:
    """'30', '30s', '2m', '1h30m' -> seconds (Locust's --run-time syntax)."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+)\s*([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s", "", text):
        raise LbsimError("load.bad_duration", f"cannot read duration {text!r}", field="duration", hint="e.g. 30s, 2m, 1h30m")
    return float(sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))


def locust_args(pairs: list[str]) -> list[str]:
    """`-a NAME=VALUE` -> `--NAME VALUE`; `-a NAME` -> `--NAME` (a flag)."""
    out = []
    for pair in pairs:
        name, eq, value = pair.partition("=")
        out.append("--" + name.lstrip("-"))
        if eq:
            out.append(value)
    return out


def run_load(args: argparse.Namespace) -> dict[str, Any]:
    from simulator.resources import require

    require("locust", "load", "lbsim load")  # Locust runs as a subprocess: say so before anything starts
    locustfile = locustfile_for(args.profile)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise LbsimError("load.out_not_empty", f"{out} is not empty", field="out", hint="choose another --out or add --force")
        for sub in ("locust", "client", "lab"):
            shutil.rmtree(out / sub, ignore_errors=True)
    (out / "locust").mkdir(parents=True, exist_ok=True)
    duration = parse_duration(args.duration)

    lab: LabProcess | None = None
    api = args.api
    if args.target and not args.api:
        pki = Path(args.pki or "lbsim-out/pki")
    elif api:
        pki = Path(args.pki or "lbsim-out/pki")
    else:
        lab = LabProcess(out / "lab", args.config, args.time_scale, args.token)
        api = lab.api
        pki = Path(args.pki) if args.pki else (out / "lab" / "pki" if not args.config else Path(args.config).resolve().parent / "pki")
    try:
        if not (pki / "ca.pem").exists() and not any(a.startswith(("ca=", "--ca=")) for a in args.arg or []):
            raise LbsimError("load.no_ca", f"{pki / 'ca.pem'}: no lab CA to verify the listener against", field="pki",
                             hint="--pki DIR (the lab's pki/, e.g. lbsim-out/pki) or -a ca=FILE")
        if args.target:
            parts = urlsplit(args.target if "//" in args.target else f"https://{args.target}")
            port = parts.port or 443
            target_args = ["--host", args.target]
            listener = args.listener or str(port)
        else:
            listener = args.listener or DEFAULT_LISTENER.get(locustfile.stem, "aliyun-one-way")
            port = listener_port(api, listener, args.token)
            target_args = ["--listener", str(port), "--host", f"https://localhost:{port}"]
        cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
               "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{max(1, round(duration))}s",
               "--stop-timeout", str(args.stop_timeout), "--csv", str(out / "locust" / LOCUST_PREFIX), "--csv-full-history",
               "--html", str(out / "locust" / "report.html"),
               "--only-summary", "--pki", str(pki), "--client-log", str(out / "client"), *target_args]
        if api:
            cmd += ["--lab-api", api]
        distributed = bool(args.processes and args.processes > 1)
        if distributed:
            cmd += ["--processes", str(args.processes)]
        cmd += locust_args(args.arg or [])
        env = dict(os.environ)
        pin_groups(env)
        env.setdefault("PYTHONUNBUFFERED", "1")

        sampler = CpuSampler(lab.proc.pid) if lab else None
        for attempt in range(MASTER_BIND_ATTEMPTS if distributed else 1):
            if attempt:  # another process took the master port between our probe and Locust's bind
                shutil.rmtree(out / "client", ignore_errors=True)
            run_cmd = cmd + master_args(free_port()) if distributed else cmd
            started = time.time()
            usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            exit_code = run_locust(run_cmd, out / "locust" / "locust.log", env, duration + args.stop_timeout + 120)
            if not (distributed and exit_code != 0 and master_bind_failed(out / "locust" / "locust.log")):
                break
        cmd = run_cmd
        wall = time.time() - started
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        locust_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)

        lb: list[dict[str, Any]] = []
        if api:
            wait_logged(api, args.token)
            lb = api_connections(api, port, started, args.token)
        if sampler:
            sampler.stop()
        if lab:
            lab.stop()
            log_file, lab = lab.connection_log, None
            if log_file and log_file.exists():  # complete, where the API keeps only the last 10,000
                lb = [r for r in read_jsonl([log_file]) if r.get("listener_port") == port]
    finally:
        if lab:
            lab.stop()

    with (out / "connections.jsonl").open("w") as f:
        for r in lb:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    ledger = TrafficLedger()
    ledger.extend(lb)
    ledger.write_csv(out / "traffic.csv")

    rows = locust_rows(out / "locust" / f"{LOCUST_PREFIX}_stats.csv")
    clients = read_jsonl(sorted((out / "client").glob("client-*.jsonl"))) if (out / "client").exists() else []
    report: dict[str, Any] = {
        "profile": locustfile.stem,
        "locustfile": str(locustfile),
        "results": str(out),
        "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": duration,
        "wall_s": round(wall, 3),
        "users": args.users, "spawn_rate": args.spawn_rate, "processes": args.processes or 1,
        "command": cmd,
        "lab": {"api": api, "listener": listener, "port": port, "started_by_load": not (args.api or args.target)},
        "locust": summarize_rows(rows, exit_code),
        "cpu": cpu_report(out / "client", locust_cpu, wall, sampler),
        "traffic": ledger.summary(),
    }
    reports_bytes = clients or any(r["method"] in ("TLS", "WIRE-IN") for r in rows)
    if (lb or api) and reports_bytes:  # a locustfile without LbsimUser (FastHttpUser) has nothing to compare
        report["checks"] = agreement(rows, clients, lb, port)
    (out / "load.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def cpu_report(client_dir: Path, locust_total_s: float, wall: float, lab: CpuSampler | None) -> dict[str, Any]:
    """CPU of each Locust process over its test window (from `cpu-<pid>.json`) and of the lab over the
    workers' window, in % of one core: a load generator near 100% is the bottleneck, not the listener."""
    windows = [json.loads(p.read_text()) for p in sorted(client_dir.glob("cpu-*.json"))] if client_dir.exists() else []
    workers = [w for w in windows if w["role"] != "MasterRunner"] or windows
    out: dict[str, Any] = {"cores": os.cpu_count(), "locust_processes": windows,
                           "locust_total_s": round(locust_total_s, 3),  # every Locust process, start-up included
                           "locust_total_pct": round(100 * locust_total_s / wall, 1),
                           "locust_worker_pct": [w["cpu_pct"] for w in workers], "lab_pct": None}
    if lab and workers:
        start, stop = min(w["start"] for w in workers), max(w["stop"] for w in workers)
        used = lab.cpu_between(start, stop)
        if used is not None:
            out["lab_pct"] = round(100 * used / (stop - start), 1)
    return out


def locust_rows(path: Path) -> list[dict[str, Any]]:
    """Locust's final statistics from its stats CSV: one dict per row, Aggregated left out.

    The CSV, not `--json-file`: Locust's JSON export clears each entry as it serializes it (the
    worker-report code path), which would also empty the final CSV written after it."""
    if not path.exists():
        return []
    out = []
    with path.open() as f:
        for r in csv.DictReader(f):
            if r["Name"] == "Aggregated" and not r["Type"]:
                continue
            n = int(r["Request Count"])
            out.append({"method": r["Type"], "name": r["Name"], "num_requests": n,
                        "num_failures": int(r["Failure Count"]),
                        "total_content_length": round(float(r["Average Content Size"]) * n),
                        "avg_ms": round(float(r["Average Response Time"]), 3) if n else None,
                        "rps": float(r["Requests/s"])})
    return out


def summarize_rows(rows: list[dict[str, Any]], exit_code: int) -> dict[str, Any]:
    """Locust's totals per row, plus the two headline rates (Locust's own req/s of the rows)."""
    table = {f"{r['method']} {r['name']}": {"requests": r["num_requests"], "failures": r["num_failures"],
                                            "avg_ms": r["avg_ms"], "bytes": r["total_content_length"],
                                            "per_s": round(r["rps"], 2)} for r in rows}
    handshake_rows = [r for r in rows if r["method"] == "TLS" and r["name"] != "handshake failed"]
    request_rows = [r for r in rows if r["method"] not in ("TLS", "HTTP-OUT", "WIRE-IN", "WIRE-OUT")]
    return {"exit_code": exit_code, "failures": sum(r["num_failures"] for r in rows),
            "handshakes": sum(r["num_requests"] for r in handshake_rows),
            "requests": sum(r["num_requests"] for r in request_rows),
            "handshakes_per_s": round(sum(r["rps"] for r in handshake_rows), 1),
            "requests_per_s": round(sum(r["rps"] for r in request_rows), 1),
            "rows": table}


def refusal_verdict(loc: Mapping[str, Any]) -> str | None:
    """One plain sentence for a profile that is refused on purpose (mutual's invalid clients): how many
    refusals were the expected ones, and whether anything failed that should not have. Locust counts an
    expected refusal as a success of its `TLS handshake rejected` row; an invalid client that got served is
    a failure of that row, a valid client refused a `TLS handshake failed`. None when nothing was refused."""
    rows = loc.get("rows") or {}
    rejected = rows.get("TLS handshake rejected")
    if not rejected or not rejected["requests"]:
        return None
    expected = rejected["requests"] - rejected["failures"]
    out = f"refusals: {expected} of {rejected['requests']} were clients meant to be refused (invalid certificates), refused in the handshake as expected"
    unexpected = []
    if rejected["failures"]:
        unexpected.append(f"{rejected['failures']} invalid client(s) served")
    refused_valid = (rows.get("TLS handshake failed") or {}).get("requests", 0)
    if refused_valid:
        unexpected.append(f"{refused_valid} client(s) that should have got in refused or failed")
    other = loc["failures"] - rejected["failures"] - (rows.get("TLS handshake failed") or {}).get("failures", 0)
    if other > 0:
        unexpected.append(f"{other} other failure(s)")
    return out + ("; nothing unexpected failed" if not unexpected else "; UNEXPECTED: " + ", ".join(unexpected))


def print_report(report: Mapping[str, Any]) -> None:
    loc = report["locust"]
    cpu = report["cpu"]
    print(f"{report['profile']}: {report['users']} users, {report['duration_s']:g} s, listener {report['lab']['listener']} "
          f"(:{report['lab']['port']})")
    print(f"  Locust: {loc['handshakes']} handshakes ({loc['handshakes_per_s']}/s), {loc['requests']} requests "
          f"({loc['requests_per_s']}/s), {loc['failures']} failures, exit code {loc['exit_code']}")
    verdict = refusal_verdict(loc)
    if verdict:
        print(f"  {verdict}")
    lab_cpu = f", the lab {cpu['lab_pct']}%" if cpu["lab_pct"] is not None else ""
    workers = "+".join(f"{p:g}%" for p in cpu["locust_worker_pct"]) or "?"
    print(f"  CPU over the run, % of one core: Locust {workers}{lab_cpu} ({cpu['cores']} cores)")
    for t in report["traffic"]:
        print(f"  listener :{t['listener_port']}: {t['connections']} connections (full {t['handshakes_full']}, resumed "
              f"{t['handshakes_resumed']}, failed {t['handshakes_failed']}), {t['requests']} requests, "
              f"wire out {t['wire_out']:,} B, billed {t['billed_bytes']:,} B, overhead {t['overhead_pct']}%")
    if loc["exit_code"] != 0 and not loc["failures"]:  # errors in the users or in Locust itself
        log = Path(report["results"]) / "locust" / "locust.log"
        lines = log.read_text().strip().splitlines() if log.exists() else []
        errors = [l for l in lines if re.match(r"\w*(Error|Exception)\b|.*error:", l)]
        print("  Locust reported errors; see locust/locust.log:\n    " + "\n    ".join((errors or lines)[-3:]))
    checks = report.get("checks")
    if checks is None:
        print("  checks: skipped (no lab API, or a locustfile that reports no TLS and wire rows)")
        return
    h, c, b = checks["handshakes"], checks["connections"], checks["bytes"]
    kinds = ", ".join(f"{k.split()[1]} {h['locust'][k]}/{h['listener'][k]}" for k in h["locust"])
    print(f"  handshakes  {kinds} (Locust/listener)  {'OK' if h['ok'] else 'DIFFER'}")
    print(f"  connections {c['matched']} matched, {c['mismatches']} mismatched, {c['unmatched_listener_records']} "
          f"unmatched in the log  {'OK' if c['ok'] else 'DIFFER'}")
    for example in c["examples"][:3]:
        print(f"    port {example['client_port']}: {example['problem']}")
    print(f"  bytes       LB->client wire {b['locust_wire_in']:,}/{b['listener_wire_out']:,}, client->LB wire "
          f"{b['locust_wire_out']:,}/{b['listener_wire_in']:,} (Locust/listener), billed {b['listener_billed']:,} "
          f"(from the clients' HTTP bytes {b['billed_from_client_http_bytes']:,})  {'OK' if b['ok'] else 'DIFFER'}")


def cmd_load(args: argparse.Namespace) -> int:
    if args.config and (args.api or args.target):
        raise LbsimError("load.conflicting_targets", "-c starts a lab; --api/--target use a running one", field="config")
    report = run_load(args)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
        print(f"results: {args.out}")
    failed = report["locust"]["exit_code"] != 0  # failures, errors in users, or Locust itself
    if "checks" in report and not report["checks"]["ok"]:
        failed = True
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("load", help="run a Locust load profile against a lab listener and collect the results",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", help=f"{' | '.join(PROFILES)}, or a path to a locustfile")
    p.add_argument("-u", "--users", type=int, default=10, help="concurrent users (default 10)")
    p.add_argument("-r", "--spawn-rate", type=float, default=10, help="users started per second (default 10)")
    p.add_argument("-t", "--duration", default="30s", help="run time: 30, 30s, 2m (default 30s)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("-c", "--config", help="start this lab YAML (default: the built-in default lab)")
    where.add_argument("--api", help="use a running lab: its management API URL (as `lbsim up` prints it)")
    p.add_argument("--target", help="https://HOST:PORT to load instead of a lab listener; with --api its log is collected")
    p.add_argument("--listener", help="the lab listener, by name or port (default: aliyun-one-way; mutual: aliyun-mutual)")
    p.add_argument("--pki", help="PKI directory with ca.pem and client-*.pem (default: the started lab's, else lbsim-out/pki)")
    p.add_argument("--token", default=os.environ.get("LBSIM_API_TOKEN"), help="the lab API's bearer token")
    p.add_argument("--time-scale", type=float, help="time_scale of the started lab (vendor timers)")
    p.add_argument("--processes", type=int, default=0, help="Locust master + N worker processes on this machine")
    p.add_argument("--stop-timeout", type=int, default=10, help="seconds users get to finish their task at the end")
    p.add_argument("-a", "--arg", action="append", metavar="NAME[=VALUE]",
                   help="a profile argument for Locust, e.g. -a invalid-share=0.5 -a tls-version=TLSv1.2 (repeatable)")
    p.add_argument("-o", "--out", default="lbsim-load", help="results directory (default lbsim-load)")
    p.add_argument("--force", action="store_true", help="reuse a non-empty results directory")
    p.add_argument("--json", action="store_true", help="print load.json instead of the summary")
    p.set_defaults(func=cmd_load)
