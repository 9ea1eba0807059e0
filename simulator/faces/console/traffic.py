"""Traffic: per listener, charts of the last minute that refresh while the lab runs, and the ledger's totals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulator.faces.console.charts import WINDOW, bucket, fmt, listener_charts, record_key
from simulator.faces.console.markup import Markup, join, tag
from simulator.faces.console.server import Context, Page
from simulator.faces.http import Request

if TYPE_CHECKING:
    from simulator.faces.console.app import ConsoleServer


class TrafficPages:
    def __init__(self, console: ConsoleServer):
        self.console = console

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/traffic", self.page), ("GET", "/traffic/charts", self.fragment)]

    def charts(self) -> Markup:
        lab = self.console.lab
        series = bucket(lab.ledger)
        totals = {record_key(row): row for row in lab.ledger.summary()}
        listeners = {l.key: l for l in lab.registry.listeners.values()}
        sections = []
        # The lab's listeners in their order, then removed ones that still have traffic.
        for key in [*listeners, *(k for k in totals if k not in listeners)]:
            row, listener = totals.get(key), listeners.get(key)
            port = key.rpartition(":")[2]
            ref = lab.ref(listener) if listener is not None else port  # the port alone unless load balancers share it
            facts: list[Any] = []
            if row:
                lcu = row.get("lcu")
                facts = [("connections", row["connections"]), ("full handshakes", row["handshakes_full"]),
                         ("resumed", row["handshakes_resumed"]), ("failed", row["handshakes_failed"]),
                         ("requests", row["requests"]), ("wire bytes (both ways)", row["wire_in"] + row["wire_out"]),
                         ("billed bytes", row["billed_bytes"]), ("overhead %", row["overhead_pct"]),
                         ("billing model", row["billing_model"])]
                if lcu:
                    facts.append(("LCU (observed rates for an hour)", f"{fmt(lcu['lcu'])} ({lcu['billed_dimension']})"))
            summary = tag("dl", join(join([tag("dt", k), tag("dd", fmt(v) if isinstance(v, (int, float)) else v)])
                                     for k, v in facts), class_="totals") if facts else tag("p", "No connections yet.", class_="muted")
            name = listener.name if listener is not None else "(removed listener)"
            title = f"{name} :{port}" if ref == port else f"{name} {ref}"
            charts = tag("div", listener_charts(series.get(key)), class_="charts") if row else ""
            sections.append(tag("section", join([tag("h2", title), summary, charts]), class_="listener-traffic",
                                id=f"traffic-{ref.replace(':', '-')}", data_port=port, data_address=key.rpartition(":")[0]))
        return join(sections) or tag("p", "No listeners.", class_="muted")

    async def page(self, request: Request, ctx: Context) -> Page:
        body = join([
            tag("p", f"The last {WINDOW} s per listener, from the lab's connection records (a connection counts when "
                     "it closes; new connections by when they opened). Billed bytes are what the vendor's model bills; "
                     "wire bytes are what really crossed, TLS handshakes and record overhead included. Totals are since "
                     "the lab started. The charts refresh every 2 s with JavaScript; without it, reload.", class_="muted"),
            tag("div", self.charts(), id="traffic", data_refresh="/traffic/charts", data_every="2"),
        ])
        return self.console.page("Traffic", body, "/traffic")

    async def fragment(self, request: Request, ctx: Context) -> Page:
        return Page(200, self.charts())
