"""simulator.tools.instructions: machine instructions per request of real labs under h2load, counted by callgrind.

The tool's point is that the count does not move with the machine: the same code, counted as this checkout and
as a baseline copy of it, must agree to well within a percent, OpenSSL's handshake included. It also splits the
count by where the instructions ran, which must add up to the whole. About 60 s (two labs under valgrind).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import BASELINE_MARK, baseline_copy

from simulator.tools import instructions

pytestmark = pytest.mark.slow


def test_the_same_code_counted_twice_gives_the_same_instructions_per_request(tmp_path: Path) -> None:
    # Full handshakes: every connection does the same work. (In the resumed figure each h2load run opens its
    # first 20 connections with full handshakes and a few more may not resume; one more full handshake among
    # 150 connections moves the count by 0.7 %.)
    said: list[str] = []
    with baseline_copy() as copy:
        results = instructions.run([copy], ("new_connections",), {"new_connections": 100}, tmp_path / "out", said.append)
    assert BASELINE_MARK in (tmp_path / "out" / "lab-1" / "server.log").read_text()
    assert BASELINE_MARK not in (tmp_path / "out" / "lab-0" / "server.log").read_text()
    by_lab = results["new_connections"]
    (baseline,) = [label for label in by_lab if label != "lbsim"]
    ours, theirs = by_lab["lbsim"], by_lab[baseline]
    # A full handshake is about 12 million instructions, two thirds of them OpenSSL's (docs/performance.md).
    assert 5e6 < ours["total"] < 50e6, ours
    assert ours["total"] / theirs["total"] == pytest.approx(1, abs=0.005), (ours["total"], theirs["total"])
    assert sum(v for k, v in ours.items() if k != "total") == pytest.approx(ours["total"], rel=1e-9)
    assert ours["OpenSSL (cryptography's _rust)"] > 0.4 * ours["total"]
    assert ours["Python interpreter"] > 0.1 * ours["total"]
    # Only the counted window is in the dump: h2load's warm-up and the lab's start are not.
    assert (tmp_path / "out" / "lab-0" / "new_connections.callgrind").is_file()
    assert "new_connections" in said[-1] and "| total |" in said[-1] and "lbsim / " in said[-1]
    assert any(", 0 of " in line and "handshakes resumed" in line for line in said), said  # all full handshakes


def test_a_dump_is_split_by_the_object_each_function_ran_in(tmp_path: Path) -> None:
    # callgrind's format, compressed: an object is named once with its id, later by the id alone, and may first
    # be named as a callee's (cob=). The cost line after calls= is the callee's, not the caller's own.
    dump = tmp_path / "callgrind.out"
    dump.write_text(
        "events: Ir\n"
        "ob=(1) /usr/lib/libpython3.12.so.1.0\nfl=(1) ceval.c\nfn=(1) eval\n"
        "10 100\n"
        "cob=(2) /venv/cryptography/hazmat/bindings/_rust.abi3.so\ncfn=(2) SSL_do_handshake\ncalls=1 0\n"
        "11 5000\n"
        "+1 20\n"
        "ob=(2)\nfn=(2)\n0 5000\n"
        "ob=(3) /usr/lib/x86_64-linux-gnu/libc.so.6\nfn=(3) malloc\n*  7\n"
        "totals: 5127\n")
    counted = instructions.instructions_by_object(dump)
    assert counted == {"Python interpreter": 120, "OpenSSL (cryptography's _rust)": 5000,
                       "libc (malloc, memcpy, ...)": 7, "total": 5127}


def test_a_folder_that_is_no_checkout_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert instructions.main(["--baseline", str(tmp_path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: InvalidBaseline: baseline: ") and "no simulator/cli.py" in line
