"""Independent checks of the number formats (cimisa/formats.py) and of the golden models in them.

Brute force over every weight and input of small widths (cells and drives by their definitions, written here
without the module's own inverses), the exact product through ``semantics.mvm`` with lossless ADCs in every
format, the unsigned ADC ranges against every product, hand-computed MVMs per encoding, and mutants: a bug planted
in formats.py must make a named test here fail.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import textwrap

import numpy as np
import pytest

from cimisa import kernel, semantics
from cimisa.config import load_hw
from cimisa.formats import INPUT_ENCODINGS, WEIGHT_ENCODINGS, NumberFormat
from cimisa.isa import Command
from sw_model import run_commands
from tests.test_sw_model import FORMATS, format_config

MICRO = load_hw("fpga-micro")


def weight_formats(weight_bits=(4, 5)):
    """Every weight encoding and cell width of ``weight_bits``-bit weights."""
    for wb, enc in itertools.product(weight_bits, WEIGHT_ENCODINGS):
        for cb in range(0, wb - (enc == "differential") + 1):
            yield NumberFormat(wb, 4, cb, enc)


def input_formats(input_bits=(4, 5)):
    """Every input encoding and DAC width of ``input_bits``-bit inputs."""
    for ib, enc in itertools.product(input_bits, INPUT_ENCODINGS):
        for k in range(1, ib):
            yield NumberFormat(4, ib, 0, "twos", enc, k)


# ---- cells and drives, brute force ----------------------------------------------------------------------------------
def _slices_value(part, signed_top: bool, *, cb: int, mag_bits: int) -> int:
    """The value of ``cb``-bit slices of a ``mag_bits``-bit pattern, LSB first, checking each slice's range (the
    top one signed when ``signed_top``)."""
    v = 0
    for q, c in enumerate(part):
        width = min(cb, mag_bits - cb * q)
        top = signed_top and q == len(part) - 1
        assert (-(1 << (width - 1)) <= c < (1 << (width - 1))) if top else 0 <= c < (1 << width)
        v += c << (cb * q)
    return v


def test_cells_hold_every_weight():
    """Each weight's cells, by definition: slices of ``cell_bits`` bits of the pattern (two's complement, ``w+``
    and ``w-``, or ``w + 2**(wb-1)``), LSB first; only the top twos slice is signed."""
    for f in weight_formats():
        wb, cb = f.weight_bits, f.cell_bits or f.weight_bits - (f.weight_encoding == "differential")
        lo, hi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
        ws = np.arange(lo, hi + 1)
        arr = f.cells(ws)
        for w, row in zip(ws.tolist(), arr.tolist()):
            cells = f.cells(w)
            assert list(cells) == row, (f, w)
            held = max(w, -hi) if f.weight_encoding == "differential" else w   # differential pairs are symmetric
            s = len(cells) // (2 if f.weight_encoding == "differential" else 1)
            mag = wb - (f.weight_encoding == "differential")
            assert len(cells) == f.cols_per_weight and s == -(-mag // cb)
            value = functools.partial(_slices_value, cb=cb, mag_bits=mag)

            if f.weight_encoding == "twos":
                assert value(cells, True) == held, (f, w)
            elif f.weight_encoding == "differential":
                assert (value(cells[:s], False), value(cells[s:], False)) == (max(held, 0), max(-held, 0)), (f, w)
            else:
                assert value(cells, False) == held + (1 << (wb - 1)), (f, w)
                assert f.bias_cell << (cb * (s - 1)) == 1 << (wb - 1) and f.bias_weight == -(1 << (cb * (s - 1)))
            assert f.weight_of_cells(cells) == held
            assert sum(c * sw for c, sw in zip(cells, f.slice_weights)) + (
                f.bias_cell * f.bias_weight if f.bias_cols else 0) == held, (f, w)


def test_drive_sums_to_every_input():
    """Each cycle's drive, weighted by its digit weight, sums to the input (saturated to the input range): twos
    digits of ``dac_bits`` bits of the pattern then the sign bit weighted ``-2**(ib-1)``; sign-magnitude digits
    of ``|x|`` with the sign of ``x`` on every row drive."""
    for f in input_formats():
        ib, k = f.input_bits, f.dac_bits
        xs = np.arange(-(1 << (ib - 1)), 1 << (ib - 1))
        arr = f.drive(xs)
        for x, row in zip(xs.tolist(), arr.tolist()):
            d = f.drive(x)
            assert list(d) == row and len(d) == f.digits
            held = max(x, -(1 << (ib - 1)) + 1) if f.input_encoding == "sign-magnitude" else x
            assert sum(v * g for v, g in zip(d, f.digit_weights)) == held, (f, x)
            assert held in range(f.input_range[0], f.input_range[1] + 1)
            for v, (lo, hi) in zip(d, f.drive_ranges):
                assert lo <= v <= hi
            if f.input_encoding == "twos":
                assert all(v >= 0 for v in d) and d[-1] == (x < 0) and f.digit_weights[-1] == -(1 << (ib - 1))
                assert f.digit_weights[:-1] == tuple(1 << (k * j) for j in range(f.digits - 1))
                assert all(v < (1 << k) for v in d)
            else:
                assert all(v * x >= 0 for v in d) and all(abs(v) < (1 << k) for v in d)
                assert f.digit_weights == tuple(1 << (k * j) for j in range(f.digits))


def test_unsigned_sums_are_exactly_the_never_negative_ones():
    """``unsigned_sum(p, d)`` holds exactly when no weight and input make cell ``p`` times drive ``d`` negative
    (brute force: so an unsigned ADC range never clips a real sum, and no column that can go negative gets one)."""
    for wf in weight_formats(weight_bits=(4,)):
        for inf in input_formats(input_bits=(4,)):
            f = NumberFormat(4, 4, wf.cell_bits, wf.weight_encoding, inf.input_encoding, inf.dac_bits)
            cells = f.cells(np.arange(-8, 8))                         # (16, P)
            drives = f.drive(np.arange(-8, 8))                        # (16, D)
            cols = [(p, cells[:, p]) for p in range(f.cols_per_weight)]
            if f.bias_cols:
                cols.append((-1, np.array([f.bias_cell])))
            for p, c in cols:
                for d in range(f.digits):
                    never_negative = bool((np.outer(c, drives[:, d]) >= 0).all())
                    assert f.unsigned_sum(p, d) == never_negative, (f, p, d)


def test_sum_bounds_hold_every_sum():
    """Two rows of every weight and input pair: every cycle's physical column sum lies in ``sum_bounds(2)`` of
    its kind, and each bound is reached."""
    for f in (NumberFormat(4, 4, 1, "differential"), NumberFormat(4, 4, 2, "offset", "sign-magnitude", 2),
              NumberFormat(4, 4, 3, "twos", "twos", 2)):
        bounds = f.sum_bounds(2)
        cells, drives = f.cells(np.arange(-8, 8)), f.drive(np.arange(-8, 8))
        seen: dict[bool, list[int]] = {}
        cols = [(p, cells[:, p]) for p in range(f.cols_per_weight)] + (
            [(-1, np.array([f.bias_cell]))] if f.bias_cols else [])
        for p, c in cols:
            for d in range(f.digits):
                prods = np.unique(np.outer(c, drives[:, d]))
                sums = (prods[:, None] + prods[None, :]).ravel()
                seen.setdefault(f.unsigned_sum(p, d), []).extend([int(sums.min()), int(sums.max())])
        assert {k: (min(v), max(v)) for k, v in seen.items()} == bounds, f


# ---- the MVM in every format ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", FORMATS, ids=lambda c: c.name)
def test_lossless_adc_gives_the_exact_product(cfg):
    """Random windows and batches through ``semantics.mvm`` with the lossless ADC width: the integer product of
    the weights and inputs the format holds (differential weights, sign-magnitude inputs saturated)."""
    rng = np.random.default_rng(len(cfg.name))
    f = cfg.fmt
    for trial in range(6):
        st = semantics.MachineState(cfg)
        nrows, ncols = int(rng.integers(1, cfg.rows + 1)), int(rng.integers(1, cfg.logical_cols + 1))
        w = rng.integers(-(1 << (cfg.weight_bits - 1)), 1 << (cfg.weight_bits - 1), (nrows, ncols))
        if trial % 2:
            w[:, 0] = -(1 << (cfg.weight_bits - 1))                   # the extremes
        x = rng.integers(-(1 << (cfg.input_bits - 1)), 1 << (cfg.input_bits - 1), (nrows, 5))
        x[0] = -(1 << (cfg.input_bits - 1))
        st.array(0)[:nrows, :ncols] = w
        st.set_batch(5)
        st.inbuf[:nrows] = x
        semantics.mvm(st, 0, 0, nrows, 0, ncols, 0, 1, 0, 1, 0, cfg.lossless_adc_bits, 0)
        want = np.clip(w, *f.weight_range).T @ np.clip(x, *f.input_range)
        assert np.array_equal(st.outbuf[:ncols], want), (cfg.name, trial)


def _mvm_three_ways(cfg, w, x, adc_bits, adc_shift) -> list[list[int]]:
    """One MVM of the weights ``w`` (rows, cols) on the inputs ``x``: through ``semantics.mvm`` (the fast model),
    the naive model and ``NumberFormat.mvm_column`` (the scalar definition)."""
    w = np.asarray(w)
    nrows, ncols = w.shape
    cmds = ([Command.write_w(0, r, 0, w[r].tolist()) for r in range(nrows)] + [Command.load_in(0, list(x))]
            + [Command.mvm(array=0, row0=0, nrows=nrows, col0=0, ncols=ncols, in_addr=0, out_addr=0,
                           adc_bits=adc_bits, adc_shift=adc_shift), Command.read(0, ncols), Command.halt()])
    out = [run_commands(cfg, cmds, impl=impl).results.tolist() for impl in ("fast", "naive")]
    f = cfg.fmt
    bias = [f.bias_cell] * nrows if f.bias_cols else None
    out.append([f.mvm_column([f.cells(int(v)) for v in w[:, c]], bias, list(x), adc_bits, adc_shift)
                for c in range(ncols)])
    return out


def _cfg(cell_bits, weight_encoding, input_encoding="twos", dac_bits=1, adc_rounding="floor"):
    return format_config("hand", cell_bits, weight_encoding, input_encoding, dac_bits, adc_rounding, logical=2)


def test_differential_by_hand():
    """1-bit differential cells of 4-bit weights, rows driven by 1 and 1 (bit 0 only), a 1-bit unsigned ADC
    (codes 0..1). Column 0 holds 3 and 1: slice 0 (weight 1) sums 2 -> code 1, slice 1 (weight 2) sums 1 -> 1,
    the minus cells 0: 1 + 2 = 3 (exact 4). Column 1 holds -3 and -8 (saturated to -7): minus slices sum 2, 2, 1
    -> codes 1, 1, 1: -(1 + 2 + 4) = -7 (exact -10). A signed 1-bit range (-1..0) would give 0 for both."""
    cfg = _cfg(1, "differential")
    assert cfg.adc_bits >= 1 and cfg.fmt.cols_per_weight == 6
    for got in _mvm_three_ways(cfg, [[3, -3], [1, -8]], [1, 1], adc_bits=1, adc_shift=0):
        assert got == [3, -7]
    for got in _mvm_three_ways(cfg, [[3, -3], [1, -8]], [1, 1], adc_bits=cfg.lossless_adc_bits, adc_shift=0):
        assert got == [4, -10]


def test_offset_nearest_and_floor_by_hand():
    """Offset 2-bit cells of the weight -5 (pattern 3 = cells 3, 0; bias cell 2, weight -4), input 3 (bits 1, 1,
    0, 0), step 2. Nearest: slice 0 sums 3 -> round(1.5) = 2 in cycles 0 and 1, the bias 2 -> 1:
    ((2 + 2*2) - 4 * (1 + 2*1)) << 1 = -12. Floor: 3 -> 1: ((1 + 2) - 4 * (1 + 2)) << 1 = -18. Exact: -15."""
    for rounding, want in (("nearest", -12), ("floor", -18)):
        cfg = _cfg(2, "offset", adc_rounding=rounding)
        for got in _mvm_three_ways(cfg, [[-5, 0]], [3], adc_bits=cfg.lossless_adc_bits, adc_shift=1):
            assert got == [want, 0], rounding
    cfg = _cfg(2, "offset")
    assert all(got == [-15, 0] for got in _mvm_three_ways(cfg, [[-5, 0]], [3], cfg.lossless_adc_bits, 0))


def test_twos_slices_by_hand():
    """Two's complement 2-bit slices of -7 (0b1001: unsigned low slice 1, signed top slice -2), input 5 (bits 1,
    0, 1, sign 0), a 2-bit ADC (the low slice unsigned 0..3, the top slice signed -2..1), two rows of -7: the low
    slice sums 2 -> 2, the top slice -4 -> -2 (saturated): cycles 0 and 2 give (2 + 4*(-2)) * (1 + 4) = -30
    (exact 2 * -35 = -70)."""
    cfg = _cfg(2, "twos")
    for got in _mvm_three_ways(cfg, [[-7, 0], [-7, 0]], [5, 5], adc_bits=2, adc_shift=0):
        assert got == [-30, 0]


def test_sign_magnitude_by_hand():
    """Sign-magnitude inputs with a 2-bit DAC: -3 drives (-3, 0) (digit weights 1, 4); one cell holding 2; a
    3-bit signed ADC (-4..3): cycle 0 sums -6 -> -4 (saturated), so -4 (exact -6). Step 2: -6 -> -3, exact.
    REQUANT saturates to -7..7 (not -8)."""
    cfg = _cfg(0, "twos", "sign-magnitude", dac_bits=2)
    for got in _mvm_three_ways(cfg, [[2, 0]], [-3], adc_bits=3, adc_shift=0):
        assert got == [-4, 0]
    for got in _mvm_three_ways(cfg, [[2, 0]], [-3], adc_bits=3, adc_shift=1):
        assert got == [-6, 0]
    for impl in ("fast", "naive"):   # -8 drives as -7: 2 * -7 = -14, REQUANT saturates it to -7
        cmds = [Command.write_w(0, 0, 0, [2, 0]), Command.load_in(0, [-8]),
                Command.mvm(array=0, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, out_addr=0,
                            adc_bits=cfg.lossless_adc_bits),
                Command.requant(src=0, count=1, dst=1, shift=0), Command.read(0, 1), Command.halt()]
        r = run_commands(cfg, cmds, impl=impl)
        assert r.results.tolist() == [-14] and r.machine.state.inbuf[1] == -7, impl


def test_mvm_path_names_the_format_path():
    w = np.array([[1, -2], [3, 4]])
    assert kernel.mvm_path(w, 4, 8, 0, FORMATS[0].fmt) == "formats"
    assert kernel.mvm_path(w, 4, 8, 0, MICRO.fmt) == "product"


# ---- mutants of formats.py ------------------------------------------------------------------------------------------
def _mutant_attr(name: str, old: str, new: str):
    """Return NumberFormat's attribute ``name`` (method or cached property) with ``old`` replaced by ``new``."""
    attr = NumberFormat.__dict__[name]
    fn = attr.func if isinstance(attr, functools.cached_property) else attr
    src = textwrap.dedent(inspect.getsource(fn))
    assert src.count(old) == 1, f"mutation site {old!r} not found once in {fn.__qualname__}"
    src = "\n".join(line for line in src.splitlines() if not line.startswith("@"))   # the bare function
    ns = dict(fn.__globals__)
    exec(compile(src.replace(old, new), f"<mutant of {fn.__qualname__}>", "exec"), ns)
    if isinstance(attr, functools.cached_property):
        cp = functools.cached_property(ns[fn.__name__])
        cp.__set_name__(NumberFormat, name)
        return cp
    return ns[fn.__name__]


