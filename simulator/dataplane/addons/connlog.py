"""The connection log: one JSON line per client connection, modelled on the AWS ALB connection log."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from mitmproxy import connection
from OpenSSL import SSL

from simulator.metering import ConnectionMeter, billing
from simulator.dataplane.registry import ClientState, Registry
from simulator.dataplane.sweep import ClosedSweeper
from simulator import vendors


# One encoder for every line (json.dumps with separators builds a new one per call); same output. A record
# is built fresh from plain values, never holds itself: no check for cycles.
_encode_line = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def session_reused(conn: SSL.Connection) -> bool:
    # pyOpenSSL has no wrapper for SSL_session_reused; mitmproxy reaches into the binding the same way.
    return bool(SSL._lib.SSL_session_reused(conn._ssl))  # type: ignore[attr-defined]


_second: tuple[float, str] = (-0.5, "")  # the last whole second `iso` formatted and its text, swapped as one


def iso(ts: float) -> str:
    """`ts` (a Unix time) in UTC, to the millisecond: ``2026-12-07T17:46:51.032Z``.

    As `datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")` gives it (microseconds rounded
    half to even, then cut to milliseconds), with the date and time of day formatted once per second: one
    per connection record, 2 µs each the long way."""
    frac, whole = math.modf(ts)
    micros = round(frac * 1e6)
    if micros >= 1_000_000:
        whole += 1
        micros -= 1_000_000
    elif micros < 0:  # before 1970
        whole -= 1
        micros += 1_000_000
    global _second
    second = _second  # one read: a lab in another thread may swap it meanwhile, never half of it
    if second[0] != whole:
        second = _second = (whole, datetime.datetime.fromtimestamp(whole, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{second[1]}.{micros // 1000:03d}Z"


def connection_record(state: ClientState, client: connection.Client, time_scale: float = 1.0) -> dict[str, Any]:
    spec = state.version.spec
    conn = state.ssl_conn
    established = state.handshake_done is not None
    # The client's leaf as the verify callback saw it: OpenSSL keeps no peer certificate when it refuses one.
    peer = conn.get_peer_certificate(as_cryptography=True) if conn is not None else None
    refused = getattr(conn, "lbsim_peer_cert", None) if conn is not None and peer is None else None
    if refused is not None:
        peer = refused.to_cryptography()
    # A refused client certificate comes after ServerHello: version and cipher are settled by then.
    negotiated = established or refused is not None
    if not established:
        status = state.verify_status or ("Failed:Timeout" if state.closed_by else "Failed:HandshakeIncomplete")
    else:
        status = state.verify_status or "Success"
    record: dict[str, Any] = {
        "time": iso(state.started),
        "client": f"{state.peer[0]}:{state.peer[1]}",
        "listener": state.listener.name,
        "listener_port": state.listener.port,
        "listener_address": state.listener.address,  # with the port: which listener (load balancers share ports)
        "profile": spec.profile,
        "billing_model": spec.billing_model,
        "sni": state.sni,
        "tls_protocol": client.tls_version if established else conn.get_protocol_version_name() if negotiated else None,
        "tls_cipher": client.cipher if established else conn.get_cipher_name() if negotiated else None,
        "alpn": client.alpn.decode() if established and client.alpn else None,
        "tls_handshake_latency": round(state.handshake_done - state.started, 6) if established else None,
        "resumed": session_reused(conn) if established and conn is not None else None,
        # The negotiated key-exchange group (OpenSSL's name: x25519, secp256r1, X25519MLKEM768, ...).
        "tls_keyexchange": conn.get_group_name() if established and conn is not None else None,
        "tls_verify_status": status,
        "client_cert_subject": None,
        "client_cert_serial": None,
        "client_cert_validity": None,
        "requests": state.requests,
        "duration": round(time.time() - state.started, 6),
        "closed_by": state.closed_by,
        "error": state.error,  # a failed handshake, or the first refused request / protocol error
    }
    if peer is not None:
        record["client_cert_subject"] = peer.subject.rfc4514_string()
        record["client_cert_serial"] = format(peer.serial_number, "X")
        record["client_cert_validity"] = {
            "not_before": peer.not_valid_before_utc.isoformat(),
            "not_after": peer.not_valid_after_utc.isoformat(),
        }
    meter = getattr(conn, "meter", None)
    if meter is None and conn is None and state.kernel_received:
        # The client left before its ClientHello was whole (or sent one mitmproxy cannot parse): no TLS
        # connection, so no meter; TlsTermination took the kernel's count of what it sent.
        meter = ConnectionMeter()
        meter.started_at = state.started
        meter.handshake_error = state.error
    if meter is not None:
        # Bytes the kernel received that mitmproxy discarded after a failed handshake (see TlsTermination).
        if state.kernel_received > meter.in_wire:
            meter.received_unread(state.kernel_received - meter.in_wire)
        meter.finish()
        record["traffic"] = meter.to_dict()
        record["billed"] = billing.billed(spec.billing_model, record)
    return record


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def vendor_log_line(record: dict[str, Any], fields: tuple[str, ...], statuses: Mapping[str, str], lb_id: str,
                    lb_ip: str) -> str:
    """One connection in a vendor's space-separated connection-log format (the ALB's: docs/aws-alb.md).

    Absent values are ``-``; the subject is quoted (it holds commas and may hold spaces); times are ISO 8601
    with microseconds; the handshake latency is seconds with millisecond precision; `conn_trace_id` is
    ``TID_`` and 32 hex digits derived from the connection (stable for a record)."""
    ip, _, port = record["client"].rpartition(":")
    validity = record.get("client_cert_validity")
    latency = record.get("tls_handshake_latency")
    started = datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
    status = record.get("tls_verify_status") or "-"
    values = {
        "timestamp": started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "client_ip": ip.strip("[]"),
        "client_port": port,
        "listener_port": str(record["listener_port"]),
        "tls_protocol": record.get("tls_protocol"),
        "tls_cipher": record.get("tls_cipher"),
        "tls_handshake_latency": f"{latency:.3f}" if latency is not None else None,
        "leaf_client_cert_subject": _quoted(record["client_cert_subject"]) if record.get("client_cert_subject") else None,
        "leaf_client_cert_validity": (
            f"NotBefore={validity['not_before'][:19]}Z;NotAfter={validity['not_after'][:19]}Z" if validity else None),
        "leaf_client_cert_serial_number": record.get("client_cert_serial"),
        "tls_verify_status": statuses.get(status, status),
        "conn_trace_id": "TID_" + hashlib.sha256(f"{record['time']}|{record['client']}|{record['listener_port']}"
                                                 .encode()).hexdigest()[:32],
        "tls_keyexchange": record.get("tls_keyexchange"),
        "elb": lb_id,
        "ip_address": lb_ip,
    }
    return " ".join(values.get(f) or "-" for f in fields)


class VendorLogs:
    """The vendors' own connection-log files (`VendorProfile.connection_log`) in one directory, beside the
    JSON log. One writer per lab: worker 0, for its own connections and the workers' (`workers: N`)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._files: dict[str, IO[str]] = {}  # file name -> open file
        self._closed = False

    def write(self, record: dict[str, Any], lb_id: str, lb_ip: str) -> None:
        fmt = vendors.get(record["profile"]).connection_log
        if fmt is None or self._closed:
            return  # no format of its own; or the lab is stopping (no write after close)
        out = self._files.get(fmt.file)
        if out is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            out = self._files[fmt.file] = (self.directory / fmt.file).open("a", buffering=1)
        out.write(vendor_log_line(record, fmt.fields, fmt.status_names, lb_id, lb_ip) + "\n")

    def close(self) -> None:
        self._closed = True
        for f in self._files.values():
            f.close()
        self._files.clear()


