"""perf.stream: the predicted cycles of one stream on the generated hardware (docs/perf.md, "Stream mode").

Hand-computed timelines of the chip timing spec (T1-T8) on a 3-tile chip of fpga-micro's arrays (one array per
tile, queues of 2, bus latency 2), the single controller's formula, invariants on random concurrent streams, and
mutants the model must be sensitive to. The RTL comparisons (``rtl`` / ``cosim`` marks) are at the end.
"""

from __future__ import annotations

import dataclasses

import pytest

import perf.stream as ps
from cimisa.chip import ChipParams
from cimisa.config import load_hw
from cimisa.isa import Command, Isa
from cimisa.streamgen import random_commands
from cimisa.timing import bus_latency, mvm_back, mvm_cycles, mvm_front, stream_cycles
from perf import StreamPrediction, predict, predict_words


def chip(tiles: int = 3, depth: int = 2, hop_ns: float = 2.0):
    """fpga-micro's arrays as ``tiles`` tiles of one array on a bus (the RTL's chip; no problems to build it)."""
    base = load_hw("fpga-micro")
    return dataclasses.replace(base, name=f"micro-{tiles}t", n_arrays=tiles, chip=ChipParams(
        arrays_per_tile=1, topology="bus", link_bytes_per_ns=4.0, hop_latency_ns=hop_ns, queue_depth=depth))


C = chip()
K = ps.stop_cycles(C)
L = bus_latency(C)


def mvm(array, *, nrows=4, ncols=2, out=0):
    return Command.mvm(array=array, row0=0, nrows=nrows, col0=0, ncols=ncols, in_addr=0, out_addr=out,
                       adc_bits=C.adc_bits)


def ww(array, row=0):
    return Command.write_w(array, row, 0, [1] * C.logical_cols)      # header + one payload word


F, B = mvm_front(C, 0, 4, 2), mvm_back(C, 2)


def test_config_is_concurrent_and_constants():
    assert C.n_tiles == 3 and L == 2 and Isa.of(C).payload_words(ww(0).op, C.logical_cols) == 1
    assert (F, B) == (20, 4) and F + B == mvm_cycles(C, 0, 4, 2)


def test_two_mvms_on_two_tiles_serialise_only_on_the_bus():
    # e0 MVM tile 0: dispatched 1, taken 2, granted 2+F+L, done +B; e1 MVM tile 1: taken 3, requests one cycle
    # later but waits for the bus until tile 0's write-back ends; HALT once both are idle.
    p = predict(C, [mvm(0, out=0), mvm(1, out=8), Command.halt()], timeline=True)
    g0 = 2 + F + L
    assert p.cycles == g0 + 2 * B + K and p.state == "HALTED" and p.concurrent
    assert [iv[1:3] for iv in p.timeline if iv[0] == "bus"] == [(g0, g0 + B), (g0 + B, g0 + 2 * B)]
    assert p.mvms_per_tile == (1, 1, 0) and p.bus_busy == 2 * B
    assert p.tile_bus_wait == (0, B - 1, 0)
    assert p.tile_busy == (F + L + B, F + L + B - 1 + B, 0)
    # The same work on one controller (no queues): sum of the commands + 2.
    seq = dataclasses.replace(C, chip=dataclasses.replace(C.chip, queue_depth=0))
    assert predict(seq, [mvm(0), mvm(1, out=8), Command.halt()]).cycles == 2 * (F + B) + 1 + 2


