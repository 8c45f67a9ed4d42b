"""Fast tier: the co-simulation parts that need no simulator (streams, checker, job files, reference cases)."""

from __future__ import annotations

import logging

import pytest

from cimisa.config import load_hw
from cimisa.isa import Command, ErrorCode, Isa, Opcode, RunState
import sw_model
from sim.checker import Checker
from sim.job import Case, Job
from sim.runner import make_case, make_cases
from sim.streams import illegal_streams, opcodes_of, random_stream, reachable_errors, with_opcode


@pytest.fixture(scope="module", params=["fpga-tiny", "fpga-micro"])
def cfg(request):
    return load_hw(request.param)


def test_random_streams_are_legal_deterministic_and_cover_every_opcode(cfg):
    for seed in range(8):
        case = random_stream(cfg, seed)
        assert case.words == random_stream(cfg, seed).words
        assert set(Opcode) - opcodes_of(case.commands) == set()
        res = sw_model.run(cfg, case.words, raise_on_error=False)
        assert res.status_tuple() == ("HALTED", "NONE", len(case.commands) - 1)
    assert random_stream(cfg, 0).words != random_stream(cfg, 1).words


def test_random_streams_hit_every_coverage_bin(cfg):
    from sim.streams import coverage_bins, covered
    hit = set().union(*(covered(cfg, random_stream(cfg, seed, n=60).commands) for seed in range(10)))
    assert coverage_bins(cfg) - hit == set()
    assert covered(cfg, [Command.read(0, 1)]) == {"op:READ", "read:count=1"}


def test_illegal_streams_provoke_their_error_in_sw_model(cfg):
    cases = illegal_streams(cfg)
    for c in cases:
        res = sw_model.run(cfg, c.words, raise_on_error=False)
        assert (res.state, res.error) == (RunState.ERROR, c.intent), c
    assert {c.intent for c in cases} == reachable_errors(cfg)


def test_fpga_tiny_reaches_every_error_code():
    assert reachable_errors(load_hw("fpga-tiny")) == set(ErrorCode) - {ErrorCode.NONE}


def test_bad_array_needs_a_field_wider_than_the_array_count():
    assert ErrorCode.BAD_ARRAY not in reachable_errors(load_hw("fpga-micro"))         # 2 arrays, 1-bit field
    assert ErrorCode.BAD_ARRAY in reachable_errors(load_hw("fpga-micro", n_arrays=3))


def test_with_opcode_replaces_only_the_opcode_field():
    cfg = load_hw("fpga-tiny")
    isa = Isa.of(cfg)
    hdr = isa.encode_header(Command.read(5, 3))
    bad = with_opcode(isa, hdr, 12)
    assert isa.decode_header(bad) is None and isa.opcode_of(bad) == 12
    assert with_opcode(isa, bad, Opcode.READ.value) == hdr
    with pytest.raises(ValueError):
        with_opcode(isa, hdr, 1 << isa.header_layout["opcode"].width)


def test_checker_counts_and_logs_every_mismatch(caplog):
    chk = Checker("t")
    with caplog.at_level(logging.ERROR, logger="sim.checker"):
        assert chk.compare_results([1, 2, 3], [1, 5, 3, 4]) == 2
        assert chk.compare_status(("HALTED", "NONE", 4), ("ERROR", "BAD_ROW", 4)) == 2
    assert chk.mismatches == 4 and not chk.passed
    assert "result[1]: Expected 2, Actual 5" in caplog.text
    assert "result[3]: Expected None, Actual 4" in caplog.text
    assert "status.error: Expected 'NONE', Actual 'BAD_ROW'" in caplog.text
    ok = Checker("ok")
    ok.compare_results([1, 2], [1, 2])
    ok.compare_status(("HALTED", "NONE", 1), ("HALTED", "NONE", 1))
    assert ok.passed and ok.checked == 5


