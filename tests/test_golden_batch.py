"""Batched golden model: one MVM kernel for a batch of input vectors equals the per-vector and naive models.

* random legal programs (:mod:`cimisa.streamgen`: saturating lossy ADCs, coarse steps, negative column sums,
  REQUANT ties) run on B vectors at once == each vector alone on the fast model == each on the naive model;
* :func:`cimisa.semantics.mvm_acc` against the naive model (explicit loops over the scalar form of the one ADC /
  shift-add rule, :mod:`cimisa.rules`), on every path (exact product, residues for ``adc_shift > 0``, general
  saturating bit planes), single vectors and batches, plus worked examples by hand;
* the float64 guard: window bounds at or above 2**53 take the int64 path and stay exact;
* an expect-fail: a batched kernel perturbed in one vector of the batch is caught;
* the end-to-end executor on tiny-bert: batched ``run_int`` == one vector at a time, bit for bit;
* the number-format kernel (:mod:`cimisa.kernel_formats`) against the scalar definition
  :meth:`~cimisa.formats.NumberFormat.mvm_column` on random formats (every weight and input encoding, cell and DAC
  width, rounding), windows, batches and ADC settings, saturating and lossless: both of its forms
  (:func:`cimisa.kernel.format_path`), and in float32, float64 and int64 alike.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cimisa import kernel, kernel_formats, kernel_int8, rules, semantics
from cimisa.config import HwConfig, load_hw
from cimisa.formats import ADC_ROUNDINGS, INPUT_ENCODINGS, WEIGHT_ENCODINGS, NumberFormat
from cimisa.isa import Opcode
from cimisa.streamgen import random_commands
from sw_model.machine import Machine
from sw_model.naive import NAIVE_ACTIONS

CONFIGS = ["fpga-micro", "fpga-tiny", "paper-256"]


def naive_mvm(w, x, input_bits, adc_bits, adc_shift):
    """The naive model's MVM of window ``w`` (nrows, ncols) on inputs ``x`` (nrows[, B]), one vector at a time:
    the accumulators ``(ncols[, B])`` (wrapped to ACC_BITS, as the machine stores them)."""
    nrows, ncols = w.shape
    cfg = HwConfig(name="naive-window", rows=max(2, nrows), cols=max(2, ncols), n_arrays=1, weight_bits=16,
                   input_bits=input_bits, adc_bits=1, adcs_per_array=1, in_depth=max(2, nrows),
                   out_depth=max(2, ncols), rows_per_cycle=1)
    st = semantics.MachineState(cfg)
    st.array(0)[:nrows, :ncols] = w                          # any weights of up to 16 bits (cells saturate beyond)
    x2 = np.asarray(x).reshape(nrows, -1)
    out = np.zeros((ncols, x2.shape[1]), dtype=np.int64)
    for t in range(x2.shape[1]):
        st.inbuf[:nrows] = x2[:, t]
        NAIVE_ACTIONS[Opcode.MVM](st, array=0, row0=0, nrows=nrows, col0=0, ncols=ncols, in_addr=0, in_stride=1,
                                  out_addr=0, out_stride=1, accumulate=0, adc_bits=adc_bits, adc_shift=adc_shift)
        out[:, t] = st.outbuf[:ncols]
    return out.reshape((ncols,) + np.shape(x)[1:])


def test_mvm_acc_worked_examples():
    """By hand: x = [5, -6] (4-bit: 0101, 1010) on w = [[1, -2], [3, 4]]. Plane column sums, LSB first:
    column 0: 1, 3, 1, 3; column 1: -2, 4, -2, 4."""
    w, x = np.array([[1, -2], [3, 4]]), np.array([5, -6])
    # lossless: the exact product [5*1 - 6*3, 5*-2 - 6*4]
    assert semantics.mvm_acc(w, x, 4, 8, 0).tolist() == [-13, -34]
    # 2-bit ADC (codes -2..1): column 0 -> 1, 1, 1, 1: 1 + 2 + 4 - 8; column 1 -> -2, 1, -2, 1: -2 + 2 - 8 - 8
    assert semantics.mvm_acc(w, x, 4, 2, 0).tolist() == [-1, -16]
    # 3-bit ADC (-4..3), step 2 (floor): column 0 -> 0, 1, 0, 1: 2*(0 + 2 + 0 - 8);
    # column 1 -> -1, 2, -1, 2: 2*(-1 + 4 - 4 - 16)
    assert semantics.mvm_acc(w, x, 4, 3, 1).tolist() == [-12, -34]
    assert naive_mvm(w, x, 4, 3, 1).tolist() == [-12, -34]


def random_windows(seed: int, n: int = 60):
    """``n`` random MVM cases ``(w, x, input_bits, adc_bits, adc_shift)``: widths 2..9, 1..47 rows, 1..5
    columns, batches of 1..4 vectors, ADCs of 1..15 bits with steps 2**0..2**8 (every kernel path)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        nb, wb = int(rng.integers(2, 10)), int(rng.integers(2, 10))
        nrows, ncols, batch = int(rng.integers(1, 48)), int(rng.integers(1, 6)), int(rng.integers(1, 5))
        w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), (nrows, ncols))
        x = rng.integers(-(1 << (nb - 1)), 1 << (nb - 1), (nrows, batch))
        yield w, x, nb, int(rng.integers(1, 16)), int(rng.integers(0, 9))


