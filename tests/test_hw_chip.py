"""CimChip (hw/chip.py) in Amaranth's Python simulator: results and final status against the golden model on
concurrent streams, the timing spec's cycles (docs/hw.md) on hand-computed streams, and mutants of the chip.

Small chips keep this fast: CHIP2 (2 tiles of 2 arrays, queues of 2, bus latency 2) and CHIP3 (3 tiles of 3
arrays: the tile of an array is not a shift, queues of 1, bus latency 1).
"""

from __future__ import annotations

import pytest

import sw_model
from cimisa import streamgen
from cimisa.check import check_runs
from cimisa.chip import ChipParams
from cimisa.config import HwConfig, load_hw
from cimisa.isa import Command, ErrorCode, Isa, RunState
from cimisa.timing import bus_latency, mvm_back, mvm_cycles, mvm_front, stream_cycles
from hw.chip import ChipError, CimChip, top
from hw.pysim import TileSim
from hw.tile import CimTile
from perf.stream import predict, predict_words

pytestmark = pytest.mark.rtl


def _chip(name, n_arrays, apt, dq, hop_ns, **kw):
    base = dict(rows=8, cols=8, weight_bits=4, input_bits=4, adc_bits=6, adcs_per_array=2, in_depth=32,
                out_depth=32, rows_per_cycle=4)
    base.update(kw)
    return HwConfig(name=name, n_arrays=n_arrays, **base,
                    chip=ChipParams(arrays_per_tile=apt, mvms_per_tile=1, topology="bus", link_bytes_per_ns=4.0,
                                    hop_latency_ns=hop_ns, queue_depth=dq))


CHIP2 = _chip("chip2", 4, 2, 2, 2.0)
CHIP3 = _chip("chip3", 9, 3, 1, 1.0, rows=6, rows_per_cycle=3, adcs_per_array=3)

_SIMS: dict[str, TileSim] = {}


def sim_of(cfg) -> TileSim:
    if cfg.name not in _SIMS:
        _SIMS[cfg.name] = TileSim(cfg)
    return _SIMS[cfg.name]


def run(cfg, cmds, **kw):
    """Run ``cmds`` on the chip and on sw_model; return (verdict, chip run)."""
    words = Isa.of(cfg).encode(cmds)
    ref = sw_model.run(cfg, words, raise_on_error=False)
    got = sim_of(cfg).run(words, **kw)
    return check_runs(ref, got, name=cfg.name), got


def mvm(array, out_addr, *, nrows=8, ncols=8, accumulate=False, cfg=CHIP2):
    return Command.mvm(array=array, row0=0, nrows=nrows, col0=0, ncols=ncols, in_addr=0, out_addr=out_addr,
                       accumulate=accumulate, adc_bits=cfg.adc_bits)


def program(cfg, arrays):
    """Weights on ``arrays`` (every row) and inputs at 0.. : the MVMs below compute on non-zero data."""
    out = []
    for a in arrays:
        for r in range(cfg.rows):
            out.append(Command.write_w(a, r, 0, [((a * 7 + r * 3 + c) % 15) - 7 for c in range(cfg.logical_cols)]))
    out.append(Command.load_in(0, [((k * 5) % 15) - 7 for k in range(cfg.rows)]))
    return out


# ---- the top --------------------------------------------------------------------------------------------------

def test_top_picks_the_chip_only_for_concurrent_configurations():
    for cfg, cls in ((CHIP2, CimChip), (load_hw("fpga-tiny-2t"), CimChip), (load_hw("fpga-micro"), CimTile)):
        dut = top(cfg)
        dut._MustUse__silence = True          # built, never elaborated
        assert isinstance(dut, cls)


def test_an_unbuildable_chip_is_refused_with_one_error():
    import dataclasses
    bad = dataclasses.replace(CHIP2, chip=dataclasses.replace(CHIP2.chip, topology="mesh", mesh_cols=2))
    with pytest.raises(ChipError, match="topology must be bus"):
        top(bad)


# ---- results and status against the golden model ---------------------------------------------------------------

