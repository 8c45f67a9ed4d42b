"""Fast co-simulation path (``pytest -m cosim``): the exported tile in a plain Verilator C++ harness (sim.fast).

The same references (sim.cases.make_cases) and the same checker (cimisa.check, via sim.checker) as the cocotb
tier; the harness must match sw_model bit for bit on the mapper's streams, random legal streams and illegal
streams, report a wrong expectation as a mismatch, and count the same cycles as the cocotb testbench.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sw_model
from cimisa.config import load_hw
from cimisa.isa import ErrorCode, Isa, Opcode
from sim import fast, runner
from sim.fast import jobfile
from sim.model_stream import STRATEGIES, TINY_MODELS, model_commands
from sim.runner import make_cases
from sim.streams import illegal_streams, random_stream, reachable_errors

pytestmark = pytest.mark.cosim

ROOT = Path(__file__).resolve().parent.parent
#: (gap, backpressure) cycled over the random streams, as in test_cosim.
HANDSHAKES = [(0.0, 0.0), (0.3, 0.3), (0.6, 0.8), (0.0, 0.5), (0.5, 0.0)]


def _require() -> None:
    reason = fast.unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def tiny():
    return load_hw("fpga-tiny")


@pytest.fixture(scope="module")
def fast_build(tiny):
    _require()
    return fast.build(tiny)


@pytest.fixture(scope="module")
def model_streams(tiny):
    """Every tiny model and strategy, encoded with Isa.encode from the mapper's commands."""
    isa = Isa.of(tiny)
    return {f"{m}/{s}": isa.encode(model_commands(m, tiny, s)) for m in TINY_MODELS for s in STRATEGIES}


# ---- bit-exact with sw_model ------------------------------------------------------------------------------------
def test_mapper_streams_bit_exact(tiny, fast_build, model_streams, tmp_path):
    cases = make_cases(tiny, list(model_streams.items()))
    rep = fast.run(tiny, cases, work_dir=tmp_path)
    assert rep.simulator == fast.SIMULATOR and [c.name for c in rep.cases] == list(model_streams)
    for case, c in zip(cases, rep.cases):
        assert c.mismatches == 0, (c, c.details[:5])
        assert c.status == case.expected_status == ("HALTED", "NONE", case.commands - 1)
        assert c.results == c.expected_results > 0 and not c.timed_out
        assert c.cycles > len(case.words)
    assert rep.cycles_per_s > 0 and (tmp_path / "job.bin").is_file() and (tmp_path / "out.bin").is_file()


def test_random_streams_bit_exact_under_handshake_stress(tiny, fast_build):
    streams = [random_stream(tiny, 500 + k, n=120) for k in range(20)]
    opts = [dict(gap=g, backpressure=b) for g, b in (HANDSHAKES * 4)[:20]]
    rep = fast.fast_run(tiny, [(s.name, s.words, o) for s, o in zip(streams, opts)])
    for c in rep.cases:
        assert c.mismatches == 0, (c, c.details[:5])
        assert c.status[0] == "HALTED" and c.status == c.expected_status and not c.timed_out
    assert sum(c.results for c in rep.cases) > 0


def test_illegal_streams_stop_like_sw_model(tiny, fast_build):
    streams = illegal_streams(tiny, seed=3)
    cases = make_cases(tiny, [(s.name, s.words, dict(backpressure=0.3)) for s in streams])
    rep = fast.run(tiny, cases)
    for s, case, c in zip(streams, cases, rep.cases):
        assert case.expected_status[:2] == ("ERROR", s.intent.name), s
        assert c.status == case.expected_status, (s, c)
        assert c.mismatches == 0, (c, c.details[:5])
    assert {s.intent for s in streams} == reachable_errors(tiny) == set(ErrorCode) - {ErrorCode.NONE, ErrorCode.HAZARD}


# ---- expect-fail: a wrong expectation must show as mismatches ---------------------------------------------------
class OffByOneMachine(sw_model.Machine):
    """A deliberately wrong golden model: the first column of every MVM comes out one too large."""

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        right = self.actions[Opcode.MVM]

        def wrong(st, **args):
            right(st, **args)
            st.outbuf[args["out_addr"]] += 1

        self.actions = {**self.actions, Opcode.MVM: wrong}