def engine(name):
    """The kernel engine ``name`` (:mod:`cimisa.kernel_int8`) for a ``with`` block; skip when int8 is missing."""
    try:
        return kernel_int8.use(name)
    except RuntimeError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("eng", ["numpy", "int8"])
@pytest.mark.parametrize("seed", range(6))
def test_mvm_acc_matches_naive(seed, eng):
    with engine(eng):
        _mvm_acc_matches_naive(seed)


def _mvm_acc_matches_naive(seed):
    paths = set()
    for w, x, nb, adc_bits, shift in random_windows(seed):
        wb = int(np.abs(w).max()).bit_length() + 1
        nrows = w.shape[0]
        fits = rules.adc_fits(*rules.colsum_bounds(w), adc_bits, shift)
        paths.add("general" if not fits else "residue" if shift else "product")
        for xx in (x, x[:, 0]):                    # a batch, and the single-vector case
            got = rules.wrap_acc(semantics.mvm_acc(w, xx, nb, adc_bits, shift))
            want = naive_mvm(w, xx, nb, adc_bits, shift)
            assert got.shape == want.shape and np.array_equal(got, want), (nb, wb, nrows, adc_bits, shift)
    assert paths == {"general", "residue", "product"}


def _random_lanes(m: Machine, rng: np.random.Generator) -> None:
    """Give every vector of the batch its own random input and output buffers (within their formats)."""
    cfg = m.cfg
    st = m.state
    st.inbuf[...] = rng.integers(-(1 << (cfg.input_bits - 1)), 1 << (cfg.input_bits - 1), st.inbuf.shape)
    st.outbuf[...] = rng.integers(-(1 << 31), 1 << 31, st.outbuf.shape)


def check_batch_equals_per_vector(cfg_name: str, seed: int, batch: int = 5, naive: bool = True) -> int:
    """Run a random program on ``batch`` vectors at once and on each alone (fast, naive); assert equality.

    The commands up to the first MVM (the prologue: weights, shared inputs) run on every machine alike; then each
    vector gets its own random buffers. Returns the number of MVMs compared.
    """
    cfg = load_hw(cfg_name)
    cmds = [c for c in random_commands(cfg, seed, n=40) if c.op is not Opcode.HALT]
    first = next(i for i, c in enumerate(cmds) if c.op is Opcode.MVM)
    rng = np.random.default_rng(seed)
    mb = Machine(cfg)
    for c in cmds[:first]:
        mb.execute(c)
    mb.set_batch(batch)
    n_before = len(mb.state.results)
    _random_lanes(mb, rng)
    lanes_in, lanes_out = mb.state.inbuf.copy(), mb.state.outbuf.copy()
    for c in cmds[first:]:
        mb.execute(c)
    results_b = np.array(mb.state.results[n_before:], dtype=np.int64).reshape(-1, batch)
    for lane in range(batch):
        for impl in ("fast", "naive") if naive else ("fast",):
            m1 = Machine(cfg, impl=impl)
            for c in cmds[:first]:
                m1.execute(c)
            m1.state.inbuf[:] = lanes_in[:, lane]
            m1.state.outbuf[:] = lanes_out[:, lane]
            for c in cmds[first:]:
                m1.execute(c)
            where = f"{cfg_name} seed {seed} vector {lane} ({impl})"
            assert np.array_equal(m1.state.outbuf, mb.state.outbuf[:, lane]), f"outbuf differs: {where}"
            assert np.array_equal(m1.state.inbuf, mb.state.inbuf[:, lane]), f"inbuf differs: {where}"
            assert np.array_equal(np.array(m1.state.results[n_before:], dtype=np.int64),
                                  results_b[:, lane]), f"READ results differ: {where}"
    return sum(c.op is Opcode.MVM for c in cmds[first:])


