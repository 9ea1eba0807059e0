"""Where lbsim finds its own files: the built-in scenario suite, the Locust profiles, the bench's files.

A checkout keeps them at its top level (`scenarios/`, `scenarios/load/`, `benchmarks/`), where people read
and edit them. A wheel carries copies inside the package, under `simulator/_data/` (setup.py's build step
puts them there). The checkout wins when there is one, so `make setup`'s editable install runs what you edit;
an installed package (`pip install lbsim`) falls back to its own copy.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from simulator.errors import LbsimError

# The directory holding `simulator/`: a checkout's root, or site-packages.
CHECKOUT = Path(__file__).resolve().parents[1]
# Top-level directories of a checkout that a wheel carries as simulator/_data/<name>/.
SHIPPED = ("scenarios", "benchmarks")


def data_dir(name: str) -> Path:
    """`scenarios` or `benchmarks`: the checkout's, else the installed package's copy."""
    if name not in SHIPPED:
        raise ValueError(f"not a shipped directory: {name!r} (one of {', '.join(SHIPPED)})")
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / name).is_dir():
        return CHECKOUT / name
    installed = Path(str(resources.files("simulator") / "_data" / name))  # wheels install as plain files
    if not installed.is_dir():
        raise LbsimError("DataNotFound", f"lbsim's {name}/ is neither in a checkout ({CHECKOUT / name}) nor "
                         f"installed with the package ({installed})",
                         hint="reinstall lbsim from a wheel or a checkout (pip install lbsim, or make setup)")
    return installed


def data_file(name: str, *parts: str) -> Path:
    """A file under a shipped directory, e.g. data_file("benchmarks", "nginx.conf.template")."""
    return data_dir(name).joinpath(*parts)


def require(module: str, extra: str, needed_by: str) -> None:
    """Refuse clearly when an optional dependency is missing: name the extra that brings it."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise LbsimError("MissingExtra", f"{needed_by} needs {module}, which is not installed",
                         hint=f"install lbsim[{extra}]: pip install 'lbsim[{extra}]'")
