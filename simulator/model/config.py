"""The lab configuration: YAML in, validated frozen settings out.

Field names follow the vendor APIs (Alibaba `CreateLoadBalancerHTTPSListener`, Tencent `CreateListener`)
in snake_case. Every error names the field path and the allowed values, and nothing starts until the whole
file validates: `listeners[1].tls_policy: unknown policy 'tls_1_9'; expected one of ...`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from simulator import vendors
from simulator.errors import LbsimError
from simulator.policies import Policy, resolve_policy

SCHEDULERS = ("wrr", "rr", "wlc")
HTTP_CODES = ("http_2xx", "http_3xx", "http_4xx", "http_5xx")

# The vendor's field ranges and defaults are its profile's `limits` (simulator.vendors); the lab also allows
# port 0 = "any free port" for parallel tests.
# Seed: "usually takes one to three minutes ... Normally it takes effect in one minute but no longer exceeds
# three minutes." The shares are the lab's choice (the vendor gives none): Lab.activation_delay draws.
ACTIVATION_NORMAL = (45.0, 75.0)  # "about one minute"
ACTIVATION_NORMAL_SHARE = 0.85
ACTIVATION_MAX = 180.0  # "no longer exceeds three minutes"
TICKET_LIFETIME = 300  # seed: "The session ticket of HTTPS listeners is 300 seconds."
# How a mutual listener refuses a client: the profile's `limits.client_cert_refusal` when the listener does
# not say (docs/tls-policies.md: UNCONFIRMED for both vendors).
CLIENT_CERT_REFUSALS = ("handshake", "http_400")
MAX_WEIGHT = 100
EVENT_LOOPS = ("asyncio", "uvloop")  # what a lab process runs on (simulator.runtime.loops)
DEFAULT_EVENT_LOOP = "asyncio"
MAX_WORKERS = 64  # processes sharing each listener port (SO_REUSEPORT); one per core is the useful maximum
# time_scale shrinks vendor timers, but a timeout that bounds live I/O never goes below this: on a loaded
# machine a 50 ms health-check or 150 ms idle timeout would fail healthy backends and cut live clients.
MIN_IO_TIMEOUT = 1.0
MIN_HEALTH_INTERVAL = 0.1  # and health checks never poll faster than this (CPU)


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or `taskset` narrows), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def parse_workers(value: Any, path: str = "workers") -> int:
    """`workers`: a process count 1..MAX_WORKERS, or `auto` (one per core, at most MAX_WORKERS)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return max(1, min(machine_cores(), MAX_WORKERS))
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise fail(path, f"expected an integer in 1..{MAX_WORKERS} or 'auto', got {value!r}",
                   hint=f"workers: auto uses one process per core ({machine_cores()} here)")
    return value


def workers_argument(text: str) -> int:
    """`--workers N|auto` on the command line (argparse shows the message with the option's name)."""
    try:
        return parse_workers(text, "--workers")
    except LbsimError as e:
        raise argparse.ArgumentTypeError(f"{e.message} ({e.hint})") from None


def io_timeout(seconds: float, time_scale: float) -> float:
    """A vendor I/O timeout (idle, request, health-check) in lab seconds."""
    return max(MIN_IO_TIMEOUT, seconds * time_scale)


def fail(path: str, message: str, hint: str | None = None) -> LbsimError:
    return LbsimError("InvalidConfig", message, field=path, hint=hint)


T = TypeVar("T")


