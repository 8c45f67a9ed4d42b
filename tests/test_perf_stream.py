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
    assert (F, B) == (24, 4) and F + B == mvm_cycles(C, 0, 4, 2)


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
    assert p.dispatch_stall == (x + 1 - 4) + 3 * 1 + (done - (x + 9))   # HALT waits from x + 9
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


def test_truncated_stream_ends_when_every_controller_is_idle():
    p = predict(C, [mvm(0), mvm(1, out=8)])
    assert p.state == "TRUNCATED" and p.cycles == 2 + F + L + 2 * B + K


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


# ---- against the RTL (hw.chip.CimChip / hw.tile.CimTile in Amaranth's simulator; the fast Verilator harness) ----

HAND = {
    "two-tiles": [mvm(0, out=0), mvm(1, out=8), Command.halt()],
    "bus-tie": [mvm(1, nrows=4, out=0), mvm(0, nrows=3, out=8), ww(0), Command.halt()],
    "queue-full": [mvm(0), ww(0, 0), ww(0, 1), ww(0, 2), mvm(1, out=8), Command.halt()],
    "local-barrier": [mvm(0, nrows=16, out=0), mvm(1, out=8), Command.barrier(array=1), mvm(1, out=8),
                      Command.halt()],
    "all-barrier": [mvm(0, nrows=16, out=0), mvm(1, out=8), Command.barrier(), mvm(1, out=8), Command.halt()],
    "chip-drain": [Command.load_in(0, [1, 2, 3]), mvm(0), mvm(1, out=8), Command.read(0, 2), mvm(0),
                   Command.halt()],
    "hazard": [mvm(0, out=0), mvm(1, out=1), Command.halt()],
    "truncated": [mvm(0), mvm(1, out=8)],
}


def _rtl_cycles(cfg, streams):
    """``{name: (measured, predicted)}`` of ``streams`` ({name: words}) on cfg's RTL top in hw.pysim."""
    from hw.pysim import TileSim  # noqa: PLC0415
    sim = TileSim(cfg)
    return {name: (sim.run(w).cycles, predict_words(cfg, w, harness="pysim").cycles) for name, w in streams.items()}


def test_rtl_chip_cycles_equal_the_hand_timelines(monkeypatch):
    isa = Isa.of(C)
    got = _rtl_cycles(C, {n: isa.encode(c) for n, c in HAND.items()})
    assert {n: m for n, (m, _p) in got.items()} == {n: p for n, (_m, p) in got.items()}
    monkeypatch.setattr(ps, "_grant", max)            # the mutant must be caught by the RTL comparison too
    assert predict(C, HAND["bus-tie"], harness="pysim").cycles != got["bus-tie"][0]


@pytest.mark.parametrize("cfg", [C, chip(2, depth=1, hop_ns=1.0), chip(3, depth=4, hop_ns=3.0)],
                         ids=lambda c: f"{c.name}-q{c.chip.queue_depth}-l{bus_latency(c)}")
def test_rtl_chip_cycles_equal_prediction_on_random_streams(cfg):
    from cimisa.streamgen import hazard_cases, illegal_streams  # noqa: PLC0415
    isa = Isa.of(cfg)
    streams = {f"random-{s}": isa.encode(random_commands(cfg, s, 40)) for s in range(5)}
    if cfg is C:
        streams.update({st.name: st.words for st in illegal_streams(cfg, seed=0, prefix=2)[::3]})
        streams.update({n: isa.encode(c) for n, c in hazard_cases(cfg)})
    got = _rtl_cycles(cfg, streams)
    diff = {n: mp for n, mp in got.items() if mp[0] != mp[1]}
    assert not diff, diff
    assert sum(m for m, _ in got.values()) > 20 * len(got)


def test_rtl_single_tile_cycles_equal_prediction():
    from cimisa.streamgen import illegal_streams  # noqa: PLC0415
    cfg = load_hw("fpga-micro")
    isa = Isa.of(cfg)
    streams = {f"random-{s}": isa.encode(random_commands(cfg, s, 30)) for s in range(3)}
    streams.update({st.name: st.words for st in illegal_streams(cfg, seed=0, prefix=2)[::2]})
    got = _rtl_cycles(cfg, streams)
    assert {n: m for n, (m, _p) in got.items()} == {n: p for n, (_m, p) in got.items()}