def test_job_file_round_trip(tmp_path):
    cfg = load_hw("fpga-tiny")
    case = make_case(cfg, "r", random_stream(cfg, 3).words, gap=0.25, backpressure=0.5, seed=7)
    Job(cfg, (case,)).write(tmp_path / "job.json")
    job = Job.read(tmp_path / "job.json")
    assert job.cfg == cfg and job.cases == (case,)
    assert isinstance(job.cases[0], Case) and job.cases[0].gap == 0.25


def test_reference_cases_chain_memory_across_resets():
    """A later case sees the weights and buffers an earlier case left, as the RTL (RAMs survive reset) does."""
    cfg = load_hw("fpga-micro")
    isa = Isa.of(cfg)
    first = isa.encode([Command.load_in(0, [3]), Command.write_w(0, 0, 0, [2]), Command.halt()])
    second = isa.encode([Command.mvm(array=0, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, out_addr=0,
                                     adc_bits=cfg.adc_bits), Command.read(0, 1), Command.halt()])
    a, b = make_cases(cfg, [("first", first), ("second", second)])
    assert a.expected_results == () and b.expected_results == (6,)
    assert make_case(cfg, "alone", second).expected_results == (0,)
    assert b.expected_status == ("HALTED", "NONE", 2) and b.seed == 1


def test_cli_user_errors_print_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    for args in (["--hw", "no-such-hw"], ["--model", "no-such-model"], ["--gap", "1.5"]):
        argv = {"--model": "tiny-gpt2", "--hw": "fpga-tiny", "--out": str(tmp_path / "out")}
        argv.update(dict(zip(args[::2], args[1::2])))
        p = subprocess.run([sys.executable, "-m", "sim", "run", *[x for kv in argv.items() for x in kv]], cwd=root,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, p.stderr)
        assert not (tmp_path / "out").exists()


def test_cli_exit_status_is_1_on_any_mismatch(monkeypatch, capsys):
    import sim.flow
    from sim.__main__ import main

    def fake(model, cfg, **kw):
        return {"model": model, "hw": cfg.name, "hw_tag": cfg.tag, "simulator": "verilator",
                "build": {"reused": True, "seconds": 0.0}, "commands": 3, "cycles": 10, "cycles_per_s": 1.0,
                "mismatches": 1, "ok": False,
                "streams": [{"name": "m/auto", "commands": 3, "words": 3, "cycles": 10, "cycles_per_s": 1.0,
                             "results": 0, "status": ["HALTED", "NONE", 2], "mismatches": 1}]}

    monkeypatch.setattr(sim.flow, "cosim_model", fake)
    assert main(["run", "--model", "m", "--out", "unused"]) == 1
    assert "1 mismatches" in capsys.readouterr().out


def test_unknown_or_missing_simulator_is_a_one_line_user_error(monkeypatch):
    from sim import runner
    assert "unknown simulator" in runner.unavailable_reason("nope")
    with pytest.raises(runner.SimulatorError, match="cannot use simulator 'nope'"):
        runner.build(load_hw("fpga-micro"), "nope")
    monkeypatch.setattr(runner.shutil, "which", lambda name: None)
    assert "iverilog" in runner.unavailable_reason("icarus")
    assert runner.available_simulators() == []


def test_port_check_reads_the_export_sidecar(tmp_path):
    import json
    from sim import runner
    cfg = load_hw("fpga-tiny")
    ports = [{"name": n, "dir": d, "width": w} for n, (d, w) in runner.expected_ports(cfg).items()]
    v = tmp_path / "cim_tile_x.v"
    v.write_text("")
    runner.check_ports(cfg, v)                                   # no sidecar: nothing to check
    (tmp_path / "cim_tile_x.json").write_text(json.dumps({"ports": ports}))
    runner.check_ports(cfg, v)
    ports[4]["width"] -= 1                                       # cmd__payload one bit short
    (tmp_path / "cim_tile_x.json").write_text(json.dumps({"ports": ports[:-1]}))
    with pytest.raises(runner.SimulatorError, match=r"cmd__payload: expected input \[97\].*status: missing"):
        runner.check_ports(cfg, v)
