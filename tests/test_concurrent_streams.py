"""Concurrent streams from the compiler (compiler.program.for_chip): physical arrays of the chip map, MVMs ordered
over the tiles, the local barriers the hazards need and no more; results equal the single-tile stream's."""

from __future__ import annotations

import collections
import functools

import numpy as np
import pytest

import compiler.program as program
from cimisa.concurrency import CHIP_OPS, Scoreboard
from cimisa.config import load_hw
from cimisa.errors import ShapeError, StreamError
from cimisa.isa import Command, ErrorCode, Opcode
from compiler.chipmap import map_to_chip
from compiler.kinds import AdcMode, Strategy
from sim.model_stream import _factors
from sw_model import run_commands

STRATEGIES = ("linear", "sparse", "dense", "auto")
HW4 = load_hw("fpga-tiny-4t")
HW1 = load_hw("fpga-tiny")


def _compiled(model: str, hw, strategy: str):
    spec, _nb, factors = _factors(model, None)
    return program.compile_model(spec, factors, hw, strategy=Strategy(strategy), adc_mode=AdcMode.PAPER,
                                 colocate=True)


@functools.cache
def _stream(model: str, hw_name: str, strategy: str):
    from compiler.stream_inputs import STREAM_SEED, stream_inputs
    cm = _compiled(model, load_hw(hw_name), strategy)
    return cm, tuple(cm.full_stream(stream_inputs(cm, STREAM_SEED)))


def _tile(c) -> int:
    return c.args["array"] // HW4.chip.arrays_per_tile


def _runs(cmds):
    """The runs of MVMs between chip commands: lists of MVM/BARRIER commands."""
    out, cur = [], []
    for c in cmds:
        if c.op in (Opcode.MVM, Opcode.BARRIER):
            cur.append(c)
        elif c.op in CHIP_OPS:
            if cur:
                out.append(cur)
            cur = []
    return out + ([cur] if cur else [])


def alternation_faults(cmds, slack: int = 1) -> list[str]:
    """Barrier-free MVM runs whose consecutive MVMs stay on one tile more often than their tile counts force
    (``max(0, 2 * most - len - 1)`` same-tile neighbours at the least) plus ``slack``: the list scheduler puts
    avoiding a barrier first, and with strided outputs an MVM that merges two phases of its tile's lattice is
    best left to the end of the run (tiny-llama's ``auto``: ``0 1 2 3 1 2 0 0``)."""
    faults = []
    for k, run in enumerate(_runs(cmds)):
        if any(c.op is Opcode.BARRIER for c in run):
            continue
        tiles = [_tile(c) for c in run]
        same = sum(a == b for a, b in zip(tiles, tiles[1:]))
        most = max(collections.Counter(tiles).values())
        if same > max(0, 2 * most - len(tiles) - 1) + slack:
            faults.append(f"run {k}: tiles {tiles}")
    return faults


def weight_faults(cmds) -> int:
    """Same-tile neighbours among the WRITE_W commands beyond what their tile counts force."""
    tiles = [_tile(c) for c in cmds if c.op is Opcode.WRITE_W]
    same = sum(a == b for a, b in zip(tiles, tiles[1:]))
    most = max(collections.Counter(tiles).values())
    return same - max(0, 2 * most - len(tiles) - 1)


MODELS = [("tiny-bert", s) for s in STRATEGIES] + [("tiny-gpt2", s) for s in STRATEGIES] + [
    ("tiny-llama", "auto"), ("tiny-llama", "sparse")]


