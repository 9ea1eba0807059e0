"""The `lbsim` command line: a thin dispatcher; each concern registers its own subcommands.

The command modules live in their layers (`simulator/certs/cli.py` beside the certificates it manages,
`metering/cli.py`, `faces/up.py`, `harness/run.py`, ...) and print through `simulator.output`; this module
imports them, never the other way round.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from simulator.output import dump_json, print_error, run_parsed

__all__ = ["COMMAND_MODULES", "build_parser", "dump_json", "main", "print_error"]

# Each module exposes `register(subparsers)`; its subcommands set `func(args) -> int`.
COMMAND_MODULES = [
    "simulator.certs.cli",
    "simulator.faces.up",
    "simulator.metering.cli",
    "simulator.harness.run",
    "simulator.harness.scenarios_cli",
    "simulator.load.command",
    "simulator.tools.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lbsim", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a concern not built yet must not break the others
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_parsed(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
