"""Aliyun: "The server uses the CA certificate to authenticate the CA signature on the client certificate ...
If the authentication fails, the connection will be rejected."

The mutual-authentication matrix of every configured mutual listener: no certificate, a valid one, one from
another CA, an expired one and a not-yet-valid one, against what the listener's mode says (mutual `on`: only
valid gets in; tencent `optional`: also no certificate). The observed column is the listener's own
`tls_verify_status` for that connection. One-way listeners ask nobody: the report's matrix shows them too,
but the statement is not about them, so no case runs on them.
"""

import pytest

STATEMENT = "Mutual listeners refuse clients without a valid certificate from the uploaded CA (aliyun certificate table)"


@pytest.mark.seed(STATEMENT)
@pytest.mark.lab_listeners(mutual=True)
def test_mutual_matrix(lab, lab_listener):
    report = lab.observe(lab_listener)
    rows = {row["client"]: row for row in report.mutual_matrix}
    assert report.verify_client in ("on", "optional")
    assert {"none", "untrusted"} <= set(rows)
    assert "valid" in rows, f"{lab_listener}: no client certificate from its CA to test with"
    # The statement itself: a client without a valid certificate from the CA does not get in.
    refused = {"untrusted", "expired", "not_yet_valid"} | ({"none"} if report.verify_client == "on" else set())
    assert all(rows[kind]["observed"] != "Success" for kind in refused & set(rows)), rows
    wrong = [row for row in report.mutual_matrix if not row["ok"]]
    assert not wrong, f"{lab_listener} ({report.verify_client}): {wrong}"
    # A refused client never reaches a backend: its request got no HTTP answer.
    for row in report.mutual_matrix:
        assert row["http_status_200"] == (row["expected"] == "Success")
