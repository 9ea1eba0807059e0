"""Control-plane abuse: bad JSON, wrong types, huge bodies, path and header tricks get a JSON error with a
code (never a stack trace, never a 500) and change nothing; the API listens on loopback unless told
otherwise, can require a bearer token, and gives up on a client that never finishes its request.
Wall time: about 10 s.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.model.config import LISTENER_FIELDS
from simulator.harness.running import RunningLab
from simulator.tools.soak import API_CASES, LogWatch, api_raw, api_state, control_plane, start_reliability_lab

TOKEN = "s3cret-token-for-reliability-tests"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> RunningLab:
    running = start_reliability_lab(tmp_path_factory.mktemp("reliability-api"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def token_lab(tmp_path_factory: pytest.TempPathFactory) -> RunningLab:
    def edit(data: dict) -> None:
        data["api"] = {"token": TOKEN}

    running = start_reliability_lab(tmp_path_factory.mktemp("reliability-api-token"), edit=edit)
    yield running
    running.stop()


@pytest.mark.parametrize("name, data, status", API_CASES, ids=[c[0] for c in API_CASES])
def test_abuse_gets_a_json_error(lab: RunningLab, name: str, data: bytes, status: int) -> None:
    before = api_state(lab)
    got, body = api_raw(lab, data)
    assert got == status, body[:300]
    error = json.loads(body)["error"]
    assert error["code"] and error["message"]
    assert b"Traceback" not in body and b'File "' not in body
    assert api_state(lab) == before


def test_a_huge_body_gets_its_413_not_a_reset(lab: RunningLab) -> None:
    """The API answers 413 before reading the body and then closes: it must keep reading (and discarding)
    for a moment, or the unread bytes make the kernel reset the connection, and the client may never read
    the answer (the soak met this as a BrokenPipeError mid-send)."""
    data = b"POST /v1/certificates HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n" + b" " * 8388608
    for _ in range(5):
        with socket.create_connection((lab.lab.api.host, lab.lab.api.port), timeout=10) as s:
            s.sendall(data)  # raises BrokenPipeError / ConnectionResetError if the API reset us
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "InputTooLarge"


def test_all_cases_change_nothing_and_log_no_error(lab: RunningLab) -> None:
    watch = LogWatch()
    with watch.watching():
        result = control_plane(lab, rounds=2)
    assert result.failures == [] and result.inputs == 2 * len(API_CASES)
    assert watch.errors == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(LISTENER_FIELDS), json_values, min_size=1, max_size=6),
       method_path=st.sampled_from([("POST", "/v1/listeners"), ("PUT", "/v1/listeners/{port}"), ("POST", "/v1/certificates"),
                                    ("PUT", "/v1/certificates/lab-rsa"), ("POST", "/v1/backends/web-1/health")]))
def test_random_json_of_every_field_never_breaks_the_api(lab: RunningLab, body: dict, method_path: tuple[str, str]) -> None:
    method, path = method_path
    path = path.format(port=lab.port("aliyun-one-way"))
    body.pop("activation_delay", None)  # a valid change would legitimately reconfigure the listener
    if method == "PUT" and "listeners" in path:
        body.pop("port", None)
    status, answer = lab.api(method, path, body)
    assert status != 500 and status is not None
    if status >= 400:  # (a body that happens to be valid is simply accepted)
        assert answer["error"]["code"] and "Traceback" not in json.dumps(answer)


def test_api_listens_on_loopback_by_default(lab: RunningLab) -> None:
    sock = lab.lab.api._server.sockets[0]
    assert sock.getsockname()[0] == "127.0.0.1"
    other = outward_address()
    if other is not None:
        with pytest.raises(OSError):
            socket.create_connection((other, lab.lab.api.port), timeout=2).close()


def outward_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_a_token_is_required_when_configured(token_lab: RunningLab) -> None:
    def call(path: str, auth: str | None) -> tuple[int | None, bytes]:
        header = f"Authorization: {auth}\r\n" if auth else ""
        return api_raw(token_lab, f"GET {path} HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())

    assert call("/v1/listeners", None)[0] == 401
    assert call("/v1/listeners", "Bearer wrong")[0] == 401
    assert call("/v1/listeners", f"Bearer {TOKEN}x")[0] == 401
    assert call("/v1/listeners", f"bearer {TOKEN}")[0] == 401
    assert call("/v1/listeners", TOKEN)[0] == 401
    status, body = call("/v1/listeners", None)
    assert json.loads(body)["error"]["code"] == "Unauthorized" and TOKEN.encode() not in body
    assert call("/v1/listeners", f"Bearer {TOKEN}")[0] == 200
    assert call("/health", None)[0] == 200  # liveness needs no token and tells nothing secret
    # Without the token nothing changes: not even a backend's health.
    status, _ = api_raw(token_lab, b'POST /v1/backends/web-1/health HTTP/1.1\r\nContent-Length: 15\r\n\r\n{"down": true} ')
    assert status == 401 and token_lab.api("GET", "/v1/backends")[1]["backends"][0]["down"] is False


def test_a_client_that_never_finishes_its_request_or_never_starts_one_is_dropped(lab: RunningLab) -> None:
    server = lab.lab.api
    old = server.read_timeout, server.idle_timeout
    server.read_timeout = server.idle_timeout = 0.5
    try:
        with socket.create_connection((server.host, server.port), timeout=5) as s:
            started = time.monotonic()
            assert s.recv(100) == b"" and time.monotonic() - started < 3  # silent: closed, no answer
        with socket.create_connection((server.host, server.port), timeout=5) as s:
            s.sendall(b"POST /v1/listeners HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")  # 99 bytes short, forever
            started = time.monotonic()
            answer = s.recv(65536)
            assert answer.startswith(b"HTTP/1.1 408") and b"RequestTimeout" in answer
            assert s.recv(100) == b"" and time.monotonic() - started < 3
    finally:
        server.read_timeout, server.idle_timeout = old
    assert lab.api("GET", "/health")[0] == 200
