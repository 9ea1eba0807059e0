"""A process that only serves a lab runs without Python's debug checks, as under `python -O`.

mitmproxy checks its own code in debug mode only: each state of its layers is wrapped to assert the type
of event it expects (`mitmproxy.proxy.utils.expect`), each HTTP message has its fields type-checked when it
is made (`MessageData.__post_init__`), and its `assert`s run. Python drops all of them under `-O`. They
catch bugs in mitmproxy, not in clients (a client's bytes are parsed and refused the same either way), and
they cost a keep-alive request about 19 % of its CPU and a full handshake about 8 % (docs/performance.md,
"Round five").

So `lbsim up` starts itself again under `-O` before it does anything else (`os.execv`: the same process,
pid and arguments), and starts its worker processes under it too. Labs started inside another process
(tests, notebooks, `lbsim run`'s suite) keep every check, and so does `lbsim up --debug-checks` (or
`LBSIM_DEBUG_CHECKS=1` in the environment).

One check of mitmproxy's is not an `assert`: each hook and command-completion event it builds refuses, in its
`__new__`, to be an abstract class or a class that is not a dataclass (mitmproxy's own programming errors).
About fifteen are built per connection and five per keep-alive request, 0.3-0.5 µs each; a lab started under
`-O` drops these too (`drop_construction_checks`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

DEBUG_FLAG = "--debug-checks"
DEBUG_ENV = "LBSIM_DEBUG_CHECKS"


def wants_optimized(args: list[str]) -> bool:
    """Whether `lbsim ARGS` serves a lab and should start again under -O (not already, not asked to keep checks)."""
    return (bool(args) and args[0] == "up" and not sys.flags.optimize and DEBUG_FLAG not in args
            and not {"-h", "--help"} & set(args) and os.environ.get(DEBUG_ENV, "") in ("", "0"))


def restart_optimized(args: list[str]) -> None:
    """Replace this process by `python -O -m simulator.cli ARGS` (returns only if exec fails)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-O", "-m", "simulator.cli", *args])


def interpreter_flags() -> list[str]:
    """The flags a child Python (a worker) gets to run as this one does: `-O` under -O."""
    return ["-" + "O" * sys.flags.optimize] if sys.flags.optimize else []


def _new(cls: type, *_args: Any, **_kwargs: Any) -> Any:
    return object.__new__(cls)


def checked_construction() -> tuple[type, ...]:
    """mitmproxy's classes whose `__new__` only checks how mitmproxy's code uses them (tests/test_optimize.py
    holds their digest: when mitmproxy changes one, check it still only checks, then record the new digest).
    Imported here, not at the top: the CLI imports this module before it restarts under -O."""
    from mitmproxy import hooks
    from mitmproxy.proxy import commands, events

    return hooks.Hook, commands.StartHook, events.CommandCompleted


def drop_construction_checks() -> None:
    """Build mitmproxy's hooks and command completions without their `__new__` checks, in this process."""
    for cls in checked_construction():
        cls.__new__ = staticmethod(_new)  # type: ignore[method-assign, assignment]
