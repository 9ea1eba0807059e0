"""`event_loop: uvloop|asyncio`: a lab runs mitmproxy and its addons on either loop; anything else is refused."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from simulator.errors import LbsimError
from simulator.harness.running import start_lab
from simulator.model.config import parse_config
from simulator.policies.probe import probe
from simulator.runtime.loops import loop_factory
from tests.helpers import wait_for


def test_the_default_loop_is_asyncios_and_a_wrong_one_names_the_field() -> None:
    assert parse_config({}).event_loop == "asyncio"
    assert parse_config({"event_loop": "uvloop"}).event_loop == "uvloop"
    with pytest.raises(LbsimError) as info:
        parse_config({"event_loop": "trio"})
    assert info.value.field == "event_loop" and "asyncio, uvloop" in info.value.message
    assert isinstance(loop_factory("uvloop")(), uvloop.Loop)
    assert type(loop_factory("asyncio")()) is type(asyncio.new_event_loop())


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_lab_on_either_loop_serves_tls_and_meters_the_connection(tmp_path, loop: str) -> None:
    running = start_lab(out_dir=tmp_path, time_scale=0.01, event_loop=loop)
    try:
        assert isinstance(running._loop, uvloop.Loop) is (loop == "uvloop")
        listener = next(l for l in running.lab.registry.listeners.values() if not l.spec.mutual)
        result = probe("127.0.0.1", listener.port, http_request=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert result.ok and result.http_response.startswith(b"HTTP/1.1 200"), result.to_dict()
        def logged() -> list[dict]:  # written when the connection has closed on the lab's side too
            return [r for r in running.lab.registry.recent if r.get("listener_port") == listener.port]

        record = wait_for(logged)[-1]
        assert record["requests"] == 1 and record["tls_protocol"] == result.version and not record["resumed"]
        # Metered to the byte: the client's wire bytes up to its close_notify (the probe counts that alert too).
        assert 0 < record["traffic"]["client_to_lb"]["wire"] <= result.bytes_sent
    finally:
        running.stop()
