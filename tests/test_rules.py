"""cimisa.rules: every numeric rule against a brute-force or by-hand statement, and shown to be shared.

* each rule (signed ranges, bit planes, ADC code, shift-add, REQUANT, wrap, lossless bits, column-sum bounds, ADC
  and REQUANT shift search, field limits) against an independent statement, with its saturation edges, negative
  values and wrap-around; the scalar (Python int) and array forms agree;
* sharing: a perturbed ADC rule in ``cimisa.rules`` changes the fast golden model, the naive model and the noise
  model alike (they call the one definition);
* the checkers can fail: source mutants of the rules (an off-by-one bound, a wrong rounding, an added sign plane)
  are each caught by the test meant to catch them.
"""

from __future__ import annotations

import functools
import inspect
import math
import textwrap
from itertools import product

import numpy as np
import pytest

from cimisa import config, kernel, kernel_int8, rules, semantics
from cimisa.config import BUILTIN, load_hw
from cimisa.isa import Command, Isa, Opcode
from sw_model.machine import Machine
from sw_model.noise import NoiseParams, NoisyMachine
from tests.test_golden_batch import engine


# ---- ranges and bits ----------------------------------------------------------------------------------------------
def test_signed_range_and_bits():
    for bits in range(1, 20):
        lo, hi = rules.signed_range(bits)
        assert (lo, hi) == (-(2 ** bits) // 2, 2 ** bits // 2 - 1)
    assert rules.signed_range(1) == (-1, 0) and rules.signed_range(8) == (-128, 127)
    rng = np.random.default_rng(0)
    for _ in range(300):
        lo, hi = sorted(int(v) for v in rng.integers(-5000, 5000, 2))
        want = next(b for b in range(1, 40) if rules.signed_range(b)[0] <= lo and hi <= rules.signed_range(b)[1])
        assert rules.signed_bits(lo, hi) == want, (lo, hi)
    assert rules.signed_bits(-128, 127) == 8 and rules.signed_bits(-129, 0) == 9 and rules.signed_bits(0, 128) == 9


@pytest.mark.parametrize("nb", [2, 3, 5, 8])
def test_bit_planes_reconstruct_twos_complement(nb):
    """sum_b bit_b * (+2**b, sign plane -2**(nb-1)) == x for every nb-bit x; scalar == array == table."""
    lo, hi = rules.signed_range(nb)
    xs = np.arange(lo, hi + 1)
    planes = rules.bit_planes(xs, nb)
    signs = np.array([2 ** b for b in range(nb - 1)] + [-(2 ** (nb - 1))])
    assert np.array_equal(planes @ signs, xs)
    assert [rules.bit_planes(int(x), nb) for x in xs] == [tuple(p) for p in planes.tolist()]
    assert np.array_equal(rules.bit_plane_table(nb, np.float32)[xs & ((1 << nb) - 1)], planes)
    assert rules.bit_planes(-1, 4) == (1, 1, 1, 1) and rules.bit_planes(-8, 4) == (0, 0, 0, 1)


# ---- the ADC and the shift-add --------------------------------------------------------------------------------------
def _adc_by_hand(colsum: float, adc_bits: int, adc_shift: int, rounding: str = "floor",
                 unsigned: bool = False) -> int:
    half = 0.5 if rounding == "nearest" else 0.0                # nearest: round half up
    q = math.floor(colsum / 2 ** adc_shift + half)              # floor, also for negative (and fractional) sums
    lo, hi = (0, 2 ** adc_bits - 1) if unsigned else (-(2 ** (adc_bits - 1)), 2 ** (adc_bits - 1) - 1)
    return lo if q < lo else hi if q > hi else q


def test_adc_code_brute_force():
    sums = np.arange(-300, 301)
    for adc_bits, shift in product(range(1, 8), range(0, 6)):
        want = [_adc_by_hand(int(c), adc_bits, shift) for c in sums]
        # np.array_equal keeps a failure's message short (pytest's list diff of 601 items is slow)
        assert np.array_equal([rules.adc_code(int(c), adc_bits, shift) for c in sums], want), (adc_bits, shift)
        assert np.array_equal(rules.adc_code(sums, adc_bits, shift), want), (adc_bits, shift)
        for dt in (np.float32, np.float64):                     # analog sums: whole numbers and fractions
            assert np.array_equal(rules.adc_code(sums.astype(dt), adc_bits, shift), want), (adc_bits, shift, dt)
            for frac in (0.25, -0.25, 0.5, -0.75):
                analog = sums + frac
                by_hand = [_adc_by_hand(float(v), adc_bits, shift) for v in analog]
                assert np.array_equal(rules.adc_code(analog.astype(dt), adc_bits, shift), by_hand), (adc_bits, frac)
        for rounding, unsigned in product(("floor", "nearest"), (False, True)):   # the number formats' ADCs
            want = [_adc_by_hand(int(c), adc_bits, shift, rounding, unsigned) for c in sums]
            got = [rules.adc_code(int(c), adc_bits, shift, rounding, unsigned) for c in sums]
            assert np.array_equal(got, want), (adc_bits, shift, rounding, unsigned)
            assert np.array_equal(rules.adc_code(sums, adc_bits, shift, rounding, unsigned), want)
            analog = (sums + 0.25).astype(np.float64)
            want = [_adc_by_hand(float(v), adc_bits, shift, rounding, unsigned) for v in analog]
            assert np.array_equal(rules.adc_code(analog, adc_bits, shift, rounding, unsigned), want)


def test_adc_code_edges():
    """4-bit ADC (-8..7), step 2: sums 14, 15 -> 7; 16 saturates; -16 -> -8; -17 floors to -9 and saturates."""
    assert [rules.adc_code(s, 4, 1) for s in (14, 15, 16, 17, -1, -2, -3, -16, -17)] == [7, 7, 7, 7, -1, -1, -2,
                                                                                          -8, -8]
    assert [rules.adc_code(s, 4, 0) for s in (7, 8, -8, -9)] == [7, 7, -8, -8]
    assert [rules.adc_code(s, 1, 0) for s in (-5, -1, 0, 3)] == [-1, -1, 0, 0]          # a 1-bit ADC: -1..0


def test_shift_add_and_convert_planes():
    assert rules.plane_weights(4, 0) == (1, 2, 4, -8) and rules.plane_weights(3, 2) == (4, 8, -16)
    # by hand: codes 3, -1, 0, 2 of a 4-bit input, step 2: 2*3 - 4*1 + 0 - 16*2
    assert rules.shift_add([3, -1, 0, 2], 4, 1, 8) == -30
    rng = np.random.default_rng(1)
    for nb, adc_bits, shift in product((2, 4, 8), (1, 3, 9), (0, 2)):
        sums = rng.integers(-600, 600, (5, 3, nb))
        want = [[sum(_adc_by_hand(int(c), adc_bits, shift) * ((-1 if b == nb - 1 else 1) * 2 ** (b + shift))
                     for b, c in enumerate(col)) for col in row] for row in sums.tolist()]
        assert rules.convert_planes(sums, nb, adc_bits, shift).tolist() == want
        assert [[rules.convert_planes(col, nb, adc_bits, shift) for col in row] for row in sums.tolist()] == want
        assert rules.convert_planes(sums.astype(np.float32), nb, adc_bits, shift).tolist() == want
    # float codes whose sums float64 cannot hold exactly take int64: still exact
    big = np.array([[2.0 ** 26, -(2.0 ** 26) + 1, 2.0 ** 26 - 3]])
    assert rules.shift_add(big, 3, 30, 28).tolist() == [rules.shift_add([2 ** 26, -(2 ** 26) + 1, 2 ** 26 - 3], 3,
                                                                        30, 28)]


@pytest.mark.parametrize("nb,wb", [(4, 4), (8, 8), (3, 6)])
def test_lossless_conversion_is_the_exact_product(nb, wb):
    """With adc_shift 0 and a lossless ADC, shift-adding the plane codes gives w.T @ x exactly (sign plane
    subtracted): the statement that makes the rule the product."""
    rng = np.random.default_rng(nb)
    w = rng.integers(*rules.signed_range(wb), (20, 4), endpoint=True)
    x = rng.integers(*rules.signed_range(nb), (20, 6), endpoint=True)
    sums = np.einsum("rc,rbp->cbp", w, rules.bit_planes(x, nb))         # (cols, B, planes)
    got = rules.convert_planes(sums, nb, rules.lossless_adc_bits(20, wb), 0)
    assert np.array_equal(got, w.T @ x)


# ---- REQUANT and the accumulator wrap -------------------------------------------------------------------------------
def test_requant_brute_force():
    vs = np.arange(-700, 701)
    for shift, nb in product(range(0, 7), (2, 4, 8)):
        lo, hi = -(2 ** (nb - 1)), 2 ** (nb - 1) - 1
        want = [min(max(math.floor(v / 2 ** shift + 0.5), lo), hi) for v in vs.tolist()]   # round half up
        assert [rules.requant(int(v), shift, nb) for v in vs] == want, (shift, nb)
        assert rules.requant(vs, shift, nb).tolist() == want
    assert vs[0] == -700                                             # the caller's array is not changed
    # ties: +-2.5 -> 3, -2; +-1.5 -> 2, -1; saturation at both ends of a 4-bit input
    assert [rules.requant(v, 1, 4) for v in (5, -5, 3, -3, 14, 15, -16, -17, -18)] == [3, -2, 2, -1, 7, 7, -8, -8,
                                                                                       -8]
    assert [rules.round_shift(v, 2) for v in (6, -6, 5, -10)] == [2, -1, 1, -2]


def test_wrap_acc():
    def by_hand(v):
        return (v + 2 ** 31) % 2 ** 32 - 2 ** 31

    edges = [0, 1, -1, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), -(2 ** 31) - 1, 2 ** 32, 2 ** 32 + 5, -(2 ** 40) - 3,
             2 ** 70 + 9, -(2 ** 75)]
    assert [rules.wrap_acc(v) for v in edges] == [by_hand(v) for v in edges]
    small = [v for v in edges if abs(v) < 2 ** 62]
    assert rules.wrap_acc(np.array(small)).tolist() == [by_hand(v) for v in small]
    assert rules.wrap_acc(np.int64(2 ** 31)) == -(2 ** 31)
    assert config.ACC_BITS is rules.ACC_BITS == 32


