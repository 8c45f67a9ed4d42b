"""The concurrency contract (cimisa.concurrency) in the golden model, the command set and the stream generator.

Scoreboard cases by hand (hull merge, which synchronisations clear which tiles, spans of strided outputs), the
golden model's HAZARD (same error and index in the fast and naive models, on random and illegal streams), BARRIER's
new fields through JSON and the binary encoding (old files load), the tiling dependence of the check, and the
random concurrent streams (legal, hazard-free, every concurrency bin). ``tests/test_mutants.py`` plants Scoreboard
mutants that :func:`scoreboard_problems` must see.
"""

from __future__ import annotations

import dataclasses
import doctest
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sw_model
from cimisa import concurrency, streamgen
from cimisa.chip import ChipParams
from cimisa.concurrency import CHIP_OPS, TILE_OPS, Scoreboard, is_concurrent, out_span
from cimisa.config import BUILTIN, load_hw
from cimisa.isa import Command, ErrorCode, Isa, Opcode
from cimisa.stream import dumps_jsonl, loads_jsonl
from sw_model.errors import Hazard
from tests.strategies import legal_stream
from tests.test_sw_model import naive_vs_fast

T4 = BUILTIN["fpga-tiny-4t"]          # 4 tiles of 24 arrays, queues of 4
T2 = BUILTIN["fpga-tiny-2t"]
TINY = BUILTIN["fpga-tiny"]
MICRO = load_hw("fpga-micro")
MICRO2 = MICRO.replace(name="micro-2t", chip=ChipParams(arrays_per_tile=1, queue_depth=2, topology="bus"))
MICRO3 = MICRO.replace(name="micro-3t", n_arrays=6, chip=ChipParams(arrays_per_tile=2, queue_depth=1, topology="bus"))
CONCURRENT = [MICRO2, MICRO3, T2, T4]


def mvm(array, out_addr, ncols=2, out_stride=1, accumulate=False):
    return Command.mvm(array=array, row0=0, nrows=2, col0=0, ncols=ncols, in_addr=0, out_addr=out_addr,
                       out_stride=out_stride, accumulate=accumulate, adc_bits=9)


def codes(cfg, cmds) -> list[str]:
    """The Scoreboard's answer to each command of ``cmds`` (a HAZARD records nothing, the next ones go on)."""
    sb = Scoreboard(cfg)
    return [sb.step(c.op, c.args).name for c in cmds]