@pytest.mark.parametrize("model,strategy", MODELS)
def test_results_equal_single_tile(model, strategy):
    cm, cmds = _stream(model, "fpga-tiny-4t", strategy)
    _, seq = _stream(model, "fpga-tiny", strategy)
    r4 = run_commands(HW4, cmds)                  # raises on HAZARD
    r1 = run_commands(HW1, seq)
    assert r4.state == r1.state
    assert np.array_equal(r4.results, r1.results)
    assert cm.physical is not None
    # the same commands, arrays renumbered by the chip map, reordered only inside MVM runs and weight programming
    inv = {p: a for a, p in enumerate(cm.physical)}

    def key(c, arrays):
        args = dict(c.args, array=arrays[c.args["array"]]) if "array" in c.args else c.args
        return c.op.value, tuple(sorted(args.items())), c.data

    def segments(cs, arrays):
        out, cur = [], []
        for c in cs:
            if c.op is Opcode.BARRIER:
                continue
            if c.op in CHIP_OPS:
                out += [sorted(cur), key(c, arrays)]
                cur = []
            else:
                cur.append(key(c, arrays))
        return out
    assert segments(cmds, inv) == segments(seq, range(HW1.n_arrays))
    assert all(c.args["local"] for c in cmds if c.op is Opcode.BARRIER)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_physical_arrays_of_the_chip_map(strategy):
    cm, cmds = _stream("tiny-bert", "fpga-tiny-4t", strategy)
    phys = map_to_chip(cm.placement, HW4).physical
    assert cm.physical == tuple(phys)
    logical = {a.array for a in cm.schedule.activations}
    assert {c.args["array"] for c in cmds if c.op is Opcode.MVM} == {phys[a] for a in logical}
    assert len({_tile(c) for c in cmds if c.op is Opcode.MVM}) == HW4.n_tiles
    # the MVMs of one stage sit on different tiles as far as the map spreads them
    sched = cm.schedule
    for acts in sched.stages.values():
        arrays = {sched.activations[i].array for i in acts}
        tiles = {phys[a] // HW4.chip.arrays_per_tile for a in arrays}
        assert len(tiles) == min(len(arrays), HW4.n_tiles)


@pytest.mark.parametrize("model,strategy", MODELS)
def test_consecutive_mvms_alternate_tiles(model, strategy):
    _, cmds = _stream(model, "fpga-tiny-4t", strategy)
    assert alternation_faults(cmds) == []
    assert weight_faults(cmds) == 0


def _in_order(mvms, sb, last):
    """Mutant of the MVM ordering: schedule order, barriers where needed."""
    out = []
    for c in mvms:
        while (u := sb.needs_barrier(c.args)) is not None:
            b = Command.barrier(array=u * sb.apt)
            sb.step(b.op, b.args)
            out.append(b)
        sb.step(c.op, c.args)
        out.append(c)
    return out, last


def test_alternation_check_can_fail(monkeypatch):
    """Mutants: MVMs in schedule order, weight rows by array, break the alternation the checks ask for."""
    from compiler.stream_inputs import STREAM_SEED, stream_inputs
    monkeypatch.setattr(program, "_order_mvms", _in_order)
    cm = _compiled("tiny-bert", HW4, "auto")
    cmds = cm.full_stream(stream_inputs(cm, STREAM_SEED))
    assert alternation_faults(cmds)
    assert weight_faults(cmds) == 0
    monkeypatch.setattr(program, "interleave_tiles", lambda cmds, hw: sorted(cmds, key=lambda c: c.args["array"]))
    cm = _compiled("tiny-bert", HW4, "auto")
    assert weight_faults(cm.full_stream(stream_inputs(cm, STREAM_SEED))) > 0


def _mvm(array, out_addr, ncols=8, stride=1, accumulate=0):
    return Command.mvm(array=array, row0=0, nrows=8, col0=0, ncols=ncols, in_addr=0, in_stride=1,
                       out_addr=out_addr, out_stride=stride, accumulate=accumulate, adc_bits=8, adc_shift=0)


def test_order_and_barriers_by_hand():
    """Hand-made programs (logical == physical arrays): alternation, dependencies, the barrier's tile."""
    ident = tuple(range(HW4.n_arrays))
    show = lambda cs: [("B", c.args["array"] // 24) if c.op is Opcode.BARRIER else  # noqa: E731
                       ("M", c.args["array"] // 24, c.args["out_addr"]) if c.op is Opcode.MVM else
                       (c.op.name[0], None, None) for c in cs]
    # disjoint outputs, three MVMs on tile 0 then three on tile 1: they alternate, no barrier
    prog = [_mvm(0, 0), _mvm(1, 8), _mvm(2, 16), _mvm(24, 24), _mvm(25, 32), _mvm(26, 40), Command.barrier()]
    assert show(program.concurrent_program(prog, HW4, ident)) == [
        ("M", 0, 0), ("M", 1, 24), ("M", 0, 8), ("M", 1, 32), ("M", 0, 16), ("M", 1, 40)]
    # an overwrite on tile 0 and an accumulation of the same outputs on tile 1: kept in order, after a barrier of
    # tile 0; the independent MVM of tile 2 (which blocks nothing) goes first; the all-tile barrier goes (REQUANT
    # waits for every tile), and REQUANT synchronises: no barrier before the MVM after it
    prog = [_mvm(0, 0), _mvm(24, 0, accumulate=1), _mvm(48, 64), Command.barrier(),
            Command.requant(src=0, count=8, dst=0, dst_stride=1, shift=0), _mvm(72, 0)]
    assert show(program.concurrent_program(prog, HW4, ident)) == [
        ("M", 2, 64), ("M", 0, 0), ("B", 0), ("M", 1, 0), ("R", None, None), ("M", 3, 0)]
    # interleaved outputs with a power-of-two stride (a Monarch second stage): phases 0, 2 on tile 0 and 1, 3 on
    # tile 1 never meet (cimisa.concurrency's lattices): they alternate, no barrier
    prog = [_mvm(0, 0, stride=4), _mvm(24, 1, stride=4), _mvm(1, 2, stride=4), _mvm(25, 3, stride=4)]
    assert show(program.concurrent_program(prog, HW4, ident)) == [
        ("M", 0, 0), ("M", 1, 1), ("M", 0, 2), ("M", 1, 3)]
    # the same with stride 3 (no lattice): the hulls meet, so one tile's MVMs first, then one barrier
    prog = [_mvm(0, 0, stride=3), _mvm(24, 1, stride=3), _mvm(1, 2, stride=3), _mvm(25, 4, stride=3)]
    assert show(program.concurrent_program(prog, HW4, ident)) == [
        ("M", 0, 0), ("M", 0, 2), ("B", 0), ("M", 1, 1), ("M", 1, 4)]


@pytest.mark.parametrize("model,strategy", MODELS)
def test_every_barrier_is_needed(model, strategy):
    """Removing any one local barrier makes the golden model stop with HAZARD at the MVM it protected."""
    _, cmds = _stream(model, "fpga-tiny-4t", strategy)
    bars = [i for i, c in enumerate(cmds) if c.op is Opcode.BARRIER]
    if strategy == "linear":           # row-split blocks accumulate across tiles (sparse needs none: lattices)
        assert bars
    for i in bars:
        cut = cmds[:i] + cmds[i + 1:]
        # a fast pre-check with the scoreboard alone, then the golden model on the first few
        sb, hit = Scoreboard(HW4), None
        for j, c in enumerate(cut):
            if sb.step(c.op, c.args) is ErrorCode.HAZARD:
                hit = j
                break
        assert hit is not None and hit >= i and cut[hit].op is Opcode.MVM, f"barrier {i} is not needed"
        assert all(c.op is Opcode.BARRIER for c in cut[i:hit])
    for i in bars[:3]:
        r = run_commands(HW4, cmds[:i] + cmds[i + 1:], raise_on_error=False)
        assert r.error is ErrorCode.HAZARD or r.error == ErrorCode.HAZARD


def test_barrier_insertion_can_fail(monkeypatch):
    """Mutant: without the barriers the stream has hazards; the golden model and mapper's stream check say so."""
    monkeypatch.setattr(Scoreboard, "needs_barrier", lambda self, args: None)
    _stream.cache_clear()
    try:
        from compiler.stream_inputs import STREAM_SEED, stream_inputs
        cm = _compiled("tiny-bert", HW4, "linear")
        r = run_commands(HW4, cm.full_stream(stream_inputs(cm, STREAM_SEED)), raise_on_error=False)
        assert r.error == ErrorCode.HAZARD
        from mapper.stream_check import stream_check
        spec, _nb, factors = _factors("tiny-bert", None)
        with pytest.raises(StreamError, match="HAZARD"):
            stream_check(spec, factors, HW4, Strategy.LINEAR, placement=cm.placement)
    finally:
        _stream.cache_clear()


def test_sequential_configurations_unchanged():
    cm = _compiled("tiny-bert", HW1, "sparse")
    assert cm.physical is None and program.for_chip(cm) is cm
    logical = _compiled("tiny-bert", HW4, "sparse")
    flat = program.compile_model(*_factors("tiny-bert", None)[::2], HW4, strategy=Strategy.SPARSE,
                                 adc_mode=AdcMode.PAPER, colocate=True, concurrent=False)
    assert flat.physical is None
    assert [p.commands for p in flat.programs.values()] == [p.commands for p in cm.programs.values()]
    assert logical.physical is not None


def test_too_big_for_one_stream():
    cm = _compiled("tiny-bert", HW1, "linear")             # 64 arrays
    small = HW4.replace(n_arrays=48)                       # 2 tiles of 24
    with pytest.raises(ShapeError, match="concurrent stream"):
        program.chip_arrays(cm.placement, small)
    with pytest.raises(ShapeError, match="chip map"):
        program.chip_arrays(cm.placement, HW4, map_to_chip(cm.placement, HW4.replace(n_arrays=192)))


def test_build_streams_the_chip_map():
    from mapper.pipeline import BuildOptions, build
    r = build("tiny-bert", "fpga-tiny-4t", BuildOptions(strategy=Strategy.SPARSE, with_pareto=False, simulate=False))
    _, cmds = _stream("tiny-bert", "fpga-tiny-4t", "sparse")
    assert r.commands == cmds
    assert r.check.exact
    assert tuple(r.main.chip.physical) == _stream("tiny-bert", "fpga-tiny-4t", "sparse")[0].physical


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_predicted_faster_than_one_tile(strategy):
    stream = pytest.importorskip("perf.stream")
    _, cmds = _stream("tiny-bert", "fpga-tiny-4t", strategy)
    _, seq = _stream("tiny-bert", "fpga-tiny", strategy)
    p4, p1 = stream.predict(HW4, cmds), stream.predict(HW1, seq)
    assert p4.state == "HALTED" and p4.cycles < p1.cycles
    assert sum(x > 0 for x in p4.mvms_per_tile) == HW4.n_tiles
