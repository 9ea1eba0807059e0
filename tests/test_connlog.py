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
