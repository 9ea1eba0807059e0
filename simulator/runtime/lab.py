"""A lab: certificates, mock backends, listeners (mitmproxy with our addons) and the management API.

Data flows one way: config or API call -> validated `ListenerSpec` -> immutable `ListenerVersion` (one OpenSSL
context) -> the hooks read it. Everything listens on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import secrets
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.master import Master

from simulator.dataplane.addons.balancer import Balancer
from simulator.dataplane.addons.connlog import ConnectionLog, VendorLogs
from simulator.dataplane.addons.headers import ForwardedHeaders
from simulator.dataplane.addons.limits import RequestLimits
from simulator.dataplane.addons.sticky import StickySessions
from simulator.dataplane.addons.timeouts import IdleTimeouts
from simulator.dataplane.addons.tls import TlsTermination
from simulator import vendors
from simulator.backends import MockBackend
from simulator.certs import CertificateStore, CertInfo, Material, check
from simulator.certs.truststore import TrustStore
from simulator.certs.validate import evaluate
from simulator.model.loadbalancers import LoadBalancer, LoadBalancers
from simulator.model.config import ACTIVATION_MAX, ACTIVATION_NORMAL, ACTIVATION_NORMAL_SHARE, LabConfig, ListenerSpec, parse_listener
from simulator.errors import LbsimError
from simulator.dataplane.health import HealthChecker
from simulator.dataplane.listener import BackendState, Listener, ListenerVersion, build_context
from simulator.policies.context import key_type_of
from simulator.metering import TrafficLedger
from simulator.net import LOOPBACK, free_port  # mitmproxy refuses two modes on port 0: we pick ports
from simulator.dataplane.registry import Registry
from simulator.dataplane.scheduling import Scheduler
from simulator.runtime.fdlimit import FdLimit, raise_fd_limit
from simulator.runtime import ids as connection_ids
from simulator.runtime.gctune import tune_gc
from simulator.runtime.optimize import drop_construction_checks
from simulator.runtime.options import LabOptions
from simulator.runtime.servers import ListenerServers
from simulator.dataplane.resumption import SharedSessionCache, derive_ticket_keys
from simulator.runtime.workers import (RECORD_BATCH, MirroredHealth, WorkerPool, WorkerSeat, apply_health, health_of,
                                      new_ticket_secret)

logger = logging.getLogger(__name__)
# How often a lab looks for certificate revisions written by other processes (`lbsim cert replace`): a
# stat of the store directory, and the records only when it changed (or every STORE_FULL_READ polls).
STORE_POLL_INTERVAL = 0.5
STORE_FULL_READ = 10


def read_pem(value: str, base_dir: str) -> bytes:
    """A config certificate field holds inline PEM or a path (relative to the config file)."""
    if "-----BEGIN" in value:
        return value.encode()
    path = Path(value)
    if not path.is_absolute():
        path = Path(base_dir) / path
    try:
        return path.read_bytes()
    except OSError as e:
        raise LbsimError("FileNotFound", f"cannot read {path}: {e.strerror}", field="certificates") from e


class Lab:
    """Runs one lab in the current asyncio loop: `await lab.start()`, `await lab.stop()`.

    With `workers: N` (N > 1) this lab is worker 0: it also starts and steers N-1 worker processes
    (`simulator.runtime.workers`), each a `Lab` given a `seat`, which serves the listeners and nothing else.
    """

    def __init__(self, config: LabConfig, out_dir: Path | str = "lbsim-out", store: CertificateStore | None = None,
                 seat: WorkerSeat | None = None):
        self.config = config
        self.seat = seat
        # Several processes serve each port: they derive the same session-ticket keys from one secret and
        # share one session-ID cache (simulator.dataplane.resumption).
        self.ticket_secret = seat.ticket_secret if seat else (new_ticket_secret() if config.workers > 1 else None)
        self.session_cache = SharedSessionCache(seat.session_cache) if seat is not None else None
        self.workers: WorkerPool | None = None
        self.out_dir = Path(out_dir)
        self.store = store or CertificateStore(Path(config.home) if config.home else self.out_dir / "store")
        self.registry = Registry()
        self.loadbalancers = LoadBalancers()
        self.ledger = TrafficLedger()
        # A worker process takes worker 0's health verdicts instead of checking on its own.
        self.health = HealthChecker(config.time_scale) if seat is None else MirroredHealth()
        # The vendors' own log formats beside the JSON log: worker 0 writes them, the workers' lines too.
        self.vendor_logs = VendorLogs(self.connection_log_path.parent) if seat is None else None
        self.connection_log: ConnectionLog | None = None  # the addon, once the lab has started
        self.backends: dict[str, MockBackend] = {}
        self.addresses: dict[str, tuple[str, int]] = {}
        # Trust stores (ALB mutual TLS verify), read from the config before anything starts.
        self.trust_stores: dict[str, TrustStore] = {
            t.name: TrustStore.create(t.name, read_pem(t.ca_bundle, config.base_dir),
                                      [read_pem(r, config.base_dir) for r in t.revocations], field=f"trust_stores[{i}]")
            for i, t in enumerate(config.trust_stores)
        }
        self.master: Master | None = None
        self.fd_limit: FdLimit | None = None  # RLIMIT_NOFILE as the start left it
        self.servers: ListenerServers | None = None
        self.api: Any = None  # the management API, once the starter attached it (simulator.faces)
        self.console: Any = None  # the web console, once the starter attached it (simulator.faces.console)
        self.faces: list[Any] = []  # control faces attached by whoever started the lab; stopped with it
        self._master_task: asyncio.Task | None = None
        self._activations: dict[str, asyncio.Task] = {}
        self._store_watch: asyncio.Task | None = None
        self._uploaded: list[str] = []  # ids this start uploaded new, deleted again if the start fails
        self._owner = f"{os.getpid()}-{secrets.token_hex(4)}"  # names this lab's usage record in the store
        self._refused_revisions: set[tuple[int, tuple[tuple[str, int], ...]]] = set()
        self.store.usage = self.listeners_using
        self.store.subscribe(self._certificate_changed)

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Upload certificates, start backends, listeners and the API; returns when all of them serve.
        A lab refused at start leaves nothing running. Refused by `_preflight` (a certificate, a reference),
        it has not touched the store; refused later (a port in use), it deletes the certificates it uploaded
        new, but one it replaced in place (a config certificate of a stored name) stays replaced."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            for key in list(self.registry.listeners):  # they never served: they use nothing
                self.registry.remove(key)
            for cert_id in reversed(self._uploaded):  # a late failure (a port in use): undo our new uploads
                with contextlib.suppress(LbsimError, OSError):
                    self.store.delete(cert_id)
            raise

    async def _start(self) -> None:
        pems = self._preflight()
        # Every client connection is a descriptor: 1,024 would refuse the 1,025th. Worker 0 speaks for the lab.
        self.fd_limit = raise_fd_limit(warn=self.seat is None)
        tune_gc()  # held connections make every full collection longer: keep short-lived ones out of it
        connection_ids.install()  # mitmproxy's connection and flow ids without a system call each
        if sys.flags.optimize:  # serving without debug checks: mitmproxy's hook construction checks go too
            drop_construction_checks()
        if self.config.workers > 1 and self.seat is None:
            self.session_cache = SharedSessionCache.create()
        for spec in self.config.backends:
            if spec.managed:
                backend = MockBackend(name=spec.name, host=LOOPBACK, port=spec.port or 0)
                await backend.start()
                self.backends[spec.name] = backend
                self.addresses[spec.name] = (LOOPBACK, backend.port)
            else:
                host, _, port = spec.address.rpartition(":")
                self.addresses[spec.name] = (host, int(port))
        for name, (kind, cert, key, _) in pems.items():
            self._upload(name, kind, cert, key)
        # Build every version before anything listens: a bad certificate fails the lab, not one handshake.
        # Ports first: a version's session context and ticket keys name the port it serves.
        # The kernel may hand out the same free port twice in a row (about 1.5% of labs with 18 port-0
        # listeners did): a listener would silently replace another in the registry. Draw until the
        # address:port key is distinct.
        specs = list(map(self._on_load_balancer, self.config.listeners))
        taken = {f"{spec.address}:{spec.port}" for spec in specs if spec.port}
        for i, spec in enumerate(specs):
            if not spec.port:
                specs[i] = spec = replace(spec, port=self._free_port(spec.address, taken))
                taken.add(f"{spec.address}:{spec.port}")
        versions = [self._build(spec, f"listeners[{i}]") for i, spec in enumerate(specs)]

        opts = LabOptions()  # read per connection without mitmproxy's deep copies
        self.master = Master(opts, with_termlog=False)
        # Of mitmproxy's default addons only the proxy server: the other 30 (playback, map local, blocklist,
        # ...) are no part of a load balancer, and mitmproxy dispatched every event to each of them
        # (docs/performance.md). A connection's events go straight to their handlers (simulator.runtime.hooks).
        # A worker's records go down a pipe to worker 0, which keeps them: the worker keeps no copies.
        self.connection_log = ConnectionLog(self.registry, self.connection_log_path, self.ledger, self.vendor_logs,
                                            keep=self.seat is None, batch=RECORD_BATCH if self.seat is not None else 0.0)
        self.master.addons.add(
            Proxyserver(),  # first: our addons find it in their `load`
            TlsTermination(self.registry, metering=self.config.metering),
            RequestLimits(self.registry),
            ForwardedHeaders(self.registry),
            StickySessions(self.registry, self.config.time_scale),
            Balancer(self.registry, self.config.time_scale),
            IdleTimeouts(self.registry, self.config.time_scale),
            self.connection_log,
        )
        # Addons declare their options in `load`, so these exist only now. Lazy: never connect upstream
        # before the client's handshake (we forward requests ourselves anyway).
        # keep_host_header: backends see the client's Host, as behind a vendor listener, not mitmproxy's target.
        # mode=[]: we listen ourselves (simulator.runtime.servers); mitmproxy's default would open a proxy on :8080.
        opts.update(listen_host=LOOPBACK, connection_strategy="lazy", server=True, keep_host_header=True, mode=[])
        self._master_task = asyncio.get_running_loop().create_task(self.master.run())
        await self.master.running()
        self.servers = ListenerServers(self.master, reuse_port=self.config.workers > 1)

        for version in versions:
            listener = self._new_listener(version.spec)
            listener.active = self._adopt(listener, version)  # backend health lives on the listener
            listener.status = "running"
        await self._sync_servers()
        for listener in self.registry.listeners.values():
            self.health.watch(listener)
        if self.seat is not None:
            return  # a worker process: worker 0 serves the API and sends the listeners
        self._publish_usage()
        self._store_watch = asyncio.get_running_loop().create_task(self._watch_store())
        if self.config.workers > 1:
            self.workers = WorkerPool(self)
            await self.workers.start()

    def attach(self, face: Any) -> None:
        """Keep a started control face (it has ``async stop()``) to stop before the listeners. The lab knows no
        face: whoever starts it attaches them (`simulator.faces.start_with_faces`)."""
        self.faces.append(face)

    async def stop(self) -> None:
        if self.workers is not None:
            await self.workers.stop()
        for task in self._activations.values():
            task.cancel()
        if self._store_watch is not None:
            self._store_watch.cancel()
        if self.seat is None:
            with contextlib.suppress(OSError, LbsimError):
                self.store.withdraw_usage(self._owner)
        self.health.stop()
        for face in reversed(self.faces):
            await face.stop()
        self.faces.clear()
        if self.servers is not None:
            self.servers.close()
        if self.master is not None:
            self.master.shutdown()
            if self._master_task:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(self._master_task, 5)
        for listener in self.registry.listeners.values():
            for backend in listener.backends.values():
                backend.pool.close()
        for backend in self.backends.values():
            await backend.stop()
        if self.session_cache is not None:
            self.session_cache.close(unlink=self.seat is None)  # worker 0 made it, worker 0 removes it
            self.session_cache = None

    @property
    def connection_log_path(self) -> Path:
        return Path(self.config.connection_log) if self.config.connection_log else self.out_dir / "connections.jsonl"

    # ---- certificates ----------------------------------------------------------------------------------

    def _preflight(self) -> dict[str, tuple[str, bytes, bytes | None, str]]:
        """Check every config certificate, and every certificate each listener names, before anything
        changes: a refused lab leaves the store as it was and starts no backend.
        Returns name -> (type, cert PEM, key PEM, profile it is validated under) of the config certificates."""
        stored = {}
        for info in self.store.list():
            stored.setdefault(info.name, info)
        pems: dict[str, tuple[str, bytes, bytes | None, str]] = {}
        for i, spec in enumerate(self.config.certificates):
            path = f"certificates[{i}]"
            cert = read_pem(spec.cert, self.config.base_dir)
            key = read_pem(spec.key, self.config.base_dir) if spec.key else None
            old = stored.get(spec.name)
            if old is not None and old.type != spec.type:
                raise LbsimError("InvalidConfig", f"the store already holds a {old.type} certificate named "
                                 f"'{spec.name}' ({old.id})", field=f"{path}.type",
                                 hint="use another name, or lbsim cert rename/delete the stored one")
            profile = old.profile if old is not None else self._cert_profile(spec.name)  # what _upload uses
            errors = check(profile, spec.type, cert, key).errors
            if errors:
                first = errors[0]
                raise LbsimError(first.code, first.message, field=f"{path}.{first.field}", hint=first.hint,
                                 details={"findings": [f.to_dict() for f in errors]})
            pems[spec.name] = (spec.type, cert, key, profile)
        for i, listener in enumerate(self.config.listeners):
            for field, ref, kind in listener.certificate_fields:
                where = f"listeners[{i}].{field}"
                if ref not in pems:  # the config's own certificates are not in the store yet
                    self._stored_certificate(ref, kind, listener.profile, where)
                    continue
                _, cert, key, profile = pems[ref]
                if profile != listener.profile:
                    accepted(listener.profile, kind, ref, profile, cert, key, where)
        return pems

    def _stored_certificate(self, ref: str, kind: str, profile: str, where: str) -> tuple[CertInfo, Material]:
        """A stored certificate a listener names, refused unless it exists, is of the kind the field wants and
        passes the listener's vendor (it may have been validated under the other vendor's rules at upload)."""
        try:
            info = self.store.describe(ref)
        except LbsimError as e:
            raise LbsimError("InvalidConfig", f"unknown certificate '{ref}' ({e.message})", field=where,
                             hint="list it under certificates, or upload it first (lbsim cert upload-server / "
                             "upload-ca)") from e
        if info.type != kind:
            raise LbsimError("InvalidConfig", f"'{ref}' is a {info.type} certificate; expected a {kind} certificate",
                             field=where)
        material = self.store.material(info.id)
        if info.profile != profile:
            accepted(profile, kind, ref, info.profile, material.chain_pem, material.key_pem, where)
        return info, material

    def _upload(self, name: str, kind: str, cert: bytes, key: bytes | None) -> None:
        """Config certificates are uploaded by name; an existing one of that name is replaced in place,
        unless it already holds this content (a restarted lab does not bump revisions)."""
        existing = [c for c in self.store.list() if c.name == name]
        if existing:
            current = self.store.material(existing[0].id)
            _, parsed = evaluate(existing[0].profile, kind, cert, key)
            if parsed is None or (parsed.chain_pem, parsed.key_pem) != (current.chain_pem, current.key_pem):
                self.store.replace(existing[0].id, cert, key)
        elif kind == "server":
            self._uploaded.append(self.store.upload_server(name, cert, key, profile=self._cert_profile(name)).id)
        else:
            self._uploaded.append(self.store.upload_ca(name, cert, profile=self._cert_profile(name)).id)

    def _cert_profile(self, name: str) -> str:
        """Validate a certificate under the strictest profile (`cert_strictness`) of the listeners that use it,
        or under the strictest registered profile if none does."""
        return vendors.strictest({l.profile for l in self.config.listeners if name in l.certificate_refs})

    def usage(self) -> dict[str, set[str]]:
        """Certificate id -> names of the listeners whose serving or pending version uses it."""
        out: dict[str, set[str]] = {}
        for listener in self.registry.listeners.values():
            for version in (listener.active, listener.pending):
                for cert_id in version.certificate_ids.values() if version else ():
                    out.setdefault(cert_id, set()).add(listener.name)
        return out

    def listeners_using(self, cert_id: str) -> list[str]:
        return sorted(self.usage().get(cert_id, ()))

    def _publish_usage(self) -> None:
        """Let `lbsim cert delete` in another process see what this lab's listeners use (worker 0 only)."""
        if self.seat is not None:
            return
        try:
            self.store.publish_usage(self._owner, self.usage())
        except (OSError, LbsimError) as e:  # the data plane goes on; only the cross-process check suffers
            logger.warning("cannot publish certificate usage to the store: %s", e)

    async def _watch_store(self) -> None:
        """`lbsim cert replace` run by another process reaches the listeners as an API replace does.
        Nothing ends the watching but `stop`: a failed round is logged (once while it keeps failing alike)
        and the next round tries again."""
        seen, polls, failing = None, 0, None
        while True:
            await asyncio.sleep(STORE_POLL_INTERVAL)
            polls += 1
            try:
                stamp = self.store.dir.stat().st_mtime_ns  # a rename into the directory changes it
                if stamp == seen and polls % STORE_FULL_READ:
                    continue
                seen = stamp  # before reading: a write during the read changes it again
                self._catch_up(await asyncio.to_thread(self.store.revisions))
                failing = None
            except Exception as e:
                reason = f"{type(e).__name__}: {e}"
                if reason != failing and isinstance(e, (OSError, LbsimError)):
                    logger.warning("cannot read the certificate store (trying again): %s", reason)
                elif reason != failing:  # a bug: with its traceback
                    logger.exception("the certificate store watcher failed a round (trying again): %s", reason)
                failing = reason

    def _catch_up(self, revisions: dict[str, int], cert_id: str | None = None) -> None:
        """Reconfigure every listener (or every one using `cert_id`) whose newest version serves an older
        revision than the store holds."""
        for listener in list(self.registry.listeners.values()):
            version = listener.pending or listener.active
            if version is None or (cert_id is not None and cert_id not in version.revisions):
                continue
            stale = tuple(sorted((cid, revisions[cid]) for cid, rev in version.revisions.items()
                                 if revisions.get(cid, rev) != rev))
            if not stale or (listener.key, stale) in self._refused_revisions:
                continue
            try:
                self.reconfigure(listener, version.spec)
            except Exception as e:  # one listener refusing must not keep the others on the old revision
                # Said once per revision: the store watcher sees the same revisions again on its next rounds.
                self._refused_revisions.add((listener.key, stale))
                if isinstance(e, LbsimError):
                    logger.warning("listener %s keeps its certificates: the new revision is refused: %s: %s",
                                   listener.name, e.code, e.message)
                else:
                    logger.exception("listener %s keeps its certificates: reconfiguring it failed", listener.name)

    def _certificate_changed(self, cert_id: str) -> None:
        """A replaced certificate (in this process) reaches every listener using it, through the usual activation."""
        try:
            revisions = self.store.revisions()
        except (OSError, LbsimError) as e:  # the store watcher catches up once the store reads again
            logger.warning("cannot read the certificate store after a change of %s: %s", cert_id, e)
            return
        self._catch_up(revisions, cert_id)

    # ---- trust stores (ALB mutual TLS) -------------------------------------------------------------------

    def trust_store(self, name: str) -> TrustStore:
        store = self.trust_stores.get(name)
        if store is None:
            raise LbsimError("TrustStoreNotFound", f"no trust store named {name!r}", field="name",
                             hint="GET /v1/trust-stores lists them")
        return store

    def add_trust_store(self, store: TrustStore) -> TrustStore:
        if store.name in self.trust_stores:
            raise LbsimError("DuplicateTrustStoreName", f"a trust store named {store.name!r} exists", field="name",
                             hint=f"PUT /v1/trust-stores/{store.name} replaces its CA bundle")
        self.trust_stores[store.name] = store
        return store

    def remove_trust_store(self, name: str) -> None:
        self.trust_store(name)
        users = [l.name for l in self.registry.listeners.values()
                 if any(v is not None and v.spec.trust_store == name for v in (l.active, l.pending))]
        if users:
            raise LbsimError("TrustStoreInUse", f"trust store {name!r} is used by listener(s) {', '.join(users)}",
                             field="name", hint="point those listeners at another trust store first")
        del self.trust_stores[name]

    def trust_store_state(self, name: str) -> dict[str, Any]:
        """What a worker needs to hold the same trust store (or to drop it)."""
        store = self.trust_stores.get(name)
        return {"kind": "trust_store", "name": name,
                "store": store.to_state() if store is not None else None}

    async def publish_trust_store(self, name: str) -> None:
        """After an API change to a trust store: every worker holds the same store (and rebuilt the listeners
        using it) before the call returns, as listener changes do."""
        if self.workers is not None:
            await self.workers.publish(self.trust_store_state(name))

    def mirror_trust_store(self, state: dict[str, Any]) -> None:
        """A worker takes worker 0's trust store, then rebuilds its listeners that use it."""
        name = state["name"]
        if state["store"] is None:
            self.trust_stores.pop(name, None)
            return
        self.trust_stores[name] = TrustStore.from_state(state["store"])
        self.trust_store_changed(name)

    def trust_store_changed(self, name: str) -> None:
        """A changed trust store (bundle or revocations) applies to new connections at once: the listeners
        using it get a rebuilt version; open connections keep the context they started with."""
        for listener in self.registry.listeners.values():
            for attr in ("active", "pending"):
                version = getattr(listener, attr)
                if version is not None and version.spec.trust_store == name:
                    setattr(listener, attr, self._adopt(listener, self._build(version.spec)))

    # ---- listeners -------------------------------------------------------------------------------------

    def _build(self, spec: ListenerSpec, path: str = "listener") -> ListenerVersion:
        materials, ids, revisions = {}, {}, {}
        for field, ref, kind in spec.certificate_fields:
            info, material = self._stored_certificate(ref, kind, spec.profile, f"{path}.{field}")
            materials[ref], ids[ref], revisions[info.id] = material, info.id, material.revision
        if spec.server_certificates:
            kinds = [key_type_of(materials[ref].chain[0]) for ref in spec.server_certificates]
            if sorted(kinds) != ["ECDSA", "RSA"]:
                got = ", ".join(f"'{ref}' ({kind})" for ref, kind in zip(spec.server_certificates, kinds))
                raise LbsimError("InvalidConfig", f"server_certificates takes one RSA and one ECDSA (ECC) certificate; "
                                 f"got {got}", field=f"{path}.server_certificates",
                                 hint="server_certificates: [my-rsa-cert, my-ecc-cert]")
        backends = []
        for server in spec.backend_servers:
            if server.backend not in self.addresses:
                raise LbsimError("InvalidConfig", f"unknown backend '{server.backend}'", field=f"{path}.backend_servers")
            host, port = self.addresses[server.backend]
            backends.append(BackendState(server.backend, host, port, server.weight))
        store = None
        if spec.trust_store is not None:
            store = self.trust_stores.get(spec.trust_store)
            if store is None:
                raise LbsimError("TrustStoreNotFound", f"unknown trust store '{spec.trust_store}'",
                                 field=f"{path}.trust_store", hint="GET /v1/trust-stores lists them")
            revisions[f"trust-store:{store.name}"] = store.revision
        keys = label = None
        if self.ticket_secret is not None:
            # One configuration, one set of keys and sessions in every worker; another configuration (or
            # certificate or trust-store revision: a revoked client must not resume) gets its own, as a
            # freshly built context would.
            label = hashlib.sha256(repr((spec, sorted(revisions.items()))).encode()).digest()
            keys = derive_ticket_keys(self.ticket_secret, label)
        context = build_context(spec, materials, self.config.time_scale, ticket_keys=keys,
                                session_cache=self.session_cache, session_namespace=label or b"", trust_store=store)
        return ListenerVersion(spec, context, ids, revisions, backends, Scheduler(spec.scheduler))

    @staticmethod
    def _free_port(address: str, taken: set[str]) -> int:
        """A free port on `address` whose `address:port` no listener of this lab has or had (free_port alone
        may repeat itself, and a deleted listener's connection records keep its port)."""
        while f"{address}:{(port := free_port(address))}" in taken:
            pass
        return port

    def _on_load_balancer(self, spec: ListenerSpec) -> ListenerSpec:
        """The spec with its load balancer's address (an unknown `lb_id` names a load balancer on 127.0.0.1)."""
        address = self.loadbalancers.ensure(spec.lb_id, spec.profile).address
        return spec if spec.address == address else replace(spec, address=address)

    def _new_listener(self, spec: ListenerSpec) -> Listener:
        port = spec.port or free_port(spec.address)
        listener = Listener(name=spec.name, port=port, address=spec.address,
                            mode=f"reverse:http://{LOOPBACK}:9@{spec.address}:{port}")
        self.registry.add(listener)
        return listener

    def _adopt(self, listener: Listener, version: ListenerVersion) -> ListenerVersion:
        """Re-home the version's backend states on the listener so health survives reconfiguration."""
        if (version.spec.port, version.spec.address) != (listener.port, listener.address):
            version = replace(version, spec=replace(version.spec, port=listener.port, address=listener.address))
        version.backends[:] = [listener.backend_state(b.name, b.host, b.port, b.weight) for b in version.backends]
        return version

    def activation_delay(self, spec: ListenerSpec) -> float:
        """Seed (aliyun): "usually takes one to three minutes ... Normally it takes effect in one minute but no
        longer exceeds three minutes." Drawn as: 85% "about one minute" (uniform 45-75 s), else the slow tail
        (uniform 75-180 s); never over three minutes. The vendor gives no shares: 85% is the lab's choice, so
        that most activations take about a minute and a few take up to three (docs/scenarios.md). The
        listener's own `activation_delay` fixes it. Scaled by time_scale."""
        if spec.activation_delay is not None:
            return spec.activation_delay * self.config.time_scale
        normal = random.random() < ACTIVATION_NORMAL_SHARE
        low, high = ACTIVATION_NORMAL if normal else (ACTIVATION_NORMAL[1], ACTIVATION_MAX)
        return random.uniform(low, high) * self.config.time_scale

    def spec_from_api(self, data: Any, port: int | None = None) -> ListenerSpec:
        if port is not None and isinstance(data, dict):
            data = {**data, "port": port}
        stored = self.store.list()
        certs = {c.name: c.type for c in stored} | {c.id: c.type for c in stored}  # by name or by id
        spec = parse_listener(data, "listener", self.config.profile, certs, set(self.addresses), set(self.trust_stores))
        return spec if spec.name else replace(spec, name=f"https-{spec.port}")

    async def add_listener(self, spec: ListenerSpec, start: bool | None = None) -> Listener:
        """Create a listener: started at once or `stopped` until started, as the profile's vendor API does
        (`capabilities.create_started`); `start` overrides."""
        spec = self._on_load_balancer(spec)
        key = f"{spec.address}:{spec.port}"
        if spec.port and key in self.registry.listeners:
            other = self.registry.listeners[key]
            raise LbsimError("ListenerExists", f"a listener already uses port {spec.port} on {spec.address}" + (
                             f" (load balancer {other.spec.lb_id})" if other.spec is not None and other.spec.lb_id else ""),
                             field="port", hint=f"PUT /v1/listeners/{key} changes it")
        if not spec.port:  # before building: the version names its port
            spec = replace(spec, port=self._free_port(spec.address, self.registry.held))
        version = self._build(spec)
        listener = self._new_listener(spec)
        version = self._adopt(listener, version)
        if start if start is not None else vendors.get(spec.profile).capabilities.create_started:
            listener.status = "configuring"
            self._schedule(listener, version)
        else:
            listener.active = version  # configured, not serving: `start` activates it
            self._publish_usage()
        await self._publish(listener.key)
        return listener

    def reconfigure(self, listener: Listener, spec: ListenerSpec) -> Listener:
        """Build the new version now (errors surface to the caller); it serves after the activation delay."""
        current = listener.spec
        if current is not None and current.sni and not spec.sni and vendors.get(current.profile).capabilities.sni_locked:
            raise LbsimError("SniCannotBeTurnedOff", f"once SNI is on for a {current.profile} listener it cannot be "
                             "turned off (SniSwitch)", field="sni", hint="keep the sni domains, or create a new listener")
        spec = self._on_load_balancer(spec)
        if spec.address != listener.address:
            raise LbsimError("InvalidConfig", f"listener {listener.name} listens on {listener.address}; load balancer "
                             f"{spec.lb_id} is at {spec.address}", field="lb_id",
                             hint="a listener stays on its load balancer: create one on the other load balancer")
        version = self._adopt(listener, self._build(replace(spec, port=listener.port)))
        if listener.status == "running":
            listener.status = "configuring"  # the old version keeps serving until activation
        self._schedule(listener, version)
        if self.workers is not None:  # a sync caller: the workers follow well before the activation
            asyncio.get_running_loop().create_task(self._publish(listener.key))
        return listener

    def _schedule(self, listener: Listener, version: ListenerVersion) -> None:
        delay = self.activation_delay(version.spec)
        listener.pending = version
        listener.activates_at = time.time() + delay
        old = self._activations.pop(listener.key, None)
        if old:
            old.cancel()
        self._activations[listener.key] = asyncio.get_running_loop().create_task(self._activate(listener, delay))
        self._publish_usage()

    async def _activate(self, listener: Listener, delay: float) -> None:
        await asyncio.sleep(delay)
        version, listener.pending, listener.activates_at = listener.pending, None, None
        listener.active = version  # the old version keeps serving the connections that started on it
        self._publish_usage()  # the old version's certificates may be free now
        # "running" once the port listens (or could not: /health then says which), so a client that waits
        # for it is not refused (under uvloop the socket listens a loop turn later, after a resolver thread).
        try:
            await self._sync_servers()
        finally:
            if listener.status == "configuring":  # a stopped listener takes the change but stays stopped
                listener.status = "running"
        self.health.watch(listener)
        self._activations.pop(listener.key, None)

    async def remove_listener(self, ref: int | str) -> None:
        """Remove the listener `ref` names (see `get_listener`)."""
        listener = self.get_listener(ref)
        key = listener.key
        task = self._activations.pop(key, None)
        if task:
            task.cancel()
        self.health.forget(key)
        self.registry.remove(key)
        self._publish_usage()
        await self._sync_servers()
        await self._publish(key)

    async def set_running(self, ref: int | str, running: bool) -> Listener:
        """Stop closes the port at once; start activates after the activation delay, like a change."""
        listener = self.get_listener(ref)
        if not running:
            task = self._activations.pop(listener.key, None)
            if task:
                task.cancel()
            listener.status, listener.activates_at = "stopped", None
            if listener.pending:
                listener.active, listener.pending = listener.pending, None
                self._publish_usage()
            await self._sync_servers()
        elif listener.status == "stopped":
            listener.status = "configuring"
            version = listener.pending or listener.active
            assert version is not None
            # Nothing serves until the activation, else the next `_sync_servers` (of any listener, or in any
            # worker) would open this port early. Connections still open keep the version they started on.
            listener.active = None
            self._schedule(listener, version)
        await self._publish(listener.key)
        return listener

    # ---- load balancers and instances (the vendor APIs' resources) ----------------------------------------

    def create_load_balancer(self, profile: str, name: str = "", region: str = "") -> LoadBalancer:
        """A new load balancer on an address of its own (127.0.0.x); its listeners listen there."""
        return self.loadbalancers.create(profile, name, region)

    async def delete_load_balancer(self, lb_id: str) -> LoadBalancer:
        """Remove a load balancer with its listeners (as both vendors do)."""
        lb = self.loadbalancers.get(lb_id)
        for listener in self.listeners_of(lb_id):
            await self.remove_listener(listener.key)
        return self.loadbalancers.remove(lb.id)

    def listeners_of(self, lb_id: str) -> list[Listener]:
        return [l for l in self.registry.listeners.values() if l.spec is not None and l.spec.lb_id == lb_id]

    def listener_at(self, lb_id: str, port: int) -> Listener:
        """The listener of load balancer `lb_id` on `port`."""
        listener = next((l for l in self.registry.on_port(port) if l.spec is not None and l.spec.lb_id == lb_id), None)
        if listener is None or listener.spec is None or listener.spec.lb_id != lb_id:
            raise LbsimError("ListenerNotFound", f"load balancer {lb_id} has no listener on port {port}", field="port")
        return listener

    def instance_ids(self) -> dict[str, str]:
        """Instance id (as the vendor APIs name backends) -> lab backend name."""
        return {spec.instance: spec.name for spec in self.config.backends}

    def backend_of_instance(self, instance_id: str) -> str:
        name = self.instance_ids().get(instance_id)
        if name is None:
            raise LbsimError("BackendNotFound", f"no backend with instance id {instance_id!r}", field="instance_id",
                             hint="the lab's backends are " + (", ".join(sorted(self.instance_ids())) or "(none)"))
        return name

    def get_listener(self, ref: int | str) -> Listener:
        """The listener `ref` names: `address:port` (its key), or a port that only one listener uses (two load
        balancers may each have a listener on the same port: then the port alone is ambiguous)."""
        text = str(ref)
        if ":" in text:
            listener = self.registry.listeners.get(text)
            if listener is None:
                raise LbsimError("ListenerNotFound", f"no listener on {text}", field="port",
                                 hint="GET /v1/listeners lists them (their `key` is address:port)")
            return listener
        found = self.registry.on_port(int(text)) if text.isdigit() else []
        if not found:
            raise LbsimError("ListenerNotFound", f"no listener on port {text}", field="port",
                             hint="GET /v1/listeners lists them")
        if len(found) > 1:
            keys = sorted(l.key for l in found)
            raise LbsimError("AmbiguousListener", f"{len(found)} listeners use port {text}: {', '.join(keys)}",
                             field="port", hint=f"name one by address:port, e.g. /v1/listeners/{keys[0]}",
                             details={"choices": keys})
        return found[0]

    def ref(self, listener: Listener) -> str:
        """How to name `listener` in a URL: its port when no other listener uses it, else `address:port`."""
        return str(listener.port) if len(self.registry.on_port(listener.port)) == 1 else listener.key

    async def _sync_servers(self) -> None:
        """Listen on exactly the running listeners' ports."""
        assert self.servers is not None
        modes = [l.mode for l in self.registry.listeners.values() if l.status != "stopped" and l.active]
        if await self.servers.update(modes):
            failed = [l for l in self.registry.listeners.values() if l.mode in modes and not self.serving(l)]
            low = any(l.port < 1024 for l in failed) and os.geteuid() != 0
            raise LbsimError("ListenFailed", f"could not listen on port(s) {[l.port for l in failed]} "
                             f"({', '.join(f'{l.address}:{l.port}' for l in failed)})", field="port",
                             hint="ports below 1024 need root (or CAP_NET_BIND_SERVICE); run as root or pick a port "
                             "from 1024" if low else "another process holds the port; pick another or use port 0")

    def serving(self, listener: Listener) -> bool:
        return self.servers is not None and self.servers.serving(listener.mode)

    def ready(self) -> bool:
        """Every started listener serves."""
        return all(self.serving(l) for l in self.registry.listeners.values() if l.status != "stopped" and l.active)

    # ---- workers (workers: N) -----------------------------------------------------------------------------

    def listener_state(self, key: str) -> dict[str, Any]:
        """What a worker needs to serve a listener exactly as this lab does (None versions: absent)."""
        listener = self.registry.listeners.get(key)
        if listener is None:
            return {"key": key, "removed": True}
        return {
            "key": key, "removed": False, "name": listener.name, "status": listener.status,
            "activates_at": listener.activates_at,
            "active": (listener.active.spec, listener.active.revisions) if listener.active else None,
            "pending": (listener.pending.spec, listener.pending.revisions) if listener.pending else None,
            "health": health_of(self, key),
        }

    async def _publish(self, key: str) -> None:
        if self.workers is not None:
            await self.workers.publish(self.listener_state(key))

    async def mirror(self, state: dict[str, Any]) -> None:
        """A worker takes worker 0's state of one listener: same versions, status and activation moment."""
        key = state["key"]
        listener = self.registry.listeners.get(key)
        task = self._activations.pop(key, None)
        if task:
            task.cancel()
        if state["removed"]:
            if listener is not None:
                self.health.forget(key)
                self.registry.remove(key)
                await self._sync_servers()
            return
        wanted = state["active"] or state["pending"]
        if listener is None:
            listener = self._new_listener(replace(wanted[0], name=state["name"]))
        listener.active = self._same_version(listener, listener.active, state["active"])
        listener.pending = self._same_version(listener, listener.pending, state["pending"])
        listener.status, listener.activates_at = state["status"], state["activates_at"]
        if listener.pending is not None and listener.activates_at is not None:
            delay = max(0.0, listener.activates_at - time.time())
            self._activations[key] = asyncio.get_running_loop().create_task(self._activate(listener, delay))
        apply_health(self, key, state["health"])
        await self._sync_servers()
        self.health.watch(listener)

    def _same_version(self, listener: Listener, current: ListenerVersion | None,
                      wanted: tuple[ListenerSpec, dict[str, int]] | None) -> ListenerVersion | None:
        if wanted is None:
            return None
        spec, revisions = wanted
        if current is not None and current.spec == spec and current.revisions == revisions:
            return current  # unchanged: keep the context (and its session cache)
        return self._adopt(listener, self._build(spec))

    # ---- describing ------------------------------------------------------------------------------------

    def endpoints(self) -> list[dict[str, Any]]:
        return [self.view(l) for l in self.registry.listeners.values()]

    def view(self, listener: Listener) -> dict[str, Any]:
        """A listener as the API shows it: its gauges are the whole lab's, every worker's summed."""
        out = listener.to_dict()
        return self.workers.add_live_counters(out) if self.workers is not None else out

    def open_clients(self) -> int:
        return len(self.registry.clients) + (self.workers.clients() if self.workers is not None else 0)

    async def settle_log(self, timeout: float = 2.0) -> None:
        """Until no client connection is open in any worker and every closed one's record is in the ledger,
        `connections.jsonl` and `GET /v1/connections` (or `timeout` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.registry.clients and loop.time() < deadline:
            await asyncio.sleep(0.005)
        if self.workers is not None:
            await self.workers.settle(max(deadline - loop.time(), 0.0))


def accepted(profile: str, kind: str, ref: str, stored_under: str, cert: bytes, key: bytes | None, field: str) -> None:
    """Refuse a certificate the listener's vendor would not have taken (e.g. ECDSA where only RSA is taken)."""
    errors = check(profile, kind, cert, key).errors
    if errors:
        first = errors[0]
        raise LbsimError("CertificateNotAccepted", f"certificate '{ref}' (validated under {stored_under}) is not "
                         f"accepted by {profile} listeners: {first.code}: {first.message}", field=field,
                         hint=f"use a certificate that passes lbsim cert check --profile {profile}, uploaded with "
                         f"--profile {profile} ({first.hint})",
                         details={"findings": [f.to_dict() for f in errors]})
