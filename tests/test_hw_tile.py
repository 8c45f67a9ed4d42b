"""CimTile in Amaranth's Python simulator against sw_model: random legal streams, every error, back-pressure.

Every output word and the final (state, error, index) must be identical (the one checker, cimisa.check); an
expect-fail test proves the checker reports mismatches.
"""

from __future__ import annotations

import dataclasses
import math
import random
from fractions import Fraction

import numpy as np
import pytest

import sw_model
from cimisa import rules, semantics, streamgen
from cimisa.check import check_runs
from cimisa.config import HwConfig, load_hw
from cimisa.isa import Command, EncodeError, ErrorCode, Isa, Opcode
from hw.pysim import TileSim, check_words, run_tile
from hw.timing import command_cycles, stream_cycles

MICRO = load_hw("fpga-micro")
TINY = load_hw("fpga-tiny")
#: Nothing a power of two: exercises constant division, partial ADC rounds and header values past the ranges.
ODD = HwConfig(name="odd", rows=12, cols=10, n_arrays=3, weight_bits=3, input_bits=5, adc_bits=6,
               adcs_per_array=3, in_depth=20, out_depth=24, rows_per_cycle=3)


#: 16-bit weights and inputs on 4 rows: products reach 2**30, so REQUANT's every shift (0..31) can see a tie.
WIDE = HwConfig(name="wide16", rows=4, cols=4, n_arrays=2, weight_bits=16, input_bits=16, adc_bits=18,
                adcs_per_array=4, in_depth=16, out_depth=16, rows_per_cycle=4)


#: Number formats (:mod:`cimisa.formats`) on small tiles. 1-bit differential cells (6 physical columns per 4-bit
#: weight, one ADC round per slice with 3 lanes: the accumulator forward path); 2-bit offset cells with the bias
#: column (one unused physical column), sign-magnitude inputs through a 2-bit DAC, nearest rounding; two twos
#: slices (a signed 2-bit top slice) with a 3-bit DAC, nearest rounding.
DIFF1 = HwConfig(name="diff1", rows=8, cols=24, n_arrays=2, weight_bits=4, input_bits=5, adc_bits=4,
                 adcs_per_array=3, in_depth=16, out_depth=16, rows_per_cycle=4, cell_bits=1,
                 weight_encoding="differential")
OFFSET2 = HwConfig(name="offset2", rows=6, cols=11, n_arrays=2, weight_bits=5, input_bits=6, adc_bits=5,
                   adcs_per_array=2, in_depth=16, out_depth=16, rows_per_cycle=3, cell_bits=2,
                   weight_encoding="offset", input_encoding="sign-magnitude", dac_bits=2, adc_rounding="nearest")
TWOS4 = HwConfig(name="twos4", rows=4, cols=8, n_arrays=2, weight_bits=6, input_bits=7, adc_bits=7,
                 adcs_per_array=4, in_depth=16, out_depth=16, rows_per_cycle=2, cell_bits=4, dac_bits=3,
                 adc_rounding="nearest")
SLICED = load_hw("fpga-tiny-sliced")
FORMATS = [DIFF1, OFFSET2, TWOS4]


def random_commands(cfg, seed, n, *, halt=True):
    """The shared generator's program (:mod:`cimisa.streamgen`): weights and inputs first, then ``n`` commands."""
    return streamgen.random_commands(cfg, seed, n, halt=halt)


#: The batch runner now lives in :mod:`hw.pysim` (the test name is kept for the mutation tests).
TileBatch = TileSim


_BATCHES: dict = {}


def tile_batch(cfg) -> TileBatch:
    """Return the module's shared :class:`TileBatch` for ``cfg`` (the unmodified RTL)."""
    if cfg not in _BATCHES:
        _BATCHES[cfg] = TileBatch(cfg)
    return _BATCHES[cfg]


def stream_problems(cfg, streams, batch: TileBatch | None = None) -> list[str]:
    """Run named word streams on the RTL and on sw_model; return every mismatch, prefixed by the stream's name."""
    batch = batch if batch is not None else tile_batch(cfg)
    out = []
    for name, words in streams:
        try:
            out += check_words(cfg, words, sim=batch, name=name).lines()
        except TimeoutError as exc:
            out.append(f"{name}: {exc}")
    return out


def check_stream(cfg, words, **kw):
    ref = sw_model.run(cfg, words, raise_on_error=False)
    got = run_tile(cfg, words, **kw)
    verdict = check_runs(ref, got)
    assert verdict.ok, str(verdict)
    return ref, got


