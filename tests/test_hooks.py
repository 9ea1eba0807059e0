"""The lab's hook dispatch (simulator.runtime.hooks) calls what mitmproxy's AddonManager would call, in its order."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import exceptions, options
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.master import Master
from mitmproxy.proxy import commands, context, events, layer
from mitmproxy.proxy.layer import NextLayerHook
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook, HttpResponseHook
from mitmproxy.proxy.server_hooks import ClientConnectedHook
from mitmproxy.test import tflow

from simulator.runtime.hooks import HookTable, HooksAtOnce


class Recorder:
    """An addon that writes down each event it sees; `fail` and `halt` name events it raises in."""

    def __init__(self, name: str, calls: list[str], fail: str = "", halt: str = ""):
        self.name, self.calls, self.fail, self.halt = name, calls, fail, halt

    def _see(self, event: str) -> None:
        self.calls.append(f"{self.name}.{event}")
        if event == self.fail:
            raise ValueError(f"{self.name} failed in {event}")
        if event == self.halt:
            raise exceptions.AddonHalt()

    def requestheaders(self, flow) -> None:
        self._see("requestheaders")

    async def request(self, flow) -> None:
        await asyncio.sleep(0)  # a coroutine hook is awaited before the next addon runs
        self._see("request")

    def client_connected(self, client) -> None:
        self._see("client_connected")

    def next_layer(self, nextlayer) -> None:
        self._see("next_layer")


class Updates:
    name = "updates"

    def __init__(self, calls: list[str]):
        self.calls = calls

    def update(self, flows) -> None:
        self.calls.append(f"update:{len(flows)}")


class Parent:
    """An addon with children, as mitmproxy allows (`addons`): the children come right after it."""

    name = "parent"

    def __init__(self, calls: list[str]):
        self.addons = [Recorder("child", calls)]


def table_of(*addons) -> HookTable:
    """A HookTable over a real mitmproxy Master holding `addons` after the proxy server, as a lab's does."""
    return HookTable(manager_of(*addons))


def manager_of(*addons):
    master = Master(options.Options(), with_termlog=False)  # needs the running loop
    master.addons.add(Proxyserver(), *addons)
    return master.addons


def hooks_of(flow):
    return [HttpRequestHeadersHook(flow), HttpRequestHook(flow), HttpResponseHook(flow),
            ClientConnectedHook(tflow.tclient_conn())]


def test_the_table_calls_what_mitmproxy_calls_in_its_order() -> None:
    ours: list[str] = []
    theirs: list[str] = []
    flow = tflow.tflow()

    async def both() -> None:
        table = table_of(Recorder("a", ours), Parent(ours), Updates(ours), Recorder("b", ours))
        manager = manager_of(Recorder("a", theirs), Parent(theirs), Updates(theirs), Recorder("b", theirs))
        for hook in hooks_of(flow):
            assert await table.dispatch(hook) is hook.args()[0]
            await manager.handle_lifecycle(hook)

    asyncio.run(both())
    assert ours == theirs
    assert ours[:4] == ["a.requestheaders", "child.requestheaders", "b.requestheaders", "update:1"]
    assert "b.client_connected" in ours and ours[-1] == "b.client_connected"  # no update for a connection


def test_an_addon_error_is_logged_and_the_next_addon_still_runs(caplog) -> None:
    calls: list[str] = []

    async def run() -> None:
        await table_of(Recorder("a", calls, fail="request"), Recorder("b", calls)).dispatch(HttpRequestHook(tflow.tflow()))

    with caplog.at_level(logging.ERROR):
        asyncio.run(run())
    assert calls == ["a.request", "b.request"]
    assert any(r.getMessage() == "Addon error: a failed in request" and r.exc_info for r in caplog.records)


def test_addon_halt_ends_the_event() -> None:
    calls: list[str] = []

    async def run() -> None:
        table = table_of(Recorder("a", calls, halt="requestheaders"), Recorder("b", calls))
        await table.dispatch(HttpRequestHeadersHook(tflow.tflow()))
        await table.dispatch(HttpRequestHook(tflow.tflow()))

    asyncio.run(run())
    assert calls == ["a.requestheaders", "a.request", "b.request"]


def test_handlers_are_looked_up_once_per_event() -> None:
    calls: list[str] = []
    a, b = Recorder("a", calls), Recorder("b", calls)

    async def build() -> HookTable:
        return table_of(a, b)

    table = asyncio.run(build())
    found = table.handlers("request")
    assert found == (a.request, b.request)
    assert table.handlers("request") is found
    assert table.handlers("responseheaders") == ()  # nobody handles it: nothing to call


# ---- HookTable.start and HooksAtOnce: a flow's events that need no waiting end without a task ----------


class Intercepts:
    """An addon that holds every request, as mitmproxy's interception would."""

    def request(self, flow) -> None:
        flow.intercept()


def test_plain_handlers_finish_the_event_at_once() -> None:
    calls: list[str] = []

    async def run() -> None:
        table = table_of(Recorder("a", calls), Updates(calls))
        assert table.start(HttpRequestHeadersHook(tflow.tflow())) is None  # nothing left to wait for
        assert calls == ["a.requestheaders", "update:1"]

    asyncio.run(run())


