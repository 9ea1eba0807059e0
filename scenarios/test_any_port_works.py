"""Tencent FAQ 3 "What port can I use for HTTPS listening?": "Not mandatory. Port 443 is recommended."
Aliyun's ListenerPort is 1-65535 likewise.

The configuration takes 443 and any other port in range; live listeners on arbitrary ports serve HTTPS.
(The lab does not bind the privileged port 443 itself: it may be taken on a shared machine.)
"""

import pytest

from simulator.model.config import parse_config
from simulator.errors import LbsimError
from simulator.net import free_port

STATEMENT = "Any port works for HTTPS listening; 443 is recommended, not mandatory (tencent FAQ 3)"


def config_with_port(port):
    return {"certificates": [{"name": "c", "cert": "c.pem", "key": "c.key"}], "backends": [{"name": "b", "port": 0}],
            "listeners": [{"port": port, "server_certificate": "c", "backend_servers": ["b"]}]}


@pytest.mark.seed(STATEMENT)
@pytest.mark.parametrize("port", [443, 1, 8443, 65535])
def test_port_range_accepted(port):
    assert parse_config(config_with_port(port)).listeners[0].port == port


@pytest.mark.seed(STATEMENT)
@pytest.mark.parametrize("port", [-1, 65536])
def test_port_out_of_range_refused(port):
    with pytest.raises(LbsimError) as refused:
        parse_config(config_with_port(port))
    assert refused.value.field == "listeners[0].port"


@pytest.mark.seed(STATEMENT)
def test_listeners_on_arbitrary_ports_serve_https(lab, pki):
    ca = pki()
    lab.upload_server_certificate("any-port", ca.server("localhost"))
    trust = lab.write_file("any-port-ca.pem", ca.ca_pem)
    for profile in ("aliyun-slb", "tencent-clb"):
        port = free_port()
        listener = lab.add_listener({"port": port, "profile": profile, "server_certificate": "any-port"})
        assert listener.port == port
        assert lab.request(listener, "/", verify=trust).status == 200