@pytest.mark.parametrize("cfg,seeds,n", [(MICRO, range(4), 18), (TINY, range(2), 12), (ODD, range(3), 15)],
                         ids=["micro", "tiny", "odd"])
def test_random_legal_streams(cfg, seeds, n):
    """The shared generator's streams: prologue, exact and lossy MVMs read back, REQUANTs probed, corners."""
    isa = Isa.of(cfg)
    seen = set()
    batch = tile_batch(cfg)
    nonzero = 0
    for seed in seeds:
        cmds = random_commands(cfg, seed, n)
        seen |= {c.op for c in cmds}
        words = isa.encode(cmds)
        ref, got = sw_model.run(cfg, words), batch.run(words)
        verdict = check_runs(ref, got, expected_cycles=stream_cycles(cfg, cmds))
        assert verdict.ok, str(verdict)
        assert ref.ok
        nonzero += int(np.count_nonzero(ref.results))
    assert set(Opcode) - seen == set()
    assert nonzero > 0


def test_back_pressure_and_trailing_words():
    cfg = MICRO
    isa = Isa.of(cfg)
    rng = np.random.default_rng(7)
    cmds = random_commands(cfg, 7, 8) + [Command.read(0, 5), Command.mvm(
        array=0, row0=0, nrows=16, col0=0, ncols=16, in_addr=0, out_addr=0, adc_bits=8)]
    words = isa.encode(cmds)            # words after HALT: the tile must accept and discard them
    pattern = rng.integers(0, 3, 5000)
    ref, got = check_stream(cfg, words, res_ready=lambda c: bool(pattern[c % len(pattern)]))
    assert ref.ok and len(got.accepted_at) == len(words)


def _illegal_opcode_word(isa, raw):
    """A BARRIER header with opcode field ``raw`` (:func:`cimisa.streamgen.with_opcode`)."""
    return streamgen.with_opcode(isa, isa.encode_header(Command.barrier()), raw)