def test_after_a_coroutine_handler_the_rest_of_the_event_waits_for_it() -> None:
    calls: list[str] = []

    async def run() -> None:
        table = table_of(Recorder("a", calls), Recorder("b", calls), Updates(calls))
        rest = table.start(HttpRequestHook(tflow.tflow()))  # a.request is a coroutine: it sleeps first
        assert rest is not None and calls == []
        await rest
        assert calls == ["a.request", "b.request", "update:1"]

    asyncio.run(run())


def test_an_intercepted_flow_ends_its_event_when_resumed() -> None:
    async def run() -> None:
        table = table_of(Intercepts())
        flow = tflow.tflow()
        rest = table.start(HttpRequestHook(flow))
        assert rest is not None
        waiting = asyncio.ensure_future(rest)
        await asyncio.sleep(0.01)
        assert not waiting.done()
        flow.resume()
        await asyncio.wait_for(waiting, 1)

    asyncio.run(run())


class ScriptedLayer:
    """A top layer that raises `hook` on Start, then says what it received: the layers' side of HooksAtOnce."""

    def __init__(self, hook):
        self.hook, self.received = hook, []

    def handle_event(self, event):
        self.received.append(type(event).__name__)
        if isinstance(event, events.Start):
            yield commands.Log("before")
            yield self.hook
            yield commands.Log("after")
        else:
            yield commands.Log(f"on {type(event).__name__}")


class Handler:
    """The parts of LabConnectionHandler that HooksAtOnce uses; `finish_hook` notes what it was given."""

    def __init__(self, table: HookTable):
        self.hooks, self.client, self.finishing = table, tflow.tclient_conn(), []

    async def finish_hook(self, hook, rest) -> None:
        self.finishing.append(hook.name)
        await rest


def messages(commands_):
    return [c.message if isinstance(c, commands.Log) else c.name for c in commands_]


def test_a_flow_event_that_finished_at_once_completes_after_the_commands_of_its_turn() -> None:
    calls: list[str] = []

    async def run() -> None:
        hook = HttpRequestHeadersHook(tflow.tflow())
        hook.blocking = True
        handler = Handler(table_of(Recorder("a", calls)))
        layer = ScriptedLayer(hook)
        out = list(HooksAtOnce(handler, layer).handle_event(events.Start()))
        assert messages(out) == ["before", "after", "on HookCompleted"]  # the hook itself never reaches server_event
        assert layer.received == ["Start", "HookCompleted"] and calls == ["a.requestheaders"]
        assert handler.finishing == []

    asyncio.run(run())


def test_a_flow_event_that_must_wait_goes_to_a_task_and_a_connection_event_completes_at_once() -> None:
    calls: list[str] = []

    async def run() -> None:
        handler = Handler(table_of(Recorder("a", calls)))
        waits = ScriptedLayer(HttpRequestHook(tflow.tflow()))  # a.request is a coroutine
        assert messages(HooksAtOnce(handler, waits).handle_event(events.Start())) == ["before", "after"]
        # A connection's event (next_layer, the TLS hooks) with plain handlers: run on the spot, like a flow's,
        # its completion back to the layer after the commands of its turn; server_event never sees it.
        hook = NextLayerHook(layer.NextLayer(context.Context(tflow.tclient_conn(), options.Options())))
        hook.blocking = True
        connection = ScriptedLayer(hook)
        assert messages(HooksAtOnce(handler, connection).handle_event(events.Start())) == [
            "before", "after", "on HookCompleted"]
        assert connection.received == ["Start", "HookCompleted"] and "a.next_layer" in calls
        await asyncio.sleep(0.01)
        assert handler.finishing == ["request"] and calls == ["a.next_layer", "a.request"]
        assert waits.received == ["Start"]  # its HookCompleted is the task's to send

    asyncio.run(run())


class WritingLayer:
    """A top layer that answers Start with `script` (writes, a hook, a close) and later events with nothing."""

    def __init__(self, script):
        self.script = script

    def handle_event(self, event):
        if isinstance(event, events.Start):
            yield from self.script


def test_every_command_but_a_flow_event_passes_as_the_layers_made_it() -> None:
    client, server = tflow.tclient_conn(), tflow.tserver_conn()

    async def run() -> None:
        handler = Handler(table_of())
        script = [commands.SendData(client, b"head"), commands.SendData(client, b"body"),
                  commands.SendData(server, b"up"), commands.Log("between"), commands.SendData(client, b"alert"),
                  commands.CloseConnection(client), commands.SendData(client, b"late")]
        out = list(HooksAtOnce(handler, WritingLayer(script)).handle_event(events.Start()))
        assert out == script and all(a is b for a, b in zip(out, script))  # same objects, same order

    asyncio.run(run())


def test_a_write_before_a_flow_event_is_out_before_its_handlers_run() -> None:
    client = tflow.tclient_conn()
    calls: list[str] = []

    async def run() -> None:
        hook = HttpRequestHeadersHook(tflow.tflow())
        hook.blocking = True
        handler = Handler(table_of(Recorder("a", calls)))
        at_once = HooksAtOnce(handler, WritingLayer([commands.SendData(client, b"before"), hook,
                                                     commands.SendData(client, b"after")]))
        out = at_once.handle_event(events.Start())
        first = next(out)
        assert first.data == b"before" and calls == []  # a handler that writes itself would come after it
        rest = list(out)
        assert calls[0] == "a.requestheaders" and rest[0].data == b"after"

    asyncio.run(run())
