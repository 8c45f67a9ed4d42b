"""The options every command shares (docs/conventions.md, section Options): ``--threads`` on every command that
computes, ``--no-progress`` and ``-v`` everywhere, a description and stated defaults in every ``--help``; progress
lines on a redirected stderr; the thread setting applied to torch and the environment."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cimisa import progress, threads

ROOT = Path(__file__).resolve().parents[1]

#: (module, sub-command, computes)
COMMANDS = [
    ("mapper.cli", "build", True), ("mapper.cli", "d2s", True), ("mapper.cli", "reproduce", True),
    ("mapper.cli", "run", True), ("mapper.cli", "sweep", True), ("sim.__main__", "run", True),
    ("sim.__main__", "check", True),
    ("sw_model.__main__", "run", True), ("hw.__main__", "export", False), ("hw.__main__", "lint", False),
    ("hw.__main__", "synth", False), ("hw.__main__", "diagram", False), ("cimisa.__main__", "check-config", False),
]


def _sub(module: str, name: str) -> argparse.ArgumentParser:
    parser = importlib.import_module(module).make_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


@pytest.mark.parametrize("module,name,computes", COMMANDS, ids=[f"{m.split('.')[0]}-{n}" for m, n, _ in COMMANDS])
def test_common_options_and_help(module, name, computes):
    p = _sub(module, name)
    opts = {s for a in p._actions for s in a.option_strings}
    assert {"--no-progress", "-v", "--verbose"} <= opts
    assert ("--threads" in opts) == computes
    assert p.description and len(p.description) > 20
    text = p.format_help()
    for a in p._actions:
        if a.option_strings and a.default not in (None, False, argparse.SUPPRESS) and a.dest != "help":
            assert "default" in (a.help or "") or "(default:" in text, (name, a.dest)
    assert "--out" not in {s for a in p._actions if a.required for s in a.option_strings}, "--out is never required"


def test_nblocks_default_is_the_same_everywhere():
    from mapper.cli_args import NBLOCKS_HELP
    for name in ("build", "d2s", "reproduce", "run"):
        a = next(a for a in _sub("mapper.cli", name)._actions if "--nblocks" in a.option_strings)
        assert a.default is None and not a.required and a.help == NBLOCKS_HELP


def test_progress_lines_when_not_a_tty(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    progress.configure()
    with progress.stage("first"):
        pass
    for _ in progress.bar(range(3), desc="second", unit="step"):
        pass
    with pytest.raises(ValueError), progress.stage("fails"):
        raise ValueError
    with pytest.raises(ValueError), progress.hold():
        with progress.stage("held"):
            pass
        raise ValueError
    lines = err.getvalue().splitlines()
    assert [ln.split(":")[1].strip() for ln in lines] == ["first", "second (3 steps)"]
    assert all(ln.startswith("stage: ") and ln.endswith(" s") for ln in lines)
    err.truncate(0)
    err.seek(0)
    progress.configure(quiet=True)
    with progress.stage("quiet"):
        pass
    progress.configure()
    assert err.getvalue() == ""


def test_redirected_command_prints_stage_lines(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "mapper", "build", "--model", "tiny-bert", "--hw", "fpga-tiny",
                        "--no-plots", "--no-weights", "--out", str(tmp_path / "b")], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines and all(ln.startswith("stage: build: ") for ln in lines), r.stderr
    q = subprocess.run([sys.executable, "-m", "mapper", "build", "--model", "tiny-bert", "--hw", "fpga-tiny",
                        "--no-plots", "--no-weights", "--no-progress", "--out", str(tmp_path / "b")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert q.returncode == 0 and q.stderr == "", q.stderr


def test_thread_setting_is_applied():
    code = ("import os, sys; from sim.__main__ import main; from cimisa import threads, progress;"
            "import torch; progress.setup(type('A', (), {'threads': 3})());"
            "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], threads.configured())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "CIM_KIT_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["3", "3", "3"]
    # set before torch is imported: the import hook applies it
    code = ("from cimisa.threads import set_threads; set_threads(2); import torch; print(torch.get_num_threads())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["2"], r.stderr


def test_early_reads_threads_from_argv(monkeypatch):
    for v in threads.ENV_VARS + ("CIM_KIT_THREADS",):
        monkeypatch.delenv(v, raising=False)
    threads.early(["run", "--threads", "3"])
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    threads.early(["run", "--threads", "3"])
    assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["OPENBLAS_NUM_THREADS"] == "3"
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    threads.early(["run", "--threads=x"])          # left to the parser to report
    assert os.environ["OMP_NUM_THREADS"] == str(threads.default_threads())


def test_default_threads(monkeypatch):
    monkeypatch.delenv("CIM_KIT_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    assert threads.default_threads() == 2
    monkeypatch.setattr(threads, "available_cpus", lambda: 64)
    assert threads.default_threads() == 4
    monkeypatch.setenv("CIM_KIT_THREADS", "6")
    assert threads.default_threads() == 6


def test_run_report_formatting():
    from mapper.cli_run import _fmt
    assert _fmt(12) == "12" and _fmt(6240) == "6,240" and _fmt(15118.0) == "15,118"
    assert _fmt(0.99934) == "0.9993" and _fmt(True) == "True"