def test_bus_tie_goes_to_the_lowest_tile(monkeypatch):
    # Tile 1's MVM (front F) is dispatched one cycle before tile 0's (front F - 1): both request in cycle 2 + F.
    # Tile 0 wins, writes back, then runs its queued WRITE_W (4 cycles) while tile 1 writes back.
    f0 = mvm_front(C, 0, 3, 2)
    assert f0 == F - 1
    cmds = [mvm(1, nrows=4, out=0), mvm(0, nrows=3, out=8), ww(0), Command.halt()]
    g = 2 + F + L
    p = predict(C, cmds, timeline=True)
    assert [(iv[0], iv[1]) for iv in p.timeline if iv[0] == "bus"] == [("bus", g), ("bus", g + B)]
    assert [iv[1:3] for iv in p.timeline if iv[0] == "tile0" and iv[3] == "MVM"] == [(3, g + B)]
    assert p.cycles == g + 2 * B + K
    monkeypatch.setattr(ps, "_grant", max)                            # mutant: ties to the highest tile
    assert predict(C, cmds).cycles == g + 2 * B + 4 + K


def test_full_queue_holds_the_dispatcher():
    # Queue depth 2: tile 0 runs an MVM while three WRITE_Ws (6 elements) wait; the dispatcher stalls on the full
    # queue, one slot per element tile 0 takes, so tile 1's MVM is dispatched only after the last payload word.
    cmds = [mvm(0), ww(0, 0), ww(0, 1), ww(0, 2), mvm(1, out=8), Command.halt()]
    x = 2 + F + L + B                                   # tile 0 takes the first WRITE_W header
    # e3 at x+1, e4 x+3, e5 x+5, e6 x+7 (a slot frees the cycle after each take); e7 (tile 1's MVM) at x+8.
    done = x + 9 + F + L + B
    p = predict(C, cmds)
    assert p.cycles == done + K
    assert p.dispatch_stall == (x + 1 - 4) + 3 * 1 + (done - 37)
    deeper = dataclasses.replace(C, chip=dataclasses.replace(C.chip, queue_depth=3))   # queue depth off by one
    assert predict(deeper, cmds).cycles < p.cycles


def test_local_barrier_waits_for_its_tile_only():
    f16 = mvm_front(C, 0, 16, 2)
    long0, short1 = mvm(0, nrows=16, out=0), mvm(1, out=8)
    # tile 0: taken 2, granted 2+f16+L, done +B; tile 1: taken 3, granted 3+F+L, done +B (bus free then).
    t0_done, t1_done = 2 + f16 + L + B, 3 + F + L + B
    assert t1_done < 2 + f16 + L
    local = predict(C, [long0, short1, Command.barrier(array=1), mvm(1, out=8), Command.halt()])
    # BARRIER at t1_done; the MVM dispatched next cycle, taken one later; its grant waits for tile 0's write-back.
    take = t1_done + 2
    assert local.cycles == max(take + F + L, t0_done) + B + K
    every = predict(C, [long0, short1, Command.barrier(), mvm(1, out=8), Command.halt()])
    assert every.cycles == t0_done + 2 + F + L + B + K
    assert local.cycles < every.cycles


def test_chip_commands_drain_every_tile_and_hold_tile_commands():
    cmds = [Command.load_in(0, [1, 2, 3]), mvm(0), mvm(1, out=8), Command.read(0, 2), mvm(0), Command.halt()]
    # LOAD_IN: header in cycle 1 (1 cycle), payload word in 2 (1 + 3 cycles): the global controller is busy to 6.
    # MVM tile 0 dispatched 6, taken 7, granted 7+F+L, done +B; MVM tile 1 dispatched 7, taken 8, granted when
    # the bus frees; READ when both are idle (count + 2 cycles); the next MVM waits for the global controller.
    g0 = 7 + F + L
    t1_done = g0 + 2 * B
    read_end = t1_done + 2 + 2
    p = predict(C, cmds)
    assert p.cycles == read_end + 1 + F + L + B + K
    assert p.global_busy == 1 + 4 + 4


def test_hazard_stops_at_the_failing_header():
    p = predict(C, [mvm(0, out=0), mvm(1, out=1), Command.halt()])
    assert p.state == "ERROR" and p.commands == 2 and p.cycles == 2 + K and p.stop_cycle == 2
    # Words after the failing header are accepted (and discarded) one per cycle: 11 words; the co-simulation
    # harness counts one cycle more than hw.pysim's testbench for that drain.
    long = [mvm(0, out=0), mvm(1, out=1), *[ww(2, r) for r in range(5)], Command.halt()]
    assert predict(C, long).cycles == 2 + 11 + 1 and predict(C, long, harness="pysim").cycles == 2 + 11
    with pytest.raises(ValueError, match="harness"):
        predict(C, long, harness="icarus")


