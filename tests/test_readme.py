"""The README says what lbsim does: its examples must stay true to the code.

The configuration example must pass lbsim's own validator, and the default lab it describes (sample output
and table) must be the one `lbsim up` starts.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from simulator.model.config import parse_config
from simulator.faces.up import listener_kind
from simulator.runtime.defaults import default_lab_data

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_the_configuration_example_is_a_valid_lab() -> None:
    block = re.search(r"```yaml\n(.*?)```", section("Configuration reference"), re.S)
    assert block, "the configuration reference has a yaml example"
    config = parse_config(yaml.safe_load(block.group(1)), base_dir="/nonexistent")  # files are read at start, not here
    shop = config.listeners[0]
    assert shop.name == "shop" and shop.profile == "tencent-clb" and shop.mutual
    assert shop.client_cert_refusal == "handshake" and shop.http2
    # Every field the example sets is taken, not defaulted: a rename in the config would break one of these.
    assert dict(shop.sni) == {"shop.example.com": "web", "*.example.org": "other"}
    assert shop.policy.custom and shop.policy.versions == ("TLSv1.2", "TLSv1.3")
    assert [b.weight for b in shop.backend_servers] == [100, 50]
    assert shop.idle_timeout == 15 and shop.request_timeout == 60 and shop.billing_model == "tencent-clb"
    assert {c.name for c in config.certificates} == {"web", "other", "clients"}


def test_the_default_lab_the_readme_shows_is_the_one_lbsim_up_starts() -> None:
    files = {k: f"/x/{k}" for k in ("server-rsa", "server-rsa-key", "server-ecdsa", "server-ecdsa-key", "client-ca", "crl")}
    data = default_lab_data(files)
    quick_start, table = section("Quick start"), section("The default lab")
    for listener in parse_config(data).listeners:
        name, policy = listener.name, listener.policy.name
        kind = re.escape(listener_kind(listener))  # `mutual (optional)` for tencent-mutual, `mutual (any)` for passthrough
        lacks = f" \\(never negotiates here: {', '.join(listener.policy.unavailable)}\\)" if listener.policy.unavailable else ""
        assert re.search(rf"^{name} +https://127\.0\.0\.1:\d+/ +{listener.profile} +{kind} +policy {policy}{lacks}$",
                         quick_start, re.M), name
        row = re.search(rf"^\| `{name}` \| {listener.profile} \|.*\| `{policy}` \|(.*)$", table, re.M)
        assert row, name
        assert ("HTTP/2 on" if listener.http2 else "HTTP/2 off") in row.group(1), name
