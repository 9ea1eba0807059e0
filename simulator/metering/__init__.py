"""Traffic metering: exact wire bytes per TLS connection beside the bytes each vendor bills.

    conn = MeteredConnection(ssl_context)   # drop-in memory-BIO SSL.Connection
    conn.meter.to_dict()                    # live counters; conn.meter.finish() when the client is gone
    billing.billed("aliyun-slb", record)    # what the vendor would bill for it
    TrafficLedger().add(record)             # per-listener aggregation, CSV/JSONL export

See docs/metering.md.
"""

from simulator.metering import billing
from simulator.metering.ledger import TrafficLedger
from simulator.metering.meter import CATEGORIES, DIRECTIONS, ConnectionMeter, MeteredConnection

__all__ = ["CATEGORIES", "DIRECTIONS", "ConnectionMeter", "MeteredConnection", "TrafficLedger", "billing"]
