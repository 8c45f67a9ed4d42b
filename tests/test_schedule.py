"""Scheduler and programs: the ADC rule, and generated streams reproduce the integer Monarch product exactly."""

import functools

import numpy as np
import pytest

from cimisa.config import load_hw
from cimisa.isa import Command, Opcode
from cimisa.rules import lossless_adc_bits
from compiler.kinds import AdcMode
from compiler.place import PlacementError, geometry, place
from compiler.program import compile_model
from compiler.quant import calibrate_requant_shift, reference_int_product
from compiler.schedule import adc_setting, schedule
from mapper.models import load_hf_model, load_model_spec
from mapper.pipeline import project_factors
from sw_model import Machine

HW = load_hw("paper-256")
TINY = load_hw("fpga-tiny", n_arrays=256).lossless()


def test_paper_adc_rule_linear_8_sparse_5_dense_3():
    g = tuple(m for m in geometry(load_model_spec("bert-large"), 32) if m.layer == 0 and m.role == "q")
    bits = {st: set(schedule(place(g, HW, st), HW, "paper").adc_bits_histogram()) for st in
            ("linear", "sparse", "dense", "auto")}
    assert bits == {"linear": {8}, "sparse": {5}, "dense": {3}, "auto": {5}}


def test_adc_sharing_and_exact_mode():
    g = tuple(m for m in geometry(load_model_spec("bert-large"), 32) if m.layer == 0 and m.role == "q")
    s = schedule(place(g, HW, "sparse"), HW, "exact")
    assert {a.adc_bits for a in s.activations} == {8}          # capped by the configuration
    assert all(a.adc_shift == lossless_adc_bits(32, 8) - 8 for a in s.activations)
    assert all(a.ncols == 256 and a.nrows == 256 and a.rows_per_col == 32 for a in s.activations)
    assert s.adc_mode is AdcMode.EXACT and repr(s).endswith("adc_mode='exact')")


def test_adc_setting_by_hand():
    """paper: ceil(log2(rows)) bits, the step dropping the rest of the lossless width; exact: lossless, capped."""
    # 256 rows of 8-bit weights need 16 bits; paper gives 8 bits (capped by the configuration), step 2**8
    assert adc_setting(256, HW, "paper") == (8, 8)
    assert adc_setting(32, HW, AdcMode.PAPER) == (5, 13 - 5)       # 32 rows: 13 lossless bits
    assert adc_setting(8, HW, "paper") == (3, 11 - 3)
    assert adc_setting(1, HW, "paper") == (1, 7)
    assert adc_setting(32, HW, "exact") == (8, 13 - 8)
    assert adc_setting(2, HW, "exact") == (8, 1)                   # 9 lossless bits, 8 available
    assert adc_setting(32, HW.lossless(), "exact") == (13, 0)
    with pytest.raises(PlacementError, match="adc mode must be one of paper, exact, accuracy, not 'fine'"):
        adc_setting(32, HW, "fine")


@pytest.mark.parametrize("weight_bits", [4, 8])
def test_adc_setting_default_format_is_the_old_formula(weight_bits):
    """Through the format, the default format keeps ``shift = lossless_bits - bits`` for every rows_per_col."""
    hw = load_hw("paper-256", rows=4096, weight_bits=weight_bits, adc_bits=12)
    assert hw.fmt.is_default
    for rpc in range(1, 4097):
        full = lossless_adc_bits(rpc, weight_bits)
        bits = min(12, max(1, (rpc - 1).bit_length()))             # ceil(log2(rpc)), at least 1
        assert adc_setting(rpc, hw, "paper") == (bits, max(0, full - bits)), rpc
        bits = min(12, full)
        assert adc_setting(rpc, hw, "exact") == (bits, max(0, full - bits)), rpc


def test_adc_setting_unsigned_one_bit_sums():
    """1-bit differential cells driven by 1-bit twos digits: every sum of 32 rows is 0..32, unsigned. The paper's
    5 bits cover 0..31 at step 1 (only all 32 rows on 32 set cells saturate); lossless needs 6 bits."""
    hw = load_hw("fpga-tiny-sliced")
    assert hw.fmt.sum_bounds(32) == {True: (0, 32)}
    assert adc_setting(32, hw, "paper") == (5, 0)
    assert adc_setting(8, hw, "paper") == (3, 0)                   # 0..8: 3 bits code 0..7, 8 saturates
    assert adc_setting(32, hw, "exact") == (6, 0)
    assert adc_setting(32, hw, AdcMode.ACCURACY) == adc_setting(32, hw, "exact")   # starts from exact
    assert adc_setting(32, hw.replace(adc_bits=4), "exact") == (4, 2)   # 0..32 >> 2 = 0..8: 15 codes need shift 2


def test_accuracy_mode_schedules_like_exact():
    g = tuple(m for m in geometry(load_model_spec("bert-large"), 32) if m.layer == 0 and m.role == "q")
    a, e = (schedule(place(g, HW, "sparse"), HW, mode) for mode in ("accuracy", "exact"))
    assert a.adc_mode is AdcMode.ACCURACY
    assert [(x.adc_bits, x.adc_shift) for x in a.activations] == [(x.adc_bits, x.adc_shift) for x in e.activations]


@functools.cache
def tiny_model(name, nblocks=8):
    spec = load_model_spec(name)
    return spec, project_factors(spec, load_hf_model(name), nblocks)


@pytest.fixture(scope="module", params=["tiny-bert", "tiny-gpt2", "tiny-llama", "tiny-bart"])
def tiny(request):
    return tiny_model(request.param)