#: (name, commands on fpga-tiny-4t, the Scoreboard's code for each): tiles 0..3 hold arrays 0, 24, 48, 72 on.
CASES = [
    ("same-tile-overlaps", [mvm(0, 0), mvm(23, 0), mvm(5, 1, accumulate=True)], "NONE NONE NONE"),
    ("other-tile-same-outputs", [mvm(0, 0), mvm(24, 0)], "NONE HAZARD"),
    ("hazard-records-nothing", [mvm(0, 0), mvm(24, 0), mvm(48, 0)], "NONE HAZARD HAZARD"),
    ("hazard-records-nothing-2", [mvm(0, 0), mvm(24, 1), Command.barrier(0), mvm(48, 1)], "NONE HAZARD NONE NONE"),
    # the hull merges: [0, 2) and [10, 12) give [0, 12), which covers the gap
    ("hull-merge", [mvm(0, 0), mvm(1, 10), mvm(24, 5, ncols=1)], "NONE NONE HAZARD"),
    ("hull-merge-order", [mvm(0, 10), mvm(1, 0), mvm(24, 5, ncols=1)], "NONE NONE HAZARD"),
    ("hull-ends", [mvm(0, 4), mvm(1, 10), mvm(24, 2), mvm(48, 12), mvm(72, 11, ncols=1)],
     "NONE NONE NONE NONE HAZARD"),
    ("hull-start", [mvm(0, 4), mvm(1, 10), mvm(24, 3, ncols=2)], "NONE NONE HAZARD"),
    # spans: [out_addr, out_addr + (ncols - 1) * out_stride + 1); adjacent spans do not meet
    ("span-last-element", [mvm(0, 0, ncols=4, out_stride=3), mvm(24, 9, ncols=1)], "NONE HAZARD"),
    ("span-past-last", [mvm(0, 0, ncols=4, out_stride=3), mvm(24, 10, ncols=1)], "NONE NONE"),
    ("span-adjacent-below", [mvm(0, 4), mvm(24, 2)], "NONE NONE"),
    ("span-stride-gap", [mvm(0, 0, ncols=2, out_stride=4), mvm(24, 2, ncols=1)], "NONE HAZARD"),
    # a local BARRIER clears its own tile only (any array of it), an all-tile BARRIER every tile
    ("local-barrier-own-tile", [mvm(0, 0), Command.barrier(23), mvm(24, 0)], "NONE NONE NONE"),
    ("local-barrier-other-tile", [mvm(0, 0), mvm(48, 8), Command.barrier(24), mvm(72, 0)],
     "NONE NONE NONE HAZARD"),
    ("local-barrier-keeps-others", [mvm(0, 0), mvm(48, 8), Command.barrier(0), mvm(72, 8), mvm(72, 0)],
     "NONE NONE NONE HAZARD NONE"),
    ("all-barrier", [mvm(0, 0), mvm(48, 8), Command.barrier(), mvm(72, 0), mvm(72, 8)], "NONE NONE NONE NONE NONE"),
    ("all-barrier-any-array", [mvm(0, 0), Command(Opcode.BARRIER, dict(array=50, local=0)), mvm(24, 0)],
     "NONE NONE NONE"),
    # chip commands clear every tile; a WRITE_W (a tile command) clears nothing
    ("read-clears", [mvm(0, 0), mvm(24, 8), Command.read(0, 1), mvm(48, 0), mvm(72, 8)], "NONE NONE NONE NONE NONE"),
    ("load_in-clears", [mvm(0, 0), Command.load_in(0, [1]), mvm(24, 0)], "NONE NONE NONE"),
    ("requant-clears", [mvm(0, 0), Command.requant(src=0, count=1, dst=0), mvm(24, 0)], "NONE NONE NONE"),
    ("halt-clears", [mvm(0, 0), Command.halt(), mvm(24, 0)], "NONE NONE NONE"),
    ("write_w-keeps", [mvm(0, 0), Command.write_w(0, 0, 0, [1]), Command.write_w(24, 0, 0, [1]), mvm(24, 0)],
     "NONE NONE NONE HAZARD"),
    # lattices (power-of-two strides): phases that differ on both masks never meet; a common address does
    ("lattice-phases-differ", [mvm(0, 0, ncols=4, out_stride=4), mvm(24, 1, ncols=4, out_stride=4)], "NONE NONE"),
    ("lattice-same-phase", [mvm(0, 0, ncols=4, out_stride=4), mvm(24, 8, ncols=2, out_stride=4)], "NONE HAZARD"),
    ("lattice-mixed-moduli", [mvm(0, 0, ncols=4, out_stride=2), mvm(24, 2, ncols=2, out_stride=4)], "NONE HAZARD"),
    # a tile's lattice narrows to the low bits where its phases agree (0 and 2 of 4: 0 of 2)
    ("lattice-merge-narrows", [mvm(0, 0, ncols=4, out_stride=4), mvm(1, 2, ncols=4, out_stride=4),
                               mvm(24, 6, ncols=2, out_stride=4)], "NONE NONE HAZARD"),
    ("lattice-narrowed-keeps-odd", [mvm(0, 0, ncols=4, out_stride=4), mvm(1, 2, ncols=4, out_stride=4),
                                    mvm(24, 3, ncols=4, out_stride=2)], "NONE NONE NONE"),
    ("lattice-stride-1-meets", [mvm(0, 0, ncols=4, out_stride=4), mvm(24, 5, ncols=1)], "NONE HAZARD"),
    ("lattice-cleared-by-barrier", [mvm(0, 0, ncols=4, out_stride=4), Command.barrier(0),
                                    mvm(0, 1, ncols=4, out_stride=4), mvm(24, 2, ncols=4, out_stride=4)],
     "NONE NONE NONE NONE"),
    # a stride that is not a power of two carries no lattice: the hull decides
    ("stride-3-no-lattice", [mvm(0, 0, ncols=3, out_stride=3), mvm(24, 6, ncols=2, out_stride=3)], "NONE HAZARD"),
    ("stride-3-hull", [mvm(0, 0, ncols=3, out_stride=3), mvm(24, 1, ncols=2, out_stride=3)], "NONE HAZARD"),
]


