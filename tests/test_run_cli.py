"""``python -m mapper run``: a tiny end-to-end run, its JSON report, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mapper.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "mapper", "run", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def test_run_tiny_bert_writes_report(tmp_path):
    out = tmp_path / "run"
    rc = main(["run", "--model", "tiny-bert", "--text", "Crossbars add currents.", "--text", "A second one.",
               "--nblocks", "4", "--adc-bits", "lossless", "--strategy", "sparse", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    rep = json.loads((out / "run.json").read_text())
    assert rep["adc_lossless"] and rep["nblocks"] == 4 and rep["family"] == "bert"
    met = rep["metrics"]
    # Lossless ADCs: only the 8-bit weight/activation quantisation separates CIM from the float Monarch model.
    assert met["cim_vs_monarch_float"]["cosine_mean"] > 0.999
    assert met["cim_vs_dense"]["n"] == 2
    assert rep["execution"]["matmul_calls"] == 12          # 2 layers x 6 matmuls, one batched call each
    assert rep["cost"] is None or "latency_ns" in rep["cost"]
    assert not list(out.glob(".*tmp"))


def test_run_tiny_gpt2_decoder_metrics(tmp_path, capsys):
    rc = main(["run", "--model", "tiny-gpt2", "--text", "Decode me, please.", "--adc-bits", "8",
               "--gen-tokens", "4", "--noise", "prog=0.01,read=0.01", "--no-progress", "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    met = rep["metrics"]
    assert set(met["cim_vs_dense"]) == {"top1_agreement", "ppl_dense", "ppl", "ppl_change"}
    assert 0.0 <= met["cim_vs_dense"]["top1_agreement"] <= 1.0
    assert len(met["generated_cim"]) == len(met["generated_dense"]) == 4
    assert rep["noise"] == {"prog": 0.01, "read": 0.01, "seed": 0}


@pytest.mark.parametrize("args,needle", [
    (["--model", "no-such-model", "--text", "x"], "unknown model"),
    (["--model", "gpt2", "--text", "x"], "shape-only"),
    (["--model", "tiny-bert", "--text", "x", "--adc-bits", "40"], "--adc-bits"),
    (["--model", "tiny-bert", "--text", "x", "--noise", "prog=abc"], "noise"),
    (["--model", "tiny-bert", "--text", "x", "--hw", "no-such-hw"], "unknown hardware configuration"),
    (["--model", "tiny-bert", "--text", "x", "--nblocks", "100"], "nblocks"),
    (["--model", "tiny-bert", "--text", "   "], "--text"),
    (["--model", "./no/such/folder", "--text", "x"], "does not exist"),
])
def test_user_errors_exit_2_one_line(args, needle, capsys):
    rc = main(["run", *args, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert needle in err


def test_subprocess_error_and_success(tmp_path):
    bad = _cli("--model", "no-such-model", "--text", "x")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "unknown model" in bad.stderr
    ok = _cli("--model", "tiny-bert", "--text", "hello", "--adc-bits", "5", "--no-progress", "--out",
              str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert "cim_vs_dense" in ok.stdout and (tmp_path / "run.json").is_file()


def test_out_folder_is_a_kit_folder(tmp_path, capsys):
    """``--out DIR`` holds run.json and the kit's marker; a folder of the user's is refused without --force."""
    from cimisa.fsutil import MARKER
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["run", "--model", "tiny-bert", "--text", "hello", "--nblocks", "4", "--no-progress", "--out", str(out)]
    assert main(args) == 2
    assert "was not written by the kit" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert main([*args, "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "run.json"]
    assert main(args) == 0                        # the kit's own folder: replaced without --force
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
