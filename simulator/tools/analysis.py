"""The data behind the notebooks: load a results directory, or measure a small one, and reduce it to tables.

    from simulator.tools import analysis
    results = analysis.load_results("lbsim-out/run")        # connections.jsonl, report.json, locust/*.csv
    results = analysis.collect_overhead("/tmp/overhead")    # or measure a fresh one, in seconds
    curve = analysis.overhead_curve(results.connections, "tencent-clb")
    analysis.conclusions(results)                           # sentences built from the measured numbers

`collect_overhead` starts a lab (:func:`simulator.harness.running.start_lab`, in-process) with four listeners (RSA
and ECDSA certificates, one-way and mutual), drives real keep-alive TLS clients through it and joins each
client's intent (version, resumption, requests) to the connection log's metered bytes. Every number the
notebooks show comes from those metered bytes (`simulator.metering`); the only constants here are the
vendor-facts §4 reference figures, kept as a data table to compare against. Compliance verdicts are
`simulator.harness.compliance`'s, the ones `lbsim run` reports.

pandas is imported here (the `notebooks` extra); matplotlib only inside the `plot_*` functions.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import struct
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import pandas as pd
except ModuleNotFoundError as missing:  # an optional part of lbsim: name the extra that brings it
    raise ModuleNotFoundError(f"simulator.tools.analysis (the notebooks) needs {missing.name}: install "
                              f"lbsim[notebooks] (pip install 'lbsim[notebooks]')", name=missing.name) from missing
from OpenSSL import SSL

from simulator.metering import CATEGORIES, DIRECTIONS, TrafficLedger, billing
from simulator.metering.ledger import read_connection_log
from simulator.policies.context import session_reused

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from simulator.harness.running import RunningLab

MODELS: tuple[str, ...] = tuple(billing.MODELS)  # aliyun-slb, tencent-clb, aws-alb
LCU_MODELS: tuple[str, ...] = tuple(m for m in MODELS if billing.MODELS[m].lcu is not None)
IN, OUT = billing.IN, billing.OUT

# ---- reference figures (vendor-facts §4) ---------------------------------------------------------------

REFERENCE_SOURCE = ("docs/vendor-facts.md §4 'Measured reference figures (a 2-core lab machine, loopback, "
                    "RSA-2048)', small lab chain of 2 certificates, records only")


@dataclass(frozen=True)
class ReferenceHandshake:
    """One handshake size from vendor-facts §4. `extra` rows are a difference against the one-way row."""

    case: str
    version: str
    key_type: str
    resumed: bool
    mutual: bool
    client_to_lb: int | None
    lb_to_client: int | None
    extra: bool = False
    note: str = ""


REFERENCE_HANDSHAKES: tuple[ReferenceHandshake, ...] = (
    ReferenceHandshake("TLS 1.2 ECDHE-RSA, full", "TLSv1.2", "RSA", False, False, 278, 2459),
    ReferenceHandshake("TLS 1.3 RSA, full (2 tickets)", "TLSv1.3", "RSA", False, False, 328, 2886),
    ReferenceHandshake("TLS 1.2 ticket resumption", "TLSv1.2", "RSA", True, False, 568, 141),
    ReferenceHandshake("TLS 1.3 mutual (RSA): added client->LB", "TLSv1.3", "RSA", False, True, 1180, None,
                       extra=True, note="difference to the one-way handshake"),
)

# Per application-data record (bytes), vendor-facts §4; (low, high) where §4 gives a range.
REFERENCE_RECORD_OVERHEAD: dict[str, int | tuple[int, int]] = {
    "TLS 1.3 AEAD": 22,
    "TLS 1.2 AES-GCM": 29,
    "TLS 1.2 ChaCha20": 21,
    "TLS 1.2 AES-CBC-SHA1": (45, 57),
}


def reference_handshakes() -> pd.DataFrame:
    """The §4 handshake sizes as a table (source in `REFERENCE_SOURCE`)."""
    return pd.DataFrame([asdict(r) for r in REFERENCE_HANDSHAKES])


# ---- paths the user gives ---------------------------------------------------------------------------------

NOTEBOOK_OUT = "lbsim-notebooks"  # where a notebook writes its figures and conclusions by default (git-ignored)


def user_cwd() -> Path:
    """The directory the user ran the command from. A Jupyter kernel starts in the notebook's own directory
    (`notebooks/`) but inherits the environment of the shell that started Jupyter or nbconvert, whose `$PWD`
    names the user's directory. `$LBSIM_CWD` overrides both (Makefile targets set it); without either, the
    process's own working directory."""
    for name in ("LBSIM_CWD", "PWD"):
        value = os.environ.get(name)
        if value and Path(value).is_absolute() and Path(value).is_dir():
            return Path(value)
    return Path.cwd()


def user_path(path: str | Path) -> Path:
    """`path` as the user meant it: absolute as given, relative from :func:`user_cwd` (not from `notebooks/`)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else user_cwd() / p


def notebook_out(path: str | Path | None = None) -> Path:
    """Where a notebook writes (figures, `*_conclusions.md`): `path`, else `$LBSIM_NOTEBOOK_OUT`, else
    `lbsim-notebooks/`, relative ones from :func:`user_cwd`. Never `notebooks/` itself, whose files are tracked."""
    return user_path(path or os.environ.get("LBSIM_NOTEBOOK_OUT") or NOTEBOOK_OUT)


# ---- loading a results directory -----------------------------------------------------------------------

# Columns of a `cases.csv` (written by `collect_overhead`): what each client meant to do, joined to the
# connection log on (client, listener_port, time).
CASE_COLUMNS = ("experiment", "listener", "listener_port", "client", "time", "case_version", "case_key_type",
                "case_resumed", "case_mutual", "case_requests", "response_bytes", "target_rate", "step")
_JOIN = ["client", "listener_port", "time"]


@dataclass
class Results:
    """A results directory, loaded: one row per connection, the report and Locust's tables if present."""

    path: Path | None
    records: list[dict[str, Any]]
    connections: pd.DataFrame
    report: dict[str, Any] | None = None
    locust: dict[str, pd.DataFrame] = field(default_factory=dict)
    steps: pd.DataFrame | None = None  # collect_overhead's connection-rate steps (LCU), if any
    load: dict[str, Any] | None = None  # `lbsim load`'s load.json: the run, Locust's totals, the checks

    @property
    def generated(self) -> bool:
        """True for a directory `collect_overhead` measured (it knows each client's intent)."""
        return "experiment" in self.connections.columns

    def ledger(self) -> TrafficLedger:
        ledger = TrafficLedger()
        ledger.extend(self.records)
        return ledger


def load_results(path: str | Path) -> Results:
    """Load a results directory of `lbsim run`, `lbsim load` or `collect_overhead`.

    Needs `connections.jsonl`; reads `report.json` (lbsim run), `load.json` and `locust/*.csv` (lbsim load),
    `cases.csv` and `steps.csv` (collect_overhead) when there.
    Key types the log does not carry are taken from the report's listeners.
    """
    root = Path(path)
    log = root / "connections.jsonl"
    if not root.is_dir():
        raise FileNotFoundError(f"no results directory at {root} ({root.resolve()}"
                                f"{' is a file' if root.exists() else ' does not exist'})")
    if not log.is_file():
        raise FileNotFoundError(f"{root} has no connections.jsonl (not a results directory of lbsim run/load)")
    records = read_connection_log(log)
    report = json.loads((root / "report.json").read_text()) if (root / "report.json").is_file() else None
    key_types = {l.get("port"): l.get("key_type") for l in (report or {}).get("listeners", []) if l.get("key_type")}
    cases = pd.read_csv(root / "cases.csv") if (root / "cases.csv").is_file() else None
    frame = connections_frame(records, cases=cases, key_types=key_types)
    locust = {p.stem: pd.read_csv(p) for p in sorted((root / "locust").glob("*.csv"))} if (root / "locust").is_dir() else {}
    steps = pd.read_csv(root / "steps.csv") if (root / "steps.csv").is_file() else None
    load = json.loads((root / "load.json").read_text()) if (root / "load.json").is_file() else None
    return Results(root, records, frame, report, locust, steps, load)


