"""The built-in scenario suite: one scenario (or parametrised family) per statement of the two vendor seeds.

The fixtures come from `simulator.pytest_plugin` (docs/scenarios.md): by default one built-in lab per session
with vendor timers 100x faster; `lbsim run` hands its own lab in; `--lbsim-config lab.yaml` picks yours.
"""

pytest_plugins = ["simulator.pytest_plugin"]
