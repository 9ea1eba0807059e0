"""AWS Application Load Balancer: its billing model only, a reference for comparing the others.

Not a listener profile yet (no ``PROFILE``): a listener of another profile may name ``billing_model: aws-alb``.
Source: the Elastic Load Balancing pricing page and the ``ProcessedBytes`` CloudWatch metric.
"""

from __future__ import annotations

from simulator.vendors.profile import IN, OUT, BillingModel, LcuDimensions

BILLING = BillingModel(
    name="aws-alb",
    vendor="AWS Application Load Balancer (reference)",
    billed_directions=(IN, OUT),
    lcu=LcuDimensions(free_rules=10),
    wording=("ProcessedBytes counts HTTP headers and payload, not TLS overhead: \"The number of bytes "
             "processed by the load balancer in Gigabytes (GB) for HTTP(S) requests and responses.\" "
             "Rule evaluations: \"the product of the number of rules processed by your load balancer "
             "and the request rate. The first 10 processed rules are free\"."),
    unconfirmed=("GB = 10**9 bytes",),
)
