"""sw_model.noise: the noise-free NoisyMachine equals the exact golden model; noise is seeded and deterministic.

Without noise a NoisyMachine runs the exact kernel itself; its analog path (noise, or an ADC calibration pass)
converts the column sums with the one ADC / shift-add rule of :mod:`cimisa.rules` (``tests/test_rules.py`` shows a
change of that rule reaching every model).
"""

from __future__ import annotations

import numpy as np
import pytest

from cimisa import rules, semantics
from cimisa.config import load_hw
from cimisa.isa import Command, Isa
from sw_model.machine import Machine
from sw_model.noise import NoiseError, NoiseParams, NoisyMachine, make_machine, parse_noise


def _program(m, W, array=1, row0=2, col0=5):
    for r in range(W.shape[0]):
        m.execute(Command.write_w(array, row0 + r, col0, W[r].tolist()))


def _mvms(m, X, nr, nc, adc_bits, adc_shift, array=1, row0=2, col0=5):
    cfg = m.cfg
    m.state.inbuf = np.zeros((cfg.in_depth,) + X.shape[1:], dtype=np.int64)
    m.state.outbuf = np.zeros((cfg.out_depth,) + X.shape[1:], dtype=np.int64)
    m.state.inbuf[:X.shape[0]] = X
    kw = dict(array=array, row0=row0, nrows=nr, col0=col0, ncols=nc, in_addr=3, in_stride=2, out_addr=11,
              out_stride=3, adc_bits=adc_bits, adc_shift=adc_shift)
    m.execute(Command.mvm(**kw))
    m.execute(Command.mvm(**dict(kw, accumulate=True, in_addr=4)))
    m.execute(Command.requant(src=11, count=nc, dst=1, dst_stride=1, shift=4))
    return m.state.outbuf.copy(), m.state.inbuf.copy()


CASES = [("paper-256", None, 0), ("paper-256", 8, 0), ("paper-256", 8, 3), ("paper-256", 5, 7),
         ("paper-256", 3, 9), ("paper-256", 2, 0), ("fpga-tiny", None, 0), ("fpga-tiny", 4, 2),
         ("fpga-micro", None, 0), ("fpga-micro", 3, 1)]


@pytest.mark.parametrize("name,adc_bits,adc_shift", CASES)
@pytest.mark.parametrize("batch", [(), (7,)])
def test_noise_free_equals_exact(name, adc_bits, adc_shift, batch):
    """prog = read = 0 gives the exact golden model's results, with and without a batch axis, on the exact kernel
    and on the analog path (a calibration pass observing the column sums)."""
    cfg = load_hw(name)
    if adc_bits is None:
        cfg = cfg.lossless()
    bits = cfg.adc_bits if adc_bits is None else min(adc_bits, cfg.adc_bits)
    rng = np.random.default_rng(1)
    nr, nc = min(40, cfg.rows - 2), min(9, cfg.cols - 5, (cfg.out_depth - 12) // 3)
    half_w, half_i = 1 << (cfg.weight_bits - 1), 1 << (cfg.input_bits - 1)
    W = rng.integers(-half_w, half_w, (nr, nc))
    X = rng.integers(-half_i, half_i, (min(2 * nr + 8, cfg.in_depth),) + batch)
    outs = []
    observing = NoisyMachine(cfg)
    observing.observe = {}
    for m in (Machine(cfg), NoisyMachine(cfg, NoiseParams(prog=0.0, read=0.0, seed=5)), make_machine(cfg),
              observing):
        _program(m, W)
        outs.append(_mvms(m, X, nr, nc, bits, adc_shift))
    assert observing.observe                                  # the analog path ran
    for o in outs[1:]:
        np.testing.assert_array_equal(o[0], outs[0][0])
        np.testing.assert_array_equal(o[1], outs[0][1])


def _noisy_run(noise, cfg=None):
    cfg = cfg or load_hw("paper-256")
    rng = np.random.default_rng(2)
    W = rng.integers(-128, 128, (64, 32))
    X = rng.integers(-128, 128, (140, 5))
    m = NoisyMachine(cfg, noise)
    _program(m, W)
    return _mvms(m, X, 64, 32, 8, 4)[0]


def test_seeded_determinism():
    """The same seed gives identical results; another seed or noise level gives different ones."""
    a = _noisy_run(NoiseParams(prog=0.02, read=0.01, seed=7))
    b = _noisy_run(NoiseParams(prog=0.02, read=0.01, seed=7))
    c = _noisy_run(NoiseParams(prog=0.02, read=0.01, seed=8))
    exact = _noisy_run(NoiseParams())
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, exact)
    for kind in ("prog", "read"):
        only = _noisy_run(NoiseParams(**{kind: 0.05}, seed=7))
        assert not np.array_equal(only, exact)


