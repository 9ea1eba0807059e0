"""Every notebook under notebooks/ is executed (nbclient, the venv's ipykernel) on fast data: it must run
without errors, save its figures and state its conclusions from the data. The committed notebooks carry
no outputs, so nothing stale can contradict a fresh run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from simulator import analysis

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PNG = b"\x89PNG\r\n\x1a\n"


def execute(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Run a notebook from its own directory with `env` set for the kernel; errors raise."""
    for key in ("LBSIM_RESULTS", "LBSIM_OUT", "LBSIM_FAST", "LBSIM_FIGURES", "LBSIM_REPORT", "LBSIM_LISTENERS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
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


TRAFFIC_FIGURES = ["overhead_vs_requests", "wire_breakdown", "billed_vs_actual", "lcu_vs_new_connections"]


def test_traffic_vs_billed_measures_its_own_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures, out = tmp_path / "figures", tmp_path / "results"
    nb = execute("traffic_vs_billed.ipynb", {"LBSIM_FAST": "1", "LBSIM_FIGURES": str(figures), "LBSIM_OUT": str(out)}, monkeypatch)
    assert_pngs(figures, TRAFFIC_FIGURES)
    assert len(outputs(nb, "image/png")) == len(TRAFFIC_FIGURES)
    (text,) = outputs(nb, "text/markdown")
    assert text == (figures / "traffic_vs_billed_conclusions.md").read_text().rstrip("\n")
    # the conclusions are the data's: the same sentences from the results directory the notebook measured
    assert text == analysis.conclusions_markdown(analysis.load_results(out))
    assert re.search(r"one request per connection: actual is \d+\.\d\dx billed; with resumption: actual is "
                     r"\d+\.\d\dx billed; 25 requests per connection", text)
    assert "against §4's 278 / 2,459 B" in text


def test_traffic_vs_billed_reads_a_results_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """A directory as `lbsim run`/`lbsim load` leave it: a connection log, a report, Locust CSVs."""
    measured = analysis.collect_overhead(tmp_path_factory.mktemp("m"), requests=(1, 4), rates=(), rate_seconds=0.5,
                                         variants=[v for v in analysis.VARIANTS if v.key_type == "RSA" and not v.mutual])
    results = tmp_path / "run"
    results.mkdir()
    shutil.copy(measured.path / "connections.jsonl", results)
    comparison = [{"case": "1 request", "connections": 1, "requests": 1, "wire_bytes": 5000, "billed_bytes": 1700, "ratio": 2.94}]
    (results / "report.json").write_text(json.dumps({"listeners": [], "traffic": {"listeners": [], "comparison": comparison}}))
    (results / "locust").mkdir()
    (results / "locust" / "lbsim_stats.csv").write_text("Type,Name,Request Count,Failure Count\nGET,/hello,40,0\n")
    figures = tmp_path / "figures"
    nb = execute("traffic_vs_billed.ipynb", {"LBSIM_RESULTS": str(results), "LBSIM_FIGURES": str(figures)}, monkeypatch)
    assert_pngs(figures, TRAFFIC_FIGURES)
    (text,) = outputs(nb, "text/markdown")
    assert text == analysis.conclusions_markdown(analysis.load_results(results))
    assert "aliyun-slb (LB->client billed), TLS 1.2 RSA one-way: one request per connection: actual is" in text
    html = "\n".join(outputs(nb, "text/html"))
    assert "lbsim_stats" in streams(nb) and "/hello" in html and "2.94" in html  # Locust table and report comparison shown


def test_policy_matrix_measures_a_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = tmp_path / "figures"
    nb = execute("policy_matrix.ipynb", {"LBSIM_LISTENERS": "tencent-mutual", "LBSIM_FIGURES": str(figures)}, monkeypatch)
    assert_pngs(figures, ["policy_matrix_tencent-mutual", "compliance"])
    (text,) = outputs(nb, "text/markdown")
    assert text.startswith("- **tencent-mutual** (tencent_default, ECDSA):") and "they match" in text
    assert text == (figures / "policy_matrix_conclusions.md").read_text().rstrip("\n")


def test_policy_matrix_reads_a_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = analysis.build_report(listeners=["aliyun-mutual"], out_dir=tmp_path / "lab")
    assert report["listeners"][0]["tls_matrix"]["match"] is True
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    figures = tmp_path / "figures"
    nb = execute("policy_matrix.ipynb", {"LBSIM_REPORT": str(path), "LBSIM_FIGURES": str(figures)}, monkeypatch)
    assert_pngs(figures, ["policy_matrix_aliyun-mutual", "compliance"])
    (text,) = outputs(nb, "text/markdown")
    passed = [p for p, v in report["listeners"][0]["compliance"].items() if v["verdict"] == "pass"]
    assert text == (f"- **aliyun-mutual** (tls_cipher_policy_1_2_strict_with_1_3, RSA): 11 observed version/suite pairs, "
                    f"11 expected, they match; passes {', '.join(passed) if passed else 'no profile'}.")
