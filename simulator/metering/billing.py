"""Billing: which metered bytes a vendor bills, and its LCU dimensions. The models are data, each vendor
profile's `billing` (`simulator/vendors/`); this module applies them.

A model names the (direction, category) byte counts it bills; all three bill decrypted HTTP bytes
(`payload`), never the TLS handshake, record overhead or alerts. That difference is what the seeds
describe: "The actual traffic is larger than the billing traffic because some traffic is used for
the protocol handshake." The vendors' wording is quoted in `wording` and in docs/metering.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Mapping

from simulator import vendors
from simulator.errors import LbsimError
from simulator.vendors.profile import IN, OUT, BillingModel, LcuDimensions

__all__ = ["IN", "OUT", "MODELS", "PROFILE_MODELS", "BillingModel", "LcuDimensions", "billed", "lcu", "model_for",
           "overhead_pct", "traffic_of"]

class _Models(Mapping[str, BillingModel]):
    """`MODELS`: every billing model by name (each vendor profile's own, then any reference ones), read live from
    `simulator.vendors`: the models themselves live in the vendor modules."""

    def __getitem__(self, name: str) -> BillingModel:
        return vendors.billing_models()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(vendors.billing_models())

    def __len__(self) -> int:
        return len(vendors.billing_models())


class _ProfileModels(Mapping[str, str]):
    """`PROFILE_MODELS`: each vendor profile's default model name (a listener's config may name another)."""

    def __getitem__(self, name: str) -> str:
        if name not in vendors.names():
            raise KeyError(name)
        return vendors.get(name).billing.name

    def __iter__(self) -> Iterator[str]:
        return iter(vendors.names())

    def __len__(self) -> int:
        return len(vendors.names())


MODELS: Mapping[str, BillingModel] = _Models()
PROFILE_MODELS: Mapping[str, str] = _ProfileModels()


def model_for(name: str) -> BillingModel:
    """The billing model for a vendor profile name or a model name."""
    try:
        return vendors.get(name).billing
    except LbsimError:
        pass
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise LbsimError("UnknownBillingModel", f"unknown billing model or profile {name!r}",
                         field="billing_model", hint=f"one of {', '.join(sorted(MODELS))}") from None


def traffic_of(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `traffic` part of a connection-log record (or the record itself if it is one)."""
    return record["traffic"] if "traffic" in record else record


def _bills(m: BillingModel) -> tuple[str, bool, bool]:
    """(model name, bills IN, bills OUT)."""
    return m.name, IN in m.billed_directions, OUT in m.billed_directions


# Per model name (and profile name) of the built-in vendors, so `billed` (once per connection, at close)
# neither looks the model up twice nor loops over directions. A profile registered later is looked up.
_BILLS = {**{name: _bills(MODELS[name]) for name in MODELS}, **{name: _bills(model_for(name)) for name in PROFILE_MODELS}}


def billed(profile_or_model: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """What the model bills for one connection, beside the wire bytes of the same directions.

    `record` is a connection-log record (with `traffic`) or a bare `ConnectionMeter.to_dict()`.
    `overhead_pct` = (wire - billed) / billed * 100 over the billed directions; None if nothing billed.
    """
    # Not in the table: a name added since import, or UnknownBillingModel from model_for.
    name, bill_in, bill_out = _BILLS.get(profile_or_model) or _bills(model_for(profile_or_model))
    t = traffic_of(record)
    billed_in = billed_out = wire = 0
    if bill_in:
        d = t[IN]
        billed_in, wire = d["payload"], d["wire"]
    if bill_out:
        d = t[OUT]
        billed_out = d["payload"]
        wire += d["wire"]
    total = billed_in + billed_out
    return {
        "model": name,
        "billed_bytes": total,
        "billed_client_to_lb": billed_in,
        "billed_lb_to_client": billed_out,
        "wire_bytes": wire,  # in the billed directions
        "unbilled_bytes": wire - total,
        "overhead_pct": overhead_pct(wire, total),
    }


def overhead_pct(wire: int, billed_bytes: int) -> float | None:
    """How much larger the actual traffic is than the billed traffic, in percent."""
    return None if billed_bytes <= 0 else round(100.0 * (wire - billed_bytes) / billed_bytes, 3)


def lcu(profile_or_model: str, *, new_connections_per_s: float, concurrent_connections: float,
        processed_bytes_per_h: float, requests_per_s: float, rules_per_request: float = 1.0) -> dict[str, Any] | None:
    """LCUs per dimension for an hour at these rates, and the billed one (the largest); None without LCU."""
    m = model_for(profile_or_model)
    if m.lcu is None:
        return None
    d = m.lcu
    values = {
        "new_connections_per_s": new_connections_per_s,
        "concurrent_connections": concurrent_connections,
        "processed_gb_per_h": processed_bytes_per_h / d.bytes_per_gb,
        "rule_evaluations_per_s": requests_per_s * max(0.0, rules_per_request - d.free_rules),
    }
    per_lcu = {k: getattr(d, k) for k in values}
    units = {k: values[k] / per_lcu[k] for k in values}
    top = max(units, key=lambda k: units[k])
    return {
        "dimensions": {k: {"value": round(values[k], 6), "per_lcu": per_lcu[k], "lcu": round(units[k], 6)}
                       for k in values},
        "lcu": round(units[top], 6),
        "billed_dimension": top,
    }
