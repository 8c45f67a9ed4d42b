"""Unit tests of the hw components: decoder checks (order included), ADC lane arithmetic, argument checks."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Signal, signed
from amaranth.hdl import Module
from amaranth.sim import Simulator

from cimisa import rules, semantics, streamgen
from cimisa.config import ACC_BITS, HwConfig, load_hw
from cimisa.formats import NumberFormat
from cimisa.isa import Command, ErrorCode, Isa, Opcode
from hw.adc import AdcLane
from hw.buffers import Buffer
from hw.controller import Controller
from hw.crossbar import Crossbar
from hw.decoder import CommandDecoder
from hw.numfmt import bias_shift, cell_values, colsum_shape, drive_shape, drive_value, saturate_weight, shift_table
from hw.tile import CimTile

MICRO = load_hw("fpga-micro")
TINY = load_hw("fpga-tiny")
#: A shifted ADC code narrower than 32 bits (6-bit ADC, shift + bit < 16) must still be sign-extended.
ODD = HwConfig(name="odd", rows=12, cols=10, n_arrays=3, weight_bits=3, input_bits=5, adc_bits=6,
               adcs_per_array=3, in_depth=20, out_depth=24, rows_per_cycle=3)


def _expected_error(cfg, isa, word):
    hdr = isa.decode_header(word)
    if hdr is None:
        return ErrorCode.ILLEGAL_OPCODE
    return semantics.check(cfg, *hdr)


@pytest.mark.parametrize("cfg", [MICRO, TINY], ids=["micro", "tiny"])
def test_decoder_checks_random_headers(cfg):
    """Each random header gives the error of semantics.check (first failing check), one word per cycle."""
    isa = Isa.of(cfg)
    rng = np.random.default_rng(5)
    f = isa.header_layout["opcode"]
    words = []
    for _ in range(400):
        w = int.from_bytes(rng.bytes(16), "little") & ((1 << isa.header_layout.size) - 1)
        op = int(rng.choice([0, 1, 2, 3, 3, 3, 4, 4, 5, 5, 6, 7, 9, 15]))
        words.append((w & ~(((1 << f.width) - 1) << f.offset)) | (op << f.offset))
    dut = CommandDecoder(cfg)
    got = []

    async def tb(ctx):
        ctx.set(dut.out.ready, 1)
        for w in words:
            ctx.set(dut.cmd.valid, 1)
            ctx.set(dut.cmd.payload.word, w)
            ctx.set(dut.cmd.payload.last, 1)        # every word is a header: `last` ends any payload
            _, _, ov, err = await ctx.tick().sample(dut.out.valid, dut.out.payload.error)
            if ov:
                got.append(ErrorCode(err))
        ctx.set(dut.cmd.valid, 0)
        _, _, ov, err = await ctx.tick().sample(dut.out.valid, dut.out.payload.error)
        got.append(ErrorCode(err))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    expected = [_expected_error(cfg, isa, w) for w in words]
    assert got == expected
    assert set(expected) >= {ErrorCode.NONE, ErrorCode.ILLEGAL_OPCODE, ErrorCode.BAD_COL, ErrorCode.BAD_ADC,
                             ErrorCode.BAD_IN_ADDR, ErrorCode.BAD_OUT_ADDR, ErrorCode.BAD_ROW}


#: Nearest rounding, unsigned ranges (1-bit differential cells) and sign-magnitude inputs through a 2-bit DAC.
NEAREST = HwConfig(name="nearest", rows=8, cols=24, n_arrays=1, weight_bits=4, input_bits=6, adc_bits=4,
                   adcs_per_array=2, in_depth=8, out_depth=8, rows_per_cycle=4, cell_bits=1,
                   weight_encoding="differential", input_encoding="sign-magnitude", dac_bits=2,
                   adc_rounding="nearest")


@pytest.mark.parametrize("cfg", [MICRO, TINY, ODD, NEAREST], ids=["micro", "tiny", "odd", "nearest"])
def test_adc_lane_matches_semantics(cfg):
    dut = AdcLane(cfg)
    rng = np.random.default_rng(1)
    bounds = cfg.fmt.sum_bounds(cfg.rows).values()
    lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
    assert colsum_shape(cfg).width <= cfg.lossless_adc_bits + 1
    wshift = Isa.of(cfg).field_widths[Opcode.MVM]["adc_shift"]
    table = shift_table(cfg.fmt)
    cases = [(int(rng.integers(lo, hi + 1)), int(rng.integers(1, cfg.adc_bits + 1)),
              int(rng.choice([rng.integers(0, 4), rng.integers(0, 1 << wshift)])), table[int(rng.integers(len(table)))],
              int(rng.integers(-(1 << 31), 1 << 31))) for _ in range(300)]

    def model(colsum, bits, shift, entry, acc):
        amount, neg, uns = entry
        code = int(rules.adc_code(colsum, bits, shift, cfg.fmt.adc_rounding, uns))
        term = code << (amount + shift)
        return code, int(semantics.wrap_acc(acc - term if neg else acc + term))

    async def tb(ctx):
        for colsum, bits, shift, entry, acc in cases:
            if entry[2] and colsum < 0:              # unsigned columns never see a negative sum
                colsum = 0
            ctx.set(dut.colsum, colsum)
            ctx.set(dut.adc_bits, bits)
            ctx.set(dut.adc_shift, shift)
            ctx.set(dut.amount, entry[0])
            ctx.set(dut.neg, int(entry[1]))
            ctx.set(dut.unsigned_range, int(entry[2]))
            await ctx.tick()                        # one register stage: acc_in is added in the next cycle
            ctx.set(dut.acc_in, acc)
            assert (ctx.get(dut.code), ctx.get(dut.acc_out)) == model(colsum, bits, shift, entry, acc)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


#: Formats whose cells and drives :func:`test_cells_and_drives_match_formats` checks exhaustively.
CELL_FORMATS = [NumberFormat(4, 4), NumberFormat(8, 8, 3), NumberFormat(6, 7, 4, dac_bits=3),
                NumberFormat(4, 5, 1, "differential"), NumberFormat(5, 6, 2, "offset", "sign-magnitude", 2),
                NumberFormat(8, 8, 0, "differential", "sign-magnitude", 3), NumberFormat(7, 4, 3, "offset"),
                NumberFormat(3, 8, 0, "twos", "sign-magnitude", 1)]


@pytest.mark.parametrize("fmt", CELL_FORMATS, ids=lambda f: f.describe())
def test_cells_and_drives_match_formats(fmt):
    """hw.numfmt's cells of every weight and drives of every input in every cycle equal fmt.cells / fmt.drive."""
    m = Module()
    w = Signal(signed(fmt.weight_bits))
    x = Signal(signed(fmt.input_bits))
    d = Signal(range(fmt.digits))
    stored = Signal(signed(fmt.weight_bits))
    m.d.comb += stored.eq(saturate_weight(fmt, w))
    cells = [Signal.like(v, name=f"cell{p}") for p, v in enumerate(cell_values(fmt, stored))]
    m.d.comb += [c.eq(v) for c, v in zip(cells, cell_values(fmt, stored), strict=True)]
    drive = Signal(drive_shape(fmt))
    m.d.comb += drive.eq(drive_value(fmt, x, d))
    wlo, whi = rules.signed_range(fmt.weight_bits)
    xlo, xhi = rules.signed_range(fmt.input_bits)
    bad = []

    async def tb(ctx):
        for v in range(wlo, whi + 1):
            ctx.set(w, v)
            got = tuple(ctx.get(c) for c in cells)
            if got != fmt.cells(v):
                bad.append(("cells", v, got, fmt.cells(v)))
        for v in range(xlo, xhi + 1):
            ctx.set(x, v)
            for k in range(fmt.digits):
                ctx.set(d, k)
                if ctx.get(drive) != fmt.drive(v)[k]:
                    bad.append(("drive", v, k, ctx.get(drive), fmt.drive(v)[k]))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    assert bad == []