def test_truncated_stream_ends_when_its_last_element_completes():
    p = predict(C, [mvm(0), mvm(1, out=8)])
    assert p.state == "TRUNCATED" and p.cycles == 2 + F + L + 2 * B + 1


@pytest.mark.parametrize("hw", ["fpga-micro", "fpga-tiny", "fpga-tiny-sliced"])
def test_not_concurrent_is_the_single_controller_formula(hw):
    cfg = load_hw(hw)
    for seed in range(4):
        cmds = random_commands(cfg, seed, 80)
        p = predict(cfg, cmds)
        assert p.state == "HALTED" and not p.concurrent
        assert p.cycles == stream_cycles(cfg, cmds)
    seq = dataclasses.replace(C, chip=dataclasses.replace(C.chip, queue_depth=0))      # several tiles, no queues
    cmds = random_commands(seq, 1, 80)
    assert predict(seq, cmds).cycles == stream_cycles(seq, cmds)


@pytest.mark.parametrize("hw", ["fpga-tiny-2t", "fpga-tiny-4t"])
def test_random_concurrent_streams_keep_the_resource_rules(hw):
    cfg = load_hw(hw)
    apt = cfg.chip.arrays_per_tile
    for seed in range(6):
        cmds = random_commands(cfg, seed, 150)
        p = predict(cfg, cmds, timeline=True)
        assert isinstance(p, StreamPrediction) and p.state == "HALTED"
        n = [0] * cfg.n_tiles
        for c in cmds:
            if c.op.name == "MVM":
                n[c.array // apt] += 1
        assert list(p.mvms_per_tile) == n
        assert p.bus_busy == sum(mvm_back(cfg, c.ncols) for c in cmds if c.op.name == "MVM")
        by_res: dict[str, list] = {}
        for res, a, b, _kind, _ci in p.timeline:
            assert a < b
            by_res.setdefault(res, []).append((a, b))
        for res, ivs in by_res.items():             # one element at a time on a tile, the bus, the controller
            if res != "dispatch":
                ivs.sort()
                assert all(b0 <= a1 for (_, b0), (a1, _) in zip(ivs, ivs[1:])), res
        # Never slower than a fully serial chip with every write-back paying the bus latency; never faster than
        # the busiest tile.
        assert p.cycles <= stream_cycles(cfg, cmds) + L_of(cfg) * sum(n) + len(Isa.of(cfg).encode(cmds))
        assert p.cycles >= max(p.tile_busy) and p.cycles >= p.bus_busy


def L_of(cfg):
    return bus_latency(cfg)


def test_bus_latency_counts(monkeypatch):
    cmds = [mvm(0), Command.halt()]
    assert predict(C, cmds).cycles == 2 + F + L + B + K == 2 + mvm_cycles(C, 0, 4, 2) + L + K
    assert predict(chip(hop_ns=5.0), cmds).cycles == predict(C, cmds).cycles + 3
    monkeypatch.setattr(ps.timing, "bus_latency", lambda cfg: 0)       # mutant: the latency ignored
    assert predict(C, cmds).cycles == 2 + F + B + K


def test_words_and_commands_agree_and_it_is_fast():
    import time
    cfg = load_hw("fpga-tiny-4t")
    cmds = random_commands(cfg, 3, 3000)
    words = Isa.of(cfg).encode(cmds)
    t = time.perf_counter()
    p = predict_words(cfg, words)
    assert time.perf_counter() - t < 2.0
    assert p == predict(cfg, cmds) and p.words == len(words) and p.commands == len(cmds)
    assert p.to_json()["cycles"] == p.cycles
