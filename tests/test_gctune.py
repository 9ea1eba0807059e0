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


def test_closed_connections_are_swept_once_as_many_closed_as_are_open() -> None:
    from simulator.dataplane.sweep import MIN_CLOSED, ClosedSweeper

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    sweeper = ClosedSweeper()
    for _ in range(MIN_CLOSED - 1):
        sweeper.closed_one(open_now=10)
    assert sweeper.collections == 0
    gc.disable()  # only the sweeper may collect: the cycle must survive until the next close
    try:
        import weakref

        garbage = Cycle()
        alive = weakref.ref(garbage)
        del garbage
        assert alive() is not None
        sweeper.closed_one(open_now=10)  # the 1,000th close: a full collection
        assert sweeper.collections == 1 and alive() is None
        for _ in range(MIN_CLOSED * 2):  # with 5,000 open, one per 5,000 closes
            sweeper.closed_one(open_now=5 * MIN_CLOSED)
        assert sweeper.collections == 1
    finally:
        gc.enable()


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024


def test_a_sweep_gives_the_heap_that_closed_connections_freed_back_to_the_system() -> None:
    import ctypes

    from simulator.dataplane.sweep import MIN_CLOSED, ClosedSweeper, malloc_trim

    assert malloc_trim is not None  # glibc, as on every machine the lab is made for
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size, count = 64 << 10, 640  # 40 MiB of heap blocks, each below malloc's mmap threshold, as OpenSSL's are
    blocks = [libc.malloc(size) for _ in range(count)]
    for block in blocks:
        ctypes.memset(block, 1, size)  # resident
    for block in blocks[:-1]:  # the last one holds the heap's top: the freed pages sit in its middle
        libc.free(block)
    try:
        freed = rss_bytes()
        sweeper = ClosedSweeper()
        for _ in range(MIN_CLOSED):
            sweeper.closed_one(open_now=0)
        assert sweeper.collections == 1
        assert freed - rss_bytes() > (count // 2) * size  # most of the 40 MiB went back
    finally:
        libc.free(blocks[-1])


def test_a_lab_process_freezes_what_it_built_to_start_and_still_collects_what_comes_later() -> None:
    """In a process of its own: freezing is for processes the lab owns (`lbsim up`, workers), not pytest's."""
    import subprocess
    import sys

    script = """
import gc, weakref
from simulator.runtime.gctune import freeze_startup

class Cycle:
    def __init__(self):
        self.me = self

kept = Cycle()
frozen = freeze_startup()
assert frozen > 1000 and gc.get_freeze_count() == frozen
assert not any(o is kept for o in gc.get_objects())  # out of every generation: no collection visits it
later = Cycle()
alive = weakref.ref(later)
del later
gc.collect()
assert alive() is None  # garbage made after the freeze is collected as usual
print("ok", frozen)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr
