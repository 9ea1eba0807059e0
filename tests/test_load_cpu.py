"""What `lbsim load` and `lbsim bench` count as a process's CPU (simulator.load.cpu): its children's too.

A lab with `workers: N` serves from N-1 child processes besides its own, so a figure read off the lab's pid
alone would leave out most of what it used.
"""

from __future__ import annotations

import subprocess
import sys
import time

from simulator.load.cpu import CpuSampler, context_switches, cpu_seconds

# An idle parent whose child spins: the shape of a lab whose workers do the serving.
PARENT = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'while True: pass'])"


def test_the_cpu_of_a_process_includes_its_childrens() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT])
    try:
        time.sleep(0.3)  # the child is running
        sampler = CpuSampler(parent.pid, interval=0.1)
        start = time.time()
        time.sleep(1.0)
        stop = time.time()
        sampler.stop()
        used = sampler.cpu_between(start, stop)
        assert used is not None and used > 0.2, used  # the child spun; the parent alone used ~0
        assert cpu_seconds(parent.pid) >= sampler.samples[-1][1] - 0.01
        assert cpu_seconds(parent.pid, descendants=False) < 0.5 * cpu_seconds(parent.pid)  # the parent alone: idle
    finally:
        subprocess.run(["pkill", "-KILL", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()


def test_a_process_that_is_gone_counts_nothing() -> None:
    assert cpu_seconds(2**22 + 12345) == 0.0  # above the largest pid Linux allows: no such process



# Three children: one naps in short sleeps in a thread (the main thread only waits for it, as a lab's main
# thread is not always the busy one); two spin on the same core and take it from each other.
NAPPING_AND_CROWDED = """\
import subprocess, sys
nap = "import threading, time\\ndef nap():\\n    while True: time.sleep(0.002)\\nthreading.Thread(target=nap).start()"
spin = "import os; os.sched_setaffinity(0, {0})\\nwhile True: pass"
procs = [subprocess.Popen([sys.executable, '-c', code]) for code in (nap, spin, spin)]
procs[0].wait()
"""


def test_context_switches_count_a_process_trees_sleeps_and_preemptions() -> None:
    parent = subprocess.Popen([sys.executable, "-c", NAPPING_AND_CROWDED])
    try:
        time.sleep(0.5)  # the children are running
        before = context_switches(parent.pid)
        time.sleep(0.5)
        slept, preempted = (after - b for after, b in zip(context_switches(parent.pid), before))
        assert slept > 50, slept  # the napping thread's sleeps (up to 250 in 0.5 s); the spinners never wait
        assert preempted > 5, preempted  # the two spinners on one core, every few milliseconds
    finally:
        subprocess.run(["pkill", "-KILL", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()
    assert context_switches(2**22 + 12345) == (0, 0)  # no such process