def error_cases(cfg):
    """Yield (name, words thunk) of streams that stop with each ErrorCode (and truncation variants)."""
    isa = Isa.of(cfg)
    R, C, D, O = cfg.rows, cfg.cols, cfg.in_depth, cfg.out_depth
    pre = [Command.write_w(0, 1, 0, [1] * C), Command.load_in(0, [1] * min(D, R)),
           Command.mvm(array=0, row0=0, nrows=4, col0=0, ncols=3, in_addr=0, out_addr=0, adc_bits=cfg.adc_bits),
           Command.read(0, 3)]
    enc = isa.encode
    tail = enc([Command.read(0, 2), Command.halt()])
    mvm = dict(array=0, row0=0, nrows=2, col0=0, ncols=2, in_addr=0, in_stride=1, out_addr=0, out_stride=1,
               accumulate=0, adc_bits=1, adc_shift=0)

    def bad(op, **args):
        return Command(op, args, tuple([0] * args["count"]) if op in (Opcode.WRITE_W, Opcode.LOAD_IN) else ())

    # Header-only encodings (payload never sent when the check fails).
    def hdr(op, **args):
        return [isa.encode_header(Command(op, args, tuple([0] * args.get("count", 0))
                                          if op in (Opcode.WRITE_W, Opcode.LOAD_IN) else ()))]

    yield "write_bad_row", lambda: enc(pre) + hdr(Opcode.WRITE_W, array=0, row=R, col=0, count=1) + tail
    yield "illegal_opcode_0", lambda: enc(pre) + [_illegal_opcode_word(isa, 0)] + tail
    yield "illegal_opcode_15", lambda: enc(pre) + [_illegal_opcode_word(isa, 15)] + tail
    yield "write_bad_array", lambda: enc(pre) + hdr(Opcode.WRITE_W, array=cfg.n_arrays, row=0, col=0, count=1) + tail
    yield "write_bad_col", lambda: enc(pre) + hdr(Opcode.WRITE_W, array=0, row=0, col=C - 1, count=2) + tail
    yield "write_count0", lambda: enc(pre) + hdr(Opcode.WRITE_W, array=0, row=0, col=0, count=0) + tail
    yield "load_bad_addr", lambda: enc(pre) + hdr(Opcode.LOAD_IN, addr=D - 2, count=3) + tail
    yield "mvm_bad_array", lambda: enc(pre) + enc([bad(Opcode.MVM, **dict(mvm, array=cfg.n_arrays))]) + tail
    yield "mvm_bad_row", lambda: enc(pre) + enc([bad(Opcode.MVM, **dict(mvm, row0=R - 1, nrows=2))]) + tail
    yield "mvm_bad_col_and_adc", lambda: enc(pre) + enc([bad(Opcode.MVM, **dict(mvm, ncols=0, adc_bits=0))]) + tail
    yield "mvm_bad_adc", lambda: enc(pre) + enc([bad(Opcode.MVM, **dict(mvm, adc_bits=cfg.adc_bits + 1))]) + tail
    yield "mvm_bad_in", lambda: enc(pre) + enc([bad(Opcode.MVM, **dict(mvm, in_addr=D - 2, in_stride=3))]) + tail
    yield "mvm_bad_out", lambda: enc(pre) + enc([bad(Opcode.MVM, **dict(mvm, out_addr=O - 1))]) + tail
    yield "mvm_out_alias", lambda: enc(pre) + enc([bad(Opcode.MVM, **dict(mvm, out_stride=0))]) + tail
    yield "requant_bad_src", lambda: enc(pre) + enc([bad(Opcode.REQUANT, src=O - 1, count=2, dst=0, dst_stride=1,
                                                 shift=0)]) + tail
    yield "requant_bad_dst", lambda: enc(pre) + enc([bad(Opcode.REQUANT, src=0, count=2, dst=D - 1, dst_stride=1,
                                                 shift=0)]) + tail
    yield "requant_alias", lambda: enc(pre) + enc([bad(Opcode.REQUANT, src=0, count=2, dst=0, dst_stride=0,
                                               shift=0)]) + tail
    yield "read_bad", lambda: enc(pre) + enc([bad(Opcode.READ, addr=O - 1, count=2)]) + tail
    yield "read_count0", lambda: enc(pre) + enc([bad(Opcode.READ, addr=0, count=0)]) + tail
    yield "barrier_bad_array", lambda: enc(pre) + enc([bad(Opcode.BARRIER, array=cfg.n_arrays, local=1)]) + tail
    wlo, whi = isa.elem_range("weight")
    full_w = enc([Command.write_w(0, 2, 0, [wlo + k % (whi - wlo + 1) for k in range(C)])])
    full_x = enc([Command.load_in(1, [(-1) ** k * (k % 4) for k in range(min(D - 1, 40))])])
    yield "trunc_write_header", lambda: enc(pre) + full_w[:1]
    yield "trunc_write_payload", lambda: enc(pre) + full_w[:-1]
    yield "trunc_load_payload", lambda: enc(pre) + full_x[:-1]
    yield "trunc_no_halt_after_write", lambda: enc(pre) + full_w
    yield "trunc_no_halt_after_load", lambda: enc(pre) + full_x
    yield "trunc_no_halt_read", lambda: enc(pre)
    yield "trunc_no_halt_barrier", lambda: enc(pre + [Command.barrier()])
    yield "trunc_no_halt_mvm", lambda: enc(pre[:3])
    yield "trunc_requant", lambda: enc(pre + [Command.requant(src=0, count=3, dst=0, dst_stride=1, shift=1)])
    yield "halt_last", lambda: enc(pre + [Command.halt()])
    yield "error_at_first", lambda: [_illegal_opcode_word(isa, 9)]
    yield "halt_then_garbage", lambda: enc([Command.halt()]) + [_illegal_opcode_word(isa, 0)] + full_w


def _cases(cfg):
    for name, build in error_cases(cfg):
        try:
            yield name, build()
        except EncodeError:          # a field value that does not fit this configuration's widths
            continue


def test_error_cases_cover_every_code():
    codes = set()
    for cfg in (MICRO, TINY, ODD):
        for _name, words in _cases(cfg):
            codes.add(sw_model.run(cfg, words, raise_on_error=False).error)
    # HAZARD needs a concurrent chip (tests/test_hw_chip.py); these tiles execute in order.
    assert set(ErrorCode) - codes == {ErrorCode.HAZARD}


