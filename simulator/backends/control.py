"""Line-oriented JSON control of backends, for a backend process driven by another process.

`BackendProcess` writes one JSON object per line to the process's stdin and reads one JSON reply per line
from its stdout. Commands:

    {"op": "stats"[, "name": N]}                       -> {"ok": true, "stats": {name: stats, ...}}
    {"op": "set", "name": N, "healthy": bool, "down": bool, "fault": str|null, "delay_ms": number}
                                                       -> {"ok": true}   (any subset of the attributes)
    {"op": "reset_stats"[, "name": N]}                 -> {"ok": true}

Errors answer {"ok": false, "error": "..."}; an "id" in a command is copied into its reply.
"""

from __future__ import annotations

from typing import Any

from simulator.backends.params import FAULTS, MAX_DELAY_MS
from simulator.backends.server import MockBackend


class ControlError(ValueError):
    pass


def _targets(backends: dict[str, MockBackend], cmd: dict[str, Any]) -> list[MockBackend]:
    name = cmd.get("name")
    if name is None:
        return list(backends.values())
    if name not in backends:
        raise ControlError(f"name: unknown backend {name!r}; expected one of {', '.join(backends)}")
    return [backends[name]]


async def apply_command(backends: dict[str, MockBackend], cmd: Any) -> dict[str, Any]:
    """Run one control command and return its reply (never raises for a caller's mistake)."""
    reply: dict[str, Any] = {}
    try:
        if not isinstance(cmd, dict):
            raise ControlError("expected a JSON object")
        if "id" in cmd:
            reply["id"] = cmd["id"]
        op = cmd.get("op")
        targets = _targets(backends, cmd)
        if op == "stats":
            reply["stats"] = {b.name: b.stats for b in targets}
        elif op == "reset_stats":
            for b in targets:
                b.reset_stats()
        elif op == "set":
            changes = {k: v for k, v in cmd.items() if k not in ("op", "name", "id")}
            _validate_set(changes)
            for b in targets:
                if "healthy" in changes:
                    b.healthy = changes["healthy"]
                if "fault" in changes:
                    b.fault = changes["fault"]
                if "delay_ms" in changes:
                    b.delay_ms = float(changes["delay_ms"])
                if "down" in changes:
                    await b.set_down(changes["down"])
        else:
            raise ControlError(f"op: expected one of stats, set, reset_stats, got {op!r}")
    except ControlError as e:
        return {**reply, "ok": False, "error": str(e)}
    return {**reply, "ok": True}


def _validate_set(changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if key in ("healthy", "down"):
            if not isinstance(value, bool):
                raise ControlError(f"{key}: expected true or false, got {value!r}")
        elif key == "fault":
            if value is not None and value not in FAULTS:
                raise ControlError(f"fault: expected null or one of {', '.join(sorted(FAULTS))}, got {value!r}")
        elif key == "delay_ms":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_DELAY_MS:
                raise ControlError(f"delay_ms: expected milliseconds in [0, {MAX_DELAY_MS}], got {value!r}")
        else:
            raise ControlError(f"{key}: unknown attribute; expected healthy, down, fault, delay_ms")

