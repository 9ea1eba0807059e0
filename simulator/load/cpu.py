"""CPU time of a process and its descendants, read now or sampled over a run.

A lab with `workers: N` is a process and its N-1 worker children; nginx is a master and its workers. Both
`lbsim bench` and `lbsim load` report what the whole of it used, through psutil (which Locust brings).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any


def cpu_seconds(pid: int, descendants: bool = True) -> float:
    """User + system CPU time of a process and all its live descendants (or of it alone); 0.0 when it is gone."""
    return sum(t.user + t.system for t in _of_tree(pid, "cpu_times", descendants))


def context_switches(pid: int) -> tuple[int, int]:
    """How often the threads of a process and its live descendants slept (voluntary switches: waiting for
    input) and were preempted (involuntary: another process took the core); (0, 0) when it is gone. Each
    costs the thread a refill of its caches when it runs again, which an instruction count does not see."""
    slept = preempted = 0
    for proc_pid in _of_tree(pid, "pid"):  # psutil's num_ctx_switches counts the main thread only
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{proc_pid}/task"):
                with contextlib.suppress(OSError), open(f"{task.path}/status", "rb") as status:
                    for line in status:
                        if line.startswith(b"voluntary_ctxt_switches:"):
                            slept += int(line.split()[1])
                        elif line.startswith(b"nonvoluntary_ctxt_switches:"):
                            preempted += int(line.split()[1])
    return slept, preempted


def _of_tree(pid: int, what: str, descendants: bool = True) -> Iterator[Any]:
    """psutil's `what` (a method or attribute of Process) of a process and each of its live descendants."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with locust
        return
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)] if descendants else [root]
    except psutil.Error:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            value = getattr(proc, what)
            yield value() if callable(value) else value


class CpuSampler:
    """Samples a process's CPU time (its children's included: a lab's workers) in a thread, to read its usage
    over any window afterwards."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lbsim-cpu", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.samples.append((time.time(), cpu_seconds(self.pid)))
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.samples.append((time.time(), cpu_seconds(self.pid)))

    def cpu_between(self, start: float, stop: float) -> float | None:
        """CPU seconds used between two wall times (linear between samples)."""
        if len(self.samples) < 2 or stop <= start:
            return None
        return self._at(stop) - self._at(start)

    def _at(self, t: float) -> float:
        s = self.samples
        if t <= s[0][0]:
            return s[0][1]
        for (t0, c0), (t1, c1) in zip(s, s[1:]):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1)
        return s[-1][1]