@pytest.mark.parametrize("cfg", [MICRO, TINY, ODD], ids=["micro", "tiny", "odd"])
def test_every_error_code_matches_model(cfg):
    """The directed error streams above, and the generator's illegal streams (the ones co-simulation runs)."""
    illegal = streamgen.illegal_streams(cfg, seed=5)
    assert {s.intent for s in illegal} == streamgen.reachable_errors(cfg)
    cases = list(_cases(cfg)) + [(s.name, list(s.words)) for s in illegal]
    assert stream_problems(cfg, cases) == []
    codes = {sw_model.run(cfg, words, raise_on_error=False).error for _, words in cases}
    assert {ErrorCode.ILLEGAL_OPCODE, ErrorCode.TRUNCATED, ErrorCode.BAD_ADC, ErrorCode.NONE} <= codes


def test_random_illegal_headers_match_model():
    """Random header words (any opcode bits and fields) stop the tile exactly where sw_model stops."""
    cfg = MICRO
    isa = Isa.of(cfg)
    rng = np.random.default_rng(11)
    prefix = isa.encode([Command.write_w(0, 0, 0, [3] * cfg.cols), Command.load_in(0, [1] * 8)])
    streams = []
    for k in range(12):
        word = int(rng.integers(0, 1 << 62)) & ((1 << isa.header_layout.size) - 1)
        streams.append((f"header-{k}", prefix + [word] + isa.encode([Command.read(0, 1), Command.halt()])))
    assert stream_problems(cfg, streams) == []


def test_checker_reports_mismatch():
    """Expect-fail: a perturbed golden model and perturbed expected words must be reported."""
    cfg = MICRO
    isa = Isa.of(cfg)
    cmds = random_commands(cfg, 3, 6, halt=False) + [Command.read(0, 4), Command.halt()]
    words = isa.encode(cmds)
    got = run_tile(cfg, words)
    ref = sw_model.run(cfg, words)
    assert check_runs(ref, got).ok and check_runs(ref, got, expected_cycles=got.cycles).ok
    # 1. A model whose MVM is off by one in one accumulator.
    m = sw_model.Machine(cfg)

    def wrong_mvm(st, **kw):
        semantics.mvm(st, **kw)
        st.outbuf[0] += 1

    m.actions = {**m.actions, Opcode.MVM: wrong_mvm}
    m.run_words(words)
    assert any(mm.field == "result" for mm in check_runs(m.result(), got).mismatches)
    # 2. Perturbed expected words, status and cycles.
    ref.results[-1] += 1
    assert check_runs(ref, got).lines() == [f"result[{len(got.results) - 1}]: Expected {ref.results[-1]}, "
                                            f"Actual {got.results[-1]}"]
    ref.index += 1
    verdict = check_runs(ref, got)
    assert not verdict.status_equal and verdict.mismatches[-1].what == "status.index"
    assert [mm.what for mm in check_runs(ref, got, expected_cycles=got.cycles + 1).mismatches][-1] == "cycles"
    # 3. One word fewer expected than the tile sent: the extra word is a mismatch with nothing expected.
    short = sw_model.run(cfg, words)
    short.results = short.results[:-1]
    assert [(mm.what, mm.expected) for mm in check_runs(short, got).mismatches] == \
           [(f"result[{len(got.results) - 1}]", None)]


@pytest.mark.parametrize("cfg", [TINY, SLICED, OFFSET2], ids=["tiny", "sliced", "offset2"])
def test_command_cycles_formula(cfg):
    isa = Isa.of(cfg)
    L = cfg.logical_cols
    base = [Command.load_in(0, [1] * 5)]
    batch = tile_batch(cfg)
    t0 = batch.run(isa.encode(base + [Command.halt()])).cycles
    for cmd in [Command.write_w(1, 5 % cfg.rows, 3 % L, [1] * (L - 3 % L)), Command.load_in(3, [2] * 12),
                Command.mvm(array=1, row0=1, nrows=cfg.rows - 2, col0=1, ncols=L - 1, in_addr=0, out_addr=4,
                            adc_bits=4),
                Command.mvm(array=1, row0=0, nrows=cfg.rows, col0=0, ncols=1, in_addr=0, out_addr=4, adc_bits=4),
                Command.requant(src=0, count=6, dst=0, dst_stride=2, shift=2), Command.read(2, 6),
                Command.barrier()]:
        t = batch.run(isa.encode(base + [cmd, Command.halt()])).cycles
        assert t - t0 == command_cycles(cfg, cmd), cmd


def test_random_cut_streams_match_model():
    """A random stream cut at random words (inside payloads, after any command) stops like sw_model."""
    cfg = MICRO
    isa = Isa.of(cfg)
    rng = np.random.default_rng(21)
    words = isa.encode(random_commands(cfg, 21, 10))
    cuts = sorted(rng.choice(np.arange(1, len(words)), 6, replace=False))
    assert stream_problems(cfg, [(f"cut@{c}", words[:int(c)]) for c in cuts]) == []