def scoreboard_problems() -> list[str]:
    """Every hand case whose codes differ, the conflicting tile, and the illegal HAZARD streams of fpga-tiny-4t
    (the golden model, through its Scoreboard): the check the Scoreboard mutants must fail."""
    bad = [f"{name}: {got} != {want}" for name, cmds, want in CASES if (got := " ".join(codes(T4, cmds))) != want]
    sb = Scoreboard(T4)
    for c in [mvm(48, 0, ncols=4), mvm(24, 8), mvm(0, 20)]:
        sb.step(c.op, c.args)
    if (sb.conflict(mvm(72, 0, ncols=22).args), sb.conflict(mvm(0, 6, ncols=8).args),
            sb.needs_barrier(mvm(72, 12, ncols=8).args)) != (0, 1, None):
        bad.append("conflict: not the lowest other tile")
    for case in streamgen.illegal_streams(T4, seed=2):
        if case.intent is ErrorCode.HAZARD:
            r = sw_model.run(T4, case.words, raise_on_error=False)
            if (r.error, r.index) != (ErrorCode.HAZARD, hazard_index(T4, case)):
                bad.append(f"{case.name}: {r.status_tuple()}")
    return bad


def hazard_index(cfg, case) -> int:
    """The index of the MVM a HAZARD stream is built to stop at: the last command of its hazard case."""
    cmds = dict(streamgen.hazard_cases(cfg))[case.name.split(":", 1)[1]]
    at = next(i for i in range(len(case.commands)) if list(case.commands[i:i + len(cmds)]) == cmds)
    return at + len(cmds) - 1


def test_scoreboard_cases_by_hand():
    assert scoreboard_problems() == []


def test_scoreboard_facts():
    assert out_span(dict(out_addr=3, ncols=4, out_stride=2)) == (3, 10)
    assert out_span(dict(out_addr=7, ncols=1, out_stride=0)) == (7, 8)
    assert TILE_OPS == {Opcode.MVM, Opcode.WRITE_W}
    assert CHIP_OPS == {Opcode.LOAD_IN, Opcode.REQUANT, Opcode.READ, Opcode.HALT}
    assert TILE_OPS | CHIP_OPS | {Opcode.BARRIER} == set(Opcode)
    sb = Scoreboard(T4)
    for c in [mvm(0, 0), mvm(1, 10), mvm(30, 20, ncols=1)]:
        sb.step(c.op, c.args)
    assert sb.hulls == {0: [0, 12], 1: [20, 21]}
    assert [sb.tile_of(a) for a in (0, 23, 24, 95)] == [0, 0, 1, 3]


def test_the_module_doctest():
    assert doctest.testmod(concurrency).failed == 0


@pytest.mark.parametrize("cfg", [TINY, MICRO, BUILTIN["chip-tiny-4t"],
                                 T4.replace(name="t4-q0", chip=dataclasses.replace(T4.chip, queue_depth=0))],
                         ids=lambda c: c.name)