@pytest.mark.cosim
@pytest.mark.parametrize("strategy", ["linear", "auto"])
def test_tiny_bert_on_four_tiles_predicted_equals_measured(strategy):
    """The mapper's tiny-bert stream on fpga-tiny-4t in the fast Verilator harness (one build, cached)."""
    from sim import fast  # noqa: PLC0415
    from sim.cases import make_cases  # noqa: PLC0415
    from sim.model_stream import model_stream  # noqa: PLC0415
    if fast.unavailable_reason():
        pytest.skip(fast.unavailable_reason())
    cfg = load_hw("fpga-tiny-4t")
    st = model_stream("tiny-bert", cfg, strategy)
    fast.build(cfg)
    rep = fast.run(cfg, make_cases(cfg, [(st.name, st.words)]))
    (case,) = rep.cases
    assert case.mismatches == 0 and case.status[0] == "HALTED"
    p = predict_words(cfg, st.words)
    assert p.cycles == case.cycles
    one = load_hw("fpga-tiny")                          # the same model on one tile is predicted slower
    assert predict_words(one, model_stream("tiny-bert", one, strategy).words).cycles > p.cycles


# ---- the co-simulation summary (sim.flow / python -m sim) ---------------------------------------------------------

def _fake_report(cases, cycles, timed_out=()):
    from sim.job import CaseReport, JobReport  # noqa: PLC0415
    return JobReport("verilator-fast", [
        CaseReport(name=c.name, words=len(c.words), commands=c.commands, cycles=n, sim_cycles=n + 20, wall_s=0.1,
                   status=c.expected_status, expected_status=c.expected_status, results=len(c.expected_results),
                   expected_results=len(c.expected_results), mismatches=0, timed_out=c.name in timed_out)
        for c, n in zip(cases, cycles)])


def test_summary_reports_predicted_measured_and_ratio(capsys):
    from types import SimpleNamespace  # noqa: PLC0415

    from sim.__main__ import _print_summary  # noqa: PLC0415
    from sim.cases import make_cases  # noqa: PLC0415
    from sim.flow import NOTE_HANDSHAKE, NOTE_TIMED_OUT, summarize  # noqa: PLC0415
    isa = Isa.of(C)
    items = [("a", isa.encode(HAND["two-tiles"])), ("b", isa.encode(HAND["chip-drain"])),
             ("c", isa.encode(HAND["bus-tie"]))]
    pred = [predict_words(C, w).cycles for _, w in items]
    build = SimpleNamespace(directory="d", verilog="v", seconds=1.0, reused=True)
    cases = make_cases(C, items)
    s = summarize(C, _fake_report(cases, [pred[0], pred[1] + 10, pred[2]], timed_out={"c"}), model="m",
                  strategies=[], build=build, cases=cases)
    a, b, c = s["streams"]
    assert (a["predicted_cycles"], a["measured_cycles"], a["cycle_ratio"], a["cycle_note"]) == (pred[0], pred[0], 1.0,
                                                                                                  None)
    assert b["cycle_ratio"] == round(pred[1] / (pred[1] + 10), 6) and b["cycles"] == b["measured_cycles"]
    assert c["cycle_ratio"] is None and c["cycle_note"] == NOTE_TIMED_OUT
    assert s["cycle_ratio_worst"] == b["cycle_ratio"] and s["cycle_ratio_worst_stream"] == "b"
    assert s["predicted_cycles"] == sum(pred) and s["cycle_note"] == NOTE_TIMED_OUT
    _print_summary(s, None)
    out = capsys.readouterr().out
    assert "predicted" in out and f"{b['cycle_ratio']:.4f} on b" in out and "note: cycle ratios" in out
    gappy = make_cases(C, items, gap=0.3)                 # not comparable: reported, no ratio
    s = summarize(C, _fake_report(gappy, pred), model="m", strategies=[], build=build, cases=gappy)
    assert [st["cycle_ratio"] for st in s["streams"]] == [None] * 3 and s["cycle_ratio_worst"] is None
    assert s["cycle_note"] == NOTE_HANDSHAKE and s["streams"][0]["predicted_cycles"] == pred[0]
