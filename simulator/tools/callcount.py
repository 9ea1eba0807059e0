"""Python function calls per request of an lbsim listener: a measure of its work that the machine's noise does not move.

`lbsim bench` times the listener, and on a shared machine its rounds move by up to 20 %, more than most single
changes do (docs/performance.md, "Round seven"). How many functions a listener calls per request (cProfile's
count, built-ins included) depends on the code path alone, so two checkouts compared this way differ by what
the change did, to a fraction of a percent. Calls are not time: a change that makes calls cheaper, or moves work
into C, does not show here; one that removes calls costs less only if they cost something. Use it beside the
bench, not instead of it.

    python -m simulator.tools.callcount                          # this checkout: the three figures
    python -m simulator.tools.callcount --baseline /tmp/base     # and another checkout, with the ratio

Each lab is `lbsim up` (under -O, as it serves) run by a small wrapper that counts calls only between SIGUSR1
and SIGUSR2: from just before h2load sends a fixed number of requests to just after, warm-up and start-up left out.
The baseline needs no support of its own: the wrapper is the only code of this checkout it runs.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from simulator.backends import BackendProcess
from simulator.output import run_parsed
from simulator.tools.bench import (FIGURES, FULL_HANDSHAKES, PROFILE_COMPONENTS, LbsimServer, Load,
                                   baseline_labels, build_shim, check_baseline, ensure_tools, mint, profile_component,
                                   required, running, work_dir)

# Runs `python -m simulator.cli ARGS` of whichever checkout is first on the path, counting calls in a window.
# A profile of its own per window: cProfile adds up every window of one Profile.
WRAPPER = """\
import cProfile, os, runpy, signal, sys
target, profile = sys.argv.pop(1), None
def start(*_):
    global profile
    profile = cProfile.Profile()
    profile.enable()
def dump(*_):
    profile.disable()
    profile.dump_stats(target + ".part")
    os.replace(target + ".part", target)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, dump)
