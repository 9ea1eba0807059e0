"""The layering of simulator/ stays true: `lint-imports` checks the contracts in pyproject.toml.

Layers (top to bottom), the core never importing the harness, load or tools, and no import circles between
sibling modules: see docs/architecture.md. A failure names the offending import and its line.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIMULATOR = ROOT / "simulator"
VENDOR_NAMES = ("aliyun", "tencent")


def test_import_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "lint-imports is missing: pip install -e '.[dev]'"
    proc = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout  # every contract ran (a renamed one would not count)


def _compares_a_vendor_name(node: ast.AST) -> bool:
    """`x == "aliyun-slb"`, `"tencent" in x`, `x != "aliyun"`...: a branch on a vendor's name."""
    if not isinstance(node, ast.Compare):
        return False
    return any(isinstance(part, ast.Constant) and isinstance(part.value, str)
               and any(v in part.value.lower() for v in VENDOR_NAMES)
               for part in (node.left, *node.comparators))


def test_no_module_outside_vendors_branches_on_a_vendor_name() -> None:
    """Modules ask the profile (simulator.vendors); naming a profile as data (the default lab) is fine."""
    offenders = []
    for path in sorted(SIMULATOR.rglob("*.py")):
        if "vendors" in path.relative_to(SIMULATOR).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if _compares_a_vendor_name(node):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "\n".join(offenders)
