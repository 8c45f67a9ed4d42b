"""Co-simulation tier (``pytest -m cosim``): cocotb drives the exported RTL, sw_model is the reference.

Every group of streams runs as one job (one simulator process, the tile reset between streams) on one
Verilator build of fpga-tiny, shared by the whole session and cached across sessions (see :mod:`sim.runner`).
Icarus Verilog, when installed, runs the same mixed job and must agree with Verilator cycle for cycle.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sw_model
from cimisa.config import HwConfig, load_hw
from cimisa.isa import ErrorCode, Opcode
from sim import runner
from sim.model_stream import STRATEGIES, TINY_MODELS, model_stream
from sim.runner import make_cases
from sim.streams import coverage_bins, covered, illegal_streams, opcodes_of, random_stream, reachable_errors

pytestmark = pytest.mark.cosim

ROOT = Path(__file__).resolve().parent.parent
#: (gap, backpressure) cycled over the random streams: plain, light and heavy handshake stress.
HANDSHAKES = [(0.0, 0.0), (0.3, 0.3), (0.6, 0.8), (0.0, 0.5), (0.5, 0.0)]
N_RANDOM = 10


def _require(simulator: str) -> None:
    reason = runner.unavailable_reason(simulator)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def tiny():
    return load_hw("fpga-tiny")


@pytest.fixture(scope="session")
def verilator_build(tiny):
    _require("verilator")
    return runner.build(tiny, "verilator")


@pytest.fixture(scope="session")
def model_streams(tiny):
    return {s.name: s for s in (model_stream(m, tiny, st) for m in TINY_MODELS for st in STRATEGIES)}


@pytest.fixture(scope="session")
def model_report(tiny, model_streams, verilator_build, tmp_path_factory):
    cases = make_cases(tiny, [(s.name, s.words) for s in model_streams.values()])
    return runner.run(tiny, cases, work_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def random_job(tiny):
    streams = [random_stream(tiny, seed, n=60) for seed in range(N_RANDOM)]
    opts = [dict(gap=g, backpressure=b) for g, b in (HANDSHAKES * N_RANDOM)[:N_RANDOM]]
    return streams, make_cases(tiny, [(s.name, s.words, o) for s, o in zip(streams, opts)])


@pytest.fixture(scope="session")
def random_report(tiny, random_job, verilator_build, tmp_path_factory):
    return runner.run(tiny, random_job[1], work_dir=tmp_path_factory.mktemp("random"))


@pytest.fixture(scope="session")
def illegal_job(tiny):
    streams = illegal_streams(tiny, seed=1)
    return streams, make_cases(tiny, [(s.name, s.words, dict(backpressure=0.3)) for s in streams])


@pytest.fixture(scope="session")
def illegal_report(tiny, illegal_job, verilator_build, tmp_path_factory):
    return runner.run(tiny, illegal_job[1], work_dir=tmp_path_factory.mktemp("illegal"))


# ---- (a) mapper-generated streams -----------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", TINY_MODELS)
def test_mapper_stream_matches_sw_model(model_report, model, strategy):
    c = model_report.by_name()[f"{model}/{strategy}"]
    assert c.mismatches == 0, c.details
    assert c.status == ("HALTED", "NONE", c.commands - 1) == c.expected_status
    assert c.results == c.expected_results > 0
    assert not c.timed_out


# ---- (b) random legal streams ---------------------------------------------------------------------------------
def test_random_streams_cover_every_opcode_and_field_corner(tiny, random_job):
    streams, _ = random_job
    hit = set()
    for s in streams:
        assert set(Opcode) - opcodes_of(s.commands) == set(), s
        hit |= covered(tiny, s.commands)
    assert coverage_bins(tiny) - hit == set()


def test_random_streams_match_sw_model(random_report, random_job):
    _, cases = random_job
    assert [c.name for c in random_report.cases] == [c.name for c in cases]
    for c in random_report.cases:
        assert c.mismatches == 0, (c, c.details)
        assert c.status[0] == "HALTED" and not c.timed_out
    assert sum(c.results for c in random_report.cases) > 0


# ---- (c) illegal streams --------------------------------------------------------------------------------------
def test_illegal_streams_status_equals_sw_model(illegal_report, illegal_job):
    streams, cases = illegal_job
    seen = set()
    for s, case, rep in zip(streams, cases, illegal_report.cases):
        assert case.expected_status[:2] == ("ERROR", s.intent.name), s       # sw_model stops as intended
        assert rep.status == case.expected_status, (s, rep)                 # the RTL stops identically
        assert rep.mismatches == 0, (rep, rep.details)
        seen.add(s.intent)
    # HAZARD needs a concurrent chip
    assert seen == reachable_errors(load_hw("fpga-tiny")) == set(ErrorCode) - {ErrorCode.NONE, ErrorCode.HAZARD}


# ---- (d) expect-fail: the checker must catch a wrong expectation and a wrong model ----------------------------
class OffByOneMachine(sw_model.Machine):
    """A deliberately wrong golden model: the first column of every MVM comes out one too large."""

    def __init__(self, cfg, **kw):
        super().__init__(cfg, **kw)
        right = self.actions[Opcode.MVM]

        def wrong(st, **args):
            right(st, **args)
            st.outbuf[args["out_addr"]] += 1

        self.actions = {**self.actions, Opcode.MVM: wrong}


def test_expect_fail_corrupted_and_perturbed_references_are_mismatches(tiny, random_job, verilator_build,
                                                                        tmp_path):
    streams, _ = random_job
    pairs = [(s.name, s.words) for s in (streams[0], streams[1], streams[0])]
    good = make_cases(tiny, pairs)             # the job's cases in order: each starts from the memory left before
    corrupted = dataclasses.replace(good[0], name="corrupted-result", expected_results=(
        (good[0].expected_results[0] + 1,) + good[0].expected_results[1:]))
    perturbed = dataclasses.replace(make_cases(tiny, pairs[:2], machine=OffByOneMachine)[1], name="perturbed-model")
    assert perturbed.expected_results != good[1].expected_results          # the perturbation is visible
    wrong_status = dataclasses.replace(good[2], name="corrupted-status", expected_status=(
        good[2].expected_status[:2] + (good[2].expected_status[2] + 1,)))
    rep = runner.run(tiny, [corrupted, perturbed, wrong_status], work_dir=tmp_path).by_name()
    assert rep["corrupted-result"].mismatches == 1
    assert rep["corrupted-result"].details[0]["what"] == "result[0]"
    assert rep["perturbed-model"].mismatches > 0
    assert rep["corrupted-status"].mismatches == 1
    assert rep["corrupted-status"].details[0]["what"] == "status.index"


# ---- runner: one build per configuration ----------------------------------------------------------------------
def test_build_is_reused(tiny, verilator_build):
    again = runner.build(tiny, "verilator")
    assert again.directory == verilator_build.directory
    assert (again.directory / ".built").is_file()
    assert verilator_build.directory.name.startswith(f"verilator-fpga-tiny-{tiny.tag}-{tiny.arch_hash}-")
    assert verilator_build.directory.is_absolute()


# ---- second simulator -----------------------------------------------------------------------------------------
def test_icarus_agrees_with_verilator_cycle_for_cycle(tiny, random_job, illegal_job, verilator_build, tmp_path):
    """Icarus runs a mixed job (random streams under handshake stress, illegal streams) exactly like Verilator.

    Mapper streams are left to Verilator: Icarus simulates MVM-heavy cycles at a few hundred cycles/s.
    """
    _require("icarus")
    items = [(s.name, s.words, dict(gap=0.3, backpressure=0.3)) for s in random_job[0][:3]]
    items += [(s.name, s.words) for s in illegal_job[0][::4]]
    cases = make_cases(tiny, items)
    ica = runner.run(tiny, cases, simulator="icarus", work_dir=tmp_path / "icarus")
    ver = runner.run(tiny, cases, simulator="verilator", work_dir=tmp_path / "verilator")
    assert ica.mismatches == 0, [(c, c.details) for c in ica.cases if c.mismatches]
    for i, v in zip(ica.cases, ver.cases):
        assert (i.name, i.cycles, i.status, i.results) == (v.name, v.cycles, v.status, v.results)


# ---- command line ---------------------------------------------------------------------------------------------
def _cli(*args, cwd=ROOT, env=None, module="sim"):
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=environ)


def test_readme_command_runs_from_any_folder(verilator_build, tmp_path):
    """The README's command, as written (default ``--out build/cosim``, relative), from a folder outside the
    repository: every path handed to the simulator is absolute, and the output lands in that folder."""
    p = _cli("run", "--model", "tiny-bert", "--hw", "fpga-tiny", "--strategy", "all", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "cycles/s" in p.stdout and "0 mismatches -> build/cosim/summary.json" in p.stdout
    out = tmp_path / "build" / "cosim"
    s = json.loads((out / "summary.json").read_text())
    if s["build"]["verilog"] == str(verilator_build.verilog):              # (hw/ unchanged since the session began)
        assert "build reused" in p.stdout and s["build"]["reused"]         # the session's build, another process
    assert s["mismatches"] == 0 and s["ok"] and s["cycles"] > 0 and s["cycles_per_s"] > 0
    assert [st["name"] for st in s["streams"]] == [f"tiny-bert/{st}" for st in STRATEGIES]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]
    assert sorted(p.name for p in out.iterdir()) == [".cim-kit-output", "sim", "summary.json"]
    again = _cli("run", "--model", "tiny-bert", "--hw", "fpga-tiny", "--out", "build/cosim", cwd=tmp_path)
    assert again.returncode == 0, again.stderr                             # the kit's own folder is replaced
    assert [st["name"] for st in json.loads((out / "summary.json").read_text())["streams"]] == ["tiny-bert/auto"]


def test_cli_runs_a_stream_file_with_waves_on_icarus(tiny, tmp_path):
    """``--model`` may be a folder with ``commands.bin``; ``--waves`` leaves a wave file next to the summary."""
    _require("icarus")
    from cimisa.stream import write_stream
    from sim.streams import random_commands
    folder = tmp_path / "mapped"
    folder.mkdir()
    write_stream(folder / "commands.bin", tiny, random_commands(tiny, seed=5, n=20))
    out = tmp_path / "out"
    p = _cli("run", "--model", str(folder), "--hw", "fpga-tiny", "--simulator", "icarus", "--waves", "--out",
             str(out))
    assert p.returncode == 0, p.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["simulator"] == "icarus" and s["mismatches"] == 0 and s["streams"][0]["name"] == str(folder)
    assert Path(s["waves"]).is_file() and Path(s["waves"]).stat().st_size > 0


def test_mapper_build_output_is_the_stream_sim_runs(tiny, verilator_build, tmp_path):
    """``mapper build --out b`` then ``sim run --model b`` runs the built stream as it is, and ``sim run --model
    tiny-gpt2`` (same defaults: seed, nblocks, strategy) runs the very same words."""
    from cimisa.stream import read_stream
    p = _cli("build", "--model", "tiny-gpt2", "--hw", "fpga-tiny", "--out", "b", "--no-plots", cwd=tmp_path,
             module="mapper")
    assert p.returncode == 0, p.stderr
    built = read_stream(tmp_path / "b" / "commands.bin", expect=tiny)
    for model, out in (("b", "from-folder"), ("tiny-gpt2", "from-model")):
        p = _cli("run", "--model", model, "--out", out, cwd=tmp_path)         # --hw: the stream's / fpga-tiny
        assert p.returncode == 0, p.stderr
        s = json.loads((tmp_path / out / "summary.json").read_text())
        assert s["mismatches"] == 0 and s["hw"] == "fpga-tiny" and s["streams"][0]["results"] > 0
        assert s["streams"][0]["status"] == ["HALTED", "NONE", built.commands - 1]
        job = json.loads((tmp_path / out / "sim" / "job.json").read_text())
        assert [c["words"] for c in job["cases"]] == [list(built.words)]


def test_parallel_runs_share_the_cache_and_pruning_spares_builds_in_use(tmp_path):
    """Four ``sim run`` processes at once, on four configurations all named ``x`` (different shapes, so four
    builds), plus a fifth on the same configuration as the second (it waits for that build and reuses it),
    with a private cache keeping one build per configuration name: pruning runs while the others build and
    simulate, removes only builds nobody uses (an old one planted beforehand), and every run passes."""
    _require("verilator")
    from cimisa.stream import write_stream
    from sim.streams import random_commands
    cache = tmp_path / "cache"
    shapes = [(4, 1), (8, 1), (4, 2), (8, 2)]
    for i, (rows, arrays) in enumerate(shapes):
        (tmp_path / f"x{i}.toml").write_text(
            f'base = "fpga-micro"\nname = "x"\nrows = {rows}\ncols = 4\nn_arrays = {arrays}\nadc_bits = 5\n'
            f'adcs_per_array = 1\nin_depth = 8\nout_depth = 8\nrows_per_cycle = 2\n')
        cfg = load_hw(tmp_path / f"x{i}.toml")
        (tmp_path / f"s{i}").mkdir()
        write_stream(tmp_path / f"s{i}" / "commands.bin", cfg, random_commands(cfg, seed=i, n=600))
    assert len({load_hw(tmp_path / f"x{i}.toml").arch_hash for i in range(4)}) == 4
    old = cache / "build" / "verilator-x-old"                    # an unused build of the same name, long unused
    old.mkdir(parents=True)
    (old / ".built").write_text(json.dumps({"seconds": 1.0, "group": json.dumps(["verilator", "x", False])}))
    os.utime(old / ".built", (1, 1))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CIMSIM_CACHE": str(cache), "CIMSIM_KEEP_BUILDS": "1"}
    jobs = [0, 1, 2, 3, 1]
    procs = [subprocess.Popen([sys.executable, "-m", "sim", "run", "--model", f"s{i}", "--out", f"o{k}",
                               "--gap", "0.3", "--backpressure", "0.3"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, i in enumerate(jobs)]
    results = [(p.wait(timeout=1500), *p.communicate()) for p in procs]
    for rc, out, err in results:
        assert rc == 0 and "0 mismatches" in out, (rc, out, err)
    summaries = [json.loads((tmp_path / f"o{k}" / "summary.json").read_text()) for k in range(len(jobs))]
    assert all(s["mismatches"] == 0 and s["hw"] == "x" for s in summaries)
    assert summaries[1]["build"]["directory"] == summaries[4]["build"]["directory"]
    assert len({s["build"]["directory"] for s in summaries}) == 4            # one build per configuration
    assert not old.exists()                                                  # pruned during the run
    # A later run (nothing else in use) keeps only its own build of the name "x": one folder, one lock file.
    p = _cli("run", "--model", "s0", "--out", "o5", cwd=tmp_path, env={"CIMSIM_CACHE": str(cache),
                                                                        "CIMSIM_KEEP_BUILDS": "1"})
    assert p.returncode == 0, p.stderr
    left = sorted(d.name for d in (cache / "build").iterdir())
    mine = summaries[0]["build"]["directory"]
    assert left == sorted([Path(mine).name, f".{Path(mine).name}.lock", f"{Path(mine).name}.build.log"]), left


# ---- slow: more random streams, and a second configuration --------------------------------------------------------
@pytest.mark.slow
def test_many_random_streams_under_handshake_stress(tiny, verilator_build, tmp_path):
    streams = [random_stream(tiny, 1000 + k, n=120) for k in range(40)]
    opts = [dict(gap=g, backpressure=b) for g, b in (HANDSHAKES * 8)[:40]]
    rep = runner.run(tiny, make_cases(tiny, [(s.name, s.words, o) for s, o in zip(streams, opts)]),
                     work_dir=tmp_path)
    assert rep.mismatches == 0, [(c, c.details[:3]) for c in rep.cases if c.mismatches]


#: A small tile in non-default number formats (:mod:`cimisa.formats`): 2-bit offset cells with the bias column,
#: sign-magnitude inputs through a 2-bit DAC, nearest rounding (a quick Verilator build).
FORMATS_CFG = HwConfig(name="cosim-formats", rows=8, cols=16, n_arrays=2, weight_bits=5, input_bits=6, adc_bits=6,
                       adcs_per_array=2, in_depth=32, out_depth=32, rows_per_cycle=4, cell_bits=2,
                       weight_encoding="offset", input_encoding="sign-magnitude", dac_bits=2,
                       adc_rounding="nearest")


def test_number_formats_random_and_illegal_streams(tmp_path):
    """The RTL of a non-default number format, bit-exact with sw_model on random and illegal streams."""
    _require("verilator")
    cfg = FORMATS_CFG
    items = [(s.name, s.words, dict(gap=g, backpressure=b))
             for s, (g, b) in zip((random_stream(cfg, k, n=40) for k in range(4)), HANDSHAKES)]
    illegal = illegal_streams(cfg, seed=3)
    items += [(s.name, s.words) for s in illegal]
    rep = runner.run(cfg, make_cases(cfg, items), work_dir=tmp_path)
    assert rep.mismatches == 0, [(c, c.details[:3]) for c in rep.cases if c.mismatches]
    assert len(rep.cases) == len(items) and {s.intent for s in illegal} == reachable_errors(cfg)


#: fpga-tiny-sliced's format (1-bit differential cells of 4-bit weights) on a tile small enough to build quickly
#: (`python -m sim run --model tiny-bert --hw fpga-tiny-sliced --strategy all` runs the full-size one).
SLICED_CFG = HwConfig(name="cosim-sliced", rows=8, cols=24, n_arrays=2, weight_bits=4, input_bits=4, adc_bits=4,
                      adcs_per_array=4, in_depth=32, out_depth=32, rows_per_cycle=4, cell_bits=1,
                      weight_encoding="differential")


@pytest.mark.slow
@pytest.mark.parametrize("hw", ["fpga-micro", SLICED_CFG], ids=["fpga-micro", "sliced"])
def test_second_configuration_random_and_illegal_streams(hw, tmp_path):
    """Other widths (4-bit inputs, 16 rows, 2 arrays), and 1-bit differential cells: one more Verilator build
    each, then random + illegal streams."""
    _require("verilator")
    cfg = hw if isinstance(hw, HwConfig) else load_hw(hw)
    items = [(s.name, s.words, dict(gap=g, backpressure=b))
             for s, (g, b) in zip((random_stream(cfg, k, n=60) for k in range(10)), HANDSHAKES * 2)]
    illegal = illegal_streams(cfg, seed=2)
    items += [(s.name, s.words) for s in illegal]
    rep = runner.run(cfg, make_cases(cfg, items), work_dir=tmp_path)
    assert rep.mismatches == 0, [(c, c.details[:3]) for c in rep.cases if c.mismatches]
    assert {s.intent for s in illegal} == reachable_errors(cfg)
    hit = set().union(*(covered(cfg, random_stream(cfg, k, n=60).commands) for k in range(10)))
    assert coverage_bins(cfg) - hit == set()
