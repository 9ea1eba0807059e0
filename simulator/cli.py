"""The `lbsim` command line."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("lbsim: not implemented yet", file=sys.stderr)
    return 2
