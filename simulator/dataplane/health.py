"""Health checks: take backends out after `unhealthy_threshold` failures, back in after `healthy_threshold` passes."""

from __future__ import annotations

import asyncio
import logging

from simulator.model.config import MIN_HEALTH_INTERVAL, HealthCheck, io_timeout
from simulator.dataplane.listener import BackendState, Listener
from simulator.dataplane.upstream import UpstreamError, UpstreamPool

logger = logging.getLogger(__name__)


def code_class(status: int) -> str:
    return f"http_{status // 100}xx"


class HealthChecker:
    """One probe loop per (listener, backend), each on its own connection, like the vendors' checkers."""

    def __init__(self, time_scale: float = 1.0):
        self.time_scale = time_scale
        self._tasks: dict[tuple[str, str], asyncio.Task] = {}  # (listener key, backend)

    def watch(self, listener: Listener) -> None:
        """(Re)start the loops for a listener's active version; call after every activation."""
        self.forget(listener.key)
        version = listener.active
        if version is None or not version.spec.health_check.enabled:
            for backend in listener.backends.values():
                backend.healthy = True  # health check off: the vendor sends traffic to every backend
            return
        for backend in version.backends:
            key = (listener.key, backend.name)
            self._tasks[key] = asyncio.get_running_loop().create_task(
                self._loop(listener, backend, version.spec.health_check), name=f"health {key}"
            )

    def forget(self, listener_key: str) -> None:
        for key in [k for k in self._tasks if k[0] == listener_key]:
            self._tasks.pop(key).cancel()

    def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    async def _loop(self, listener: Listener, backend: BackendState, check: HealthCheck) -> None:
        pool = UpstreamPool(backend.host, check.connect_port or backend.port, max_idle=1)
        try:
            while True:
                ok = await self.probe(pool, check)
                if ok:
                    backend.ok_streak, backend.fail_streak = backend.ok_streak + 1, 0
                    if not backend.healthy and backend.ok_streak >= check.healthy_threshold:
                        backend.healthy = True
                        logger.info("listener %s: backend %s is healthy again", listener.port, backend.name)
                else:
                    backend.ok_streak, backend.fail_streak = 0, backend.fail_streak + 1
                    if backend.healthy and backend.fail_streak >= check.unhealthy_threshold:
                        backend.healthy = False
                        logger.warning("listener %s: backend %s failed its health check", listener.port, backend.name)
                await asyncio.sleep(max(MIN_HEALTH_INTERVAL, check.interval * self.time_scale))
        finally:
            pool.close()

    async def probe(self, pool: UpstreamPool, check: HealthCheck) -> bool:
        method = check.method.upper().encode()
        headers = [(b"Host", f"{pool.host}:{pool.port}".encode()), (b"User-Agent", b"lbsim-health-check")]
        try:
            response = await pool.request(method, check.uri.encode(), headers, b"", io_timeout(check.timeout, self.time_scale))
        except (UpstreamError, TimeoutError):
            return False
        return code_class(response.status) in check.http_code
