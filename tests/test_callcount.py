"""simulator.tools.callcount: Python calls per request of real labs under h2load.

The point of the tool is that the count does not move with the machine: the same code, counted as this
checkout and as a baseline copy of it, must agree to within a percent, on keep-alive requests and on full
handshakes, while the two labs run on a shared machine. About 30 s (two labs, two figures).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import BASELINE_MARK, baseline_copy

from simulator.tools import callcount

pytestmark = pytest.mark.slow


def test_the_same_code_counted_twice_gives_the_same_calls_per_request(tmp_path: Path) -> None:
    said: list[str] = []
    with baseline_copy() as copy:
        results = callcount.run([copy], ("keepalive", "new_connections"),
                                {"keepalive": 2_000, "new_connections": 300}, tmp_path / "out", said.append)
    assert BASELINE_MARK in (tmp_path / "out" / "lab-1" / "server.log").read_text()
    assert BASELINE_MARK not in (tmp_path / "out" / "lab-0" / "server.log").read_text()
    for figure, by_lab in results.items():
        (baseline,) = [label for label in by_lab if label != "lbsim"]
        ours, theirs = by_lab["lbsim"], by_lab[baseline]
        # A keep-alive request is about 1,550 calls, a new connection about 3,600 (docs/performance.md, round eight).
        assert ours["total"] > (500 if figure == "keepalive" else 1_500), (figure, ours)
        assert ours["total"] / theirs["total"] == pytest.approx(1, abs=0.01), (figure, ours["total"], theirs["total"])
        # Every call is in one component (a built-in's in its callers'), so the components add up to the total
        # (to a few calls in a million: cProfile's counts by caller of a few built-ins fall short of their own).
        assert sum(v for k, v in ours.items() if k != "total") == pytest.approx(ours["total"], rel=1e-3)
        assert ours["mitmproxy proxy core (layers, HTTP)"] > 0.25 * ours["total"]
    table = said[-1]
    assert "| total |" in table and "lbsim / " in table and "keepalive:" in table and "new_connections:" in table


def test_a_folder_that_is_no_checkout_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.tools import sidebyside

    assert callcount.main(["--baseline", str(tmp_path)]) == 1
    assert sidebyside.main([str(tmp_path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: InvalidBaseline: baseline: ") and "no simulator/cli.py" in line
                                   for line in lines), lines
    with pytest.raises(SystemExit):  # argparse's usage error, before any lab starts
        callcount.main(["--requests", "0"])
    assert "--requests: at least 1" in capsys.readouterr().err
