"""Fast tier: the co-simulation parts that need no simulator (streams, checker, job files, reference cases)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import sw_model
from cimisa.check import check
from cimisa.config import load_hw
from cimisa.isa import Command, ErrorCode, Isa, Opcode, RunState
from sim.checker import check_case
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
    # HAZARD needs a concurrent chip (cimisa.concurrency); the tiled preset reaches every code
    assert reachable_errors(load_hw("fpga-tiny")) == set(ErrorCode) - {ErrorCode.NONE, ErrorCode.HAZARD}
    assert reachable_errors(load_hw("fpga-tiny-4t")) == set(ErrorCode) - {ErrorCode.NONE}


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
    case = Case(name="t", words=(1, 2), expected_results=(1, 2, 3), expected_status=("HALTED", "NONE", 4))
    with caplog.at_level(logging.ERROR, logger="sim.checker"):
        rep = check_case(case, [1, 5, 3, 4], ("ERROR", "BAD_ROW", 4), cycles=9, sim_cycles=11, wall_s=0.1,
                         timed_out=False)
    assert rep.mismatches == 4 and not rep.ok and (rep.results, rep.expected_results) == (4, 3)
    assert [d["what"] for d in rep.details] == ["result[1]", "result[3]", "status.state", "status.error"]
    assert "result[1]: Expected 2, Actual 5" in caplog.text
    assert "result[3]: Expected None, Actual 4" in caplog.text
    assert "status.error: Expected 'NONE', Actual 'BAD_ROW'" in caplog.text
    assert "3 result words expected, 4 received" in caplog.text
    ok = check([1, 2], ("HALTED", "NONE", 1), [1, 2], ("HALTED", "NONE", 1))
    assert ok.ok and ok.status_equal and ok.checked == 5
    x = check([7], ("HALTED", "NONE", 0), ["X:0101"], ("HALTED", "NONE", 0))      # an unresolved word is text
    assert [str(m) for m in x.mismatches] == ["result[0]: Expected 7, Actual 'X:0101'"]


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
    assert main(["run", "--model", "m", "--hw", "fpga-tiny", "--out", "unused"]) == 1
    assert "1 mismatches" in capsys.readouterr().out


def test_unknown_or_missing_simulator_is_a_one_line_user_error(monkeypatch):
    from sim import runner, tools
    assert "unknown simulator" in runner.unavailable_reason("nope")
    with pytest.raises(runner.SimulatorError, match="cannot use simulator 'nope'"):
        runner.build(load_hw("fpga-micro"), "nope")
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
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


# ---- one stream: mapper build's commands.bin is what sim run co-simulates ------------------------------------
@pytest.mark.parametrize("model,strategy,nblocks", [("tiny-bert", "auto", None), ("tiny-gpt2", "sparse", 4),
                                                    ("tiny-bert", "linear", 4)])
def test_sim_model_stream_is_mapper_builds_stream(model, strategy, nblocks):
    """Same model, configuration, strategy, nblocks and seed: the same words, byte for byte."""
    from mapper.pipeline import STREAM_SEED, BuildOptions, build
    from sim.model_stream import model_stream
    hw = load_hw("fpga-tiny")
    res = build(model, hw, BuildOptions(strategy=strategy, nblocks=nblocks, with_pareto=False, check=False))
    built = Isa.of(hw).encode(res.commands)
    st = model_stream(model, hw, strategy, nblocks=nblocks, seed=STREAM_SEED)
    assert st.commands == len(res.commands)
    assert b"".join(w.to_bytes(16, "little") for w in st.words) == b"".join(w.to_bytes(16, "little")
                                                                             for w in built)


def test_stream_seed_changes_only_the_input_vectors():
    from sim.model_stream import model_commands
    hw = load_hw("fpga-tiny")
    a, b = model_commands("tiny-gpt2", hw, "auto"), model_commands("tiny-gpt2", hw, "auto", seed=7)
    assert len(a) == len(b)
    diff = {x.op for x, y in zip(a, b) if x != y}
    assert diff == {Opcode.LOAD_IN}
    lo, hi = Isa.of(hw).elem_range("input")
    vals = [v for c in b if c.op is Opcode.LOAD_IN for v in c.data]
    assert vals and lo <= min(vals) and max(vals) <= hi and min(vals) < 0 < max(vals)


def test_stream_inputs_share_a_vector_per_input_group():
    from compiler.program import compile_model
    from compiler.stream_inputs import stream_inputs
    from mapper.models import load_model_spec
    from mapper.pipeline import load_factors
    spec = load_model_spec("tiny-bert")
    cm = compile_model(spec, load_factors("tiny-bert", spec, 8), load_hw("fpga-tiny"), strategy="auto",
                       adc_mode="paper", colocate=True)
    x = stream_inputs(cm, 3)
    assert set(x) == set(cm.programs)
    for g in cm.placement.matmuls:
        for h in cm.placement.matmuls:
            same = (g.input_group, g.stage, g.layer) == (h.input_group, h.stage, h.layer)
            assert (x[g.name] is x[h.name]) == same
    for name, p in cm.programs.items():
        for d in p.depends_on:
            assert x[name] is x[d]
    assert all((stream_inputs(cm, 3)[n] == v).all() for n, v in x.items())
    with pytest.raises(ValueError):
        stream_inputs(cm, -1)


# ---- cache: absolute paths, keep limit, pruning that spares builds in use ------------------------------------
def test_cache_dir_is_absolute_and_never_follows_the_current_folder(monkeypatch, tmp_path):
    from sim import runner
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIMSIM_CACHE", "rel/cache")
    assert runner.cache_dir() == tmp_path / "rel" / "cache"
    monkeypatch.delenv("CIMSIM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")                 # ignored, as the XDG rules say
    assert runner.cache_dir().is_absolute() and not str(runner.cache_dir()).startswith(str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runner.cache_dir() == tmp_path / "xdg" / "cim-kit" / "sim"


def test_simulator_python_path_is_absolute(monkeypatch, tmp_path):
    from sim import tools
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tools.sys, "path", ["", "rel", *tools.sys.path])
    with tools.tool_env():
        assert all(Path(p).is_absolute() for p in tools.sys.path)
        assert str(tmp_path) in tools.sys.path and str(tmp_path / "rel") in tools.sys.path
    assert tools.sys.path[:2] == ["", "rel"]


@pytest.mark.parametrize("value,expected", [(None, 3), ("", 3), ("1", 1), (" 7 ", 7), ("0", None), ("-2", None),
                                            ("many", None), ("1001", None)])
def test_keep_builds_setting(monkeypatch, value, expected):
    from sim import runner
    if value is None:
        monkeypatch.delenv("CIMSIM_KEEP_BUILDS", raising=False)
    else:
        monkeypatch.setenv("CIMSIM_KEEP_BUILDS", value)
    if expected is None:
        with pytest.raises(runner.SimulatorError, match="CIMSIM_KEEP_BUILDS"):
            runner.keep_builds()
    else:
        assert runner.keep_builds() == expected


def _fake_build(folder, name, group, used):
    import json
    import os
    d = folder / name
    d.mkdir(parents=True)
    (d / "Vtop").write_text("binary")
    (d / ".built").write_text(json.dumps({"seconds": 1.0, "group": group}))
    os.utime(d / ".built", (used, used))
    (folder / f"{name}.build.log").write_text("log")
    return d


def test_pruning_removes_only_unused_builds_of_the_group(tmp_path):
    """Keep 2: the current build and the most recent other one stay; older ones go unless another process holds
    them (a shared lock, as :func:`sim.runner.run` takes); other groups, and builds being compiled, stay."""
    import fcntl
    import json

    from sim import cache
    folder = tmp_path / "build"
    g, other = json.dumps(["verilator", "x", False]), json.dumps(["verilator", "y", False])
    cur = _fake_build(folder, "cur", g, 500)
    recent = _fake_build(folder, "recent", g, 400)
    held = _fake_build(folder, "held", g, 300)
    old = _fake_build(folder, "old", g, 200)
    foreign = _fake_build(folder, "foreign", other, 100)
    compiling = folder / "compiling"
    compiling.mkdir()                                                 # no marker yet, its builder holds the lock
    crashed = folder / "crashed"
    crashed.mkdir()                                                   # no marker, nobody holds it
    fd_held = cache.lock(folder / ".held.lock", fcntl.LOCK_SH)
    fd_compiling = cache.lock(folder / ".compiling.lock", fcntl.LOCK_EX)
    try:
        cache.prune(folder, g, keep=2, current=cur)
    finally:
        cache.unlock(fd_held)
        cache.unlock(fd_compiling)
    assert cur.is_dir() and recent.is_dir() and held.is_dir() and foreign.is_dir() and compiling.is_dir()
    assert not old.exists() and not crashed.exists()
    assert not (folder / "old.build.log").exists() and not (folder / ".old.lock").exists()
    assert not list(folder.glob(".trash-*"))
    cache.prune(folder, g, keep=2, current=cur)                    # released: now it goes
    assert not held.exists() and recent.is_dir()


def test_a_lock_file_removed_while_waited_for_is_taken_again(tmp_path):
    """A process waiting for a lock that the pruner removes ends up holding the new lock file, never the old."""
    import fcntl
    import os
    import threading

    from sim import cache
    lock = tmp_path / ".b.lock"
    fd = cache.lock(lock, fcntl.LOCK_EX)
    got = []
    t = threading.Thread(target=lambda: got.append(cache.lock(lock, fcntl.LOCK_SH)))
    t.start()
    lock.unlink()                                                     # as _remove_build does, while held
    cache.unlock(fd)
    t.join(10)
    assert got and os.fstat(got[0]).st_ino == os.stat(lock).st_ino
    assert cache.lock(lock, fcntl.LOCK_EX, wait=False) is None      # it really holds the current file
    cache.unlock(got[0])