def test_expect_fail_corrupted_and_perturbed_references_are_mismatches(tiny, fast_build):
    a, b = random_stream(tiny, 0, n=60), random_stream(tiny, 1, n=60)
    pairs = [(a.name, a.words), (b.name, b.words), (a.name, a.words)]
    good = make_cases(tiny, pairs)
    corrupted = dataclasses.replace(good[0], name="corrupted-result", expected_results=(
        (good[0].expected_results[0] + 1,) + good[0].expected_results[1:]))
    perturbed = dataclasses.replace(make_cases(tiny, pairs[:2], machine=OffByOneMachine)[1], name="perturbed-model")
    assert perturbed.expected_results != good[1].expected_results
    wrong_status = dataclasses.replace(good[2], name="corrupted-status", expected_status=(
        good[2].expected_status[:2] + (good[2].expected_status[2] + 1,)))
    rep = fast.run(tiny, [corrupted, perturbed, wrong_status]).by_name()
    assert rep["corrupted-result"].mismatches == 1
    assert rep["corrupted-result"].details[0]["what"] == "result[0]"
    assert rep["perturbed-model"].mismatches > 0
    assert rep["corrupted-status"].mismatches == 1
    assert rep["corrupted-status"].details[0]["what"] == "status.index"
    # one word fewer expected than the RTL sends: the extra word is a mismatch (a fresh job: memories from power-up)
    short = dataclasses.replace(good[0], name="extra-word", expected_results=good[0].expected_results[:-1])
    extra = fast.run(tiny, [short]).cases[0]
    assert extra.mismatches == 1 and extra.details[0]["expected"] is None
    assert extra.results == len(good[0].expected_results)
    # fast_run with a perturbed machine factory fails the same way
    assert fast.fast_run(tiny, pairs[:2], machine=OffByOneMachine).mismatches > 0


# ---- same cycles as the cocotb testbench ------------------------------------------------------------------------
def test_cycle_counts_equal_cocotb(tiny, fast_build, model_streams, tmp_path):
    """gap = backpressure = 0 must give cocotb's cycles; with gaps too (the harness replays CPython's RNG), and
    a run that exhausts its cycle budget times out at the same cycle."""
    if runner.unavailable_reason("verilator"):
        pytest.skip(runner.unavailable_reason("verilator"))
    r0, r1 = random_stream(tiny, 7, n=60), random_stream(tiny, 8, n=60)
    bad = illegal_streams(tiny, seed=4)[0]
    items = [("tiny-bert/linear", model_streams["tiny-bert/linear"]), (r0.name, r0.words),
             (r1.name, r1.words, dict(gap=0.3, backpressure=0.4)), (bad.name, bad.words),
             ("budget", r0.words, dict(max_cycles=300))]
    cases = make_cases(tiny, items)
    f = fast.run(tiny, cases)
    c = runner.run(tiny, cases, work_dir=tmp_path)
    for a, b in zip(f.cases, c.cases):
        assert (a.name, a.cycles, a.sim_cycles, a.status, a.results, a.timed_out) == \
               (b.name, b.cycles, b.sim_cycles, b.status, b.results, b.timed_out)
    assert f.by_name()["budget"].timed_out and f.by_name()["budget"].mismatches > 0
    assert f.mismatches == c.mismatches


# ---- the build cache --------------------------------------------------------------------------------------------
def test_build_is_reused_and_keyed(tiny, fast_build):
    again = fast.build(tiny)
    assert again.directory == fast_build.directory and again.binary.is_file()
    info = json.loads((again.directory / ".built").read_text())
    assert info["verilog_sha256"] == fast.sha256(fast_build.verilog)
    assert again.directory.parent == runner.cache_dir() / "fast"
    assert again.directory.name.startswith(f"{tiny.tag}-{info['verilog_sha256'][:16]}-")
    assert not list(again.directory.glob("obj"))            # objects removed, the binary kept


_BUILD_SNIPPET = """
import json, sys
from cimisa.config import load_hw
from sim import fast
b = fast.build(load_hw(sys.argv[1]))
print(json.dumps({"reused": b.reused, "directory": str(b.directory)}))
"""


