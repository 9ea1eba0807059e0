"""Multi-worker listeners (`workers: N`): N processes serve every listener port, so TLS uses N cores.

One Python process terminates TLS on one core. With `workers: N` the lab process (worker 0, the
supervisor) starts N-1 worker processes (`python -m simulator.runtime.worker`) and every one of them listens on
each listener port with `SO_REUSEPORT`; the kernel spreads new connections over them.

What is shared, and how:

* **Certificates**: the one certificate store (a directory; its key-encryption key travels down the
  worker's stdin, never through a file or the environment).
* **Resumption** (`simulator.dataplane.resumption`): one lab secret, from which each listener configuration
  derives its session-ticket keys, so a ticket issued by one worker resumes on any other; and one
  session-ID cache in shared memory (nginx's `ssl_session_cache shared:`) for clients without tickets.
* **Configuration**: the management API runs in worker 0 only. Every listener change it makes (create,
  change, start, stop, delete, certificate replaced) is sent to the workers as the listener's full
  state (specs, status, activation time) and the call returns once every worker applied it; the
  workers activate at the same moment as worker 0. A trust store the API creates, changes or deletes
  is sent whole the same way (its CAs and CRLs as PEM); each worker rebuilds its listeners that use it.
* **Connection log**: each worker's log is a pipe to worker 0, which is the only writer of
  `connections.jsonl` and adds the records to `GET /v1/connections` and `/v1/traffic`. A worker sends its
  records in batches (`RECORD_BATCH`), so that worker 0 wakes once for several. Records from
  worker k carry `"worker": k`; records without the field are worker 0's. `Lab.settle_log` (a scenario's
  `wait_log_settled`) asks each worker how many records it wrote once it holds no client, and waits until
  worker 0 has read that many: the counters and the records travel on different pipes.
* **Backends**: the mock backends run in worker 0; the workers reach them by address. Worker 0 alone
  health-checks them and the workers take its verdicts (sent on every change), so every worker sends
  traffic to the same backends and the backends see one lab's checks, not N.
* **Live counters**: each worker reports its gauges (open connections per listener, requests in flight per
  backend, open clients) to worker 0 when they change, at most every `COUNTERS_PERIOD`; the API shows the
  sums. Scheduling (`wlc`) still weighs each worker's own requests in flight, as nginx's workers do
  without a shared zone.

A worker that dies is started again in its seat, like nginx's master does, and takes every listener's
state before it serves; a seat that dies `RESTART_LIMIT` times within `RESTART_WINDOW` seconds stays
empty (its share of new connections goes to the others once the kernel drops its socket). Connections
the dead worker held, or had not yet accepted, are lost, and so are the records of those it closed in its
last `RECORD_BATCH` seconds (a batch not yet sent).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import pickle
import secrets
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.model.config import BackendSpec, LabConfig
from simulator.runtime.optimize import interpreter_flags

if TYPE_CHECKING:
    from simulator.runtime.lab import Lab

logger = logging.getLogger(__name__)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
RECORD_LIMIT = 16 * 1024 * 1024  # one connection record is a few KB
START_TIMEOUT = 60.0  # a worker imports mitmproxy and builds its contexts; slow on a busy 2-core machine
ACK_TIMEOUT = 30.0
LOGGERS = ("mitmproxy", "simulator")  # whose levels the workers take from worker 0
HEALTH_POLL = (0.01, 1.0)  # seconds: how often worker 0 looks for health changes to send (bounds)
COUNTERS_PERIOD = 0.2  # seconds: how often a worker looks for changed gauges to report
RESTART_LIMIT, RESTART_WINDOW = 5, 60.0  # a seat that dies this often within this many seconds stays empty
RECORD_BATCH = 0.05  # seconds a worker's record waits for others down the pipe: one wake-up of worker 0 each batch


@dataclass(frozen=True)
class WorkerSeat:
    """Who a worker is: its index (1..N-1), the lab's ticket secret and its shared session cache file."""

    index: int
    ticket_secret: bytes
    session_cache: str


