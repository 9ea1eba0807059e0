"""CPU per keep-alive request of two lbsim checkouts, measured at the same time, side by side.

`lbsim bench --baseline` interleaves its servers round by round, so a busy minute of the machine can fall on
one and not the other: on two shared cores its medians move by up to 20 %. Here both labs serve at once, each
with its own backend process and its own h2load, for the same seconds, so whatever else the machine does
hits both alike; each repetition gives the ratio of their CPU per request (process and children, as the
bench counts it), half of them with each lab started first (`run`). The labs share two cores with two load
tools, so the absolute figures are not the bench's: only the ratio is the result. Keep-alive requests only
(h2load cannot end a timed run that reconnects). With `--python` the baseline's lab runs under another
interpreter (a venv with lbsim's dependencies): the same checkout given as the baseline then compares
interpreters.

    python -m simulator.tools.sidebyside /tmp/base            # this checkout against /tmp/base, 6 x 8 s
    python -m simulator.tools.sidebyside . --python /tmp/v313/bin/python   # this code on another Python
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from simulator.backends import BackendProcess
from simulator.errors import LbsimError
from simulator.output import run_parsed
from simulator.tools.bench import (LbsimServer, baseline_labels, check_baseline, code_first, ensure_tools, mint, required,
                                   run_load, running, work_dir)


def cpu_per_request(labs: list[LbsimServer], h2load: str, seconds: float, connections: int = 20) -> list[float]:
    """One repetition: every lab under its own h2load for the same `seconds`; ms of lab CPU per request each."""
    before = [lab.cpu() for lab in labs]
    with ThreadPoolExecutor(len(labs)) as pool:  # the load tools run at once; an error is raised here
        results = list(pool.map(lambda lab: run_load("h2load", h2load, lab.port, seconds, connections,
                                                     new_connections=False), labs))
    out = []
    for lab, cpu0, result in zip(labs, before, results):
        if not result.requests or result.errors or result.non_2xx:
            raise RuntimeError(f"{lab.label}: {result.requests} requests, {result.errors} errors, "
                               f"{result.non_2xx} not 2xx")
        out.append((lab.cpu() - cpu0) * 1000 / result.requests)
    return out


def check_python(python: str, code: Path) -> tuple[str, str]:
    """An interpreter that can run the lab of checkout `code`, and its version; or a clear error naming
    `--python`. It needs lbsim's dependencies; lbsim itself comes from `code`, as the lab will take it."""
    hint = "a venv's python with lbsim's dependencies, e.g. python3.13 -m venv /tmp/v; /tmp/v/bin/pip install -e ."
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise LbsimError("InvalidPython", f"{python} is not an executable file", field="python", hint=hint)
    env = code_first(dict(os.environ), code)
    done = subprocess.run([python, "-c", "import platform, simulator.cli, mitmproxy; print(platform.python_version())"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=str(code))
    if done.returncode != 0:
        raise LbsimError("InvalidPython", f"{python} cannot import lbsim and mitmproxy: "
                         f"{(done.stderr.strip().splitlines() or ['?'])[-1]}", field="python", hint=hint)
    return python, done.stdout.strip().splitlines()[-1]  # last: the checkout may print on import


def run(baseline: Path, repetitions: int = 6, seconds: float = 8.0, out_dir: Path | None = None,
        say: Callable[[str], None] = print, python: str | None = None) -> tuple[float, list[float], list[float]]:
    """This checkout's CPU per keep-alive request over the baseline's: (the result, the ratios of each order).

    In one comparison of a commit with itself on this machine, the lab started (and driven) first came out
    7-9 % cheaper per request whichever it was; in another, neither was. So half the repetitions run with this
    checkout's lab started first and half, on fresh labs, with the baseline's first, and the result is the
    geometric mean of the two orders' medians, in which such a bias cancels. A commit against itself gave
    0.967x that way (docs/performance.md, "Round seven"): differences under about 5 % are not resolved.
    `python`: the baseline's lab runs under this interpreter (`check_python`), this checkout's under this one.
    """
    version = check_python(python, baseline)[1] if python is not None else None  # first: a bad one starts nothing
    h2load = required(ensure_tools(True, say, ("h2load",)), "h2load")
    work = work_dir(out_dir, "lbsim-sidebyside-")
    files = mint(work)
    (label,) = baseline_labels([baseline])
    if version is not None:
        label += f" on Python {version}"
    orders: list[list[float]] = [[], []]
    with BackendProcess(["bench"]) as ours_backend, BackendProcess(["bench"]) as their_backend:
        for swapped in (False, True):
            ours = LbsimServer(work / f"lbsim-{int(swapped)}", files["cert"], files["key"], ours_backend.addresses["bench"])
            theirs = LbsimServer(work / f"baseline-{int(swapped)}", files["cert"], files["key"],
                                 their_backend.addresses["bench"], label=label, code=baseline, python=python)
            labs = [theirs, ours] if swapped else [ours, theirs]
            with running(labs, str(files["ca"])):  # type: ignore[list-item]
                cpu_per_request(labs, h2load, 1.0)  # warm-up
                for rep in range((repetitions + 1 - swapped) // 2):
                    first, second = cpu_per_request(labs, h2load, seconds)
                    ours_ms, theirs_ms = (second, first) if swapped else (first, second)
                    orders[swapped].append(ours_ms / theirs_ms)
                    say(f"{label if swapped else 'lbsim'} started first, repetition {rep + 1}: lbsim {ours_ms:.3f} ms, "
                        f"{label} {theirs_ms:.3f} ms of CPU per keep-alive request: {orders[swapped][-1]:.3f}x")
    medians = [statistics.median(o) for o in orders]
    result = (medians[0] * medians[1]) ** 0.5
    say(f"lbsim / {label}, CPU per keep-alive request, side by side: {result:.3f}x (geometric mean of "
        f"{medians[0]:.3f}x with lbsim started first and {medians[1]:.3f}x with {label} first; "
        f"{repetitions} repetitions of {seconds:g} s, from {min(orders[0] + orders[1]):.3f}x to {max(orders[0] + orders[1]):.3f}x)")
    return result, orders[0], orders[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator.tools.sidebyside", description=__doc__.splitlines()[0])
    p.add_argument("baseline", help="the other lbsim checkout (a git worktree of an older commit)")
    p.add_argument("--repetitions", type=int, default=6)
    p.add_argument("--seconds", type=float, default=8.0, help="seconds of load per repetition (default 8)")
    p.add_argument("--out", type=Path, help="keep the labs' files here (default: a temp dir)")
    p.add_argument("--python", help="run the baseline's lab under this interpreter (a venv's python with lbsim's"
                   " dependencies); with this checkout as the baseline, it compares interpreters")
    p.set_defaults(func=_measured)
    args = p.parse_args(argv)
    if args.repetitions < 2:
        p.error("--repetitions: at least 2 (half of them with each lab started first)")
    return run_parsed(args)  # a bad baseline: the message and exit 1, as the lbsim commands do


def _measured(args: argparse.Namespace) -> None:
    run(check_baseline(args.baseline), args.repetitions, args.seconds, args.out, python=args.python)


if __name__ == "__main__":
    sys.exit(main())
