"""Lab configuration: a wrong config is refused before anything starts, naming the field and the allowed values."""

from __future__ import annotations

import pytest

from simulator.model.config import load_config, parse_config
from simulator.errors import LbsimError

BASE = {
    "certificates": [
        {"name": "web", "type": "server", "cert": "web.pem", "key": "web.key"},
        {"name": "clients", "type": "ca", "cert": "ca.pem"},
    ],
    "backends": [{"name": "b1", "port": 0}, {"name": "ext", "address": "127.0.0.1:8080"}],
}


def listener(**fields):
    return {**BASE, "listeners": [{"port": 443, "server_certificate": "web", "backend_servers": ["b1"], **fields}]}


def error_of(data) -> LbsimError:
    with pytest.raises(LbsimError) as info:
        parse_config(data)
    return info.value


def test_defaults_follow_the_vendor() -> None:
    spec = parse_config(listener()).listeners[0]
    assert spec.profile == "aliyun-slb" and spec.policy.name == "tls_cipher_policy_1_0"
    assert spec.scheduler == "wrr" and spec.idle_timeout == 15 and spec.request_timeout == 60
    assert spec.headers.x_forwarded_for and spec.headers.x_forwarded_proto and not spec.headers.slb_ip
    assert not spec.mutual and spec.billing_model == "aliyun-slb" and spec.name == "https-443"


def test_mutual_listener_and_tencent_optional_verification() -> None:
    spec = parse_config(listener(profile="tencent-clb", ca_certificate="clients", ssl_verify_client="optional")).listeners[0]
    assert spec.mutual and spec.ssl_verify_client == "optional"


def test_rsa_and_ecc_certificates_on_one_tencent_listener() -> None:
    data = listener(profile="tencent-clb", server_certificates=["web", "ecc"])
    data["certificates"] = [*data["certificates"], {"name": "ecc", "cert": "ecc.pem", "key": "ecc.key"}]
    del data["listeners"][0]["server_certificate"]
    spec = parse_config(data).listeners[0]
    assert spec.server_certificates == ("web", "ecc") and spec.server_certificate == "web"
    assert [f for f, _, _ in spec.certificate_fields] == ["server_certificates[0]", "server_certificates[1]"]
    aliyun = {**data, "listeners": [{**data["listeners"][0], "profile": "aliyun-slb"}]}
    error = error_of(aliyun)
    assert error.field == "listeners[0].server_certificates" and "tencent-clb feature" in error.message
    one = {**data, "listeners": [{**data["listeners"][0], "server_certificates": ["web"]}]}
    assert "two different server certificate names" in error_of(one).message
    unknown = {**data, "listeners": [{**data["listeners"][0], "server_certificates": ["web", "nope"]}]}
    assert error_of(unknown).field == "listeners[0].server_certificates[1]"


@pytest.mark.parametrize("profile", ["aliyun-slb", "tencent-clb"])
def test_client_cert_refusal_defaults_per_profile_and_can_be_set(profile: str) -> None:
    mutual = {"profile": profile, "ca_certificate": "clients"}
    assert parse_config(listener(**mutual)).listeners[0].client_cert_refusal == "handshake"  # UNCONFIRMED default
    spec = parse_config(listener(**mutual, client_cert_refusal="http_400")).listeners[0]
    assert spec.client_cert_refusal == "http_400"