def test_shift_table_reproduces_weights():
    """Every (cycle, column) entry's shift and sign is digit_weight * slice_weight; the bias column's is the digit's
    (bias_weight is applied at write-back), and bias_shift gives bias_weight."""
    for fmt in CELL_FORMATS:
        P = fmt.cols_per_weight
        for i, (amount, neg, uns) in enumerate(shift_table(fmt)):
            d, p = divmod(i, P + 1)
            sw = fmt.slice_weights[p] if p < P else 1
            assert (-1 if neg else 1) << amount == fmt.digit_weights[d] * sw
            assert uns == fmt.unsigned_sum(p if p < P else -1, d)
        if fmt.bias_cols:
            s, neg = bias_shift(fmt)
            assert (-1 if neg else 1) << s == fmt.bias_weight


@pytest.mark.parametrize("cls", [CimTile, CommandDecoder, Controller, Crossbar, AdcLane])
def test_components_reject_non_config(cls):
    with pytest.raises(TypeError, match="cfg must be a HwConfig, not 'fpga-micro'"):
        cls("fpga-micro")


def test_buffer_checks_depth():
    with pytest.raises(ValueError, match="depth must be >= 2, not 1"):
        Buffer(signed(ACC_BITS), 1)
    with pytest.raises(TypeError, match="depth must be an integer"):
        Buffer(signed(8), 4.0)
    buf = Buffer(signed(8), 4)
    Simulator(buf)                       # elaborated, so Amaranth does not warn about an unused component
    assert repr(buf) == "Buffer(signed(8), depth=4)"


