"""The management REST API (the control plane); `ApiServer(lab, host, port)`."""

from simulator.api.routes import ApiServer

__all__ = ["ApiServer"]
