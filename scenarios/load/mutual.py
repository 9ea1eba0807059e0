"""Mutual TLS: clients present certificates to a mutual listener, a share of them invalid on purpose.

    locust -f scenarios/load/mutual.py --lab-api http://127.0.0.1:PORT --listener aliyun-mutual --invalid-share 0.25
    lbsim load mutual --users 10 --duration 30s -a invalid-share=0.25

Each task is one new connection and one request. A deterministic `--invalid-share` of connections
presents an invalid certificate (cycling through `--invalid-kinds`: untrusted, expired, not_yet_valid,
or none = no certificate); the listener must refuse those in the handshake. A refusal of an invalid
client is reported as a success under `TLS handshake rejected`; an invalid client that gets served, or a
valid client that is refused, is a failure. In TLS 1.3 the refusal arrives after the client has sent
its Finished (and its request), as an alert on the first read: still a handshake refusal.
"""

from __future__ import annotations

import itertools

from common import INVALID_KINDS, LbsimUser, sized
from locust import constant, events, task


_invalid_turn = itertools.count()


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--invalid-share", type=float, default=0.25,
                        help="share of connections presenting an invalid client certificate (0..1)")
    parser.add_argument("--invalid-kinds", default="untrusted,expired,not_yet_valid",
                        help=f"invalid certificates to cycle through, from {','.join(INVALID_KINDS)} "
                             "(none = no certificate: refused only where the listener requires one)")


class MutualUser(LbsimUser):
    default_listener = "aliyun-mutual"
    wait_time = constant(0)

    def on_start(self) -> None:
        super().on_start()
        o = self.settings.options
        if not 0 <= o.invalid_share <= 1:
            raise ValueError(f"--invalid-share must be within 0..1, got {o.invalid_share}")
        self.kinds = [k.strip() for k in o.invalid_kinds.split(",") if k.strip()]
        unknown = set(self.kinds) - set(INVALID_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"--invalid-kinds: unknown {sorted(unknown)}; choose from {','.join(INVALID_KINDS)}")
        self.share = o.invalid_share
        self.path = sized(o.path, o.response_size)
        self.count = self.invalid = 0

    def next_client(self) -> tuple[str, bool]:
        """The certificate for the next connection, and whether it must be refused. Exactly
        floor(n * share) of a user's first n connections are invalid, spread evenly; the kinds rotate
        across all users of the process, so a short run still sees every kind."""
        self.count += 1
        if int(self.count * self.share) > self.invalid:
            self.invalid += 1
            return self.kinds[next(_invalid_turn) % len(self.kinds)], True
        return "valid", False

    @task
    def connect(self) -> None:
        kind, invalid = self.next_client()
        conn = self.open(client=kind, expect_rejection=invalid)
        if conn is None:
            return
        try:
            self.get(conn, self.path)
        finally:
            self.close(conn)