def _lossless_everywhere():
    for cfg in FORMATS:
        test_lossless_adc_gives_the_exact_product(cfg.replace(name=cfg.name + "-m"))   # a fresh fmt


#: (name, NumberFormat attribute, old text, new text, the test that must catch it)
FORMAT_MUTANTS = [
    ("top_twos_slice_unsigned", "cells", 'if self.weight_encoding == "twos" and q == self.slices - 1:', "if False:",
     test_cells_hold_every_weight),
    ("top_twos_range_unsigned", "cell_ranges", 'signed = self.weight_encoding == "twos" and q == self.slices - 1',
     "signed = False", test_unsigned_sums_are_exactly_the_never_negative_ones),
    ("differential_sign_lost", "cells", "pats = (np.maximum(a, 0), np.maximum(-a, 0))",
     "pats = (np.abs(a), 0 * a)", test_cells_hold_every_weight),
    ("differential_minus_slices_positive", "slice_weights", "pos + tuple(-v for v in pos)", "pos + pos",
     test_cells_hold_every_weight),
    ("bias_weight_dropped", "bias_weight", "-(1 << (self.bits_per_cell * (self.slices - 1))) if", "0 if",
     _lossless_everywhere),
    ("sign_digit_weight_positive", "digit_weights", "(-(1 << (self.input_bits - 1)),)",
     "((1 << (self.input_bits - 1)),)", test_drive_sums_to_every_input),
    ("sign_magnitude_sign_dropped", "drive", "cols = [c * sign for c in cols]", "cols = list(cols)",
     test_drive_sums_to_every_input),
    ("nearest_floors", "code", "rounding=self.adc_rounding", 'rounding="floor"', test_offset_nearest_and_floor_by_hand),
    ("unsigned_range_ignored", "unsigned_sum", "return lo >= 0 and self.digit_unipolar[d]", "return False",
     test_differential_by_hand),
    ("sign_magnitude_range_asymmetric", "input_range", "(-hi, hi) if", "(lo, hi) if", test_sign_magnitude_by_hand),
]


@pytest.mark.parametrize("name,attr,old,new,killer", FORMAT_MUTANTS, ids=[m[0] for m in FORMAT_MUTANTS])
def test_format_mutant_is_caught(monkeypatch, name, attr, old, new, killer):
    monkeypatch.setattr(NumberFormat, attr, _mutant_attr(attr, old, new))
    kernel._LIMITS.clear()                           # its ranges were derived from the real format
    try:
        with pytest.raises(AssertionError):
            killer()
    finally:
        kernel._LIMITS.clear()