def test_a_chip_that_is_not_concurrent_never_reports_hazard(cfg):
    """One tile, or tiles without queues (chip-tiny-4t, fpga-tiny-4t with queue_depth 0): every stream runs in
    order, the races of fpga-tiny-4t are legal, and the Scoreboard says NONE to everything."""
    assert not is_concurrent(cfg)
    assert streamgen.hazard_cases(cfg) == [] and ErrorCode.HAZARD not in streamgen.reachable_errors(cfg)
    if cfg.n_arrays == T4.n_arrays:
        for name, cmds, _ in CASES:
            assert set(codes(cfg, cmds)) == {"NONE"}, name
        for name, cmds in streamgen.hazard_cases(T4):
            r = sw_model.run_commands(cfg, cmds + [Command.halt()], raise_on_error=False)
            assert r.status_tuple() == ("HALTED", "NONE", len(cmds)), name
    sb = Scoreboard(cfg)
    assert sb.conflict(mvm(0, 0).args) is None and sb.hulls == {}


def test_is_concurrent():
    assert [is_concurrent(c) for c in (T4, T2, MICRO2, MICRO3, TINY, MICRO, BUILTIN["chip-tiny-4t"])] == [
        True, True, True, True, False, False, False]


# ---- the golden model ------------------------------------------------------------------------------------------
def test_golden_model_stops_at_a_hazard_with_its_index_and_no_effect():
    cmds = [Command.write_w(0, 0, 0, [2] * 32), Command.write_w(24, 0, 0, [1] * 32), Command.load_in(0, [3, 4]),
            mvm(0, 0), mvm(24, 1), Command.read(0, 4), Command.halt()]
    for impl in ("fast", "naive"):
        r = sw_model.run_commands(T4, cmds, impl=impl, raise_on_error=False)
        assert r.status_tuple() == ("ERROR", "HAZARD", 4) and list(r.results) == []
        with pytest.raises(Hazard, match=r"command 4: HAZARD in MVM\(array=24.*tile 0's MVMs") as exc:
            sw_model.run_commands(T4, cmds, impl=impl)
        assert exc.value.code is ErrorCode.HAZARD and exc.value.index == 4
        m = sw_model.Machine(T4, impl=impl)
        with pytest.raises(Hazard):
            m.run_words(Isa.of(T4).encode(cmds))
        assert m.state.outbuf[:4].tolist() == [6, 6, 0, 0]           # tile 0's MVM ran; the racing one did nothing
    fixed = cmds[:4] + [Command.barrier(0)] + cmds[4:]
    r = sw_model.run_commands(T4, fixed)
    assert r.ok and list(r.results) == [6, 3, 3, 0]                  # in order: tile 1's MVM wrote after tile 0's
    assert sw_model.run_commands(TINY, cmds).ok                      # one tile: no hazard


def test_field_errors_come_before_the_hazard():
    bad = Command.mvm(array=24, row0=0, nrows=2, col0=0, ncols=2, in_addr=0, out_addr=0, adc_bits=10)
    r = sw_model.run_commands(T4, [mvm(0, 0), bad, Command.halt()], raise_on_error=False)
    assert r.status_tuple() == ("ERROR", "BAD_ADC", 1)
    r = sw_model.run_commands(T4, [mvm(0, 0), Command.barrier(96), Command.halt()], raise_on_error=False)
    assert r.status_tuple() == ("ERROR", "BAD_ARRAY", 1)


@pytest.mark.parametrize("cfg", CONCURRENT, ids=lambda c: c.name)
def test_illegal_streams_stop_alike_in_both_models(cfg):
    """Every illegal stream (HAZARD races, BARRIERs of a missing array, the field errors) stops the fast and the
    naive model with the error it was built for, at the same index, with the same results before it."""
    cases = streamgen.illegal_streams(cfg, seed=1)
    assert {c.intent for c in cases} == streamgen.reachable_errors(cfg) and ErrorCode.HAZARD in \
        streamgen.reachable_errors(cfg)
    names = {c.name for c in cases if c.intent is ErrorCode.HAZARD}
    assert {"hazard:same-outputs", "hazard:hull-gap", "hazard:after-write_w", "hazard:after-other-barrier",
            "hazard:last-element"} <= names
    for case in cases:
        fast = sw_model.run(cfg, case.words, raise_on_error=False)
        naive = sw_model.run(cfg, case.words, impl="naive", raise_on_error=False)
        assert fast.error is case.intent, case
        assert fast.status_tuple() == naive.status_tuple() and fast.results.tolist() == naive.results.tolist()
        if case.intent is ErrorCode.HAZARD:
            assert fast.index == hazard_index(cfg, case), case
            assert streamgen.HAZARD_BIN in streamgen.covered(cfg, case.commands)
            assert streamgen.HAZARD_BIN in streamgen.coverage_bins(cfg, illegal=True)


