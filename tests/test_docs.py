"""The repository stands on its own: no file names a path outside it, every link in the docs resolves, the
seed statements and vendor facts are in the docs, the default output directories are git-ignored, and the
README says what `make setup` installs."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from simulator.cli import build_parser
from simulator.tools import analysis

ROOT = Path(__file__).resolve().parent.parent
# Paths a clone does not have: the project's old sibling folder, this lab machine's checkout, anyone's home.
OUTSIDE = re.compile(r"\.\./shared\b|\bshared/(?:seeds|vendor-facts|design-notes)|/work/|/home/[a-z]|/root/")
TEXT = (".md", ".py", ".ipynb", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".txt", ".c", ".template", ".in")


def tracked_files() -> list[Path]:
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           capture_output=True, text=True, check=True).stdout.split("\0")
    return [ROOT / n for n in names if n and (ROOT / n).is_file()]


def test_no_file_names_a_path_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    offenders = []
    for path in tracked_files():
        if path == this or not (path.suffix in TEXT or path.name in ("Makefile", ".gitignore")):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def test_the_outside_path_check_catches_what_it_should() -> None:
    for bad in ("see `../shared/seeds/`", "shared/vendor-facts.md §4", "/work/main/README.md", "/home/alice/x",
                "/root/.cache"):
        assert OUTSIDE.search(bad), bad
    for fine in ("docs/vendor-facts.md §4", "a shared store", "/tmp/run", "lbsim-out/pki/ca.pem"):
        assert not OUTSIDE.search(fine), fine


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.name)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (doc.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"


def test_the_seed_statements_are_quoted_beside_their_scenarios() -> None:
    text = (ROOT / "docs" / "scenarios.md").read_text()
    section = text[text.index("## The built-in suite: every seed statement"):text.index("Beside the seeds:")]
    prose = " ".join(section.split())
    assert 'Alibaba Cloud, Server Load Balancer user guide, "HTTPS listeners"' in prose
    assert "Tencent Cloud, CLB FAQ" in prose
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`test_" in line]
    assert len(rows) == 13 + 14  # the Alibaba notes and certificate table; Tencent's 14 questions
    assert all('"' in row.split("|")[-3] for row in rows), "every statement is quoted"
    coverage = yaml.safe_load((ROOT / "scenarios" / "seed_coverage.yaml").read_text())
    files = {scenario.split("::")[0] for entry in coverage if "not a seed statement" not in entry["statement"]
             for scenario in entry["scenarios"]}
    missing = sorted(f for f in files if f not in section)
    assert not missing, f"scenarios in seed_coverage.yaml but not in the docs' table: {missing}"


def test_vendor_facts_are_in_the_repository_with_their_sources() -> None:
    text = (ROOT / "docs" / "vendor-facts.md").read_text()
    for section in ("## 1. Alibaba Cloud SLB", "## 1b. Alibaba Cloud SLB API", "## 2. Tencent Cloud CLB",
                    "## 3. AWS Application Load Balancer", "## 4. Measured reference figures"):
        assert section in text  # the code cites these as "vendor-facts §N"
    for fact in ("tls_cipher_policy_1_2_strict_with_1_3", "IdleTimeout", "X-Forwarded-Clientcert-subjectdn",
                 "BEGIN RSA PRIVATE KEY", "The specified Server Certificate format is invalid", "SSLVerifyClient",
                 "TC3-HMAC-SHA256", "ACS3-HMAC-SHA256", "25 new connections/s", "UNCONFIRMED"):
        assert fact in text, fact
    for source in ("CreateLoadBalancerHTTPSListener", "UploadServerCertificate", "UploadCertificate",
                   "CreateListener", "TLS security policies"):
        assert source in text, source


def cli_defaults() -> dict[str, str]:
    """The default output directory of every subcommand that writes one (`--out`/`-o` with a default)."""
    out = {}
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if "--out" in action.option_strings and isinstance(action.default, str) and action.default:
                out[name] = action.default
    return out


def test_default_output_directories_are_git_ignored() -> None:
    defaults = cli_defaults()
    assert {"up", "run", "load"} <= set(defaults), defaults
    paths = [f"{d}/x" for d in defaults.values()] + [f"{analysis.NOTEBOOK_OUT}/x.png",
                                                    f"notebooks/{analysis.NOTEBOOK_OUT}/x.png"]  # a kernel in notebooks/
    done = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *paths], capture_output=True, text=True)
    assert sorted(done.stdout.split()) == sorted(paths), done.stdout + done.stderr


def test_the_readme_says_what_make_setup_installs() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    makefile = (ROOT / "Makefile").read_text()
    (install,) = re.findall(r"pip install -q (-e '\.\[[^\]]+\]')", makefile)
    assert f"pip install {install}" in readme  # the same extras, word for word
    from simulator.tools.bench import APT_PACKAGES

    assert "ensure_tools(install=True)" in makefile
    packages = re.search(r"`apt-get install -y` of the missing ones among the packages `([^`]+)`", readme)
    assert packages and sorted(packages.group(1).split()) == sorted(APT_PACKAGES.values())
    assert "native.KIND" in makefile and "C callback" in readme
    assert "only the .venv" not in readme
    (pytest_args,) = re.findall(r"^\t\$\(BIN\)/python -m pytest( [^\n]*)?$", makefile, re.M)
    assert f"`pytest{pytest_args}`" in readme  # how `make test` runs the suite, word for word


def test_the_readme_figures_come_from_a_documented_command() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make figures" in readme and re.search(r"^figures:", makefile, re.M)
    assert makefile.count("LBSIM_NOTEBOOK_OUT=docs/figures") == 2  # both notebooks write there, nowhere else
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    figures = [i for i in images if not i.startswith("docs/console/")]  # the console's: LBSIM_SCREENSHOTS (docs/console.md)
    assert figures and all(i.startswith("docs/figures/") for i in figures), images
