"""Shared fixtures: one default lab per test session (timers 100x faster), real sockets on loopback."""

from __future__ import annotations

import os

import pytest

from simulator.harness.running import RunningLab, start_lab
from simulator.metering import meter, native

TIME_SCALE = 0.01  # vendor timers 100x faster: ticket lifetime 3 s, activation 0.45-1.8 s, health interval 20 ms


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> RunningLab:
    """The built-in default lab: aliyun and tencent, one-way and mutual, two mock backends."""
    # $LBSIM_EVENT_LOOP=uvloop runs the session lab on uvloop (docs/performance.md, "uvloop").
    running = start_lab(out_dir=tmp_path_factory.mktemp("lab"), time_scale=TIME_SCALE,
                        event_loop=os.environ.get("LBSIM_EVENT_LOOP") or None)
    yield running
    running.stop()


@pytest.fixture(params=native.available())
def message_callback(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Meter new connections with each message callback this machine has (C, and the Python fallback)."""
    monkeypatch.setattr(meter, "_on_message_fp", native.ssl_callback(request.param))
    return request.param


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the last test, no output under pytest's temporary folders holds a PEM private key, unless the
    file is made only of PEM blocks (an input). test_reliability_keys scans what its own process wrote
    before it; this scans every worker's folders once all are done (under xdist, in the controller)."""
    from simulator.tools.soak import PEM_KEY, files_to_scan

    if hasattr(session.config, "workerinput"):
        return
    written = files_to_scan([session.config._tmp_path_factory.getbasetemp()])  # type: ignore[attr-defined]
    hits = [path for path, data in written.items() if PEM_KEY.search(data)]
    if hits:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.ensure_newline()
        for hit in hits:
            reporter.write_line(f"KEY MATERIAL in a test's output (docs/reliability.md, Key hygiene): {hit}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
