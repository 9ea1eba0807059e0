"""Every vendor policy, through real mitmproxy listeners: what negotiates equals the table minus what the
certificate type excludes. Probed suite by suite with our client, and once with sslyze as an independent scanner."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.runtime.defaults import mint_default_pki
from simulator.harness.running import RunningLab, start_lab
from simulator.policies import POLICIES, resolve_policy
from simulator.policies.probe import enumerate_tls

ALIYUN = [name for name in POLICIES if name.startswith("tls_cipher_policy")]
CASES = [(f"aliyun-{name}", "aliyun-slb", name, "lab-rsa", "RSA") for name in ALIYUN] + [
    ("tencent-rsa", "tencent-clb", None, "lab-rsa", "RSA"),
    ("tencent-ecdsa", "tencent-clb", None, "lab-ecdsa", "ECDSA"),
]


@pytest.fixture(scope="module")
def policy_lab(tmp_path_factory: pytest.TempPathFactory) -> RunningLab:
    out: Path = tmp_path_factory.mktemp("policies")
    files = mint_default_pki(out / "pki")
    config = {
        "time_scale": 0.01,
        "certificates": [
            {"name": "lab-rsa", "type": "server", "cert": files["server-rsa"], "key": files["server-rsa-key"]},
            {"name": "lab-ecdsa", "type": "server", "cert": files["server-ecdsa"], "key": files["server-ecdsa-key"]},
        ],
        "backends": [{"name": "web", "port": 0}],
        "listeners": [
            {"name": name, "port": 0, "profile": profile, "server_certificate": cert, "backend_servers": ["web"],
             **({"tls_policy": policy} if policy else {})}
            for name, profile, policy, cert, _ in CASES
        ],
    }
    lab = start_lab(config, out_dir=out)
    yield lab
    lab.stop()


@pytest.mark.parametrize("name, profile, policy, cert, key_type", CASES, ids=[c[0] for c in CASES])
def test_negotiated_matrix_equals_the_vendor_table(policy_lab: RunningLab, name, profile, policy, cert, key_type) -> None:
    expected = resolve_policy(profile, policy).negotiable(key_type)
    observed = enumerate_tls("127.0.0.1", policy_lab.port(name))
    assert observed == expected  # versions, suites, and the server's preference order


def test_sslyze_sees_the_same_matrices_through_the_listeners(policy_lab: RunningLab) -> None:
    from sslyze import ScanCommand, Scanner, ServerNetworkLocation, ServerScanRequest, ServerScanStatusEnum

    commands = {
        "TLSv1": ScanCommand.TLS_1_0_CIPHER_SUITES,
        "TLSv1.1": ScanCommand.TLS_1_1_CIPHER_SUITES,
        "TLSv1.2": ScanCommand.TLS_1_2_CIPHER_SUITES,
        "TLSv1.3": ScanCommand.TLS_1_3_CIPHER_SUITES,
    }
    by_port = {policy_lab.port(c[0]): c for c in CASES}
    # Few connections at a time: on a loaded 2-core machine sslyze counts a timed-out attempt as a rejected suite.
    scanner = Scanner(per_server_concurrent_connections_limit=2, concurrent_server_scans_limit=2)
    scanner.queue_scans(
        [ServerScanRequest(server_location=ServerNetworkLocation("localhost", port, ip_address="127.0.0.1"),
                           scan_commands=set(commands.values())) for port in by_port]
    )
    results = list(scanner.get_results())
    assert len(results) == len(CASES)
    for res in results:
        name, profile, policy, _, key_type = by_port[res.server_location.port]
        assert res.scan_status == ServerScanStatusEnum.COMPLETED, (name, res.connectivity_error_trace)
        seen = {}
        for version, command in commands.items():
            attempt = getattr(res.scan_result, command.value)
            assert attempt.result is not None, (name, attempt.error_trace)
            accepted = {c.cipher_suite.openssl_name for c in attempt.result.accepted_cipher_suites}
            if accepted:
                seen[version] = accepted
        expected = resolve_policy(profile, policy).negotiable(key_type)
        assert seen == {v: set(s) for v, s in expected.items()}, name