sys.argv[0] = "lbsim"
runpy.run_module("simulator.cli", run_name="__main__", alter_sys=True)
"""
REQUESTS = {"new_connections": 1_000, "resumed_connections": 1_000, "keepalive": 10_000}
BUILTIN = "~"  # cProfile's file name for built-in functions: they count for the component that calls them


class CountedLab(LbsimServer):
    """`lbsim up` of a checkout under the call-counting wrapper (one process: `workers: 1`)."""

    requests = 0  # served in the last counted window

    def command(self) -> list[str]:
        target = str(self.workdir / "calls.prof")
        return [sys.executable, "-O", "-c", WRAPPER, target, "up", "-c", str(self.config), "--out", str(self.workdir)]

    def count(self, send: Callable[[], int], name: str) -> pstats.Stats:
        """The calls this lab makes while `send()` runs (it returns the requests served), kept as `name`.prof."""
        assert self.proc is not None
        target = self.workdir / "calls.prof"
        target.unlink(missing_ok=True)
        os.kill(self.proc.pid, signal.SIGUSR1)
        time.sleep(0.2)  # the handler runs when the lab's loop next wakes (the signal wakes it)
        self.requests = send()
        os.kill(self.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not target.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label} wrote no call counts: {self.tail()}")
            time.sleep(0.05)
        return pstats.Stats(str(target.replace(target.with_name(f"{name}.prof"))))


def calls_by_component(stats: pstats.Stats) -> Counter[str]:
    """Calls per component; a built-in's calls go to the components of its callers, in their proportions."""
    out: Counter[str] = Counter()
    for (file, _line, _name), (_cc, calls, _tt, _ct, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if file != BUILTIN or not callers:
            out[profile_component(file)] += calls
            continue
        # A caller's entry is (calls, primitive calls, ...): the reverse of a function's own (cProfile's order).
        for (caller_file, _l, _n), (caller_calls, *_rest) in callers.items():
            out[profile_component(caller_file)] += caller_calls
    return out


def served(load: Load, lab: LbsimServer, figure: str, requests: int) -> Callable[[], int]:
    """A run of exactly `requests` of `figure` against `lab`; returns how many were served, all of them 2xx."""

    def send() -> int:
        result = load.run(lab, figure, 60, requests=requests)
        if result.errors or result.non_2xx:
            raise RuntimeError(f"h2load: {result.errors} errors, {result.non_2xx} answers not 2xx")
        return result.requests

    return send


@contextmanager
def labs_under_load(kind: type[LbsimServer], baselines: list[Path], figures: tuple[str, ...], out_dir: Path | None,
                    prefix: str, say: Callable[[str], None], tools: tuple[str, ...] = ()
                    ) -> Iterator[tuple[Load, list[Any], tuple[str, ...]]]:
    """This checkout's lab and each baseline's, started as `kind` behind one backend, and h2load with the
    full-handshake shim when a C compiler builds it: (the load, the labs, the figures it can measure).
    `tools`: more that must be on the machine (installed as the bench installs its own)."""
    found = ensure_tools(True, say, ("h2load", "cc", *tools))
    h2load = required(found, "h2load")
    for tool in tools:
        required(found, tool)
    work = work_dir(out_dir, prefix)
    shim = build_shim(work, say)
    files = mint(work)
    with BackendProcess(["bench"]) as backend:
        labels = ["lbsim", *baseline_labels(baselines)]
        labs = [kind(work / f"lab-{i}", files["cert"], files["key"], backend.addresses["bench"], label=label, code=code)
                for i, (label, code) in enumerate(zip(labels, [None, *baselines]))]
        with running(labs, str(files["ca"])):  # type: ignore[arg-type]
            yield Load("h2load", h2load, 20, shim), labs, tuple(f for f in figures if f not in FULL_HANDSHAKES or shim)


def run(baselines: list[Path], figures: tuple[str, ...] = FIGURES, requests: dict[str, int] | None = None,
        out_dir: Path | None = None, say: Callable[[str], None] = print) -> dict[str, dict[str, Counter[str]]]:
    """Calls per request by component: {figure: {lab label: Counter}}, the total under "total"."""
    counts = {**REQUESTS, **(requests or {})}
    results: dict[str, dict[str, Counter[str]]] = {}
    with labs_under_load(CountedLab, baselines, figures, out_dir, "lbsim-calls-", say) as (load, labs, figures):
        for figure in figures:
            results[figure] = {}
            for lab in labs:
                served(load, lab, figure, 200)()  # warm-up, not counted
                stats = lab.count(served(load, lab, figure, counts[figure]), figure)
                per = Counter({k: v / lab.requests for k, v in calls_by_component(stats).items()})
                per["total"] = stats.total_calls / lab.requests  # type: ignore[attr-defined]
                results[figure][lab.label] = per
                say(f"{figure:20} {lab.label:24} {per['total']:8,.1f} calls per request ({lab.requests:,} requests)")
    say("\n" + format_counts(results))
    return results


def format_counts(results: dict[str, dict[str, Counter[str]]], heading: str = "calls per request",
                  names: list[str] | None = None, value: Callable[[float], str] = "{:,.1f}".format) -> str:
    """A table per figure: a row per component (`names`, in order; rows of zeros left out), a column per lab,
    and each lab's ratio to every baseline."""
    lines = []
    for figure, by_lab in results.items():
        labels = list(by_lab)
        head = f"| {heading} | " + " | ".join(labels)
        if len(labels) > 1:
            head += " | " + " | ".join(f"lbsim / {b}" for b in labels[1:])
        lines += [f"{figure}:", "", head + " |", "|" + " --- |" * (1 + len(labels) + max(0, len(labels) - 1))]
        for name in names or [n for n, _ in PROFILE_COMPONENTS] + ["other", "total"]:
            values = [by_lab[label].get(name, 0.0) for label in labels]
            if not any(values):
                continue
            row = f"| {name} | " + " | ".join(value(v) for v in values)
            if len(labels) > 1:
                row += " | " + " | ".join(f"{values[0] / v:.3f}x" if v else "-" for v in values[1:])
            lines.append(row + " |")
        lines.append("")
    return "\n".join(lines)


def parse(prog: str, description: str, requests_help: str, argv: list[str] | None,
          run_it: Callable[[list[Path], tuple[str, ...], dict[str, int] | None, Path | None], object]) -> int:
    """The command line that callcount and instructions share: baselines, figures, a count, an output folder."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--baseline", action="append", default=[], metavar="DIR",
                   help="also count another lbsim checkout (a git worktree of an older commit)")
    p.add_argument("--figure", action="append", choices=FIGURES, help="only these figures (default: all three)")
    p.add_argument("--requests", type=int, help=requests_help)
    p.add_argument("--out", type=Path, help="keep the labs' files and counts here (default: a temp dir)")

    def counted(args: argparse.Namespace) -> None:
        figures = tuple(args.figure or FIGURES)
        run_it([check_baseline(b) for b in args.baseline], figures,
               {f: args.requests for f in figures} if args.requests else None, args.out)

    p.set_defaults(func=counted)
    args = p.parse_args(argv)
    if args.requests is not None and args.requests < 1:
        p.error("--requests: at least 1")
    return run_parsed(args)  # a bad --baseline: the message and exit 1, as the lbsim commands do


def main(argv: list[str] | None = None) -> int:
    return parse("python -m simulator.tools.callcount", __doc__.splitlines()[0],
                 "requests per count (default: 1,000 per new-connection figure, 10,000 keep-alive)", argv, run)


if __name__ == "__main__":
    sys.exit(main())
