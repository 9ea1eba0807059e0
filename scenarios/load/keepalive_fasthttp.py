"""Keep-alive with Locust's own FastHttpUser (geventhttpclient): the baseline the lean client is measured
against (docs/load.md). Same target and CA arguments as the other profiles, the server verified against
the lab CA (FastHttpUser's default is `insecure`); no handshake rows, no wire bytes.

    locust -f scenarios/load/keepalive_fasthttp.py --lab-api http://127.0.0.1:PORT --listener aliyun-one-way
"""

from __future__ import annotations

import gevent.ssl
from common import Settings, settings
from locust import FastHttpUser, constant, task


class FastKeepAliveUser(FastHttpUser):
    wait_time = constant(0)
    insecure = False
    default_listener = "aliyun-one-way"

    def __init__(self, environment) -> None:  # type: ignore[no-untyped-def]
        s: Settings = settings(environment, self.default_listener)
        self.host = f"https://{s.sni or s.target.host}:{s.target.port}"
        self.ssl_context_factory = lambda: gevent.ssl.create_default_context(cafile=s.tls.cafile)
        self.path = f"{s.options.path}?size={s.options.response_size}"
        super().__init__(environment)

    @task
    def get(self) -> None:
        self.client.get(self.path, name=self.path.split("?")[0])
