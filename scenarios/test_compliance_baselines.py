"""Compliance verdicts per configured listener, from what the probes observed (never from configuration):
Mozilla's modern and intermediate profiles (guidelines 6.0), PCI DSS 4.0, NIST SP 800-52 Rev. 2
(docs/compliance.md). sslyze scans every listener once as an independent cross-check: it must see the same
versions and suites, and its observations must give the same verdicts.

`--lbsim-require [LISTENER=]BASELINE` (lbsim run --require) turns a verdict into a pass/fail expectation.
"""

import pytest

from simulator.harness.compliance import BASELINES

STATEMENT = "Compliance verdicts from observed TLS (issue: compliance verdicts; not a seed statement)"


@pytest.mark.seed(STATEMENT)
def test_compliance_verdicts(lab, lab_listener):
    report = lab.observe(lab_listener)
    assert report.observation is not None, report.note
    assert set(report.verdicts) == set(BASELINES)
    for name, verdict in report.verdicts.items():
        assert verdict.evidence, name  # a verdict always says why
    required = [b for listener, b in lab.shared.require if listener in (None, lab_listener)]
    failed = {b: report.verdicts[b].evidence for b in required if not report.verdicts[b].passed}
    assert not failed, f"{lab_listener} fails required baseline(s): {failed}"


@pytest.mark.seed(STATEMENT)
def test_sslyze_agrees_with_probe(lab, sslyze_cross_check):
    checks = sslyze_cross_check
    assert set(checks) == set(lab.config_listeners())
    for name, check in checks.items():
        report = lab.observe(name)
        if report.observation is None:
            continue  # nothing of ours to compare (see the TLS matrix scenario's note)
        assert check["error"] is None, (name, check["error"])
        assert not check["differences"], (name, check["differences"], check["rejection_reasons"])
        assert check["verdicts_agree"], (name, check["disagreements"])
