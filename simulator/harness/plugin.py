"""pytest plugin: lab fixtures for scenarios. Load it with ``pytest_plugins = ["simulator.pytest_plugin"]`` in
your top-level conftest.py, or ``pytest -p simulator.pytest_plugin``.

Fixtures:
    lab            a ScenarioLab on the session's lab; what a test creates through it is removed afterwards
    lab_session    the same lab, session-scoped (its creations stay)
    lab_listener   parametrises a test over the lab's configured listeners (the value is the name); narrow
                   it with ``@pytest.mark.lab_listeners(profile="aliyun-slb", mutual=True)``, so a case
                   exists only where the test's statement applies (none: the test is skipped, saying why)
    sslyze_cross_check  sslyze's scan of the configured listeners vs the probe's (once per session, started early)
    lab_factory    start extra labs: lab_factory(None | "lab.yaml" | {...} | LabBuilder, time_scale=0.01)
    pki            mint a CA: pki() / pki("ecdsa") -> LabPKI

Which lab the session uses, first match wins: one handed in by ``lbsim run`` (:func:`attach`);
``--lbsim-config FILE`` or ``$LBSIM_LAB_CONFIG``; else the built-in default lab. Timers run at
``--lbsim-time-scale`` (``$LBSIM_TIME_SCALE``, default 0.01); ``--lbsim-workers N`` (``$LBSIM_WORKERS``) runs
the session lab with N processes per listener port. Mark a test with ``@pytest.mark.seed("...")``
to name the vendor statement it checks (the report shows it).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from simulator.harness.scenario import Credentials, LabBuilder, ScenarioLab, mint_pki, start
from simulator.certs import LabPKI

DEFAULT_TIME_SCALE = 0.01
_PROVIDED = pytest.StashKey[ScenarioLab]()
_SESSION = pytest.StashKey[ScenarioLab]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lbsim", "lbsim scenario lab")
    group.addoption("--lbsim-config", default=os.environ.get("LBSIM_LAB_CONFIG"),
                    help="lab YAML the scenarios run against (default: the built-in default lab; env LBSIM_LAB_CONFIG)")
    group.addoption("--lbsim-time-scale", type=float, default=float(os.environ.get("LBSIM_TIME_SCALE", DEFAULT_TIME_SCALE)),
                    help="vendor timers x this (default 0.01: 300 s tickets last 3 s; env LBSIM_TIME_SCALE)")
    group.addoption("--lbsim-workers", type=int, default=int(os.environ["LBSIM_WORKERS"]) if os.environ.get("LBSIM_WORKERS") else None,
                    help="processes sharing every listener port of the session lab (default: the lab's; env LBSIM_WORKERS)")
    group.addoption("--lbsim-out", default=None, help="where the session lab writes (default: a pytest temp dir)")
    group.addoption("--lbsim-client-cert", default=None,
                    help="a client certificate trusted by your mutual listeners' CA (for YAML labs)")
    group.addoption("--lbsim-client-key", default=None, help="its private key")
    group.addoption("--lbsim-require", action="append", default=[], metavar="[LISTENER=]BASELINE",
                    help="fail unless the listener (or every listener) passes the baseline: mozilla-modern, "
                         "mozilla-intermediate, pci-dss-4.0, nist-sp-800-52r2 (repeatable)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "seed(statement): the vendor seed statement a scenario checks")
    config.addinivalue_line("markers", "lab_listeners(profile=None, mutual=None): parametrise lab_listener only "
                            "over the configured listeners of this profile and/or mode")


def attach(config: pytest.Config, lab: ScenarioLab) -> None:
    """Hand an already running lab to this session's fixtures (what `lbsim run` does)."""
    config.stash[_PROVIDED] = lab


def session_lab(config: pytest.Config) -> ScenarioLab | None:
    """The session's lab if a fixture started (or was handed) one."""
    return config.stash.get(_SESSION, None)


def requirements(values: list[str]) -> list[tuple[str | None, str]]:
    from simulator.harness.compliance import BASELINES

    out = []
    for value in values:
        listener, _, baseline = value.rpartition("=")
        if baseline not in BASELINES:
            raise pytest.UsageError(f"--lbsim-require {value}: unknown baseline {baseline!r}; expected one of {', '.join(BASELINES)}")
        out.append((listener or None, baseline))
    return out


# ---- which listeners the lab has, known before it starts (for parametrising) ----------------------------------

@dataclass(frozen=True)
class ListenerFacts:
    """What parametrising needs to know of a configured listener, before the lab runs."""

    name: str
    profile: str
    mutual: bool  # it verifies client certificates (`ListenerSpec.verifies_clients`)


