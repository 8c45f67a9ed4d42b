"""Bad input on the ``python -m sim`` and ``python -m hw`` command lines: one ``error:`` line, exit 2, nothing left.

Every case runs the command line in a subprocess whose current folder is a fresh folder outside the repository
(with a few files a user might have there), with a private, empty simulator cache. Each must exit with status
2 within 10 s, print exactly one stderr line ``error: ...`` naming the problem and no traceback, leave the
folder exactly as it was (a user's ``keep.txt`` survives) and never start a simulator build (the cache stays
empty).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Files every case's folder starts with.
FIXTURES = {
    "file.txt": "a user's file\n",
    "userdir/keep.txt": "a user's folder\n",
    "existing.json": "{}\n",
    "existing.png": "not really a png\n",
    "bad.toml": 'base = "fpga-micro"\nrows = -4\n',
    "micro.toml": 'base = "fpga-micro"\nname = "mine"\n',
    "corrupt.bin": "junk",
    "built/report.json": "{}\n",
    "built/mapping.json": "{}\n",
    "bad.v": "module cim_tile(input a, output b); assign b = c; endmodule\n",
}

RUN = ["sim", "run", "--model", "tiny-bert"]
CHECK = ["sim", "check"]
EXPORT = ["hw", "export", "--hw", "fpga-micro"]
SYNTH = ["hw", "synth", "--hw", "fpga-micro", "--target", "ice40-up5k"]

# (id, argv, needle in the error line, extra fixtures {path: text}, extra environment)
CASES = [
    # ---- python -m sim: options
    ("sim-no-command", ["sim"], "required", {}, {}),
    ("sim-unknown-command", ["sim", "frobnicate"], "invalid choice", {}, {}),
    ("run-no-model", ["sim", "run"], "--model", {}, {}),
    ("run-unknown-option", RUN + ["--bogus"], "unrecognized arguments: --bogus", {}, {}),
    ("run-unknown-strategy", RUN + ["--strategy", "best"], "--strategy", {}, {}),
    ("run-unknown-simulator", RUN + ["--simulator", "xsim"], "--simulator", {}, {}),
    ("run-negative-seed", RUN + ["--seed", "-1"], "--seed", {}, {}),
    ("run-huge-seed", RUN + ["--seed", str(2**64)], "--seed", {}, {}),
    ("run-text-seed", RUN + ["--seed", "abc"], "--seed", {}, {}),
    ("run-zero-nblocks", RUN + ["--nblocks", "0"], "--nblocks", {}, {}),
    ("run-nan-gap", RUN + ["--gap", "nan"], "--gap", {}, {}),
    ("run-inf-gap", RUN + ["--gap", "inf"], "--gap", {}, {}),
    ("run-backpressure-one", RUN + ["--backpressure", "1"], "--backpressure", {}, {}),
    ("run-negative-backpressure", RUN + ["--backpressure", "-0.5"], "--backpressure", {}, {}),
    ("run-abbreviated-option", ["sim", "run", "--mod", "tiny-bert"], "--mod", {}, {}),
    # ---- python -m sim run: configuration and model
    ("run-unknown-hw", RUN + ["--hw", "no-such-hw", "--out", "o"], "unknown hardware configuration", {}, {}),
    ("run-invalid-hw-file", RUN + ["--hw", "bad.toml", "--out", "o"], "rows", {}, {}),
    ("run-missing-hw-file", RUN + ["--hw", "missing.toml", "--out", "o"], "missing.toml", {}, {}),
    ("run-unknown-model", ["sim", "run", "--model", "no-such-model", "--out", "o"], "unknown model", {}, {}),
    ("run-missing-model-folder", ["sim", "run", "--model", "./nowhere/", "--out", "o"], "nowhere", {}, {}),
    ("run-shape-only-model", ["sim", "run", "--model", "bert-large", "--out", "o"], "shape-only", {}, {}),
    ("run-corrupt-stream", ["sim", "run", "--model", "corrupt.bin", "--out", "o"], "corrupt.bin", {}, {}),
    ("run-build-without-stream", ["sim", "run", "--model", "built", "--out", "o"], "without commands.bin", {},
     {}),
    ("run-bad-keep-builds", RUN + ["--out", "o"], "CIMSIM_KEEP_BUILDS", {}, {"CIMSIM_KEEP_BUILDS": "0"}),
    # ---- python -m sim run: output folder
    ("run-out-under-a-file", RUN + ["--out", "file.txt/sub"], "not a folder", {}, {}),
    ("run-out-is-a-file", RUN + ["--out", "file.txt"], "not a folder", {}, {}),
    ("run-out-in-proc", RUN + ["--out", "/proc/cim-kit-x"], "/proc", {}, {}),
    ("run-out-is-cwd", RUN + ["--out", "."], "current folder", {}, {}),
    ("run-out-is-user-folder", RUN + ["--out", "userdir"], "not written by the kit", {}, {}),
    ("run-default-out-is-user-folder", RUN, "build/cosim", {"build/cosim/keep.txt": "mine\n"}, {}),
    # ---- python -m sim check
    ("check-zero-length", CHECK + ["--length", "0"], "--length", {}, {}),
    ("check-huge-length", CHECK + ["--length", "100000000"], "--length", {}, {}),
    ("check-negative-random", CHECK + ["--random", "-1"], "--random", {}, {}),
    ("check-huge-random", CHECK + ["--random", "1000000"], "--random", {}, {}),
    ("check-too-many-commands", CHECK + ["--random", "1000", "--length", "10000"], "at most", {}, {}),
    ("check-nothing-to-run", CHECK + ["--random", "0", "--no-illegal"], "nothing to run", {}, {}),
    ("check-negative-seed", CHECK + ["--seed", "-5"], "--seed", {}, {}),
    ("check-nan-backpressure", CHECK + ["--backpressure", "NaN"], "--backpressure", {}, {}),
    ("check-unknown-hw", CHECK + ["--hw", "no-such-hw"], "unknown hardware configuration", {}, {}),
    ("check-out-is-user-folder", CHECK + ["--out", "userdir"], "not written by the kit", {}, {}),
    ("check-out-under-a-file", CHECK + ["--out", "file.txt/x"], "not a folder", {}, {}),
    # ---- python -m hw
    ("hw-no-command", ["hw"], "required", {}, {}),
    ("hw-unknown-command", ["hw", "frobnicate"], "invalid choice", {}, {}),
    ("export-out-no-value", [*EXPORT, "--out"], "--out: expected one argument", {}, {}),
    ("export-unknown-hw", ["hw", "export", "--hw", "no-such-hw", "--out", "o"], "unknown hardware configuration",
     {}, {}),
    ("export-invalid-hw-file", ["hw", "export", "--hw", "bad.toml", "--out", "o"], "rows", {}, {}),
    ("export-out-is-user-folder", EXPORT + ["--out", "userdir"], "not written by the kit", {}, {}),
    ("export-out-under-a-file", EXPORT + ["--out", "file.txt/rtl"], "not a folder", {}, {}),
    ("export-out-in-proc", EXPORT + ["--out", "/proc/cim-kit-x"], "/proc", {}, {}),
    ("export-out-is-cwd", EXPORT + ["--out", "."], "current folder", {}, {}),
    ("synth-unknown-target", ["hw", "synth", "--hw", "fpga-micro", "--target", "ice99"], "unknown target", {},
     {}),
    ("synth-no-target", ["hw", "synth", "--hw", "fpga-micro"], "--target", {}, {}),
    ("synth-unknown-hw", ["hw", "synth", "--hw", "no-such-hw", "--target", "ice40-up5k"],
     "unknown hardware configuration", {}, {}),
    ("synth-out-exists", SYNTH + ["--out", "existing.json"], "exists", {}, {}),
    ("synth-out-under-a-file", SYNTH + ["--out", "file.txt/r.json"], "not a folder", {}, {}),
    ("synth-work-dir-is-user-folder", SYNTH + ["--work-dir", "userdir"], "not written by the kit", {}, {}),
    ("synth-negative-seed", SYNTH + ["--seed", "-1"], "--seed", {}, {}),
    ("diagram-out-exists", ["hw", "diagram", "--out", "existing.png"], "exists", {}, {}),
    ("diagram-default-out-exists", ["hw", "diagram"], "hw_block.png", {"hw_block.png": "mine\n"}, {}),
    ("diagram-out-is-a-folder", ["hw", "diagram", "--out", "userdir"], "is a folder", {}, {}),
    ("diagram-out-in-proc", ["hw", "diagram", "--out", "/proc/cim-kit-x.png"], "/proc", {}, {}),
    ("lint-missing-file", ["hw", "lint", "nothing.v"], "no such Verilog file", {}, {}),
    ("lint-failure-names-its-log", ["hw", "lint", "bad.v"], "log: ", {}, {}),
]


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def test_cases_are_many_and_distinct():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("argv,needle,extra,env", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(tmp_path, argv, needle, extra, env):
    cwd = tmp_path / "cwd"
    for rel, text in {**FIXTURES, **extra}.items():
        (cwd / rel).parent.mkdir(parents=True, exist_ok=True)
        (cwd / rel).write_text(text)
    before = _snapshot(cwd)
    cache, logs = tmp_path / "cache", tmp_path / "logs"
    environ = {k: v for k, v in os.environ.items() if k != "CIMSIM_KEEP_BUILDS"}
    environ.update(PYTHONPATH=str(ROOT), CIMSIM_CACHE=str(cache), CIM_KIT_LOGS=str(logs), **env)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=environ, capture_output=True, text=True,
                       timeout=10)
    elapsed = time.monotonic() - t0
    lines = p.stderr.splitlines()
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in p.stderr and elapsed < 10
    assert _snapshot(cwd) == before                      # nothing written, nothing replaced or removed
    assert (cwd / "userdir" / "keep.txt").read_text() == FIXTURES["userdir/keep.txt"]
    assert not cache.exists()                            # the error came before any export or build
    if "log: " in needle:                                # a tool failure names a log that exists
        assert Path(lines[0].rsplit("log: ", 1)[1]).is_file()
    else:
        assert not logs.exists()
    assert not Path("/proc/cim-kit-x").exists()