def test_concurrent_mvms_barriers_and_reads_equal_the_golden_model():
    cmds = program(CHIP2, [0, 2]) + [
        mvm(0, 0), mvm(2, 8),                     # two tiles at once
        Command.barrier(0), mvm(1, 0, accumulate=True),   # tile 0 again, after its own barrier
        Command.barrier(), Command.read(0, 16),
        mvm(3, 16, ncols=4), mvm(2, 20, nrows=5), Command.barrier(3), mvm(2, 16, ncols=4, accumulate=True),
        Command.read(16, 12), Command.halt()]
    v, got = run(CHIP2, cmds)
    assert v.ok, v
    assert any(got.results) and got.state is RunState.HALTED
    # the same work in order on one controller takes longer
    assert got.cycles < stream_cycles(CHIP2, cmds)


def test_write_w_on_one_tile_while_another_computes():
    cmds = program(CHIP2, [0]) + [
        mvm(0, 0), Command.write_w(2, 1, 2, [3, -4, 5]), Command.write_w(3, 0, 0, [7] * 8),
        mvm(2, 8), mvm(3, 16), Command.barrier(), Command.read(0, 24), Command.halt()]
    v, _ = run(CHIP2, cmds)
    assert v.ok, v


def test_three_tiles_random_and_hazard_free_streams():
    isa = Isa.of(CHIP3)
    for seed in range(3):
        words = isa.encode(streamgen.random_commands(CHIP3, seed, 24))
        ref = sw_model.run(CHIP3, words, raise_on_error=False)
        v = check_runs(ref, sim_of(CHIP3).run(words), name=f"chip3 seed {seed}")
        assert v.ok, v


@pytest.mark.parametrize("seed", range(4))
def test_random_streams_equal_the_golden_model(seed):
    words = Isa.of(CHIP2).encode(streamgen.random_commands(CHIP2, seed, 30))
    ref = sw_model.run(CHIP2, words, raise_on_error=False)
    v = check_runs(ref, sim_of(CHIP2).run(words), name=f"seed {seed}")
    assert v.ok, v


@pytest.mark.parametrize("cfg", [CHIP2, CHIP3], ids=lambda c: c.name)
def test_hazards_stop_the_chip_as_the_golden_model(cfg):
    cases = streamgen.hazard_cases(cfg)
    assert cases
    for name, cmds in cases:
        v, got = run(cfg, program(cfg, [0]) + cmds + [Command.halt()])
        assert v.ok, (name, v)
        assert got.error is ErrorCode.HAZARD, name


def test_illegal_streams_stop_the_chip_as_the_golden_model():
    cases = streamgen.illegal_streams(CHIP2)
    assert {c.intent for c in cases} == streamgen.reachable_errors(CHIP2) >= {ErrorCode.HAZARD, ErrorCode.TRUNCATED}
    for case in cases:
        ref = sw_model.run(CHIP2, case.words, raise_on_error=False)
        got = sim_of(CHIP2).run(case.words)
        v = check_runs(ref, got, name=case.name)
        assert v.ok, v
        assert got.error is case.intent, case.name
        assert got.cycles == predict_words(CHIP2, case.words, harness="pysim").cycles, case.name


def test_truncated_streams():
    w = Command.write_w(2, 0, 0, list(range(-4, 4)))
    words_w = Isa.of(CHIP2).encode([mvm(0, 0), w])
    for words in ([*Isa.of(CHIP2).encode([mvm(0, 0), mvm(2, 8)])], words_w[:-1], words_w[:2],
                  Isa.of(CHIP2).encode([mvm(0, 0), Command.barrier(2)])):
        ref = sw_model.run(CHIP2, words, raise_on_error=False)
        got = sim_of(CHIP2).run(words)
        v = check_runs(ref, got)
        assert v.ok, v
        assert got.error is ErrorCode.TRUNCATED
        # the status changes in the first cycle every controller is idle after the last element
        assert got.cycles == predict_words(CHIP2, words, harness="pysim").cycles


# ---- cycles: the timing spec, computed by hand ----------------------------------------------------------------

