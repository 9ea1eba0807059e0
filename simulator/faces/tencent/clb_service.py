"""Tencent CLB (`clb`, API 2018-03-17) over the lab's load balancers and listeners.

Each action translates into the lab model and nothing else: a listener's TLS and backends become a
`ListenerSpec` built by `lab.spec_from_api` (the same validation as the lab file and the management API), and
changes go through `Lab.add_listener` / `reconfigure` / `remove_listener`, so they serve after the vendor's
activation delay. What the model has no place for (Tencent's listener and rule ids, a rule's domain and URL,
the targets of each rule) is kept here, beside the lab, for the Describe actions.

Tencent's changes are asynchronous: the RequestId of a changing call is its task id, and
`DescribeTaskStatus` answers 2 (running) until the change serves, then 0 (success). While a listener's change
is still activating, another change to it is refused with `FailedOperation.ResourceInOperating`, as CLB does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import secrets
import string
import time
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from simulator.errors import LbsimError
from simulator.faces.tencent.service import Call, Service
from simulator.faces.tencent.errors import (
    INVALID_VALUE,
    MISSING,
    NOT_FOUND,
    UNSUPPORTED,
    TencentError,
    from_lbsim,
)
from simulator.faces.tencent.params import Params
from simulator.faces.tencent.ssl_service import PROFILE, SslService, default_alias, tencent_time

# Tencent -> lab model, as data.
SCHEDULERS = {"WRR": "wrr", "LEAST_CONN": "wlc"}
LAB_SCHEDULERS = {v: k for k, v in SCHEDULERS.items()} | {"rr": "WRR"}
SSL_MODES = ("UNIDIRECTIONAL", "MUTUAL")
VERIFY = {"ON": "on", "OPTIONAL": "optional"}
# HealthCheck.HttpCode is a bit mask: 1 = 1xx, 2 = 2xx, 4 = 3xx, 8 = 4xx, 16 = 5xx (the lab checks 2xx-5xx).
HTTP_CODE_BITS = ((2, "http_2xx"), (4, "http_3xx"), (8, "http_4xx"), (16, "http_5xx"))
# The spec fields every change through this face sets; the rest stays as the lab file (or the creation) set it.
MANAGED = ("name", "server_certificate", "server_certificates", "ca_certificate", "ssl_verify_client", "sni", "backend_servers")
# ... and those it sets once a call gave them (a lab-file listener keeps its own until then).
OPTIONAL = {"Scheduler": "scheduler", "SessionExpireTime": "sticky_session", "HealthCheck": "health_check"}
DEFAULT_WEIGHT = 10
IN_OPERATION = "FailedOperation.ResourceInOperating"
# Certificates uploaded inline (Certificate.CertContent) by the action running in this task: deleted again if
# the action is refused, so that a refusal changes nothing.
_INLINE_UPLOADS: ContextVar[list[str] | None] = ContextVar("tencent_inline_uploads", default=None)

_HEALTH_HONOURED = ("HealthSwitch", "TimeOut", "IntervalTime", "HealthNum", "UnHealthNum", "HttpCode", "HttpCheckPath",
                    "HttpCheckMethod", "CheckPort", "CheckType")
_HEALTH_IGNORED = ("HttpCheckDomain", "ContextType", "SendContext", "RecvContext", "HttpVersion", "SourceIpType",
                   "ExtendedCode")
_CERT_HONOURED = ("SSLMode", "SSLVerifyClient", "CertId", "CertCaId", "CertName", "CertKey", "CertContent",
                  "CertCaName", "CertCaContent")
_CERT_INFO = ("CertId", "CertName", "CertContent", "CertKey")  # MultiCertInfo.CertList[] (the SDK's CertInfo)


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def listener_id(lb_id: str, port: int) -> str:
    """Stable per (load balancer, port): listeners of the lab file get ids too, without bookkeeping."""
    return "lbl-" + hashlib.sha256(f"{lb_id}:{port}".encode()).hexdigest()[:8]


@dataclass
class Rule:
    """A forwarding rule (domain + URL). With SNI on, it carries the domain's certificate."""

    location_id: str
    domain: str
    url: str
    certificate: dict[str, Any] | None = None  # {"SSLMode", "CertId", "CertCaId", "SSLVerifyClient"}
    targets: dict[tuple[str, int], int] = field(default_factory=dict)  # (instance id, port) -> weight
    created: float = field(default_factory=time.time)


@dataclass
class ListenerFacts:
    """What Tencent knows of a listener beyond the lab's spec."""

    id: str
    lb_id: str
    port: int
    name: str
    sni_switch: bool
    created: float = field(default_factory=time.time)
    rules: dict[str, Rule] = field(default_factory=dict)
    base_targets: dict[tuple[str, int], int] = field(default_factory=dict)  # the lab file's backend_servers
    scheduler: str = "wrr"
    session_expire: int = 0
    health: dict[str, Any] | None = None  # the lab's health_check mapping, None = the lab's default
    given: frozenset[str] = frozenset()  # OPTIONAL spec fields a call has set

    def copy(self) -> ListenerFacts:
        rules = {k: replace(r, targets=dict(r.targets)) for k, r in self.rules.items()}
        return replace(self, rules=rules, base_targets=dict(self.base_targets))

    def set(self, p: Params, name: str) -> bool:
        """Whether the call gives `name` (one of OPTIONAL); remembers it."""
        if not p.has(name):
            return False
        self.given = self.given | {OPTIONAL[name]}
        return True


@dataclass
class Task:
    ready_at: float
    lb_ids: tuple[str, ...]
    listener: str | None = None  # the key of the listener whose change this is: done once it serves the new version