def test_programming_noise_is_static_and_order_free():
    """Programming noise is drawn per (seed, array, row): independent of write order, fixed across reads."""
    cfg = load_hw("fpga-tiny")
    rng = np.random.default_rng(3)
    W = rng.integers(-8, 8, (6, 10))
    m1, m2 = NoisyMachine(cfg, NoiseParams(prog=0.1, seed=4)), NoisyMachine(cfg, NoiseParams(prog=0.1, seed=4))
    for r in range(6):
        m1.execute(Command.write_w(1, r, 0, W[r].tolist()))
    for r in reversed(range(6)):
        m2.execute(Command.write_w(1, r, 0, W[r].tolist()))
    np.testing.assert_array_equal(m1.conductance(1), m2.conductance(1))
    # The integer (architectural) weights stay exact: the noise lives in the analog conductances only.
    np.testing.assert_array_equal(m1.state.array(1)[:6, :10], W)
    dev = m1.conductance(1)[:6, :10] - W
    assert 0.2 < dev.std() < 1.5      # prog * wmax = 0.1 * 7 = 0.7
    assert np.all(m1.conductance(1)[6:] == 0)    # unwritten cells stay exactly zero


def test_read_noise_scale():
    """Read noise on a column sum of n driven rows has std read * wmax * sqrt(n)."""
    cfg = load_hw("paper-256").lossless()
    m = NoisyMachine(cfg, NoiseParams(read=0.01, seed=0))
    m.execute(Command.write_w(0, 0, 0, [0] * 4))
    for r in range(64):
        m.execute(Command.write_w(0, r, 0, [0] * 4))
    B = 4000
    m.state.inbuf = np.zeros((cfg.in_depth, B), dtype=np.int64)
    m.state.outbuf = np.zeros((cfg.out_depth, B), dtype=np.int64)
    m.state.inbuf[:64] = 1                      # only bit 0 drives all 64 rows
    m.execute(Command.mvm(array=0, row0=0, nrows=64, col0=0, ncols=4, in_addr=0, out_addr=0,
                          adc_bits=cfg.adc_bits, adc_shift=0))
    out = m.state.outbuf[:4].astype(float)      # floor(N(0, 0.01 * 127 * 8)) per column and token
    assert abs(out.std() - 0.01 * 127 * 8) < 0.15


@pytest.mark.parametrize("text,expect", [
    (None, NoiseParams()), ("", NoiseParams()), ("none", NoiseParams()),
    ("prog=0.02,read=0.01", NoiseParams(0.02, 0.01, 0)), ("read=0.5, seed=3", NoiseParams(0.0, 0.5, 3)),
])
def test_parse_noise(text, expect):
    assert parse_noise(text) == expect


@pytest.mark.parametrize("text", ["prog", "prog=x", "foo=1", "read=-1", "seed=1.5", "prog=nan"])
def test_parse_noise_errors(text):
    with pytest.raises(NoiseError):
        parse_noise(text)


def _run_both(cfg, cmds):
    exact, fast = Machine(cfg), make_machine(cfg)          # make_machine: the noise-free float kernel
    assert isinstance(fast, NoisyMachine)
    for c in cmds:
        exact.execute(c)
        fast.execute(c)
    return exact, fast


