"""Aliyun: "The ECDHE method used by HTTPS listeners supports forward secrecy, but does not support uploading
the PEM files that contain the security enhancement parameters, such as BEGIN DH PARAMETERS." """

import pytest

from simulator.harness.scenario import ApiError, dh_parameters_pem

STATEMENT = "PEM files containing BEGIN DH PARAMETERS are refused (aliyun notes)"


@pytest.mark.seed(STATEMENT)
@pytest.mark.parametrize("profile", ["aliyun-slb", "tencent-clb"])
@pytest.mark.parametrize("where", ["cert", "key"])
def test_dh_parameters_refused(lab, pki, profile, where):
    issued = pki().server("localhost")
    dh = dh_parameters_pem()
    cert, key = issued.chain_pem, issued.key_pem
    if where == "cert":
        cert = cert + dh
    else:
        key = dh + key
    with pytest.raises(ApiError) as refused:
        lab.upload_server_certificate(f"with-dh-{where}", cert, key, profile=profile)
    assert refused.value.code == "DhParametersNotSupported" and refused.value.field == where
    assert "DH PARAMETERS" in refused.value.message
    # Without the block the same certificate is fine.
    assert lab.upload_server_certificate(f"without-dh-{where}-{profile}", issued, profile=profile)["type"] == "server"