@pytest.mark.slow
@pytest.mark.parametrize("cfg,seeds", [(MICRO, range(100, 130)), (TINY, range(100, 112)), (ODD, range(100, 120))],
                         ids=["micro", "tiny", "odd"])
def test_many_random_streams_with_back_pressure_and_cuts(cfg, seeds):
    isa = Isa.of(cfg)
    batch = tile_batch(cfg)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        cmds = random_commands(cfg, seed, 25, halt=bool(seed % 2))
        words = isa.encode(cmds)
        pattern = rng.integers(0, 2, 997)
        verdict = check_words(cfg, words, sim=batch, name=str(seed),
                              res_ready=lambda c, p=pattern: bool(p[c % len(p)]))
        assert verdict.ok, str(verdict)
        assert stream_problems(cfg, [(f"{seed}-cut", words[:int(rng.integers(1, len(words) + 1))])]) == []


def test_batch_runner_equals_run_tile():
    """The batched simulator (reset between streams) reports what a fresh ``run_tile`` reports, cycles included."""
    cfg = MICRO
    isa = Isa.of(cfg)
    streams = [isa.encode(random_commands(cfg, 40, 4)), isa.encode(random_commands(cfg, 41, 3))[:9]]
    batch = TileBatch(cfg)
    for words in streams + streams[:1]:
        a, b = run_tile(cfg, words), batch.run(words)
        assert (a.results, a.status_tuple(), a.cycles, a.accepted_at) == \
               (b.results, b.status_tuple(), b.cycles, b.accepted_at)


# ---- directed boundary, truncation and rounding cases -------------------------------------------------------------
def _nonzero(rng, lo, hi):
    return rng.choice([v for v in range(lo, hi + 1) if v])


def bounds_at_max_program(cfg) -> list[Command]:
    """Every largest legal field value (:func:`cimisa.streamgen.boundary_cases`), each followed by commands that
    make its effect visible: a WRITE_W's row through a one-row MVM, a LOAD_IN's or REQUANT's inputs through an
    identity MVM (first and last elements), an MVM's outputs through a READ. Memories hold non-zero data first.
    """
    isa = Isa.of(cfg)
    R, C, I, O, N = cfg.rows, cfg.cols, cfg.in_depth, cfg.out_depth, cfg.n_arrays
    P, probe = min(8, R, C), N - 1
    wlo, whi = isa.elem_range("weight")
    ilo, ihi = isa.elem_range("input")
    rng = random.Random(f"bounds/{cfg.arch_hash}")
    exact = dict(adc_bits=cfg.adc_bits, adc_shift=0)
    cmds = [Command.write_w(a, r, 0, [_nonzero(rng, wlo, whi) for _ in range(C)]) for a in sorted({0, probe})
            for r in range(R)]
    cmds += [Command.load_in(0, [_nonzero(rng, ilo, ihi) for _ in range(I)]),
             Command.mvm(array=0, row0=0, nrows=R, col0=0, ncols=C, in_addr=0, out_addr=0, **exact),
             Command.mvm(array=0, row0=0, nrows=R, col0=0, ncols=C, in_addr=I - R, out_addr=O - C, **exact)]
    identity = [False]

    def probe_inputs(addr, n, stride):
        if not identity[0]:
            cmds.extend(Command.write_w(probe, r, 0, [int(c == r) for c in range(P)]) for r in range(P))
            identity[0] = True
        starts = {addr, addr + (n - min(n, P)) * stride}          # the first and the last elements
        for a0 in sorted(starts):
            k = min(n, P)
            cmds.extend([Command.mvm(array=probe, row0=0, nrows=k, col0=0, ncols=k, in_addr=a0, in_stride=stride,
                                     out_addr=0, **exact), Command.read(0, k)])

    for _name, cmd, code in streamgen.boundary_cases(cfg):
        if code is not ErrorCode.NONE:
            continue
        cmds.append(cmd)
        a = cmd.args
        if cmd.op is Opcode.WRITE_W:
            if a["array"] == probe and a["row"] < P:
                identity[0] = False
            cmds += [Command.load_in(I - 1, [1]),
                     Command.mvm(array=a["array"], row0=a["row"], nrows=1, col0=0, ncols=C, in_addr=I - 1,
                                 out_addr=0, **exact), Command.read(0, C)]
        elif cmd.op is Opcode.LOAD_IN:
            probe_inputs(a["addr"], a["count"], 1)
        elif cmd.op is Opcode.MVM:
            span = (a["ncols"] - 1) * a["out_stride"] + 1
            if span <= 2 * a["ncols"]:
                cmds.append(Command.read(a["out_addr"], span))
            else:                                                 # far apart: each output on its own
                cmds += [Command.read(a["out_addr"] + j * a["out_stride"], 1) for j in range(a["ncols"])]
        elif cmd.op is Opcode.REQUANT:
            probe_inputs(a["dst"], a["count"], a["dst_stride"])
    return cmds + [Command.read(0, min(O, 16)), Command.read(O - min(O, 16), min(O, 16)), Command.halt()]


