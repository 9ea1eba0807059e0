"""Connection records a lab keeps in memory, held as JSON text and decoded when read.

A lab keeps every connection's record (the traffic ledger: exports, `/v1/traffic?connections=1`, scenario
checks) and the last 10,000 (`GET /v1/connections`). Kept as dicts, a metered record is three containers
(the record, `traffic`, `traffic.records`) that Python's garbage collector visits on every full
collection, and mitmproxy's per-connection garbage triggers one every few hundred connections: each
connection served made every later one slower (a metered lab paid ~60% more for full collections than an
unmetered one after 40,000 connections). A string is invisible to the collector, and smaller.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator, Mapping
from typing import Any, overload

# Compact, like the connection log's lines; `default=str` keeps a record with an odd value (a datetime
# from a caller's own record) instead of refusing it.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


class KeptRecords:
    """A list (or, with `maxlen`, a ring) of records, each stored as one JSON line.

    Reads decode: `records[i]`, `records[a:b]` (a list), iteration and `reversed` give fresh dicts, so
    changing one never changes what is kept.
    """

    def __init__(self, maxlen: int | None = None) -> None:
        self._lines: collections.deque[str] | list[str] = collections.deque(maxlen=maxlen) if maxlen else []

    def append(self, record: Mapping[str, Any], line: str | None = None) -> None:
        """Keep `record`; `line` is its JSON text if the caller has it already (the connection log does)."""
        self._lines.append(line if line is not None else _encode(record))

    def clear(self) -> None:
        self._lines.clear()

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [json.loads(line) for line in list(self._lines)[index]]
        return json.loads(self._lines[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # A snapshot: the lab may append while a reader (API, scenario) iterates.
        return (json.loads(line) for line in list(self._lines))

    def __reversed__(self) -> Iterator[dict[str, Any]]:
        return (json.loads(line) for line in reversed(list(self._lines)))
