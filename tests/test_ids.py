"""mitmproxy's connection and flow ids, drawn without a system call each (simulator/runtime/ids.py)."""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

import pytest
from mitmproxy import connection, flow, http

from simulator.harness.running import start_lab
from simulator.runtime import ids


def test_an_id_is_a_random_version_4_uuid_in_its_usual_text() -> None:
    drawn = [ids.uuid4() for _ in range(5_000)]
    assert len(set(drawn)) == len(drawn)
    for text in drawn[:500]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case hex, dashes at 8-4-4-4-12
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Every one of the 122 random bits takes both values.
    ones = 0
    zeros = 0
    for text in drawn:
        n = uuid.UUID(text).int
        ones |= n
        zeros |= ~n
    random_bits = ((1 << 128) - 1) & ~((0xF000 << 64) | (0xC000 << 48))
    assert ones & random_bits == random_bits and zeros & random_bits == random_bits


def test_seeding_pythons_random_does_not_repeat_ids() -> None:
    random.seed(7)
    first = ids.uuid4()
    random.seed(7)
    assert ids.uuid4() != first


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out without running anything of pytest's
        try:
            os.write(write, ids.uuid4().encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as f:
        child = f.read().decode()
    assert uuid.UUID(child).version == 4
    assert child != ids.uuid4()  # the parent's next one: the same had the child kept the parent's state


def test_installed_mitmproxy_names_clients_servers_and_flows_from_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tripwire for mitmproxy's side: its modules must still call `uuid.uuid4()` through their `uuid` global."""
    ids.install()
    drawn = iter(f"00000000-0000-4000-8000-{n:012x}" for n in range(1, 10))
    monkeypatch.setattr(ids.MODULE, "uuid4", lambda: next(drawn))
    client = connection.Client(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2), timestamp_start=0.0)
    server = connection.Server(address=None)
    f = http.HTTPFlow(client, server)
    assert (client.id, server.id, f.id) == (
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000003",
    )


def test_a_lab_installs_them_when_it_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(connection, "uuid", uuid)  # as mitmproxy has it before any lab ran in this process
    monkeypatch.setattr(flow, "uuid", uuid)
    running = start_lab(out_dir=tmp_path, time_scale=0.01)  # vendor timers 100x faster, as the suite's lab
    try:
        assert connection.uuid is ids.MODULE and flow.uuid is ids.MODULE  # type: ignore[attr-defined]
    finally:
        running.stop()
