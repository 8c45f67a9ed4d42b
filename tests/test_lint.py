"""The tree is ruff-clean under the project's own configuration ([tool.ruff] in pyproject.toml)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: `pip install -e '.[test]'` installs it")
    return [exe]


def test_tree_is_ruff_clean():
    r = subprocess.run([*_ruff(), "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_ruff_check_can_fail(tmp_path):
    """The same command flags an unused import, so a clean run above means something."""
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("import os\n")
    r = subprocess.run([*_ruff(), "check", "--output-format", "concise", "."], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "F401" in r.stdout, r.stdout + r.stderr
