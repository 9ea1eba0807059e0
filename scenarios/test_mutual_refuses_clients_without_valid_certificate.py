"""Aliyun: "The server uses the CA certificate to authenticate the CA signature on the client certificate ...
If the authentication fails, the connection will be rejected."

The mutual-authentication matrix of every configured listener: no certificate, a valid one, one from another
CA, an expired one and a not-yet-valid one, against what the listener's mode says (mutual `on`: only valid
gets in; tencent `optional`: also no certificate; one-way: nobody is asked). The observed column is the
listener's own `tls_verify_status` for that connection.
"""

import pytest

STATEMENT = "Mutual listeners refuse clients without a valid certificate from the uploaded CA (aliyun certificate table)"


@pytest.mark.seed(STATEMENT)
def test_mutual_matrix(lab, lab_listener):
    report = lab.observe(lab_listener)
    rows = {row["client"]: row for row in report.mutual_matrix}
    assert {"none", "untrusted"} <= set(rows)
    if report.verify_client != "off":
        assert "valid" in rows, f"{lab_listener}: no client certificate from its CA to test with"
    wrong = [row for row in report.mutual_matrix if not row["ok"]]
    assert not wrong, f"{lab_listener} ({report.verify_client}): {wrong}"
    # A refused client never reaches a backend: its request got no HTTP answer.
    for row in report.mutual_matrix:
        assert row["http_status_200"] == (row["expected"] == "Success")
