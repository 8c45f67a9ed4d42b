"""The README's quickstart: exactly two commands, the second being what .ci/run runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quickstart_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_quickstart_has_exactly_two_commands():
    cmds = _quickstart_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    assert "python -m mapper build --model" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = _quickstart_commands()[1].replace("pip install", "python -m pip install -q")
    assert test_cmd in ci
    assert "torch==2.13.0" in ci and "torch==2.13.0" in _quickstart_commands()[0]
