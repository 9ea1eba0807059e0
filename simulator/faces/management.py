"""The control plane's resources: health, certificates, listeners, connections, traffic, backends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulator.certs.truststore import TrustStore
from simulator.faces.http import JsonServer, Request, Router
from simulator.errors import LbsimError

if TYPE_CHECKING:
    from simulator.runtime.lab import Lab


def port_of(request: Request) -> int | str:
    """`/v1/listeners/{port}` names a listener by its port (when only one listener uses it) or by its key,
    `address:port` (two load balancers may each have a listener on the same port)."""
    value = request.params["port"]
    address, colon, port = value.rpartition(":")
    if not port.isdigit() or (colon and not address):
        raise LbsimError("InvalidPort", f"expected a port number or address:port, got {value!r}", field="port")
    return value if colon else int(port)


def pem_field(data: dict[str, Any], key: str, required: bool = True) -> bytes | None:
    value = data.get(key)
    if value is None:
        if required:
            raise LbsimError("MissingField", f"'{key}' is required", field=key)
        return None
    if not isinstance(value, str):
        raise LbsimError("InvalidField", f"expected PEM text, got {type(value).__name__}", field=key)
    return value.encode()


async def attach_api(lab: Lab) -> ApiServer:
    """Start the management API of a started lab (worker 0) as its config says; the lab stops it with itself."""
    api = ApiServer(lab, lab.config.api.host, lab.config.api.port, token=lab.config.api.token)
    await api.start()
    lab.api = api
    lab.attach(api)
    return api


async def attach_console(lab: Lab) -> Any:
    """Start the web console beside the management API: its host and token, any free port."""
    from simulator.faces.console import ConsoleServer  # HTML and static files: loaded only by a lab that serves it

    console = ConsoleServer(lab, lab.config.api.host, 0, token=lab.config.api.token)
    await console.start()
    lab.console = console
    lab.attach(console)
    return console


async def start_with_faces(lab: Lab) -> Lab:
    """Start the lab, then its control faces (the management API, the console); stop it again if a face
    cannot start."""
    await lab.start()
    try:
        await attach_api(lab)
        await attach_console(lab)
    except BaseException:
        await lab.stop()
        raise
    return lab


class ApiServer(JsonServer):
    """`GET /health`, `/v1/certificates`, `/v1/listeners`, `/v1/trust-stores`, `/v1/connections`, `/v1/traffic`,
    `/v1/backends`."""

    def __init__(self, lab: Lab, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        self.lab = lab
        router = Router()
        for method, pattern, handler in (
            ("GET", "/health", self.health),
            ("GET", "/v1/certificates", self.list_certificates),
            ("POST", "/v1/certificates", self.upload_certificate),
            ("GET", "/v1/certificates/{ref}", self.describe_certificate),
            ("PUT", "/v1/certificates/{ref}", self.replace_certificate),
            ("POST", "/v1/certificates/{ref}/rename", self.rename_certificate),
            ("DELETE", "/v1/certificates/{ref}", self.delete_certificate),
            ("GET", "/v1/listeners", self.list_listeners),
            ("POST", "/v1/listeners", self.create_listener),
            ("GET", "/v1/listeners/{port}", self.describe_listener),
            ("PUT", "/v1/listeners/{port}", self.change_listener),
            ("DELETE", "/v1/listeners/{port}", self.delete_listener),
            ("POST", "/v1/listeners/{port}/start", self.start_listener),
            ("POST", "/v1/listeners/{port}/stop", self.stop_listener),
            ("GET", "/v1/trust-stores", self.list_trust_stores),
            ("POST", "/v1/trust-stores", self.create_trust_store),
            ("GET", "/v1/trust-stores/{name}", self.describe_trust_store),
            ("PUT", "/v1/trust-stores/{name}", self.replace_trust_store_bundle),
            ("DELETE", "/v1/trust-stores/{name}", self.delete_trust_store),
            ("POST", "/v1/trust-stores/{name}/revocations", self.add_revocations),
            ("DELETE", "/v1/trust-stores/{name}/revocations/{id}", self.remove_revocation),
            ("GET", "/v1/connections", self.connections),
            ("GET", "/v1/traffic", self.traffic),
            ("GET", "/v1/backends", self.list_backends),
            ("POST", "/v1/backends/{name}/health", self.set_backend_health),
        ):
            router.add(method, pattern, handler)
        super().__init__(router, host, port, token)

    async def health(self, request: Request) -> tuple[int, Any]:
        ready = self.lab.ready()
        listeners = {self.lab.ref(l): l.status for l in self.lab.registry.listeners.values()}  # port, or address:port
        return (200 if ready else 503), {"status": "ok" if ready else "starting", "listeners": listeners}

    # certificates ------------------------------------------------------------------------------------------
    async def list_certificates(self, request: Request) -> tuple[int, Any]:
        kind = request.query.get("type")
        return 200, {"certificates": [c.to_dict() for c in self.lab.store.list(kind)]}

    async def upload_certificate(self, request: Request) -> tuple[int, Any]:
        data = request.json()
        kind = data.get("type", "server")
        name, profile, strict = data.get("name"), data.get("profile", self.lab.config.profile), bool(data.get("strict", False))
        if not isinstance(name, str):
            raise LbsimError("MissingField", "'name' is required (1-80 characters)", field="name")
        if kind == "server":
            info = self.lab.store.upload_server(name, pem_field(data, "cert"), pem_field(data, "key"), profile=profile, strict=strict)
        elif kind == "ca":
            if data.get("key") is not None:
                raise LbsimError("UnexpectedPrivateKey", "a CA certificate is uploaded without a private key", field="key")
            info = self.lab.store.upload_ca(name, pem_field(data, "cert"), profile=profile, strict=strict)
        else:
            raise LbsimError("InvalidField", f"unknown type {kind!r}; expected server or ca", field="type")
        return 201, info.to_dict()

    async def describe_certificate(self, request: Request) -> tuple[int, Any]:
        return 200, self.lab.store.describe(request.params["ref"]).to_dict()

    async def replace_certificate(self, request: Request) -> tuple[int, Any]:
        data = request.json()
        info = self.lab.store.replace(request.params["ref"], pem_field(data, "cert"), pem_field(data, "key", False),
                                      strict=bool(data.get("strict", False)))
        return 200, info.to_dict()

    async def rename_certificate(self, request: Request) -> tuple[int, Any]:
        name = request.json().get("name")
        if not isinstance(name, str):
            raise LbsimError("MissingField", "'name' is required", field="name")
        return 200, self.lab.store.rename(request.params["ref"], name).to_dict()

    async def delete_certificate(self, request: Request) -> tuple[int, Any]:
        self.lab.store.delete(request.params["ref"])
        return 204, None

    # listeners ---------------------------------------------------------------------------------------------
    async def list_listeners(self, request: Request) -> tuple[int, Any]:
        return 200, {"listeners": self.lab.endpoints()}

    async def create_listener(self, request: Request) -> tuple[int, Any]:
        data = request.json()
        start = data.pop("start", None)
        if start is not None and not isinstance(start, bool):
            raise LbsimError("InvalidField", f"expected true or false, got {start!r}", field="start")
        listener = await self.lab.add_listener(self.lab.spec_from_api(data), start=start)
        return 202, self.lab.view(listener)

    async def describe_listener(self, request: Request) -> tuple[int, Any]:
        return 200, self.lab.view(self.lab.get_listener(port_of(request)))

    async def change_listener(self, request: Request) -> tuple[int, Any]:
        listener = self.lab.get_listener(port_of(request))
        data = request.json()
        if "lb_id" not in data and listener.spec is not None:  # a listener stays on its load balancer
            data["lb_id"] = listener.spec.lb_id
        spec = self.lab.spec_from_api(data, port=listener.port)
        return 202, self.lab.view(self.lab.reconfigure(listener, spec))

    async def delete_listener(self, request: Request) -> tuple[int, Any]:
        await self.lab.remove_listener(port_of(request))
        return 204, None

    async def start_listener(self, request: Request) -> tuple[int, Any]:
        return 200, self.lab.view(await self.lab.set_running(port_of(request), True))

    async def stop_listener(self, request: Request) -> tuple[int, Any]:
        return 200, self.lab.view(await self.lab.set_running(port_of(request), False))

    # trust stores (ALB mutual TLS verify) ------------------------------------------------------------------
    async def list_trust_stores(self, request: Request) -> tuple[int, Any]:
        return 200, {"trust_stores": [t.to_dict() for t in self.lab.trust_stores.values()]}

    async def create_trust_store(self, request: Request) -> tuple[int, Any]:
        data = request.json()
        revocations = data.get("revocations") or []
        if not isinstance(revocations, list) or not all(isinstance(r, str) for r in revocations):
            raise LbsimError("InvalidField", "expected a list of PEM CRLs", field="revocations")
        store = TrustStore.create(data.get("name"), pem_field(data, "ca_bundle"), revocations, field="trust_store")
        self.lab.add_trust_store(store)
        await self.lab.publish_trust_store(store.name)
        return 201, store.to_dict()

    async def describe_trust_store(self, request: Request) -> tuple[int, Any]:
        return 200, self.lab.trust_store(request.params["name"]).to_dict()

    async def replace_trust_store_bundle(self, request: Request) -> tuple[int, Any]:
        store = self.lab.trust_store(request.params["name"])
        store.replace_bundle(pem_field(request.json(), "ca_bundle"))
        self.lab.trust_store_changed(store.name)
        await self.lab.publish_trust_store(store.name)
        return 200, store.to_dict()

    async def delete_trust_store(self, request: Request) -> tuple[int, Any]:
        self.lab.remove_trust_store(request.params["name"])
        await self.lab.publish_trust_store(request.params["name"])
        return 204, None

    async def add_revocations(self, request: Request) -> tuple[int, Any]:
        store = self.lab.trust_store(request.params["name"])
        data = request.json()
        crls = data.get("revocations", [data.get("crl")] if "crl" in data else None)
        if not isinstance(crls, list) or not crls or not all(isinstance(c, str) for c in crls):
            raise LbsimError("MissingField", "give 'crl' (one PEM CRL) or 'revocations' (a list of them)",
                             field="revocations")
        ids = store.add_revocations(crls)
        self.lab.trust_store_changed(store.name)
        await self.lab.publish_trust_store(store.name)
        return 201, {"revocation_ids": ids, **store.to_dict()}

    async def remove_revocation(self, request: Request) -> tuple[int, Any]:
        store = self.lab.trust_store(request.params["name"])
        value = request.params["id"]
        if not value.isdigit():
            raise LbsimError("InvalidField", f"expected a revocation id, got {value!r}", field="id")
        store.remove_revocations([int(value)])
        self.lab.trust_store_changed(store.name)
        await self.lab.publish_trust_store(store.name)
        return 204, None

    # observations ------------------------------------------------------------------------------------------
    async def connections(self, request: Request) -> tuple[int, Any]:
        records = list(self.lab.registry.recent)
        if "listener" in request.query:
            records = [r for r in records if str(r["listener_port"]) == request.query["listener"]]
        limit = request.query.get("limit", "1000")
        if not limit.isdigit():
            raise LbsimError("InvalidField", f"expected a number, got {limit!r}", field="limit")
        return 200, {"connections": records[-int(limit):] if int(limit) else [], "active": self.lab.open_clients()}

    async def traffic(self, request: Request) -> tuple[int, Any]:
        out: dict[str, Any] = {"listeners": self.lab.ledger.summary()}
        if request.query.get("connections") in ("1", "true"):
            out["connections"] = list(self.lab.ledger.records)
        return 200, out

    async def list_backends(self, request: Request) -> tuple[int, Any]:
        out = []
        for name, (host, port) in self.lab.addresses.items():
            mock = self.lab.backends.get(name)
            out.append({"name": name, "address": f"{host}:{port}", "managed": mock is not None,
                        "healthy": mock.healthy if mock else None, "down": mock.down if mock else None,
                        "stats": mock.stats if mock else None})
        return 200, {"backends": out}

    async def set_backend_health(self, request: Request) -> tuple[int, Any]:
        name = request.params["name"]
        mock = self.lab.backends.get(name)
        if mock is None:
            raise LbsimError("BackendNotFound", f"no mock backend named {name!r}", field="name")
        data = request.json()
        for key in ("healthy", "down"):
            if key in data:
                if not isinstance(data[key], bool):
                    raise LbsimError("InvalidField", f"expected true or false, got {data[key]!r}", field=key)
                setattr(mock, key, data[key])
        return 200, {"name": name, "healthy": mock.healthy, "down": mock.down}