@pytest.mark.parametrize("cfg", [MICRO2, MICRO3, T4], ids=lambda c: c.name)
def test_naive_equals_fast_on_seeded_concurrent_streams(cfg):
    for seed in range(6 if cfg is T4 else 12):
        assert naive_vs_fast(cfg, streamgen.random_commands(cfg, seed, 30)) == [], seed


@pytest.mark.parametrize("cfg", [MICRO2, MICRO3], ids=lambda c: c.name)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_naive_equals_fast_on_hypothesis_concurrent_streams(cfg, data):
    assert naive_vs_fast(cfg, data.draw(legal_stream(cfg, 20))) == []


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(0, 30))
def test_naive_equals_fast_on_random_hazards(seed, k):
    """A random legal stream with one MVM moved onto another tile: whatever happens (a HAZARD or not), both
    models stop alike."""
    cfg = MICRO3
    cmds = streamgen.random_commands(cfg, seed % 1000, 15)
    mvms = [i for i, c in enumerate(cmds) if c.op is Opcode.MVM]
    i = mvms[k % len(mvms)]
    a = dict(cmds[i].args)
    a["array"] = (a["array"] + cfg.chip.arrays_per_tile * (1 + seed % 2)) % cfg.n_arrays
    cmds = cmds[:i] + [Command(Opcode.MVM, a)] + cmds[i + 1:]
    words = Isa.of(cfg).encode(cmds)
    fast = sw_model.run(cfg, words, raise_on_error=False)
    naive = sw_model.run(cfg, words, impl="naive", raise_on_error=False)
    assert fast.status_tuple() == naive.status_tuple() and fast.results.tolist() == naive.results.tolist()
    sb = Scoreboard(cfg)
    first = next((j for j, c in enumerate(cmds) if sb.step(c.op, c.args) is ErrorCode.HAZARD), None)
    assert (fast.error is ErrorCode.HAZARD) == (first is not None) and (first is None or fast.index == first)


# ---- BARRIER's fields in JSON and the encoding ----------------------------------------------------------------
def test_barrier_json_round_trip_with_and_without_fields():
    isa = Isa.of(T4)
    assert Command.barrier().to_json() == {"op": "BARRIER"}
    assert Command.barrier(30).to_json() == {"op": "BARRIER", "array": 30, "local": 1}
    odd = Command(Opcode.BARRIER, dict(array=30, local=0))
    assert odd.to_json() == {"op": "BARRIER", "array": 30, "local": 0}
    for c in (Command.barrier(), Command.barrier(0), Command.barrier(95), odd):
        assert Command.from_json(c.to_json()) == c
        assert isa.decode(isa.encode([c])) == [c]
    assert Command.from_json({"op": "BARRIER"}) == Command.barrier() == Command(Opcode.BARRIER, dict(array=0, local=0))
    assert Command.from_json({"op": "BARRIER", "array": 3}).args == {"array": 3, "local": 0}
    # the all-tile barrier keeps the encoding of the barrier before tiles: the opcode alone
    op = isa.header_layout["opcode"]
    assert isa.encode([Command.barrier()]) == [Opcode.BARRIER.value << op.offset]
    assert isa.encode([Command.barrier(5)]) != isa.encode([Command.barrier()])
    cmds = [Command.barrier(), Command.barrier(40), odd, Command.halt()]
    cfg, back = loads_jsonl(dumps_jsonl(T4, cmds))
    assert back == cmds and cfg == T4


