"""Mock backends in their own process: `python -m simulator.backends` and `BackendProcess`."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from simulator.backends import BackendProcess


def request(port: int, target: str, method: str = "GET") -> tuple[int, bytes, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, target)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp
    finally:
        conn.close()


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "simulator.backends", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_standalone_prints_its_port_serves_and_stops_on_signal(sig: signal.Signals) -> None:
    proc = spawn("--name", "b1", "--port", "0", "--host", "127.0.0.1")
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["name"] == "b1" and info["port"] > 0 and info["address"] == f"127.0.0.1:{info['port']}"
        assert info["pid"] == proc.pid
        status, body, resp = request(info["port"], "/hello?x=1")
        assert status == 200 and resp.getheader("X-Backend") == "b1"
        assert json.loads(body)["query"] == "x=1"
        proc.send_signal(sig)
        assert proc.wait(5) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""  # no traceback on the way out
    finally:
        proc.kill()
        proc.wait()


def test_standalone_several_names_and_errors() -> None:
    proc = spawn("--name", "a", "--name", "b", "--unhealthy", "--health-path", "/hc")
    try:
        assert proc.stdout is not None
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [x["name"] for x in lines] == ["a", "b"] and lines[0]["port"] != lines[1]["port"]
        assert request(lines[1]["port"], "/hc")[0] == 503
        # the port is taken: one line of error, no traceback
        taken = spawn("--name", "c", "--port", str(lines[0]["port"]))
        _, err = taken.communicate(timeout=10)
        assert taken.returncode == 1 and err.startswith("error:") and "Traceback" not in err
    finally:
        proc.terminate()
        proc.wait(5)
    dup = spawn("--name", "x", "--name", "x")
    assert dup.wait(10) == 2


def test_backend_process_reports_ports_and_is_controllable() -> None:
    with BackendProcess(["w1", "w2"]) as bp:
        assert set(bp.ports) == {"w1", "w2"}
        for name, port in bp.ports.items():
            status, body, _ = request(port, "/api/x")
            assert status == 200 and json.loads(body)["backend"] == name
        assert bp.stats("w1")["by_path"] == {"/api": 1}
        bp.set("w1", healthy=False)
        assert request(bp.ports["w1"], "/health")[0] == 503
        assert request(bp.ports["w2"], "/health")[0] == 200
        bp.set("w2", down=True)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", bp.ports["w2"]), timeout=2).close()
        bp.set("w2", down=False)
        assert request(bp.ports["w2"], "/back")[0] == 200
        bp.set(fault="close")  # every backend
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            request(bp.ports["w1"], "/x")
        bp.set(fault=None, delay_ms=0)
        bp.reset_stats()
        assert bp.stats("w2")["requests"] == 0
        for bad in ({"op": "set", "name": "w1", "healthy": "no"}, {"op": "set", "name": "nope"},
                    {"op": "explode"}, {"op": "set", "colour": "red"}):
            with pytest.raises(ValueError):
                bp._ok(bp.command(bad))
        assert bp.command({"op": "stats", "id": 7})["id"] == 7
        proc = bp.proc
    assert proc is not None and proc.returncode == 0


def test_backend_process_exits_when_its_parent_goes_away() -> None:
    bp = BackendProcess(["orphan"]).start()
    assert bp.proc is not None and bp.proc.stdin is not None
    proc = bp.proc
    proc.stdin.close()  # what the OS does when the parent dies
    t0 = time.monotonic()
    assert proc.wait(5) == 0 and time.monotonic() - t0 < 5
    bp.stop()