def bounds_past_max_streams(cfg) -> list[tuple[str, list[int]]]:
    """One stream per check, its field one past the largest legal value (the tile must stop at command 1)."""
    isa = Isa.of(cfg)
    tail = isa.encode([Command.read(0, 1), Command.halt()])
    return [(name, isa.encode([Command.load_in(0, [1]), cmd]) + tail)
            for name, cmd, code in streamgen.boundary_cases(cfg) if code is not ErrorCode.NONE]


def truncation_streams(cfg) -> list[tuple[str, list[int]]]:
    """A stream of every opcode (multi-word payloads where the configuration has them) cut after every word, so
    that each header, and each payload word, is once the stream's last word; plus an illegal header last."""
    isa = Isa.of(cfg)
    wlo, whi = isa.elem_range("weight")
    ilo, ihi = isa.elem_range("input")
    nx = min(cfg.in_depth, 2 * isa.per_word(Opcode.LOAD_IN) + 1)
    cmds = [Command.write_w(0, cfg.rows - 1, 0, [wlo + k % (whi - wlo + 1) for k in range(cfg.cols)]),
            Command.load_in(cfg.in_depth - nx, [ilo + (3 * k) % (ihi - ilo + 1) for k in range(nx)]),
            Command.mvm(array=0, row0=cfg.rows - 2, nrows=2, col0=0, ncols=3, in_addr=cfg.in_depth - 2,
                        out_addr=1, adc_bits=cfg.adc_bits),
            Command.requant(src=1, count=2, dst=0, dst_stride=1, shift=1), Command.read(0, 4),
            Command.barrier(), Command.halt()]
    words = isa.encode(cmds)
    out = [(f"cut@{k}", words[:k]) for k in range(1, len(words) + 1)]
    bad = _illegal_opcode_word(isa, 0)
    out += [(f"illegal-last@{k}", words[:k] + [bad]) for k in (0, 1, len(words) - 1)]
    return out


@pytest.mark.parametrize("cfg", [MICRO, ODD, TINY], ids=["micro", "odd", "tiny"])
def test_bounds_at_max_match_model(cfg):
    """Every largest legal address, window, index and ADC setting executes as sw_model does (and is observed)."""
    cmds = bounds_at_max_program(cfg)
    ref = sw_model.run_commands(cfg, cmds)
    assert ref.ok and np.count_nonzero(ref.results) > 0.3 * len(ref.results)   # whole-buffer READs hold 0s
    assert stream_problems(cfg, [("bounds-at-max", Isa.of(cfg).encode(cmds))]) == []


@pytest.mark.parametrize("cfg", [MICRO, ODD, TINY], ids=["micro", "odd", "tiny"])
def test_bounds_one_past_max_stop_like_model(cfg):
    """Every check one past its largest legal value stops the tile at that command with the model's code."""
    streams = bounds_past_max_streams(cfg)
    codes = {sw_model.run(cfg, w, raise_on_error=False).status_tuple() for _, w in streams}
    assert all(state == "ERROR" and index == 1 for state, _, index in codes)
    assert stream_problems(cfg, streams) == []


@pytest.mark.parametrize("cfg", [MICRO, ODD, TINY], ids=["micro", "odd", "tiny"])
def test_truncation_at_every_word(cfg):
    """Cut after every word: each header (LOAD_IN's included) and each payload word as the last word."""
    streams = truncation_streams(cfg)
    statuses = [sw_model.run(cfg, w, raise_on_error=False).status_tuple()[:2] for _, w in streams]
    assert statuses.count(("ERROR", "TRUNCATED")) >= len(streams) - 5 and ("HALTED", "NONE") in statuses
    assert stream_problems(cfg, streams) == []