def _key_type_from_cipher(cipher: Any) -> str | None:
    c = str(cipher or "")
    if "ECDSA" in c:
        return "ECDSA"
    if c and not c.startswith("TLS_"):  # TLS <= 1.2 suites that are not ECDSA authenticate with RSA here
        return "RSA"
    return None  # TLS 1.3 suites do not name the certificate type


def connections_frame(records: Iterable[Mapping[str, Any]], cases: pd.DataFrame | None = None,
                      key_types: Mapping[Any, str] | None = None) -> pd.DataFrame:
    """One row per connection record: the log's fields, traffic flattened as `<direction>_<category>`,
    and per billing model `billed_<model>` / `wire_<model>` (wire bytes in the directions it bills).

    Derived columns every analysis uses: `tls_version`, `key_type`, `resumed`, `mutual`, `requests`,
    `wire_total`, `payload_total`, `variant`. `cases` (from `collect_overhead`) adds what each client
    intended; its key type and mutual flag win over the inferred ones.
    """
    rows = []
    for i, r in enumerate(records):
        row = {k: v for k, v in r.items() if not isinstance(v, (Mapping, list))}
        row["record_index"] = i  # position in `records`, kept through the join with `cases`
        t = r.get("traffic")
        row["metered"] = isinstance(t, Mapping)
        if isinstance(t, Mapping):
            for d in DIRECTIONS:
                for f in ("wire",) + CATEGORIES:
                    row[f"{d}_{f}"] = int(t[d][f])
            row["tls_version"] = t.get("tls_version") or r.get("tls_protocol")
            row["handshake_complete"] = bool(t.get("handshake_complete"))
            row["resumed"] = bool(t.get("resumed"))
            row["started_at"] = t.get("started_at")
            row["finished_at"] = t.get("finished_at")
            for m in MODELS:
                b = billing.billed(m, t)
                row[f"billed_{m}"] = b["billed_bytes"]
                row[f"wire_{m}"] = b["wire_bytes"]
        else:
            row["tls_version"] = r.get("tls_protocol")
            row["handshake_complete"] = False
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if cases is not None and not cases.empty:
        c = cases.copy()
        c["listener_port"] = c["listener_port"].astype(df["listener_port"].dtype)
        df = df.merge(c.drop(columns=["listener"], errors="ignore"), on=_JOIN, how="left")
    df["requests"] = pd.to_numeric(df.get("requests"), errors="coerce").fillna(0).astype(int)
    if "resumed" not in df:
        df["resumed"] = False
    df["resumed"] = df["resumed"].fillna(False).astype(bool)
    inferred_mutual = df["client_cert_subject"].notna() if "client_cert_subject" in df else pd.Series(False, index=df.index)
    if "case_mutual" in df:
        df["mutual"] = df["case_mutual"].where(df["case_mutual"].notna(), inferred_mutual).astype(bool)
    else:
        df["mutual"] = inferred_mutual.astype(bool)
    key = df["tls_cipher"].map(_key_type_from_cipher) if "tls_cipher" in df else pd.Series(None, index=df.index)
    if key_types:
        by_port = df["listener_port"].map(lambda p: key_types.get(p))
        key = by_port.where(by_port.notna(), key)
    if "case_key_type" in df:
        key = df["case_key_type"].where(df["case_key_type"].notna(), key)
    df["key_type"] = key.fillna("?")
    if "client_to_lb_wire" in df:
        df["wire_total"] = df["client_to_lb_wire"].fillna(0) + df["lb_to_client_wire"].fillna(0)
        df["payload_total"] = df["client_to_lb_payload"].fillna(0) + df["lb_to_client_payload"].fillna(0)
    df["variant"] = [variant_label(v, k, r, m) for v, k, r, m in
                     zip(df["tls_version"], df["key_type"], df["resumed"], df["mutual"])]
    return df


def variant_label(version: Any, key_type: Any, resumed: Any, mutual: Any) -> str:
    """'TLS 1.3 RSA full one-way' and the like. A TLS 1.3 suite does not name the certificate type, so a
    listener the report does not describe (one a scenario created) has none: 'TLS 1.3 full mutual'."""
    v = str(version or "?").replace("TLSv", "TLS ")
    key = f" {key_type}" if key_type and key_type != "?" else ""
    return f"{v}{key} {'resumed' if resumed else 'full'} {'mutual' if mutual else 'one-way'}"


# ---- measuring a small results directory ---------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """One way of connecting: protocol version, certificate type, resumption, client certificate."""

    version: str  # TLSv1.2 | TLSv1.3
    key_type: str  # RSA | ECDSA
    resumed: bool
    mutual: bool

    @property
    def listener(self) -> str:
        return overhead_listener_name(self.key_type, self.mutual)

    @property
    def label(self) -> str:
        return variant_label(self.version, self.key_type, self.resumed, self.mutual)


VARIANTS: tuple[Variant, ...] = tuple(
    Variant(v, k, r, m) for v in ("TLSv1.2", "TLSv1.3") for k in ("RSA", "ECDSA") for m in (False, True)
    for r in (False, True)
)
REQUESTS_PER_CONNECTION: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)
LCU_RATES: tuple[float, ...] = (5, 10, 20, 40)
_VERSIONS = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}


# The profile the overhead lab's listeners use (it takes ECDSA certificates) and the model the summary's
# measured LCU steps are read for: data, named once.
OVERHEAD_PROFILE = "tencent-clb"


def overhead_listener_name(key_type: str, mutual: bool) -> str:
    return f"{key_type.lower()}-{'mutual' if mutual else 'one-way'}"


def overhead_lab(files: Mapping[str, str]) -> dict[str, Any]:
    """The lab `collect_overhead` measures: four Tencent CLB listeners (the profile that takes ECDSA
    certificates), RSA or ECDSA, one-way or mutual (client certificate required), TLS 1.2 and 1.3 with
    Tencent's default cipher string, one mock backend, health checks off (no extra traffic), 1x timers.
    `files` are the PEM paths of :func:`simulator.runtime.defaults.mint_default_pki`."""
    policy = {"versions": "TLSv1.2 TLSv1.3"}
    listeners = [
        {"name": overhead_listener_name(k, m), "port": 0, "profile": OVERHEAD_PROFILE,
         "server_certificate": f"lab-{k.lower()}", "tls_policy": policy,
         "backend_servers": [{"backend": "web-1"}], "health_check": {"enabled": False},
         **({"ca_certificate": "lab-client-ca", "ssl_verify_client": "on"} if m else {})}
        for k in ("RSA", "ECDSA") for m in (False, True)
    ]
    return {
        "profile": OVERHEAD_PROFILE,
        "time_scale": 1.0,
        "certificates": [
            {"name": "lab-rsa", "type": "server", "cert": files["server-rsa"], "key": files["server-rsa-key"]},
            {"name": "lab-ecdsa", "type": "server", "cert": files["server-ecdsa"], "key": files["server-ecdsa-key"]},
            {"name": "lab-client-ca", "type": "ca", "cert": files["client-ca"]},
        ],
        "backends": [{"name": "web-1", "port": 0}],
        "listeners": listeners,
    }


# ---- classic against post-quantum key exchange (aws-alb) -------------------------------------------------

KEY_EXCHANGE_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"  # the ALB console's default: hybrids first
KEY_EXCHANGE_GROUPS = ("X25519", "X25519MLKEM768")  # classic, hybrid (what browsers offer first)


