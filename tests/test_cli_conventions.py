"""Every command line follows one convention for bad options (``docs/conventions.md``).

A usage error anywhere (unknown option or sub-command, missing required option, a value of the wrong type or
outside its choices) prints exactly one line ``error: ...`` naming the problem on stderr, nothing on stdout,
exits with status 2, writes no file and shows no traceback. The cases run in-process through each front end's
``main(argv)`` (fast, one import of torch for the suite); a few run as real subprocesses from a folder outside
the repository, as a user types them.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

# (front end module, argv, substring the one error line must contain)
CASES = [
    # mapper
    ("mapper.cli", [], "required"),
    ("mapper.cli", ["nope"], "invalid choice"),
    ("mapper.cli", ["--bogus"], "required"),        # argparse names the missing command first
    ("mapper.cli", ["build"], "--model"),
    ("mapper.cli", ["build", "--model", "tiny-bert", "--bogus"], "--bogus"),
    ("mapper.cli", ["build", "--model", "tiny-bert", "--nblocks", "x"], "--nblocks"),
    ("mapper.cli", ["build", "--model", "tiny-bert", "--nblocks"], "--nblocks"),
    ("mapper.cli", ["build", "--model", "tiny-bert", "--arrays", "1.5"], "--arrays"),
    ("mapper.cli", ["build", "--model", "tiny-bert", "--adc-mode", "nope"], "--adc-mode"),
    ("mapper.cli", ["build", "--model", "tiny-bert", "--cost", "nope"], "--cost"),
    ("mapper.cli", ["d2s"], "required"),
    ("mapper.cli", ["d2s", "--model", "tiny-bert", "--nblocks", "two", "--out", "o"], "--nblocks"),
    ("mapper.cli", ["reproduce", "--bogus"], "--bogus"),
    ("mapper.cli", ["run"], "--model"),
    ("mapper.cli", ["run", "--model", "tiny-bert", "--strategy", "nope"], "--strategy"),
    ("mapper.cli", ["run", "--model", "tiny-bert", "--nblocks", "4.5"], "--nblocks"),
    ("mapper.cli", ["build", "--model", "tiny-bert", "--cell-bits", "x"], "--cell-bits"),
    ("mapper.cli", ["build", "--model", "tiny-bert", "--input-encoding", "gray"], "--input-encoding"),
    ("mapper.cli", ["build", "--model", "tiny-bert", "--max-error", "inf"], "--max-error"),
    ("mapper.cli", ["run", "--model", "tiny-bert", "--text", "a", "--adc-rule", "accuracy"], "--max-error"),
    ("mapper.cli", ["run", "--model", "tiny-bert", "--text", "a", "--dac-bits", "9"], "dac_bits"),
    # sim
    ("sim.__main__", [], "required"),
    ("sim.__main__", ["nope"], "invalid choice"),
    ("sim.__main__", ["run"], "--model"),
    ("sim.__main__", ["run", "--model", "tiny-bert", "--simulator", "modelsim"], "--simulator"),
    ("sim.__main__", ["run", "--model", "tiny-bert", "--strategy", "nope"], "--strategy"),
    ("sim.__main__", ["run", "--model", "tiny-bert", "--seed", "abc"], "--seed"),
    ("sim.__main__", ["run", "--model", "tiny-bert", "--gap", "often"], "--gap"),
    ("sim.__main__", ["check", "--random", "many"], "--random"),
    ("sim.__main__", ["check", "--length", "1e9"], "--length"),
    ("sim.__main__", ["check", "--bogus"], "--bogus"),
    # hw
    ("hw.__main__", [], "required"),
    ("hw.__main__", ["nope"], "invalid choice"),
    ("hw.__main__", ["export"], "required"),
    ("hw.__main__", ["export", "--hw", "fpga-micro", "--out"], "--out"),
    ("hw.__main__", ["lint"], "path"),
    ("hw.__main__", ["synth", "--hw", "fpga-micro"], "--target"),
    ("hw.__main__", ["synth", "--hw", "fpga-micro", "--target", "ice40-up5k", "--seed", "x"], "--seed"),
    ("hw.__main__", ["diagram", "--bogus"], "--bogus"),
    # sw_model
    ("sw_model.__main__", [], "required"),
    ("sw_model.__main__", ["nope"], "invalid choice"),
    ("sw_model.__main__", ["run"], "stream"),
    ("sw_model.__main__", ["run", "x.bin", "--impl", "slow"], "--impl"),
    ("sw_model.__main__", ["run", "x.bin", "--bogus"], "--bogus"),
    # the ISA document generator
    ("cimisa.docgen", ["--bogus"], "--bogus"),
]


def _ids(case):
    mod, argv, _ = case
    return f"{mod.split('.')[0]}:{' '.join(argv) or '(none)'}"


def _listing(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, ds, fs in os.walk(path) for f in ds + fs)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_option_error_is_one_line(case, tmp_path, monkeypatch, capsys):
    mod, argv, needle = case
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(mod).main
    status = main(list(argv))
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert status == 2, (status, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err and out == ""
    assert _listing(tmp_path) == []


AS_TYPED = {"mapper": ["build", "--model", "tiny-bert", "--bogus-option"], "sim": ["check", "--bogus-option"],
            "hw": ["diagram", "--bogus-option"], "sw_model": ["run", "x.bin", "--bogus-option"]}


@pytest.mark.parametrize("module", sorted(AS_TYPED))
def test_option_error_as_typed(module, tmp_path):
    """The real entry point, from a folder outside the repository."""
    r = subprocess.run([sys.executable, "-m", module, *AS_TYPED[module]], cwd=tmp_path, capture_output=True,
                       text=True, timeout=30)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "--bogus-option" in lines[0] and "Traceback" not in r.stderr
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("module", ["mapper", "sim", "hw", "sw_model"])
def test_help_still_works(module, tmp_path):
    r = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "usage:" in r.stdout and r.stderr == ""
