"""Resumption: clients reconnect for every request and offer their last session, so full and resumed
handshakes mix.

    locust -f scenarios/load/resumption.py --lab-api http://127.0.0.1:PORT --listener aliyun-one-way --full-every 4
    lbsim load resumption --users 10 --duration 30s -a full-every=4

Each user starts a fresh session (full handshake) every `--full-every` connections and offers its last
session (a ticket; a session ID with `--no-tickets`) on the others. Whether a handshake really resumed is
what OpenSSL says, not what was offered: a ticket past the listener's lifetime (300 s, scaled by the
lab's time_scale) or from another listener gives a full handshake, reported as such.
"""

from __future__ import annotations

from common import LbsimUser, sized
from locust import constant, events, task


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--full-every", type=int, default=4,
                        help="start a fresh session (full handshake) every N connections; the others offer the last one")


class ResumingUser(LbsimUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        super().on_start()
        o = self.settings.options
        if o.full_every < 1:
            raise ValueError(f"--full-every must be >= 1, got {o.full_every}")
        self.full_every = o.full_every
        self.path = sized(o.path, o.response_size)
        self.session = None
        self.count = 0

    @task
    def reconnect(self) -> None:
        if self.count % self.full_every == 0:
            self.session = None
        self.count += 1
        conn = self.open(session=self.session)
        if conn is None:
            return
        try:
            self.get(conn, self.path)
        finally:
            self.close(conn)
            self.session = conn.session
