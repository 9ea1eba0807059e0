"""A realistic blend: visits of several requests on one connection, uploads and downloads of mixed sizes,
and session resumption between visits.

    locust -f scenarios/load/mixed.py --lab-api http://127.0.0.1:PORT --response-sizes 1024:80,1048576:20
    lbsim load mixed --users 20 --duration 60s -a response-sizes=2048:70,65536:30 -a requests-per-connection=1-5

A visit opens a connection (offering the previous visit's session, so most visits resume), sends
`--requests-per-connection` requests, and closes. Each request asks the mock backend for a body drawn
from `--response-sizes` (SIZE:WEIGHT,...); a request drawn from `--request-sizes` with a size above 0 is
a POST uploading that many bytes. Draws come from a generator seeded with `--seed` and the user's number,
so a run is repeatable.
"""

from __future__ import annotations

import itertools
import random

from common import LbsimUser, sized
from locust import between, events, task

_users = itertools.count()


def weighted(spec: str, what: str) -> tuple[list[int], list[int]]:
    """'1024:80,65536:20' -> ([1024, 65536], [80, 20]); a size without weight weighs 1."""
    sizes, weights = [], []
    for part in spec.split(","):
        size, _, weight = part.strip().partition(":")
        try:
            sizes.append(int(size))
            weights.append(int(weight or 1))
        except ValueError:
            raise ValueError(f"{what}: expected SIZE[:WEIGHT],..., got {spec!r}") from None
    if not sizes or min(sizes) < 0 or min(weights) < 0 or sum(weights) == 0:
        raise ValueError(f"{what}: sizes and weights must be >= 0 with some weight, got {spec!r}")
    return sizes, weights


def span(spec: str) -> tuple[int, int]:
    lo, _, hi = spec.partition("-")
    a, b = int(lo), int(hi or lo)
    if not 1 <= a <= b:
        raise ValueError(f"--requests-per-connection: expected N or LO-HI with 1 <= LO <= HI, got {spec!r}")
    return a, b


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--response-sizes", default="256:40,2048:30,16384:20,131072:10",
                        help="response body sizes and weights, SIZE:WEIGHT,...")
    parser.add_argument("--request-sizes", default="0:85,512:10,8192:5",
                        help="request body sizes and weights; 0 = GET, more = POST of that many bytes")
    parser.add_argument("--requests-per-connection", default="1-8", help="requests per visit: N or LO-HI")
    parser.add_argument("--seed", type=int, default=1, help="seed of the per-user random draws")


class MixedUser(LbsimUser):
    wait_time = between(0, 0.02)

    def on_start(self) -> None:
        super().on_start()
        o = self.settings.options
        self.responses = weighted(o.response_sizes, "--response-sizes")
        self.requests = weighted(o.request_sizes, "--request-sizes")
        self.per_visit = span(o.requests_per_connection)
        self.random = random.Random(o.seed * 1_000_003 + next(_users))
        self.session = None

    @task
    def visit(self) -> None:
        conn = self.open(session=self.session)
        if conn is None:
            return
        try:
            for _ in range(self.random.randint(*self.per_visit)):
                size = self.random.choices(*self.responses)[0]
                upload = self.random.choices(*self.requests)[0]
                path = sized(self.settings.options.path, size)
                name = f"{self.settings.options.path} ({size} B)"  # upload sizes show in the HTTP-OUT row
                r = self.post(conn, path, b"x" * upload, name=name) if upload else self.get(conn, path, name=name)
                if r is None or conn.closed:
                    break
        finally:
            self.close(conn)
            self.session = conn.session
