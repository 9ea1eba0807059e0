"""A connection's small queues (simulator.dataplane.smalldeque): a fraction of a deque, and still what mitmproxy
and asyncio expect of one."""

from __future__ import annotations

import collections
import gc
import http.client
import sys
import time

from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpStream
from mitmproxy.test import taddons, tflow

from helpers import handlers_of

from simulator.dataplane.smalldeque import SmallDeque, SmallEventQueue, make_small
from simulator.harness.running import RunningLab


def test_a_small_deque_works_from_both_ends_and_costs_a_fraction_of_a_deque() -> None:
    queue = SmallDeque()
    assert not queue and sys.getsizeof(queue) < sys.getsizeof(collections.deque()) / 8
    queue.append("a")
    queue.append("b")
    queue.appendleft("z")
    assert queue and queue.popleft() == "z" and queue.popleft() == "a" and list(queue) == ["b"]


def test_make_small_swaps_only_an_empty_deque_or_one_not_made_yet() -> None:
    class Owner:
        def __init__(self) -> None:
            self.empty, self.unmade, self.busy, self.other = collections.deque(), None, collections.deque([1]), [2]

    owner = Owner()
    for name in ("empty", "unmade", "busy", "other", "absent"):
        make_small(owner, name)
    assert type(owner.empty) is SmallDeque and type(owner.unmade) is SmallDeque
    assert owner.busy == collections.deque([1]) and owner.other == [2] and not hasattr(owner, "absent")
    make_small(None, "_buffer")  # a writer without a protocol: nothing to do


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
        assert isinstance(paused._paused_event_queue, SmallDeque)
        [hook] = list(paused.handle_event(events.Start()))
        for data in (b"one", b"two"):
            assert list(paused.handle_event(events.DataReceived(context.client, data))) == []
        assert paused.seen == [] and len(paused._paused_event_queue) == 2
        list(paused.handle_event(events.HookCompleted(hook)))
        assert paused.seen == [b"one", b"two"] and not paused._paused_event_queue
        assert isinstance(hook, commands.StartHook)


def test_a_held_connection_keeps_no_deque_of_its_own(lab: RunningLab) -> None:
    conn = http.client.HTTPSConnection("localhost", lab.port("aliyun-one-way"), context=lab.ssl_context(), timeout=10)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() is not None  # the connection stays open, idle
        gc.collect()  # only what the connection holds: finished streams and replaced layers go
        port = conn.sock.getsockname()[1]
        held = [o for o in gc.get_objects() if isinstance(o, layer.Layer) and o.context.client.peername
                and o.context.client.peername[1] == port and o.context.client.timestamp_end is None]
        assert {type(o).__name__ for o in held} >= {"ReverseProxy", "NextLayer", "ListenerTLSLayer", "ListenerHttpLayer"}
        # mitmproxy's HttpStream is a request's, not the connection's: it goes with its request, deque and all.
        assert [type(o).__name__ for o in held if isinstance(o._paused_event_queue, collections.deque)
                and not isinstance(o, HttpStream)] == []
        # asyncio's queues of the connection: its transport's, its protocol's and its handler's event lock's
        [handler] = handlers_of(lab, port)
        writer = handler.transports[handler.client].writer
        queues = [writer.transport._buffer, writer._protocol._drain_waiters, handler._server_event_lock._waiters]
        assert [type(q).__name__ for q in queues] == ["SmallDeque"] * 3
    finally:
        conn.close()


def test_a_client_that_reads_slowly_gets_every_byte_through_the_small_write_buffer(lab: RunningLab) -> None:
    # 8 MiB to a client that reads 64 KiB at a time with pauses: the transport's buffer fills past asyncio's
    # high-water mark, the proxy waits for it to drain, and the buffer is popped from the left as it empties.
    conn = http.client.HTTPSConnection("localhost", lab.port("aliyun-one-way"), context=lab.ssl_context(), timeout=30)
    try:
        conn.request("GET", f"/?size={8 << 20}")
        response = conn.getresponse()
        assert response.status == 200
        received, paused = 0, 0
        while chunk := response.read(65536):
            received += len(chunk)
            if paused < 20:
                time.sleep(0.02)
                paused += 1
        assert received == 8 << 20
        conn.request("GET", "/")  # and the connection goes on
        assert conn.getresponse().status == 200
    finally:
        conn.close()
