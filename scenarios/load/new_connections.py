"""The handshake storm: a new TLS connection, with a full handshake, for every request.

    locust -f scenarios/load/new_connections.py --lab-api http://127.0.0.1:PORT --listener aliyun-one-way
    lbsim load new_connections --users 10 --duration 30s

No session is ever offered again, so every connection pays a full handshake: the case the vendors warn
about ("in the case of a large number of new connections, HTTPS listeners consume more traffic").
"""

from __future__ import annotations

from common import LbsimUser, sized
from locust import constant, task


class NewConnectionUser(LbsimUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        super().on_start()
        self.path = sized(self.settings.options.path, self.settings.options.response_size)

    @task
    def request(self) -> None:
        conn = self.open()
        if conn is None:
            return
        try:
            self.get(conn, self.path)
        finally:
            self.close(conn)