# ---- inverse rules --------------------------------------------------------------------------------------------------
def _loop_lossless(nrows: int, weight_bits: int) -> int:
    lo, hi = -(1 << (weight_bits - 1)) * nrows, ((1 << (weight_bits - 1)) - 1) * nrows
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def test_lossless_adc_bits():
    for nrows, wb in product(range(0, 300), range(1, 17)):
        assert rules.lossless_adc_bits(nrows, wb) == _loop_lossless(nrows, wb), (nrows, wb)
    for nrows in (1, 7, 32, 256, 4096):
        for wb in (2, 8, 16):
            bits = rules.lossless_adc_bits(nrows, wb)
            wlo, whi = rules.signed_range(wb)
            assert rules.adc_fits(wlo * nrows, whi * nrows, bits, 0)
            assert not rules.adc_fits(wlo * nrows, whi * nrows, bits - 1, 0)
    assert load_hw("paper-256").lossless_adc_bits == 16 and load_hw("fpga-tiny").lossless_adc_bits == 9


def test_colsum_bounds_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(40):
        nrows, ncols = int(rng.integers(1, 7)), int(rng.integers(1, 4))
        w = rng.integers(-8, 8, (nrows, ncols))
        sums = np.array(list(product((0, 1), repeat=nrows))) @ w      # every 0/1 plane
        assert rules.colsum_bounds(w) == (min(0, int(sums.min())), max(0, int(sums.max())))
    assert rules.colsum_bounds(np.zeros((0, 3), dtype=np.int64)) == (0, 0)
    assert rules.colsum_bounds(np.array([[3, -2], [4, -5]])) == (-7, 7)


