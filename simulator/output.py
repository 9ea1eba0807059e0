"""What every command prints: JSON dumps, errors, and the runner that turns an `LbsimError` into exit code 1.

It sits beside `simulator.errors` at the bottom, so that each concern's command module (`certs/cli.py`,
`metering/cli.py`, `harness/run.py`, ...) prints the same way without importing `simulator.cli`, which
imports them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from simulator.errors import LbsimError


def dump_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def print_error(err: LbsimError, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps({"error": err.to_dict()}, indent=2))
    else:
        # CODE: field: message, the order every finding of `lbsim cert check` uses.
        where = f"{err.field}: " if err.field else ""
        hint = f" (hint: {err.hint})" if err.hint else ""
        print(f"error: {err.code}: {where}{err.message}{hint}", file=sys.stderr)


def run_parsed(args: argparse.Namespace) -> int:
    """Run the subcommand `args.func`; an `LbsimError` is printed (as JSON with ``--json``) and exits 1."""
    try:
        return int(args.func(args) or 0)
    except LbsimError as err:
        print_error(err, getattr(args, "json", False))
        return 1
    except KeyboardInterrupt:
        return 130


def run_command(register: Callable[[Any], None], argv: Sequence[str], prog: str = "lbsim") -> int:
    """Parse `argv` with one concern's subcommands only (a module's own ``python -m``) and run it."""
    parser = argparse.ArgumentParser(prog=prog)
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    return run_parsed(parser.parse_args(list(argv)))
