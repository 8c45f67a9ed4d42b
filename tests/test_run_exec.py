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


def test_bound_rule_through_the_number_format(tiny_bert):
    """1-bit differential cells: 6-bit ADCs are lossless for 32 rows, so the bound rule's MVMs are exact (rules
    for one-cell weights would take 9 bits as lossless and drop 3 of them)."""
    prep, acts = tiny_bert
    hw = load_hw("fpga-tiny-sliced")
    setup = compile_cim(prep, hw, acts, strategy="sparse")
    ex = CimExecutor(setup.compiled, Machine(hw))
    assert {s for shifts in ex.adc_shifts.values() for s in shifts} == {0}
    rng = np.random.default_rng(1)
    for name, prog in setup.compiled.programs.items():
        q = setup.compiled.quant[name]
        x = rng.integers(-127, 128, (5, q.in_features))
        want = reference_int_product(q, x.T, prog.requant_shift, hw.input_bits).T
        np.testing.assert_array_equal(ex.run_int(name, x), want, err_msg=name)


def test_accuracy_rule_in_the_executor(tiny_bert):
    """The executor's accuracy rule meets its bound on its calibration vectors (measured through run_int, the
    run's own path) with fewer ADC bits than the bound rule."""
    from compiler.quant import float_product
    from mapper.evaluate.executor import ACCURACY_CALIB_ROWS
    prep, acts = tiny_bert
    hw = load_hw("fpga-tiny")
    setup = compile_cim(prep, hw, acts, strategy="sparse")
    bound = CimExecutor(setup.compiled, Machine(hw))
    ex = CimExecutor(setup.compiled, Machine(hw), adc_rule="accuracy")
    choice = ex.plan_accuracy(setup.extra["calib_xq"], 0.05)
    assert choice.met and ex.adc_choice is choice
    bits = {n: [c.args["adc_bits"] for c in cmds if c.op is Opcode.MVM] for n, (_p, cmds) in ex.programs.items()}
    bound_bits = {n: [c.args["adc_bits"] for c in cmds if c.op is Opcode.MVM] for n, (_p, cmds) in
                  bound.programs.items()}
    assert sum(map(sum, bits.values())) < sum(map(sum, bound_bits.values()))
    errs = []
    for name, x in setup.extra["calib_xq"].items():
        x = x[np.linspace(0, len(x) - 1, min(len(x), ACCURACY_CALIB_ROWS)).round().astype(int)]
        ref = float_product(setup.compiled.quant[name], x.T, ex.raw[name][0].requant_shift).T
        errs.append(np.linalg.norm(ex.run_int(name, x) - ref) / np.linalg.norm(ref))
    assert np.mean(errs) <= 0.05


def test_paper_rule_in_the_executor(tiny_bert):
    """The paper rule keeps the compiler's paper-mode settings (ceil(log2(rows summed)) bits; the schedule's
    activations, one per MVM in order), caps them at the run's ADC bits with the same rule's step, and takes fewer
    bits than the bound rule; with 1-bit differential cells its outputs stay close to the exact product."""
    from compiler.schedule import adc_setting
    prep, acts = tiny_bert
    hw = load_hw("fpga-tiny-sliced")
    setup = compile_cim(prep, hw, acts, strategy="sparse")
    ex = CimExecutor(setup.compiled, Machine(hw), adc_rule="paper")
    bound = CimExecutor(setup.compiled, Machine(hw))
    acts_by_rpc = {a.rows_per_col for a in setup.compiled.schedule.activations}
    want = {adc_setting(r, hw, "paper") for r in acts_by_rpc}
    got = {(c.args["adc_bits"], c.args["adc_shift"]) for _n, (_p, cmds) in ex.programs.items() for c in cmds
           if c.op is Opcode.MVM}
    assert got == want and all(b < hw.adc_bits for b, _s in got)
    nbits = sum(c.args["adc_bits"] for _n, (_p, cmds) in ex.programs.items() for c in cmds if c.op is Opcode.MVM)
    nbound = sum(c.args["adc_bits"] for _n, (_p, cmds) in bound.programs.items() for c in cmds
                 if c.op is Opcode.MVM)
    assert nbits < nbound
    capped = CimExecutor(setup.compiled, Machine(hw), adc_bits=2, adc_rule="paper")
    assert {c.args["adc_bits"] for _n, (_p, cmds) in capped.programs.items() for c in cmds
            if c.op is Opcode.MVM} == {2}
    rng = np.random.default_rng(2)
    for name, prog in setup.compiled.programs.items():
        q = setup.compiled.quant[name]
        x = rng.integers(-127, 128, (8, q.in_features))
        want_y = reference_int_product(q, x.T, prog.requant_shift, hw.input_bits).T
        err = np.linalg.norm(ex.run_int(name, x) - want_y) / max(np.linalg.norm(want_y), 1.0)
        assert err < 0.02, (name, err)


@pytest.mark.parametrize("rule", ["bound", "paper"])
def test_cost_is_priced_at_the_bits_that_ran(tiny_bert, rule):
    """mapper run's cost report prices each MVM at the ADC setting its rule chose (not the compile-time one)."""
    from collections import Counter

    from mapper.evaluate.run import priced_setup
    prep, acts = tiny_bert
    hw = load_hw("fpga-tiny")
    setup = compile_cim(prep, hw, acts, strategy="sparse")
    ex = CimExecutor(setup.compiled, Machine(hw), adc_rule=rule)
    ran = Counter((c.args["adc_bits"], c.args["adc_shift"]) for _n, (_p, cmds) in ex.programs.items() for c in cmds
                  if c.op is Opcode.MVM)
    priced = Counter((a.adc_bits, a.adc_shift) for a in priced_setup(setup, ex).compiled.schedule.activations)
    assert priced == ran


@pytest.mark.parametrize("rule", ["bound", "accuracy"])
def test_executor_on_a_concurrent_chip_equals_one_tile(tiny_bert, rule):
    """On fpga-tiny-4t (four tiles running side by side) the executor runs the chip stream (physical arrays on
    several tiles, the local barriers it has) without a hazard and every matmul returns what the same model gives
    on fpga-tiny; the accuracy rule maps its per-MVM choice onto the chip stream's arrays."""
    prep, acts = tiny_bert
    outs = {}
    for name in ("fpga-tiny", "fpga-tiny-4t"):
        hw = load_hw(name)
        setup = compile_cim(prep, hw, acts, strategy="sparse")
        ex = CimExecutor(setup.compiled, Machine(hw), adc_rule=rule)
        if rule == "accuracy":
            ex.plan_accuracy(setup.extra["calib_xq"], 0.05)
        rng = np.random.default_rng(1)
        outs[name] = {n: ex.run_int(n, rng.integers(-127, 128, (5, setup.compiled.quant[n].in_features)))
                      for n in sorted(setup.compiled.programs)}
        if name == "fpga-tiny-4t":
            assert setup.compiled.physical is not None
            tiles = {c.args["array"] // hw.chip.arrays_per_tile for _p, cmds in ex.programs.values() for c in cmds
                     if c.op is Opcode.MVM}
            assert len(tiles) > 1                    # the executor runs MVMs of several tiles
    if rule == "bound":                      # same weights, same bound-rule settings: the same integers
        for n, got in outs["fpga-tiny-4t"].items():
            np.testing.assert_array_equal(got, outs["fpga-tiny"][n], err_msg=n)