@pytest.mark.parametrize("cfg_name", CONFIGS)
@pytest.mark.parametrize("seed", range(4))
def test_random_programs_batched_equals_per_vector_and_naive(cfg_name, seed):
    assert check_batch_equals_per_vector(cfg_name, seed, naive=cfg_name != "paper-256" or seed < 2) > 0


def test_lossy_saturating_adcs_are_exercised():
    """The random programs above do convert with saturating ADCs and floor negative column sums."""
    from cimisa.streamgen import covered
    bins = set()
    for cfg_name in CONFIGS:
        cfg = load_hw(cfg_name)
        for seed in range(4):
            bins |= covered(cfg, random_commands(cfg, seed, n=40))
    assert {"mvm:adc_sat_hi", "mvm:adc_sat_lo", "mvm:floor_neg", "mvm:neg_input"} <= bins


def test_float_guard_falls_back_to_int64(monkeypatch):
    """Window bounds at or above 2**53 (weights outside any configuration) use int64 and stay exact."""
    used = []
    real = kernel._matmul

    def spy(wt, x, bound):
        used.append(bound < kernel.FLOAT_EXACT)
        return real(wt, x, bound)

    monkeypatch.setattr(kernel, "_matmul", spy)
    rng = np.random.default_rng(0)
    w = rng.integers(-(1 << 52), 1 << 52, (32, 4))          # 32 * 2**52 >= 2**53: float64 would round
    w[0, 0] = (1 << 53) + 1                                 # odd and large: lost by float64 rounding
    x = rng.integers(-128, 128, (32, 6))
    x[0] = 1
    for adc_bits, shift in ((60, 0), (10, 50), (3, 0)):    # product, residue and saturating plane paths
        used.clear()
        got = semantics.mvm_acc(w, x, 8, adc_bits, shift)
        colsum = np.einsum("rc,rbn->cbn", w, rules.bit_planes(x, 8))   # exact in int64 (0/1 planes, < 2**58)
        want = rules.wrap_acc(rules.convert_planes(colsum, 8, adc_bits, shift))   # (weights past any format)
        assert np.array_equal(rules.wrap_acc(got), want)
        assert used and not any(used), "a bound >= 2**53 must not take the float64 path"
    # ... and float64 would indeed have been wrong here:
    assert int(np.float64(w[0, 0])) != int(w[0, 0])


@pytest.mark.parametrize("eng", ["numpy", "int8"])
def test_forced_int64_path_equals_float_path(monkeypatch, eng):
    """Every path with the float64 guard at 0 (all int64) gives the same results as with BLAS."""
    with engine(eng):
        _forced_int64_path_equals_float_path(monkeypatch)


def _forced_int64_path_equals_float_path(monkeypatch):
    rng = np.random.default_rng(1)
    cases = []
    for _ in range(30):
        w = rng.integers(-8, 8, (int(rng.integers(1, 40)), 3))
        x = rng.integers(-128, 128, (w.shape[0], 4))
        cases.append((w, x, int(rng.integers(1, 12)), int(rng.integers(0, 6))))
    want = [semantics.mvm_acc(w, x, 8, a, s) for w, x, a, s in cases]
    monkeypatch.setattr(kernel, "FLOAT_EXACT", 0)
    for (w, x, a, s), y in zip(cases, want):
        assert np.array_equal(semantics.mvm_acc(w, x, 8, a, s), y)


_AUTO = """
import sys, time
import numpy as np
from cimisa import kernel, kernel_int8
rng = np.random.default_rng(0)
w, x = rng.integers(-8, 8, (64, 16)), rng.integers(-128, 128, (64, 8))
kernel.mvm_acc(w, x, 8, 3, 0)
assert "torch" not in sys.modules and kernel.mvm_path(w, 8, 3, 0) != "int8 planes"   # a short run: numpy
kernel_int8.LOAD_AFTER = 0.05
t0 = time.perf_counter()
while "torch" not in sys.modules and time.perf_counter() - t0 < 60:
    kernel.mvm_acc(w, x, 8, 3, 0)
print(kernel.mvm_path(w, 8, 3, 0), "torch" in sys.modules)
"""


