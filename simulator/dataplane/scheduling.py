"""Backend scheduling as the vendors name it: `wrr` (default), `rr`, `wlc`."""

from __future__ import annotations

from typing import Protocol, Sequence


class Candidate(Protocol):
    name: str
    weight: int
    active: int  # requests in flight, for wlc


class Scheduler:
    """Picks one of the healthy candidates; weight 0 means 'receives no new traffic' (vendor semantics)."""

    def __init__(self, algorithm: str):
        if algorithm not in ("wrr", "rr", "wlc"):
            raise ValueError(algorithm)
        self.algorithm = algorithm
        self._current: dict[str, int] = {}  # smooth-wrr state, as nginx does it
        self._next = 0

    def pick(self, candidates: Sequence[Candidate]) -> Candidate | None:
        usable = [c for c in candidates if c.weight > 0]
        if not usable:
            return None
        if self.algorithm == "rr":
            self._next = (self._next + 1) % len(usable)
            return usable[self._next]
        if self.algorithm == "wlc":
            # Fewest requests in flight per unit of weight; ties go to the heavier server.
            return min(usable, key=lambda c: (c.active / c.weight, -c.weight))
        # Smooth weighted round robin: interleaves (a, a, b) as (a, b, a) rather than bursting.
        total = 0
        best = None
        for c in usable:
            cur = self._current.get(c.name, 0) + c.weight
            self._current[c.name] = cur
            total += c.weight
            if best is None or cur > self._current[best.name]:
                best = c
        assert best is not None
        self._current[best.name] -= total
        return best