def measure_key_exchange(out_dir: str | Path | None = None, groups: Sequence[str] = KEY_EXCHANGE_GROUPS,
                         response_bytes: int = 1024, files: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Wire against billed bytes per connection, classic against post-quantum key exchange, full against
    resumed: one aws-alb listener on a -PQ- policy, per group a TLS 1.3 client offering that group alone makes
    a full connection and a resumed one (its ticket), one `GET /?size=<response_bytes>` each. The rows are
    the listener's metered records (asserted equal to what the client's socket sent and received); written
    to `key_exchange.csv` in `out_dir` (a new temporary directory if None)."""
    from simulator.harness.running import start_lab
    from simulator.policies.probe import probe
    from simulator.runtime.defaults import mint_default_pki

    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="lbsim-key-exchange-"))
    out.mkdir(parents=True, exist_ok=True)
    files = dict(files) if files else mint_default_pki(out / "pki")
    config = {
        "profile": "aws-alb", "time_scale": 1.0,
        "certificates": [{"name": "lab-rsa", "type": "server", "cert": files["server-rsa"], "key": files["server-rsa-key"]}],
        "backends": [{"name": "web-1", "port": 0}],
        "listeners": [{"name": "alb-pq", "port": 0, "server_certificate": "lab-rsa", "tls_policy": KEY_EXCHANGE_POLICY,
                       "backend_servers": [{"backend": "web-1"}], "health_check": {"enabled": False}}],
    }
    # Keep-alive: the client closes (close_notify first), so the listener meters every byte the client sent.
    get = f"GET /?size={int(response_bytes)} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    rows = []
    with start_lab(config, out_dir=out) as lab:
        port = lab.port("alb-pq")
        for group in groups:
            session = None
            for connection in ("full", "resumed"):
                r = probe("127.0.0.1", port, version="TLSv1.3", groups=[group], session=session, http_request=get)
                if not r.ok or r.resumed != (connection == "resumed"):
                    raise RuntimeError(f"{group} {connection}: {r.error or 'not resumed'}")
                session = r.session
                record = lab.record_of(r, port)
                t = record["traffic"]
                up, down = t[IN], t[OUT]
                if (up["wire"], down["wire"]) != (r.bytes_sent, r.bytes_received):
                    raise RuntimeError(f"{group} {connection}: metered {up['wire']}/{down['wire']} B, the client "
                                       f"counted {r.bytes_sent}/{r.bytes_received} B")
                billed = record["billed"]["billed_bytes"]
                rows.append({"group": group, "key_exchange": record["tls_keyexchange"], "connection": connection,
                             "handshake_client_to_lb": up["handshake"], "handshake_lb_to_client": down["handshake"],
                             "wire_client_to_lb": up["wire"], "wire_lb_to_client": down["wire"],
                             "wire": up["wire"] + down["wire"], "billed_bytes": billed,
                             "ratio": round((up["wire"] + down["wire"]) / billed, 2) if billed else None})
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "key_exchange.csv", index=False)
    return frame


def key_exchange_cost(frame: pd.DataFrame) -> pd.DataFrame:
    """What the hybrid adds over the classic group per connection kind: handshake bytes each way, wire bytes
    (and in %), and billed bytes (nothing: every model bills HTTP bytes)."""
    classic, hybrid = (frame[frame["group"] == g].set_index("connection") for g in KEY_EXCHANGE_GROUPS)
    out = pd.DataFrame({
        "extra_handshake_client_to_lb": hybrid["handshake_client_to_lb"] - classic["handshake_client_to_lb"],
        "extra_handshake_lb_to_client": hybrid["handshake_lb_to_client"] - classic["handshake_lb_to_client"],
        "extra_wire": hybrid["wire"] - classic["wire"],
        "extra_wire_pct": (100 * (hybrid["wire"] - classic["wire"]) / classic["wire"]).round(1),
        "extra_billed": hybrid["billed_bytes"] - classic["billed_bytes"],
    })
    return out.reset_index()


def key_exchange_conclusions(frame: pd.DataFrame) -> list[str]:
    cost = key_exchange_cost(frame).set_index("connection")
    out = []
    for connection in ("full", "resumed"):
        c = cost.loc[connection]
        out.append(f"{connection} TLS 1.3 connection: {KEY_EXCHANGE_GROUPS[1]} adds "
                   f"{int(c.extra_handshake_client_to_lb):,} B client→LB and {int(c.extra_handshake_lb_to_client):,} B "
                   f"LB→client to the handshake (+{c.extra_wire_pct:.0f}% wire on one small request), and "
                   f"{int(c.extra_billed)} billed bytes")
    return out


class KeepAliveClient:
    """One TLS connection on a real loopback socket, sending HTTP/1.1 requests one after another.

    pyOpenSSL (the OpenSSL the listener uses, with lbsim's pinned groups) on a blocking socket with a
    receive timeout; it sends close_notify on `close`, like a well-behaved client.
    """

    def __init__(self, port: int, context: SSL.Context, session: SSL.Session | None = None,
                 sni: str = "localhost", timeout: float = 10.0):
        self.started = time.time()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(None)  # pyOpenSSL needs a blocking socket; SO_RCVTIMEO bounds the waits
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", int(timeout), 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port: int = self.sock.getsockname()[1]
        self.conn = SSL.Connection(context, self.sock)
        self.conn.set_connect_state()
        self.conn.set_tlsext_host_name(sni.encode())
        if session is not None:
            self.conn.set_session(session)
        self._buf = b""
        try:
            self.conn.do_handshake()
        except BaseException:
            self.sock.close()
            raise
        self.resumed = session_reused(self.conn)

    def request(self, path: str) -> int:
        """GET `path`, read the whole response (Content-Length), return the status."""
        self.conn.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: lbsim-analysis\r\n\r\n".encode())
        while b"\r\n\r\n" not in self._buf:
            self._recv()
        head, _, rest = self._buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if "content-length" not in headers:
            raise ValueError(f"response without Content-Length: {lines[0]!r}")
        n = int(headers["content-length"])
        self._buf = rest
        while len(self._buf) < n:
            self._recv()
        self._buf = self._buf[n:]
        return int(lines[0].split()[1])

    def _recv(self) -> None:
        data = self.conn.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the LB")
        self._buf += data

    def close(self) -> SSL.Session | None:
        """close_notify, then close; returns the session (with the latest ticket) for resumption."""
        session = self.conn.get_session()
        try:
            self.conn.shutdown()
        except SSL.Error:
            pass
        self.sock.close()
        return session


def _client_context(files: Mapping[str, str], version: str, mutual: bool) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(_VERSIONS[version])
    ctx.set_max_proto_version(_VERSIONS[version])
    ctx.load_verify_locations(files["ca"])
    ctx.set_verify(SSL.VERIFY_PEER)
    # No client cache: the caller keeps each session itself (as simulator.policies.probe does).
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    if mutual:
        ctx.use_certificate_chain_file(files["client-valid"])
        ctx.use_privatekey_file(files["client-valid-key"])
    return ctx


@dataclass
class _Case:
    experiment: str
    listener: str
    listener_port: int
    client: str
    started: float
    case_version: str
    case_key_type: str
    case_resumed: bool
    case_mutual: bool
    case_requests: int
    response_bytes: int
    target_rate: float | None = None
    step: int | None = None
    time: str | None = None  # the matching connection record's `time`, set once matched


def collect_overhead(out_dir: str | Path | None = None, *, variants: Sequence[Variant] = VARIANTS,
                     requests: Sequence[int] = REQUESTS_PER_CONNECTION, response_bytes: int = 1024,
                     rates: Sequence[float] = LCU_RATES, rate_seconds: float = 1.0,
                     rate_variant: Variant = Variant("TLSv1.3", "RSA", False, False),
                     files: Mapping[str, str] | None = None) -> Results:
    """Measure a fresh results directory in seconds and load it.

    1. The sweep: for each variant, one connection per entry of `requests` carrying that many
       `GET /?size=<response_bytes>` requests. A resumed variant first makes one warm-up connection
       (experiment ``warmup``) and then resumes each connection from the previous one's session.
    2. The connection-rate steps (experiment ``lcu``): new connections of one request each at every
       rate of `rates` (per second) for `rate_seconds`, on `rate_variant`'s listener, for the LCU estimate.

    Writes `connections.jsonl` (the lab's log), `traffic.csv`, `cases.csv` (each client's intent),
    `steps.csv` (each rate step's window) and `lab.json` to `out_dir` (a new temporary directory if None).
    Raises if a connection fails, a resumption is refused, or a record cannot be matched.
    """
    from simulator.runtime.defaults import mint_default_pki
    from simulator.harness.running import start_lab

    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="lbsim-overhead-"))
    out.mkdir(parents=True, exist_ok=True)
    files = dict(files) if files else mint_default_pki(out / "pki")
    config = overhead_lab(files)
    path = f"/overhead?size={int(response_bytes)}"
    cases: list[_Case] = []
    steps: list[dict[str, Any]] = []
    contexts: dict[tuple[str, bool], SSL.Context] = {}

    def context(version: str, mutual: bool) -> SSL.Context:
        if (version, mutual) not in contexts:
            contexts[(version, mutual)] = _client_context(files, version, mutual)
        return contexts[(version, mutual)]

    with start_lab(config, out_dir=out) as lab:

        def connect(v: Variant, n: int, session: SSL.Session | None, experiment: str,
                    **extra: Any) -> SSL.Session | None:
            port = lab.port(v.listener)
            c = KeepAliveClient(port, context(v.version, v.mutual), session)
            try:
                for _ in range(n):
                    status = c.request(path)
                    if status != 200:
                        raise RuntimeError(f"{v.label}: HTTP {status} from {v.listener}")
            finally:
                new_session = c.close()
            if session is not None and not c.resumed:
                raise RuntimeError(f"{v.label}: the LB did not resume the session")
            cases.append(_Case(experiment, v.listener, port, f"127.0.0.1:{c.local_port}", c.started, v.version,
                               v.key_type, c.resumed, v.mutual, n, int(response_bytes), **extra))
            return new_session

        for v in variants:
            session = connect(v, 1, None, "warmup") if v.resumed else None
            for n in requests:
                out_session = connect(v, int(n), session, "sweep")
                if v.resumed:
                    session = out_session

        lock = threading.Lock()
        for i, rate in enumerate(rates):
            count = max(1, round(rate * rate_seconds))
            begin = time.time()
            errors: list[BaseException] = []

            def one(step: int = i, target: float = rate) -> None:
                try:
                    connect(rate_variant, 1, None, "lcu", target_rate=target, step=step)
                except BaseException as e:  # collected: raised below, after the step
                    with lock:
                        errors.append(e)

            with ThreadPoolExecutor(max_workers=8) as pool:
                for k in range(count):
                    delay = begin + k / rate - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(one)
            if errors:
                raise errors[0]
            # The step's window is the whole `rate_seconds` (count connections in it), or longer if the
            # lab could not keep up; the measured rate is count / window.
            end = max(time.time(), begin + count / rate)
            time.sleep(max(0.0, end - time.time()))
            steps.append({"step": i, "target_rate": rate, "connections": count, "begin": begin,
                          "end": end, "listener": rate_variant.listener,
                          "listener_port": lab.port(rate_variant.listener)})
        _match(cases, lambda: lab.connections())
    (out / "lab.json").write_text(json.dumps(config, indent=1))
    _write_csv(out / "cases.csv", [{k: getattr(c, k) for k in CASE_COLUMNS} for c in cases], CASE_COLUMNS)
    _write_csv(out / "steps.csv", steps, ("step", "target_rate", "connections", "begin", "end", "listener", "listener_port"))
    TrafficLedger.from_jsonl(out / "connections.jsonl").write_csv(out / "traffic.csv")
    return load_results(out)


def _match(cases: list[_Case], records: Any, timeout: float = 15.0) -> None:
    """Give each case the `time` of its connection record: same client address and listener, in order."""
    deadline = time.monotonic() + timeout
    while True:
        by_key: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for r in records():
            by_key[(r.get("client"), r.get("listener_port"))].append(r)
        wanted: dict[tuple[str, int], list[_Case]] = defaultdict(list)
        for c in cases:
            wanted[(c.client, c.listener_port)].append(c)
        missing = [k for k, cs in wanted.items() if len(by_key.get(k, ())) < len(cs)]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no connection record for {len(missing)} client(s), e.g. {missing[0]}")
        time.sleep(0.05)
    for key, cs in wanted.items():
        recs = sorted(by_key[key], key=lambda r: (r.get("traffic") or {}).get("started_at") or 0)[-len(cs):]
        for c, r in zip(sorted(cs, key=lambda c: c.started), recs):
            c.time = r["time"]


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)


# ---- reductions ----------------------------------------------------------------------------------------

VARIANT_KEYS = ["tls_version", "key_type", "resumed", "mutual"]


def _analysed(df: pd.DataFrame) -> pd.DataFrame:
    """Completed, metered connections that carried requests (the sweep's only, for a generated run)."""
    if df.empty or "client_to_lb_wire" not in df:
        return df.iloc[0:0]
    keep = df["metered"] & df["handshake_complete"] & (df["requests"] > 0)
    if "experiment" in df:
        keep &= df["experiment"].isna() | (df["experiment"] == "sweep")
    return df[keep]


def overhead_curve(df: pd.DataFrame, model: str = "tencent-clb") -> pd.DataFrame:
    """Per variant and requests per connection: actual bytes in the model's billed directions against
    its billed bytes. `overhead_pct` = (wire - billed) / billed x 100, `ratio` = wire / billed."""
    d = _analysed(df)
    g = d.groupby(VARIANT_KEYS + ["variant", "requests"], as_index=False).agg(
        connections=("requests", "size"), wire=(f"wire_{model}", "sum"), billed=(f"billed_{model}", "sum"))
    g["model"] = model
    g["overhead_pct"] = 100.0 * (g["wire"] - g["billed"]) / g["billed"]
    g["ratio"] = g["wire"] / g["billed"]
    return g.sort_values(["variant", "requests"]).reset_index(drop=True)


def wire_breakdown(df: pd.DataFrame, by: Sequence[str] = ("variant", "requests"), per_connection: bool = True) -> pd.DataFrame:
    """Wire bytes split into handshake, record overhead, payload and closure (both directions, and
    `<direction>_<category>`), per group; per connection means unless `per_connection` is False."""
    d = _analysed(df)
    cols = [f"{dr}_{c}" for dr in DIRECTIONS for c in CATEGORIES]
    g = d.groupby(list(by))[cols]
    out = (g.mean() if per_connection else g.sum()).reset_index()
    for c in CATEGORIES:
        out[c] = out[f"{IN}_{c}"] + out[f"{OUT}_{c}"]
    out["wire"] = out[list(CATEGORIES)].sum(axis=1)
    out["connections"] = g.size().values
    return out


def billed_vs_actual(df: pd.DataFrame, cases: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """For each case (a filter on the connections) and each vendor model: billed bytes, actual bytes in
    the billed directions, and actual / billed. Default cases: one request per connection with a full
    and with a resumed handshake, and the most requests per connection measured (keep-alive)."""
    d = _analysed(df)
    cases = dict(cases) if cases is not None else default_cases(d)
    rows = []
    for name, where in cases.items():
        sel = d
        for k, v in where.items():
            sel = sel[sel[k] == v]
        for m in MODELS:
            wire, billed = int(sel[f"wire_{m}"].sum()), int(sel[f"billed_{m}"].sum())
            rows.append({"case": name, "model": m, "connections": len(sel), "requests": int(sel["requests"].sum()),
                         "billed_bytes": billed, "actual_bytes": wire,
                         "ratio": wire / billed if billed else math.nan})
    return pd.DataFrame(rows)


def reference_variant(df: pd.DataFrame) -> dict[str, Any] | None:
    """The variant the conclusions speak about: TLS 1.3 RSA one-way if measured, else the most common."""
    d = _analysed(df)
    if d.empty:
        return None
    one_way = d[~d["mutual"]]
    pool = one_way if not one_way.empty else d
    for version, key in (("TLSv1.3", "RSA"), ("TLSv1.2", "RSA")):
        hit = pool[(pool["tls_version"] == version) & (pool["key_type"] == key)]
        if not hit.empty:
            return {"tls_version": version, "key_type": key, "mutual": bool(hit["mutual"].iloc[0])}
    top = pool.groupby(["tls_version", "key_type", "mutual"]).size().idxmax()
    return {"tls_version": top[0], "key_type": top[1], "mutual": bool(top[2])}


def default_cases(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """'1 request, full handshake', '1 request, resumed', '<N> requests (keep-alive)' of the reference variant."""
    ref = reference_variant(df)
    if ref is None:
        return {}
    d = _analysed(df)
    mine = d[(d["tls_version"] == ref["tls_version"]) & (d["key_type"] == ref["key_type"]) & (d["mutual"] == ref["mutual"])]
    cases: dict[str, dict[str, Any]] = {}
    if ((mine["requests"] == 1) & ~mine["resumed"]).any():
        cases["1 request, full handshake"] = {**ref, "requests": 1, "resumed": False}
    if ((mine["requests"] == 1) & mine["resumed"]).any():
        cases["1 request, resumed"] = {**ref, "requests": 1, "resumed": True}
    most = int(mine["requests"].max()) if not mine.empty else 0
    if most > 1:
        cases[f"{most} requests (keep-alive), full handshake"] = {**ref, "requests": most, "resumed": False}
    return cases


def handshake_sizes(df: pd.DataFrame) -> pd.DataFrame:
    """Median handshake bytes per variant (client->LB, LB->client), measured."""
    d = _analysed(df)
    g = d.groupby(VARIANT_KEYS + ["variant"], as_index=False).agg(
        connections=("requests", "size"), client_to_lb=(f"{IN}_handshake", "median"),
        lb_to_client=(f"{OUT}_handshake", "median"))
    return g


def handshake_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """The measured handshake sizes beside vendor-facts §4 (`REFERENCE_HANDSHAKES`), with the differences.
    Rows whose variant was not measured show NaN."""
    hs = handshake_sizes(df)

    def measured(version: str, key: str, resumed: bool, mutual: bool) -> tuple[float, float]:
        hit = hs[(hs["tls_version"] == version) & (hs["key_type"] == key) & (hs["resumed"] == resumed) & (hs["mutual"] == mutual)]
        return (float(hit["client_to_lb"].iloc[0]), float(hit["lb_to_client"].iloc[0])) if len(hit) else (math.nan, math.nan)

    rows = []
    for ref in REFERENCE_HANDSHAKES:
        c2l, l2c = measured(ref.version, ref.key_type, ref.resumed, ref.mutual)
        if ref.extra:  # the reference gives what mutual authentication adds to the one-way handshake
            base_c2l, base_l2c = measured(ref.version, ref.key_type, ref.resumed, False)
            c2l, l2c = c2l - base_c2l, l2c - base_l2c
        rows.append({"case": ref.case, "measured_client_to_lb": c2l, "reference_client_to_lb": ref.client_to_lb,
                     "measured_lb_to_client": l2c if ref.lb_to_client is not None else math.nan,
                     "reference_lb_to_client": ref.lb_to_client, "note": ref.note})
    out = pd.DataFrame(rows)
    for d in ("client_to_lb", "lb_to_client"):
        ref = pd.to_numeric(out[f"reference_{d}"], errors="coerce")
        out[f"diff_{d}"] = out[f"measured_{d}"] - ref
        out[f"diff_{d}_pct"] = 100.0 * out[f"diff_{d}"] / ref
    return out


# ---- LCU -----------------------------------------------------------------------------------------------

def per_connection(df: pd.DataFrame, where: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Mean bytes, requests and duration of one connection (of the rate steps if measured, else of the
    reference variant's one-request full handshakes, else of everything), to scale LCUs with."""
    d = df[df["metered"] & df["handshake_complete"]] if "metered" in df else df
    if where is None:
        if "experiment" in d and (d["experiment"] == "lcu").any():
            d = d[d["experiment"] == "lcu"]
        else:
            ref = reference_variant(df)
            sel = d
            if ref is not None:
                sel = d[(d["tls_version"] == ref["tls_version"]) & (d["key_type"] == ref["key_type"])
                        & (d["mutual"] == ref["mutual"]) & (d["requests"] == 1) & ~d["resumed"]]
            d = sel if not sel.empty else d
    else:
        for k, v in where.items():
            d = d[d[k] == v]
    if d.empty:
        raise ValueError("no completed metered connections to scale LCUs with")
    duration = (d["finished_at"] - d["started_at"]) if "finished_at" in d else pd.Series([0.0])
    out = {"connections": float(len(d)), "requests": float(d["requests"].mean()),
           "duration_s": float(duration.mean()), "wire_bytes": float(d["wire_total"].mean())}
    for m in MODELS:
        out[f"billed_{m}"] = float(d[f"billed_{m}"].mean())
    return out


def lcu_estimate(model: str, rate: float, conn: Mapping[str, float], on_wire: bool = False) -> dict[str, Any]:
    """`billing.lcu` for `rate` new connections/s of connections like `conn` (see `per_connection`),
    sustained for the hour; concurrency by Little's law (rate x mean duration). `on_wire` counts every
    wire byte as processed (what the LCU would be if TLS overhead were billed)."""
    processed = conn["wire_bytes"] if on_wire else conn[f"billed_{model}"]
    out = billing.lcu(model, new_connections_per_s=rate, concurrent_connections=rate * conn["duration_s"],
                      processed_bytes_per_h=rate * processed * 3600, requests_per_s=rate * conn["requests"])
    assert out is not None, f"{model} has no LCU"
    return out


def lcu_curve(conn: Mapping[str, float], rates: Iterable[float] | None = None,
              models: Sequence[str] = LCU_MODELS) -> pd.DataFrame:
    """LCUs per dimension and billed, for each model and new-connection rate (a projection of `conn`)."""
    rates = list(rates) if rates is not None else [r for e in range(0, 4) for r in (1 * 10**e, 2 * 10**e, 5 * 10**e)] + [10_000]
    rows = []
    for m in models:
        for r in rates:
            est = lcu_estimate(m, r, conn)
            wire = lcu_estimate(m, r, conn, on_wire=True)
            row = {"model": m, "new_connections_per_s": r, "lcu": est["lcu"], "billed_dimension": est["billed_dimension"],
                   "processed_lcu_if_wire_billed": wire["dimensions"]["processed_gb_per_h"]["lcu"]}
            for dim, v in est["dimensions"].items():
                row[f"{dim}_lcu"] = v["lcu"]
            rows.append(row)
    return pd.DataFrame(rows)


def lcu_measured(results: Results, models: Sequence[str] = LCU_MODELS) -> pd.DataFrame:
    """The LCU of each measured window: the rate steps of a generated run (each step its own window),
    else each listener of the log over its observed window (`TrafficLedger.summary`)."""
    rows = []
    df = results.connections
    if results.steps is not None and not results.steps.empty and "experiment" in df:
        for step in results.steps.itertuples():
            sel = df[(df["experiment"] == "lcu") & (df["step"] == step.step)]
            recs = [results.records[i] for i in sel["record_index"]]
            rows += _ledger_lcu(recs, models, window=float(step.end - step.begin), label=f"step {step.step}",
                                target=float(step.target_rate))
    else:
        for port, sel in df.groupby("listener_port"):
            recs = [results.records[i] for i in sel["record_index"]]
            rows += _ledger_lcu(recs, models, window=None, label=f"port {port}", target=None)
    return pd.DataFrame(rows)


def _ledger_lcu(records: list[dict[str, Any]], models: Sequence[str], window: float | None, label: str,
                target: float | None) -> list[dict[str, Any]]:
    ledger = TrafficLedger()
    ledger.extend(records)
    rows = []
    for s in ledger.summary(window_s=window):
        for m in models:
            processed = sum(billing.billed(m, r)["billed_bytes"] for r in records if isinstance(r.get("traffic"), Mapping))
            est = billing.lcu(m, new_connections_per_s=s["new_connections_per_s"], concurrent_connections=s["concurrent_avg"],
                              processed_bytes_per_h=processed / s["window_s"] * 3600, requests_per_s=s["requests_per_s"])
            assert est is not None
            rows.append({"window": label, "model": m, "target_rate": target, "connections": s["connections"],
                         "window_s": s["window_s"], "new_connections_per_s": s["new_connections_per_s"],
                         "lcu": est["lcu"], "billed_dimension": est["billed_dimension"],
                         **{f"{d}_lcu": v["lcu"] for d, v in est["dimensions"].items()}})
    return rows


def break_even_bytes(model: str) -> float:
    """Billed bytes per connection above which processed traffic, not new connections, sets the LCU."""
    d = billing.model_for(model).lcu
    assert d is not None
    return d.processed_gb_per_h * d.bytes_per_gb / 3600 / d.new_connections_per_s


# ---- conclusions ---------------------------------------------------------------------------------------

def _x(v: float) -> str:
    return f"{v:.2f}x"


def conclusions(results: Results) -> list[str]:
    """The notebook's findings as sentences, every number computed from `results`."""
    df = results.connections
    out: list[str] = []
    ba = billed_vs_actual(df)
    ref = reference_variant(df)
    if ref is None or ba.empty:
        return ["No completed metered connections with requests: nothing to conclude."]
    name = variant_label(ref["tls_version"], ref["key_type"], False, ref["mutual"]).replace(" full", "")
    phrases = {c: ("one request per connection" if c == "1 request, full handshake" else
                   "with resumption" if c == "1 request, resumed" else c.split(" (")[0] + " per connection")
               for c in dict.fromkeys(ba["case"])}
    groups: dict[tuple[Any, ...], list[str]] = {}  # models with the same billed directions read the same
    for m in MODELS:
        rows = ba[(ba["model"] == m) & (ba["connections"] > 0)]
        key = (billing.MODELS[m].billed_directions, tuple(rows["ratio"].round(3)))
        groups.setdefault(key, []).append(m)
    for (directions, _), models in groups.items():
        rows = ba[(ba["model"] == models[0]) & (ba["connections"] > 0)]
        what = "LB->client" if directions == (OUT,) else "both directions"
        parts = [f"{phrases[r.case]}: actual is {_x(r.ratio)} billed" for r in rows.itertuples()]
        if parts:
            out.append(f"{' and '.join(models)} ({what} billed), {name}: " + "; ".join(parts) + ".")
    curve = overhead_curve(df, OVERHEAD_PROFILE)
    ones = curve[curve["requests"] == 1]
    if len(ones) > 1:
        worst, best = ones.loc[ones["overhead_pct"].idxmax()], ones.loc[ones["overhead_pct"].idxmin()]
        out.append(f"At one request per connection the overhead (both directions) ranges from {best.overhead_pct:.0f}% "
                   f"({best.variant}) to {worst.overhead_pct:.0f}% ({worst.variant}).")
    mine = curve[(curve["tls_version"] == ref["tls_version"]) & (curve["key_type"] == ref["key_type"])
                 & (curve["mutual"] == ref["mutual"]) & ~curve["resumed"]]
    under = mine[mine["overhead_pct"] < 10]
    if len(mine) > 1:
        if not under.empty:
            out.append(f"{name}, full handshakes: the overhead first drops below 10% at {int(under['requests'].min())} "
                       f"requests per connection ({under['overhead_pct'].iloc[0]:.1f}%); at {int(mine['requests'].max())} "
                       f"it is {mine['overhead_pct'].iloc[-1]:.1f}%.")
        else:
            out.append(f"{name}, full handshakes: the overhead stays above 10% up to {int(mine['requests'].max())} "
                       f"requests per connection ({mine['overhead_pct'].iloc[-1]:.1f}%).")
    hs = handshake_sizes(df)
    full = hs[~hs["resumed"] & ~hs["mutual"]]
    for version in ("TLSv1.2", "TLSv1.3"):
        r = full[(full["tls_version"] == version) & (full["key_type"] == "RSA")]
        e = full[(full["tls_version"] == version) & (full["key_type"] == "ECDSA")]
        if len(r) and len(e):
            diff = float(r["lb_to_client"].iloc[0] - e["lb_to_client"].iloc[0])
            out.append(f"{version.replace('TLSv', 'TLS ')}: an ECDSA certificate makes the LB's handshake "
                       f"{abs(diff):,.0f} B {'smaller' if diff > 0 else 'larger'} than RSA "
                       f"({e['lb_to_client'].iloc[0]:,.0f} vs {r['lb_to_client'].iloc[0]:,.0f} B).")
    for version in ("TLSv1.2", "TLSv1.3"):
        one = hs[(hs["tls_version"] == version) & (hs["key_type"] == "RSA") & ~hs["resumed"]]
        if one["mutual"].nunique() == 2:
            add = float(one[one["mutual"]]["client_to_lb"].iloc[0] - one[~one["mutual"]]["client_to_lb"].iloc[0])
            out.append(f"{version.replace('TLSv', 'TLS ')}: mutual authentication adds {add:,.0f} B client->LB to the handshake.")
    for version in ("TLSv1.2", "TLSv1.3"):
        res = hs[(hs["tls_version"] == version) & (hs["key_type"] == "RSA") & hs["resumed"]]
        if res["mutual"].nunique() == 2:
            add = float(res[res["mutual"]]["client_to_lb"].iloc[0] - res[~res["mutual"]]["client_to_lb"].iloc[0])
            out.append(f"{version.replace('TLSv', 'TLS ')}: a resumed mutual handshake still sends {add:,.0f} B more "
                       f"client->LB than a resumed one-way one (the session ticket carries the client certificate).")
    b = wire_breakdown(df)
    b = b[b["variant"] == variant_label(ref["tls_version"], ref["key_type"], False, ref["mutual"])]
    if len(b) and int(b["requests"].max()) > 1:
        top = b.loc[b["requests"].idxmax()]
        n = int(top["requests"])
        out.append(f"{name} at {n} requests per connection: the handshake is {100 * top['handshake'] / top['wire']:.1f}% "
                   f"of the wire bytes; what remains is record overhead, {top['record_overhead'] / n:.0f} B per request "
                   f"({100 * top['record_overhead'] / top['wire']:.1f}%).")
    cmp_ = handshake_comparison(df)
    for r in cmp_.itertuples():
        if not math.isnan(r.measured_client_to_lb):
            l2c = (f" / {r.measured_lb_to_client:,.0f}" if not math.isnan(r.measured_lb_to_client) else "")
            ref_l2c = f" / {r.reference_lb_to_client:,.0f}" if r.reference_lb_to_client == r.reference_lb_to_client and r.reference_lb_to_client is not None else ""
            out.append(f"Handshake '{r.case}': measured {r.measured_client_to_lb:,.0f}{l2c} B against §4's "
                       f"{r.reference_client_to_lb:,.0f}{ref_l2c} B.")
    try:
        conn = per_connection(df)
    except ValueError:
        conn = None
    if conn is not None:
        same: dict[tuple[Any, ...], list[str]] = {}  # models whose estimates agree read as one sentence
        for m in LCU_MODELS:
            est, wire = lcu_estimate(m, 25, conn), lcu_estimate(m, 25, conn, on_wire=True)
            key = (est["lcu"], est["billed_dimension"], wire["dimensions"]["processed_gb_per_h"]["lcu"],
                   conn[f"billed_{m}"], break_even_bytes(m))
            same.setdefault(key, []).append(m)
        for models in same.values():
            m = models[0]
            est, wire = lcu_estimate(m, 25, conn), lcu_estimate(m, 25, conn, on_wire=True)
            be = break_even_bytes(m)
            out.append(f"{' and '.join(models)} LCU at 25 new connections/s of these connections ({conn['requests']:.0f} request(s), "
                       f"{conn[f'billed_{m}']:,.0f} B billed, {conn['wire_bytes']:,.0f} B on the wire each): "
                       f"{est['lcu']:.2f} LCU, set by {est['billed_dimension']}; processed bytes alone would be "
                       f"{est['dimensions']['processed_gb_per_h']['lcu']:.3f} LCU "
                       f"({wire['dimensions']['processed_gb_per_h']['lcu']:.3f} if TLS overhead were billed). "
                       f"Processed bytes set the LCU only above {be:,.0f} billed bytes per connection.")
    meas = lcu_measured(results) if results.steps is not None and not results.steps.empty else pd.DataFrame()
    if not meas.empty:
        t = meas[meas["model"] == OVERHEAD_PROFILE]
        out.append(f"Measured rate steps ({OVERHEAD_PROFILE}): " + "; ".join(
            f"{r.new_connections_per_s:.1f} conn/s -> {r.lcu:.2f} LCU ({r.billed_dimension})" for r in t.itertuples()) + ".")
    return out


def conclusions_markdown(results: Results) -> str:
    return "\n".join(f"- {line}" for line in conclusions(results))


# ---- the TLS policy matrix and compliance (report.json) -------------------------------------------------

def listener_report(lab: RunningLab, name: str) -> dict[str, Any]:
    """One listener's entry of report.json, measured by the code `lbsim run` uses (`ScenarioLab.observe`),
    so both producers give one shape: `tls_matrix` (expected from `Policy.negotiable`, observed by probing
    each suite, match, differences, note), `mutual_matrix` (the listener's own `tls_verify_status` for
    each client certificate against what its `client_verification` implies, with the alert and whether it
    served a 200) and `compliance` of the observed matrix."""
    from simulator.harness.scenario import ScenarioLab

    return ScenarioLab(lab).observe(name).to_dict()


def build_report(lab: RunningLab | None = None, listeners: Sequence[str] | None = None,
                 out_dir: str | Path | None = None) -> dict[str, Any]:
    """A report.json-shaped dict measured on a lab (the default lab, started and stopped here, if None):
    `listeners` with TLS and mutual matrices and compliance, `traffic` from the probes' connections.
    The fallback for the policy notebook when no `lbsim run` report is given; no scenarios are run.
    The lab started here keeps the vendors' timers (time_scale 1): scaled down, a 15 s idle timeout
    becomes short enough to cut a probe on a busy machine, and the matrix would miss suites."""
    from simulator.harness.running import start_lab

    started = time.time()
    own = lab is None
    running = lab if lab is not None else start_lab(out_dir=out_dir, time_scale=1.0)
    try:
        names = list(listeners) if listeners else [l.name for l in running.lab.registry.listeners.values()]
        entries = [listener_report(running, n) for n in names]
        ledger = TrafficLedger()
        ledger.extend(running.connections())
        lab_summary = {"profile": running.config.profile, "listeners": names}
    finally:
        if own:
            running.stop()
    return {"lbsim_version": _version(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": round(time.time() - started, 3), "lab": lab_summary,
            "summary": {"passed": 0, "failed": 0, "total": 0}, "scenarios": [],
            "listeners": entries, "traffic": {"listeners": ledger.summary(), "comparison": []},
            "generated_by": "simulator.tools.analysis.build_report (no scenarios run)"}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lbsim")
    except Exception:
        return "unknown"


def load_report(path: str | Path) -> dict[str, Any]:
    """A report.json file, or the one in a results directory."""
    p = Path(path)
    file = p / "report.json" if p.is_dir() else p
    if not file.is_file():
        raise FileNotFoundError(f"no report.json at {file} ({file.resolve()} does not exist)")
    return json.loads(file.read_text())


def policy_matrix(listener: Mapping[str, Any]) -> pd.DataFrame:
    """Rows: suites; columns: versions; cells: 'both' (expected and observed), 'expected only',
    'observed only' or ''. From one report listener's `tls_matrix`."""
    m = listener["tls_matrix"]
    expected, observed = m.get("expected") or {}, m.get("observed") or {}
    versions = [v for v in ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3") if v in expected or v in observed]
    versions += sorted(set(expected) | set(observed) - set(versions))
    suites: list[str] = []
    for src in (observed, expected):
        for v in versions:
            for s in src.get(v, []):
                if s not in suites:
                    suites.append(s)
    cells = {}
    for v in versions:
        e, o = set(expected.get(v, [])), set(observed.get(v, []))
        cells[v] = ["both" if s in e and s in o else "expected only" if s in e else "observed only" if s in o else ""
                    for s in suites]
    return pd.DataFrame(cells, index=pd.Index(suites, name="suite"))


def compliance_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """Listeners x compliance profiles: the verdicts."""
    rows = {}
    for l in report.get("listeners", []):
        rows[l["name"]] = {p: v.get("verdict") for p, v in (l.get("compliance") or {}).items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def compliance_evidence(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (listener, profile, evidence line)."""
    rows = []
    for l in report.get("listeners", []):
        for p, v in (l.get("compliance") or {}).items():
            for e in v.get("evidence") or [""]:
                rows.append({"listener": l["name"], "profile": p, "verdict": v.get("verdict"), "evidence": e})
    return pd.DataFrame(rows)


def mutual_table(report: Mapping[str, Any]) -> pd.DataFrame:
    rows = [{"listener": l["name"], **c} for l in report.get("listeners", []) for c in l.get("mutual_matrix") or []]
    return pd.DataFrame(rows)


# ---- figures -------------------------------------------------------------------------------------------

def _plt():  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt  # imported late: the data functions need no plotting library

    return plt


_STYLE = {("TLSv1.2", "RSA"): "tab:blue", ("TLSv1.2", "ECDSA"): "tab:cyan",
          ("TLSv1.3", "RSA"): "tab:red", ("TLSv1.3", "ECDSA"): "tab:orange"}


def plot_overhead(df: pd.DataFrame, models: Sequence[str] = ("aliyun-slb", "tencent-clb")) -> Figure:
    """Overhead % against requests per connection, one line per variant, one panel per billing model.
    Colour: version and key type; solid/dashed: full/resumed; circles/squares: one-way/mutual."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 5.5), sharey=False, squeeze=False)
    for ax, m in zip(axes[0], models):
        curve = overhead_curve(df, m)
        for keys, g in curve.groupby(VARIANT_KEYS):
            version, key, resumed, mutual = keys
            ax.plot(g["requests"], g["overhead_pct"], color=_STYLE.get((version, key), "gray"),
                    linestyle="--" if resumed else "-", marker="s" if mutual else "o", markersize=4,
                    label=variant_label(version, key, resumed, mutual))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("requests per connection")
        ax.set_ylabel(f"overhead over billed bytes (%), {m}")
        what = "LB->client" if billing.MODELS[m].billed_directions == (OUT,) else "both directions"
        ax.set_title(f"{m}: (actual - billed) / billed, {what}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper right", ncol=1)
    fig.tight_layout()
    return fig


_CATEGORY_COLORS = {"handshake": "tab:red", "record_overhead": "tab:orange", "payload": "tab:green", "closure": "tab:gray"}


def plot_breakdown(df: pd.DataFrame, requests: Sequence[int] | None = None) -> Figure:
    """Stacked wire bytes per connection (handshake, record overhead, payload, closure, both directions)
    per variant, one panel per requests-per-connection value (default: the fewest and the most)."""
    plt = _plt()
    b = wire_breakdown(df)
    if requests is None:
        req = sorted(b["requests"].unique())
        requests = [req[0], req[-1]] if len(req) > 1 else req
    fig, axes = plt.subplots(1, len(requests), figsize=(7 * len(requests), 0.35 * b["variant"].nunique() + 2), squeeze=False)
    for ax, n in zip(axes[0], requests):
        sel = b[b["requests"] == n].sort_values("variant")
        left = pd.Series(0.0, index=sel.index)
        for c in CATEGORIES:
            ax.barh(sel["variant"], sel[c], left=left, color=_CATEGORY_COLORS[c], label=c)
            left = left + sel[c]
        ax.set_title(f"wire bytes per connection, {n} request(s)")
        ax.set_xlabel("bytes (client->LB + LB->client)")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_billed_vs_actual(df: pd.DataFrame) -> Figure:
    """Billed and actual bytes per connection under each vendor model, for the default cases."""
    plt = _plt()
    ba = billed_vs_actual(df)
    cases = list(dict.fromkeys(ba["case"]))
    fig, axes = plt.subplots(1, len(cases), figsize=(5.5 * max(1, len(cases)), 4.5), squeeze=False)
    for ax, case in zip(axes[0], cases):
        sel = ba[ba["case"] == case]
        x = range(len(sel))
        per = sel["connections"].clip(lower=1)
        ax.bar([i - 0.2 for i in x], sel["billed_bytes"] / per, width=0.4, label="billed", color="tab:green")
        ax.bar([i + 0.2 for i in x], sel["actual_bytes"] / per, width=0.4, label="actual (billed directions)", color="tab:red")
        for i, r in zip(x, sel.itertuples()):
            ax.annotate(f"{r.ratio:.2f}x", (i + 0.2, r.actual_bytes / max(1, r.connections)), ha="center", va="bottom", fontsize=9)
        ax.set_xticks(list(x), sel["model"])
        ax.set_title(case, fontsize=10)
        ax.set_ylabel("bytes per connection")
        ax.set_ylim(0, max(1.0, float((sel["actual_bytes"] / per).max())) * 1.15)  # room for the labels
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=9, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


def plot_lcu(results: Results, rates: Iterable[float] | None = None) -> Figure:
    """LCU per dimension and billed against new connections/s (projected from measured bytes per
    connection), with the measured windows as points; one panel per LCU model."""
    plt = _plt()
    conn = per_connection(results.connections)
    curve = lcu_curve(conn, rates)
    meas = lcu_measured(results)
    fig, axes = plt.subplots(1, len(LCU_MODELS), figsize=(7 * len(LCU_MODELS), 5), squeeze=False)
    dims = {"new_connections_per_s_lcu": "new connections", "concurrent_connections_lcu": "concurrent connections",
            "processed_gb_per_h_lcu": "processed bytes (billed)", "rule_evaluations_per_s_lcu": "rule evaluations"}
    for ax, m in zip(axes[0], LCU_MODELS):
        c = curve[curve["model"] == m]
        ax.plot(c["new_connections_per_s"], c["lcu"], color="black", linewidth=2.5, label="billed LCU (max)")
        for col, label in dims.items():
            if (c[col] > 0).any():
                ax.plot(c["new_connections_per_s"], c[col], linestyle="--", label=label)
        ax.plot(c["new_connections_per_s"], c["processed_lcu_if_wire_billed"], linestyle=":", color="tab:red",
                label="processed bytes if TLS overhead were billed")
        mm = meas[meas["model"] == m] if not meas.empty else meas
        if not mm.empty:
            ax.scatter(mm["new_connections_per_s"], mm["lcu"], color="tab:purple", zorder=5, label="measured windows")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("new connections per second")
        ax.set_ylabel("LCU (hourly)")
        ax.set_title(f"{m}: {conn['requests']:.0f} request(s), {conn[f'billed_{m}']:,.0f} B billed per connection")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


_MATRIX_COLORS = {"both": "#4caf50", "expected only": "#ff9800", "observed only": "#e53935", "": "#f5f5f5"}


def plot_policy_matrix(listener: Mapping[str, Any]) -> Figure:
    """One listener's suite x version matrix: green both, orange expected only, red observed only."""
    plt = _plt()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    m = policy_matrix(listener)
    keys = list(_MATRIX_COLORS)
    codes = m.apply(lambda col: col.map(keys.index)) if not m.empty else m
    fig, ax = plt.subplots(figsize=(1.4 * max(1, m.shape[1]) + 4, 0.28 * max(1, m.shape[0]) + 1.6))
    if not m.empty:
        ax.imshow(codes.values, cmap=ListedColormap([_MATRIX_COLORS[k] for k in keys]), vmin=0, vmax=len(keys) - 1, aspect="auto")
        ax.set_xticks(range(m.shape[1]), m.columns)
        ax.set_yticks(range(m.shape[0]), m.index, fontsize=7)
    match = listener["tls_matrix"].get("match")
    ax.set_title(f"{listener['name']} ({listener.get('policy')}, {listener.get('key_type')}): "
                 f"{'observed = expected' if match else 'observed != expected'}", fontsize=10)
    ax.legend(handles=[Patch(color=_MATRIX_COLORS[k], label=k) for k in keys if k], loc="upper left",
              bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    return fig


def plot_compliance(report: Mapping[str, Any]) -> Figure:
    """Listeners x compliance profiles, green pass / red fail."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    t = compliance_table(report)
    fig, ax = plt.subplots(figsize=(2.0 * max(1, t.shape[1]) + 2.5, 0.5 * max(1, t.shape[0]) + 1.5))
    colors = {"pass": "#4caf50", "fail": "#e53935"}
    for i, (name, row) in enumerate(t.iterrows()):
        for j, verdict in enumerate(row):
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor=colors.get(str(verdict), "#bdbdbd"), edgecolor="white", linewidth=2))
            ax.text(j + 0.5, i + 0.5, str(verdict), ha="center", va="center", color="white", fontsize=9)
    ax.set_xlim(0, max(1, t.shape[1]))
    ax.set_ylim(max(1, t.shape[0]), 0)
    ax.set_xticks([j + 0.5 for j in range(t.shape[1])], t.columns, fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(t.shape[0])], t.index, fontsize=8)
    ax.set_title("compliance of the observed TLS matrix")
    fig.tight_layout()
    return fig


def plot_key_exchange(frame: pd.DataFrame) -> Figure:
    """Wire and billed bytes per connection: classic against hybrid group, full against resumed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = [f"{r.key_exchange}\n{r.connection}" for r in frame.itertuples()]
    x = range(len(frame))
    ax.bar([i - 0.2 for i in x], frame["billed_bytes"], width=0.4, label="billed (every model: HTTP bytes)", color="tab:green")
    ax.bar([i + 0.2 for i in x], frame["wire"], width=0.4, label="wire (both directions)", color="tab:red")
    for i, r in zip(x, frame.itertuples()):
        ax.annotate(f"{r.ratio:.2f}x", (i + 0.2, r.wire), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("bytes per connection (one GET)")
    ax.set_ylim(0, float(frame["wire"].max()) * 1.15)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, name: str, directory: str | Path) -> Path:
    """Save `fig` as `<directory>/<name>.png` (created) and return the path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