def _listener_facts(config: pytest.Config) -> list[ListenerFacts]:
    provided = config.stash.get(_PROVIDED, None)
    if provided is not None:
        specs = [provided.running.listener(name).active.spec for name in provided.config_listeners()]
        return [ListenerFacts(spec.name, spec.profile, spec.verifies_clients) for spec in specs]
    path = config.getoption("--lbsim-config")
    if path:
        from simulator.model.config import load_config

        return [ListenerFacts(spec.name, spec.profile, spec.verifies_clients) for spec in load_config(path).listeners]
    from simulator.model.config import parse_config
    from simulator.runtime.defaults import default_lab_data

    # Parsed without its PKI (no file is read): placeholder paths stand for the PEM files not yet minted.
    specs = parse_config(default_lab_data(defaultdict(lambda: "unminted.pem"))).listeners
    return [ListenerFacts(spec.name, spec.profile, spec.verifies_clients) for spec in specs]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lab_listener" not in metafunc.fixturenames:
        return
    listeners = _listener_facts(metafunc.config)
    wanted = metafunc.definition.get_closest_marker("lab_listeners")
    if wanted is not None:
        profile, mutual = wanted.kwargs.get("profile"), wanted.kwargs.get("mutual")
        listeners = [l for l in listeners if (profile is None or l.profile == profile)
                     and (mutual is None or l.mutual == mutual)]
        if not listeners:  # an honest skip naming what is missing, not a vacuous pass
            what = " ".join(filter(None, [profile, {True: "mutual", False: "one-way", None: ""}[mutual]]))
            skip = pytest.mark.skip(reason=f"the lab has no {what} listener")
            metafunc.parametrize("lab_listener", [pytest.param(None, marks=skip, id="no-such-listener")], scope="session")
            return
    metafunc.parametrize("lab_listener", [l.name for l in listeners], scope="session")


# ---- fixtures ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def lab_session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioLab]:
    """The session's lab (see the module docstring for which one)."""
    config = request.config
    provided = config.stash.get(_PROVIDED, None)
    if provided is not None:
        config.stash[_SESSION] = provided
        _prefetch(request.session, provided)
        yield provided
        return
    out = config.getoption("--lbsim-out") or tmp_path_factory.mktemp("lbsim-lab")
    lab = start(config.getoption("--lbsim-config"), time_scale=config.getoption("--lbsim-time-scale"), out_dir=out,
                workers=config.getoption("--lbsim-workers"))
    configure_session(lab, config.getoption("--lbsim-client-cert"), config.getoption("--lbsim-client-key"),
                      config.getoption("--lbsim-require"))
    config.stash[_SESSION] = lab
    _prefetch(request.session, lab)
    try:
        yield lab
    finally:
        lab.stop()


def configure_session(lab: ScenarioLab, client_cert: str | None, client_key: str | None, require: list[str]) -> None:
    """Session-wide settings: extra client credentials and compliance requirements."""
    if client_cert:
        if not client_key:
            raise pytest.UsageError("--lbsim-client-cert needs --lbsim-client-key")
        lab.shared.extra_clients["valid"] = Credentials(Path(client_cert).read_bytes(), Path(client_key).read_bytes(),
                                                        client_cert, client_key)
    lab.shared.require = requirements(require)


def _prefetch(session: pytest.Session, lab: ScenarioLab) -> None:
    """Start the sslyze scan as the session starts when a selected test needs it ($LBSIM_SSLYZE_EARLY=0: not).

    It runs in a child process, one connection per listener at a time, beside the scenarios: the lab's event
    loop absorbs that load while scenarios wait on scaled timers (measured: `lbsim run` 66 s -> 52 s). At
    sslyze's default concurrency the loop lags enough for 50 ms health-check timeouts to misfire."""
    if os.environ.get("LBSIM_SSLYZE_EARLY", "1") == "0":
        return
    if any("sslyze_cross_check" in getattr(item, "fixturenames", ()) for item in session.items):
        lab.start_sslyze()


@pytest.fixture(scope="session")
def sslyze_cross_check(lab_session: ScenarioLab) -> dict[str, dict[str, Any]]:
    """sslyze's scan of every configured listener compared with the probe's (once per session, started early)."""
    return lab_session.sslyze_cross_check()


@pytest.fixture
def lab(lab_session: ScenarioLab) -> Iterator[ScenarioLab]:
    """The session's lab; listeners and certificates the test creates through it are removed afterwards."""
    handle = lab_session.child()
    try:
        yield handle
    finally:
        handle.cleanup()


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[Callable[..., ScenarioLab]]:
    """Start more labs in a test: ``lab_factory(LabBuilder()...)``, ``lab_factory("lab.yaml")``; stopped after."""
    started: list[ScenarioLab] = []

    def factory(config: LabBuilder | dict[str, Any] | str | Path | None = None, time_scale: float | None = DEFAULT_TIME_SCALE) -> ScenarioLab:
        lab = start(config, time_scale=time_scale, out_dir=tmp_path / f"lab-{len(started)}")
        started.append(lab)
        return lab

    try:
        yield factory
    finally:
        for lab in reversed(started):
            lab.stop()


@pytest.fixture
def pki() -> Callable[..., LabPKI]:
    """Mint a fresh CA: ``ca = pki()`` (RSA) or ``pki("ecdsa")``; ``ca.server("localhost")``, ``ca.client("me")``."""
    return mint_pki