@pytest.mark.parametrize(
    "fields, path, words",
    [
        ({"tls_policy": "tls_1_9"}, "listeners[0].tls_policy", "tls_cipher_policy_1_0"),
        ({"scheduler": "random"}, "listeners[0].scheduler", "wrr, rr, wlc"),
        ({"idle_timeout": 61}, "listeners[0].idle_timeout", "1..60"),
        ({"request_timeout": 0}, "listeners[0].request_timeout", "1..180"),
        ({"port": 70000}, "listeners[0].port", "0..65535"),
        ({"profile": "aws"}, "listeners[0].profile", "aliyun-slb, tencent-clb"),
        ({"ssl_verify_client": "optional", "ca_certificate": "clients"}, "listeners[0].ssl_verify_client", "tencent-clb"),
        ({"ssl_verify_client": "on"}, "listeners[0].ssl_verify_client", "mutual"),
        ({"client_cert_refusal": "http_400"}, "listeners[0].client_cert_refusal", "only applies to mutual listeners"),
        ({"client_cert_refusal": "alert", "ca_certificate": "clients"}, "listeners[0].client_cert_refusal",
         "handshake, http_400"),
        ({"sni": {"a.example": "web"}}, "listeners[0].sni", "SNI"),
        ({"ca_certificate": "web"}, "listeners[0].ca_certificate", "expected a ca certificate"),
        ({"server_certificate": "clients"}, "listeners[0].server_certificate", "expected a server certificate"),
        ({"backend_servers": ["nope"]}, "listeners[0].backend_servers[0].backend", "b1, ext"),
        ({"backend_servers": [{"backend": "b1", "weight": 101}]}, "listeners[0].backend_servers[0].weight", "0..100"),
        ({"sticky_session": {"type": "server"}}, "listeners[0].sticky_session.cookie", "cookie"),
        ({"sticky_session": {"cookie_timeout": 86401}}, "listeners[0].sticky_session.cookie_timeout", "1..86400"),
        ({"health_check": {"interval": 51}}, "listeners[0].health_check.interval", "1..50"),
        ({"health_check": {"healthy_threshold": 1}}, "listeners[0].health_check.healthy_threshold", "2..10"),
        ({"health_check": {"http_code": ["http_6xx"]}}, "listeners[0].health_check.http_code", "http_2xx"),
        ({"health_check": {"method": "post"}}, "listeners[0].health_check.method", "head, get"),
        ({"headers": {"x_forwarded_for": False}}, "listeners[0].headers.x_forwarded_for", "always on"),
        ({"colour": "blue"}, "listeners[0].colour", "unknown field"),
        ({"activation_delay": -1}, "listeners[0].activation_delay", ">= 0"),
        ({"billing_model": "azure"}, "listeners[0].billing_model", "aws-alb"),
    ],
)
def test_wrong_listener_fields_name_the_path_and_the_allowed_values(fields, path, words) -> None:
    err = error_of(listener(**fields))
    assert err.field == path, err
    assert words in str(err)


@pytest.mark.parametrize(
    "data, path",
    [
        ({"profile": "gcp"}, "profile"),
        ({"time_scale": 0}, "time_scale"),
        ({"api": {"port": -1}}, "api.port"),
        ({"certificates": [{"name": "s", "cert": "x.pem"}]}, "certificates[0].key"),
        ({"certificates": [{"name": "c", "type": "ca", "cert": "x.pem", "key": "k"}]}, "certificates[0].key"),
        ({"backends": [{"name": "b", "address": "nohost"}]}, "backends[0].address"),
        ({"backends": [{"name": "b", "port": 1}, {"name": "b", "port": 2}]}, "backends[1].name"),
        ({**listener(), "listeners": listener()["listeners"] * 2}, "listeners[1].port"),
        ({"listeners": {"port": 1}}, "listeners"),
        ({"workers": 0}, "workers"),
        ({"workers": 1.5}, "workers"),
        ({"workers": 65}, "workers"),
        ({"workers": "many"}, "workers"),
        ({"workers": True}, "workers"),
        ([1, 2], "<top>"),
    ],
)
def test_wrong_top_level_fields(data, path) -> None:
    assert error_of(data).field == path


def test_workers_default_to_one_process() -> None:
    assert parse_config(listener()).workers == 1
    assert parse_config({**listener(), "workers": 2}).workers == 2
    assert "1..64" in str(error_of({"workers": 0}))


def test_workers_auto_is_one_process_per_usable_core() -> None:
    """`workers: auto` counts the cores this process may run on (its affinity), capped at MAX_WORKERS."""
    import os

    from simulator.model.config import MAX_WORKERS

    cores = len(os.sched_getaffinity(0))
    assert parse_config({**listener(), "workers": "auto"}).workers == min(cores, MAX_WORKERS)
    assert parse_config({**listener(), "workers": "AUTO"}).workers == min(cores, MAX_WORKERS)
    err = error_of({"workers": "every core"})
    assert err.field == "workers" and "'auto'" in err.message and "auto" in (err.hint or "")


