"""The layers' paused-event queues (simulator.dataplane.eventqueue): small, and still what mitmproxy expects."""

from __future__ import annotations

import collections
import gc
import http.client
import sys

from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpStream
from mitmproxy.test import taddons, tflow

from simulator.dataplane.eventqueue import EventQueue, SmallEventQueue
from simulator.harness.running import RunningLab


def test_an_event_queue_pops_in_order_and_costs_a_fraction_of_a_deque() -> None:
    queue = EventQueue()
    assert not queue and sys.getsizeof(queue) < sys.getsizeof(collections.deque()) / 8
    queue.append("a")
    queue.append("b")
    assert queue and queue.popleft() == "a" and list(queue) == ["b"]


class Pausing(SmallEventQueue, layer.Layer):
    """Waits for a blocking hook on Start; notes every other event it gets."""

    def __init__(self, context: Context):
        super().__init__(context)
        self.seen: list[bytes] = []

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            yield HttpRequestHook(tflow.tflow())  # blocking: the layer pauses until it completes
        elif isinstance(event, events.DataReceived):
            self.seen.append(event.data)


def test_a_paused_layer_keeps_the_events_that_arrive_and_replays_them_in_order() -> None:
    with taddons.context() as tctx:
        context = Context(tflow.tclient_conn(), tctx.options)
        paused = Pausing(context)
        assert isinstance(paused._paused_event_queue, EventQueue)
        [hook] = list(paused.handle_event(events.Start()))
        for data in (b"one", b"two"):
            assert list(paused.handle_event(events.DataReceived(context.client, data))) == []
        assert paused.seen == [] and len(paused._paused_event_queue) == 2
        list(paused.handle_event(events.HookCompleted(hook)))
        assert paused.seen == [b"one", b"two"] and not paused._paused_event_queue
        assert isinstance(hook, commands.StartHook)


def test_no_layer_of_a_held_connection_keeps_a_deque(lab: RunningLab) -> None:
    conn = http.client.HTTPSConnection("localhost", lab.port("aliyun-one-way"), context=lab.ssl_context(), timeout=10)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() is not None  # the connection stays open, idle
        gc.collect()  # only what the connection holds: finished streams and replaced layers go
        port = conn.sock.getsockname()[1]
        held = [o for o in gc.get_objects() if isinstance(o, layer.Layer) and o.context.client.peername
                and o.context.client.peername[1] == port and o.context.client.timestamp_end is None]
        assert {type(o).__name__ for o in held} >= {"ReverseProxy", "NextLayer", "ListenerTLSLayer",
                                                     "LimitedHttpLayer", "LimitedHttp1Server"}
        # mitmproxy's HttpStream is a request's, not the connection's: it goes with its request, deque and all.
        assert [type(o).__name__ for o in held if isinstance(o._paused_event_queue, collections.deque)
                and not isinstance(o, HttpStream)] == []
    finally:
        conn.close()
