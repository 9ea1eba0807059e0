"""`python -m simulator.tools.sessioncache`: what the workers' shared session cache does to a handshake.

The CPU figures are the tool's to report, not this test's to judge (they move with the machine); the test holds
what the cache did, which does not: nothing stored for TLS 1.3 behind stateless tickets, every session stored
for TLS 1.2 without tickets, and OpenSSL's own cache of the attached context empty either way.
"""

from __future__ import annotations

import pytest

from simulator.tools import sessioncache


@pytest.mark.parametrize(("version", "abrupt", "stored"),
                         [("1.3", False, 0), ("1.3", True, 0), ("1.2", False, 20 + 2 * 20)])  # warm-up, 2 rounds
def test_what_the_cache_keeps_per_version(version: str, abrupt: bool, stored: int) -> None:
    """Without close_notify OpenSSL removes each connection's session when it frees the connection (the remove
    callback runs): a TLS 1.3 one was never stored, so nothing changes."""
    cost = sessioncache.measure(version, handshakes=20, rounds=2, abrupt=abrupt)
    assert (cost.stored, cost.found, cost.openssl_cached) == (stored, 0, 0)
    assert len(cost.plain_us) == len(cost.attached_us) == 2 and min(cost.plain_us + cost.attached_us) > 0


def test_the_command_prints_both_contexts_and_the_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert sessioncache.main(["--handshakes", "5", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "without the shared cache:" in out and "with it attached:" in out
    assert "sessions stored 0, found 0; OpenSSL's own cache of the attached context holds 0" in out

