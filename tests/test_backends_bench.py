"""The mock backend is never the bottleneck: at least 5x the listener's keep-alive rate (~1,000 req/s)."""

from __future__ import annotations

import asyncio

import pytest

from simulator.backends import BackendProcess
from simulator.backends.bench import measure

LISTENER_KEEPALIVE_RATE = 1000  # the TLS listener's upper figure on this kind of machine (design notes)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["/", "/blob?size=1024"])
def test_keep_alive_rate_is_at_least_5x_the_listener(target: str) -> None:
    with BackendProcess(["bench"]) as bp:
        result = asyncio.run(measure("127.0.0.1", bp.ports["bench"], connections=20, duration=2.0, target=target))
        assert bp.stats("bench")["requests"] >= result.requests
    print(f"{target}: {result.rate:.0f} req/s over {result.requests} requests")
    assert result.errors == 0
    # The client is Python too (it typically tops out near 10,000 req/s here), so this is a floor.
    assert result.rate >= 5 * LISTENER_KEEPALIVE_RATE