@pytest.fixture(scope="module")
def micro_cache(tmp_path_factory):
    """A fresh cache holding fpga-micro's harness, built by two processes started together."""
    _require()
    cache = tmp_path_factory.mktemp("fastcache")
    env = {**os.environ, "CIMSIM_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD_SNIPPET, "fpga-micro"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return cache, outs


@pytest.mark.slow
def test_parallel_builds_build_once_atomically(micro_cache):
    cache, outs = micro_cache
    assert sorted(o["reused"] for o in outs) == [False, True]          # one built, the other waited and reused
    assert outs[0]["directory"] == outs[1]["directory"]
    folder = cache / "fast"
    assert [d.name for d in folder.iterdir() if d.is_dir()] == [Path(outs[0]["directory"]).name]   # no temp left
    assert (Path(outs[0]["directory"]) / fast.BINARY).is_file()


@pytest.mark.slow
def test_second_configuration_65_bit_words(micro_cache, monkeypatch):
    """fpga-micro's command payload is 65 bits (a VlWide of 3 words, fpga-tiny's 97 bits uses 4)."""
    cache, _ = micro_cache
    monkeypatch.setenv("CIMSIM_CACHE", str(cache))
    runner.export.cache_clear()
    try:
        cfg = load_hw("fpga-micro")
        assert Isa.of(cfg).cmd_layout.size == 65
        items = [(s.name, s.words, dict(gap=g, backpressure=b))
                 for s, (g, b) in zip((random_stream(cfg, k, n=60) for k in range(10)), HANDSHAKES * 2)]
        illegal = illegal_streams(cfg, seed=2)
        items += [(s.name, s.words) for s in illegal]
        rep = fast.fast_run(cfg, items)
        assert fast.build(cfg).reused
        assert rep.mismatches == 0, [(c, c.details[:3]) for c in rep.cases if c.mismatches]
        for s, c in zip(illegal, rep.cases[10:]):
            assert c.status[:2] == ("ERROR", s.intent.name)
    finally:
        runner.export.cache_clear()


# ---- file formats (no build) ------------------------------------------------------------------------------------
def test_job_file_layout_and_wide_results(tiny, tmp_path):
    isa = Isa.of(tiny)
    words = random_stream(tiny, 0, n=5).words
    assert max(words) >> 64                                   # wider than 64 bits
    case = make_cases(tiny, [("w", words, dict(gap=0.25, seed=3))])[0]
    fast.write_job(tmp_path / "job.bin", tiny, [case])
    data = (tmp_path / "job.bin").read_bytes()
    assert data[:8] == fast.JOB_MAGIC
    hdr = np.frombuffer(data, "<u4", 8, 8)
    assert list(hdr[:4]) == [fast.FORMAT_VERSION, 97, isa.status_layout.size, isa.result_shape.width]
    tail = np.frombuffer(data[-32:], "<u4").reshape(2, 4)
    payload = [sum(int(v) << (32 * k) for k, v in enumerate(row)) for row in tail]
    assert payload == [layout_bits(isa, w, i == 1) for i, w in enumerate(words[-2:])]
    assert len(data) == 8 + 32 + 52 + 2 * 625 * 4 + 16 * len(words)    # header, case header, 2 RNG states, words
    # results of any width: sign extension over several 32-bit words
    rows = np.array([[0xFFFFFFFF, 0x1], [0x5, 0x0]], dtype=np.uint32)
    assert jobfile._results(rows, 33, True) == [-1, 5]
    assert jobfile._results(np.array([[0xFFFFFFFE]], dtype=np.uint32), 32, True) == [-2]


def layout_bits(isa, word, last):
    return isa.cmd_layout.const({"word": word, "last": int(last)}).as_bits()


def test_auto_picks_the_fast_path_for_long_streams():
    from sim.flow import FAST, FAST_WORDS, pick_simulator
    assert pick_simulator("auto", FAST_WORDS + 1) == FAST
    assert pick_simulator("auto", FAST_WORDS) == "verilator"
    assert pick_simulator("auto", FAST_WORDS + 1, waves=True) == "verilator"      # waves need cocotb
    assert pick_simulator("icarus", 10**7) == "icarus"


def test_sim_run_on_the_fast_path_writes_its_files(tiny, fast_build, tmp_path):
    """``python -m sim run --simulator verilator-fast`` from a folder outside the repository."""
    r = subprocess.run([sys.executable, "-m", "sim", "run", "--model", "tiny-bert", "--simulator", "verilator-fast",
                        "--out", "o"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["simulator"] == "verilator-fast" and s["mismatches"] == 0 and s["streams"][0]["results"] > 0
    assert "verilator-fast" in r.stdout and "0 mismatches" in r.stdout


def test_waves_are_refused_on_the_fast_path(tmp_path):
    from cimisa.errors import KitError
    from sim.flow import cosim_model
    with pytest.raises(KitError, match="--waves"):
        cosim_model("tiny-bert", load_hw("fpga-tiny"), simulator="verilator-fast", waves=True)
