"""What makes an installed lbsim behave like a checkout (tests/test_wheel.py runs the real wheel): the data
lookup, the extras' messages, and the built-in suite's own pytest configuration."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

import pytest

from simulator.errors import LbsimError
from simulator.harness.run import suite_dir, suite_pytest_args
from simulator.resources import data_dir, data_file, require

ROOT = Path(__file__).resolve().parent.parent


def test_a_checkout_uses_its_own_top_level_directories() -> None:
    assert data_dir("scenarios") == ROOT / "scenarios" == suite_dir()
    assert data_file("benchmarks", "nginx.conf.template") == ROOT / "benchmarks" / "nginx.conf.template"
    with pytest.raises(ValueError, match="not a shipped directory"):
        data_dir("tests")


def test_a_missing_extra_is_named() -> None:
    require("yaml", "load", "lbsim load")  # present: nothing happens
    with pytest.raises(LbsimError) as refused:
        require("lbsim_no_such_module", "load", "lbsim load")
    assert refused.value.code == "MissingExtra"
    assert "lbsim load needs lbsim_no_such_module" in str(refused.value) and "lbsim[load]" in str(refused.value)


def test_the_suites_pytest_configuration_matches_pyproject() -> None:
    """`lbsim run` reads simulator/harness/suite.ini (shipped in the wheel), `pytest scenarios/` in a checkout
    reads pyproject.toml: the same options either way."""
    args = suite_pytest_args(ROOT / "scenarios")
    ini = configparser.ConfigParser()
    ini.read(args[args.index("-c") + 1])
    suite = dict(ini["pytest"])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert suite["addopts"] == project["addopts"]
    assert int(suite["timeout"]) == project["timeout"]
    assert suite["filterwarnings"].split() == project["filterwarnings"]
    assert [m.strip() for m in suite["markers"].strip().splitlines()] == project["markers"]
    assert args[args.index("--rootdir") + 1] == str(ROOT)  # node ids read scenarios/test_... as from a checkout
