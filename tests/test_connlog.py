"""The connection log's time stamps and lines (simulator/dataplane/addons/connlog.py)."""

from __future__ import annotations

import datetime
import json

from hypothesis import example, given
from hypothesis import strategies as st

from simulator.dataplane.addons import connlog


def the_long_way(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False))
@example(1796665611.9999995)  # rounds up into the next second
@example(1796665611.0000004)
@example(1796665611.9995)
@example(-0.0000004)  # before 1970, rounding across zero
@example(-1.5)
def test_iso_is_what_datetime_gives(ts: float) -> None:
    assert connlog.iso(ts) == the_long_way(ts)


def test_iso_formats_the_second_again_when_it_changes() -> None:
    # Back and forth across seconds and days: the text of the second it remembers is never reused for another.
    for ts in (86_399.9, 86_400.1, 86_399.2, 1796665611.5, 1796665612.5, 1796665611.25, 0.0):
        assert connlog.iso(ts) == the_long_way(ts)


def test_a_line_is_the_compact_json_of_its_record() -> None:
    record = {"time": "2026-12-07T17:46:51.032Z", "sni": None, "resumed": True, "duration": 0.049311,
              "client_cert_validity": {"not_before": "x"}, "traffic": {"lb_to_client": {"wire": 3436}},
              "subject": "CN=é,O=\"q\""}
    assert connlog._encode_line(record) == json.dumps(record, separators=(",", ":"))


def test_a_workers_lines_go_down_the_pipe_a_batch_at_a_time() -> None:
    """A worker's log is a pipe to worker 0, and every write wakes worker 0: with `batch`, the lines of a
    batch go at once when its time is up, or when `flush` is called (a settle); without, each as written."""
    import asyncio
    import os
    import select

    from simulator.dataplane.registry import Registry

    def waiting(fd: int) -> bool:
        return bool(select.select([fd], [], [], 0)[0])

    async def scenario(batch: float) -> list[bytes]:
        read_fd, write_fd = os.pipe()
        log = connlog.ConnectionLog(Registry(), connlog.Path(f"/dev/fd/{write_fd}"), keep=False, batch=batch)
        log.running()
        seen = []
        try:
            for n in range(3):
                log.write(f'{{"n":{n}}}')
            seen.append(os.read(read_fd, 4096) if waiting(read_fd) else b"")  # at once: nothing in a batch
            await asyncio.sleep(batch * 2 + 0.05)  # the batch's time is up
            seen.append(os.read(read_fd, 4096) if waiting(read_fd) else b"")
            log.write('{"n":3}')
            log.flush()  # a settle sends what waits, before its time
            seen.append(os.read(read_fd, 4096) if waiting(read_fd) else b"")
            assert log.logged == 4
        finally:
            log.done()
            os.close(read_fd)
            os.close(write_fd)
        return seen

    assert asyncio.run(scenario(0.2)) == [b"", b'{"n":0}\n{"n":1}\n{"n":2}\n', b'{"n":3}\n']
    assert asyncio.run(scenario(0.0)) == [b'{"n":0}\n{"n":1}\n{"n":2}\n', b"", b'{"n":3}\n']  # each line as written
