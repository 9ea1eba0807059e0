"""The mock backend is never the bottleneck: a keep-alive request costs it at most a fifth of the CPU it costs the
listener, measured in the same run with the same client (the listener in its own `lbsim up` process, the
backend in its own process). CPU per request, not requests per second: the asyncio client is Python too and
caps the backend's rate (about 5x the listener's since `lbsim up` serves under -O), and on CI's two cores the
other pytest worker takes a share of it that differs from one measurement to the next."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.backends import BackendProcess
from simulator.backends.bench import measure
from simulator.load.cpu import cpu_seconds

LBSIM = str(Path(sys.executable).with_name("lbsim"))


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.Popen([LBSIM, "up", "--out", str(out)], stdout=subprocess.PIPE, text=True)
    port = None
    for line in proc.stdout:
        if line.startswith("aliyun-one-way"):
            port = int(line.split("https://127.0.0.1:")[1].split("/")[0])
        if line.startswith("connection log"):
            break
    context = ssl.create_default_context(cafile=str(out / "pki" / "ca.pem"))
    yield port, context, proc.pid  # `lbsim up` re-execs itself under -O in the same process
    proc.send_signal(signal.SIGINT)
    proc.wait(20)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["/", "/blob?size=1024"])
def test_a_keep_alive_request_costs_the_backend_at_most_a_fifth_of_the_listeners_cpu(listener, target: str) -> None:
    port, context, pid = listener
    before = cpu_seconds(pid)
    through_listener = asyncio.run(measure("127.0.0.1", port, connections=20, duration=1.0, target=target, ssl_context=context))
    listener_ms = (cpu_seconds(pid) - before) * 1000 / through_listener.requests
    with BackendProcess(["bench"]) as bp:
        assert bp.proc is not None
        before = cpu_seconds(bp.proc.pid)
        direct = asyncio.run(measure("127.0.0.1", bp.ports["bench"], connections=20, duration=1.0, target=target))
        backend_ms = (cpu_seconds(bp.proc.pid) - before) * 1000 / direct.requests
        assert bp.stats("bench")["requests"] >= direct.requests
    ratio = listener_ms / backend_ms
    print(f"{target}: backend {direct.rate:.0f} req/s, {backend_ms:.3f} ms CPU each; listener {through_listener.rate:.0f} req/s, "
          f"{listener_ms:.3f} ms CPU each; ratio {ratio:.1f}x")
    assert direct.errors == 0 and through_listener.errors == 0
    assert through_listener.requests > 100 and direct.requests > 100  # enough for the CPU clock's 10 ms ticks
    assert ratio >= 5
