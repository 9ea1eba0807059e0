"""Connection records a lab keeps in memory, held as JSON text and decoded when read.

A lab keeps every connection's record (the traffic ledger: exports, `/v1/traffic?connections=1`, scenario
checks) and the last 10,000 (`GET /v1/connections`). Kept as dicts, a metered record is three containers
(the record, `traffic`, `traffic.records`) that Python's garbage collector visits on every full
collection, and mitmproxy's per-connection garbage triggers one every few hundred connections: each
connection served made every later one slower (a metered lab paid ~60% more for full collections than an
unmetered one after 40,000 connections). A string is invisible to the collector, and smaller.

The unbounded list (the ledger) also compresses its lines, `BLOCK` at a time (zlib level 1: a 1.2 KB metered
record becomes about 45 bytes, for 2 µs): without that, every connection a lab ever served kept 1.2 KB, and
memory grew from one round of connections to the next (docs/performance.md, "Concurrency").
"""

from __future__ import annotations

import collections
import json
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, overload

# Compact, like the connection log's lines; `default=str` keeps a record with an odd value (a datetime
# from a caller's own record) instead of refusing it.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
BLOCK = 256  # lines per compressed block (a JSON line never holds a raw newline)


class KeptRecords:
    """A list (or, with `maxlen`, a ring) of records, each stored as one JSON line.

    Reads decode: `records[i]`, `records[a:b]` (a list), iteration and `reversed` give fresh dicts, so
    changing one never changes what is kept.
    """

    def __init__(self, maxlen: int | None = None) -> None:
        # A ring stays plain text (it is bounded); the unbounded list keeps full blocks compressed.
        self._lines: collections.deque[str] | list[str] = collections.deque(maxlen=maxlen) if maxlen else []
        self._compress = not maxlen
        self._blocks: list[bytes] = []

    def append(self, record: Mapping[str, Any], line: str | None = None) -> None:
        """Keep `record`; `line` is its JSON text if the caller has it already (the connection log does)."""
        self._lines.append(line if line is not None else _encode(record))
        if self._compress and len(self._lines) >= BLOCK:
            self._blocks.append(zlib.compress("\n".join(self._lines).encode(), 1))
            self._lines = []

    def clear(self) -> None:
        self._lines.clear()
        self._blocks = []

    def __len__(self) -> int:
        return len(self._blocks) * BLOCK + len(self._lines)

    def _all(self, start: int = 0) -> list[str]:
        """A snapshot of the lines from `start` on (the lab may append meanwhile); decompresses only what it needs."""
        blocks, tail = list(self._blocks), list(self._lines)
        first = min(start // BLOCK, len(blocks))
        lines = [line for block in blocks[first:] for line in zlib.decompress(block).decode().split("\n")]
        return (lines + tail)[start - first * BLOCK:]

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            start, stop = index.start or 0, index.stop
            if index.step is None and start > 0:  # `records[since:]`: decompress from `since`'s block only
                if stop is not None and stop >= 0:
                    stop = max(0, stop - start)
                return [json.loads(line) for line in self._all(start)[:stop]]
            return [json.loads(line) for line in self._all()[index]]
        if not self._blocks:
            return json.loads(self._lines[index])
        n = len(self)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError("record index out of range")
        block, offset = divmod(i, BLOCK)
        if block < len(self._blocks):
            return json.loads(zlib.decompress(self._blocks[block]).decode().split("\n")[offset])
        return json.loads(self._lines[offset])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # A snapshot: the lab may append while a reader (API, scenario) iterates.
        return (json.loads(line) for line in self._all())

    def __reversed__(self) -> Iterator[dict[str, Any]]:
        return (json.loads(line) for line in reversed(self._all()))
