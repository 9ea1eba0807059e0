"""Per-listener time series from the lab's ledger, drawn as inline SVG on the server (no chart library).

The series are the ledger's own connection records bucketed by second over the last `WINDOW` seconds: new
connections (by start), full and resumed handshakes, wire and billed bytes (by end), the overhead percentage
of each second, and where the vendor bills by LCU the LCU estimate of each second's rates, computed by
`simulator.metering.billing.lcu` as if sustained for the hour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from simulator.metering import billing
from simulator.metering.ledger import TrafficLedger, epoch
from simulator.faces.console.markup import Markup, esc, join, tag

WINDOW = 60  # seconds shown
BUCKET = 1.0
# At most this many of the newest records are read per refresh: under heavy load the charts show the newest
# connections only, rather than taking the event loop from the listeners (each record is parsed JSON).
MAX_SCAN = 20_000


@dataclass
class Series:
    name: str
    values: list[float | None]  # None: nothing to show for that second (no bytes billed, say)
    css: str  # the line's class (colour in console.css)
    shown: str = "total"  # what the legend says: the window's total, the latest value or the peak


@dataclass
class Buckets:
    start: float
    n: int = WINDOW
    new: list[float] = field(default_factory=lambda: [0.0] * WINDOW)
    full: list[float] = field(default_factory=lambda: [0.0] * WINDOW)
    resumed: list[float] = field(default_factory=lambda: [0.0] * WINDOW)
    wire: list[float] = field(default_factory=lambda: [0.0] * WINDOW)
    billed: list[float] = field(default_factory=lambda: [0.0] * WINDOW)
    requests: list[float] = field(default_factory=lambda: [0.0] * WINDOW)
    busy: list[float] = field(default_factory=lambda: [0.0] * WINDOW)  # connection-seconds open in the bucket
    model: str | None = None

    def index(self, t: float | None) -> int | None:
        if t is None:
            return None
        i = int((t - self.start) // BUCKET)
        return i if 0 <= i < self.n else None

    def overhead(self) -> list[float | None]:
        return [billing.overhead_pct(int(w), int(b)) for w, b in zip(self.wire, self.billed)]

    def lcu(self) -> list[float] | None:
        if self.model is None or billing.model_for(self.model).lcu is None:
            return None
        out = []
        for i in range(self.n):
            est = billing.lcu(self.model, new_connections_per_s=self.new[i] / BUCKET,
                              concurrent_connections=self.busy[i] / BUCKET,
                              processed_bytes_per_h=self.billed[i] / BUCKET * 3600,
                              requests_per_s=self.requests[i] / BUCKET)
            out.append(est["lcu"] if est else 0.0)
        return out


def record_key(record: Mapping[str, Any]) -> str:
    """`address:port` of the listener a record (or ledger row) belongs to: load balancers may share a port."""
    return f"{record.get('listener_address')}:{record.get('listener_port')}"


def bucket(ledger: TrafficLedger, now: float | None = None) -> dict[str, Buckets]:
    """Listener `address:port` -> its last WINDOW seconds. Reads records newest first and stops at the window's
    start."""
    now = time.time() if now is None else now
    start = now - WINDOW * BUCKET
    out: dict[int, Buckets] = {}
    for n, record in enumerate(reversed(ledger.records)):
        if n >= MAX_SCAN:
            break
        t = record.get("traffic") or {}
        began = epoch(t.get("started_at")) or epoch(record.get("time"))
        ended = epoch(t.get("finished_at")) or began
        if ended is not None and ended < start - 600:  # records arrive at close: allow for long connections
            break
        if not isinstance(record.get("listener_port"), int):
            continue
        key = record_key(record)
        b = out.get(key)
        if b is None:
            b = out[key] = Buckets(start, model=ledger.model_of(record))
        i = b.index(began)
        if i is not None:
            b.new[i] += 1
        j = b.index(ended)
        if j is not None and t:
            if t.get("handshake_complete"):
                (b.resumed if t.get("resumed") else b.full)[j] += 1
            billed = billing.billed(b.model, t)
            b.wire[j] += billed["wire_bytes"]
            b.billed[j] += billed["billed_bytes"]
            b.requests[j] += int(record.get("requests") or t.get("requests") or 0)
        if began is not None and ended is not None:
            first, last = int((max(began, start) - start) // BUCKET), int((min(ended, now) - start) // BUCKET)
            for k in range(max(0, first), min(b.n, last + 1)):
                lo, hi = start + k * BUCKET, start + (k + 1) * BUCKET
                b.busy[k] += max(0.0, min(ended, hi) - max(began, lo))
    return out


def svg_chart(title: str, series: list[Series], unit: str = "", width: int = 360, height: int = 120) -> Markup:
    """A line chart: x = the last WINDOW seconds, y from 0 to the largest value; one polyline per series."""
    values = [v for s in series for v in s.values if v is not None]
    top = max(values, default=0) or 1.0
    pad_l, pad_b, pad_t = 44, 16, 6
    w, h = width - pad_l - 4, height - pad_b - pad_t
    lines = []
    for s in series:
        points = []
        for i, v in enumerate(s.values):
            if v is None:
                continue
            x = pad_l + w * i / max(1, len(s.values) - 1)
            y = pad_t + h - h * v / top
            points.append(f"{x:.1f},{y:.1f}")
        lines.append(Markup(f'<polyline class="{esc(s.css)}" fill="none" points="{" ".join(points)}"/>'))
        if any(v is None for v in s.values):  # a sparse series: dots, or a lone second would not show
            lines += [Markup(f'<circle class="{esc(s.css)}" r="2" cx="{p.split(",")[0]}" cy="{p.split(",")[1]}"/>')
                      for p in points]
    totals = {s.name: sum(v for v in s.values if v is not None) for s in series}
    axis = Markup(
        f'<line class="axis" x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}"/>'
        f'<line class="axis" x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}"/>'
        f'<text class="tick" x="{pad_l - 4}" y="{pad_t + 8}" text-anchor="end">{esc(fmt(top))}</text>'
        f'<text class="tick" x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end">0</text>'
        f'<text class="tick" x="{pad_l}" y="{height - 2}">-{WINDOW}s</text>'
        f'<text class="tick" x="{pad_l + w}" y="{height - 2}" text-anchor="end">now</text>'
    )
    svg = Markup(f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
                 f'aria-label="{esc(title)}">{axis}{join(lines)}</svg>')
    def words(s: Series) -> str:
        if s.shown == "latest":
            return f"{s.name}: latest {fmt(next((v for v in reversed(s.values) if v is not None), None))}{unit}"
        if s.shown == "peak":
            return f"{s.name}: peak {fmt(max((v for v in s.values if v is not None), default=None))}{unit}"
        return f"{s.name}: {fmt(totals[s.name])}{unit} in {WINDOW} s"

    legend = join(tag("span", words(s), class_=f"key {s.css}", data_series=s.name, data_total=totals[s.name])
                  for s in series)
    return tag("figure", join([tag("figcaption", title), svg, tag("div", legend, class_="legend")]), class_="chart-box")


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{int(value):,}"


def listener_charts(b: Buckets | None) -> Markup:
    b = b or Buckets(time.time() - WINDOW)
    charts = [
        svg_chart("new connections / s", [Series("new", b.new, "s1")]),
        svg_chart("handshakes / s: full vs resumed", [Series("full", b.full, "s1"), Series("resumed", b.resumed, "s2")]),
        svg_chart("bytes / s: wire vs billed", [Series("wire", b.wire, "s1"), Series("billed", b.billed, "s2")], " B"),
        svg_chart("overhead % (wire over billed)", [Series("overhead", b.overhead(), "pct", "latest")], " %"),
    ]
    lcu = b.lcu()
    if lcu is not None:
        charts.append(svg_chart("LCU estimate (each second's rates for an hour)", [Series("LCU", lcu, "pct", "peak")]))
    return join(charts)