class ClbService(Service):
    name = "clb"
    version = "2018-03-17"

    def __init__(self, lab: Any, ssl: SslService):
        self.lab, self.ssl = lab, ssl
        self.facts: dict[str, ListenerFacts] = {}  # listener id -> facts
        self.tasks: dict[str, Task] = {}
        self.lb_types: dict[str, str] = {}

    def actions(self):
        return {name: self._all_or_nothing(action) for name, action in self._actions().items()}

    def _all_or_nothing(self, action):
        async def run(p: Params, call: Call) -> dict[str, Any]:
            uploads: list[str] = []
            token = _INLINE_UPLOADS.set(uploads)
            try:
                return await action(p, call)
            except BaseException:
                for cert_id in uploads:
                    with contextlib.suppress(LbsimError):
                        self.lab.store.delete(cert_id)
                raise
            finally:
                _INLINE_UPLOADS.reset(token)
        return run

    def _actions(self):
        return {
            "CreateLoadBalancer": self.create_lb,
            "DescribeLoadBalancers": self.describe_lbs,
            "DeleteLoadBalancer": self.delete_lb,
            "CreateListener": self.create_listener,
            "ModifyListener": self.modify_listener,
            "DescribeListeners": self.describe_listeners,
            "DeleteListener": self.delete_listener,
            "CreateRule": self.create_rule,
            "ModifyDomainAttributes": self.modify_domain,
            "RegisterTargets": self.register_targets,
            "DeregisterTargets": self.deregister_targets,
            "DescribeTargets": self.describe_targets,
            "DescribeTargetHealth": self.describe_target_health,
            "DescribeTaskStatus": self.task_status,
        }

    # --- load balancers ----------------------------------------------------------------------------------

    def _lb(self, lb_id: str | None, field_name: str = "LoadBalancerId"):
        try:
            lb = self.lab.loadbalancers.get(lb_id)
        except LbsimError:
            lb = None
        if lb is None or not (lb.profile == PROFILE or lb.from_lab_file):
            raise TencentError("InvalidParameter.LBIdNotFound", f"{field_name}: no load balancer {lb_id!r}",
                               hint="DescribeLoadBalancers lists them")
        return lb

    def _lbs(self) -> list[Any]:
        """Tencent's load balancers, and those of the lab file that hold a tencent-clb listener (the default
        lab's `lb-lbsim` holds listeners of both vendors)."""
        self._adopt_all()
        lab_file = {f.lb_id for f in self.facts.values()}
        return [lb for lb in self.lab.loadbalancers.list() if lb.profile == PROFILE or lb.id in lab_file]

    async def create_lb(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("LoadBalancerType", "Forward", "LoadBalancerName", "Number"),
                      ignored=("VpcId", "SubnetId", "ProjectId", "AddressIPVersion", "MasterZoneId", "ZoneId",
                               "InternetAccessible", "VipIsp", "Tags", "BandwidthPackageId", "SlaType", "ClientToken",
                               "SlaveZoneId", "LoadBalancerPassToTarget", "DynamicVip", "Egress", "LBChargeType",
                               "LBChargePrepaid", "AccessLogTopicId", "AdvancedRoute", "AvailableZoneAffinityInfo"),
                      refused=("Vip", "ExclusiveCluster", "ClusterIds", "SnatPro", "SnatIps", "ClusterTag",
                               "EipAddressId"))
        kind = p.choice("LoadBalancerType", ("OPEN", "INTERNAL"), required=True)
        if p.int("Forward", 0, 1, 1) != 1:
            raise TencentError(UNSUPPORTED, "Forward 0 (classic CLB) is not simulated; lbsim's load balancers are "
                               "Forward 1", hint="leave Forward out")
        name = p.str("LoadBalancerName", max_len=60) or ""
        number = p.int("Number", 1, 20, 1)
        ids = []
        try:
            for _ in range(number):
                lb = self.lab.create_load_balancer(PROFILE, name=name, region=call.region)
                self.lb_types[lb.id] = kind
                ids.append(lb.id)
        except LbsimError as e:
            for lb_id in ids:  # all or nothing
                await self.lab.delete_load_balancer(lb_id)
            raise from_lbsim(e) from None
        self.tasks[call.request_id] = Task(time.time(), tuple(ids))
        return {"LoadBalancerIds": ids, "DealName": None}

    async def describe_lbs(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("LoadBalancerIds", "LoadBalancerName", "LoadBalancerVips", "LoadBalancerType", "Forward",
                       "Offset", "Limit", "SearchKey", "OrderBy", "OrderType"),
                      ignored=("Domain", "BackendPublicIps", "BackendPrivateIps", "ProjectId", "WithRs", "VpcId",
                               "SecurityGroup", "MasterZone", "Filters", "AdditionalFields"))
        ids = set(p.strs("LoadBalancerIds", max_items=20))
        name = p.str("LoadBalancerName")
        vips = set(p.strs("LoadBalancerVips"))
        kind = p.choice("LoadBalancerType", ("OPEN", "INTERNAL"))
        offset, limit = p.int("Offset", 0, 2**31, 0), p.int("Limit", 1, 100, 20)
        search = (p.str("SearchKey") or "").lower()
        order = p.choice("OrderBy", ("LoadBalancerName", "CreateTime", "Domain", "LoadBalancerType"), "CreateTime")
        descending = p.int("OrderType", 0, 1, 1) == 1
        found = [lb for lb in self._lbs()
                 if (not ids or lb.id in ids) and (name is None or lb.name == name)
                 and (not vips or lb.address in vips) and (kind is None or self.lb_types.get(lb.id, "OPEN") == kind)
                 and (not search or search in lb.id or search in lb.name.lower() or search in lb.address)]
        key = {"LoadBalancerName": lambda lb: lb.name, "LoadBalancerType": lambda lb: self.lb_types.get(lb.id, "OPEN")}
        found.sort(key=key.get(order, lambda lb: lb.created), reverse=descending)
        return {"TotalCount": len(found), "LoadBalancerSet": [self._lb_view(lb) for lb in found[offset:offset + limit]]}

    def _lb_view(self, lb: Any) -> dict[str, Any]:
        return {
            "LoadBalancerId": lb.id, "LoadBalancerName": lb.name, "LoadBalancerType": self.lb_types.get(lb.id, "OPEN"),
            "Forward": 1, "Domain": "", "LoadBalancerVips": [lb.address], "Status": 1,
            "CreateTime": tencent_time_epoch(lb.created), "StatusTime": tencent_time_epoch(lb.created),
            "ProjectId": 0, "VpcId": "", "AddressIPVersion": "ipv4", "Isolation": 0, "ChargeType": "POSTPAID_BY_HOUR",
            "TargetCount": sum(len(self._targets(f)) for f in self.facts.values() if f.lb_id == lb.id),
            "Zones": None, "Tags": [],
        }

    async def delete_lb(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("LoadBalancerIds",), ignored=("ForceDelete",))
        ids = p.strs("LoadBalancerIds", required=True, max_items=20)
        lbs = [self._lb(lb_id, f"LoadBalancerIds.{i}") for i, lb_id in enumerate(ids)]
        for lb in lbs:
            if getattr(lb, "from_lab_file", False):
                raise TencentError(UNSUPPORTED, f"load balancer {lb.id} is defined by the lab file",
                                   hint="remove it from the lab file instead")
        for lb in lbs:
            await self.lab.delete_load_balancer(lb.id)
            for lid in [k for k, f in self.facts.items() if f.lb_id == lb.id]:
                del self.facts[lid]
            self.lb_types.pop(lb.id, None)
        self.tasks[call.request_id] = Task(time.time(), tuple(ids))
        return {}

    # --- listeners ---------------------------------------------------------------------------------------

    def _adopt_all(self) -> None:
        """Give the lab's tencent-clb listeners (lab file, management API) their Tencent facts, and forget the
        facts of listeners removed behind this face (the management API, `lbsim`)."""
        live = {(l.spec.lb_id, l.port) for l in self.lab.registry.listeners.values() if l.spec is not None}
        for lid in [lid for lid, f in self.facts.items() if (f.lb_id, f.port) not in live]:
            del self.facts[lid]
        for listener in list(self.lab.registry.listeners.values()):
            spec = listener.spec
            if spec is None or spec.profile != PROFILE:
                continue
            lid = listener_id(spec.lb_id, listener.port)
            if lid in self.facts:
                continue
            self.lab.loadbalancers.ensure(spec.lb_id, PROFILE)
            facts = ListenerFacts(lid, spec.lb_id, listener.port, spec.name, bool(spec.sni), scheduler=spec.scheduler)
            by_backend = {name: iid for iid, name in self.lab.instance_ids().items()}
            for server in spec.backend_servers:
                iid = by_backend.get(server.backend, server.backend)
                facts.base_targets[(iid, self.lab.addresses.get(server.backend, ("", 0))[1])] = server.weight
            for domain, ref in spec.sni:
                loc = "loc-" + hashlib.sha256(f"{lid}:{domain}".encode()).hexdigest()[:8]
                facts.rules[loc] = Rule(loc, domain, "/", {"SSLMode": "UNIDIRECTIONAL", "CertId": self._cert_id(ref)})
            self.facts[lid] = facts

    def _facts(self, lb_id: str | None, lid: str | None) -> tuple[ListenerFacts, Any]:
        lb = self._lb(lb_id)
        self._adopt_all()
        facts = self.facts.get(lid or "")
        if facts is None or facts.lb_id != lb.id:
            raise TencentError("InvalidParameter.ListenerIdNotFound", f"ListenerId: load balancer {lb.id} has no "
                               f"listener {lid!r}", hint="DescribeListeners lists them")
        try:
            listener = self.lab.listener_at(lb.id, facts.port)
        except LbsimError:
            del self.facts[facts.id]  # removed behind our back (management API)
            raise TencentError("InvalidParameter.ListenerIdNotFound", f"ListenerId: listener {lid} is gone") from None
        return facts, listener

    def _cert_id(self, ref: str | None) -> str | None:
        if ref is None:
            return None
        try:
            return self.lab.store.describe(ref).id
        except LbsimError:
            return ref

    @staticmethod
    def _idle(listener: Any) -> None:
        if listener.pending is not None:
            raise TencentError(IN_OPERATION, f"listener on port {listener.port} is still applying a change "
                               f"(activates in {max(0.0, (listener.activates_at or 0) - time.time()):.1f} s)",
                               hint="poll DescribeTaskStatus with the last change's RequestId until Status is 0")

    def _certificate(self, p: Params | None, required: bool) -> dict[str, Any] | None:
        """A CertificateInput -> {"SSLMode", "CertId", "CertCaId", "SSLVerifyClient"} with ids checked (inline
        CertContent/CertKey is uploaded to the ssl service first, as the console does)."""
        if p is None:
            if required:
                raise TencentError(MISSING, "Certificate is required for an HTTPS listener")
            return None
        p.check_known(_CERT_HONOURED)
        mode = p.choice("SSLMode", SSL_MODES, "UNIDIRECTIONAL")
        verify = p.choice("SSLVerifyClient", tuple(VERIFY), "ON")
        cert_id = p.str("CertId")
        if cert_id is None and p.has("CertContent"):
            cert_id = self._upload(p.str("CertName") or "", p.str("CertContent", max_len=512 * 1024),
                                   p.str("CertKey", required=True, max_len=64 * 1024), "server")
        if cert_id is None:
            raise TencentError(MISSING, f"{p.where('CertId')} (or CertContent with CertKey) is required")
        self.ssl.info(cert_id, p.where("CertId"), want="server")
        ca_id = p.str("CertCaId")
        if ca_id is None and p.has("CertCaContent"):
            ca_id = self._upload(p.str("CertCaName") or "", p.str("CertCaContent", max_len=512 * 1024), None, "ca")
        if mode == "MUTUAL":
            if ca_id is None:
                raise TencentError(MISSING, f"{p.where('CertCaId')} is required when SSLMode is MUTUAL (a mutual "
                                   "listener needs a server certificate and a CA certificate)")
            self.ssl.info(ca_id, p.where("CertCaId"), want="ca")
        elif ca_id is not None:
            raise TencentError(INVALID_VALUE, f"{p.where('CertCaId')} is set but SSLMode is UNIDIRECTIONAL",
                               hint="set SSLMode MUTUAL for two-way authentication, or leave CertCaId out")
        return {"SSLMode": mode, "CertId": cert_id, "CertCaId": ca_id if mode == "MUTUAL" else None,
                "SSLVerifyClient": verify, "ExtCertIds": []}

    def _multi_certificate(self, p: Params) -> dict[str, Any]:
        """A MultiCertInfo -> the dict `_certificate` gives, the further server certificates in ExtCertIds (as
        DescribeListeners answers them). CertList holds the server certificates and, for MUTUAL, the one CA
        certificate; each by CertId, or uploaded inline (CertContent, with CertKey for a server certificate).
        Whether the server certificates are one RSA and one ECC is the model's verdict (`server_certificates`)."""
        p.check_known(("SSLMode", "CertList", "SSLVerifyClient"))
        mode = p.choice("SSLMode", SSL_MODES, required=True)
        verify = p.choice("SSLVerifyClient", tuple(VERIFY), "ON")
        servers: list[str] = []
        cas: list[str] = []
        for cp in p.objs("CertList", required=True, max_items=10):
            cp.check_known(_CERT_INFO)
            cert_id = cp.str("CertId")
            if cert_id is None:
                if not cp.has("CertContent"):
                    raise TencentError(MISSING, f"{cp.where('CertId')} (or CertContent) is required")
                kind = "server" if cp.has("CertKey") or mode != "MUTUAL" else "ca"
                cert_id = self._upload(cp.str("CertName") or "", cp.str("CertContent", max_len=512 * 1024),
                                       cp.str("CertKey", max_len=64 * 1024), kind)
            info = self.ssl.info(cert_id, cp.where("CertId"))
            (servers if info.type == "server" else cas).append(cert_id)
        where = p.where("CertList")
        if not servers:
            raise TencentError(MISSING, f"{where} holds no server certificate",
                               hint="one RSA and one ECC server certificate (SVR), and for MUTUAL one CA")
        if mode == "MUTUAL" and len(cas) != 1:
            raise TencentError(MISSING if not cas else INVALID_VALUE, f"{where} holds {len(cas)} CA certificates; "
                               "SSLMode MUTUAL needs exactly one")
        if mode == "UNIDIRECTIONAL" and cas:
            raise TencentError(INVALID_VALUE, f"{where} holds a CA certificate ({cas[0]}) but SSLMode is "
                               "UNIDIRECTIONAL", hint="set SSLMode MUTUAL, or leave the CA out")
        return {"SSLMode": mode, "CertId": servers[0], "ExtCertIds": servers[1:],
                "CertCaId": cas[0] if mode == "MUTUAL" else None, "SSLVerifyClient": verify}

    def _listener_certificate(self, p: Params, required: bool, sni: bool) -> dict[str, Any] | None:
        """A listener's certificates: `Certificate` or `MultiCertInfo`, never both (Tencent's rule); MultiCertInfo
        only without SNI, as Tencent documents it."""
        if p.has("MultiCertInfo"):
            if p.has("Certificate"):
                raise TencentError(INVALID_VALUE, "give Certificate or MultiCertInfo, not both",
                                   hint="MultiCertInfo holds every certificate of the listener")
            if sni:
                raise TencentError(INVALID_VALUE, "MultiCertInfo applies to HTTPS listeners without SNI "
                                   "(SniSwitch 0)", hint="an SNI listener's domains carry their certificates in rules")
            return self._multi_certificate(p.obj("MultiCertInfo"))
        return self._certificate(p.obj("Certificate"), required=required)

    def _upload(self, name: str, content: str, key: str | None, kind: str) -> str:
        try:
            if kind == "server":
                info = self.lab.store.upload_server(name or default_alias(content), content, key, profile=PROFILE)
            else:
                info = self.lab.store.upload_ca(name or default_alias(content), content, profile=PROFILE)
        except LbsimError as e:
            raise from_lbsim(e) from None
        uploads = _INLINE_UPLOADS.get()
        if uploads is not None:
            uploads.append(info.id)
        return info.id

    def _health(self, p: Params | None) -> dict[str, Any] | None:
        if p is None:
            return None
        p.check_known(_HEALTH_HONOURED, ignored=_HEALTH_IGNORED)
        p.choice("CheckType", ("HTTP",))
        out: dict[str, Any] = {"enabled": p.int("HealthSwitch", 0, 1, 1) == 1}
        for key, name in (("timeout", "TimeOut"), ("interval", "IntervalTime"), ("healthy_threshold", "HealthNum"),
                          ("unhealthy_threshold", "UnHealthNum"), ("connect_port", "CheckPort")):
            value = p.int(name, 1, 65535)
            if value is not None:
                out[key] = value
        mask = p.int("HttpCode", 1, 31)
        if mask is not None:
            codes = [code for bit, code in HTTP_CODE_BITS if mask & bit]
            if not codes:
                raise TencentError(INVALID_VALUE, f"{p.where('HttpCode')} {mask} selects only 1xx; the lab checks "
                                   "2xx to 5xx", hint="31 (any), or 2 (2xx) + 4 (3xx) = 6")
            out["http_code"] = codes
        if p.has("HttpCheckPath"):
            out["uri"] = p.str("HttpCheckPath", max_len=200)
        if p.has("HttpCheckMethod"):
            out["method"] = p.choice("HttpCheckMethod", ("HEAD", "GET")).lower()
        return out

    def _common(self, p: Params, facts: ListenerFacts) -> None:
        """Scheduler, SessionExpireTime and HealthCheck, of a listener or of a rule (the lab listener has one each)."""
        if facts.set(p, "Scheduler"):
            facts.scheduler = SCHEDULERS.get(p.str("Scheduler"), "")
            if not facts.scheduler:
                raise TencentError(UNSUPPORTED, f"{p.where('Scheduler')} {p.str('Scheduler')!r}: lbsim schedules "
                                   "WRR or LEAST_CONN")
        if facts.set(p, "SessionExpireTime"):
            facts.session_expire = p.int("SessionExpireTime", 0, 3600)
            if 0 < facts.session_expire < 30:
                raise TencentError(INVALID_VALUE, f"{p.where('SessionExpireTime')} is 0 (off) or 30 to 3600 seconds")
        if facts.set(p, "HealthCheck"):
            facts.health = self._health(p.obj("HealthCheck"))

    def _targets(self, facts: ListenerFacts) -> dict[tuple[str, int], int]:
        merged = dict(facts.base_targets)
        for rule in facts.rules.values():
            for key, weight in rule.targets.items():
                merged[key] = max(weight, merged.get(key, 0))
        return merged

    def _spec_data(self, facts: ListenerFacts, cert: dict[str, Any]) -> dict[str, Any]:
        """The listener in the lab file's terms (model/config.py), for `lab.spec_from_api`."""
        backends: dict[str, int] = {}
        for (iid, _port), weight in self._targets(facts).items():
            try:
                name = self.lab.backend_of_instance(iid)
            except LbsimError as e:
                raise from_lbsim(e) from None
            backends[name] = max(weight, backends.get(name, 0))
        data: dict[str, Any] = {
            "port": facts.port, "lb_id": facts.lb_id, "profile": PROFILE, "name": facts.name,
            **({"server_certificates": [cert["CertId"], *cert["ExtCertIds"]]} if cert.get("ExtCertIds")
               else {"server_certificate": cert["CertId"]}),
            "backend_servers": [{"backend": name, "weight": w} for name, w in backends.items()],
            "scheduler": facts.scheduler,
        }
        if cert.get("CertCaId"):
            data["ca_certificate"] = cert["CertCaId"]
            data["ssl_verify_client"] = VERIFY[cert.get("SSLVerifyClient") or "ON"]
        sni = {r.domain: r.certificate["CertId"] for r in facts.rules.values() if r.certificate}
        if sni:
            data["sni"] = sni
        if facts.session_expire:
            data["sticky_session"] = {"type": "insert", "cookie_timeout": facts.session_expire}
        if facts.health is not None:
            data["health_check"] = facts.health
        return data

    def _listener_cert(self, listener: Any) -> dict[str, Any]:
        spec = listener.spec
        return {"SSLMode": "MUTUAL" if spec.ca_certificate else "UNIDIRECTIONAL",
                "SSLVerifyClient": {v: k for k, v in VERIFY.items()}[spec.ssl_verify_client] if spec.ca_certificate else None,
                "CertId": self._cert_id(spec.server_certificate), "CertCaId": self._cert_id(spec.ca_certificate),
                "ExtCertIds": [self._cert_id(ref) for ref in spec.server_certificates[1:]]}

    async def _apply(self, facts: ListenerFacts, listener: Any, cert: dict[str, Any], call: Call) -> None:
        """Validate the new configuration in the model and reconfigure; state changes only if both succeed."""
        try:
            new = self.lab.spec_from_api(self._spec_data(facts, cert))
            current = listener.spec
            spec = replace(current, **{f: getattr(new, f) for f in (*MANAGED, *facts.given)})
            self.lab.reconfigure(listener, spec)
        except LbsimError as e:
            raise from_lbsim(e) from None
        self.facts[facts.id] = facts
        self._task(call, listener, facts.lb_id)

    def _task(self, call: Call, listener: Any | None, lb_id: str) -> None:
        ready = listener.activates_at if listener is not None and listener.activates_at else time.time()
        self.tasks[call.request_id] = Task(ready, (lb_id,), listener.key if listener is not None else None)

    def _done(self, task: Task) -> bool:
        """The activation delay has passed and the listener serves what the change asked for (the lab opens the
        port a moment after the delay: success is reported only once a client can connect)."""
        if time.time() < task.ready_at:
            return False
        listener = self.lab.registry.listeners.get(task.listener) if task.listener is not None else None
        if listener is None:
            return True
        if listener.pending is not None:
            return False
        return listener.status == "stopped" or self.lab.serving(listener)

    async def create_listener(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("LoadBalancerId", "Ports", "Protocol", "ListenerNames", "HealthCheck", "Certificate",
                       "MultiCertInfo", "SessionExpireTime", "Scheduler", "SniSwitch"),
                      ignored=("TargetType", "SessionType", "KeepaliveEnable", "DeregisterTargetRst", "MaxConn",
                               "MaxCps", "IdleConnectTimeout", "SnatEnable", "H2cSwitch", "SslCloseSwitch",
                               "DataCompressMode", "RescheduleTargetZeroWeight", "RescheduleUnhealthy",
                               "RescheduleExpandTarget", "RescheduleStartTime", "RescheduleInterval"),
                      refused=("EndPort", "ProxyProtocol", "FullEndPorts"))
        lb = self._lb(p.str("LoadBalancerId", required=True))
        ports = p.list("Ports", required=True, max_items=20)
        protocol = p.str("Protocol", required=True)
        if protocol != "HTTPS":
            raise TencentError(UNSUPPORTED, f"Protocol {protocol!r}: lbsim simulates HTTPS listeners only")
        names = p.strs("ListenerNames", max_items=20)
        if names and len(names) != len(ports):
            raise TencentError(INVALID_VALUE, "ListenerNames must name every port of Ports, in order")
        sni = p.int("SniSwitch", 0, 1, 0) == 1
        cert = self._listener_certificate(p, required=True, sni=sni)
        settings = ListenerFacts("", lb.id, 0, "", sni)
        self._common(p, settings)
        port_numbers = [Params({"Port": port}, f"Ports.{i}").int("Port", 1, 65535, required=True)
                        for i, port in enumerate(ports)]
        specs = []
        for i, port in enumerate(port_numbers):
            facts = replace(settings, id=listener_id(lb.id, port), port=port, rules={}, base_targets={},
                            name=names[i] if names else f"HTTPS:{port}", created=time.time())
            try:
                specs.append((facts, self.lab.spec_from_api(self._spec_data(facts, cert))))
            except LbsimError as e:
                raise from_lbsim(e) from None
        created, ids = [], []
        try:
            for facts, spec in specs:
                listener = await self.lab.add_listener(spec)
                created.append(listener)
                self.facts[facts.id] = facts
                ids.append(facts.id)
                self._task(call, listener, lb.id)
        except LbsimError as e:
            for made in created:  # all or nothing
                await self.lab.remove_listener(made.key)
                self.facts.pop(listener_id(lb.id, made.port), None)
            raise from_lbsim(e) from None
        return {"ListenerIds": ids}

    async def modify_listener(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("LoadBalancerId", "ListenerId", "ListenerName", "Certificate", "MultiCertInfo", "SniSwitch",
                       "HealthCheck", "Scheduler", "SessionExpireTime"),
                      ignored=("TargetType", "KeepaliveEnable", "DeregisterTargetRst", "SessionType", "MaxConn",
                               "MaxCps", "IdleConnectTimeout", "SnatEnable", "DataCompressMode",
                               "RescheduleTargetZeroWeight", "RescheduleUnhealthy", "RescheduleExpandTarget",
                               "RescheduleStartTime", "RescheduleInterval"),
                      refused=("ProxyProtocol",))
        facts, listener = self._facts(p.str("LoadBalancerId", required=True), p.str("ListenerId", required=True))
        self._idle(listener)
        facts = facts.copy()
        if p.has("ListenerName"):
            facts.name = p.str("ListenerName", max_len=255)
        sni_after = facts.sni_switch or p.int("SniSwitch", 0, 1, 0) == 1
        cert = self._listener_certificate(p, required=False, sni=sni_after) or self._listener_cert(listener)
        if sni_after and cert["ExtCertIds"]:
            raise TencentError(INVALID_VALUE, "SniSwitch 1: the listener holds MultiCertInfo certificates, which "
                               "apply to listeners without SNI", hint="give one Certificate with SniSwitch 1")
        if p.has("SniSwitch"):
            sni = p.int("SniSwitch", 0, 1) == 1
            if facts.sni_switch and not sni:
                raise from_lbsim(LbsimError("SniCannotBeTurnedOff", "once SNI is on for a listener it cannot be "
                                            "turned off (SniSwitch)", field="SniSwitch",
                                            hint="create a new listener without SNI"))
            facts.sni_switch = sni
        self._common(p, facts)
        await self._apply(facts, listener, cert, call)
        return {}

    async def describe_listeners(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("LoadBalancerId", "ListenerIds", "Protocol", "Port"))
        lb = self._lb(p.str("LoadBalancerId", required=True))
        ids = set(p.strs("ListenerIds"))
        protocol = p.str("Protocol")
        port = p.int("Port", 1, 65535)
        self._adopt_all()
        out = []
        for facts in sorted(self.facts.values(), key=lambda f: f.created):
            if facts.lb_id != lb.id or (ids and facts.id not in ids) or (port and facts.port != port):
                continue
            if protocol and protocol != "HTTPS":
                continue
            try:
                listener = self.lab.listener_at(lb.id, facts.port)
            except LbsimError:
                continue
            out.append(self._listener_view(facts, listener))
        return {"Listeners": out, "TotalCount": len(out)}

    def _listener_view(self, facts: ListenerFacts, listener: Any) -> dict[str, Any]:
        cert = self._listener_cert(listener)
        return {
            "ListenerId": facts.id, "Protocol": "HTTPS", "Port": facts.port, "ListenerName": facts.name,
            "Certificate": cert, "HealthCheck": self._health_view(listener.spec),
            "Scheduler": LAB_SCHEDULERS.get(listener.spec.scheduler, "WRR"), "SessionExpireTime": facts.session_expire,
            "SniSwitch": int(facts.sni_switch), "CreateTime": tencent_time_epoch(facts.created),
            "TargetType": "NODE", "KeepaliveEnable": 0, "EndPort": 0,
            "Rules": [self._rule_view(facts, r, listener) for r in facts.rules.values()],
            # lbsim: the listener's state in the lab (running / configuring / stopped); not a Tencent field
            "AttrFlags": [f"lbsim-status:{listener.status}"],
        }

    def _health_view(self, spec: Any) -> dict[str, Any]:
        h = spec.health_check
        mask = sum(bit for bit, code in HTTP_CODE_BITS if code in h.http_code)
        return {"HealthSwitch": int(h.enabled), "TimeOut": h.timeout, "IntervalTime": h.interval,
                "HealthNum": h.healthy_threshold, "UnHealthNum": h.unhealthy_threshold, "HttpCode": mask,
                "HttpCheckPath": h.uri, "HttpCheckMethod": h.method.upper(), "CheckPort": h.connect_port,
                "CheckType": "HTTP"}

    def _rule_view(self, facts: ListenerFacts, rule: Rule, listener: Any) -> dict[str, Any]:
        cert = None
        if rule.certificate:
            cert = {"SSLMode": rule.certificate["SSLMode"], "CertId": rule.certificate["CertId"],
                    "CertCaId": rule.certificate.get("CertCaId"), "SSLVerifyClient": None, "ExtCertIds": []}
        return {"LocationId": rule.location_id, "Domain": rule.domain, "Url": rule.url, "ListenerId": facts.id,
                "Certificate": cert, "HealthCheck": self._health_view(listener.spec),
                "Scheduler": LAB_SCHEDULERS.get(listener.spec.scheduler, "WRR"),
                "SessionExpireTime": facts.session_expire, "Http2": False, "ForwardType": "HTTP",
                "CreateTime": tencent_time_epoch(rule.created), "TargetType": "NODE", "Domains": [rule.domain],
                "DefaultServer": False, "BeAutoCreated": False}

    async def delete_listener(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("LoadBalancerId", "ListenerId"))
        facts, listener = self._facts(p.str("LoadBalancerId", required=True), p.str("ListenerId", required=True))
        try:
            await self.lab.remove_listener(listener.key)
        except LbsimError as e:
            raise from_lbsim(e) from None
        del self.facts[facts.id]
        self._task(call, None, facts.lb_id)
        return {}

    # --- rules (domain + URL; with SNI, the domain's certificate) -------------------------------------------

    def _rule_cert(self, p: Params, facts: ListenerFacts, what: str) -> dict[str, Any] | None:
        if p.has("MultiCertInfo"):
            raise TencentError(UNSUPPORTED, f"{p.where('MultiCertInfo')} on a rule (a domain's RSA and ECC "
                               "certificates) is not supported by lbsim; a listener without SNI takes it",
                               hint="give the domain one certificate in Certificate")
        cert = self._certificate(p.obj("Certificate"), required=False)
        if cert is not None and not facts.sni_switch:
            raise TencentError(INVALID_VALUE, f"{p.where('Certificate')}: the listener's SniSwitch is 0, so {what} "
                               "cannot carry a certificate", hint="create the listener with SniSwitch 1")
        if cert is not None and cert["SSLMode"] == "MUTUAL":
            raise TencentError(UNSUPPORTED, f"{p.where('Certificate')}: lbsim serves per-domain server "
                               "certificates only; mutual authentication is set on the listener")
        return cert

    async def create_rule(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("LoadBalancerId", "ListenerId", "Rules"))
        facts, listener = self._facts(p.str("LoadBalancerId", required=True), p.str("ListenerId", required=True))
        self._idle(listener)
        facts = facts.copy()
        ids = []
        for rp in p.objs("Rules", required=True, max_items=50):
            rp.check_known(("Domain", "Url", "Certificate", "HealthCheck", "Scheduler", "SessionExpireTime"),
                           ignored=("ForwardType", "DefaultServer", "Http2", "TargetType", "TrpcCallee", "TrpcFunc",
                                    "Quic", "CookieName"),
                           refused=("Domains", "MultiCertInfo"))
            domain = (rp.str("Domain", required=True, max_len=80) or "").lower()
            url = rp.str("Url", required=True, max_len=200)
            if any(r.domain == domain and r.url == url for r in facts.rules.values()):
                raise TencentError("InvalidParameterValue.Duplicate", f"{rp.where('Domain')}: the listener already "
                                   f"has a rule for {domain}{url}")
            cert = self._rule_cert(rp, facts, "a rule")
            if facts.sni_switch and cert is None and not any(r.domain == domain and r.certificate
                                                              for r in facts.rules.values()):
                raise TencentError(MISSING, f"{rp.where('Certificate')} is required: with SniSwitch 1 each domain "
                                   "carries its own certificate")
            self._common(rp, facts)
            rule = Rule(_new_id("loc-"), domain, url, cert)
            facts.rules[rule.location_id] = rule
            ids.append(rule.location_id)
        await self._apply(facts, listener, self._listener_cert(listener), call)
        return {"LocationIds": ids}

    async def modify_domain(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("LoadBalancerId", "ListenerId", "Domain", "NewDomain", "Certificate"),
                      ignored=("Http2", "DefaultServer", "Quic", "NewDefaultServerDomain"),
                      refused=("NewDomains", "MultiCertInfo"))
        facts, listener = self._facts(p.str("LoadBalancerId", required=True), p.str("ListenerId", required=True))
        self._idle(listener)
        facts = facts.copy()
        domain = (p.str("Domain", required=True) or "").lower()
        rules = [r for r in facts.rules.values() if r.domain == domain]
        if not rules:
            raise TencentError("InvalidParameter.LocationNotFound", f"Domain: the listener has no rule for {domain!r}")
        new_domain = (p.str("NewDomain", max_len=80) or "").lower() or None
        cert = self._rule_cert(p, facts, "a domain")
        for rule in rules:
            if new_domain:
                rule.domain = new_domain
            if cert is not None:
                rule.certificate = cert
        await self._apply(facts, listener, self._listener_cert(listener), call)
        return {}

    # --- targets -------------------------------------------------------------------------------------------

    def _rules_for(self, p: Params, facts: ListenerFacts) -> Rule:
        loc = p.str("LocationId")
        if loc is not None:
            rule = facts.rules.get(loc)
            if rule is None:
                raise TencentError("InvalidParameter.LocationNotFound", f"LocationId: no rule {loc!r} on the listener")
            return rule
        domain, url = p.str("Domain"), p.str("Url")
        if domain is None or url is None:
            raise TencentError(MISSING, "LocationId, or Domain and Url, is required: an HTTPS listener's targets "
                               "belong to a forwarding rule", hint="CreateRule first; its LocationId names it")
        for rule in facts.rules.values():
            if rule.domain == domain.lower() and rule.url == url:
                return rule
        raise TencentError("InvalidParameter.LocationNotFound", f"Domain/Url: no rule for {domain}{url}")

    def _target_key(self, tp: Params) -> tuple[str, int]:
        tp.check_known(("InstanceId", "EniIp", "Port", "Weight"), ignored=("Type", "Tag"))
        port = tp.int("Port", 1, 65535, required=True)
        iid = tp.str("InstanceId")
        if iid is None:
            ip = tp.str("EniIp")
            if ip is None:
                raise TencentError(MISSING, f"{tp.where('InstanceId')} (or EniIp) is required")
            by_address = {addr: name for name, addr in self.lab.addresses.items()}
            name = by_address.get((ip, port))
            if name is None:
                raise TencentError(INVALID_VALUE, f"{tp.where('EniIp')}: no lab backend at {ip}:{port}",
                                   hint="the lab's backends: " + ", ".join(f"{h}:{p_}" for h, p_ in self.lab.addresses.values()))
            iid = {n: i for i, n in self.lab.instance_ids().items()}.get(name, name)
        try:
            self.lab.backend_of_instance(iid)
        except LbsimError as e:
            raise from_lbsim(e) from None
        return iid, port

    async def register_targets(self, p: Params, call: Call) -> dict[str, Any]:
        def register(rule: Any, tp: Params, key: tuple[str, int]) -> None:
            rule.targets[key] = tp.int("Weight", 0, 100, DEFAULT_WEIGHT)

        return await self._change_targets(p, call, register)

    async def deregister_targets(self, p: Params, call: Call) -> dict[str, Any]:
        def deregister(rule: Any, tp: Params, key: tuple[str, int]) -> None:
            if key not in rule.targets:
                raise TencentError(INVALID_VALUE, f"{tp.where('InstanceId')}: {key[0]} port {key[1]} is not "
                                   "registered on this rule")
            del rule.targets[key]

        return await self._change_targets(p, call, deregister)

    async def _change_targets(self, p: Params, call: Call, change: Any) -> dict[str, Any]:
        """RegisterTargets/DeregisterTargets: `change(rule, target, key)` each target on a copy of the listener's
        facts, then apply the copy as one change (a refused target changes nothing)."""
        p.check_known(("LoadBalancerId", "ListenerId", "Targets", "LocationId", "Domain", "Url"))
        facts, listener = self._facts(p.str("LoadBalancerId", required=True), p.str("ListenerId", required=True))
        self._idle(listener)
        facts = facts.copy()
        rule = self._rules_for(p, facts)
        for tp in p.objs("Targets", required=True, max_items=100):
            change(rule, tp, self._target_key(tp))
        await self._apply(facts, listener, self._listener_cert(listener), call)
        return {}

    def _backend_view(self, iid: str, port: int, weight: int) -> dict[str, Any]:
        name = self.lab.instance_ids().get(iid, iid)
        host = self.lab.addresses.get(name, ("", 0))[0]
        return {"Type": "CVM", "InstanceId": iid, "Port": port, "Weight": weight, "PublicIpAddresses": [],
                "PrivateIpAddresses": [host] if host else [], "InstanceName": name, "RegisteredTime": None,
                "EniId": None}

    async def describe_targets(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("LoadBalancerId", "ListenerIds", "Protocol", "Port"), ignored=("Filters",))
        lb = self._lb(p.str("LoadBalancerId", required=True))
        ids = set(p.strs("ListenerIds"))
        port = p.int("Port", 1, 65535)
        self._adopt_all()
        out = []
        for facts in self.facts.values():
            if facts.lb_id != lb.id or (ids and facts.id not in ids) or (port and facts.port != port):
                continue
            out.append({
                "ListenerId": facts.id, "Protocol": "HTTPS", "Port": facts.port, "EndPort": None,
                "Targets": [self._backend_view(i, pt, w) for (i, pt), w in facts.base_targets.items()] or None,
                "Rules": [{"LocationId": r.location_id, "Domain": r.domain, "Url": r.url,
                           "Targets": [self._backend_view(i, pt, w) for (i, pt), w in r.targets.items()]}
                          for r in facts.rules.values()],
            })
        return {"Listeners": out}

    async def describe_target_health(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("LoadBalancerIds", "ListenerIds", "LocationIds"))
        lbs = [self._lb(i, f"LoadBalancerIds.{n}") for n, i in enumerate(p.strs("LoadBalancerIds", required=True))]
        lids, locs = set(p.strs("ListenerIds")), set(p.strs("LocationIds"))
        self._adopt_all()
        out = []
        for lb in lbs:
            listeners = []
            for facts in self.facts.values():
                if facts.lb_id != lb.id or (lids and facts.id not in lids):
                    continue
                try:
                    listener = self.lab.listener_at(lb.id, facts.port)
                except LbsimError:
                    continue
                groups = [(r.location_id, r.domain, r.url, r.targets) for r in facts.rules.values()
                          if not locs or r.location_id in locs]
                if facts.base_targets and not locs:
                    groups.insert(0, ("", "", "", facts.base_targets))
                listeners.append({"ListenerId": facts.id, "ListenerName": facts.name, "Protocol": "HTTPS",
                                  "Port": facts.port,
                                  "Rules": [{"LocationId": loc, "Domain": d, "Url": u, "RuleId": loc,
                                             "Targets": [self._health_of(listener, i, pt, w) for (i, pt), w in t.items()]}
                                            for loc, d, u, t in groups]})
            out.append({"LoadBalancerId": lb.id, "LoadBalancerName": lb.name, "Listeners": listeners})
        return {"LoadBalancers": out}

    def _health_of(self, listener: Any, iid: str, port: int, weight: int) -> dict[str, Any]:
        name = self.lab.instance_ids().get(iid, iid)
        state = listener.backends.get(name)
        spec = listener.spec
        if listener.status == "stopped" or not spec.health_check.enabled:
            healthy, detail = False, "Close"
        elif state is None or listener.active is None:
            healthy, detail = False, "Unknown"  # registered, not serving yet (the change is activating)
        else:
            healthy, detail = bool(state.healthy), "Alive" if state.healthy else "Dead"
        host = self.lab.addresses.get(name, ("", 0))[0]
        return {"IP": host, "Port": port, "HealthStatus": healthy, "TargetId": iid, "HealthStatusDetail": detail,
                "HealthStatusDetial": detail, "TargetGroupId": None, "Weight": weight}

    # --- tasks -----------------------------------------------------------------------------------------------

    async def task_status(self, p: Params, call: Call) -> dict[str, Any]:
        p.check_known(("TaskId",), ignored=("DealName",))
        task_id = p.str("TaskId", required=True)
        task = self.tasks.get(task_id)
        if task is None:
            raise TencentError(NOT_FOUND, f"TaskId: no task {task_id!r} (a task id is the RequestId of the call "
                               "that changed something)")
        done = self._done(task)
        return {"Status": 0 if done else 2, "LoadBalancerIds": list(task.lb_ids),
                "Message": None if done else "the change is activating"}


def tencent_time_epoch(seconds: float) -> str:
    return tencent_time(dt.datetime.fromtimestamp(seconds, dt.timezone.utc))