class ConnectionLog:
    """Writes each finished connection to the log file and keeps recent ones for `GET /v1/connections`.
    `vendor_logs` also gets each connection in its vendor's format (None in a worker process, whose log is a
    pipe to worker 0: worker 0 writes those lines).

    `keep`: False in a worker process. Worker 0 keeps every worker's records (its ledger, its recent ones)
    as they come down the pipe; a worker's own copies would only grow (about 12 MB of recent records and
    45 bytes per connection ever served, per worker) and cost each connection the ledger's work.

    `batch`: seconds a written line may wait for others before they all go at once (a worker's pipe: each
    write wakes worker 0, which measured 1.13x the CPU per connection of a worker when every record went
    alone, docs/performance.md, "Round fourteen"). `flush` sends them at once (a worker's settle). 0: every
    line goes as it is written (a file others read as it grows)."""

    def __init__(self, registry: Registry, path: Path | None = None, ledger: Any = None,
                 vendor_logs: VendorLogs | None = None, keep: bool = True, batch: float = 0.0):
        self.registry = registry
        self.path = path
        self.ledger = ledger
        self.vendor_logs = vendor_logs
        self.keep = keep
        self.batch = batch
        self._flush_due: Any = None  # the timer that sends the lines waiting in a batch
        self.logged = 0  # lines written to the log (a worker tells worker 0 how many to wait for)
        self._file: IO[str] | None = None
        self._readers: dict[str, Any] = {}  # client id -> its asyncio reader, which keeps a reset's error
        self.sweeper = ClosedSweeper()  # closed connections' cycles are freed in step with the open ones

    def load(self, loader: Any) -> None:
        self.master = loader.master  # our lab's, not mitmproxy's process-wide ctx.master

    def client_connected(self, client: connection.Client) -> None:
        handler = self.master.addons.get("proxyserver").connections.get(client.id)
        io = handler.transports.get(client) if handler else None
        if io is not None and io.reader is not None:
            self._readers[client.id] = io.reader

    def running(self) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Line-buffered, a reader sees whole records; a batch is sent whole by `flush`.
            self._file = self.path.open("a", buffering=1 << 16 if self.batch else 1)

    def write(self, line: str) -> None:
        """One record's line, counted; with `batch`, sent with the others of its batch (in the loop's thread)."""
        assert self._file is not None
        self._file.write(line + "\n")
        self.logged += 1
        if self.batch and self._flush_due is None:
            self._flush_due = asyncio.get_running_loop().call_later(self.batch, self.flush)

    def flush(self) -> None:
        """Send the lines waiting in a batch now."""
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        if self._file:
            self._file.flush()

    def done(self) -> None:
        if self.vendor_logs is not None:
            self.vendor_logs.close()
        if self._file:
            self.flush()
            self._file.close()
            self._file = None  # connections that close during shutdown are not written (no write after close)

    def client_disconnected(self, client: connection.Client) -> None:
        reader = self._readers.pop(client.id, None)
        state = self.registry.clients.get(client.id)
        if state is None:
            return
        try:
            self._log(client, state, reader)
        finally:
            # Only now is the connection no longer open: a caller that waits until no client is open (a
            # scenario's `wait_log_settled`, in another thread) then finds every record in every log.
            self.registry.clients.pop(client.id, None)
        self.sweeper.closed_one(len(self.registry.clients))

    def _log(self, client: connection.Client, state: ClientState, reader: Any) -> None:
        # mitmproxy treats a reset like a clean close; the reader still holds the ConnectionResetError.
        if state.closed_by is None and reader is not None and isinstance(reader.exception(), ConnectionResetError):
            state.closed_by = "client_reset"
        state.listener.connections -= 1
        if state.handshake_done is not None and state.ssl_conn is not None:
            # mitmproxy never calls SSL_shutdown; without the shutdown flags OpenSSL treats the closed
            # connection as broken and drops its session from the cache (no session-ID resumption). nginx
            # marks a clean close the same way.
            state.ssl_conn.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)
        record = connection_record(state, client)
        line = _encode_line(record)  # encoded once: the log's line is also how the lab keeps the record
        if self._file:
            self.write(line)
            if self.vendor_logs is not None:  # a profile with a connection-log format of its own gets it beside
                self.vendor_logs.write(record, state.version.spec.lb_id, client.sockname[0])
        if not self.keep:
            return
        if self.ledger is not None:
            self.ledger.add(record, record.get("billed"), line)  # billed once per connection, not twice
        # Last: a record the API (or another thread of the process) can see is in every log file already.
        self.registry.recent.append(record, line)
