"""What every Tencent product API of the lab is: a `Service` of named actions, each called with a `Call`."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from simulator.faces.tencent.params import Params

Action = Callable[[Params, "Call"], Awaitable[dict[str, Any]]]


class Call:
    """Who called, where: what an action may want beside its parameters."""

    def __init__(self, action: str, region: str, secret_id: str, request_id: str = ""):
        self.action, self.region, self.secret_id = action, region, secret_id
        self.request_id = request_id  # Tencent: the task id of an asynchronous change


class Service:
    """One Tencent product API (`name` is the credential scope's service, `version` its API version)."""

    name = ""
    version = ""

    def actions(self) -> dict[str, Action]:
        raise NotImplementedError