class Fields:
    """Reads one mapping of the YAML, recording the path so errors can name the field."""

    def __init__(self, data: Any, path: str, known: tuple[str, ...]):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise fail(path or "<top>", f"expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - set(known))
        if unknown:
            raise fail(
                self.at(path, unknown[0]),
                f"unknown field '{unknown[0]}'; expected one of {', '.join(known)}",
            )
        self.data, self.path = data, path

    @staticmethod
    def at(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def where(self, key: str) -> str:
        return self.at(self.path, key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    def str(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise fail(self.where(key), "is required")
            return default
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise fail(self.where(key), f"expected a string, got {type(value).__name__}")
        return str(value)

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):  # YAML reads bare on/off as booleans
            value = "on" if value else "off"
        value = str(value).lower()
        if value not in allowed:
            raise fail(self.where(key), f"unknown value '{value}'; expected one of {', '.join(allowed)}")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("on", "off", "true", "false", "yes", "no"):
            return value.lower() in ("on", "true", "yes")
        raise fail(self.where(key), f"expected on/off, got {value!r}")

    def number(self, key: str, lo: float, hi: float, default: T, kind: Callable[[Any], Any] = int) -> T:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise fail(self.where(key), f"expected {'an integer' if kind is int else 'a number'} in {lo}..{hi}, got {value!r}")
        if not lo <= value <= hi:
            raise fail(self.where(key), f"{value} is out of range; expected {lo}..{hi}")
        return kind(value)

    def list(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise fail(self.where(key), f"expected a list, got {type(value).__name__}")
        return value


@dataclass(frozen=True)
class CertificateSpec:
    name: str
    type: str  # server | ca
    cert: str  # a path, or inline PEM
    key: str | None = None


@dataclass(frozen=True)
class TrustStoreSpec:
    """A trust store (ALB): a CA bundle that verifies client certificates, and revocation lists."""

    name: str
    ca_bundle: str  # a path, or inline PEM
    revocations: tuple[str, ...] = ()  # CRLs: paths or inline PEM


@dataclass(frozen=True)
class BackendSpec:
    name: str
    port: int | None = None  # a mock backend the lab starts (0 = any free port)
    address: str | None = None  # "host:port" of a server already running
    instance_id: str = ""  # how the vendor APIs name it (AddBackendServers, RegisterTargets); "" = i-<name>

    @property
    def managed(self) -> bool:
        return self.address is None

    @property
    def instance(self) -> str:
        return self.instance_id or f"i-{self.name}"


@dataclass(frozen=True)
class BackendServer:
    backend: str
    weight: int = 100


@dataclass(frozen=True)
class StickySession:
    type: str = "insert"  # insert: the LB's SERVERID cookie; server: rewrite the backend's own cookie
    cookie_timeout: int = 1000
    cookie: str | None = None


@dataclass(frozen=True)
class HealthCheck:
    enabled: bool = True
    uri: str = "/health"
    method: str = "head"
    http_code: tuple[str, ...] = ("http_2xx", "http_3xx")
    interval: int = 2
    timeout: int = 5
    healthy_threshold: int = 3
    unhealthy_threshold: int = 3
    connect_port: int | None = None


# Client-certificate headers of mutual listeners, by what they carry: Alibaba ALB's names. CLB's are UNCONFIRMED
# (vendor-facts §1), so a listener can rename them: headers.client_cert_names.
CLIENT_CERT_HEADERS: tuple[tuple[str, str], ...] = (
    ("subject", "X-Forwarded-Clientcert-subjectdn"),
    ("issuer", "X-Forwarded-Clientcert-issuerdn"),
    ("fingerprint", "X-Forwarded-Clientcert-fingerprint"),
    ("verify", "X-Forwarded-Clientcert-clientverify"),
)
# Headers the listener sets or HTTP framing needs: a client-certificate header must not take their names.
_NOT_CLIENT_CERT_NAMES = frozenset(("host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "x-amzn-trace-id",
                                    "slb-ip", "slb-id", "cookie",
                                    "content-length", "transfer-encoding", "connection", "upgrade", "te"))
_HEADER_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def parse_client_cert_names(raw: Any, path: str) -> tuple[tuple[str, str], ...]:
    """`headers.client_cert_names`: {subject|issuer|fingerprint|verify: Header-Name}; unnamed ones keep ALB's."""
    names = dict(CLIENT_CERT_HEADERS)
    nf = Fields(raw, path, tuple(names))
    for key, default in CLIENT_CERT_HEADERS:
        value = nf.str(key)
        if value is None:
            continue
        if not value or not set(value) <= _HEADER_NAME_CHARS:
            raise fail(nf.where(key), f"expected an HTTP header name (letters, digits, '-', '_'), got {value!r}", f"{key}: {default}")
        if value.lower() in _NOT_CLIENT_CERT_NAMES:
            raise fail(nf.where(key), f"'{value}' is a header the listener or HTTP itself uses", f"{key}: {default}")
        names[key] = value
    seen: dict[str, str] = {}
    for key, value in names.items():
        if value.lower() in seen:
            raise fail(nf.where(key), f"'{value}' already names the {seen[value.lower()]} header; each needs its own name")
        seen[value.lower()] = key
    return tuple(names.items())


@dataclass(frozen=True)
class Headers:
    """Vendor header switches (Alibaba's names; `XForwardedFor` is always on for layer 7). A listener that leaves
    one out gets its profile's default (`VendorProfile.headers`)."""

    x_forwarded_for: bool = True
    x_forwarded_proto: bool = True
    slb_ip: bool = False
    slb_id: bool = False
    x_forwarded_port: bool = False  # the listener's port (ALB)
    amzn_trace_id: bool = False  # X-Amzn-Trace-Id: Root=1-<epoch hex>-<24 hex> (ALB request tracing)
    client_cert: bool = True  # mutual listeners: subject, issuer, fingerprint and verify result
    client_cert_names: tuple[tuple[str, str], ...] = CLIENT_CERT_HEADERS  # (what, header name)


@dataclass(frozen=True)
class ListenerSpec:
    port: int
    profile: str
    server_certificate: str
    policy: Policy
    name: str = ""
    # An RSA and an ECC certificate on one listener (tencent MultiCertInfo): both refs, server_certificate
    # being the first; empty for a listener with one certificate.
    server_certificates: tuple[str, ...] = ()
    ca_certificate: str | None = None
    ssl_verify_client: str = "on"  # on | optional (where the profile's capabilities.verify_optional)
    client_cert_refusal: str = "handshake"  # handshake | http_400; the lab file's default: the profile's limits
    http2: bool = True  # the lab file's default: the profile's limits.http2
    scheduler: str = "wrr"
    backend_servers: tuple[BackendServer, ...] = ()
    sticky_session: StickySession | None = None
    health_check: HealthCheck = HealthCheck()
    idle_timeout: int = 15
    request_timeout: int = 60
    headers: Headers = Headers()
    sni: tuple[tuple[str, str], ...] = ()  # (domain, certificate) pairs, where the profile's capabilities.sni
    billing_model: str = ""
    # The ALB's mutual TLS: off | passthrough (any client certificate, sent on to the backend) | verify
    # (against `trust_store`); profiles without these modes use ca_certificate instead.
    mtls_mode: str = "off"
    trust_store: str | None = None
    ignore_client_certificate_expiry: bool = False
    advertise_trust_store_ca_names: bool = False
    activation_delay: float | None = None  # seconds before time_scale; None = drawn by Lab.activation_delay
    lb_id: str = "lb-lbsim"
    # Not a lab-file field: the address of the listener's load balancer, set by the lab (model/loadbalancers.py).
    address: str = "127.0.0.1"

    @property
    def mutual(self) -> bool:
        """A client CA on the listener (`ca_certificate`); the ALB's modes are `client_verification`."""
        return self.ca_certificate is not None

    @property
    def client_verification(self) -> str:
        """How the listener treats client certificates, whatever the vendor calls it: off (none asked for),
        on (a valid one required), optional (none admitted, a bad one refused), any (asked for, every client
        admitted: the ALB's passthrough). The harness asks this, not the profile's name."""
        if self.ca_certificate is not None:
            return self.ssl_verify_client
        modes = vendors.get(self.profile).mtls
        return modes.verification.get(self.mtls_mode, "off") if modes is not None else "off"

    @property
    def verifies_clients(self) -> bool:
        """Some client certificates are refused (a CA or a trust store checks them)."""
        return self.client_verification in ("on", "optional")

    @property
    def certificate_fields(self) -> tuple[tuple[str, str, str], ...]:
        """(field, certificate ref, wanted type) of every certificate the listener uses."""
        fields = [("server_certificate", self.server_certificate, "server")]
        if self.server_certificates:
            fields = [(f"server_certificates[{i}]", ref, "server") for i, ref in enumerate(self.server_certificates)]
        fields += [(f"sni.{domain}", ref, "server") for domain, ref in self.sni]
        if self.ca_certificate:
            fields.append(("ca_certificate", self.ca_certificate, "ca"))
        return tuple(fields)

    @property
    def certificate_refs(self) -> tuple[str, ...]:
        return tuple(ref for _, ref, _ in self.certificate_fields)


@dataclass(frozen=True)
class ApiSpec:
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None


@dataclass(frozen=True)
class AccessKeySpec:
    id: str
    secret: str
    profile: str | None = None  # None: every vendor API accepts it


@dataclass(frozen=True)
class VendorEndpointSpec:
    http_port: int = 0
    https_port: int = 0
    region: str | None = None  # None: the vendor face's default (cn-hangzhou, ap-guangzhou)


@dataclass(frozen=True)
class VendorApiSpec:
    """`vendor_api:` the vendors' own APIs (docs/vendor-apis.md): where they listen, and their access keys."""

    host: str = "127.0.0.1"
    access_keys: tuple[AccessKeySpec, ...] = ()  # none: one key per vendor, generated when the APIs start
    endpoints: tuple[tuple[str, VendorEndpointSpec], ...] = ()  # profile -> ports and region

    def endpoint(self, profile: str) -> VendorEndpointSpec:
        return dict(self.endpoints).get(profile, VendorEndpointSpec())


@dataclass(frozen=True)
class LabConfig:
    profile: str = vendors.DEFAULT
    time_scale: float = 1.0
    api: ApiSpec = ApiSpec()
    home: str | None = None
    certificates: tuple[CertificateSpec, ...] = ()
    trust_stores: tuple[TrustStoreSpec, ...] = ()
    backends: tuple[BackendSpec, ...] = ()
    listeners: tuple[ListenerSpec, ...] = ()
    connection_log: str | None = None
    metering: bool = True
    workers: int = 1  # processes serving every listener port (docs/performance.md, "Multi-worker mode")
    event_loop: str = "asyncio"  # or uvloop (simulator.runtime.loops; docs/performance.md, "uvloop")
    vendor_api: VendorApiSpec = VendorApiSpec()
    base_dir: str = "."


def load_config(path: str | Path) -> LabConfig:
    """Read and validate a lab YAML file; relative certificate paths resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise LbsimError("ConfigNotFound", f"cannot read {path}: {e.strerror}", field="config") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise LbsimError("InvalidConfig", f"not valid YAML{where}: {getattr(e, 'problem', e)}", field="config") from e
    return parse_config(data, base_dir=str(path.parent))


def parse_config(data: Any, base_dir: str = ".") -> LabConfig:
    """Validate a lab configuration mapping (as loaded from YAML or posted to the API)."""
    top = Fields(
        data,
        "",
        ("profile", "time_scale", "api", "home", "certificates", "trust_stores", "backends", "listeners", "connection_log",
         "metering", "workers", "event_loop", "vendor_api"),
    )
    profile = top.choice("profile", vendors.names(), vendors.DEFAULT)
    time_scale = top.number("time_scale", 0.0001, 100.0, 1.0, float)
    api = Fields(top.raw("api"), "api", ("host", "port", "token"))
    api_spec = ApiSpec(
        host=api.str("host", "127.0.0.1"),
        port=api.number("port", 0, 65535, 0),
        token=api.str("token"),
    )
    certificates = tuple(parse_certificate(c, f"certificates[{i}]") for i, c in enumerate(top.list("certificates")))
    unique([c.name for c in certificates], "certificates", "name")
    backends = tuple(parse_backend(b, f"backends[{i}]") for i, b in enumerate(top.list("backends")))
    unique([b.name for b in backends], "backends", "name")
    trust_stores = tuple(parse_trust_store(t, f"trust_stores[{i}]") for i, t in enumerate(top.list("trust_stores")))
    unique([t.name for t in trust_stores], "trust_stores", "name")
    unique([b.instance for b in backends], "backends", "instance_id")
    cert_types = {c.name: c.type for c in certificates}
    listeners = tuple(
        parse_listener(l, f"listeners[{i}]", profile, cert_types, {b.name for b in backends},
                       {t.name for t in trust_stores})
        for i, l in enumerate(top.list("listeners"))
    )
    unique([l.port for l in listeners if l.port], "listeners", "port")
    listeners = tuple(l if l.name else replace(l, name=f"https-{l.port or i}") for i, l in enumerate(listeners))
    unique([l.name for l in listeners], "listeners", "name")
    return LabConfig(
        profile=profile,
        time_scale=time_scale,
        api=api_spec,
        home=top.str("home"),
        certificates=certificates,
        trust_stores=trust_stores,
        backends=backends,
        listeners=listeners,
        connection_log=top.str("connection_log"),
        metering=top.bool("metering", True),
        workers=parse_workers(top.raw("workers")) if top.raw("workers") is not None else 1,
        event_loop=top.choice("event_loop", EVENT_LOOPS, DEFAULT_EVENT_LOOP),
        vendor_api=parse_vendor_api(top.raw("vendor_api"), "vendor_api"),
        base_dir=base_dir,
    )


def unique(values: list[Any], path: str, key: str) -> None:
    seen: dict[Any, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            raise fail(f"{path}[{i}].{key}", f"duplicate {key} {value!r} (already used by {path}[{seen[value]}])")
        seen[value] = i


def parse_vendor_api(data: Any, path: str) -> VendorApiSpec:
    apis = tuple(name for name in vendors.names() if vendors.get(name).api_face)  # vendors with an API of their own
    f = Fields(data, path, ("host", "access_keys", *apis))
    host = f.str("host", "127.0.0.1")
    if not host.startswith("127.") and host not in ("localhost", "::1"):
        raise fail(f.where("host"), f"the vendor APIs listen on loopback only, not {host!r}", "host: 127.0.0.1")
    keys = []
    for i, raw in enumerate(f.list("access_keys")):
        kf = Fields(raw, f"{f.where('access_keys')}[{i}]", ("id", "secret", "profile"))
        key_id, secret = kf.str("id", required=True), kf.str("secret", required=True)
        for key, value in (("id", key_id), ("secret", secret)):
            if not value or len(value) > 128 or not value.isascii() or not value.isprintable() or " " in value:
                raise fail(kf.where(key), f"expected 1-128 printable ASCII characters without spaces, got {value!r}")
        keys.append(AccessKeySpec(key_id, secret, kf.choice("profile", apis)))
    unique([k.id for k in keys], f.where("access_keys"), "id")
    endpoints = []
    for profile in apis:
        if f.has(profile):
            ef = Fields(f.raw(profile), f.where(profile), ("http_port", "https_port", "region"))
            spec = VendorEndpointSpec(ef.number("http_port", 0, 65535, 0), ef.number("https_port", 0, 65535, 0),
                                      ef.str("region"))
            if spec.http_port and spec.http_port == spec.https_port:
                raise fail(ef.where("https_port"), f"{spec.https_port} is also the http_port; give each its own port")
            endpoints.append((profile, spec))
    return VendorApiSpec(host=host, access_keys=tuple(keys), endpoints=tuple(endpoints))


def parse_certificate(data: Any, path: str) -> CertificateSpec:
    f = Fields(data, path, ("name", "type", "cert", "key"))
    spec = CertificateSpec(
        name=f.str("name", required=True),
        type=f.choice("type", ("server", "ca"), "server"),
        cert=f.str("cert", required=True),
        key=f.str("key"),
    )
    if spec.type == "server" and not spec.key:
        raise fail(f.where("key"), "a server certificate needs its private key", "add key: path/to/server.key")
    if spec.type == "ca" and spec.key:
        raise fail(f.where("key"), "a CA certificate is uploaded without a private key", "remove the key field")
    return spec


def parse_trust_store(data: Any, path: str) -> TrustStoreSpec:
    f = Fields(data, path, ("name", "ca_bundle", "revocations"))
    revocations = f.list("revocations")
    for i, item in enumerate(revocations):
        if not isinstance(item, str) or not item:
            raise fail(f"{f.where('revocations')}[{i}]", "expected a CRL file path or inline PEM")
    return TrustStoreSpec(name=f.str("name", required=True), ca_bundle=f.str("ca_bundle", required=True),
                          revocations=tuple(revocations))


def parse_backend(data: Any, path: str) -> BackendSpec:
    f = Fields(data, path, ("name", "port", "address", "instance_id"))
    name = f.str("name", required=True)
    instance_id = f.str("instance_id", "")
    if instance_id and (len(instance_id) > 64 or not set(instance_id) <= _HEADER_NAME_CHARS):
        raise fail(f.where("instance_id"), f"expected 1-64 letters, digits, '-' or '_', got {instance_id!r}", "instance_id: i-web-1")
    if f.has("address") == f.has("port") and f.has("address"):
        raise fail(path, "give either port (a mock backend the lab starts) or address (a running server), not both")
    if f.has("address"):
        address = f.str("address")
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise fail(f.where("address"), f"expected host:port, got {address!r}")
        return BackendSpec(name=name, address=address, instance_id=instance_id)
    return BackendSpec(name=name, port=f.number("port", 0, 65535, 0), instance_id=instance_id)


LISTENER_FIELDS = (
    "name", "port", "profile", "server_certificate", "server_certificates", "ca_certificate", "ssl_verify_client",
    "client_cert_refusal", "tls_policy", "http2",
    "scheduler", "backend_servers", "sticky_session", "health_check", "idle_timeout", "request_timeout", "headers",
    "sni", "billing_model", "activation_delay", "lb_id", "mtls_mode", "trust_store", "ignore_client_certificate_expiry",
    "advertise_trust_store_ca_names",
)  # fmt: skip
MTLS_FIELDS = ("mtls_mode", "trust_store", "ignore_client_certificate_expiry", "advertise_trust_store_ca_names")


def parse_mtls(f: Fields, profile: str, ca_certificate: str | None, trust_stores: set[str] | None) -> dict[str, Any]:
    """Mutual TLS as modes and trust stores, for a profile that has them (`VendorProfile.mtls`: the ALB's);
    refused elsewhere (those profiles use ca_certificate)."""
    vendor = vendors.get(profile).mtls
    given = [key for key in MTLS_FIELDS if f.has(key)]
    if vendor is None:
        if given:
            able = " or ".join(n for n in vendors.names() if vendors.get(n).mtls is not None)
            raise fail(f.where(given[0]), f"{profile} listeners have no {given[0]}: their mutual TLS is ca_certificate",
                       f"use ca_certificate, or profile: {able}")
        return {}
    mode = f.choice("mtls_mode", vendor.modes, vendor.default)
    if ca_certificate is not None:
        raise fail(f.where("ca_certificate"), f"{profile} listeners verify clients against a trust store",
                   "use mtls_mode: verify with trust_store: <name>")
    store = f.str("trust_store")
    if mode == "verify" and store is None:
        raise fail(f.where("trust_store"), "mtls_mode verify needs a trust store", "trust_store: <name of trust_stores[]>")
    if mode != "verify":
        for key in ("trust_store", "ignore_client_certificate_expiry", "advertise_trust_store_ca_names"):
            if f.has(key):
                raise fail(f.where(key), f"only applies to mtls_mode verify (this listener is {mode})")
    if store is not None and trust_stores is not None and store not in trust_stores:
        raise fail(f.where("trust_store"), f"unknown trust store '{store}'; expected one of "
                   f"{', '.join(sorted(trust_stores)) or '(no trust_stores defined)'}")
    return {
        "mtls_mode": mode,
        "trust_store": store,
        "ignore_client_certificate_expiry": f.bool("ignore_client_certificate_expiry",
                                                   vendor.ignore_client_certificate_expiry),
        "advertise_trust_store_ca_names": f.bool("advertise_trust_store_ca_names",
                                                 vendor.advertise_trust_store_ca_names),
    }


def multi_certificates(f: Fields, profile: str, cert_types: dict[str, str]) -> tuple[str, ...]:
    """`server_certificates: [rsa, ecc]`: two server certificates on one listener (tencent MultiCertInfo), in
    place of `server_certificate`. Their key types (one RSA, one ECDSA) are checked when the listener is
    built, from the stored certificates."""
    if not f.has("server_certificates"):
        return ()
    where = f.where("server_certificates")
    if not vendors.get(profile).capabilities.dual_certificates:
        able = " or ".join(vendors.with_capability("dual_certificates"))
        raise fail(where, f"{profile} listeners hold one server certificate; an RSA and an ECC certificate on one "
                   f"listener (MultiCertInfo) is a {able} feature", f"use server_certificate, or profile: {able}")
    if f.has("server_certificate"):
        raise fail(where, "give server_certificate or server_certificates, not both",
                   "server_certificates: [my-rsa-cert, my-ecc-cert]")
    refs = f.list("server_certificates")
    if len(refs) != 2 or not all(isinstance(r, str) and r for r in refs) or refs[0] == refs[1]:
        raise fail(where, f"expected two different server certificate names, one RSA and one ECDSA (ECC), got {refs!r}",
                   "server_certificates: [my-rsa-cert, my-ecc-cert]")
    for i, ref in enumerate(refs):
        if cert_types and ref not in cert_types:
            raise fail(f"{where}[{i}]", f"unknown certificate '{ref}'; expected one of {', '.join(sorted(cert_types))}")
        if cert_types and cert_types[ref] != "server":
            raise fail(f"{where}[{i}]", f"'{ref}' is a {cert_types[ref]} certificate; expected a server certificate")
    return tuple(refs)


def parse_listener(data: Any, path: str, default_profile: str, cert_types: dict[str, str], backends: set[str],
                   trust_stores: set[str] | None = None) -> ListenerSpec:
    f = Fields(data, path, LISTENER_FIELDS)
    profile = f.choice("profile", vendors.names(), default_profile)
    vendor = vendors.get(profile)
    limits, can = vendor.limits, vendor.capabilities
    port = f.number("port", 0, 65535, None)
    if port is None:
        raise fail(f.where("port"), "is required (1-65535; 443 is recommended, any port works; 0 = any free port)")

    def certificate(key: str, want: str, required: bool) -> str | None:
        ref = f.str(key, required=required)
        if ref is not None and cert_types and ref in cert_types and cert_types[ref] != want:
            raise fail(f.where(key), f"'{ref}' is a {cert_types[ref]} certificate; expected a {want} certificate")
        return ref

    multi = multi_certificates(f, profile, cert_types)
    server_certificate = multi[0] if multi else certificate("server_certificate", "server", True)
    ca_certificate = certificate("ca_certificate", "ca", False)
    verify = f.choice("ssl_verify_client", ("on", "optional"), "on")
    if verify == "optional" and not can.verify_optional:
        able = " or ".join(vendors.with_capability("verify_optional"))
        raise fail(f.where("ssl_verify_client"), f"'optional' is a {able} setting (SSLVerifyClient); {profile} verifies every client", f"remove it or use profile: {able}")
    if f.has("ssl_verify_client") and not ca_certificate:
        raise fail(f.where("ssl_verify_client"), "only applies to mutual listeners", "add ca_certificate")
    refusal = f.choice("client_cert_refusal", CLIENT_CERT_REFUSALS, limits.client_cert_refusal)
    if f.has("client_cert_refusal") and not ca_certificate:
        raise fail(f.where("client_cert_refusal"), "only applies to mutual listeners (how they refuse a client "
                   "certificate)", "add ca_certificate, or remove client_cert_refusal")
    policy = resolve_policy(profile, f.raw("tls_policy"), field=f.where("tls_policy"))

    servers = []
    for i, item in enumerate(f.list("backend_servers")):
        sf = Fields(item if not isinstance(item, str) else {"backend": item}, f"{f.where('backend_servers')}[{i}]", ("backend", "weight"))
        name = sf.str("backend", required=True)
        if name not in backends:
            raise fail(sf.where("backend"), f"unknown backend '{name}'; expected one of {', '.join(sorted(backends)) or '(no backends defined)'}")
        servers.append(BackendServer(name, sf.number("weight", 0, MAX_WEIGHT, 100)))

    sticky = None
    if f.has("sticky_session") and f.raw("sticky_session") is not False:
        raw = f.raw("sticky_session")
        sf = Fields({} if raw is True else raw, f.where("sticky_session"), ("type", "cookie_timeout", "cookie"))
        sticky = StickySession(
            type=sf.choice("type", ("insert", "server"), "insert"),
            cookie_timeout=sf.number("cookie_timeout", *limits.cookie_timeout),
            cookie=sf.str("cookie"),
        )
        if sticky.type == "server" and not sticky.cookie:
            raise fail(sf.where("cookie"), "sticky_session type 'server' rewrites the backend's own cookie: name it", "cookie: JSESSIONID")

    hf = Fields(f.raw("health_check"), f.where("health_check"), ("enabled", "uri", "method", "http_code", "interval", "timeout", "healthy_threshold", "unhealthy_threshold", "connect_port"))
    codes = hf.raw("http_code", list(HealthCheck.http_code))
    codes = codes.split(",") if isinstance(codes, str) else codes
    for code in codes:
        if code not in HTTP_CODES:
            raise fail(hf.where("http_code"), f"unknown value '{code}'; expected any of {', '.join(HTTP_CODES)}")
    uri = hf.str("uri", "/health")
    if not uri.startswith("/"):
        raise fail(hf.where("uri"), f"must start with '/', got {uri!r}")
    health = HealthCheck(
        enabled=hf.bool("enabled", True),
        uri=uri,
        method=hf.choice("method", ("head", "get"), "head"),
        http_code=tuple(codes),
        interval=hf.number("interval", *limits.health_interval),
        timeout=hf.number("timeout", *limits.health_timeout),
        healthy_threshold=hf.number("healthy_threshold", *limits.health_threshold),
        unhealthy_threshold=hf.number("unhealthy_threshold", *limits.health_threshold),
        connect_port=hf.number("connect_port", 1, 65535, None),
    )

    xf = Fields(f.raw("headers"), f.where("headers"), ("x_forwarded_for", "x_forwarded_proto", "x_forwarded_port", "amzn_trace_id", "slb_ip", "slb_id", "client_cert", "client_cert_names"))
    if xf.has("x_forwarded_for") and not xf.bool("x_forwarded_for", True):
        raise fail(xf.where("x_forwarded_for"), "X-Forwarded-For is always on for layer-7 listeners")
    sends = vendor.headers
    headers = Headers(
        x_forwarded_proto=xf.bool("x_forwarded_proto", sends.x_forwarded_proto),
        x_forwarded_port=xf.bool("x_forwarded_port", sends.x_forwarded_port),
        amzn_trace_id=xf.bool("amzn_trace_id", sends.amzn_trace_id),
        slb_ip=xf.bool("slb_ip", sends.slb_ip),
        slb_id=xf.bool("slb_id", sends.slb_id),
        client_cert=xf.bool("client_cert", sends.client_cert),
        client_cert_names=parse_client_cert_names(xf.raw("client_cert_names"), xf.where("client_cert_names")),
    )

    sni: list[tuple[str, str]] = []
    if f.has("sni"):
        if not can.sni:
            able = " or ".join(vendors.with_capability("sni"))
            raise fail(f.where("sni"), f"{profile} HTTPS listeners do not support SNI (seed): one certificate per listener", f"use profile: {able}, or one listener per certificate")
        raw = f.raw("sni")
        if not isinstance(raw, dict) or not raw:
            raise fail(f.where("sni"), "expected a mapping of domain: server_certificate")
        for domain, ref in raw.items():
            if not isinstance(ref, str):
                raise fail(f"{f.where('sni')}.{domain}", "expected a server certificate name")
            if cert_types and ref in cert_types and cert_types[ref] != "server":
                raise fail(f"{f.where('sni')}.{domain}", f"'{ref}' is a {cert_types[ref]} certificate; expected a server certificate")
            if cert_types and ref not in cert_types:
                raise fail(f"{f.where('sni')}.{domain}", f"unknown certificate '{ref}'; expected one of {', '.join(sorted(cert_types))}",
                           "list it under certificates")
            sni.append((str(domain).lower(), ref))

    delay = f.raw("activation_delay")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0):
        raise fail(f.where("activation_delay"), f"expected seconds >= 0 (before time_scale), got {delay!r}")

    for key in ("server_certificate", "ca_certificate"):
        ref = f.str(key)
        if ref is not None and cert_types and ref not in cert_types:
            raise fail(f.where(key), f"unknown certificate '{ref}'; expected one of {', '.join(sorted(cert_types))}")

    mtls = parse_mtls(f, profile, ca_certificate, trust_stores)

    return ListenerSpec(
        **mtls,
        name=f.str("name", ""),
        port=port,
        profile=profile,
        server_certificate=server_certificate,
        server_certificates=multi,
        ca_certificate=ca_certificate,
        ssl_verify_client=verify,
        client_cert_refusal=refusal,
        policy=policy,
        http2=f.bool("http2", limits.http2),
        scheduler=f.choice("scheduler", SCHEDULERS, "wrr"),
        backend_servers=tuple(servers),
        sticky_session=sticky,
        health_check=health,
        idle_timeout=f.number("idle_timeout", *limits.idle_timeout),
        request_timeout=f.number("request_timeout", *limits.request_timeout),
        headers=headers,
        sni=tuple(sni),
        billing_model=f.choice("billing_model", tuple(vendors.billing_models()), vendor.billing.name),
        activation_delay=None if delay is None else float(delay),
        lb_id=f.str("lb_id", "lb-lbsim"),
    )
