"""The one build step pyproject.toml cannot declare: a wheel carries the checkout's top-level `scenarios/`
(the built-in suite, its seed map and the Locust profiles) and `benchmarks/` (the bench's nginx template and
shim) as `simulator/_data/`, where `simulator.resources` finds them once installed. The checkout keeps them at
its top level, where people read and edit them; an editable install (`make setup`) reads them there."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("scenarios", "benchmarks")  # simulator/resources.py SHIPPED
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's own directories
            return
        target = Path(self.build_lib) / "simulator" / "_data"
        shutil.rmtree(target, ignore_errors=True)  # nothing stale from an earlier build
        for name in SHIPPED:
            shutil.copytree(ROOT / name, target / name, ignore=SKIP)


setup(cmdclass={"build_py": BuildPyWithData})
