"""lbsim as a team adds it to its own CI: a wheel built from this checkout, installed into a fresh virtualenv
(no editable install, no checkout on sys.path), every command run from an empty directory. The built-in suite,
the Locust profiles and the bench's files must come from the wheel (simulator/_data/), and the main job must
need no extra. About 2.5 minutes: the install (about 35 s with pip's cache warm) and a full `lbsim run`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def sh(cmd: list[str], cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def checked(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def scratch() -> Path:
    """Where the source copy, the wheel and the venv go: outside pytest's temporary folders, as they hold
    source, not output (test_reliability_keys scans those, and lbsim's sources hold PEM headers to look for)."""
    with tempfile.TemporaryDirectory(prefix="lbsim-wheel-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def wheel(scratch: Path) -> Path:
    """The wheel, built from a copy of the checkout's files (what a clone has: tracked and new, not ignored)."""
    src = scratch / "src"
    files = checked(sh(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], ROOT)).split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = scratch / "wheel"
    out.mkdir()
    checked(sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(src), "-w", str(out)], out))
    (built,) = out.glob("lbsim-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, scratch: Path) -> Path:
    """A fresh virtualenv (no system site-packages) with the wheel and its `load` extra."""
    env = scratch / "venv"
    env.mkdir()
    checked(sh([sys.executable, "-m", "venv", str(env)], env))
    checked(sh([str(env / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[load]"], env, timeout=900))
    return env


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    return cwd


def test_the_wheel_carries_the_suite_the_profiles_and_the_bench_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in [p.relative_to(ROOT) for d in ("scenarios", "benchmarks") for p in (ROOT / d).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts]:
        assert f"simulator/_data/{rel}" in names, rel
    assert "simulator/harness/suite.ini" in names and "simulator/policies/groups.cnf" in names
    assert not any(n.startswith(("scenarios/", "benchmarks/", "tests/")) for n in names)  # nothing top-level


def test_the_installed_package_uses_its_own_copy(venv: Path, empty: Path) -> None:
    code = "from simulator.resources import data_dir; print(data_dir('scenarios')); print(data_dir('benchmarks'))"
    paths = checked(sh([str(venv / "bin" / "python"), "-c", code], empty)).split()
    site = checked(sh([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], empty))
    assert paths == [f"{site.strip()}/simulator/_data/scenarios", f"{site.strip()}/simulator/_data/benchmarks"]


def test_lbsim_run_the_main_job(venv: Path, empty: Path) -> None:
    done = sh([str(venv / "bin" / "lbsim"), "run", "-q"], empty, timeout=800)
    checked(done)
    report = json.loads((empty / "lbsim-out" / "run" / "report.json").read_text())
    checkout_scenarios = checked(sh([sys.executable, "-m", "simulator.cli", "scenarios", "list"], ROOT)).splitlines()
    assert report["summary"]["failed"] == 0 and report["summary"]["total"] == len(checkout_scenarios) > 50
    # Without the vendor-sdks extra the scenarios driving the vendors' SDKs say which extra they need.
    skipped = [s for s in report["scenarios"] if s["outcome"] == "skipped"]
    assert {s["name"].split("::")[-1].split("[")[0] for s in skipped} == {"test_rotation_script_through_the_aliyun_sdk_under_load",
                                                          "test_upload_by_the_aliyun_api",
                                                          "test_rotation_script_under_steady_load",
                                                          "test_upload_by_calling_the_tencent_api"}, skipped
    assert all("lbsim[vendor-sdks]" in s["message"] for s in skipped), skipped
    assert all(s["name"].startswith("test_") for s in report["scenarios"])


def test_lbsim_load_a_shipped_profile(venv: Path, empty: Path) -> None:
    out = checked(sh([str(venv / "bin" / "lbsim"), "load", "new_connections", "-u", "2", "-r", "2", "-t", "2s",
                      "--stop-timeout", "5"], empty, timeout=300))
    load = json.loads((empty / "lbsim-load" / "load.json").read_text())
    assert load["profile"] == "new_connections" and load["locust"]["handshakes"] > 0, out
    assert load["checks"]["ok"], out


def test_lbsim_bench_quick(venv: Path, empty: Path) -> None:
    out = checked(sh([str(venv / "bin" / "lbsim"), "bench", "--quick", "--out", "bench"], empty, timeout=600))
    assert (empty / "bench" / "bench.json").is_file() and "lbsim / nginx" in out, out


def test_a_users_own_scenario(venv: Path, empty: Path) -> None:
    """The plugin in a user's own conftest.py, run by plain pytest and by `lbsim scenarios run`."""
    (empty / "conftest.py").write_text('pytest_plugins = ["simulator.pytest_plugin"]\n')
    (empty / "test_mine.py").write_text(
        "def test_my_request_reaches_a_backend(lab):\n"
        "    result = lab.run(['curl', '-sS', '--cacert', '{ca}', '{url:aliyun-one-way}/hello'])\n"
        "    result.assert_ok()\n"
        "    assert lab.connections('aliyun-one-way', since=result.mark)[-1]['requests'] == 1\n")
    assert "1 passed" in checked(sh([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], empty))
    assert "1 passed" in checked(sh([str(venv / "bin" / "lbsim"), "scenarios", "run", "."], empty))


def test_lbsim_load_without_locust_names_the_extra(venv: Path, empty: Path) -> None:
    """Last: it uninstalls Locust from the module's venv."""
    checked(sh([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q", "locust"], empty))
    done = sh([str(venv / "bin" / "lbsim"), "load", "new_connections"], empty)
    assert done.returncode == 1
    assert "lbsim load needs locust" in done.stderr and "lbsim[load]" in done.stderr, done.stderr
    assert not (empty / "lbsim-load").exists()  # refused before anything started
    assert "Traceback" not in done.stderr
