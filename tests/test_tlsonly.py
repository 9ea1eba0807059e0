"""The bench's "lbsim TLS only" lab: the listener's TLS path with each request answered in place.

Its figures are the floor the bench's goals cite (docs/performance.md, "Round eight"), so it must be the same lab
below HTTP (handshake, metering, connection log) and must forward nothing. A real `lbsim up` process under the
tool, a real TLS client.
"""

from __future__ import annotations

import json
import socket
import ssl

import pytest
from helpers import recv_exact

from simulator.net import LOOPBACK, free_port
from simulator.tools.bench import TLS_ONLY, TlsOnlyServer, mint, running
from simulator.tools.tlsonly import ANSWER, ANSWER_CLOSE

pytestmark = pytest.mark.slow


def test_tls_only_lab_answers_in_place_and_keeps_the_tls_path_and_its_log(tmp_path) -> None:
    files = mint(tmp_path)
    # Nothing listens at the backend's address: every answer below comes from the listener itself.
    server = TlsOnlyServer(tmp_path / "lab", files["cert"], files["key"], f"{LOOPBACK}:{free_port()}")
    assert server.label == TLS_ONLY
    context = ssl.create_default_context(cafile=str(files["ca"]))
    with running([server], str(files["ca"])):
        assert server.handshake["protocol"] == "TLSv1.3"  # the listener's policy, as in `lbsim up`
        with socket.create_connection((LOOPBACK, server.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as conn:
                # Two requests in one write (pipelined) and a third after: each answered, in order, on one connection.
                conn.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
                assert recv_exact(conn, 2 * len(ANSWER)) == 2 * ANSWER
                conn.sendall(b"GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                assert recv_exact(conn, len(ANSWER_CLOSE) + 1) == ANSWER_CLOSE  # and then the close
        with socket.create_connection((LOOPBACK, server.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as conn:
                # A body is not read: the answer says close, and the connection ends.
                conn.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
                assert recv_exact(conn, len(ANSWER_CLOSE) + 1) == ANSWER_CLOSE
        server.stop()  # the lab writes its last records as it stops
    records = [json.loads(line) for line in (tmp_path / "lab" / "connections.jsonl").read_text().splitlines()]
    assert len(records) >= 3  # the bench's readiness probe, and the two above
    for record in records:
        assert record["tls_protocol"] == "TLSv1.3" and record["traffic"], record  # the same TLS path, metered
    assert ANSWER.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n\r\n" in ANSWER_CLOSE
