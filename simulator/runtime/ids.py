"""Ids for mitmproxy's connections and flows without a system call each.

mitmproxy names every client, server and flow `str(uuid.uuid4())`: 16 bytes from `os.urandom` (a getrandom
system call) made into a `UUID` and formatted, about 3 µs. A listener connection takes three (its client,
the context's server, its flow) and each further request on it one: 0.9 % of a resumed connection's
instructions and 1.2 % of a keep-alive request's, besides the system calls (docs/performance.md, "Round
twelve").

mitmproxy only needs them unique: they key its connections, flows and lbsim's registry. These are the same
text, random version-4 UUIDs, drawn from a generator of this module's own, seeded from `os.urandom` at import
and again in a forked child (so a forked worker does not repeat its parent's ids), and never seeded by
anyone else (a test's `random.seed()` does not touch it). They are not for secrets: nothing in mitmproxy
or lbsim uses an id as one.

    from simulator.runtime import ids
    ids.install()   # from now on, mitmproxy's new connections and flows take their ids from here

A lab installs it when it starts (simulator.runtime.lab); installing twice changes nothing.
"""

from __future__ import annotations

import os
import random
from types import SimpleNamespace

from mitmproxy import connection, flow

# The version (4) and variant (RFC 4122) bits of a UUID, as uuid.UUID(version=4) sets them.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_SET = (0x4000 << 64) | (0x8000 << 48)

_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))
_bits = _random.getrandbits


def uuid4() -> str:
    """A random version-4 UUID in its usual text form (`str(uuid.uuid4())`'s)."""
    h = "%032x" % (_bits(128) & _CLEAR | _SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# What mitmproxy's `connection` and `flow` modules see as `uuid`: their only use of it is `str(uuid.uuid4())`,
# and `str()` of a str is the str itself.
MODULE = SimpleNamespace(uuid4=uuid4)


def install() -> None:
    """Make mitmproxy's new connections and flows take their ids from :func:`uuid4`, in this process."""
    connection.uuid = MODULE  # type: ignore[attr-defined]
    flow.uuid = MODULE  # type: ignore[attr-defined]