def test_workers_option_takes_auto_and_names_itself_when_wrong(capsys) -> None:
    import os

    from simulator.cli import build_parser

    parser = build_parser()
    cores = len(os.sched_getaffinity(0))
    for command in (["up"], ["run"], ["scenarios", "run"]):
        assert parser.parse_args([*command, "--workers", "auto"]).workers == cores
        assert parser.parse_args([*command, "--workers", "2"]).workers == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["up", "--workers", "0"])
    assert "--workers" in capsys.readouterr().err


def test_yaml_errors_and_missing_files(tmp_path) -> None:
    bad = tmp_path / "lab.yaml"
    bad.write_text("listeners: [\n  - port: 443\n  bad")
    with pytest.raises(LbsimError) as info:
        load_config(bad)
    assert "line" in str(info.value)
    with pytest.raises(LbsimError) as info:
        load_config(tmp_path / "missing.yaml")
    assert info.value.code == "ConfigNotFound"


@pytest.mark.parametrize("profile", ["aliyun-slb", "tencent-clb"])
def test_http2_defaults_to_the_vendors_on_and_can_be_switched_off(profile: str) -> None:
    base = {"port": 443, "server_certificate": "web", "profile": profile}
    assert parse_config({"listeners": [base]}).listeners[0].http2 is True  # EnableHttp2 / tencent FAQ: on
    assert parse_config({"listeners": [{**base, "http2": "off"}]}).listeners[0].http2 is False
    assert "listeners[0].http2" in str(error_of({"listeners": [{**base, "http2": "sometimes"}]}))


def test_yaml_on_off_switches(tmp_path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(
        "certificates: [{name: web, cert: web.pem, key: web.key}]\n"
        "backends: [{name: b1, port: 0}]\n"
        "listeners:\n  - {port: 8443, server_certificate: web, http2: on, sticky_session: on, headers: {slb_ip: on}}\n"
    )
    spec = load_config(path).listeners[0]
    assert spec.http2 and spec.sticky_session.type == "insert" and spec.headers.slb_ip


def test_vendor_api_section_and_instance_ids() -> None:
    config = parse_config({**listener(), "backends": [{"name": "b1", "port": 0}, {"name": "c", "port": 0, "instance_id": "i-bp1c"}],
                           "vendor_api": {"access_keys": [{"id": "LTAIkey", "secret": "s3cret", "profile": "aliyun-slb"},
                                                          {"id": "AKIDkey", "secret": "other"}],
                                          "tencent-clb": {"http_port": 0, "https_port": 0, "region": "ap-shanghai"}}})
    assert [b.instance for b in config.backends] == ["i-b1", "i-bp1c"]
    keys = config.vendor_api.access_keys
    assert [(k.id, k.profile) for k in keys] == [("LTAIkey", "aliyun-slb"), ("AKIDkey", None)]
    assert config.vendor_api.endpoint("tencent-clb").region == "ap-shanghai"
    assert config.vendor_api.endpoint("aliyun-slb").region is None  # the face's default
    assert parse_config(listener()).vendor_api.access_keys == ()


@pytest.mark.parametrize(
    "vendor_api, path",
    [
        ({"host": "0.0.0.0"}, "vendor_api.host"),
        ({"access_keys": [{"id": "x"}]}, "vendor_api.access_keys[0].secret"),
        ({"access_keys": [{"id": "has space", "secret": "s"}]}, "vendor_api.access_keys[0].id"),
        ({"access_keys": [{"id": "a", "secret": "s"}, {"id": "a", "secret": "t"}]}, "vendor_api.access_keys[1].id"),
        ({"access_keys": [{"id": "a", "secret": "s", "profile": "aws"}]}, "vendor_api.access_keys[0].profile"),
        ({"aliyun-slb": {"http_port": 70000}}, "vendor_api.aliyun-slb.http_port"),
        ({"aliyun-slb": {"http_port": 8000, "https_port": 8000}}, "vendor_api.aliyun-slb.https_port"),
        ({"aws": {}}, "vendor_api.aws"),
    ],
)
def test_wrong_vendor_api_fields_name_the_path(vendor_api, path) -> None:
    assert error_of({**listener(), "vendor_api": vendor_api}).field == path


def test_duplicate_instance_ids_are_refused() -> None:
    data = {**listener(), "backends": [{"name": "b1", "port": 0, "instance_id": "i-x"}, {"name": "c", "port": 0, "instance_id": "i-x"}]}
    assert error_of(data).field == "backends[1].instance_id"
