"""CimTile in Amaranth's Python simulator against sw_model: random legal streams, every error, back-pressure.

Every output word and the final (state, error, index) must be identical; an expect-fail test proves the
checker reports mismatches.
"""

from __future__ import annotations

import numpy as np
import pytest

import sw_model
from cimisa import semantics
from cimisa.config import HwConfig, load_hw
from cimisa.isa import Command, EncodeError, ErrorCode, Isa, Opcode
from hw.pysim import compare, run_tile
from hw.timing import command_cycles, stream_cycles

MICRO = load_hw("fpga-micro")
TINY = load_hw("fpga-tiny")
#: Nothing a power of two: exercises constant division, partial ADC rounds and header values past the ranges.
ODD = HwConfig(name="odd", rows=12, cols=10, n_arrays=3, weight_bits=3, input_bits=5, adc_bits=6,
               adcs_per_array=3, in_depth=20, out_depth=24, rows_per_cycle=3)


def random_commands(cfg, rng, n, *, halt=True):
    """Return a random legal program: some weights and inputs first, then ``n`` random commands (+ HALT)."""
    isa = Isa.of(cfg)
    wlo, whi = isa.elem_range("weight")
    ilo, ihi = isa.elem_range("input")
    arrays = min(cfg.n_arrays, 3)
    R, C = cfg.rows, cfg.cols

    def ints(lo, hi, k):
        return rng.integers(lo, hi + 1, k).tolist()

    def write_w():
        col = int(rng.integers(0, C))
        cnt = int(rng.integers(1, C - col + 1))
        return Command.write_w(int(rng.integers(0, arrays)), int(rng.integers(0, R)), col, ints(wlo, whi, cnt))

    def load_in():
        addr = int(rng.integers(0, cfg.in_depth))
        cnt = int(rng.integers(1, min(R, cfg.in_depth - addr) + 1))
        return Command.load_in(addr, ints(ilo, ihi, cnt))

    def mvm():
        row0 = int(rng.integers(0, R))
        nrows = int(rng.integers(1, R - row0 + 1))
        col0 = int(rng.integers(0, C))
        ncols = int(rng.integers(1, C - col0 + 1))
        in_stride = int(rng.integers(0, min(3, (cfg.in_depth - 1) // max(1, nrows - 1)) + 1))
        in_addr = int(rng.integers(0, cfg.in_depth - (nrows - 1) * in_stride))
        out_stride = int(rng.integers(1 if ncols > 1 else 0, min(3, (cfg.out_depth - 1) // max(1, ncols - 1)) + 1))
        out_addr = int(rng.integers(0, cfg.out_depth - (ncols - 1) * out_stride))
        shift_max = (1 << isa.field_widths[Opcode.MVM]["adc_shift"]) - 1
        adc_shift = int(rng.choice([0, 0, 1, 2, int(rng.integers(0, shift_max + 1))]))
        return Command.mvm(array=int(rng.integers(0, arrays)), row0=row0, nrows=nrows, col0=col0, ncols=ncols,
                           in_addr=in_addr, in_stride=in_stride, out_addr=out_addr, out_stride=out_stride,
                           accumulate=bool(rng.integers(0, 2)), adc_bits=int(rng.integers(1, cfg.adc_bits + 1)),
                           adc_shift=adc_shift)

    def requant():
        cnt = int(rng.integers(1, min(R, cfg.out_depth) + 1))
        src = int(rng.integers(0, cfg.out_depth - cnt + 1))
        stride = int(rng.integers(1 if cnt > 1 else 0, min(3, (cfg.in_depth - 1) // max(1, cnt - 1)) + 1))
        dst = int(rng.integers(0, cfg.in_depth - (cnt - 1) * stride))
        return Command.requant(src=src, count=cnt, dst=dst, dst_stride=stride, shift=int(rng.integers(0, 32)))

    def read():
        addr = int(rng.integers(0, cfg.out_depth))
        return Command.read(addr, int(rng.integers(1, min(12, cfg.out_depth - addr) + 1)))

    cmds = [Command.write_w(a % arrays, int(r), 0, ints(wlo, whi, C)) for a, r in
            zip(range(2), rng.integers(0, R, 2))]
    cmds += [Command.write_w(0, r, 0, ints(wlo, whi, C)) for r in range(min(R, 12 if R * C <= 256 else 4))]
    cmds.append(Command.load_in(0, ints(ilo, ihi, min(R, cfg.in_depth))))
    makers = [write_w, load_in, mvm, mvm, mvm, requant, read, read, lambda: Command.barrier()]
    for _ in range(n):
        cmds.append(makers[int(rng.integers(0, len(makers)))]())
        c = cmds[-1]
        if c.op is Opcode.MVM and rng.integers(0, 2):        # make MVM outputs visible right away
            last = c.out_addr + (c.ncols - 1) * c.out_stride
            cmds.append(Command.read(c.out_addr, min(last - c.out_addr + 1, 8)))
    cmds.append(Command.read(0, min(cfg.out_depth, 8)))
    if halt:
        cmds.append(Command.halt())
    return cmds


def check_stream(cfg, words, **kw):
    ref = sw_model.run(cfg, words, raise_on_error=False)
    got = run_tile(cfg, words, **kw)
    problems = compare(ref, got)
    assert not problems, "\n".join(problems[:20])
    return ref, got


@pytest.mark.parametrize("cfg,seeds,n", [(MICRO, range(4), 18), (TINY, range(2), 12), (ODD, range(3), 15)],
                         ids=["micro", "tiny", "odd"])
def test_random_legal_streams(cfg, seeds, n):
    isa = Isa.of(cfg)
    seen = set()
    for seed in seeds:
        cmds = random_commands(cfg, np.random.default_rng(seed), n)
        seen |= {c.op for c in cmds}
        ref, got = check_stream(cfg, isa.encode(cmds))
        assert ref.ok
        assert got.cycles == stream_cycles(cfg, cmds)
    assert set(Opcode) - seen == set()


def test_back_pressure_and_trailing_words():
    cfg = MICRO
    isa = Isa.of(cfg)
    rng = np.random.default_rng(7)
    cmds = random_commands(cfg, rng, 8) + [Command.read(0, 5), Command.mvm(
        array=0, row0=0, nrows=16, col0=0, ncols=16, in_addr=0, out_addr=0, adc_bits=8)]
    words = isa.encode(cmds)            # words after HALT: the tile must accept and discard them
    pattern = rng.integers(0, 3, 5000)
    ref, got = check_stream(cfg, words, res_ready=lambda c: bool(pattern[c % len(pattern)]))
    assert ref.ok and len(got.accepted_at) == len(words)


def _illegal_opcode_word(isa, raw):
    f = isa.header_layout["opcode"]
    word = isa.encode_header(Command.barrier())
    return (word & ~(((1 << f.width) - 1) << f.offset)) | (raw << f.offset)


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
    assert set(ErrorCode) - codes == set()


@pytest.mark.parametrize("cfg", [MICRO, TINY, ODD], ids=["micro", "tiny", "odd"])
def test_every_error_code_matches_model(cfg):
    codes = set()
    for name, words in _cases(cfg):
        ref = sw_model.run(cfg, words, raise_on_error=False)
        got = run_tile(cfg, words)
        problems = compare(ref, got)
        assert not problems, f"{name}: " + "; ".join(problems)
        codes.add(ref.error)
    assert {ErrorCode.ILLEGAL_OPCODE, ErrorCode.TRUNCATED, ErrorCode.BAD_ADC, ErrorCode.NONE} <= codes


def test_random_illegal_headers_match_model():
    """Random header words (any opcode bits and fields) stop the tile exactly where sw_model stops."""
    cfg = MICRO
    isa = Isa.of(cfg)
    rng = np.random.default_rng(11)
    prefix = isa.encode([Command.write_w(0, 0, 0, [3] * cfg.cols), Command.load_in(0, [1] * 8)])
    for _ in range(6):
        word = int(rng.integers(0, 1 << 62)) & ((1 << isa.header_layout.size) - 1)
        words = prefix + [word] + isa.encode([Command.read(0, 1), Command.halt()])
        ref = sw_model.run(cfg, words, raise_on_error=False)
        got = run_tile(cfg, words)
        assert not compare(ref, got), compare(ref, got)


def test_checker_reports_mismatch():
    """Expect-fail: a perturbed golden model and perturbed expected words must be reported."""
    cfg = MICRO
    isa = Isa.of(cfg)
    cmds = random_commands(cfg, np.random.default_rng(3), 6) + [Command.read(0, 4), Command.halt()]
    words = isa.encode(cmds)
    got = run_tile(cfg, words)
    ref = sw_model.run(cfg, words)
    assert compare(ref, got) == []
    # 1. A model whose MVM is off by one in one accumulator.
    m = sw_model.Machine(cfg)

    def wrong_mvm(st, **kw):
        semantics.mvm(st, **kw)
        st.outbuf[0] += 1

    m.actions = {**m.actions, Opcode.MVM: wrong_mvm}
    m.run_words(words)
    assert any("result" in p for p in compare(m.result(), got))
    # 2. Perturbed expected words and status.
    ref.results[-1] += 1
    assert compare(ref, got) == [f"result {len(got.results) - 1}: expected {ref.results[-1]}, "
                                 f"actual {got.results[-1]}"]
    ref.index += 1
    assert any(p.startswith("status") for p in compare(ref, got))


def test_command_cycles_formula():
    cfg = TINY
    isa = Isa.of(cfg)
    base = [Command.load_in(0, [1] * 5)]
    t0 = run_tile(cfg, isa.encode(base + [Command.halt()])).cycles
    for cmd in [Command.write_w(1, 5, 3, [1] * 29), Command.load_in(3, [2] * 30),
                Command.mvm(array=1, row0=5, nrows=20, col0=3, ncols=7, in_addr=0, out_addr=4, adc_bits=4),
                Command.requant(src=0, count=9, dst=0, dst_stride=2, shift=2), Command.read(2, 6),
                Command.barrier()]:
        t = run_tile(cfg, isa.encode(base + [cmd, Command.halt()])).cycles
        assert t - t0 == command_cycles(cfg, cmd), cmd


def test_random_cut_streams_match_model():
    """A random stream cut at random words (inside payloads, after any command) stops like sw_model."""
    cfg = MICRO
    isa = Isa.of(cfg)
    rng = np.random.default_rng(21)
    words = isa.encode(random_commands(cfg, rng, 10))
    for cut in sorted(rng.choice(np.arange(1, len(words)), 4, replace=False)):
        check_stream(cfg, words[:int(cut)])


@pytest.mark.slow
@pytest.mark.parametrize("cfg,seeds", [(MICRO, range(100, 130)), (TINY, range(100, 112)), (ODD, range(100, 120))],
                         ids=["micro", "tiny", "odd"])
def test_many_random_streams_with_back_pressure_and_cuts(cfg, seeds):
    isa = Isa.of(cfg)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        cmds = random_commands(cfg, rng, 25, halt=bool(seed % 2))
        words = isa.encode(cmds)
        pattern = rng.integers(0, 2, 997)
        check_stream(cfg, words, res_ready=lambda c: bool(pattern[c % len(pattern)]))
        check_stream(cfg, words[:int(rng.integers(1, len(words) + 1))])