def test_adc_fits_and_shift_for():
    rng = np.random.default_rng(3)
    for _ in range(300):
        colmin, colmax = -int(rng.integers(0, 5000)), int(rng.integers(0, 5000))
        adc_bits = int(rng.integers(1, 10))
        s = rules.adc_shift_for(colmin, colmax, adc_bits)
        span = range(colmin, colmax + 1, max(1, (colmax - colmin) // 97))
        assert all(rules.adc_code(v, adc_bits, s) == v >> s for v in list(span) + [colmin, colmax])   # no clip
        if s:
            assert not rules.adc_fits(colmin, colmax, adc_bits, s - 1)
            lo, hi = rules.signed_range(adc_bits)
            assert (colmin >> (s - 1)) < lo or (colmax >> (s - 1)) > hi
        assert rules.adc_shift_for(colmin, colmax, adc_bits, max_shift=min(s, 2)) == min(s, 2)
    # by hand: 3-bit ADC (-4..3): -5 needs step 2; 4 needs step 2; -100..900 with 5 bits (-16..15) needs 2**6
    assert [rules.adc_shift_for(lo, hi, b) for lo, hi, b in ((0, 0, 3), (-4, 3, 3), (-5, 3, 3), (0, 4, 3),
                                                             (-100, 900, 5))] == [0, 0, 1, 1, 6]


def test_requant_shift_for():
    for nb in (2, 4, 8):
        hi = rules.signed_range(nb)[1]
        for amax in list(range(0, 3000, 7)) + [2 ** 31, 2 ** 31 - 1]:
            s = rules.requant_shift_for(amax, nb)
            assert rules.round_shift(amax, s) <= hi and rules.requant(amax, s, nb) == rules.round_shift(amax, s)
            if s:
                assert rules.round_shift(amax, s - 1) > hi
            assert s <= rules.MAX_REQUANT_SHIFT
    assert rules.requant_shift_for(10 ** 30, 8) == rules.MAX_REQUANT_SHIFT          # capped at the field
    assert [rules.requant_shift_for(a, 8) for a in (127, 128, 254, 255)] == [0, 1, 1, 2]


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_shift_limits_are_the_command_fields(name):
    """MAX_REQUANT_SHIFT and field_max(lossless_adc_bits) are the largest values the REQUANT shift and MVM
    adc_shift fields of the command set hold."""
    cfg = BUILTIN[name]
    widths = Isa.of(cfg).field_widths
    assert rules.MAX_REQUANT_SHIFT == (1 << widths[Opcode.REQUANT]["shift"]) - 1
    assert rules.field_max(cfg.lossless_adc_bits) == (1 << widths[Opcode.MVM]["adc_shift"]) - 1


# ---- one rule for every model ---------------------------------------------------------------------------------------
def _saturating_run(machine_factory):
    """A program whose MVMs saturate with a step of 4 (fpga-tiny: 32 rows of 4-bit weights, 5-bit ADC)."""
    cfg = load_hw("fpga-tiny")
    rng = np.random.default_rng(5)
    W = rng.integers(-8, 8, (32, 12))
    x = rng.integers(-128, 128, 32)
    m = machine_factory(cfg)
    for r in range(32):
        m.execute(Command.write_w(3, r, 0, W[r].tolist()))
    m.execute(Command.load_in(0, x.tolist()))
    for shift in (0, 2, 3):
        m.execute(Command.mvm(array=3, row0=0, nrows=32, col0=0, ncols=12, in_addr=0, out_addr=16 * shift,
                              adc_bits=5, adc_shift=shift))
    return m.state.outbuf[:64].copy()


MODELS = {
    "fast": lambda cfg: Machine(cfg),
    "naive": lambda cfg: Machine(cfg, impl="naive"),
    "noise-free": lambda cfg: NoisyMachine(cfg),
    "noisy": lambda cfg: NoisyMachine(cfg, NoiseParams(prog=0.01, read=0.01, seed=3)),
}


@pytest.mark.parametrize("eng", ["numpy", "int8"])
def test_a_perturbed_adc_rule_reaches_every_model(monkeypatch, eng):
    """Mutation: the ADC in cimisa.rules rounds to nearest instead of flooring; every model's results change, so
    they all call it (none has a copy of its own), with either kernel engine."""
    with engine(eng):
        _perturbed_adc_rule_reaches_every_model(monkeypatch)


def _perturbed_adc_rule_reaches_every_model(monkeypatch):
    before = {k: _saturating_run(f) for k, f in MODELS.items()}
    assert all(np.array_equal(before[k], before["fast"]) for k in ("naive", "noise-free"))
    real = rules.adc_code

    def rounding(colsum, adc_bits, adc_shift, *rest):
        if adc_shift == 0:
            return real(colsum, adc_bits, adc_shift, *rest)
        half = 1 << (adc_shift - 1)
        return real(colsum + (colsum.dtype.type(half) if isinstance(colsum, np.ndarray) else half), adc_bits,
                    adc_shift, *rest)

    monkeypatch.setattr(rules, "adc_code", rounding)
    after = {k: _saturating_run(f) for k, f in MODELS.items()}
    for k in MODELS:
        assert not np.array_equal(after[k], before[k]), f"the {k} model did not follow the ADC rule"
    # (they need not agree with each other now: the fast kernel's shortcut for windows that cannot saturate is an
    # identity of the true floor rule, which the naive loops do not take)


# ---- the checkers above can fail ------------------------------------------------------------------------------------
def mutant(fn, old: str, new: str):
    """Return ``fn`` recompiled with the one occurrence of ``old`` in its source replaced by ``new``."""
    src = textwrap.dedent(inspect.getsource(fn))
    assert src.count(old) == 1, f"mutation site {old!r} not found once in {fn.__qualname__}"
    ns = dict(fn.__globals__)
    exec(compile(src.replace(old, new), f"<mutant of {fn.__qualname__}>", "exec"), ns)
    return ns[fn.__name__]


#: (name, rules function, old text, new text, the test that must catch it)
RULE_MUTANTS = [
    ("range_hi_one_high", "signed_range", "(1 << (bits - 1)) - 1", "(1 << (bits - 1))", test_adc_code_brute_force),
    ("adc_int_truncates_toward_zero", "round_div", "    return v >> shift  ",
     "    return v // (1 << shift) + (v < 0) * (v % (1 << shift) != 0)  ", test_adc_code_brute_force),
    ("adc_float_rounds", "round_div", "np.floor(q, out=q)", "np.rint(q, out=q)", test_adc_code_brute_force),
    ("adc_one_step_short", "round_div", "    return v >> shift  ", "    return v >> max(0, shift - 1)  ",
     test_adc_code_edges),
    ("adc_nearest_floors", "round_div", "return round_shift(v, shift)", "return v >> shift",
     test_adc_code_brute_force),
    ("adc_unsigned_range_signed", "code_range", "(0, (1 << adc_bits) - 1) if unsigned",
     "signed_range(adc_bits) if unsigned",
     test_adc_code_brute_force),
    ("sign_plane_added", "plane_weights", "(-1 if b == input_bits - 1 else 1)", "1",
     functools.partial(test_lossless_conversion_is_the_exact_product, 8, 8)),
    ("shift_add_step_dropped", "plane_weights", "<< (b + adc_shift)", "<< b", test_shift_add_and_convert_planes),
    ("requant_round_half_down", "round_shift", "(v + (1 << (shift - 1))) >> shift",
     "(v + (1 << (shift - 1)) - 1) >> shift", test_requant_brute_force),
    ("requant_no_rounding", "round_shift", "(v + (1 << (shift - 1))) >> shift", "v >> shift",
     test_requant_brute_force),
    ("no_wrap", "wrap_acc", "return ((int(v) + half) & ((1 << ACC_BITS) - 1)) - half", "return int(v)",
     test_wrap_acc),
    ("lossless_one_short", "signed_bits", "(-int(lo) - 1).bit_length()", "(-int(lo) - 2).bit_length()",
     test_lossless_adc_bits),
    ("colsum_max_one_low", "colsum_bounds", "int(np.maximum(w, 0).sum(axis=0).max(initial=0))",
     "int(np.maximum(w, 0).sum(axis=0).max(initial=0)) - 1", test_colsum_bounds_brute_force),
    ("adc_fits_one_step_early", "adc_fits", "(colmax >> adc_shift) <= hi", "(colmax >> adc_shift) <= hi + 1",
     test_adc_fits_and_shift_for),
    ("requant_shift_one_short", "requant_shift_for", "round_shift(int(amax), s) > hi",
     "round_shift(int(amax), s) > hi + 1", test_requant_shift_for),
]


@pytest.mark.parametrize("name,fn_name,old,new,killer", RULE_MUTANTS, ids=[m[0] for m in RULE_MUTANTS])
def test_rule_mutant_is_caught(monkeypatch, name, fn_name, old, new, killer):
    monkeypatch.setattr(rules, fn_name, mutant(getattr(rules, fn_name), old, new))
    with pytest.raises(AssertionError):
        killer()


# ---- the batched kernel's exact forms against the rules ----------------------------------------------------------
def _rules_mvm(w, x, nb, adc_bits, shift):
    """One MVM from the rules alone: every bit plane's column sums (:func:`rules.bit_planes`), then
    :func:`rules.convert_planes`."""
    colsum = np.einsum("rc,rbn->cbn", w, rules.bit_planes(x, nb))
    return rules.convert_planes(colsum, nb, adc_bits, shift)


def check_kernel_paths(cases: int = 300, seed: int = 0) -> set[str]:
    """Random windows (row counts up to 300, any weight and input width, saturating and coarse ADCs): the kernel
    (cimisa.semantics.mvm_acc) equals the rules' per-plane form on every path; return the paths taken."""
    from cimisa import semantics
    rng = np.random.default_rng(seed)
    paths = set()
    for _ in range(cases):
        nb, wb = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        nrows = int(rng.integers(1, 300 if rng.random() < 0.5 else 40))
        w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), (nrows, int(rng.integers(1, 7))))
        w = np.abs(w) if rng.random() < 0.2 else -np.abs(w) if rng.random() < 0.2 else w
        x = rng.integers(-(1 << (nb - 1)), 1 << (nb - 1), (nrows, int(rng.integers(1, 6))))
        adc_bits, shift = int(rng.integers(1, 18)), int(rng.integers(0, 12))
        paths.add(semantics.mvm_path(w, nb, adc_bits, shift))
        got, want = semantics.mvm_acc(w, x, nb, adc_bits, shift), _rules_mvm(w, x, nb, adc_bits, shift)
        assert np.array_equal(got, want), (nb, wb, nrows, adc_bits, shift, semantics.mvm_path(w, nb, adc_bits, shift))
    return paths


