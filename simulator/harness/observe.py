"""Observing a lab's configured listeners for the report: the TLS and mutual-authentication matrices,
compliance verdicts, the traffic comparison and the sslyze cross-check, cached once per session.

`ListenerObservations` is a part of `ScenarioLab` (simulator.harness.scenario), kept apart because it serves
`lbsim run`'s report rather than a scenario author. It uses the handle's probes, requests, clients and
connection log (`probe`, `connection`, `connection_for`, `client`, `has_client`, `port`, `host`,
`wait_backends_healthy`) and its session state (`running`, `shared`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.harness.scenario import Credentials

CLIENT_KINDS = ("none", "valid", "untrusted", "expired", "not_yet_valid", "revoked")
# What a listener's handshake log says for each client (the mutual-authentication matrix's expectations), by
# its `ListenerSpec.client_verification`. "revoked" is a valid certificate that a CRL of the listener's trust
# store may revoke: `expected_status` decides from the store.
EXPECTED_VERIFY = {
    "on": {"none": "Failed:NoClientCertificate", "valid": "Success", "untrusted": "Failed:ClientCertUntrusted",
           "expired": "Failed:ClientCertExpired", "not_yet_valid": "Failed:ClientCertNotYetValid", "revoked": "Success"},
    "optional": {"none": "Success", "valid": "Success", "untrusted": "Failed:ClientCertUntrusted",
                 "expired": "Failed:ClientCertExpired", "not_yet_valid": "Failed:ClientCertNotYetValid",
                 "revoked": "Success"},
    "any": dict.fromkeys(CLIENT_KINDS, "Success"),  # asked for, never checked (the ALB's passthrough)
    "off": dict.fromkeys(CLIENT_KINDS, "Success"),  # one-way: no certificate is asked for, any client gets in
}  # fmt: skip
REVOKED = "Failed:ClientCertRevoked"


def expected_status(verify: str, kind: str, revoked: bool = False, ignore_expiry: bool = False) -> str:
    """The `tls_verify_status` a client of `kind` should get: a revoked certificate is refused where the
    listener verifies clients against a CRL that revokes it; `ignore_client_certificate_expiry` admits an
    expired one."""
    status = EXPECTED_VERIFY[verify][kind]
    if verify in ("on", "optional") and revoked:
        return REVOKED
    if kind == "expired" and ignore_expiry and verify in ("on", "optional"):
        return "Success"
    return status


def group_candidates() -> tuple[str, ...]:
    """Every key-exchange group some vendor policy lists (the groups matrix offers each alone)."""
    from simulator.policies import POLICIES

    return tuple(dict.fromkeys(g for p in POLICIES.values() for g in p.groups))


class NoTrafficListener(AssertionError):
    """No configured listener can carry the traffic comparison (only mutual listeners, and no client
    certificate for them). An AssertionError, so a scenario needing the comparison fails with this reason;
    `lbsim run` reports the comparison as skipped for it, and as failed for any other error."""


@dataclass
class ListenerReport:
    """One configured listener as the probes saw it: the report's TLS and mutual matrices and verdicts."""

    name: str
    port: int
    profile: str
    policy: str
    mutual: bool
    verify_client: str  # on | optional | any (asked for, never checked) | off (one-way): client_verification
    key_type: str
    expected: dict[str, list[str]]
    observed: dict[str, list[str]] | None = None
    note: str | None = None
    mutual_matrix: list[dict[str, Any]] = field(default_factory=list)
    observation: Any = None  # compliance.Observation
    verdicts: dict[str, Any] = field(default_factory=dict)  # baseline -> compliance.Verdict
    unavailable: list[str] = field(default_factory=list)  # in the policy, absent from this OpenSSL build
    client_cert_refusal: str | None = None  # mutual: handshake (a TLS alert) | http_400 (nginx's 400 page)
    # TLS 1.3 handshakes offering one group each: {"expected": [...], "observed": [...]}; None without TLS 1.3
    groups: dict[str, list[str]] | None = None

    @property
    def groups_match(self) -> bool:
        return self.groups is None or self.groups["expected"] == self.groups["observed"]

    @property
    def match(self) -> bool:
        return self.observed is not None and self.observed == self.expected

    def differences(self) -> list[str]:
        """What negotiated that the policy does not allow, or did not that it does, per version."""
        if self.observed is None:
            return [self.note or "not observed"]
        out = []
        for version in sorted(set(self.expected) | set(self.observed)):
            want, got = self.expected.get(version, []), self.observed.get(version, [])
            if set(got) - set(want):
                out.append(f"{version}: accepted beyond the policy: {', '.join(sorted(set(got) - set(want)))}")
            if set(want) - set(got):
                out.append(f"{version}: refused though the policy allows: {', '.join(sorted(set(want) - set(got)))}")
            if set(got) == set(want) and got != want:
                out.append(f"{version}: server preference order {got} instead of {want}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "port": self.port, "profile": self.profile, "policy": self.policy,
            "mutual": self.mutual, "verify_client": self.verify_client, "key_type": self.key_type,
            "client_cert_refusal": self.client_cert_refusal,
            "tls_matrix": {"expected": self.expected, "observed": self.observed, "match": self.match,
                           "differences": self.differences() if not self.match else [], "note": self.note},
            "unavailable": list(self.unavailable),
            "mutual_matrix": self.mutual_matrix,
            "groups": None if self.groups is None else {**self.groups, "match": self.groups_match},
            "mozilla_policy_level": self.mozilla_policy_level(),
            "compliance": {k: v.to_dict() for k, v in self.verdicts.items()},
        }  # fmt: skip

    def mozilla_policy_level(self) -> str | None:
        """The strictest Mozilla profile the observed versions and suites fit (compliance.mozilla_policy_level)."""
        from simulator.harness import compliance

        return compliance.mozilla_policy_level(self.observation) if self.observation is not None else None


