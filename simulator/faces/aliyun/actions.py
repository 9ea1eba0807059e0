"""The SLB 2014-05-15 actions the lab serves, each a translation into the lab's model.

An action reads its parameters (`Params`), calls the lab (certificate store, load balancers, `Lab.add_listener`,
`reconfigure`, `set_running`, `remove_listener`) and shapes the vendor's response. Validation lives in the model
(`model.config.parse_listener`, `certs.validate`): the lab's refusals are translated by `errors.from_lbsim`.
Everything is checked before anything changes, so an error never changes state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from simulator.certs.store import CertInfo
from simulator.errors import LbsimError
from simulator.faces.aliyun.errors import AliyunError, from_lbsim
from simulator.model.config import BackendServer, ListenerSpec
from simulator.model.loadbalancers import LoadBalancer

if TYPE_CHECKING:
    from simulator.dataplane.listener import Listener
    from simulator.runtime.lab import Lab

PROFILE = "aliyun-slb"
ON_OFF = ("on", "off")


def _ms(when: float) -> int:
    return int(when * 1000)


def _iso(when: dt.datetime | float) -> str:
    if not isinstance(when, dt.datetime):
        when = dt.datetime.fromtimestamp(when, dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Params:
    """An action's parameters, read with the vendor's MissingParameter / InvalidParameter errors."""

    def __init__(self, values: dict[str, str]):
        self.values = values

    def has(self, name: str) -> bool:
        return self.values.get(name, "") != ""

    def str(self, name: str, required: bool = False, default: str | None = None, max_len: int = 4096) -> str | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise AliyunError("MissingParameter", detail=f"{name} is required", message=f"The input parameter "
                                  f"\"{name}\" that is mandatory for processing this request is not supplied.")
            return default
        if len(value) > max_len:
            raise self.invalid(name, f"longer than {max_len} characters")
        return value

    def int(self, name: str, lo: int, hi: int, required: bool = False, default: int | None = None) -> int | None:
        value = self.str(name, required)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise self.invalid(name, f"{value[:40]!r} is not an integer") from None
        if not lo <= number <= hi:
            raise self.invalid(name, f"{number} is out of range {lo}..{hi}")
        return number

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None, required: bool = False) -> str | None:
        value = self.str(name, required)
        if value is None:
            return default
        if value not in allowed:
            raise self.invalid(name, f"{value[:40]!r}; expected one of {', '.join(allowed)}")
        return value

    def json_list(self, name: str, required: bool = False) -> list[dict[str, Any]]:
        value = self.str(name, required, max_len=65536)
        if value is None:
            return []
        try:
            data = json.loads(value)
        except ValueError:
            raise self.invalid(name, "is not a JSON list") from None
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise self.invalid(name, "expected a JSON list of objects")
        return data

    def ids(self, name: str) -> list[str]:
        """A comma-separated list (DescribeLoadBalancers' LoadBalancerId), or Name.1, Name.2, ..."""
        value = self.str(name)
        if value is not None:
            return [v.strip() for v in value.split(",") if v.strip()]
        return [v for k, v in sorted(self.values.items()) if re.fullmatch(rf"{re.escape(name)}\.\d+", k) and v]

    @staticmethod
    def invalid(name: str, why: str) -> AliyunError:
        return AliyunError("InvalidParameter", detail=f"{name}: {why}",
                           message=f"The specified parameter \"{name}\" is not valid.")


Action = Callable[[Params], Awaitable[dict[str, Any]]]

# Listener parameters: (Alibaba parameter, meaning in the lab). Accepted and ignored: no lab behaviour to drive.
IGNORED_LISTENER_PARAMS = ("Bandwidth", "BackendServerPort", "Gzip", "HealthCheckDomain", "XForwardedFor_SLBPORT",
                           "XForwardedFor_ClientSrcPort", "XForwardedFor_ClientCertSubjectDN", "Description",
                           "XForwardedFor_ClientCertIssuerDN", "XForwardedFor_ClientCertFingerprint",
                           "XForwardedFor_ClientCertClientVerify", "HealthCheckType", "ResourceGroupId", "Tag")
REFUSED_LISTENER_PARAMS = {"VServerGroupId": "virtual server groups", "AclStatus": "access control lists",
                           "ForwardPort": "HTTP-to-HTTPS redirection", "ListenerForward": "HTTP-to-HTTPS redirection"}


class Actions:
    """Every supported action by name."""

    def __init__(self, lab: Lab, region: str):
        self.lab, self.region = lab, region
        self.table: dict[str, Action] = {
            "UploadServerCertificate": self.upload_server_certificate,
            "DescribeServerCertificates": self.describe_server_certificates,
            "SetServerCertificateName": self.set_server_certificate_name,
            "DeleteServerCertificate": self.delete_server_certificate,
            "UploadCACertificate": self.upload_ca_certificate,
            "DescribeCACertificates": self.describe_ca_certificates,
            "SetCACertificateName": self.set_ca_certificate_name,
            "DeleteCACertificate": self.delete_ca_certificate,
            "CreateLoadBalancer": self.create_load_balancer,
            "DescribeLoadBalancers": self.describe_load_balancers,
            "DescribeLoadBalancerAttribute": self.describe_load_balancer_attribute,
            "DeleteLoadBalancer": self.delete_load_balancer,
            "CreateLoadBalancerHTTPSListener": self.create_https_listener,
            "SetLoadBalancerHTTPSListenerAttribute": self.set_https_listener_attribute,
            "DescribeLoadBalancerHTTPSListenerAttribute": self.describe_https_listener_attribute,
            "DescribeLoadBalancerListeners": self.describe_listeners,
            "StartLoadBalancerListener": self.start_listener,
            "StopLoadBalancerListener": self.stop_listener,
            "DeleteLoadBalancerListener": self.delete_listener,
            "AddBackendServers": self.add_backend_servers,
            "SetBackendServers": self.set_backend_servers,
            "RemoveBackendServers": self.remove_backend_servers,
            "DescribeHealthStatus": self.describe_health_status,
        }

    # ---- certificates ------------------------------------------------------------------------------------

    def _certificate(self, cert_id: str, kind: str) -> CertInfo:
        code = "ServerCertificateId.NotFound" if kind == "server" else "CACertificateId.NotFound"
        try:
            info = self.lab.store.describe(cert_id)
        except LbsimError:
            raise AliyunError(code, detail=f"no certificate {cert_id!r}") from None
        if info.type != kind or info.id != cert_id:  # by id only, as the vendor: a name is no id
            raise AliyunError(code, detail=f"{cert_id!r} is no {kind} certificate id")
        return info

    def _cert_fields(self, info: CertInfo, prefix: str) -> dict[str, Any]:
        match = re.search(r"CN=([^,]+)", info.subject)
        out = {f"{prefix}Id": info.id, f"{prefix}Name": info.name, "Fingerprint": info.fingerprint,
               "ExpireTime": _iso(info.not_after), "ExpireTimeStamp": _ms(info.not_after.timestamp()),
               "CommonName": match.group(1) if match else "", "CreateTime": _iso(info.created),
               "CreateTimeStamp": _ms(info.created.timestamp()), "RegionId": self.region, "ResourceGroupId": ""}
        if prefix == "ServerCertificate":
            out.update(SubjectAlternativeNames={"SubjectAlternativeName": list(info.sans)},
                       IsAliCloudCertificate=0, AliCloudCertificateId="", AliCloudCertificateName="")
        return out

    async def upload_server_certificate(self, p: Params) -> dict[str, Any]:
        if p.has("AliCloudCertificateId"):
            raise AliyunError("UnsupportedOperation", detail="certificates from Alibaba Cloud's certificate service "
                              "(AliCloudCertificateId) are not in the lab; upload ServerCertificate and PrivateKey")
        cert = p.str("ServerCertificate", True, max_len=65536)
        key = p.str("PrivateKey", True, max_len=65536)
        name = p.str("ServerCertificateName") or "lbsim-server-certificate"
        try:
            info = self.lab.store.upload_server(name, cert.encode(), key.encode(), profile=PROFILE)
        except LbsimError as e:
            raise from_lbsim(e, "server") from None
        return self._cert_fields(info, "ServerCertificate")

    async def upload_ca_certificate(self, p: Params) -> dict[str, Any]:
        cert = p.str("CACertificate", True, max_len=65536)
        name = p.str("CACertificateName") or "lbsim-ca-certificate"
        try:
            info = self.lab.store.upload_ca(name, cert.encode(), profile=PROFILE)
        except LbsimError as e:
            raise from_lbsim(e, "ca") from None
        return self._cert_fields(info, "CACertificate")

    async def describe_server_certificates(self, p: Params) -> dict[str, Any]:
        wanted = set(p.ids("ServerCertificateId"))
        infos = [i for i in self.lab.store.list("server") if not wanted or i.id in wanted]
        return {"ServerCertificates": {"ServerCertificate": [self._cert_fields(i, "ServerCertificate") for i in infos]}}

    async def describe_ca_certificates(self, p: Params) -> dict[str, Any]:
        wanted = set(p.ids("CACertificateId"))
        infos = [i for i in self.lab.store.list("ca") if not wanted or i.id in wanted]
        return {"CACertificates": {"CACertificate": [self._cert_fields(i, "CACertificate") for i in infos]}}

    async def _rename(self, p: Params, kind: str, prefix: str) -> dict[str, Any]:
        info = self._certificate(p.str(f"{prefix}Id", True), kind)
        name = p.str(f"{prefix}Name", True)
        try:
            self.lab.store.rename(info.id, name)
        except LbsimError as e:
            raise from_lbsim(e) from None
        return {}

    async def set_server_certificate_name(self, p: Params) -> dict[str, Any]:
        return await self._rename(p, "server", "ServerCertificate")

    async def set_ca_certificate_name(self, p: Params) -> dict[str, Any]:
        return await self._rename(p, "ca", "CACertificate")

    async def _delete(self, p: Params, kind: str, prefix: str, in_use: str) -> dict[str, Any]:
        info = self._certificate(p.str(f"{prefix}Id", True), kind)
        try:
            self.lab.store.delete(info.id)
        except LbsimError as e:
            if e.code == "CertificateInUse":
                raise AliyunError(in_use, detail=e.message, hint=e.hint) from None
            raise from_lbsim(e) from None
        return {}

    async def delete_server_certificate(self, p: Params) -> dict[str, Any]:
        return await self._delete(p, "server", "ServerCertificate", "CertificateAndPrivateKeyIsRefered")

    async def delete_ca_certificate(self, p: Params) -> dict[str, Any]:
        return await self._delete(p, "ca", "CACertificate", "CACertificateIsRefered")

    # ---- load balancers ----------------------------------------------------------------------------------

    def _lb(self, p: Params) -> LoadBalancer:
        lb_id = p.str("LoadBalancerId", True)
        try:
            lb = self.lab.loadbalancers.get(lb_id)
        except LbsimError:
            lb = None
        if lb is None or not (lb.profile == PROFILE or lb.from_lab_file):  # the lab file's hold both vendors' listeners
            raise AliyunError("InvalidLoadBalancerId.NotFound", detail=f"no aliyun-slb load balancer {lb_id!r}")
        return lb

    def _lb_fields(self, lb: LoadBalancer) -> dict[str, Any]:
        return {"LoadBalancerId": lb.id, "LoadBalancerName": lb.name, "LoadBalancerStatus": "active",
                "Address": lb.address, "AddressType": "intranet", "AddressIPVersion": "ipv4", "NetworkType": "vpc",
                "RegionId": lb.region or self.region, "RegionIdAlias": lb.region or self.region,
                "CreateTime": _iso(lb.created), "CreateTimeStamp": _ms(lb.created), "PayType": "PayOnDemand",
                "InternetChargeType": "paybytraffic", "LoadBalancerSpec": "", "VpcId": "", "VSwitchId": "",
                "ResourceGroupId": ""}

    async def create_load_balancer(self, p: Params) -> dict[str, Any]:
        name = p.str("LoadBalancerName", max_len=80) or ""
        if p.choice("AddressType", ("internet", "intranet")) == "internet":
            pass  # an address of the lab's loopback range either way (docs/vendor-apis.md)
        try:
            lb = self.lab.create_load_balancer(PROFILE, name, p.str("RegionId") or self.region)
        except LbsimError as e:
            if e.code == "QuotaExceeded":
                raise AliyunError("QuotaExceeded.LoadBalancer", detail=e.message, hint=e.hint) from None
            raise from_lbsim(e) from None
        fields = self._lb_fields(lb)
        return {k: fields[k] for k in ("LoadBalancerId", "LoadBalancerName", "Address", "AddressIPVersion",
                                       "NetworkType", "VpcId", "VSwitchId", "ResourceGroupId")} | {"OrderId": 0}

    async def describe_load_balancers(self, p: Params) -> dict[str, Any]:
        wanted = set(p.ids("LoadBalancerId"))
        name = p.str("LoadBalancerName")
        lbs = [lb for lb in self.lab.loadbalancers.list(PROFILE) if not lb.from_lab_file
               and (not wanted or lb.id in wanted) and (name is None or lb.name == name)]
        page = p.int("PageNumber", 1, 10**6, default=1)
        size = p.int("PageSize", 1, 100, default=10)
        chosen = lbs[(page - 1) * size: page * size]
        return {"TotalCount": len(lbs), "PageNumber": page, "PageSize": size,
                "LoadBalancers": {"LoadBalancer": [self._lb_fields(lb) for lb in chosen]}}

    async def describe_load_balancer_attribute(self, p: Params) -> dict[str, Any]:
        lb = self._lb(p)
        listeners = self._listeners(lb.id)
        return self._lb_fields(lb) | {
            "ListenerPorts": {"ListenerPort": [l.port for l in listeners]},
            "ListenerPortsAndProtocol": {"ListenerPortAndProtocol": [
                {"ListenerPort": l.port, "ListenerProtocol": "https"} for l in listeners]},
            "ListenerPortsAndProtocal": {"ListenerPortAndProtocal": [
                {"ListenerPort": l.port, "ListenerProtocal": "https"} for l in listeners]},  # sic: the vendor's field
            "BackendServers": {"BackendServer": self._backend_fields(lb.backend_servers)},
        }

    async def delete_load_balancer(self, p: Params) -> dict[str, Any]:
        lb = self._lb(p)
        await self.lab.delete_load_balancer(lb.id)
        return {}

    # ---- listeners ---------------------------------------------------------------------------------------

    def _listeners(self, lb_id: str) -> list[Listener]:
        """The load balancer's aliyun-slb listeners by port (the lab file's `lb-lbsim` may hold tencent ones too)."""
        return sorted((l for l in self.lab.listeners_of(lb_id) if l.spec is not None and l.spec.profile == PROFILE),
                      key=lambda l: l.port)

    def _listener(self, p: Params) -> tuple[LoadBalancer, Listener]:
        lb = self._lb(p)
        port = p.int("ListenerPort", 1, 65535, True)
        try:
            listener = self.lab.listener_at(lb.id, port)
            if listener.spec is None or listener.spec.profile != PROFILE:
                raise LbsimError("ListenerNotFound", f"the listener on port {port} is no aliyun-slb listener")
            return lb, listener
        except LbsimError:
            raise AliyunError("ListenerNotFound", detail=f"load balancer {lb.id} has no listener on port {port}",
                              message="The specified resource does not exist.") from None

    def _listener_data(self, p: Params, base: dict[str, Any]) -> dict[str, Any]:
        """The lab's listener fields (model/config.py) from the action's parameters over `base`."""
        for name, what in REFUSED_LISTENER_PARAMS.items():
            if p.has(name) and not (name == "AclStatus" and p.str(name) == "off"):
                raise AliyunError("UnsupportedOperation", detail=f"{name}: the lab has no {what}")
        data = dict(base)
        if p.has("ServerCertificateId"):
            data["server_certificate"] = self._certificate(p.str("ServerCertificateId"), "server").id
        if p.has("CACertificateId"):
            data["ca_certificate"] = self._certificate(p.str("CACertificateId"), "ca").id
        for param, field in (("TLSCipherPolicy", "tls_policy"), ("Scheduler", "scheduler")):
            if p.has(param):
                data[field] = p.str(param)
        if p.has("EnableHttp2"):
            data["http2"] = p.choice("EnableHttp2", ON_OFF) == "on"
        for param, field, (lo, hi) in (("IdleTimeout", "idle_timeout", (1, 60)),
                                       ("RequestTimeout", "request_timeout", (1, 180))):
            if p.has(param):
                data[field] = p.int(param, lo, hi)
        if p.has("XForwardedFor") and p.choice("XForwardedFor", ON_OFF) == "off":
            raise AliyunError("InvalidParameter", detail="XForwardedFor is always on for HTTPS listeners")
        headers = dict(data.get("headers") or {})
        for param, field in (("XForwardedFor_SLBIP", "slb_ip"), ("XForwardedFor_SLBID", "slb_id"),
                             ("XForwardedFor_proto", "x_forwarded_proto")):
            if p.has(param):
                headers[field] = p.choice(param, ON_OFF) == "on"
        data["headers"] = headers
        if p.has("StickySession"):
            if p.choice("StickySession", ON_OFF) == "on":
                sticky = {"type": p.choice("StickySessionType", ("insert", "server"), required=True)}
                if p.has("CookieTimeout"):
                    sticky["cookie_timeout"] = p.int("CookieTimeout", 1, 86400)
                if p.has("Cookie"):
                    sticky["cookie"] = p.str("Cookie", max_len=200)
                data["sticky_session"] = sticky
            else:
                data["sticky_session"] = None
        health = dict(data.get("health_check") or {})
        if p.has("HealthCheck"):
            health["enabled"] = p.choice("HealthCheck", ON_OFF) == "on"
        for param, field, (lo, hi) in (("HealthCheckConnectPort", "connect_port", (1, 65535)),
                                       ("HealthyThreshold", "healthy_threshold", (2, 10)),
                                       ("UnhealthyThreshold", "unhealthy_threshold", (2, 10)),
                                       ("HealthCheckTimeout", "timeout", (1, 300)),
                                       ("HealthCheckInterval", "interval", (1, 50))):
            if p.has(param):
                health[field] = p.int(param, lo, hi)
        if p.has("HealthCheckURI"):
            health["uri"] = p.str("HealthCheckURI", max_len=80)
        if p.has("HealthCheckHttpCode"):
            health["http_code"] = p.str("HealthCheckHttpCode").split(",")
        if p.has("HealthCheckMethod"):
            health["method"] = p.choice("HealthCheckMethod", ("head", "get"))
        data["health_check"] = health
        return data

    def _spec(self, data: dict[str, Any]) -> ListenerSpec:
        try:
            return self.lab.spec_from_api(data)
        except LbsimError as e:
            raise from_lbsim(e) from None

    @staticmethod
    def _backends_data(servers: tuple[BackendServer, ...]) -> list[dict[str, Any]]:
        return [{"backend": s.backend, "weight": s.weight} for s in servers]

    async def create_https_listener(self, p: Params) -> dict[str, Any]:
        lb = self._lb(p)
        port = p.int("ListenerPort", 1, 65535, True)
        p.int("Bandwidth", -1, 5120)  # accepted (validated) and ignored: the lab does not shape bandwidth
        p.str("ServerCertificateId", True)
        p.choice("StickySession", ON_OFF, required=True)
        p.choice("HealthCheck", ON_OFF)
        base = {"port": port, "lb_id": lb.id, "profile": PROFILE, "name": f"{lb.id}-https-{port}",
                "backend_servers": self._backends_data(lb.backend_servers)}
        spec = self._spec(self._listener_data(p, base))
        try:
            await self.lab.add_listener(spec)  # aliyun-slb: created stopped (the vendor's default)
        except LbsimError as e:
            raise from_lbsim(e) from None
        return {}

    @staticmethod
    def _spec_data(spec: ListenerSpec) -> dict[str, Any]:
        """A listener spec as the lab's listener fields again (the base a Set...Attribute changes)."""
        health = dataclasses.asdict(spec.health_check)
        health["http_code"] = list(health["http_code"])
        headers = {"x_forwarded_proto": spec.headers.x_forwarded_proto, "slb_ip": spec.headers.slb_ip,
                   "slb_id": spec.headers.slb_id, "client_cert": spec.headers.client_cert}
        data: dict[str, Any] = {
            "port": spec.port, "lb_id": spec.lb_id, "profile": spec.profile, "name": spec.name,
            "server_certificate": spec.server_certificate, "tls_policy": spec.policy.name, "http2": spec.http2,
            "scheduler": spec.scheduler, "backend_servers": Actions._backends_data(spec.backend_servers),
            "sticky_session": dataclasses.asdict(spec.sticky_session) if spec.sticky_session else None,
            "health_check": health, "idle_timeout": spec.idle_timeout, "request_timeout": spec.request_timeout,
            "headers": headers,
        }
        if spec.ca_certificate:
            data["ca_certificate"] = spec.ca_certificate
        if spec.activation_delay is not None:
            data["activation_delay"] = spec.activation_delay
        return data

    async def set_https_listener_attribute(self, p: Params) -> dict[str, Any]:
        _, listener = self._listener(p)
        assert listener.spec is not None
        spec = self._spec(self._listener_data(p, self._spec_data(listener.spec)))
        try:
            self.lab.reconfigure(listener, spec)
        except LbsimError as e:
            raise from_lbsim(e) from None
        return {}

    def _status(self, listener: Listener) -> str:
        return {"running": "running", "stopped": "stopped", "configuring": "configuring"}.get(listener.status,
                                                                                           listener.status)

    def _listener_fields(self, listener: Listener) -> dict[str, Any]:
        spec = listener.spec
        assert spec is not None
        h = spec.health_check
        onoff = lambda b: "on" if b else "off"  # noqa: E731
        sticky = spec.sticky_session
        return {
            "ListenerPort": listener.port, "ListenerProtocol": "https", "Status": self._status(listener),
            "BackendServerPort": 80, "Bandwidth": -1, "Scheduler": spec.scheduler, "XForwardedFor": "on",
            "XForwardedFor_SLBIP": onoff(spec.headers.slb_ip), "XForwardedFor_SLBID": onoff(spec.headers.slb_id),
            "XForwardedFor_proto": onoff(spec.headers.x_forwarded_proto),
            "StickySession": onoff(sticky is not None), "StickySessionType": sticky.type if sticky else "",
            "CookieTimeout": sticky.cookie_timeout if sticky else 0, "Cookie": (sticky.cookie or "") if sticky else "",
            "HealthCheck": onoff(h.enabled), "HealthCheckURI": h.uri, "HealthCheckConnectPort": h.connect_port or 0,
            "HealthyThreshold": h.healthy_threshold, "UnhealthyThreshold": h.unhealthy_threshold,
            "HealthCheckTimeout": h.timeout, "HealthCheckInterval": h.interval,
            "HealthCheckHttpCode": ",".join(h.http_code), "HealthCheckMethod": h.method,
            "ServerCertificateId": spec.server_certificate, "CACertificateId": spec.ca_certificate or "",
            "TLSCipherPolicy": spec.policy.name, "IdleTimeout": spec.idle_timeout,
            "RequestTimeout": spec.request_timeout, "EnableHttp2": onoff(spec.http2), "Description": spec.name,
        }

    async def describe_https_listener_attribute(self, p: Params) -> dict[str, Any]:
        _, listener = self._listener(p)
        return self._listener_fields(listener)

    async def describe_listeners(self, p: Params) -> dict[str, Any]:
        wanted = p.ids("LoadBalancerId")
        for lb_id in wanted:
            self._lb(Params({"LoadBalancerId": lb_id}))
        protocol = p.str("ListenerProtocol")
        port = p.int("ListenerPort", 1, 65535)
        ids = wanted or [lb.id for lb in self.lab.loadbalancers.list(PROFILE) if not lb.from_lab_file]
        out = []
        if protocol in (None, "https", "HTTPS"):
            for lb_id in ids:
                for listener in self._listeners(lb_id):
                    if port is not None and listener.port != port:
                        continue
                    fields = self._listener_fields(listener)
                    out.append({"LoadBalancerId": lb_id, **{k: fields[k] for k in (
                        "ListenerPort", "ListenerProtocol", "Status", "BackendServerPort", "Bandwidth", "Scheduler",
                        "Description")}, "HTTPSListenerConfig": {k: fields[k] for k in (
                            "ServerCertificateId", "CACertificateId", "TLSCipherPolicy", "StickySession",
                            "HealthCheck", "IdleTimeout", "RequestTimeout", "EnableHttp2", "XForwardedFor")}})
        return {"Listeners": out, "TotalCount": len(out), "MaxResults": len(out), "NextToken": ""}

    async def start_listener(self, p: Params) -> dict[str, Any]:
        _, listener = self._listener(p)
        await self.lab.set_running(listener.key, True)  # through the activation delay; a no-op when started
        return {}

    async def stop_listener(self, p: Params) -> dict[str, Any]:
        _, listener = self._listener(p)
        await self.lab.set_running(listener.key, False)
        return {}

    async def delete_listener(self, p: Params) -> dict[str, Any]:
        _, listener = self._listener(p)
        await self.lab.remove_listener(listener.key)
        return {}

    # ---- backend servers (the load balancer's default server group) ---------------------------------------

    def _backend_fields(self, servers: tuple[BackendServer, ...]) -> list[dict[str, Any]]:
        instances = {name: instance for instance, name in self.lab.instance_ids().items()}
        return [{"ServerId": instances.get(s.backend, s.backend), "Weight": s.weight, "Type": "ecs",
                 "Description": s.backend} for s in servers]

    def _servers(self, p: Params, need_weight: bool) -> list[BackendServer]:
        servers = []
        for i, item in enumerate(p.json_list("BackendServers", True)):
            server_id = item.get("ServerId")
            if not isinstance(server_id, str) or not server_id:
                raise Params.invalid("BackendServers", f"item {i} has no ServerId")
            if item.get("Type", "ecs") != "ecs":
                raise AliyunError("UnsupportedOperation", detail=f"BackendServers[{i}].Type {item['Type']!r}: the "
                                  "lab's backends are ECS-like instances only")
            try:
                name = self.lab.backend_of_instance(server_id)
            except LbsimError as e:
                raise from_lbsim(e) from None
            weight = item.get("Weight", 100)
            try:
                weight = int(weight)
            except (TypeError, ValueError):
                raise Params.invalid("BackendServers", f"item {i}: Weight {weight!r} is not an integer") from None
            if not 0 <= weight <= 100:
                raise Params.invalid("BackendServers", f"item {i}: Weight {weight} is out of range 0..100")
            servers.append(BackendServer(name, weight))
        if not servers:
            raise Params.invalid("BackendServers", "is empty")
        return servers

    async def _apply_backends(self, lb: LoadBalancer, servers: tuple[BackendServer, ...]) -> dict[str, Any]:
        """Every listener of the load balancer forwards to the new group, after the activation delay. All specs
        are built before any changes: a refusal changes nothing."""
        changes = []
        for listener in self._listeners(lb.id):
            assert listener.spec is not None
            data = self._spec_data(listener.spec) | {"backend_servers": self._backends_data(servers)}
            changes.append((listener, self._spec(data)))
        lb.backend_servers = servers
        for listener, spec in changes:
            try:
                self.lab.reconfigure(listener, spec)
            except LbsimError as e:
                raise from_lbsim(e) from None
        return {"LoadBalancerId": lb.id, "BackendServers": {"BackendServer": self._backend_fields(servers)}}

    async def add_backend_servers(self, p: Params) -> dict[str, Any]:
        lb = self._lb(p)
        merged = {s.backend: s for s in lb.backend_servers}
        for server in self._servers(p, False):
            merged[server.backend] = server
        return await self._apply_backends(lb, tuple(merged.values()))

    async def set_backend_servers(self, p: Params) -> dict[str, Any]:
        """Changes the weights of servers already in the group (the vendor's meaning of Set)."""
        lb = self._lb(p)
        current = {s.backend: s for s in lb.backend_servers}
        for server in self._servers(p, True):
            if server.backend not in current:
                raise AliyunError("InvalidBackendServers.ServerIdNotExist", detail=f"{server.backend} is not in "
                                  f"load balancer {lb.id}'s backend servers; AddBackendServers adds it")
            current[server.backend] = server
        return await self._apply_backends(lb, tuple(current.values()))

    async def remove_backend_servers(self, p: Params) -> dict[str, Any]:
        lb = self._lb(p)
        gone = {s.backend for s in self._servers(p, False)}
        return await self._apply_backends(lb, tuple(s for s in lb.backend_servers if s.backend not in gone))

    async def describe_health_status(self, p: Params) -> dict[str, Any]:
        lb = self._lb(p)
        port = p.int("ListenerPort", 1, 65535)
        instances = {name: instance for instance, name in self.lab.instance_ids().items()}
        out = []
        for listener in self._listeners(lb.id):
            if port is not None and listener.port != port:
                continue
            version = listener.active or listener.pending
            for backend in version.backends if version else ():
                status = "unavailable" if listener.status == "stopped" or not listener.active else (
                    "normal" if backend.healthy else "abnormal")
                out.append({"ServerId": instances.get(backend.name, backend.name), "Port": backend.port,
                            "ServerIp": backend.host, "ServerHealthStatus": status, "ListenerPort": listener.port,
                            "Protocol": "https", "EniHost": ""})
        return {"BackendServers": {"BackendServer": out}}