def decoder_trace(cfg, items, dut=None):
    """Feed ``(word, last)`` pairs to a :class:`CommandDecoder` (always ready) and return, per word, its decoded
    ``(payload, error, left, final)``."""
    dut = dut if dut is not None else CommandDecoder(cfg)
    got = []

    async def tb(ctx):
        ctx.set(dut.out.ready, 1)
        for k, (w, last) in enumerate(items + [(0, 0)]):    # one register stage: word k shows at tick k + 1
            ctx.set(dut.cmd.valid, int(k < len(items)))
            ctx.set(dut.cmd.payload.word, w)
            ctx.set(dut.cmd.payload.last, last)
            _, _, ov, p = await ctx.tick().sample(dut.out.valid, dut.out.payload)
            if k:
                assert ov
                got.append((int(p.payload), ErrorCode(p.error), int(p.left), int(p.final)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got


def boundary_decoder_items(cfg):
    """Every boundary case of :func:`cimisa.streamgen.boundary_cases` as decoder input (header, then the payload
    of a legal WRITE_W / LOAD_IN) with the expected decoded elements."""
    isa = Isa.of(cfg)
    items, want, names = [], [], []
    for name, cmd, code in streamgen.boundary_cases(cfg):
        items.append((isa.encode_header(cmd), 0))
        want.append((0, code, 0, 0))
        names.append(name)
        if cmd.op in (Opcode.WRITE_W, Opcode.LOAD_IN) and code is ErrorCode.NONE:
            per = isa.per_word(cmd.op)
            words = isa.encode_payload(cmd)
            for k, w in enumerate(words):
                left = cmd.count - k * per
                items.append((w, 0))
                want.append((1, ErrorCode.NONE, left, int(k == len(words) - 1)))
                names.append(f"{name} payload {k}")
    return items, want, names


@pytest.mark.parametrize("cfg", [MICRO, TINY, ODD], ids=["micro", "tiny", "odd"])
def test_decoder_bounds_at_max_and_one_past(cfg):
    """Each check at its largest legal value passes (and a legal WRITE_W / LOAD_IN starts its payload), one past it
    gives the check's error: the decoder agrees with cimisa.semantics.check on every boundary."""
    items, want, names = boundary_decoder_items(cfg)
    got = decoder_trace(cfg, items)
    bad = [f"{n}: expected {w}, got {g}" for n, w, g in zip(names, want, got) if w != g]
    assert bad == []


def test_decoder_last_word_ends_a_payload():
    """A payload cut by ``last`` ends there: the next word is a header again."""
    cfg = MICRO
    isa = Isa.of(cfg)
    load = Command.load_in(0, list(range(-8, 8)) * 2)                 # 2 payload words
    words = isa.encode([load])
    rd = isa.encode_header(Command.read(0, 1))
    got = decoder_trace(cfg, [(words[0], 0), (words[1], 1), (rd, 0), (words[0], 0), (words[1], 0), (words[2], 1)])
    assert [g[0] for g in got] == [0, 1, 0, 0, 1, 1]
    assert got[1] == (1, ErrorCode.NONE, 32, 0) and got[5] == (1, ErrorCode.NONE, 16, 1)
