"""Load balancers as resources of the lab: an id, a name, a vendor profile, and an address of their own.

In the cloud a load balancer is a virtual IP; its listeners listen there. In the lab each load balancer gets a
loopback address `127.0.0.x` (Linux routes all of 127.0.0.0/8 to the loopback device), allocated by the lab.
127.0.0.1 stays the lab's own: the listeners of the lab file and the management API live there, under the
load balancers their `lb_id` names (`lb-lbsim` by default).

Limitation: the lab keys listeners by port (registry, workers, management API), so listener ports are unique
within a lab, across all its load balancers (docs/vendor-apis.md).
"""

from __future__ import annotations

import random
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

from simulator import vendors
from simulator.errors import LbsimError
from simulator.model.config import BackendServer
from simulator.net import LOOPBACK

DEFAULT_LB_ID = "lb-lbsim"
ADDRESS_PREFIX = "127.0.0."
ADDRESS_HOSTS = range(2, 255)  # 127.0.0.1 is the lab's own
QUOTA = 60  # load balancers created through the vendor APIs per lab (the vendors' default per-region quotas are similar)


@dataclass
class LoadBalancer:
    """One load balancer. `backend_servers` is Alibaba's default server group: every listener of the load
    balancer forwards to it (AddBackendServers and friends). Tencent registers targets per listener instead."""

    id: str
    name: str
    profile: str
    address: str
    created: float = field(default_factory=time.time)
    region: str = ""
    backend_servers: tuple[BackendServer, ...] = ()
    from_lab_file: bool = False  # a load balancer the lab file's listeners name (on 127.0.0.1)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "profile": self.profile, "address": self.address,
                "created": self.created, "region": self.region,
                "backend_servers": [{"backend": b.backend, "weight": b.weight} for b in self.backend_servers]}


class LoadBalancers:
    """The lab's load balancers by id, and the loopback addresses they hold."""

    def __init__(self, quota: int = QUOTA):
        self.quota = quota
        self._by_id: dict[str, LoadBalancer] = {}

    def create(self, profile: str, name: str = "", region: str = "") -> LoadBalancer:
        """A new load balancer on a free 127.0.0.x (x in 2..254, picked at random so that labs running side by
        side on one machine rarely pick the same one)."""
        own = [lb for lb in self._by_id.values() if not lb.from_lab_file]
        if len(own) >= self.quota:
            raise LbsimError("QuotaExceeded", f"the lab holds {len(own)} load balancers, its quota is {self.quota}",
                             field="lb_id", hint="delete load balancers you no longer need",
                             details={"quota": self.quota})
        used = {lb.address for lb in self._by_id.values()}
        free = [f"{ADDRESS_PREFIX}{x}" for x in ADDRESS_HOSTS if f"{ADDRESS_PREFIX}{x}" not in used]
        if not free:
            raise LbsimError("QuotaExceeded", "no loopback address left for another load balancer", field="lb_id")
        lb = LoadBalancer(self._new_id(profile), name, profile, random.choice(free), region=region)
        if not lb.name:
            lb.name = lb.id
        self._by_id[lb.id] = lb
        return lb

    def ensure(self, lb_id: str, profile: str) -> LoadBalancer:
        """The load balancer a listener's `lb_id` names; an unknown id (lab file, management API) becomes a load
        balancer on 127.0.0.1, as every listener was before load balancers were resources."""
        lb = self._by_id.get(lb_id)
        if lb is None:
            lb = self._by_id[lb_id] = LoadBalancer(lb_id, lb_id, profile, LOOPBACK, from_lab_file=True)
        return lb

    def get(self, lb_id: str) -> LoadBalancer:
        lb = self._by_id.get(lb_id)
        if lb is None:
            raise LbsimError("LoadBalancerNotFound", f"no load balancer {lb_id!r}", field="lb_id",
                             hint="list them with the vendor API's DescribeLoadBalancers")
        return lb

    def list(self, profile: str | None = None) -> list[LoadBalancer]:
        return [lb for lb in self._by_id.values() if profile is None or lb.profile == profile]

    def rename(self, lb_id: str, name: str) -> LoadBalancer:
        lb = self.get(lb_id)
        lb.name = name
        return lb

    def remove(self, lb_id: str) -> LoadBalancer:
        lb = self.get(lb_id)
        del self._by_id[lb_id]
        return lb

    def _new_id(self, profile: str) -> str:
        # The vendor's id style (`VendorProfile.lb_id_style`); a name nobody registered gets the generic one.
        prefix, length = vendors.get(profile).lb_id_style if profile in vendors.names() else ("lb-", 12)
        alphabet = string.ascii_lowercase + string.digits
        while True:
            lb_id = prefix + "".join(secrets.choice(alphabet) for _ in range(length))
            if lb_id not in self._by_id:
                return lb_id
