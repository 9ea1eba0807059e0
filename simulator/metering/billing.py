"""Vendor billing models as data: which metered bytes each vendor bills, and its LCU dimensions.

A model names the (direction, category) byte counts it bills; all three bill decrypted HTTP bytes
(`payload`), never the TLS handshake, record overhead or alerts. That difference is what the seeds
describe: "The actual traffic is larger than the billing traffic because some traffic is used for
the protocol handshake." The vendors' wording is quoted in `wording` and in docs/metering.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from simulator.errors import LbsimError

IN, OUT = "client_to_lb", "lb_to_client"


@dataclass(frozen=True)
class LcuDimensions:
    """What one LCU buys per dimension; the hour is billed on the largest dimension.

    `free_rules`: rules per request that are not billed (AWS: the first 10). `bytes_per_gb`: the GB
    the vendors mean is not stated; 10**9 is assumed (UNCONFIRMED, override per model).
    """

    new_connections_per_s: float = 25.0
    concurrent_connections: float = 3000.0
    processed_gb_per_h: float = 1.0
    rule_evaluations_per_s: float = 1000.0
    free_rules: int = 0
    bytes_per_gb: int = 10**9


@dataclass(frozen=True)
class BillingModel:
    """One vendor's way of billing a listener's traffic."""

    name: str
    vendor: str
    billed_directions: tuple[str, ...]  # payload bytes of these directions are billed
    lcu: LcuDimensions | None
    wording: str                         # the vendor's own words (or the seed's)
    unconfirmed: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MODELS: dict[str, BillingModel] = {
    "aliyun-slb": BillingModel(
        name="aliyun-slb",
        vendor="Alibaba Cloud SLB/CLB (pay-by-traffic)",
        billed_directions=(OUT,),
        lcu=None,
        wording=("Pay-by-traffic bills outbound traffic (LB -> client) only. \"The actual traffic is larger "
                 "than the billing traffic because some traffic is used for the protocol handshake. In the "
                 "case of a large number of new connections, HTTPS listeners consume more traffic.\""),
    ),
    "tencent-clb": BillingModel(
        name="tencent-clb",
        vendor="Tencent Cloud CLB (LCU)",
        billed_directions=(IN, OUT),
        lcu=LcuDimensions(free_rules=0),
        wording=("\"it actually generates more traffic than the billed traffic as some of the traffic is used "
                 "for protocol handshake\". LCU model, hourly, the largest of: 25 new connections/s, 3,000 "
                 "concurrent connections/min, 1 GB processed traffic (inbound + outbound), 1,000 rule "
                 "evaluations/s."),
        unconfirmed=("free rules per request (0 assumed)", "GB = 10**9 bytes"),
    ),
    "aws-alb": BillingModel(
        name="aws-alb",
        vendor="AWS Application Load Balancer (reference)",
        billed_directions=(IN, OUT),
        lcu=LcuDimensions(free_rules=10),
        wording=("ProcessedBytes counts HTTP headers and payload, not TLS overhead: \"The number of bytes "
                 "processed by the load balancer in Gigabytes (GB) for HTTP(S) requests and responses.\" "
                 "Rule evaluations: \"the product of the number of rules processed by your load balancer "
                 "and the request rate. The first 10 processed rules are free\"."),
        unconfirmed=("GB = 10**9 bytes",),
    ),
}

# Each vendor profile's default model; a listener's config may name another model.
PROFILE_MODELS: dict[str, str] = {"aliyun-slb": "aliyun-slb", "tencent-clb": "tencent-clb", "aws-alb": "aws-alb"}


def model_for(name: str) -> BillingModel:
    """The billing model for a model name or a vendor profile name."""
    key = PROFILE_MODELS.get(name, name)
    try:
        return MODELS[key]
    except KeyError:
        raise LbsimError("UnknownBillingModel", f"unknown billing model or profile {name!r}",
                         field="billing_model", hint=f"one of {', '.join(sorted(MODELS))}") from None


def traffic_of(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `traffic` part of a connection-log record (or the record itself if it is one)."""
    return record["traffic"] if "traffic" in record else record


def _bills(m: BillingModel) -> tuple[str, bool, bool]:
    """(model name, bills IN, bills OUT)."""
    return m.name, IN in m.billed_directions, OUT in m.billed_directions


# Per model name (and profile name), so `billed` (once per connection, at close) neither looks the model up
# twice nor loops over directions.
_BILLS = {name: _bills(MODELS[key]) for name, key in [*((k, k) for k in MODELS), *PROFILE_MODELS.items()]}


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
