"""An lbsim lab whose listeners answer every HTTP/1 request in place: the bench's measure of the TLS path alone.

`lbsim bench` uses it to say how far a goal against nginx could be reached by making lbsim's HTTP side cheaper.
The lab is the same in everything below HTTP: mitmproxy's connection handler and TLS layer, lbsim's TLS
termination with the listener's certificate and policy, session tickets, metering, the connection log. Only the
layer above TLS differs: instead of the listener's HTTP layer (simulator/dataplane/addons/http1.py, with
mitmproxy's layers behind it), lbsim's hooks (balancer, headers, stickiness, pages) and the upstream request to a
backend, :class:`FixedAnswer` answers each request with the same fixed 200. What
this lab costs per request is a floor under any HTTP path inside this listener, however lean: "lbsim TLS only"
in the bench's report (docs/performance.md, "Round eight").

    python -m simulator.tools.tlsonly up -c lab.yaml     # as `lbsim up`, every listener answering in place

Not a listener for users: it forwards nothing, keeps no flow and speaks HTTP/1.1 only (a client that negotiates h2
gets an answer it cannot read; the bench's h2load runs `--h1`). A request with a body is answered and closed.
The swap holds in this process only: a lab with `workers: N` would serve its other workers' connections as usual.
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any

from mitmproxy.proxy import commands, events, layer

from simulator.dataplane.smalldeque import SmallEventQueue

# As long as the bench's mock backend's answer to `GET /` (329 bytes of JSON), so both send the same bytes.
BODY = b"{" + b" " * 327 + b"}"
HEAD = b"HTTP/1.1 200 OK\r\nServer: lbsim-tls-only\r\nContent-Type: application/json\r\nContent-Length: 329\r\n"
ANSWER, ANSWER_CLOSE = HEAD + b"\r\n" + BODY, HEAD + b"Connection: close\r\n\r\n" + BODY
MAX_HEAD = 65_536  # bytes of a request head before the connection is closed without an answer


class FixedAnswer(SmallEventQueue, layer.Layer):
    """The layer above a listener's TLS: each request head gets :data:`ANSWER`, nothing is forwarded.

    Built as the listener's HTTP layer is (`TlsTermination.http_layer`), so the arguments after `context` are
    accepted and not used."""

    def __init__(self, context: Any, *_: Any) -> None:
        super().__init__(context)
        self.buffer = b""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived):
            self.buffer += event.data
            while b"\r\n\r\n" in self.buffer:
                head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
                fields = head.lower()
                if b"\r\nconnection: close" in fields or b"\r\ncontent-length:" in fields or b"\r\ntransfer-encoding:" in fields:
                    yield commands.SendData(self.context.client, ANSWER_CLOSE)
                    yield commands.CloseConnection(self.context.client)
                    return
                yield commands.SendData(self.context.client, ANSWER)
            if len(self.buffer) > MAX_HEAD:
                yield commands.CloseConnection(self.context.client)
        elif isinstance(event, events.ConnectionClosed):
            yield commands.CloseConnection(self.context.client)


def run_swapped(http_layer: Any, module: str, argv: list[str] | None = None) -> None:
    """Run `lbsim ARGS` (simulator.cli, as a program: tools sit below the CLI) with every listener's HTTP layer
    swapped for `http_layer`, in this process only; `module` is the caller's, run again under -O."""
    from simulator.dataplane.addons.tls import TlsTermination

    args = sys.argv[1:] if argv is None else argv
    if not sys.flags.optimize:  # `lbsim up` would restart itself under -O and lose the swap: restart here instead
        os.execv(sys.executable, [sys.executable, "-O", "-m", module, *args])
    TlsTermination.http_layer = http_layer
    sys.argv = ["lbsim", *args]
    runpy.run_module("simulator.cli", run_name="__main__", alter_sys=True)


def main(argv: list[str] | None = None) -> None:
    """Run `lbsim ARGS` with every listener's HTTP layer swapped for :class:`FixedAnswer`, in this process only."""
    run_swapped(FixedAnswer, "simulator.tools.tlsonly", argv)


if __name__ == "__main__":
    main()
