"""`lbsim scenarios run [PATH...]`: run scenario files with pytest, each session on its own lab.

    lbsim scenarios run                                  # the built-in suite on the default lab
    lbsim scenarios run my_scenarios/ --junit out.xml    # your own (with pytest_plugins = ["simulator.pytest_plugin"])
    lbsim scenarios run -c lab.yaml -k mutual -- -x      # after --: any pytest option
    lbsim scenarios list                                 # the built-in suite: scenario -> seed statement

Plain `pytest scenarios/` does the same as `lbsim scenarios run`; `lbsim run` adds the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simulator.model.config import workers_argument


def pytest_args(args: argparse.Namespace) -> list[str]:
    from simulator.harness.run import suite_dir, suite_pytest_args

    paths, extra = list(args.paths), list(getattr(args, "pytest_options", []))
    if paths:
        out = [str(Path(p)) for p in paths]
    else:
        suite = suite_dir()
        out = [str(suite), *suite_pytest_args(suite)]
    if args.junit:
        out.append(f"--junitxml={args.junit}")
    if args.k:
        out += ["-k", args.k]
    if args.config:
        out += ["--lbsim-config", args.config]
    if args.time_scale is not None:
        out += ["--lbsim-time-scale", str(args.time_scale)]
    if args.workers is not None:
        out += ["--lbsim-workers", str(args.workers)]
    for requirement in args.require or []:
        out += ["--lbsim-require", requirement]
    if args.client_cert:
        out += ["--lbsim-client-cert", args.client_cert, "--lbsim-client-key", args.client_key or ""]
    return out + extra


class _PytestPassthroughParser(argparse.ArgumentParser):
    """Everything after the first `--` goes to pytest untouched, wherever the paths and our options stand.

    (Plain argparse consumes the `nargs="*"` paths at their first run, so `PATH --junit F -- -x` would leave
    `-x` unrecognised.)"""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        args = list(args) if args is not None else []
        extra: list[str] = []
        if "--" in args:
            cut = args.index("--")
            args, extra = args[:cut], args[cut + 1:]
        namespace, rest = super().parse_known_args(args, namespace)
        namespace.pytest_options = extra
        return namespace, rest


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    return int(pytest.main(pytest_args(args), plugins=_plugin_for(args.paths)))


def _plugin_for(paths: list[str]) -> list[Any]:
    """Scenario files outside the built-in suite may not load the plugin themselves: load it for them."""
    import importlib

    return [] if not paths else [importlib.import_module("simulator.pytest_plugin")]


class _Lister:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def pytest_configure(self, config: Any) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:  # our table replaces pytest's listing
            config.pluginmanager.unregister(reporter)

    pytest_configure.pytest_impl = {"trylast": True}  # type: ignore[attr-defined]

    def pytest_collection_finish(self, session: Any) -> None:
        for item in session.items:
            marker = item.get_closest_marker("seed")
            self.rows.append((item.nodeid.split("scenarios/", 1)[-1], marker.args[0] if marker else ""))


def cmd_list(args: argparse.Namespace) -> int:
    import pytest

    lister = _Lister()
    code = pytest.main([*pytest_args(args), "--collect-only"], plugins=[lister, *_plugin_for(args.paths)])
    width = max((len(name) for name, _ in lister.rows), default=0)
    for name, statement in lister.rows:
        print(f"{name:<{width}}  {statement}")
    return int(code)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenarios", help="run your own scenarios (pytest files) against a lab, or list the built-in ones",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="scenarios_command", metavar="SUBCOMMAND", required=True,
                                parser_class=_PytestPassthroughParser)
    for name, func, help_text in (("run", cmd_run, "run scenario files (default: the built-in suite)"),
                                  ("list", cmd_list, "list scenarios and the seed statement each checks")):
        c = commands.add_parser(name, help=help_text)
        c.add_argument("paths", nargs="*", metavar="PATH",
                       help="scenario files or folders (default: the built-in suite); after --: pytest options")
        c.add_argument("--junit", help="write JUnit XML here")
        c.add_argument("-k", help="pytest -k expression")
        c.add_argument("-c", "--config", help="lab YAML the scenarios run against (default: the built-in default lab)")
        c.add_argument("--time-scale", type=float, help="vendor timers x this (default 0.01)")
        c.add_argument("--workers", type=workers_argument, metavar="N|auto",
                       help="processes sharing every listener port, or auto: one per core (overrides the lab\'s `workers`)")
        c.add_argument("--require", action="append", metavar="[LISTENER=]BASELINE", help="required compliance baseline")
        c.add_argument("--client-cert", help="a client certificate your mutual listeners' CA trusts")
        c.add_argument("--client-key", help="its private key")
        c.set_defaults(func=func)
