"""Keep-alive: each user opens one TLS connection and sends every request over it.

    locust -f scenarios/load/keepalive.py --lab-api http://127.0.0.1:PORT --listener aliyun-one-way
    lbsim load keepalive --users 10 --duration 30s

Handshakes happen once per user (and again only if the listener closes the connection, e.g. after its
idle timeout), so this is the request rate a listener reaches when TLS costs least.
"""

from __future__ import annotations

from common import LbsimUser, sized
from locust import constant, task


class KeepAliveUser(LbsimUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        super().on_start()
        self.conn = None
        self.path = sized(self.settings.options.path, self.settings.options.response_size)

    @task
    def request(self) -> None:
        if self.conn is None or self.conn.closed:
            self.conn = self.open()
            if self.conn is None:
                return
        self.get(self.conn, self.path)

    def on_stop(self) -> None:
        if self.conn is not None:
            self.close(self.conn)