def test_kernel_paths_equal_the_rules():
    with kernel_int8.use("numpy"):
        assert check_kernel_paths() == {"product", "packed codes", "packed residues", "bit planes"}


def test_int8_engine_equals_the_rules():
    """The int8 engine takes every window of weights in -128..127 that is not one exact product (the rest keep
    the numpy forms), and equals the rules' per-plane form, inputs of 1..16 bits (up to two bytes of planes)."""
    with engine("int8"):
        assert check_kernel_paths(400) == {"product", "int8 planes", "packed codes", "packed residues", "bit planes"}
        rng = np.random.default_rng(5)
        for nb in range(1, 17):
            w = rng.integers(-128, 128, (int(rng.integers(1, 300)), 3))
            x = rng.integers(-(1 << (nb - 1)), 1 << (nb - 1), (w.shape[0], 4))
            for adc_bits, shift in ((1, 0), (4, 2), (8, 0), (12, 5), (40, 1)):
                path = semantics.mvm_path(w, nb, adc_bits, shift)
                assert path == "product" if rules.adc_fits(*rules.colsum_bounds(w), adc_bits, shift) and not shift \
                    else path == "int8 planes", (nb, adc_bits, shift, path)
                assert np.array_equal(semantics.mvm_acc(w, x, nb, adc_bits, shift),
                                      _rules_mvm(w, x, nb, adc_bits, shift)), (nb, adc_bits, shift)


