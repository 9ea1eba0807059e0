"""The mock backend is never the bottleneck: at least 5x the listener's keep-alive rate, measured in the same run
with the same client (the listener in its own `lbsim up` process, the backend in its own process)."""

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
    yield port, context
    proc.send_signal(signal.SIGINT)
    proc.wait(20)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["/", "/blob?size=1024"])
def test_keep_alive_rate_is_at_least_5x_the_listener(listener, target: str) -> None:
    port, context = listener
    through_listener = asyncio.run(measure("127.0.0.1", port, connections=20, duration=1.0, target=target, ssl_context=context))
    with BackendProcess(["bench"]) as bp:
        direct = asyncio.run(measure("127.0.0.1", bp.ports["bench"], connections=20, duration=1.0, target=target))
        assert bp.stats("bench")["requests"] >= direct.requests
    ratio = direct.rate / through_listener.rate
    print(f"{target}: backend {direct.rate:.0f} req/s, listener {through_listener.rate:.0f} req/s, ratio {ratio:.1f}x")
    assert direct.errors == 0 and through_listener.errors == 0
    # The client is Python too and may itself cap the backend figure, so the real ratio is at least this.
    assert ratio >= 5
