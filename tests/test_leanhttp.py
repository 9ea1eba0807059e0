"""The bench's "lbsim lean HTTP/1 (prototype)" lab: HTTP/1.1 through a minimal layer that runs the lab's own hooks.

Its figures stand for what a leaner HTTP path could reach (docs/performance.md, "Round nine"), so it must do the
product's work per request: the backend request through the balancer, the listener's forwarded headers, nginx's
head limits with the vendor's page, the connection log's request count. A real `lbsim up` process under the tool,
a real backend, a real TLS client.
"""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from simulator.backends import BackendProcess
from simulator.net import LOOPBACK
from simulator.tools.bench import LEAN, LeanHttpServer, mint, running

pytestmark = pytest.mark.slow


def responses(conn: ssl.SSLSocket, count: int) -> list[tuple[bytes, bytes]]:
    """`count` whole responses (head, body) read off `conn`, each with a Content-Length body."""
    data, out = b"", []
    while len(out) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None) if sep else None
        if length is not None and len(rest) >= length:
            out.append((head, rest[:length]))
            data = rest[length:]
            continue
        chunk = conn.recv(65536)
        assert chunk, f"closed after {len(out)} responses"
        data += chunk
    return out


def test_lean_lab_forwards_through_the_labs_hooks_and_keeps_its_log(tmp_path) -> None:
    files = mint(tmp_path)
    context = ssl.create_default_context(cafile=str(files["ca"]))
    with BackendProcess(["bench"]) as backend:
        server = LeanHttpServer(tmp_path / "lab", files["cert"], files["key"], backend.addresses["bench"])
        assert server.label == LEAN
        with running([server], str(files["ca"])):
            with socket.create_connection((LOOPBACK, server.port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as conn:
                    # Two requests in one write (pipelined), one with a body: both reach the backend, in order.
                    conn.sendall(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
                                 b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
                    (head_a, body_a), (head_b, body_b) = responses(conn, 2)
                    assert head_a.startswith(b"HTTP/1.1 200") and head_b.startswith(b"HTTP/1.1 200")
                    a, b = json.loads(body_a), json.loads(body_b)
                    assert (a["method"], a["path"], b["method"], b["path"], b["body_size"]) == ("GET", "/a", "POST", "/b", 5)
                    # The balancer's forwarded headers, as the product path adds them.
                    names = {name.lower() for name, _ in a["headers"]}
                    assert {"x-forwarded-for", "x-forwarded-proto"} <= names, names
                    # A request head over nginx's 8 KiB line limit: the vendor's 414 page, then the close.
                    conn.sendall(b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
                    ((head, page),) = responses(conn, 1)
                    assert head.startswith(b"HTTP/1.1 414") and b"Tengine" in head and b"414" in page
                    assert conn.recv(1) == b""
            server.stop()  # the lab writes its last records as it stops
        assert backend.stats("bench")["requests"] >= 2
    records = [json.loads(line) for line in (tmp_path / "lab" / "connections.jsonl").read_text().splitlines()]
    ours = [r for r in records if r["requests"] == 2]
    assert len(ours) == 1, records  # the two forwarded requests, counted by the balancer
    assert ours[0]["error"] == "request line over 8192 bytes" and ours[0]["traffic"]["lb_to_client"]["wire"] > 0