@pytest.mark.parametrize("name", ["fpga-micro", "fpga-tiny"])
def test_noise_free_equals_exact_on_generated_streams(name):
    """The shared generator's streams (saturating, coarse-step and exact MVMs on real data, REQUANT ties)."""
    from cimisa import streamgen
    cfg = load_hw(name)
    for seed in range(12):
        exact, fast = _run_both(cfg, streamgen.random_commands(cfg, seed, 40))
        assert exact.state.results == fast.state.results, seed
        np.testing.assert_array_equal(exact.state.outbuf, fast.state.outbuf)
        np.testing.assert_array_equal(exact.state.inbuf, fast.state.inbuf)


def test_noise_free_saturation_starts_exactly_past_the_adc_range():
    """Column sums exactly at the ADC's ends convert unclipped; one past them saturate (the noise-free kernel's
    shortcut for windows that cannot saturate must not be taken one step too early)."""
    cfg = load_hw("fpga-micro")
    cols = [[4, 3], [4, 4], [-4, -4], [-4, -5]]               # sums 7, 8, -8, -9 for a 4-bit ADC (-8..7)
    cmds = [Command.load_in(0, [1, 1])]
    for k, col in enumerate(cols):
        cmds += [Command.write_w(0, 0, k, [col[0]]), Command.write_w(0, 1, k, [col[1]])]
    for k in range(len(cols)):                                 # one column per MVM: one window per sum
        cmds.append(Command.mvm(array=0, row0=0, nrows=2, col0=k, ncols=1, in_addr=0, out_addr=k, adc_bits=4))
    exact, fast = _run_both(cfg, cmds)
    assert exact.state.outbuf[:4].tolist() == [7, 7, -8, -8]
    assert fast.state.outbuf[:4].tolist() == [7, 7, -8, -8]


def test_noise_free_runs_the_exact_kernel_and_noise_the_shared_adc(monkeypatch):
    """Without noise every MVM is cimisa.semantics.mvm; with noise the sums go through rules.convert_planes."""
    calls = {"mvm": 0, "convert": 0}
    real_mvm, real_convert = semantics.mvm, rules.convert_planes

    def spy_mvm(*a, **k):
        calls["mvm"] += 1
        return real_mvm(*a, **k)

    def spy_convert(*a, **k):
        calls["convert"] += 1
        return real_convert(*a, **k)

    monkeypatch.setattr(semantics, "mvm", spy_mvm)
    monkeypatch.setattr(rules, "convert_planes", spy_convert)
    W = np.random.default_rng(4).integers(-128, 128, (64, 32))
    X = np.random.default_rng(5).integers(-128, 128, (140, 3))
    for noise, want in ((NoiseParams(), {"mvm": 2}), (NoiseParams(read=0.01), {"mvm": 0, "convert": 2})):
        calls.update(mvm=0, convert=0)      # 8-bit ADC, step 4 on 64 rows can saturate
        m = NoisyMachine(load_hw("paper-256"), noise)
        _program(m, W)
        _mvms(m, X, 64, 32, 8, 2)
        assert {k: calls[k] for k in want} == want, noise   # (semantics converts in its own exact forms)


def test_number_formats_run_exact_without_noise_and_refuse_noise():
    """Noise models the default format only: in another format a noise-free NoisyMachine is the exact model (every
    result equal on generated streams), while noise or recording column-sum ranges is refused with a NoiseError."""
    from cimisa.streamgen import random_commands
    from tests.test_sw_model import FORMATS
    for cfg in FORMATS[:4]:
        for seed in range(2):
            words = Isa.of(cfg).encode(random_commands(cfg, seed, 20))
            noisy, exact = NoisyMachine(cfg), Machine(cfg)
            noisy.run_words(words)
            exact.run_words(words)
            assert np.array_equal(noisy.result().results, exact.result().results)
        with pytest.raises(NoiseError, match="default number format"):
            NoisyMachine(cfg, NoiseParams(read=0.01))
        m = NoisyMachine(cfg)
        m.observe = {}
        with pytest.raises(NoiseError, match="default number format"):
            m.execute(Command.mvm(array=0, row0=0, nrows=2, col0=0, ncols=1, in_addr=0, out_addr=0, adc_bits=1))
    assert make_machine(FORMATS[0], NoiseParams()).noise == NoiseParams()     # no noise: accepted