@pytest.mark.parametrize("fn_name,old,new", [
    ("_packed_codes", "if plan.clip:", "if False:"),
    ("_packed_residues", "plan.ce - _sign_fix(nb, s)", "plan.ce + _sign_fix(nb, s)"),
    ("_packed_residues", "nb - (len(mask) - 1) * plan.g, (1 << s) - 1)", "plan.g, (1 << s) - 1)"),
    ("_field_sum", "np.right_shift(fu, t, out=fu)", "np.right_shift(fu, t + 1, out=fu)"),
])
def test_kernel_check_can_fail(monkeypatch, fn_name, old, new):
    """Expect-fail: a planted bug in a packed form (no clip; the complemented sign field's constant negated, with
    the exact product above the last word's fields; that product's bits read as residue fields; a field sum
    halved)."""
    monkeypatch.setattr(kernel, fn_name, mutant(getattr(kernel, fn_name), old, new))
    with kernel_int8.use("numpy"), pytest.raises(AssertionError):
        check_kernel_paths(120)


def test_machine_sees_weights_rewritten_after_an_mvm():
    """The MVM data cached per weight window is dropped when the weights change (WRITE_W, or a write through
    MachineState.array), so the next MVM uses the new weights."""
    cfg = load_hw("fpga-tiny")
    m = Machine(cfg)
    rng = np.random.default_rng(2)
    m.execute(Command.load_in(0, rng.integers(-8, 8, 6).tolist()))
    mvm = Command.mvm(array=0, row0=0, nrows=6, col0=0, ncols=4, in_addr=0, out_addr=0, adc_bits=cfg.adc_bits)
    for rewrite in ("write_w", "array"):
        w = rng.integers(-8, 8, (6, 4))
        if rewrite == "write_w":
            for r in range(6):
                m.execute(Command.write_w(0, r, 0, w[r].tolist()))
        else:
            m.state.array(0)[:6, :4] = w
        m.execute(mvm)
        want = _rules_mvm(w, m.state.inbuf[:6, None], cfg.input_bits, cfg.adc_bits, 0)[:, 0]
        assert m.state.outbuf[:4].tolist() == rules.wrap_acc(want).tolist(), rewrite


def test_weights_rewrite_check_can_fail(monkeypatch):
    """Expect-fail: a MachineState.array that keeps the cached window data makes the next MVM use stale weights."""
    from cimisa import semantics
    monkeypatch.setattr(semantics.MachineState, "array", mutant(semantics.MachineState.array,
                                                                "self._windows.pop(index, None)", "pass"))
    with pytest.raises(AssertionError):
        test_machine_sees_weights_rewritten_after_an_mvm()
