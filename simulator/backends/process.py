"""BackendProcess: mock backends in a child process, so a benchmark's client does not share their core."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding `simulator/`


class BackendProcess:
    """Run `python -m simulator.backends` with one backend per name; a context manager.

    >>> with BackendProcess(["b1", "b2"]) as bp:
    ...     bp.ports["b1"], bp.addresses["b2"]
    ...     bp.set("b1", healthy=False); bp.stats("b1")["requests"]

    The child listens on free loopback ports and exits when stopped or when this process goes away
    (it watches its stdin). `stats()` and `set()` go over that stdin/stdout control channel.
    """

    def __init__(
        self,
        names: Sequence[str] = ("b1",),
        host: str = "127.0.0.1",
        health_path: str = "/health",
        keepalive_timeout: float | None = None,
        startup_timeout: float = 15.0,
        python: str = sys.executable,
    ) -> None:
        self.names = list(names)
        self.host = host
        self.health_path = health_path
        self.keepalive_timeout = keepalive_timeout
        self.startup_timeout = startup_timeout
        self.python = python
        self.ports: dict[str, int] = {}
        self.addresses: dict[str, str] = {}
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()

    def command_line(self) -> list[str]:
        cmd = [self.python, "-m", "simulator.backends", "--host", self.host, "--port", "0",
               "--health-path", self.health_path, "--control-stdin"]
        for name in self.names:
            cmd += ["--name", name]
        if self.keepalive_timeout is not None:
            cmd += ["--keepalive-timeout", str(self.keepalive_timeout)]
        return cmd

    def start(self) -> BackendProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            self.command_line(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env
        )
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        try:
            for _ in self.names:
                info = json.loads(self._next_line(self.startup_timeout))
                self.ports[info["name"]] = info["port"]
                self.addresses[info["name"]] = info["address"]
        except BaseException:
            self.stop()
            raise
        return self

    def command(self, cmd: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send one control command (see `simulator.backends.control`) and return the reply."""
        if self.proc is None or self.proc.stdin is None:
            raise RuntimeError("backend process not started")
        with self._lock:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            return json.loads(self._next_line(timeout))

    def stats(self, name: str) -> dict[str, Any]:
        reply = self._ok(self.command({"op": "stats", "name": name}))
        return reply["stats"][name]

    def set(self, name: str | None = None, **attrs: Any) -> None:
        """Set `healthy`, `down`, `fault` or `delay_ms` on one backend (or all, with name=None)."""
        cmd: dict[str, Any] = {"op": "set", **attrs}
        if name is not None:
            cmd["name"] = name
        self._ok(self.command(cmd))

    def reset_stats(self, name: str | None = None) -> None:
        self._ok(self.command({"op": "reset_stats"} | ({"name": name} if name else {})))

    def stop(self, timeout: float = 5.0) -> int | None:
        """Ask the child to stop (closing its stdin), then terminate or kill it if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()

    def __enter__(self) -> BackendProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------------

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def _next_line(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer from backend process within {timeout} s") from None
        if line is None:
            self._lines.put(None)  # stay at EOF for later readers
            code = self.proc.poll() if self.proc else None
            raise RuntimeError(f"backend process exited (code {code})")
        return line

    @staticmethod
    def _ok(reply: dict[str, Any]) -> dict[str, Any]:
        if not reply.get("ok"):
            raise ValueError(reply.get("error", "backend process refused the command"))
        return reply