@dataclass(frozen=True)
class WorkerInit:
    """Everything a worker process needs, sent pickled on its stdin."""

    seat: WorkerSeat
    config: LabConfig
    out_dir: str
    store_home: str
    kek: bytes
    log_levels: dict[str, int] = field(default_factory=dict)  # worker 0's, e.g. `lbsim run` quiets mitmproxy


def new_ticket_secret() -> bytes:
    return secrets.token_bytes(32)


def worker_config(config: LabConfig, addresses: dict[str, tuple[str, int]], log_fd: int) -> LabConfig:
    """A worker's lab: worker 0's backends by address, no certificates to upload (the store has them), no
    listeners (they arrive as states), its connection log a pipe to worker 0."""
    return replace(
        config,
        certificates=(),
        backends=tuple(BackendSpec(name=name, address=f"{host}:{port}") for name, (host, port) in addresses.items()),
        listeners=(),
        connection_log=f"/dev/fd/{log_fd}",
    )


def _encode(obj: Any) -> str:
    return base64.b64encode(pickle.dumps(obj)).decode()


def _decode(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


class _Worker:
    """Worker 0's handle on one worker process."""

    def __init__(self, index: int, proc: asyncio.subprocess.Process):
        self.index, self.proc = index, proc
        self.acks: dict[int, asyncio.Future[dict[str, Any]]] = {}  # seq -> its reply
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tasks: list[asyncio.Task] = []
        self.counters: dict[str, Any] = {}  # its last live_counters() report
        self.lines_read = 0  # connection records read from its log pipe

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None


class MirroredHealth:
    """A worker's health checker: none of its own; worker 0's verdicts arrive with the listener states."""

    def watch(self, listener: Any) -> None:
        pass

    def forget(self, port: int) -> None:
        pass

    def stop(self) -> None:
        pass


def live_counters(lab: Lab) -> dict[str, Any]:
    """One process's gauges: open clients, and per listener open connections and requests per backend."""
    return {"clients": len(lab.registry.clients),
            "listeners": {key: {"connections": listener.connections,
                                "backends": {name: b.active for name, b in listener.backends.items()}}
                          for key, listener in lab.registry.listeners.items()}}


def health_of(lab: Lab, key: str) -> dict[str, bool]:
    listener = lab.registry.listeners.get(key)
    return {name: state.healthy for name, state in listener.backends.items()} if listener else {}


def apply_health(lab: Lab, key: str, health: dict[str, bool]) -> None:
    listener = lab.registry.listeners.get(key)
    if listener is None:
        return
    for name, healthy in health.items():
        if name in listener.backends:
            listener.backends[name].healthy = healthy


class WorkerPool:
    """Worker 0's side: starts workers 1..N-1, keeps them in step with the lab, collects their logs."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.count = lab.config.workers
        self.workers: list[_Worker] = []
        self._seq = 0
        self._log: Any = None
        self._health_task: asyncio.Task | None = None
        self._health_sent: dict[int, dict[str, bool]] = {}
        self._deaths: dict[int, list[float]] = {}  # seat -> when its workers died
        self._respawns: set[asyncio.Task] = set()

    async def start(self) -> None:
        assert self.lab.ticket_secret is not None
        self._log = self.lab.connection_log_path.open("a", buffering=1)
        await asyncio.gather(*(self._spawn(i) for i in range(1, self.count)))
        try:
            for worker in self.workers:
                await asyncio.wait_for(asyncio.shield(worker.ready), START_TIMEOUT)
            await self._publish_all()
        except BaseException:
            await self.stop()
            raise
        self._health_task = asyncio.get_running_loop().create_task(self._send_health())

    async def _spawn(self, index: int) -> _Worker:
        read_fd, write_fd = os.pipe()
        init = WorkerInit(
            seat=WorkerSeat(index, self.lab.ticket_secret, str(self.lab.session_cache.path)),
            config=worker_config(self.lab.config, self.lab.addresses, write_fd),
            out_dir=str(self.lab.out_dir),
            store_home=str(self.lab.store.home),
            kek=self.lab.store._kek_bytes(),  # the store has no public accessor; never written anywhere
            log_levels={name: logging.getLogger(name).getEffectiveLevel() for name in LOGGERS},
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *interpreter_flags(), "-m", "simulator.runtime.worker", self.lab.config.event_loop,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, pass_fds=(write_fd,), env=env, limit=RECORD_LIMIT,
            )
        finally:
            os.close(write_fd)  # the worker holds the only write end: its exit ends our reads
        worker = _Worker(index, proc)
        self.workers.append(worker)
        assert proc.stdin is not None
        proc.stdin.write(_encode(init).encode() + b"\n")
        loop = asyncio.get_running_loop()
        records = asyncio.StreamReader(limit=RECORD_LIMIT)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(records), os.fdopen(read_fd, "rb", 0))
        worker.tasks = [loop.create_task(self._replies(worker)), loop.create_task(self._records(worker, records))]
        return worker

    async def _replies(self, worker: _Worker) -> None:
        assert worker.proc.stdout is not None
        async for line in worker.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "ready" in msg and not worker.ready.done():
                worker.ready.set_result(None)
            elif "ack" in msg:
                future = worker.acks.pop(msg["ack"], None)
                if future is not None and not future.done():
                    future.set_result(msg)
            elif "counters" in msg:
                worker.counters = msg["counters"]
            elif "fatal" in msg and not worker.ready.done():
                worker.ready.set_exception(RuntimeError(f"worker {worker.index} failed to start: {msg['fatal']}"))
        code = await worker.proc.wait()
        worker.counters = {}
        error = RuntimeError(f"worker {worker.index} exited with {code}")
        if not worker.ready.done():
            worker.ready.set_exception(error)
        for future in worker.acks.values():
            if not future.done():
                future.set_exception(error)
        if self._log is not None and worker.ready.exception() is None:  # not stopping, nor failing to start: died
            task = asyncio.get_running_loop().create_task(self._respawn(worker, code))
            self._respawns.add(task)
            task.add_done_callback(self._respawns.discard)

    async def _respawn(self, dead: _Worker, code: int | None) -> None:
        """Start a worker in a dead one's seat and give it every listener before it serves."""
        now = time.monotonic()
        deaths = self._deaths.setdefault(dead.index, [])
        deaths[:] = [t for t in deaths if now - t < RESTART_WINDOW] + [now]
        if len(deaths) > RESTART_LIMIT:
            logger.error("lbsim worker %d (pid %d) exited with %s; it died %d times within %g s: not restarted",
                         dead.index, dead.proc.pid, code, len(deaths), RESTART_WINDOW)
            return
        logger.error("lbsim worker %d (pid %d) exited with %s; starting it again", dead.index, dead.proc.pid, code)
        await asyncio.gather(*dead.tasks, return_exceptions=True)  # its last records are filed
        self.workers.remove(dead)
        worker = await self._spawn(dead.index)
        try:
            await asyncio.wait_for(asyncio.shield(worker.ready), START_TIMEOUT)
        except (RuntimeError, TimeoutError) as e:
            logger.error("lbsim worker %d could not be started again: %s", dead.index, e)
            return
        await self._publish_all([worker])

    async def _publish_all(self, workers: list[_Worker] | None = None) -> None:
        """Every trust store (the API may have changed them since the lab file), then every listener."""
        for name in list(self.lab.trust_stores):
            await self.publish(self.lab.trust_store_state(name), workers)
        for key in list(self.lab.registry.listeners):
            await self.publish(self.lab.listener_state(key), workers)

    def add_live_counters(self, listener: dict[str, Any]) -> dict[str, Any]:
        """Add the workers' gauges to worker 0's view of one listener (`Listener.to_dict()`)."""
        for worker in self.workers:
            mine = worker.counters.get("listeners", {}).get(listener["key"])
            if not mine:
                continue
            listener["connections"] += mine["connections"]
            for backend in listener.get("backend_servers", []):
                backend["active_requests"] += mine["backends"].get(backend["name"], 0)
        return listener

    def clients(self) -> int:
        """Open client connections of the workers (worker 0's own are in its registry)."""
        return sum(worker.counters.get("clients", 0) for worker in self.workers)

    async def _records(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        registry, ledger = self.lab.registry, self.lab.ledger
        tag = f',"worker":{worker.index}}}\n'
        while line := await reader.readline():
            worker.lines_read += 1
            try:
                record = json.loads(line)
            except ValueError:
                continue
            record["worker"] = worker.index
            text = line.decode().rstrip()[:-1] + tag[:-1]  # the worker's own line plus its index: no second encoding
            if self._log is not None:
                self._log.write(text + "\n")
                self._vendor_line(record)
            with contextlib.suppress(Exception):  # the log must not stop over one odd record
                ledger.add(record, line=text)
            registry.recent.append(record, text)  # last, as for worker 0's own: once seen, in every log

    def _vendor_line(self, record: dict[str, Any]) -> None:
        """A worker's connection in its vendor's own log format (worker 0 is that file's only writer)."""
        if self.lab.vendor_logs is None:
            return
        address = record.get("listener_address") or "127.0.0.1"
        listener = self.lab.registry.listeners.get(f"{address}:{record.get('listener_port')}")
        spec = listener.spec if listener is not None else None
        with contextlib.suppress(Exception):  # the log must not stop over one odd record
            self.lab.vendor_logs.write(record, spec.lb_id if spec is not None else "-", address)

    async def _send_health(self) -> None:
        """Send worker 0's health verdicts whenever they change (the workers run no checks)."""
        while True:
            intervals = [l.spec.health_check.interval for l in self.lab.registry.listeners.values() if l.spec]
            period = min(intervals or [1]) * self.lab.config.time_scale / 2
            await asyncio.sleep(min(max(period, HEALTH_POLL[0]), HEALTH_POLL[1]))
            for key in list(self.lab.registry.listeners):
                health = health_of(self.lab, key)
                if health != self._health_sent.get(key):
                    await self.publish({"key": key, "kind": "health", "health": health})

    async def publish(self, state: dict[str, Any], workers: list[_Worker] | None = None) -> None:
        """Send one listener's state (or health) to every live worker (or these); returns once all applied it."""
        if "health" in state and workers is None:
            self._health_sent[state["key"]] = dict(state["health"])
        for worker, future in self._send({"state": _encode(state)}, workers):
            try:
                reply = await asyncio.wait_for(future, ACK_TIMEOUT)
            except (RuntimeError, TimeoutError) as e:
                logger.error("worker %d did not apply listener %s: %s", worker.index, state.get("port"), e)
                continue
            if reply.get("error"):
                logger.error("worker %d could not apply listener %s: %s", worker.index, state.get("port"), reply["error"])

    async def settle(self, timeout: float) -> None:
        """Until no worker holds a client connection and worker 0 has read every record the workers wrote by
        then (records and replies travel on different pipes: each worker says how many it wrote)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for worker, future in self._send({"settle": timeout}):
            try:
                reply = await asyncio.wait_for(future, timeout + 1)
            except (RuntimeError, TimeoutError):
                continue  # died or stuck: its records are lost either way
            while worker.lines_read < reply.get("records", 0) and loop.time() < deadline:
                await asyncio.sleep(0.005)

    def _send(self, message: dict[str, Any], workers: list[_Worker] | None = None,
              ) -> list[tuple[_Worker, asyncio.Future[dict[str, Any]]]]:
        """Write one message to every live worker (or these); each reply arrives in its future."""
        self._seq += 1
        line = json.dumps({"seq": self._seq, **message}).encode() + b"\n"
        sent = []
        for worker in self.workers if workers is None else workers:
            if not worker.alive or worker.proc.stdin is None:
                continue
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            worker.acks[self._seq] = future
            worker.proc.stdin.write(line)
            sent.append((worker, future))
        return sent

    async def stop(self) -> None:
        """Close the workers' stdin (they stop their lab and exit), then make sure they are gone."""
        log, self._log = self._log, None
        if self._health_task is not None:
            self._health_task.cancel()
        for task in list(self._respawns):
            task.cancel()
        await asyncio.gather(*self._respawns, return_exceptions=True)
        for worker in self.workers:
            if worker.proc.stdin is not None and not worker.proc.stdin.is_closing():
                worker.proc.stdin.close()
        for worker in self.workers:
            try:
                await asyncio.wait_for(worker.proc.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
                await worker.proc.wait()
        for worker in self.workers:
            # The records already in the pipe are still written; then the reader sees the end.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*worker.tasks, return_exceptions=True), 5)
        if log is not None:
            log.close()