def _fb(cfg, nrows, ncols):
    return mvm_front(cfg, 0, nrows, ncols), mvm_back(cfg, ncols)


def test_cycles_two_tiles_overlap_and_serialise_their_write_backs():
    cfg, L = CHIP2, bus_latency(CHIP2)
    cmds = [mvm(0, 0), mvm(2, 8, ncols=6), Command.halt()]
    fa, ba = _fb(cfg, 8, 8)
    fb, bb = _fb(cfg, 8, 6)
    r0, r1 = 2 + fa, 3 + fb                   # taken in cycles 2 and 3 (pushed in 1 and 2)
    assert r1 < r0                            # the shorter MVM on tile 1 requests the bus first
    e1 = r1 + L + bb                          # granted L cycles after its request
    e0 = max(r0 + L, e1) + ba                 # the bus is busy until e1 - 1
    halt = max(e0, e1)                        # HALT waits for every tile
    v, got = run(cfg, cmds)
    assert v.ok, v
    assert got.cycles == halt + 2             # T8: HALT dispatched in cycle h -> h + 2
    assert got.cycles < stream_cycles(cfg, cmds)


def test_cycles_single_mvm_is_its_cycles_plus_queue_and_bus_latency():
    cmds = [mvm(0, 0), Command.halt()]
    v, got = run(CHIP2, cmds)
    assert v.ok
    assert got.cycles == stream_cycles(CHIP2, cmds) + 1 + bus_latency(CHIP2)


def test_cycles_bus_contention_lowest_tile_wins():
    """Tile 1's MVM is dispatched first with one more row, so both request the bus in the same cycle."""
    cfg, L = CHIP2, bus_latency(CHIP2)
    y, x, z = mvm(0, 0, nrows=7), mvm(2, 8), mvm(1, 16, ncols=4)
    fx, bx = _fb(cfg, 8, 8)
    fy, by = _fb(cfg, 7, 8)
    fz, bz = _fb(cfg, 8, 4)
    r = 2 + fx
    assert 3 + fy == r
    ey = r + L + by                           # tile 0 wins the tie
    ex = ey + bx                              # tile 1 waits for the bus
    ez = max(ey + fz + L, ex) + bz            # tile 0's next MVM
    v, got = run(cfg, [x, y, z, Command.halt()])
    assert v.ok, v
    assert got.cycles == max(ex, ez) + 2


def test_cycles_queue_full_back_pressure():
    cfg, L = CHIP2, bus_latency(CHIP2)
    m = mvm(0, 0)
    per = mvm_cycles(cfg, 0, 8, 8) + L
    v, got = run(cfg, [m] * 4 + [Command.halt()])
    assert v.ok
    assert got.cycles == 2 + 4 * per + 2
    # element 3 waits for a free slot: the tile takes element 1 in cycle 2 + per, the slot is free one cycle later,
    # and only then does the decoder take word 4
    assert got.accepted_at[4] == (2 + per + 1) + 1


def test_cycles_barrier_waits_only_for_its_tile():
    cfg, L = CHIP2, bus_latency(CHIP2)
    small = mvm(2, 8, nrows=4, ncols=2)
    big = mvm(0, 0)
    fs, bs = _fb(cfg, 4, 2)
    e_small = 2 + fs + L + bs
    e_big = 3 + mvm_cycles(cfg, 0, 8, 8) + L if 3 + mvm_front(cfg, 0, 8, 8) + L >= e_small else None
    assert e_big is not None
    # BARRIER(tile 1) in cycle e_small, then tile 1's next MVM is pushed at e_small + 1, taken at e_small + 2
    f2, b2 = _fb(cfg, 4, 2)
    g2 = max(e_small + 2 + f2 + L, e_big)
    v, got = run(cfg, [small, big, Command.barrier(2), small, Command.halt()])
    assert v.ok, v
    assert got.cycles == max(e_big, g2 + b2) + 2


# ---- the performance model's prediction, when it exists ---------------------------------------------------------

