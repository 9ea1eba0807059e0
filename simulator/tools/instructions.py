"""Machine instructions per request of an lbsim listener, OpenSSL's included: work the machine's noise does not move.

Timing resolves about 5 % on this shared machine (`lbsim bench`, `simulator.tools.sidebyside`), and counting
Python calls (`simulator.tools.callcount`) sees neither what a call costs nor the C below it: OpenSSL's
handshake, the interpreter, malloc. This counts the instructions the lab's process executes while h2load sends a
fixed number of requests, under valgrind's callgrind (`valgrind` is a Debian package; `make setup` installs
it). Instructions are not time either (a cache miss or a long division costs more than one, and the two cores'
contention is not in them), but the same code counts the same to a fraction of a percent, so a change of 1 %
shows. Use it to tell which of two checkouts does less work; the bench still says what that buys.

    python -m simulator.tools.instructions --baseline /tmp/base --figure resumed_connections

The lab runs about 50 times slower under callgrind, only while counting (`--instr-atstart=no`; h2load's
warm-up and the lab's start run uncounted, though still under valgrind): 500 connections take about 30 s.
Each h2load run opens its first 20 connections with full handshakes, so the resumed figure has a few in it
(the report prints how many handshakes were resumed): one full handshake more among 500 connections moves
that figure by 0.2 %, so compare resumed figures with the same number resumed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from simulator.tools.bench import FIGURES, LbsimServer
from simulator.tools.callcount import format_counts, labs_under_load, parse, served

REQUESTS = {"new_connections": 500, "resumed_connections": 500, "keepalive": 5_000}
START_TIMEOUT = 300  # seconds: the lab starts under valgrind, several times slower than alone
# Where a function's own instructions are counted, by the file of its code (the first pattern that matches).
OBJECTS = (
    ("OpenSSL (cryptography's _rust)", re.compile(r"cryptography/hazmat/bindings/_rust")),
    ("Python interpreter", re.compile(r"libpython|/bin/python")),
    ("libc (malloc, memcpy, ...)", re.compile(r"/libc\.so|/libm\.so")),
    ("thread-local lookups (ld.so)", re.compile(r"/ld-linux")),
    ("other C extensions", re.compile(r"\.so")),
)


class CountedLab(LbsimServer):
    """`lbsim up` of a checkout under callgrind, counting nothing until told (one process: `workers: 1`)."""

    requests = 0  # served in the last counted window
    start_timeout = START_TIMEOUT

    def command(self) -> list[str]:
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={self.workdir / 'callgrind.out'}",
                sys.executable, "-O", "-m", "simulator.cli", "up", "-c", str(self.config), "--out", str(self.workdir)]

    def count(self, send: Callable[[], int], name: str) -> Counter[str]:
        """Instructions by object while `send()` runs (it returns the requests served), kept as `name`.callgrind."""
        assert self.proc is not None
        pid = str(self.proc.pid)  # valgrind runs the lab in its own process
        dumps = set(self.workdir.glob("callgrind.out.*"))
        _control("-i", "on", pid)
        self.requests = send()
        _control("-i", "off", pid)
        _control("-d", pid)  # writes callgrind.out.N with what was counted since the last dump, then zeroes
        deadline = time.monotonic() + 60
        while not (new := set(self.workdir.glob("callgrind.out.*")) - dumps):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label} wrote no instruction counts: {self.tail()}")
            time.sleep(0.1)
        (dump,) = new
        return instructions_by_object(dump.replace(dump.with_name(f"{name}.callgrind")))


def _control(*args: str) -> None:
    done = subprocess.run(["callgrind_control", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(args)} failed: {done.stdout}{done.stderr}")


def instructions_by_object(dump: Path) -> Counter[str]:
    """Each function's own instructions in a callgrind dump, added up by `OBJECTS`; the whole under "total".

    The format (valgrind's docs, "Callgrind Format Specification"): `ob=` names the object of the functions
    that follow, a line of numbers is a position and its cost, and the line after `calls=` is the cost of a
    call (the callee's, counted where it runs), not the caller's own."""
    names: dict[str, str] = {}  # callgrind's compressed object names ("(3)" -> the path), set by ob= and cob=
    out: Counter[str] = Counter()
    component, skip = _component(""), False  # the component of the current `ob=`, matched once per object line
    with dump.open(errors="replace") as f:
        for line in f:
            if line.startswith("ob="):
                component = _component(_name(names, line[3:].strip()))
            elif line.startswith("cob="):  # a callee's object: it may name a compressed id first
                _name(names, line[4:].strip())
            elif line.startswith("calls="):
                skip = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if skip:
                    skip = False
                    continue
                fields = line.split()
                if len(fields) > 1:
                    out[component] += int(fields[1])
            elif line.startswith("totals:"):
                out["total"] = int(line.split()[1])
    return out


def _name(names: dict[str, str], text: str) -> str:
    m = re.match(r"(\(\d+\))\s*(.*)", text)
    if m is None:
        return text
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), "")


def _component(path: str) -> str:
    return next((name for name, pattern in OBJECTS if pattern.search(path)), "other")


def run(baselines: list[Path], figures: tuple[str, ...] = FIGURES, requests: dict[str, int] | None = None,
        out_dir: Path | None = None, say: Callable[[str], None] = print) -> dict[str, dict[str, Counter[str]]]:
    """Instructions per request by object: {figure: {lab label: Counter}}, the whole under "total"."""
    counts = {**REQUESTS, **(requests or {})}
    results: dict[str, dict[str, Counter[str]]] = {}
    with labs_under_load(CountedLab, baselines, figures, out_dir, "lbsim-instructions-", say,
                         ("valgrind",)) as (load, labs, figures):
        for figure in figures:
            results[figure] = {}
            for lab in labs:
                served(load, lab, figure, 100)()  # warm-up, not counted
                offset = lab.log_size()
                counted = lab.count(served(load, lab, figure, counts[figure]), figure)
                per = Counter({k: v / lab.requests for k, v in counted.items()})
                results[figure][lab.label] = per
                resumed = ""
                if figure != "keepalive" and offset is not None:
                    shaken, again = lab.handshakes_since(offset)
                    resumed = f", {again:,} of {shaken:,} handshakes resumed"
                say(f"{figure:20} {lab.label:24} {per['total'] / 1e6:7.3f} M instructions per request "
                    f"({lab.requests:,} requests{resumed})")
    say("\n" + format_counts(results, "thousand instructions per request", [n for n, _ in OBJECTS] + ["other", "total"],
                             lambda v: f"{v / 1000:,.0f}"))
    return results


def main(argv: list[str] | None = None) -> int:
    return parse("python -m simulator.tools.instructions", __doc__.splitlines()[0],
                 "requests per count (default: 500 per new-connection figure, 5,000 keep-alive)", argv, run)


if __name__ == "__main__":
    sys.exit(main())
