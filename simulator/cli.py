"""The `lbsim` command line: a thin dispatcher; each concern registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from simulator.errors import LbsimError

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


def print_error(err: LbsimError, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps({"error": err.to_dict()}, indent=2))
    else:
        # CODE: field: message, the order every finding of `lbsim cert check` uses.
        where = f"{err.field}: " if err.field else ""
        hint = f" (hint: {err.hint})" if err.hint else ""
        print(f"error: {err.code}: {where}{err.message}{hint}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LbsimError as err:
        print_error(err, getattr(args, "json", False))
        return 1
    except KeyboardInterrupt:
        return 130


def dump_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


if __name__ == "__main__":
    sys.exit(main())