def test_random_stream_cycles_equal_the_performance_model():
    for cfg in (CHIP2, CHIP3):
        for seed in range(3):
            cmds = streamgen.random_commands(cfg, seed, 24)
            v, got = run(cfg, cmds)
            assert v.ok, v
            assert got.cycles == predict(cfg, cmds, harness="pysim").cycles, (cfg.name, seed)


def test_hand_written_stream_cycles_equal_the_performance_model():
    cmds = program(CHIP2, [0, 2]) + [
        mvm(0, 0), mvm(2, 8, ncols=6), mvm(1, 16, nrows=5), Command.barrier(2), mvm(3, 24, ncols=3),
        Command.write_w(2, 3, 1, [1, 2, 3]), Command.read(0, 4), mvm(2, 8, accumulate=True), Command.halt()]
    v, got = run(CHIP2, cmds)
    assert v.ok, v
    assert got.cycles == predict(CHIP2, cmds, harness="pysim").cycles


# ---- mutants of the chip: the tests above must catch them --------------------------------------------------------

def _mutate(monkeypatch, old, new):
    from tests.test_mutants import mutant
    monkeypatch.setattr(CimChip, "elaborate", mutant(CimChip.__dict__["elaborate"], old, new))
    _SIMS.clear()


@pytest.mark.parametrize("old,new,test", [
    ("for t in tiles:", "for t in reversed(tiles):", test_cycles_bus_contention_lowest_tile_wins),
    ("m.d.sync += h_v.eq(h_v & ~(Const(1, T) << t_el))", "m.d.sync += h_v.eq(0)",
     lambda: test_hazards_stop_the_chip_as_the_golden_model(CHIP2)),
    ("depth=Dq)", "depth=Dq + 1)", test_cycles_queue_full_back_pressure),
    ("with m.If(is_mvm & (e.error == ErrorCode.NONE) & conflict):", "with m.If(0):",
     lambda: test_hazards_stop_the_chip_as_the_golden_model(CHIP3)),
    ("ok = all_idle & g_idle", "ok = g_idle", test_cycles_two_tiles_overlap_and_serialise_their_write_backs),
    ("hi.eq(w_in.out_addr + 1 - w_in.out_stride", "hi.eq(w_in.out_addr - w_in.out_stride",
     lambda: test_hazards_stop_the_chip_as_the_golden_model(CHIP2)),
    ("hi.eq(w_in.out_addr + 1 - w_in.out_stride", "hi.eq(w_in.out_addr + 2 - w_in.out_stride",
     test_concurrent_mvms_barriers_and_reads_equal_the_golden_model),      # adjacent spans on two tiles
    ("h_mk[u].eq(Mux(diff == 0, common, below))", "h_mk[u].eq(common)",
     lambda: test_hazards_stop_the_chip_as_the_golden_model(CHIP2)),       # case narrowed-lattice
    ("~diff[:i + 1].any()", "~diff[:i].any()", lambda: test_hazards_stop_the_chip_as_the_golden_model(CHIP2)),
], ids=["arbiter_highest_wins", "local_barrier_clears_all", "queue_one_deeper", "no_hazard_check",
        "halt_without_waiting", "span_one_short", "span_one_long", "lattice_not_narrowed", "lattice_one_bit_wide"])
def test_chip_mutants_are_caught(monkeypatch, old, new, test):
    _mutate(monkeypatch, old, new)
    try:
        with pytest.raises((AssertionError, TimeoutError)):
            test()
    finally:
        _SIMS.clear()


def test_controller_roles_and_arguments_are_checked():
    from hw.controller import Controller
    with pytest.raises(ValueError, match="role must be one of"):
        Controller(CHIP2, role="chip")
    with pytest.raises(ValueError, match="array_base"):
        Controller(CHIP2, role="tile", array_base=CHIP2.n_arrays)
    g, t = Controller(CHIP2, role="global"), Controller(CHIP2, role="tile", array_base=2)
    for c in (g, t):
        c._MustUse__silence = True
    assert "xbar" not in g.signature.members and "bus_req" in t.signature.members
    assert t.signature.members["xbar"].signature.members["rd_array"].shape == 1   # 2 arrays per tile