class ListenerObservations:
    """The report's view of the configured listeners (a part of `ScenarioLab`)."""

    def config_listeners(self) -> list[str]:
        """Names of the listeners the lab was configured with (not those scenarios create)."""
        return [spec.name for spec in self.running.config.listeners]

    def trusted_client(self, listener: str | int, kind: str = "valid") -> Credentials | None:
        """Client credentials of `kind` issued by a CA the listener verifies clients against (its client CA
        or its trust store), if this session has any."""
        state = self.running.listener(listener)
        spec = state.spec
        if spec is None or not spec.verifies_clients or not self.has_client(kind):
            return None
        creds = self.client(kind)
        if creds is None:
            return None
        from cryptography import x509

        issuer = x509.load_pem_x509_certificates(creds.cert_pem)[0].issuer
        return creds if issuer in {ca.subject for ca in self._client_cas(state)} else None

    def _client_cas(self, state: Any) -> list[Any]:
        """The CA certificates a listener verifies clients against: its `ca_certificate`'s chain, or its
        trust store's bundle (as the store is now: API changes apply at once)."""
        spec = state.spec
        if spec.ca_certificate is not None:
            version = state.active or state.pending
            assert version is not None
            return list(self.running.lab.store.material(version.certificate_ids[spec.ca_certificate]).chain)
        if spec.trust_store is not None:
            return list(self.running.lab.trust_store(spec.trust_store).cas)
        return []

    def _revoked(self, state: Any, creds: Credentials | None) -> bool:
        """The listener's trust store holds a CRL from the certificate's issuer that lists its serial."""
        spec = state.spec
        if creds is None or spec.trust_store is None:
            return False
        from cryptography import x509

        cert = x509.load_pem_x509_certificates(creds.cert_pem)[0]
        return any(crl.issuer == cert.issuer and crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                   is not None for crl in self.running.lab.trust_store(spec.trust_store).crls)

    def client_for(self, listener: str | int) -> Credentials | None:
        """The client a request to `listener` needs: a trusted certificate if it verifies every client."""
        spec = self.running.listener(listener).spec
        if spec is None or spec.client_verification != "on":
            return None
        creds = self.trusted_client(listener)
        if creds is None:
            raise AssertionError(f"listener {listener} requires a client certificate from its CA and the session has "
                                 "none: pass --lbsim-client-cert/--lbsim-client-key (lbsim run --client-cert/--client-key)")
        return creds

    def observe(self, listener: str) -> ListenerReport:
        """Probe a listener once per session: versions x suites, the mutual matrix, compliance verdicts."""
        with self.shared.lock:
            if listener not in self.shared.observations:
                self.shared.observations[listener] = self._observe(listener)
            return self.shared.observations[listener]

    def observe_policy(self, profile: str, policy: str, certificate: str) -> ListenerReport:
        """A named policy measured like a listener, on a temporary one-way listener of `profile` serving the
        lab certificate `certificate` (no mutual matrix: a one-way listener admits everyone). Cached per
        session: a scenario probing a vendor's policies and the report's policy matrix share one measurement."""
        key = f"policy {profile} {policy} {certificate}"
        with self.shared.lock:
            if key not in self.shared.observations:
                handle = self.add_listener({"name": f"policy-{policy}", "profile": profile, "tls_policy": policy,
                                            "server_certificate": certificate})
                try:
                    self.shared.observations[key] = self._observe(handle.name, mutual_matrix=False)
                finally:
                    self.remove_listener(handle)
            return self.shared.observations[key]

    def _observe(self, name: str, mutual_matrix: bool = True) -> ListenerReport:
        from simulator.harness import compliance

        state = self.running.listener(name)
        version = state.active
        assert version is not None, f"listener {name} is not active"
        spec = version.spec
        refs = spec.server_certificates or (spec.server_certificate,)  # an RSA+ECC listener: "ECDSA+RSA"
        key_type = "+".join(sorted({self.running.lab.store.describe(version.certificate_ids[ref]).key_type
                                    for ref in refs}))
        verify = spec.client_verification
        report = ListenerReport(name=name, port=state.port, profile=spec.profile, policy=spec.policy.name,
                                mutual=verify != "off", verify_client=verify, key_type=key_type,
                                client_cert_refusal=spec.client_cert_refusal if spec.verifies_clients else None,
                                expected=spec.policy.negotiable(key_type), unavailable=list(spec.policy.unavailable))
        creds = self.trusted_client(name) if verify == "on" else None
        kwargs: dict[str, Any] = {}
        if creds:
            kwargs = {"client_cert_pem": creds.cert_pem, "client_key_pem": creds.key_pem}
        if verify == "on" and not creds:
            report.note = ("no client certificate from this listener's CA in the session (pass "
                           "--lbsim-client-cert/--lbsim-client-key): suites not enumerated")
        else:
            report.observed = compliance.accepted_suites(self.host, state.port, **kwargs)
            leaf = self.probe(state.port, **({} if not creds else {"client": creds}))
            report.observation = compliance.Observation(name, report.observed, leaf.server_chain[0] if leaf.server_chain else None)
            report.verdicts = compliance.evaluate(report.observation)
            report.groups = self._groups_matrix(name, spec.policy, creds)
        if mutual_matrix:
            report.mutual_matrix = self._mutual_matrix(name, verify, report.client_cert_refusal)
        return report

    def _groups_matrix(self, name: str, policy: Any, creds: Credentials | None) -> dict[str, list[str]] | None:
        """One TLS 1.3 handshake per known key-exchange group, offering that group alone: a client offering only
        X25519MLKEM768 gets in exactly where the policy lists it. None for a policy without TLS 1.3 (TLS 1.2
        has no hybrid groups, and a plain-RSA suite would need no group at all)."""
        if "TLSv1.3" not in policy.versions:
            return None
        candidates = group_candidates()
        observed = [g for g in candidates if self.probe(name, client=creds, version="TLSv1.3", groups=[g]).ok]
        return {"expected": [g for g in candidates if g in policy.groups], "observed": observed}

    def _mutual_matrix(self, name: str, verify: str, refusal: str | None = None) -> list[dict[str, Any]]:
        """Each kind of client against the listener: its `tls_verify_status` (and, where the vendor writes a
        connection log of its own, the status that log gives), and how it was answered. A refused client gets
        a TLS alert (`client_cert_refusal: handshake`) or nginx's 400 page (`http_400`), never a backend's
        answer."""
        state = self.running.listener(name)
        rows = []
        for kind in CLIENT_KINDS:
            creds = None
            if kind == "untrusted":
                creds = self.client("untrusted")
            elif kind != "none":
                creds = (self.trusted_client(name, kind) if verify in ("on", "optional")
                         else (self.client(kind) if self.has_client(kind) else None))
                if creds is None:
                    continue  # no such client for this CA: not part of the matrix
            expected = expected_status(verify, kind, self._revoked(state, creds), state.spec.ignore_client_certificate_expiry)
            r = self.probe(name, client=creds, http_request=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            record = self.connection_for(r) if r.local_port else None
            observed = record["tls_verify_status"] if record else f"NoConnection:{r.error}"
            served = bool(r.ok and r.http_response and r.http_response.startswith(b"HTTP/1.1 200"))
            status_line = (r.http_response or b"").partition(b"\r\n")[0].decode("latin-1")
            answer = f"alert {r.alert}" if r.alert else status_line or "no answer"
            refused_as_configured = (answer.startswith("HTTP/1.1 400") if refusal == "http_400"
                                     else r.alert is not None)
            rows.append({"client": kind, "expected": expected, "observed": observed,
                         "ok": observed == expected and served == (expected == "Success")
                         and (served or refused_as_configured),
                         "alert": r.alert, "http_status_200": served, "answer": answer,
                         "vendor_status": self._vendor_log_status(state.spec, record)})
        return rows

    def _vendor_log_status(self, spec: Any, record: dict[str, Any] | None) -> str | None:
        """`tls_verify_status` as the vendor's own connection log (`VendorProfile.connection_log`) wrote it for
        this connection, or None where the profile has no such log. Written with the JSON record."""
        from simulator import vendors

        fmt = vendors.get(spec.profile).connection_log
        log = self.running.lab.connection_log_path
        if fmt is None or record is None or log is None:
            return None
        import shlex

        path = log.parent / fmt.file
        client_port, listener_port = record["client"].rsplit(":", 1)[1], str(record.get("listener_port"))
        at = {f: i for i, f in enumerate(fmt.fields)}
        deadline = time.monotonic() + 2  # the line follows the JSON record by a moment (same callback)
        while True:
            for line in reversed(path.read_text().splitlines() if path.exists() else []):
                fields = shlex.split(line)  # the quoted subject is one field
                if fields[at["client_port"]] == client_port and fields[at["listener_port"]] == listener_port:
                    return fields[at["tls_verify_status"]]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)

    def traffic_comparison(self, listener: str | None = None, requests: int = 10, size: int = 1024) -> list[dict[str, Any]]:
        """Wire against billed bytes for the same requests sent three ways (cached for the session):
        keep-alive on one connection, a new connection (full handshake) per request, and a new connection
        per request resuming the TLS session."""
        with self.shared.lock:
            if self.shared.traffic is None:
                self.shared.traffic = self._traffic_comparison(listener, requests, size)
            return self.shared.traffic

    def traffic_listener(self) -> tuple[str, Credentials | None]:
        """The configured listener the traffic comparison uses, and the client it needs: a one-way listener
        first, else a mutual one this session has a trusted client for (or that makes the certificate optional).
        Raises NoTrafficListener naming what is missing when no listener can serve the comparison."""
        specs = self.running.config.listeners
        for spec in specs:
            if spec.client_verification == "off":
                return spec.name, None
        for spec in specs:
            if spec.client_verification != "on":
                return spec.name, None
            creds = self.trusted_client(spec.name)
            if creds is not None:
                return spec.name, creds
        raise NoTrafficListener(
            "the traffic comparison needs a one-way listener, or a mutual listener and a client certificate from "
            f"its CA; this lab has only mutual listeners ({', '.join(s.name for s in specs) or 'none'}) and the "
            "session no client certificate: pass --lbsim-client-cert/--lbsim-client-key (lbsim run --client-cert/--client-key)")

    def _traffic_comparison(self, listener: str | None, n: int, size: int) -> list[dict[str, Any]]:
        if listener is None:
            listener, creds = self.traffic_listener()
        else:
            creds = self.client_for(listener)
        path = f"/traffic?size={size}"
        get = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        cases: dict[str, list[Any]] = {}
        with self.connection(listener, client=creds, verify=False) as conn:
            last = None
            for _ in range(n):
                last = conn.request(path)
                assert last.status == 200, f"{listener}: {last.status} {last.body[:200]!r}"
        cases["keep-alive: 1 connection"] = [last]
        fresh = [self.probe(listener, client=creds, http_request=get) for _ in range(n)]
        cases["new connection per request"] = fresh
        first = self.probe(listener, client=creds, http_request=get)
        resumed = [first]
        for _ in range(n - 1):
            resumed.append(self.probe(listener, client=creds, http_request=get, session=resumed[-1].session))
        cases["new connection per request, session resumed"] = resumed
        assert all(r.ok for r in fresh + resumed), [r.error for r in fresh + resumed if not r.ok]
        out = []
        for case, results in cases.items():
            records = [self.connection_for(r) for r in results]
            wire = sum(r["traffic"]["client_to_lb"]["wire"] + r["traffic"]["lb_to_client"]["wire"] for r in records)
            billed = sum(r["billed"]["billed_bytes"] for r in records)
            out.append({"case": case, "listener": listener, "billing_model": records[0]["billing_model"],
                        "connections": len(records), "requests": sum(r["requests"] for r in records),
                        "resumed": sum(1 for r in records if r["resumed"]), "wire_bytes": wire,
                        "billed_bytes": billed, "ratio": round(wire / billed, 3) if billed else None})
        return out

    def sslyze_targets(self) -> list[Any]:
        from simulator.harness import compliance

        targets = []
        for name in self.config_listeners():
            creds = self.trusted_client(name)
            targets.append(compliance.Target(name, self.host, self.port(name),
                                             creds.cert_file if creds else None, creds.key_file if creds else None))
        return targets

    def start_sslyze(self) -> None:
        """Start the session's sslyze scan in a child process now; :meth:`sslyze_cross_check` collects it."""
        from simulator.harness import compliance

        with self.shared.lock:
            if self.shared.sslyze_scan is None and self.shared.sslyze is None:
                self.shared.sslyze_scan = compliance.SslyzeScan(self.sslyze_targets()).start()

    def sslyze_cross_check(self) -> dict[str, dict[str, Any]]:
        """Scan every configured listener with sslyze once per session and compare with our probe.

        A listener where the two disagree is scanned again (alone) before the difference counts: on a
        loaded machine sslyze counts a timed-out attempt as a rejected suite."""
        from simulator.harness import compliance

        with self.shared.lock:
            if self.shared.sslyze is not None:
                return self.shared.sslyze
            self.start_sslyze()
            scan, self.shared.sslyze_scan = self.shared.sslyze_scan, None
            scanned = scan.results()
            out: dict[str, dict[str, Any]] = {}
            for name in self.config_listeners():
                ours = self.observe(name)
                result = scanned.get(name)
                entry: dict[str, Any] = {"scanner": "sslyze", "error": result.error if result else "not scanned",
                                         "rescanned": False}
                if result and result.observation and ours.observation and compliance.compare(ours.observation, result.observation):
                    target = next(t for t in self.sslyze_targets() if t.name == name)
                    result = compliance.sslyze_observations([target], connections=1, servers=1)[name]
                    entry["rescanned"] = True
                if result and result.observation and ours.observation:
                    theirs = result.observation
                    theirs.certificate = ours.observation.certificate  # sslyze judged on the same served leaf
                    entry["error"] = result.error
                    entry["differences"] = compliance.compare(ours.observation, theirs)
                    entry["rejection_reasons"] = {k: v for k, v in result.reasons.items()
                                                  if any(k.split(" ", 1)[1] in d for d in entry["differences"])}
                    mine = {k: (v.passed, sorted(v.evidence)) for k, v in ours.verdicts.items()}
                    its = {k: (v.passed, sorted(v.evidence)) for k, v in compliance.evaluate(theirs).items()}
                    entry["verdicts_agree"] = mine == its
                    entry["disagreements"] = sorted(k for k in mine if mine[k] != its[k])
                    entry["refused_legacy"] = sorted({s for v in result.rejected.values() for s in v}
                                                     & {"DES-CBC3-SHA", "RC4-SHA", "RC4-MD5"})
                    entry["agrees"] = not entry["differences"] and entry["verdicts_agree"]
                else:
                    entry["agrees"] = False
                out[name] = entry
            self.shared.sslyze = out
            self.wait_backends_healthy()  # the scan's load can make scaled health checks time out
            return out
