"""Query parameters a client uses to steer a mock backend's answer, parsed and validated.

Unknown parameters are ignored (they belong to whatever the client is testing); a known parameter with
a bad value is refused with 400 rather than guessed, so a typo in a test shows up at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

FAULTS = frozenset({"reset", "close", "garbage", "hang", "truncate"})
MAX_SIZE = 1 << 40  # streamed, so only a sanity bound
MAX_DELAY_MS = 24 * 3600 * 1000
_COOKIE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+=[\x20-\x7e\t]*")
_TRUE = frozenset({"", "1", "true", "yes", "on"})


class ParamError(ValueError):
    """A known query parameter with a value we refuse; answered with 400, connection kept."""


@dataclass(slots=True, frozen=True)
class Plan:
    """What the client asked for; None means 'not asked', so backend-wide defaults can apply."""

    status: int | None = None
    size: int | None = None
    delay_ms: float | None = None
    fault: str | None = None
    cookies: tuple[str, ...] = field(default_factory=tuple)
    close: bool = False


NO_PARAMS = Plan()


def _int(name: str, value: str, lo: int, hi: int) -> int:
    if not value.isascii() or not value.isdigit():
        raise ParamError(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")
    n = int(value)
    if not lo <= n <= hi:
        raise ParamError(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")
    return n


def parse_params(query: str) -> Plan:
    """Parse `size`, `delay_ms`, `status`, `set_cookie` (repeatable), `fault` and `close`."""
    if not query:
        return NO_PARAMS
    status = size = None
    delay: float | None = None
    fault: str | None = None
    cookies: list[str] = []
    close = False
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "size":
            size = _int(key, value, 0, MAX_SIZE)
        elif key == "status":
            status = _int(key, value, 200, 599)
        elif key == "delay_ms":
            try:
                delay = float(value)
            except ValueError:
                delay = -1.0
            if not 0 <= delay <= MAX_DELAY_MS:  # also refuses nan
                raise ParamError(f"delay_ms: expected milliseconds in [0, {MAX_DELAY_MS}], got {value!r}")
        elif key == "fault":
            if value not in FAULTS:
                raise ParamError(f"fault: expected one of {', '.join(sorted(FAULTS))}, got {value!r}")
            fault = value
        elif key == "set_cookie":
            # Decoded from the query, so it could carry CR/LF: only a plain NAME=VALUE[; attrs] passes.
            if _COOKIE.fullmatch(value) is None:
                raise ParamError(f"set_cookie: expected NAME=VALUE in printable ASCII, got {value!r}")
            cookies.append(value)
        elif key == "close":
            close = value.lower() in _TRUE
    return Plan(status, size, delay, fault, tuple(cookies), close)
