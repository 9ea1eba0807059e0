"""Per-listener aggregation of connection-log traffic records, and CSV/JSONL export for notebooks.

A record is one connection-log line: {"time", "listener_port", "profile", "billing_model",
"traffic": ConnectionMeter.to_dict(), ...}. A connection record without `traffic` (metering off, or a
client gone before its ClientHello was whole) counts as an unmetered connection: no bytes, no
handshake. Rates (new connections/s, requests/s, GB/h) are taken over
the observed window, from the first connection's start to the last one's end (at least 1 s), or over a
window the caller gives; LCU estimates read them as if sustained for the hour.
"""

from __future__ import annotations

import csv
import datetime
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.errors import LbsimError
from simulator.metering.kept_records import KeptRecords
from simulator.metering import billing
from simulator.metering.meter import CATEGORIES, DIRECTIONS

_FIELDS = ("wire",) + CATEGORIES


@dataclass
class _Listener:
    """Running totals of one listener (port, profile, billing model, and address: two load balancers may
    each have a listener on the same port)."""

    port: Any
    profile: str | None
    model: str
    address: str | None = None
    connections: int = 0
    unmetered: int = 0
    full: int = 0
    resumed: int = 0
    failed: int = 0
    requests: int = 0
    rule_evaluations: float = 0.0
    bytes: dict[str, dict[str, int]] = field(default_factory=lambda: {d: dict.fromkeys(_FIELDS, 0) for d in DIRECTIONS})
    handshake_by_kind: dict[str, list[int]] = field(default_factory=lambda: {"full": [0, 0], "resumed": [0, 0]})
    billed_in: int = 0
    billed_out: int = 0
    intervals: list[tuple[float, float]] = field(default_factory=list)


def epoch(value: Any) -> float | None:
    """Seconds since the epoch from a number or an ISO 8601 string (the connection log's `time`)."""
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _interval(record: Mapping[str, Any], traffic: Mapping[str, Any]) -> tuple[float, float]:
    """When the connection was open: the meter's times, else the log's `time` (+ `duration`)."""
    start = epoch(traffic.get("started_at"))
    end = epoch(traffic.get("finished_at"))
    if start is None:  # only then is the log's ISO `time` parsed (a metered record has the meter's times)
        logged = epoch(record.get("time"))
        start = logged if logged is not None else end
    if end is None:
        duration = record.get("duration")
        end = start + float(duration) if start is not None and duration is not None else start
    if start is None or end is None:
        start = end = time.time()
    return float(start), float(max(end, start))


def is_connection_record(record: Any) -> bool:
    """A connection-log record (metered or not), as opposed to other events in the same log."""
    return isinstance(record, Mapping) and (isinstance(record.get("traffic"), Mapping) or "listener_port" in record)


