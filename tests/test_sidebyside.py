"""simulator.tools.sidebyside: two checkouts' labs under load at the same time, CPU per request of each.

Run on two shared cores, the ratio of the same code to itself is only roughly 1 in a second of load; the
test checks the mechanics (both labs served, each its own code, a ratio per repetition), not precision
(docs/performance.md, "Round seven", gives the spread). About 15 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import BASELINE_MARK, baseline_copy

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
