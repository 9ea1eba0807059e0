"""A lab raises the collector's young threshold so held connections do not make every handshake pay for them."""

from __future__ import annotations

import gc

from simulator.runtime.gctune import THRESHOLD0, tune_gc


def test_the_young_threshold_is_raised_never_lowered_nor_turned_on() -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert tune_gc() == (THRESHOLD0, 10, 10)
        gc.set_threshold(THRESHOLD0 * 3, 5, 5)
        assert tune_gc() == (THRESHOLD0 * 3, 5, 5)
        gc.set_threshold(0, 10, 10)  # someone switched the collector off: not ours to switch on
        assert tune_gc()[0] == 0
    finally:
        gc.set_threshold(*saved)


def test_a_started_lab_runs_with_the_raised_threshold(lab) -> None:
    assert gc.get_threshold()[0] >= THRESHOLD0
