"""mapper.evaluate.executor: batched execution of compiled Monarch programs on the golden model."""

from __future__ import annotations

import numpy as np
import pytest

from cimisa.config import load_hw
from cimisa.isa import Opcode
from compiler.quant import reference_int_product, stage1_int
from mapper.evaluate.cim import compile_cim
from mapper.evaluate.executor import CimExecutor, adc_shift_for, choose_requant_shift
from mapper.evaluate.forward import collect_activations
from mapper.evaluate.prepare import prepare
from sw_model.machine import Machine
from sw_model.noise import NoisyMachine


@pytest.fixture(scope="module")
def tiny_bert():
    prep = prepare("tiny-bert", nblocks=4, show_progress=False)
    acts = collect_activations(prep, ["Calibration text for a tiny encoder.", "And one more sentence."], max_len=32)
    return prep, acts


@pytest.mark.parametrize("strategy", ["linear", "sparse", "dense", "auto"])
@pytest.mark.parametrize("machine_cls", [Machine, NoisyMachine])
def test_lossless_batched_equals_reference(tiny_bert, strategy, machine_cls):
    """With lossless ADCs every program returns compiler.quant's exact integer product, for a batch of tokens."""
    prep, acts = tiny_bert
    hw = load_hw("paper-256").lossless()
    setup = compile_cim(prep, hw, acts, strategy=strategy)
    ex = CimExecutor(setup.compiled, machine_cls(hw))
    rng = np.random.default_rng(0)
    for name, prog in setup.compiled.programs.items():
        q = setup.compiled.quant[name]
        x = rng.integers(-127, 128, (9, q.in_features))
        got = ex.run_int(name, x)
        want = reference_int_product(q, x.T, prog.requant_shift, hw.input_bits).T
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_bound_rule_is_minimal_and_never_saturates(tiny_bert):
    prep, acts = tiny_bert
    hw = load_hw("paper-256").lossless()
    setup = compile_cim(prep, hw, acts, strategy="auto")
    m = NoisyMachine(hw.replace(adc_bits=4))
    ex = CimExecutor(setup.compiled, m, adc_bits=4)
    n = 0
    for _prog, cmds in ex.programs.values():
        for c in cmds:
            if c.op is not Opcode.MVM:
                continue
            a = c.args
            w = m.state.array(a["array"])[a["row0"]:a["row0"] + a["nrows"], a["col0"]:a["col0"] + a["ncols"]]
            hi_s, lo_s = int(np.clip(w, 0, None).sum(0).max()), int(np.clip(w, None, 0).sum(0).min())
            assert a["adc_bits"] == 4
            s = a["adc_shift"]
            assert (hi_s >> s) <= 7 and (lo_s >> s) >= -8
            if s:
                assert (hi_s >> (s - 1)) > 7 or (lo_s >> (s - 1)) < -8
            n += 1
    assert n > 0


def test_calib_rule_uses_observed_ranges(tiny_bert):
    """The calib rule never needs a larger ADC step than the bound rule, and some MVMs get a finer one."""
    prep, acts = tiny_bert
    hw = load_hw("paper-256").lossless()
    setup = compile_cim(prep, hw, acts, strategy="sparse")
    bound = CimExecutor(setup.compiled, NoisyMachine(hw.replace(adc_bits=5)), adc_bits=5)
    calib = CimExecutor(setup.compiled, NoisyMachine(hw.replace(adc_bits=5)), adc_bits=5, adc_rule="calib")
    calib.plan_adcs(calib.observe_adcs(setup.extra["calib_xq"]))
    finer = 0
    for name in bound.adc_shifts:
        for sb, sc in zip(bound.adc_shifts[name], calib.adc_shifts[name]):
            assert sc <= sb
            finer += sc < sb
    assert finer > 0


def test_requant_shift_rule():
    R = np.ones((2, 3, 4), dtype=np.int64) * 100
    x = np.full((5, 8), 127)
    peak = int(np.abs(stage1_int(R, x.T)).max())          # 4 * 100 * 127 = 50800
    s = choose_requant_shift(R, x, 8)
    assert ((peak + (1 << (s - 1))) >> s) <= 127 < ((peak + (1 << (s - 2))) >> (s - 1))
    assert choose_requant_shift(R, np.zeros((3, 8), dtype=np.int64), 8) == 0


@pytest.mark.parametrize("lo,hi,bits,want", [(0, 0, 3, 0), (-4, 3, 3, 0), (-5, 3, 3, 1), (0, 4, 3, 1),
                                             (-100, 900, 5, 6), (-(1 << 15), (1 << 15) - 1, 16, 0)])
def test_adc_shift_for(lo, hi, bits, want):
    assert adc_shift_for(lo, hi, bits) == want