class TrafficLedger:
    """Connection records in, per-listener traffic summaries and exports out."""

    def __init__(self) -> None:
        self.records = KeptRecords()  # every record, as JSON text (see kept_records.py)
        self._listeners: dict[tuple[Any, str | None, str], _Listener] = {}

    def model_of(self, record: Mapping[str, Any]) -> str:
        """The record's billing model: its own `billing_model`, else its profile's default."""
        name = record.get("billing_model") or record.get("profile")
        if not name:
            raise LbsimError("NoBillingModel", "record names neither billing_model nor profile",
                             field="billing_model")
        return billing.model_for(name).name

    def add(self, record: Mapping[str, Any], billed: Mapping[str, Any] | None = None, line: str | None = None) -> None:
        """Account one connection record (a copy is kept, for exports and `records`).

        `billed`: what `billing.billed` gave for this record's traffic, if the caller has it already (the
        connection log does); used only if it names the record's model, else billing is computed here.
        `line`: the record's JSON text, if the caller has it (the connection log does)."""
        model = self.model_of(record)
        key = (record.get("listener_port"), record.get("profile"), model, record.get("listener_address"))
        lst = self._listeners.get(key)
        if lst is None:
            lst = self._listeners[key] = _Listener(key[0], key[1], model, key[3])
        lst.connections += 1
        self.records.append(record, line)
        t = record.get("traffic")
        reqs = int(record.get("requests") or (t or {}).get("requests") or 0)  # the log's count, else the meter's
        lst.requests += reqs
        lst.rule_evaluations += reqs * float(record.get("rules", 1))
        if not isinstance(t, Mapping):
            lst.unmetered += 1
            lst.intervals.append(_interval(record, {}))
            return
        if not t.get("handshake_complete"):
            lst.failed += 1
        else:
            kind = "resumed" if t.get("resumed") else "full"
            setattr(lst, kind, getattr(lst, kind) + 1)
            lst.handshake_by_kind[kind][0] += t["client_to_lb"]["handshake"]
            lst.handshake_by_kind[kind][1] += t["lb_to_client"]["handshake"]
        for d in DIRECTIONS:
            got, acc = t[d], lst.bytes[d]
            for f in _FIELDS:
                acc[f] += int(got[f])
        b = billed if billed is not None and billed.get("model") == model else billing.billed(model, t)
        lst.billed_in += b["billed_client_to_lb"]
        lst.billed_out += b["billed_lb_to_client"]
        lst.intervals.append(_interval(record, t))

    def extend(self, records: Iterable[Mapping[str, Any]]) -> None:
        for r in records:
            self.add(r)

    # --- summaries -------------------------------------------------------------------------------

    def summary(self, window_s: float | None = None) -> list[dict[str, Any]]:
        """One dict per listener, ordered by port; see docs/metering.md for the fields."""
        return [self._summarize(lst, window_s)
                for lst in sorted(self._listeners.values(), key=lambda x: (str(x.port), str(x.address), str(x.profile), x.model))]

    @staticmethod
    def _summarize(lst: _Listener, window_s: float | None) -> dict[str, Any]:
        start = min(s for s, _ in lst.intervals)
        end = max(e for _, e in lst.intervals)
        observed = end - start
        window = window_s if window_s else max(observed, 1.0)
        busy = sum(e - s for s, e in lst.intervals)
        m = billing.model_for(lst.model)
        billed_total = lst.billed_in + lst.billed_out
        wire_billed_dirs = sum(lst.bytes[d]["wire"] for d in m.billed_directions)
        req_rate = lst.requests / window
        rules_per_request = lst.rule_evaluations / lst.requests if lst.requests else 1.0
        hs_mean = {kind: ({"client_to_lb": round(v[0] / n, 1), "lb_to_client": round(v[1] / n, 1)} if n else None)
                   for kind, v, n in (("full", lst.handshake_by_kind["full"], lst.full),
                                      ("resumed", lst.handshake_by_kind["resumed"], lst.resumed))}
        return {
            "listener_port": lst.port,
            "listener_address": lst.address,
            "profile": lst.profile,
            "billing_model": lst.model,
            "connections": lst.connections,
            "unmetered": lst.unmetered,
            "handshakes_full": lst.full,
            "handshakes_resumed": lst.resumed,
            "handshakes_failed": lst.failed,
            "requests": lst.requests,
            "window_s": round(window, 6),
            "observed_s": round(observed, 6),
            "new_connections_per_s": round(lst.connections / window, 6),
            "requests_per_s": round(req_rate, 6),
            "concurrent_avg": round(busy / window, 6),
            "concurrent_peak": _peak(lst.intervals),
            "bytes": {d: dict(v) for d, v in lst.bytes.items()},
            "wire_in": lst.bytes["client_to_lb"]["wire"],
            "wire_out": lst.bytes["lb_to_client"]["wire"],
            "billed_in": lst.billed_in,
            "billed_out": lst.billed_out,
            "billed_bytes": billed_total,
            "overhead_pct": billing.overhead_pct(wire_billed_dirs, billed_total),
            "handshake_bytes_mean": hs_mean,
            "lcu": billing.lcu(lst.model, new_connections_per_s=lst.connections / window,
                               concurrent_connections=busy / window,
                               processed_bytes_per_h=billed_total / window * 3600,
                               requests_per_s=req_rate, rules_per_request=rules_per_request),
        }

    # --- exports ---------------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per connection (the CSV columns)."""
        out = []
        for r in self.records:
            t = r.get("traffic")
            if not isinstance(t, Mapping):
                continue
            model = self.model_of(r)
            b = billing.billed(model, t)
            row: dict[str, Any] = {
                "time": r.get("time"), "listener_port": r.get("listener_port"),
                "listener_address": r.get("listener_address"), "profile": r.get("profile"), "billing_model": model, "client": r.get("client"),
                "tls_version": t.get("tls_version"), "cipher": t.get("cipher"), "resumed": t.get("resumed"),
                "handshake_complete": t.get("handshake_complete"),
                "requests": r.get("requests") if r.get("requests") is not None else t.get("requests"),
                "started_at": t.get("started_at"), "finished_at": t.get("finished_at"),
            }
            for d in DIRECTIONS:
                for f in _FIELDS:
                    row[f"{d}_{f}"] = t[d][f]
            row["billed_bytes"] = b["billed_bytes"]
            row["overhead_pct"] = b["overhead_pct"]
            out.append(row)
        return out

    def write_csv(self, path: str | Path) -> int:
        """Write one row per connection; return the number of rows."""
        rows = self.rows()
        columns = list(rows[0]) if rows else ["time", "listener_port", "profile", "billing_model"]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows(rows)
        return len(rows)

    def write_jsonl(self, path: str | Path) -> int:
        """Write the records as given, one JSON object a line (readable by `from_jsonl`)."""
        with open(path, "w") as f:
            for r in self.records:
                f.write(json.dumps(r, sort_keys=True, default=str) + "\n")
        return len(self.records)

    @classmethod
    def from_jsonl(cls, path: str | Path) -> TrafficLedger:
        """Load a connection log; lines that are not connection records (other events) are skipped."""
        ledger = cls()
        ledger.extend(read_connection_log(path))
        return ledger


def read_connection_log(path: str | Path) -> list[dict[str, Any]]:
    """The connection records of a JSON-lines log (other events and blank lines skipped)."""
    try:
        f = open(path)
    except OSError as e:
        raise LbsimError("LogUnreadable", f"cannot read {path}: {e.strerror}", field="log") from None
    records = []
    with f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise LbsimError("LogInvalid", f"{path}:{n}: not JSON ({e.msg})", field="log") from None
            if is_connection_record(rec):
                records.append(rec)
    return records


def _peak(intervals: list[tuple[float, float]]) -> int:
    """Most connections open at once (intervals are closed: one ending at t overlaps one starting at t)."""
    events = sorted([(s, -1) for s, _ in intervals] + [(e, 1) for _, e in intervals])
    cur = peak = 0
    for _, sign in events:
        cur -= sign
        peak = max(peak, cur)
    return peak