def _round_half_up(v: int, shift: int) -> int:
    return math.floor(Fraction(v, 2 ** shift) + Fraction(1, 2)) if shift else v


def _wide_weights(v: int) -> list[int]:
    """Return 4 weights ``w`` with ``-32768*(w0 + w1) + w2 + w3 == v (mod 2**32)``, all 16-bit."""
    for vv in (v, v + 2**32, v - 2**32):
        for da in (0, -1, 1):
            a = -(vv // 32768) + da
            b = vv + 32768 * a
            w = [a // 2, a - a // 2, b // 2, b - b // 2]
            if all(-32768 <= x <= 32767 for x in w):
                return w
    raise AssertionError(v)


def requant_tie_values(shift: int, ilo: int, ihi: int) -> list[int]:
    """Four accumulators for one shift: ties of both signs (and, where int32 allows, 3x the tie) or bounds."""
    if shift == 0:
        return [ihi + 1, ilo - 1, ihi, -1]                        # saturation at both ends, values passed as is
    t = 1 << (shift - 1)
    if shift <= 30:
        return [t, -t, 3 * t, -3 * t]
    return [t, -t, t - 1, -t - 1]


def requant_ties_program(cfg=None) -> tuple[list[Command], list[int]]:
    """On :data:`WIDE`: for every shift 0..31 make four accumulators exactly (one MVM of inputs
    ``[-32768, -32768, 1, 1]`` by chosen weights), REQUANT them with that shift, and show the results through an
    identity MVM and a READ. Returns the program and the expected results (round half up, saturated)."""
    cfg = cfg or WIDE
    ilo, ihi = Isa.of(cfg).elem_range("input")
    exact = dict(adc_bits=cfg.adc_bits, adc_shift=0)
    cmds = [Command.write_w(1, r, 0, [int(c == r) for c in range(4)]) for r in range(4)]
    cmds.append(Command.load_in(0, [-32768, -32768, 1, 1]))
    want = []
    for shift in range(32):
        vals = requant_tie_values(shift, ilo, ihi)
        cols = [_wide_weights(v) for v in vals]
        cmds += [Command.write_w(0, r, 0, [cols[j][r] for j in range(4)]) for r in range(4)]
        cmds += [Command.mvm(array=0, row0=0, nrows=4, col0=0, ncols=4, in_addr=0, out_addr=0, **exact),
                 Command.requant(src=0, count=4, dst=4, dst_stride=1, shift=shift),
                 Command.mvm(array=1, row0=0, nrows=4, col0=0, ncols=4, in_addr=4, out_addr=8, **exact),
                 Command.read(8, 4)]
        want += [min(max(_round_half_up(v, shift), ilo), ihi) for v in vals]
    return cmds + [Command.halt()], want


def requant_micro_program(cfg=MICRO) -> tuple[list[Command], list[int]]:
    """On 4-bit inputs: accumulators ``w * x`` for every weight -8..7, REQUANT with shifts 0..5 (ties of both
    signs at small shifts, saturation at both ends), shown through identity MVMs."""
    ilo, ihi = Isa.of(cfg).elem_range("input")
    P = min(8, cfg.rows, cfg.cols)
    exact = dict(adc_bits=cfg.adc_bits, adc_shift=0)
    weights = list(range(-8, 8))[:cfg.cols]
    cmds = [Command.write_w(0, 0, 0, weights)]
    cmds += [Command.write_w(1, r, 0, [int(c == r) for c in range(P)]) for r in range(P)]
    want = []
    for x in (7, -5):
        cmds += [Command.load_in(cfg.in_depth - 1, [x]),
                 Command.mvm(array=0, row0=0, nrows=1, col0=0, ncols=len(weights), in_addr=cfg.in_depth - 1,
                             out_addr=0, **exact)]
        for shift in range(6):
            cmds.append(Command.requant(src=0, count=len(weights), dst=0, dst_stride=1, shift=shift))
            for a0 in range(0, len(weights), P):
                cmds += [Command.mvm(array=1, row0=0, nrows=P, col0=0, ncols=P, in_addr=a0, out_addr=16, **exact),
                         Command.read(16, P)]
            want += [min(max(_round_half_up(w * x, shift), ilo), ihi) for w in weights]
    return cmds + [Command.halt()], want


@pytest.mark.parametrize("cfg,program", [(WIDE, requant_ties_program), (MICRO, requant_micro_program)],
                         ids=["wide16-every-shift", "micro-saturation"])
def test_requant_rounding_ties_and_saturation(cfg, program):
    """REQUANT on the RTL: ties of both signs at every shift round half up; results saturate at both ends."""
    cmds, want = program(cfg)
    ref = sw_model.run_commands(cfg, cmds)
    assert ref.results.tolist() == want                       # the model against the hand formula
    assert stream_problems(cfg, [("requant", Isa.of(cfg).encode(cmds))]) == []


# ---- number formats ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", FORMATS + [SLICED], ids=lambda c: c.name)
def test_formats_random_streams(cfg):
    """The shared generator's streams on each format: results, status and cycles (the timing formula) equal."""
    isa = Isa.of(cfg)
    batch = tile_batch(cfg)
    nonzero = 0
    for seed in range(2):
        cmds = random_commands(cfg, seed, 12)
        words = isa.encode(cmds)
        ref, got = sw_model.run(cfg, words), batch.run(words)
        verdict = check_runs(ref, got, expected_cycles=stream_cycles(cfg, cmds))
        assert verdict.ok, str(verdict)
        nonzero += int(np.count_nonzero(ref.results))
    assert nonzero > 0


def _format_program(cfg, seed):
    """Full-range weights and inputs (the most negative ones saturate in differential / sign-magnitude formats),
    then MVMs with random windows, ADC widths and steps (accumulating into earlier results), each read back; and
    the expected words from ``fmt.mvm_column``, the contract's scalar definition (independent of sw_model)."""
    rng = np.random.default_rng(seed)
    fmt, L, R = cfg.fmt, cfg.logical_cols, cfg.rows
    wlo, whi = rules.signed_range(cfg.weight_bits)
    xlo, xhi = rules.signed_range(cfg.input_bits)
    w = rng.integers(wlo, whi + 1, (R, L))
    w[0, 0] = wlo
    x = rng.integers(xlo, xhi + 1, R)
    x[0] = xlo
    cmds = [Command.write_w(0, r, 0, [int(v) for v in w[r]]) for r in range(R)] + \
           [Command.load_in(0, [int(v) for v in x])]
    out = np.zeros(L, dtype=np.int64)
    expected = []
    max_shift = (1 << Isa.of(cfg).field_widths[Opcode.MVM]["adc_shift"]) - 1
    for _ in range(4):
        row0 = int(rng.integers(0, R))
        nrows = int(rng.integers(1, R - row0 + 1))
        col0 = int(rng.integers(0, L))
        ncols = int(rng.integers(1, L - col0 + 1))
        bits, acc = int(rng.integers(1, cfg.adc_bits + 1)), int(rng.integers(0, 2))
        shift = int(rng.choice([0, 1, 2, max_shift]))         # the largest step rounds every sum to 0 or -1
        cmds += [Command.mvm(array=0, row0=row0, nrows=nrows, col0=col0, ncols=ncols, in_addr=row0, out_addr=0,
                             accumulate=acc, adc_bits=bits, adc_shift=shift), Command.read(0, ncols)]
        for c in range(ncols):
            cells = [fmt.cells(int(w[r, col0 + c])) for r in range(row0, row0 + nrows)]
            bias = [fmt.bias_cell] * nrows if fmt.bias_cols else None
            y = fmt.mvm_column(cells, bias, [int(v) for v in x[row0:row0 + nrows]], bits, shift)
            out[c] = rules.wrap_acc(int(out[c]) * acc + y)
        expected += [int(v) for v in out[:ncols]]
    return Isa.of(cfg).encode(cmds + [Command.halt()]), expected


@pytest.mark.parametrize("cfg", FORMATS, ids=lambda c: c.name)
def test_formats_match_scalar_definition(cfg):
    batch = tile_batch(cfg)
    for seed in range(3):
        words, expected = _format_program(cfg, seed)
        got = batch.run(words)
        assert got.status_tuple()[:2] == ("HALTED", "NONE")
        assert got.results == expected, seed


def test_formats_scalar_check_can_fail():
    """Expect-fail: the same program on a tile that floors where the format rounds to nearest (and one that holds
    offset weights as two's complement slices) gives different words."""
    for cfg, wrong in [(OFFSET2, dataclasses.replace(OFFSET2, adc_rounding="floor")),
                       (TWOS4, dataclasses.replace(TWOS4, input_encoding="sign-magnitude"))]:
        words, expected = _format_program(cfg, 0)
        assert run_tile(wrong, words).results != expected