def test_old_jsonl_files_without_barrier_fields_load():
    """A dump written before BARRIER had fields (and before chip.queue_depth) loads, and its BARRIERs are the
    all-tile barrier, encoded as before."""
    from pathlib import Path
    text = (Path(__file__).parent / "snapshots" / "tiny-bert.jsonl").read_text()
    old = text.replace('"queue_depth": 0, ', "", 1)
    assert old != text and '"op": "BARRIER"}' in old and '"local"' not in old
    cfg, cmds = loads_jsonl(old)
    barriers = [c for c in cmds if c.op is Opcode.BARRIER]
    assert barriers and all(c == Command.barrier() for c in barriers) and cfg.chip.queue_depth == 0
    assert loads_jsonl(text)[1] == cmds
    assert sw_model.run_commands(cfg, cmds).ok


# ---- the tiling ----------------------------------------------------------------------------------------------
def races(cfg, cmds) -> list[int]:
    """Indices of MVMs that write an address another tile's pending MVMs wrote (exact sets, not hulls)."""
    apt = cfg.chip.arrays_per_tile
    pending: dict[int, set[int]] = {}
    out = []
    for i, c in enumerate(cmds):
        a = c.args
        if c.op is Opcode.MVM:
            t = a["array"] // apt
            addrs = {a["out_addr"] + j * a["out_stride"] for j in range(a["ncols"])}
            if any(u != t and addrs & s for u, s in pending.items()):
                out.append(i)
            pending.setdefault(t, set()).update(addrs)
        elif c.op is Opcode.BARRIER:
            if a["local"]:
                pending.pop(a["array"] // apt, None)
            else:
                pending.clear()
        elif c.op in CHIP_OPS:
            pending.clear()
    return out


def test_hazard_free_streams_have_no_race_on_coarser_tilings():
    """The docstring's transfer: a stream without hazards on fpga-tiny-4t has no race on fpga-tiny-2t (tiles
    0+1 and 2+3) and runs in order on fpga-tiny (one tile, no hazard) with the same results."""
    for seed in range(25):
        cmds = streamgen.random_commands(T4, seed, 30)
        assert sw_model.run_commands(T4, cmds).ok
        assert races(T4, cmds) == [] and races(T2, cmds) == [], seed
        assert sw_model.run_commands(TINY, cmds).results.tolist() == sw_model.run_commands(T4, cmds).results.tolist()
        r2 = sw_model.run_commands(T2, cmds, raise_on_error=False)
        assert r2.ok or r2.error is ErrorCode.HAZARD


def test_the_hull_check_depends_on_the_tiling():
    """...but not the hull check itself: merged tiles' hull covers the gap between their outputs (the docstring's
    example), and a race within one large tile is two races on smaller tiles."""
    gap = [mvm(0, 0), mvm(24, 10), mvm(48, 5, ncols=1), Command.halt()]
    assert sw_model.run_commands(T4, gap).ok and races(T2, gap) == []
    assert sw_model.run_commands(T2, gap, raise_on_error=False).status_tuple() == ("ERROR", "HAZARD", 2)
    assert races(T4, [mvm(0, 0), mvm(24, 1)]) == [1] and races(T4, [mvm(0, 0), Command.barrier(0), mvm(24, 1)]) == []
    assert races(T4, [mvm(0, 0, out_stride=4), mvm(24, 2, ncols=1)]) == []           # a hull HAZARD, no race
    split = [mvm(0, 0), mvm(24, 0), Command.halt()]
    assert sw_model.run_commands(T2, split).ok
    assert sw_model.run_commands(T4, split, raise_on_error=False).status_tuple() == ("ERROR", "HAZARD", 1)


# ---- the random concurrent streams ------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", CONCURRENT, ids=lambda c: c.name)
def test_concurrent_streams_are_legal_hazard_free_and_cover_every_bin(cfg):
    hit: set[str] = set()
    stats = []
    for seed in range(20):
        cmds = streamgen.random_commands(cfg, seed, 40)
        assert cmds == streamgen.random_commands(cfg, seed, 40)
        r = sw_model.run_commands(cfg, cmds)
        assert r.status_tuple() == ("HALTED", "NONE", len(cmds) - 1)
        assert set(codes(cfg, cmds)) == {"NONE"}
        hit |= streamgen.covered(cfg, cmds)
        stats.append(streamgen.stream_stats(cfg, cmds))
    assert streamgen.coverage_bins(cfg) - hit == set()
    assert streamgen.chip_coverage_bins(cfg) <= streamgen.cosim_coverage_bins(cfg)
    assert all(s.mvm_overlaps > 0 for s in stats)
    assert sum(s.mvm_nonzero for s in stats) / sum(s.mvm_outputs for s in stats) >= 0.4


def test_chip_bins_by_hand():
    cfg = T4
    cmds = [Command.barrier(), mvm(0, 0), mvm(24, 2), Command.write_w(48, 0, 0, [1]), Command.barrier(48),
            Command.barrier(72), mvm(48, 4), mvm(72, 6), Command.barrier(30), Command.barrier(),
            *[mvm(1, 0) for _ in range(5)], Command.read(0, 1),
            mvm(24, 0, ncols=2), Command(Opcode.MVM, dict(mvm(0, 8, ncols=2).args, nrows=1)),
            Command.halt()]
    hit = streamgen.covered(cfg, cmds)
    assert {"chip:barrier_all_idle", "chip:adjacent_spans", "chip:overlap", "chip:write_w_while_busy",
            "chip:barrier_local_busy", "chip:barrier_local_idle", "chip:equal_back_to_back", "chip:overlap_all",
            "chip:barrier_all_busy", "chip:queue_run", "chip:chip_op_while_busy",
            "chip:staggered_request"} <= hit
    assert "chip:queue_run_long" not in hit and streamgen.HAZARD_BIN not in hit
    assert {f"chip:mvm_tile={t}" for t in range(4)} <= hit
    assert streamgen.chip_coverage_bins(TINY) == set() and not any(b.startswith("chip:")
                                                                    for b in streamgen.covered(TINY, cmds))
    assert streamgen.stream_stats(cfg, cmds).mvm_overlaps == 4
    chip = {b for b in streamgen.covered(cfg, [Command.barrier(0)]) if b.startswith("chip:")}
    assert chip == {"chip:barrier_local_idle"}
    chip = {b for b in streamgen.covered(cfg, [mvm(0, 0), Command.barrier(0), Command.barrier(0)])
            if b.startswith("chip:barrier")}
    assert chip == {"chip:barrier_local_busy", "chip:barrier_local_idle"}
    assert "chip:queue_run" not in streamgen.covered(cfg, [mvm(1, 0)] * 4 + [Command.read(0, 1), mvm(1, 0)])
    assert streamgen.covered(cfg, [mvm(0, 0), mvm(24, 0)]) >= {streamgen.HAZARD_BIN, "chip:mvm_tile=0"}
    assert "chip:mvm_tile=1" not in streamgen.covered(cfg, [mvm(0, 0), mvm(24, 0)])


def test_one_tile_streams_are_unchanged_by_the_chip_generator():
    """A configuration that is not concurrent draws no concurrency template: the same stream for the same draws
    as on the concurrent chip's one-tile twin would give, and the same as before (the concurrent ones differ)."""
    a = streamgen.random_commands(TINY, 3, 30)
    assert streamgen.random_commands(BUILTIN["chip-tiny-4t"], 3, 30) == a      # same arrays, no queues
    assert streamgen.generate(T4, random.Random(1), 30) != streamgen.generate(TINY, random.Random(1), 30)
