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
from simulator.runtime import optimize

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


# What `lbsim --help` tells a user (the module docstring above is for whoever edits this file).
DESCRIPTION = """\
lbsim simulates the HTTPS listeners of cloud load balancers (Alibaba Cloud SLB as `aliyun-slb`, Tencent
Cloud CLB as `tencent-clb`) on your machine: real TLS with each vendor's policies and certificate rules,
one-way and mutual authentication, backends, a management API, and traffic metered to the byte against
what the vendor bills. Test your clients, certificates and TLS settings against it before the cloud."""

EPILOG = """\
start here:
  lbsim up                      start the built-in lab; prints its listeners and curl commands to try
  lbsim run                     check the vendor statements against a lab; writes lbsim-out/run/report.md
  lbsim cert check --cert C --key K --profile aliyun-slb
                                would the vendor accept this certificate?

Every command takes -h (e.g. `lbsim run -h`). Documentation: README.md and docs/ in the lbsim
repository (docs/run.md for the report, docs/certificates.md, docs/tls-policies.md, docs/load.md,
docs/scenarios.md for writing your own scenarios)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lbsim", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    if argv is None and optimize.wants_optimized(sys.argv[1:]):  # only a real command line, never in-process
        optimize.restart_optimized(sys.argv[1:])
    return run_parsed(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
