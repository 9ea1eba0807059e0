"""mitmproxy's `Headers`, with lookups that make no Python call per header field.

A header lookup in mitmproxy (`"expect" in headers`, `headers.get(...)`, `headers[name] = value`) goes
through `_MultiDict.get_all` or `set_all`, which call the staticmethod `Headers._kconv` (`bytes.lower`) once
per field, and `Mapping.__contains__` and `Mapping.get`, which raise and catch a KeyError when the name is
absent. A request through the listener makes about twenty such lookups (mitmproxy's own body-size and
connection-close checks, the listener's headers), each about 1.3 µs with five fields; these make the same
lookups with the lowercasing inline and no exception on a miss.

Everything else is mitmproxy's: a `LeanHeaders` is a `Headers` (isinstance, equality, state, copies), with the
same results and errors for every name and value (tests/test_leanheaders.py compares the two on generated
fields). The listener's own HTTP/1.1 path turns a parsed request's headers into these (`lean`), and the
balancer builds its answers' headers as these; mitmproxy's own layers keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mitmproxy import http
from mitmproxy.http import _always_bytes


# The lowercased bytes of each str name looked up, so that a lookup by str (the listener's own names:
# "content-length", "expect", "x-forwarded-for", ...) does not encode and lowercase it every time: about 16
# lookups a request. Bounded: past it, names are converted each time, as before.
_KEYS: dict[str, bytes] = {}
MAX_KEYS = 1024


def _key(name: object) -> bytes:
    """`name` as mitmproxy's Headers compares it: UTF-8 with surrogateescape, lowercased; a name that is
    neither str nor bytes raises mitmproxy's TypeError."""
    key = _always_bytes(name).lower()
    if type(name) is str and len(_KEYS) < MAX_KEYS:
        _KEYS[name] = key
    return key


class LeanHeaders(http.Headers):
    """mitmproxy's Headers; `get_all`, `set_all`, `[name]`, `in` and `get` lowercase each field inline."""

    def get_all(self, name: str | bytes) -> list[str]:
        if type(name) is bytes:
            key = name.lower()
        elif (key := _KEYS.get(name) if type(name) is str else None) is None:  # type: ignore[assignment]
            key = _key(name)
        return [v.decode("utf-8", "surrogateescape") for k, v in self.fields if k.lower() == key]

    def set_all(self, name: str | bytes, values: Iterable[str | bytes]) -> None:
        name = _always_bytes(name)
        new = [_always_bytes(x) for x in values]
        key = name.lower()
        fields = []
        for field in self.fields:
            if field[0].lower() != key:
                fields.append(field)
            elif new:  # the first fields of the name keep their place and spelling, with the new values
                fields.append((field[0], new.pop(0)))
        fields.extend((name, v) for v in new)
        self.fields = tuple(fields)

    def __getitem__(self, name: str | bytes) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __contains__(self, name: object) -> bool:
        if type(name) is bytes:
            key = name.lower()
        elif (key := _KEYS.get(name) if type(name) is str else None) is None:  # type: ignore[assignment]
            key = _key(name)
        for k, _ in self.fields:
            if k.lower() == key:
                return True
        return False

    def get(self, name: str | bytes, default: Any = None) -> Any:
        values = self.get_all(name)
        return ", ".join(values) if values else default

    @classmethod
    def of(cls, fields: tuple[tuple[bytes, bytes], ...]) -> LeanHeaders:
        """Headers of `fields` taken as they are: a tuple of (name, value) tuples of bytes, which the caller
        vouches for. `Headers(fields)` checks every name and value, copies each pair and applies keyword
        headers (none here); the listener's answers are parsed as bytes already (about 2 µs an answer)."""
        headers = cls.__new__(cls)
        headers.fields = fields  # a Headers keeps nothing else (tests/test_leanheaders.py)
        return headers


def set_headers(headers: http.Headers, values: dict[str, str]) -> None:
    """`headers[name] = value` for each of `values`, in their order, with one pass over the fields.

    As those sets would leave them: a name already there keeps its first field's place and spelling with
    the new value, its other fields go; a new name is appended. Names are compared lowercased, so two keys
    that differ in case act as one name set twice (the last value, at the first one's place)."""
    new: dict[bytes, list[bytes]] = {}
    for name, value in values.items():
        raw = _always_bytes(name)
        entry = new.get(raw.lower())
        if entry is None:
            new[raw.lower()] = [raw, _always_bytes(value)]
        else:
            entry[1] = _always_bytes(value)
    fields = []
    for field in headers.fields:
        entry = new.get(field[0].lower())
        if entry is None:
            fields.append(field)
        elif entry[1] is not None:  # the first field of a name set: its value now; the rest of the name go
            fields.append((field[0], entry[1]))
            entry[1] = None
    fields.extend((raw, value) for raw, value in new.values() if value is not None)
    headers.fields = tuple(fields)


def lean(headers: http.Headers) -> http.Headers:
    """`headers` as LeanHeaders, in place (a plain `Headers` only: a subclass keeps its own lookups)."""
    if type(headers) is http.Headers:
        headers.__class__ = LeanHeaders
    return headers