def run_programs(cm, hw, batch=3, seed=0, corrupt=None):
    """Run every program on one machine the way the runner does; return {name: (y, x)}."""
    m = Machine(hw)
    for c in cm.weight_commands:
        m.execute(c)
    m.state.inbuf = np.zeros((hw.in_depth, batch), np.int64)
    m.state.outbuf = np.zeros((hw.out_depth, batch), np.int64)
    rng = np.random.default_rng(seed)
    out, xs = {}, {}
    for name, p in cm.programs.items():
        q = cm.quant[name]
        x = xs[p.depends_on[0]] if p.depends_on else rng.integers(-128, 128, size=(q.in_features, batch))
        xs[name] = x
        m.state.inbuf[p.in_addr:p.in_addr + p.in_len] = 0
        m.state.inbuf[p.in_addr:p.in_addr + len(x)] = x
        cmds = p.commands if corrupt is None else corrupt(name, p.commands)
        for c in cmds:
            m.execute(c)
        out[name] = (m.state.outbuf[p.out_addr:p.out_addr + p.out_len].copy(), x)
    return out


@pytest.mark.parametrize("strategy,colocate", [("linear", False), ("sparse", False), ("dense", False),
                                               ("auto", False), ("auto", True)])
def test_stream_equals_integer_monarch_product(tiny, strategy, colocate):
    spec, factors = tiny
    cm = compile_model(spec, factors, TINY, strategy=strategy, colocate=colocate)
    assert set(cm.programs) == {m.name for m in spec.mapped()}
    for name, (y, x) in run_programs(cm, TINY).items():
        p = cm.programs[name]
        ref = reference_int_product(cm.quant[name], x, p.requant_shift, TINY.input_bits)
        np.testing.assert_array_equal(y, ref, err_msg=f"{strategy}: {name}")


def test_oversized_blocks_and_budget():
    spec, factors = tiny_model("tiny-bert", 2)          # 32x32 .. 64x32 blocks on 32x32 arrays
    for strategy, arrays in (("sparse", None), ("dense", None), ("auto", None), ("auto", 70)):
        cm = compile_model(spec, factors, TINY, strategy=strategy, arrays=arrays)
        for name, (y, x) in run_programs(cm, TINY).items():
            ref = reference_int_product(cm.quant[name], x, cm.programs[name].requant_shift, TINY.input_bits)
            np.testing.assert_array_equal(y, ref, err_msg=f"{strategy}: {name}")


def test_checker_catches_a_corrupted_command():
    spec, factors = tiny_model("tiny-bert")
    cm = compile_model(spec, factors, TINY, strategy="sparse")
    victim = next(iter(cm.programs))

    def corrupt(name, cmds):
        if name != victim:
            return cmds
        i = next(i for i, c in enumerate(cmds) if c.op is Opcode.MVM and c.args["nrows"] > 1)
        c = cmds[i]
        bad = Command(Opcode.MVM, dict(c.args, in_stride=c.args["in_stride"] + 1))
        return cmds[:i] + (bad,) + cmds[i + 1:]

    y, x = run_programs(cm, TINY, corrupt=corrupt)[victim]
    ref = reference_int_product(cm.quant[victim], x, cm.programs[victim].requant_shift, TINY.input_bits)
    assert not np.array_equal(y, ref)


def test_with_requant_shifts():
    spec, factors = tiny_model("tiny-llama")
    cm = compile_model(spec, factors, TINY, strategy="auto")
    name = next(iter(cm.programs))
    x = np.random.default_rng(1).integers(-128, 128, size=(cm.quant[name].in_features, 4))
    s = calibrate_requant_shift(cm.quant[name], x, TINY.input_bits)
    cm2 = cm.with_requant_shifts({name: s + 1})
    assert cm2.programs[name].requant_shift == s + 1
    assert all(c.args["shift"] == s + 1 for c in cm2.programs[name].commands if c.op is Opcode.REQUANT)
    for n, (y, xx) in run_programs(cm2, TINY).items():
        ref = reference_int_product(cm2.quant[n], xx, cm2.programs[n].requant_shift, TINY.input_bits)
        np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("nblocks", [7, 5, 2])
@pytest.mark.parametrize("strategy", ["sparse", "dense", "auto"])
def test_uneven_blocks_and_colocation_exact(nblocks, strategy):
    """Blocks that do not divide the array, row pieces (shelf cuts) and co-location: still exact."""
    spec = load_model_spec("tiny-llama")
    rng = np.random.default_rng(nblocks)
    factors = {g.name: (rng.standard_normal(g.r_shape), rng.standard_normal(g.l_shape), None)
               for g in geometry(spec, nblocks)}
    cm = compile_model(spec, factors, TINY, strategy=strategy, colocate=True)
    for name, (y, x) in run_programs(cm, TINY, seed=nblocks).items():
        ref = reference_int_product(cm.quant[name], x, cm.programs[name].requant_shift, TINY.input_bits)
        np.testing.assert_array_equal(y, ref, err_msg=f"{strategy}: {name}")


def test_reference_product_saturates_to_the_format_input_range():
    """Sign-magnitude inputs are symmetric: REQUANT gives -127, not -128, for an 8-bit stage-1 value of -128."""
    from compiler.quant import monarch_int_product
    R, L, x = np.array([[[1]]]), np.array([[[1]]]), np.array([-128])
    assert monarch_int_product(R, L, x, 0, 8).tolist() == [-128]
    sm = load_hw("fpga-tiny", input_encoding="sign-magnitude").fmt.input_range
    assert monarch_int_product(R, L, x, 0, 8, input_range=sm).tolist() == [-127]
