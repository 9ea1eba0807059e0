"""The pytest plugin users name in their conftest.py: ``pytest_plugins = ["simulator.pytest_plugin"]``.

Kept at this path for users; the code is in :mod:`simulator.harness.plugin`.
"""

from simulator.harness.plugin import *  # noqa: F401,F403  (fixtures and hooks, re-exported for pytest)
