"""simulator.tools.sidebyside: two checkouts' labs under load at the same time, CPU per request of each.

Run on two shared cores, the ratio of the same code to itself is only roughly 1 in a second of load; the
test checks the mechanics (both labs served, each its own code, a ratio per repetition), not precision
(docs/performance.md, "Round seven", gives the spread). About 15 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import BASELINE_MARK, baseline_copy

from simulator.errors import LbsimError
from simulator.tools import sidebyside

pytestmark = pytest.mark.slow


def test_both_labs_serve_at_once_in_both_orders_and_the_result_is_their_geometric_mean(tmp_path: Path) -> None:
    said: list[str] = []
    with baseline_copy() as copy:
        result, ours_first, theirs_first = sidebyside.run(copy, repetitions=2, seconds=1.0, out_dir=tmp_path / "out",
                                                          say=said.append)
    for order in (0, 1):  # fresh labs for each order, each running its own code
        assert BASELINE_MARK in (tmp_path / "out" / f"baseline-{order}" / "server.log").read_text()
        assert BASELINE_MARK not in (tmp_path / "out" / f"lbsim-{order}" / "server.log").read_text()
    assert len(ours_first) == len(theirs_first) == 1 and all(0.5 < r < 2 for r in ours_first + theirs_first)
    assert result == pytest.approx((ours_first[0] * theirs_first[0]) ** 0.5)
    assert said[-1].startswith("lbsim / baseline") and "geometric mean" in said[-1]


def test_the_baseline_lab_runs_under_the_interpreter_given(tmp_path: Path) -> None:
    # A stand-in interpreter: notes each use, then is this one (a venv of another Python works the same way).
    used = tmp_path / "used"
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\necho \"$@\" >> {used}\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    said: list[str] = []
    with baseline_copy() as copy:
        sidebyside.run(copy, repetitions=2, seconds=1.0, out_dir=tmp_path / "out", say=said.append, python=str(python))
    runs = used.read_text().splitlines()
    # Its version asked once, then one lab for each order: the baseline's; this checkout's ran on this interpreter.
    assert [r.split()[:4] for r in runs[1:]] == [["-m", "simulator.cli", "up", "-c"]] * 2, runs
    assert all("baseline-" in r for r in runs[1:]), runs
    version = ".".join(map(str, sys.version_info[:3]))
    assert said[-1].startswith(f"lbsim / baseline") and f"on Python {version}" in said[-1], said[-1]


def test_an_interpreter_that_cannot_run_lbsim_is_refused_naming_the_option(tmp_path: Path) -> None:
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named mitmproxy' >&2\nexit 1\n")
    broken.chmod(0o755)
    for python, why in ((tmp_path / "absent", "is not an executable file"), (broken, "cannot import lbsim and mitmproxy")):
        with pytest.raises(LbsimError) as e:
            sidebyside.check_python(str(python), Path(__file__).parents[1])
        assert e.value.field == "python" and why in str(e.value) and "venv" in (e.value.hint or ""), e.value
    assert sidebyside.main([str(Path(__file__).parents[1]), "--python", str(broken)]) == 1
