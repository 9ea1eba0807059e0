"""Every notebook under notebooks/ is executed (nbclient, the venv's ipykernel) on fast data: it must run
without errors, save its figures and state its conclusions from the data. The committed notebooks carry
no outputs, so nothing stale can contradict a fresh run. A notebook writes only into its output directory
(default `lbsim-notebooks/` where the user ran the command), never into the repository: every execution leaves
`git status` as it found it; relative paths are the user's, not `notebooks/`'s."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from simulator.tools import analysis

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PNG = b"\x89PNG\r\n\x1a\n"


def git_status() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"],
                          capture_output=True, text=True, check=True)
    return done.stdout


def execute(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Run a notebook from its own directory (as Jupyter does) with `env` set for the kernel; errors raise.
    The repository's `git status` must be the same afterwards: nothing tracked rewritten, nothing new."""
    for key in ("LBSIM_RESULTS", "LBSIM_OUT", "LBSIM_FAST", "LBSIM_NOTEBOOK_OUT", "LBSIM_REPORT", "LBSIM_LISTENERS",
                "LBSIM_CWD"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    before = git_status()
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    assert git_status() == before, f"{name} changed the repository:\n{git_status()}"
    return nb


def outputs(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raise AssertionError(f"{out['ename']}: {out['evalue']}")
            data = out.get("data", {})
            if mime in data:
                found.append(data[mime])
    return found


def streams(nb: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", [])
                   if out.get("output_type") == "stream")


def assert_pngs(directory: Path, names: list[str]) -> None:
    for name in names:
        path = directory / f"{name}.png"
        assert path.is_file(), f"{path} missing"
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, path


def test_committed_notebooks_carry_no_outputs() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["policy_matrix.ipynb", "traffic_vs_billed.ipynb"]
    for name in names:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: commit it with outputs cleared"
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), f"{name}: no parameters cell"


TRAFFIC_FIGURES = ["overhead_vs_requests", "wire_breakdown", "billed_vs_actual", "lcu_vs_new_connections",
                   "key_exchange_classic_vs_pq"]


def test_traffic_vs_billed_measures_its_own_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as a user would from their own directory: no output directory given, LBSIM_OUT relative."""
    figures, out = tmp_path / "lbsim-notebooks", tmp_path / "results"
    nb = execute("traffic_vs_billed.ipynb", {"LBSIM_FAST": "1", "LBSIM_CWD": str(tmp_path), "LBSIM_OUT": "results"}, monkeypatch)
    assert_pngs(figures, TRAFFIC_FIGURES)
    assert len(outputs(nb, "image/png")) == len(TRAFFIC_FIGURES)
    (text,) = outputs(nb, "text/markdown")
    assert text == (figures / "traffic_vs_billed_conclusions.md").read_text().rstrip("\n")
    # the conclusions are the data's: the same sentences from the results directory the notebook measured
    assert text == analysis.conclusions_markdown(analysis.load_results(out))
    assert re.search(r"one request per connection: actual is \d+\.\d\dx billed; with resumption: actual is "
                     r"\d+\.\d\dx billed; 25 requests per connection", text)
    assert "against §4's 278 / 2,459 B" in text
    assert_key_exchange_matches_the_docs(out / "key-exchange" / "key_exchange.csv")


def assert_key_exchange_matches_the_docs(csv_path: Path) -> None:
    """The notebook's classic-against-PQ section measured what docs/metering.md quotes: the hybrid's extra
    handshake bytes each way, equal on full and resumed connections, and no extra billed byte."""
    cost = analysis.key_exchange_cost(pd.read_csv(csv_path)).set_index("connection")
    docs = (ROOT / "docs" / "metering.md").read_text()
    quoted = re.search(r"\*\*\+([\d,]+) B client→LB and \+([\d,]+) B LB→client per handshake, full or resumed\*\*", docs)
    assert quoted, "docs/metering.md quotes the hybrid's extra bytes"
    up, down = (int(g.replace(",", "")) for g in quoted.groups())
    for connection in ("full", "resumed"):
        row = cost.loc[connection]
        assert (row.extra_handshake_client_to_lb, row.extra_handshake_lb_to_client) == (up, down), (connection, row)
        assert row.extra_billed == 0 and row.extra_wire > 0


def test_the_default_sweep_spans_1_to_100_requests_per_connection() -> None:
    """CI runs the FAST sweep (1, 5, 25); the notebook's default, which made the committed figures, is 1..100."""
    default = inspect.signature(analysis.collect_overhead).parameters["requests"].default
    assert min(default) == 1 and max(default) == 100 and len(default) >= 5
    nb = nbformat.read(NOTEBOOKS / "traffic_vs_billed.ipynb", as_version=4)
    assert "else {}" in "".join(c.source for c in nb.cells)  # not FAST: collect_overhead's own defaults
    committed = (ROOT / "docs" / "figures" / "traffic_vs_billed_conclusions.md").read_text()
    assert re.search(r"; at 100 it is \d+\.\d%", committed), committed  # the committed figures come from 1..100


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `lbsim run` results directory (two scenarios; the matrices and traffic comparison always run)."""
    out = tmp_path_factory.mktemp("lbsim-run")
    done = subprocess.run([sys.executable, "-m", "simulator.cli", "run", "-q", "--out", str(out),
                           "-k", "actual_traffic_exceeds or mutual_refuses"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def load_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `lbsim load` results directory: a short new_connections run against its own lab."""
    out = tmp_path_factory.mktemp("lbsim-load")
    done = subprocess.run([sys.executable, "-m", "simulator.cli", "load", "new_connections", "-u", "2", "-r", "2",
                           "-t", "2s", "--stop-timeout", "5", "-o", str(out), "--force"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def traffic_notebook_on(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[nbformat.NotebookNode, str]:
    """traffic_vs_billed.ipynb run on a results directory named relative to the shell's $PWD (as
    `LBSIM_RESULTS=lbsim-load jupyter nbconvert ... notebooks/...` from the directory holding it): every
    figure saved, the conclusions the analysis module draws from that directory."""
    figures = tmp_path / "figures"
    nb = execute("traffic_vs_billed.ipynb", {"PWD": str(results.parent), "LBSIM_RESULTS": results.name,
                                             "LBSIM_NOTEBOOK_OUT": str(figures)}, monkeypatch)
    assert_pngs(figures, TRAFFIC_FIGURES)
    (text,) = outputs(nb, "text/markdown")
    assert text == analysis.conclusions_markdown(analysis.load_results(results))
    return nb, text


def test_traffic_vs_billed_reads_an_lbsim_run_directory(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, text = traffic_notebook_on(run_dir, tmp_path, monkeypatch)
    assert re.search(r"one request per connection: actual is \d+\.\d\dx billed", text), text
    assert " ? " not in text  # listeners scenarios created are not in the report: no key type, no '?'
    html = "\n".join(outputs(nb, "text/html"))
    report = json.loads((run_dir / "report.json").read_text())
    assert {"keep-alive: 1 connection", "new connection per request"} <= {c["case"] for c in report["traffic"]["comparison"]}
    assert "keep-alive: 1 connection" in html  # report.json's comparison shown


def test_traffic_vs_billed_reads_an_lbsim_load_directory(load_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, text = traffic_notebook_on(load_dir, tmp_path, monkeypatch)
    assert "aliyun-slb (LB->client billed), TLS 1.2 RSA one-way: one request per connection: actual is" in text
    printed = streams(nb)
    assert "lbsim load new_connections: 2 users" in printed and "checks against the listener's log: OK" in printed
    assert "locust_stats\n" in printed and "handshake full" in "\n".join(outputs(nb, "text/html"))  # Locust's own CSV


def test_policy_matrix_measures_a_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative output directory, from where the user ran the command."""
    figures = tmp_path / "out" / "figs"
    nb = execute("policy_matrix.ipynb", {"LBSIM_LISTENERS": "tencent-mutual", "LBSIM_CWD": str(tmp_path),
                                         "LBSIM_NOTEBOOK_OUT": "out/figs"}, monkeypatch)
    assert_pngs(figures, ["policy_matrix_tencent-mutual", "compliance"])
    (text,) = outputs(nb, "text/markdown")
    assert text.startswith("- **tencent-mutual** (tencent_default, ECDSA):") and "they match" in text
    assert text == (figures / "policy_matrix_conclusions.md").read_text().rstrip("\n")


def test_policy_matrix_reads_an_lbsim_run_report(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook on `lbsim run`'s report.json; and build_report, its fallback, gives that very shape."""
    report = json.loads((run_dir / "report.json").read_text())
    figures = tmp_path / "lbsim-notebooks"  # the default output directory, in the user's directory
    nb = execute("policy_matrix.ipynb", {"LBSIM_CWD": str(tmp_path), "PWD": "/",
                                         "LBSIM_REPORT": str(Path(os.path.relpath(run_dir, tmp_path)) / "report.json")},
                 monkeypatch)
    names = [l["name"] for l in report["listeners"]]
    assert names == ["aliyun-one-way", "aliyun-mutual", "tencent-one-way", "tencent-mutual", "aws-one-way", "aws-verify",
                     "aws-passthrough"]
    temporary = [p["name"] for p in report["policies"]]  # the vendors' other named policies, on temporary listeners
    assert len(temporary) == 3 + 21  # aliyun's and the ALB's
    assert_pngs(figures, [f"policy_matrix_{n}" for n in names + temporary] + ["compliance"])
    (text,) = outputs(nb, "text/markdown")
    mutual = next(l for l in report["listeners"] if l["name"] == "aliyun-mutual")
    passed = [p for p, v in mutual["compliance"].items() if v["verdict"] == "pass"]
    assert (f"- **aliyun-mutual** (tls_cipher_policy_1_2_strict_with_1_3, RSA): 11 observed version/suite pairs, "
            f"11 expected, they match; passes {', '.join(passed) if passed else 'no profile'}.") in text.splitlines()
    assert "not as expected" not in text
    html = "\n".join(outputs(nb, "text/html"))
    assert "Failed:ClientCertExpired" in html  # the mutual matrix: the listener's own verify status per client
    built = analysis.build_report(listeners=["aliyun-mutual"], out_dir=tmp_path / "lab")["listeners"][0]
    assert {**built, "port": None} == {**mutual, "port": None}  # one shape, and the same measurements


def test_user_paths_resolve_from_where_the_command_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LBSIM_CWD", raising=False)
    monkeypatch.delenv("LBSIM_NOTEBOOK_OUT", raising=False)
    monkeypatch.setenv("PWD", str(tmp_path))
    assert analysis.user_path("lbsim-load") == tmp_path / "lbsim-load"
    assert analysis.user_path("/abs/dir") == Path("/abs/dir")
    assert analysis.notebook_out() == tmp_path / "lbsim-notebooks"
    monkeypatch.setenv("LBSIM_CWD", str(tmp_path / "sub"))  # not a directory: ignored
    assert analysis.user_cwd() == tmp_path
    (tmp_path / "sub").mkdir()
    assert analysis.user_cwd() == tmp_path / "sub"  # LBSIM_CWD wins over PWD
    monkeypatch.setenv("LBSIM_NOTEBOOK_OUT", "figs")
    assert analysis.notebook_out() == tmp_path / "sub" / "figs"


def test_load_results_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist") as missing:
        analysis.load_results(tmp_path / "lbsim-load")
    assert "connections.jsonl" not in str(missing.value)  # it is the directory that is missing
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no connections.jsonl"):
        analysis.load_results(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no report.json at"):
        analysis.load_report(tmp_path / "empty")