def test_auto_engine_loads_torch_only_after_a_while():
    """``auto``: a short run never loads torch (about a second); after ``LOAD_AFTER`` seconds of MVMs the int8
    engine would take, it does, and takes them."""
    out = subprocess.run([sys.executable, "-c", _AUTO], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    want = "int8 planes True" if kernel_int8.active(load=True) is not None else "packed codes True"
    assert out.stdout.split("\n")[-2] == want


def test_auto_engine_cost_model():
    """``auto``'s cost model (fitted by bench/bench_golden.py's engine-choice table): int8 for one vector and for
    256-row windows; the packed residues of a 16-row window on 633 vectors (2 words and a float32 product) stay
    with numpy; one product per plane (no packing) always goes to int8."""
    rng = np.random.default_rng(0)
    short, tall = (kernel.Window.of(rng.integers(-128, 128, (r, 96))) for r in (16, 256))
    s16 = rules.adc_shift_for(short.colmin, short.colmax, 8)
    path, plan = kernel._choose(short, 8, 8, s16)
    assert path == "packed residues"
    assert not kernel._int8_cheaper(short, plan, 8, 633) and kernel._int8_cheaper(short, plan, 8, 1)
    for b in (1, 64, 633):
        assert kernel._int8_cheaper(tall, kernel._choose(tall, 8, 8, 0)[1], 8, b)
    assert kernel._int8_cheaper(short, None, 8, 633)
    with kernel_int8.use("numpy"):
        assert not kernel._wants_int8(tall, "packed codes", kernel._choose(tall, 8, 8, 0)[1], 8, 64)
    assert not kernel._wants_int8(tall, "product", None, 8, 64)


def test_auto_engine_rule_for_number_formats():
    """``auto`` on number formats: int8 over the packed form and from ``nrows * batch >= 4096``, numpy's small
    float32 product below; ``numpy`` never, ``int8`` always (where the cells fit)."""
    rng = np.random.default_rng(1)
    twos, diff = NumberFormat(8, 8, 2, "twos", "twos", 2, "nearest"), NumberFormat(8, 8, 1, "differential")
    cells = {r: kernel_formats._format_cells(kernel.Window.of(rng.integers(-128, 128, (r, 8))), twos)
             for r in (16, 64)}
    assert cells[16].pack[1] == 1 and cells[16].fits_int8
    assert not kernel_formats._wants_int8(cells[16], 64) and kernel_formats._wants_int8(cells[16], 256)
    assert kernel_formats._wants_int8(cells[64], 64) and not kernel_formats._wants_int8(cells[64], 1)
    packed = kernel_formats._format_cells(kernel.Window.of(rng.integers(-128, 128, (64, 8))), diff)
    assert packed.pack[1] > 1 and kernel_formats._wants_int8(packed, 1)
    with kernel_int8.use("numpy"):
        assert not kernel_formats._wants_int8(packed, 1)
    with engine("int8"):
        assert kernel_formats._wants_int8(cells[16], 1)


def test_engine_setting_is_checked():
    with pytest.raises(ValueError, match="must be one of auto, int8, numpy"):
        kernel_int8.use("fast")
    assert kernel_int8.mode() == "auto"


def test_perturbed_batched_kernel_is_caught(monkeypatch):
    """Expect-fail: a kernel wrong in one vector of a batch (only when batched) fails the comparison."""
    real = kernel.mvm_acc

    def perturbed(w, x, *a):
        acc = real(w, x, *a)
        if np.ndim(x) == 2 and x.shape[1] > 1:
            acc[..., -1] += 1                              # the last vector of a batch is off by one
        return acc

    monkeypatch.setattr(kernel, "mvm_acc", perturbed)
    with pytest.raises(AssertionError, match="differs|differ"):
        check_batch_equals_per_vector("fpga-tiny", 0, naive=False)


def test_load_in_and_read_on_a_batch():
    cfg = load_hw("fpga-micro")
    m = Machine(cfg)
    m.set_batch(3)
    semantics.load_in(m.state, addr=2, count=2, data=(-3, 7))
    assert m.state.inbuf[2:4].tolist() == [[-3, -3, -3], [7, 7, 7]]
    m.state.outbuf[0] = [1, 2, 3]
    semantics.read(m.state, addr=0, count=1)
    assert [r.tolist() for r in m.state.results] == [[1, 2, 3]]
    with pytest.raises(ValueError):
        Machine(cfg, impl="naive").set_batch(2)


# ---- end to end: the executor on tiny-bert ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_bert_setup():
    from mapper.evaluate.run import collect_activations, compile_cim, prepare
    prep = prepare("tiny-bert", nblocks=4, show_progress=False)
    acts = collect_activations(prep, ["Calibration text for a tiny encoder.", "And one more sentence."], max_len=32)
    return prep, compile_cim(prep, load_hw("paper-256").lossless(), acts, strategy="auto")


@pytest.mark.parametrize("adc_bits,rule,noisy", [(8, "bound", False), (5, "bound", False), ("lossless", "bound", False),
                                                 (6, "calib", True)])
def test_executor_batched_equals_per_vector(tiny_bert_setup, adc_bits, rule, noisy):
    """run_int on a batch of tokens == the same program run one token at a time, for every mapped matmul."""
    from mapper.evaluate.run import build_cim_model
    prep, setup = tiny_bert_setup
    _model, ex = build_cim_model(prep, setup, adc_bits=adc_bits, adc_rule=rule, fast=noisy)
    assert type(ex.machine).__name__ == ("NoisyMachine" if noisy else "Machine")
    for name, x_q in setup.extra["calib_xq"].items():
        x_q = np.asarray(x_q)[:12]
        y = ex.run_int(name, x_q)
        assert np.array_equal(y, ex.run_int_per_vector(name, x_q)), name
        assert np.array_equal(y[3:5], ex.run_int(name, x_q[3:5])), name     # and on a sub-batch


# ---- the number-format kernel -------------------------------------------------------------------------------------
def random_format_cases(seed: int, n: int = 40):
    """``n`` random cases ``(fmt, w, x, adc_bits, adc_shift)``: a random format of 2..6-bit weights and inputs
    (every encoding, cell width, DAC width and rounding), 1..7 rows, 1..3 logical columns, 1..3 vectors; half of
    them at step 1 with an ADC at least as wide as the window needs (lossless), the others 1..lossless bits with
    steps 2**0..2**3 (saturating, rounding)."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        wb, ib = int(rng.integers(2, 7)), int(rng.integers(2, 7))
        enc = WEIGHT_ENCODINGS[k % 3]
        cb = int(rng.integers(0, wb - (enc == "differential") + 1))
        fmt = NumberFormat(wb, ib, cb, enc, INPUT_ENCODINGS[(k // 3) % 2], int(rng.integers(1, max(1, ib - 1) + 1)),
                           ADC_ROUNDINGS[(k // 6) % 2])
        nrows, ncols, batch = int(rng.integers(1, 8)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), (nrows, ncols))
        x = rng.integers(-(1 << (ib - 1)), 1 << (ib - 1), (nrows, batch))
        full = fmt.lossless_adc_bits(nrows)
        if k % 2:
            yield fmt, w, x, int(rng.integers(full, full + 3)), 0
        else:
            yield fmt, w, x, int(rng.integers(1, full + 1)), int(rng.integers(0, 4))


def scalar_mvm(fmt, w, x, adc_bits, adc_shift):
    """The MVM by :meth:`~cimisa.formats.NumberFormat.mvm_column`, column by column and vector by vector."""
    bias = [fmt.bias_cell] * w.shape[0] if fmt.bias_cols else None
    x2 = x.reshape(w.shape[0], -1)
    out = [[fmt.mvm_column([fmt.cells(int(v)) for v in w[:, c]], bias, x2[:, b].tolist(), adc_bits, adc_shift)
            for b in range(x2.shape[1])] for c in range(w.shape[1])]
    return np.array(out, dtype=np.int64).reshape((w.shape[1],) + x.shape[1:])


def format_kernel_mismatches(seeds=range(3)) -> list:
    """The random format cases on which :func:`cimisa.kernel.mvm_acc_format` (a batch, and its first vector
    alone) differs from :func:`scalar_mvm`, and the set of forms taken."""
    bad, paths = [], set()
    for seed in seeds:
        for fmt, w, x, adc_bits, shift in random_format_cases(seed):
            paths.add(kernel.format_path(w, fmt, adc_bits, shift))
            for xx in (x, x[:, 0]):
                got = kernel.mvm_acc_format(kernel.Window.of(w), xx, fmt, adc_bits, shift)
                want = scalar_mvm(fmt, w, xx, adc_bits, shift)
                if got.shape != want.shape or not np.array_equal(got, want):
                    bad.append((fmt.describe(), w.shape, adc_bits, shift))
    return bad, paths


@pytest.mark.parametrize("eng", ["numpy", "int8"])
def test_format_kernel_matches_the_scalar_definition(eng):
    with engine(eng):
        bad, paths = format_kernel_mismatches()
    assert not bad, bad[:3]
    assert paths == set(kernel_formats.FORMAT_PATHS if eng == "numpy" else kernel_formats.INT8_FORMAT_PATHS)


def test_int8_engine_takes_only_cells_and_drives_within_int8():
    """8-bit offset cells (0..255) stay with the numpy forms; 4-bit ones go to int8 (drives of 8-bit DACs too:
    0..127 per cycle, or -127..127 sign-magnitude); both exact."""
    rng = np.random.default_rng(3)
    with engine("int8"):
        for fmt, want in ((NumberFormat(8, 8, 8, "offset", "twos", 8), "cycles"),
                          (NumberFormat(8, 8, 4, "offset", "twos", 8), "int8 cycles"),
                          (NumberFormat(8, 8, 4, "offset", "sign-magnitude", 8), "int8 cycles")):
            w = rng.integers(-128, 128, (20, 3))
            x = rng.integers(-128, 128, (20, 2))
            assert kernel.format_path(w, fmt, 3, 1) == want, fmt.describe()
            assert np.array_equal(kernel.mvm_acc_format(w, x, fmt, 3, 1), scalar_mvm(fmt, w, x, 3, 1))


@pytest.mark.parametrize("eng", ["numpy", "int8"])
def test_format_kernel_exact_in_every_type(monkeypatch, eng):
    """float64 (no float32) and int64 (no float) products give the same results as the default choice."""
    with engine(eng):
        _format_kernel_exact_in_every_type(monkeypatch)


def _format_kernel_exact_in_every_type(monkeypatch):
    for f32, f64 in ((0, kernel_formats.FLOAT_EXACT), (0, 0)):
        monkeypatch.setattr(kernel_formats, "_F32_EXACT", f32)
        monkeypatch.setattr(kernel_formats, "FLOAT_EXACT", f64)
        kernel_formats._LIMITS.clear()
        try:
            bad, _ = format_kernel_mismatches(range(1))
        finally:
            kernel_formats._LIMITS.clear()
        assert not bad, (f32, f64, bad[:3])


def test_format_product_form_is_the_logical_product():
    """Lossless at step 1: the product of the weights the cells hold (differential ones saturated to the symmetric
    range) and the inputs the drives stand for (sign-magnitude ones saturated), by the formats' own ranges."""
    rng = np.random.default_rng(5)
    for fmt in (NumberFormat(8, 8, 1, "differential"), NumberFormat(6, 5, 2, "offset", "sign-magnitude", 2),
                NumberFormat(5, 6, 2, "twos", "twos", 3, "nearest")):
        w = rng.integers(-(1 << (fmt.weight_bits - 1)), 1 << (fmt.weight_bits - 1), (40, 5))
        x = rng.integers(-(1 << (fmt.input_bits - 1)), 1 << (fmt.input_bits - 1), (40, 7))
        w[0], x[0] = -(1 << (fmt.weight_bits - 1)), -(1 << (fmt.input_bits - 1))     # the extremes
        bits = fmt.lossless_adc_bits(40)
        assert kernel.format_path(w, fmt, bits, 0) == "product"
        want = np.clip(w, *fmt.weight_range).T @ np.clip(x, *fmt.input_range)
        assert np.array_equal(kernel.mvm_acc_format(w, x, fmt, bits, 0), want), fmt.describe()


def test_perturbed_format_kernel_is_caught(monkeypatch):
    """Expect-fail: the comparison with the scalar definition sees a kernel off by one in one vector of a batch."""
    real = kernel_formats._cycles

    def perturbed(*a):
        acc = real(*a)
        acc[..., -1] += acc.shape[-1] > 1
        return acc

    monkeypatch.setattr(kernel_formats, "_cycles", perturbed)
    for eng in ("numpy", "int8"):
        with engine(eng):
            bad, _ = format_kernel_mismatches(range(1))
        assert bad, eng
