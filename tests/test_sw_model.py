"""The golden model: naive == vectorised (compared with the one checker, cimisa.check), exact products with
lossless ADCs, ADC behaviour, every error path."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cimisa.check import check_runs
from cimisa.config import HwConfig, load_hw
from cimisa.isa import Command, ErrorCode, Isa, Opcode, RunState
from cimisa.streamgen import boundary_cases, random_commands
from sw_model import BufferOverflow, CimError, IllegalOpcode, Machine, OutOfRange, TruncatedStream, run, run_commands
from sw_model import naive as naive_mod
from tests.strategies import legal_stream

TINY = load_hw("fpga-tiny")
MICRO = load_hw("fpga-micro")
ODD = MICRO.replace(name="micro-3", n_arrays=3)   # 3 arrays: an array index of 3 is encodable but out of range
#: 16-bit weights and inputs on 4 rows: products reach 2**30, so accumulators wrap and every REQUANT shift matters.
WIDE = HwConfig(name="wide16", rows=4, cols=4, n_arrays=2, weight_bits=16, input_bits=16, adc_bits=18,
                adcs_per_array=4, in_depth=16, out_depth=16, rows_per_cycle=4)


def format_config(name: str, cell_bits: int, weight_encoding: str, input_encoding: str = "twos", dac_bits: int = 1,
                  adc_rounding: str = "floor", *, base: HwConfig = MICRO, logical: int = 6) -> HwConfig:
    """``base`` in another number format: ``logical`` weights per array row, ADCs as wide as lossless."""
    cfg = base.replace(name=name, adc_bits=1, cell_bits=cell_bits, weight_encoding=weight_encoding,
                       input_encoding=input_encoding, dac_bits=dac_bits, adc_rounding=adc_rounding)
    cols = logical * cfg.fmt.cols_per_weight + cfg.fmt.bias_cols
    cfg = cfg.replace(cols=cols, adcs_per_array=min(cfg.adcs_per_array, cols))
    return cfg.replace(adc_bits=cfg.lossless_adc_bits)


#: Small configurations in every weight encoding, input encoding, DAC width 1..3 and ADC rounding (fpga-micro's
#: 16 rows, 4-bit weights and inputs).
FORMATS = [
    format_config("c1-twos", 1, "twos"),
    format_config("c2-twos-dac2-nearest", 2, "twos", dac_bits=2, adc_rounding="nearest"),
    format_config("c3-twos-sm-dac3", 3, "twos", "sign-magnitude", dac_bits=3),
    format_config("c1-diff", 1, "differential"),
    format_config("c2-diff-sm-nearest", 2, "differential", "sign-magnitude", adc_rounding="nearest"),
    format_config("c3-diff-dac2", 3, "differential", dac_bits=2),
    format_config("c1-offset-sm-dac2", 1, "offset", "sign-magnitude", dac_bits=2),
    format_config("c2-offset-nearest", 2, "offset", adc_rounding="nearest"),
    format_config("c3-offset-sm-dac3-nearest", 3, "offset", "sign-magnitude", dac_bits=3, adc_rounding="nearest"),
    format_config("c0-twos-nearest", 0, "twos", adc_rounding="nearest"),
]


def _with_readback(cfg, cmds):
    """Append READs of the whole output buffer so every accumulator is compared."""
    return cmds[:-1] + [Command.read(0, cfg.out_depth), Command.halt()]


def naive_vs_fast(cfg, cmds) -> list[str]:
    """Run ``cmds`` (plus a read-back of the whole output buffer) on both models; return the differences."""
    cmds = _with_readback(cfg, cmds)
    words = Isa.of(cfg).encode(cmds)
    fast = run(cfg, words, impl="fast")
    slow = run(cfg, words, impl="naive")
    diffs = check_runs(slow, fast).lines()
    if not (fast.ok and fast.commands == len(cmds)):
        diffs.append(f"fast model stopped: {fast.status_tuple()} after {fast.commands} of {len(cmds)} commands")
    return diffs


@pytest.mark.parametrize("cfg", [MICRO, TINY, ODD, WIDE], ids=lambda c: c.name)
@settings(max_examples=30)
@given(data=st.data())
def test_naive_equals_vectorised_on_random_streams(cfg, data):
    """The shared generator's streams (weights and inputs first, lossy and exact MVMs, REQUANT ties, probes)."""
    assert naive_vs_fast(cfg, data.draw(legal_stream(cfg))) == []


@pytest.mark.parametrize("cfg", FORMATS, ids=lambda c: c.name)
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_naive_equals_vectorised_in_every_number_format(cfg, data):
    """The same property in the number formats (sliced cells, differential and offset weights, sign-magnitude
    inputs, multi-bit DACs, nearest rounding): the naive loops and the vectorised kernel agree bit for bit."""
    assert not cfg.fmt.is_default
    assert naive_vs_fast(cfg, data.draw(legal_stream(cfg, 15))) == []


@pytest.mark.parametrize("cfg", FORMATS, ids=lambda c: c.name)
def test_naive_equals_vectorised_on_seeded_format_streams(cfg):
    """Seeded streams of the generator (random.Random draws spread wider than hypothesis's): saturating ADCs,
    small steps and nearest-rounding ties in every format."""
    for seed in range(12):
        assert naive_vs_fast(cfg, random_commands(cfg, seed, 15)) == [], seed


def test_checker_catches_a_perturbed_model(monkeypatch):
    """The naive/fast comparison fails when one model is wrong by one LSB."""
    cfg = MICRO
    rng = np.random.default_rng(1)
    cmds = ([Command.write_w(0, r, 0, rng.integers(-8, 8, 16)) for r in range(16)]
            + [Command.load_in(0, rng.integers(-8, 8, 16)),
               Command.mvm(array=0, row0=0, nrows=16, col0=0, ncols=16, in_addr=0, out_addr=0, adc_bits=8),
               Command.read(0, 16), Command.halt()])
    good = run_commands(cfg, cmds, impl="naive")
    assert check_runs(good, run_commands(cfg, cmds, impl="fast")).ok
    orig = naive_mod.NAIVE_ACTIONS[Opcode.READ]
    monkeypatch.setitem(naive_mod.NAIVE_ACTIONS, Opcode.READ,
                        lambda st, addr, count: (orig(st, addr, count), st.results.__setitem__(-1, st.results[-1] + 1)))
    bad = run_commands(cfg, cmds, impl="naive")
    verdict = check_runs(good, bad)
    assert not verdict.ok and verdict.status_equal
    assert verdict.lines() == [f"result[15]: Expected {good.results[15]}, Actual {good.results[15] + 1}"]


def test_wrong_expected_value_is_caught():
    cfg = MICRO
    cmds = [Command.write_w(0, 0, 0, [3]), Command.load_in(0, [-5]),
            Command.mvm(array=0, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, out_addr=0, adc_bits=8),
            Command.read(0, 1), Command.halt()]
    r = run_commands(cfg, cmds)
    assert r.results.tolist() == [-15]
    wrong = run_commands(cfg, cmds)
    wrong.results = wrong.results + 1
    assert check_runs(r, wrong).lines() == ["result[0]: Expected -15, Actual -14"]
    wrong.index += 1
    assert [m.what for m in check_runs(r, wrong).mismatches] == ["result[0]", "status.index"]


@pytest.mark.parametrize("impl", ["fast", "naive"])
@settings(max_examples=25)
@given(data=st.data())
def test_lossless_adc_gives_the_integer_product(impl, data):
    cfg = TINY
    isa = Isa.of(cfg)
    wlo, whi = isa.elem_range("weight")
    ilo, ihi = isa.elem_range("input")
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    W = rng.integers(wlo, whi + 1, (cfg.rows, cfg.cols))
    if data.draw(st.booleans()):    # extreme weights: the most negative everywhere
        W[:] = wlo
    x = rng.integers(ilo, ihi + 1, cfg.in_depth)
    row0 = data.draw(st.integers(0, cfg.rows - 1))
    nrows = data.draw(st.integers(1, cfg.rows - row0))
    col0 = data.draw(st.integers(0, cfg.cols - 1))
    ncols = data.draw(st.integers(1, cfg.cols - col0))
    stride = data.draw(st.integers(0, 7))
    in_addr = data.draw(st.integers(0, cfg.in_depth - 1 - (nrows - 1) * stride))
    cmds = [Command.write_w(0, r, 0, W[r]) for r in range(cfg.rows)]
    cmds += [Command.load_in(0, x[:256]), Command.load_in(256, x[256:]),
             Command.mvm(array=0, row0=row0, nrows=nrows, col0=col0, ncols=ncols, in_addr=in_addr,
                         in_stride=stride, out_addr=3, out_stride=2, adc_bits=cfg.lossless_adc_bits),
             Command.read(3, 2 * ncols - 1), Command.halt()]
    r = run_commands(cfg, cmds, impl=impl)
    xs = x[in_addr + stride * np.arange(nrows)]
    expect = xs @ W[row0:row0 + nrows, col0:col0 + ncols]
    assert r.results[::2].tolist() == expect.tolist()


@pytest.mark.parametrize("impl", ["fast", "naive"])
def test_adc_step_and_saturation_by_hand(impl):
    cfg = MICRO   # 4-bit inputs, 4-bit weights
    st_ = Machine(cfg, impl=impl)
    cmds = [Command.write_w(0, r, 0, [7, -8]) for r in range(16)]
    cmds += [Command.load_in(0, [1] * 16),   # bit 0 drives all 16 rows
             # column sums of bit 0: 112 and -128. 4-bit ADC, step 4: codes clip(28)->7, clip(-32)->-8
             Command.mvm(array=0, row0=0, nrows=16, col0=0, ncols=2, in_addr=0, out_addr=0, adc_bits=4,
                         adc_shift=2),
             Command.read(0, 2), Command.halt()]
    for c in cmds:
        st_.execute(c)
    assert st_.result().results.tolist() == [7 * 4, -8 * 4]


@pytest.mark.parametrize("impl", ["fast", "naive"])
def test_adc_floor_step_and_saturation_for_every_weight(impl):
    """One row holding every weight value -8..7, one input: each column's code is floor(w / 2**s) saturated.

    The input's bits each drive the same column sum ``w``, and the signed bit weights sum to ``x``, so the
    output is ``clip(floor(w / 2**s), lo, hi) * 2**s * x`` exactly: floor (not truncation) for negative sums,
    saturation at both ends of each resolution.
    """
    cfg = MICRO
    weights = list(range(-8, 8))
    m = Machine(cfg, impl=impl)
    m.execute(Command.write_w(0, 3, 0, weights))
    got, want = [], []
    for x in (1, -1, 5, -8, 7):
        m.execute(Command.load_in(9, [x]))
        for bits in (1, 2, 3, 4, 8):
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            for shift in range(4):
                m.execute(Command.mvm(array=0, row0=3, nrows=1, col0=0, ncols=16, in_addr=9, out_addr=0,
                                      adc_bits=bits, adc_shift=shift))
                got.append(m.state.outbuf[:16].tolist())
                want.append([min(max(math.floor(Fraction(w, 2 ** shift)), lo), hi) * 2 ** shift * x
                             for w in weights])
    assert got == want


def _round_half_up(v: int, shift: int) -> int:
    return math.floor(Fraction(v, 2 ** shift) + Fraction(1, 2)) if shift else v


@pytest.mark.parametrize("impl", ["fast", "naive"])
@pytest.mark.parametrize("cfg", [MICRO, TINY], ids=lambda c: c.name)
def test_requant_ties_and_saturation_for_every_shift(cfg, impl):
    """REQUANT rounds half up (ties of both signs, every shift 0..31) and saturates at both input bounds."""
    ilo, ihi = Isa.of(cfg).elem_range("input")
    m = Machine(cfg, impl=impl)
    for shift in range(32):
        t = 1 << max(0, shift - 1)
        vals = [t, -t, t - 1, -t - 1, t + 1, 1 - t, 3 * t, -3 * t, (ihi + 1) << shift, (ilo - 1) << shift,
                (2 * ihi + 1) * t, (2 * ilo - 1) * t, 2**31 - 1, -2**31, 0]
        vals = [v for v in vals if -2**31 <= v < 2**31]
        m.state.outbuf[:len(vals)] = vals
        m.execute(Command.requant(src=0, count=len(vals), dst=1, dst_stride=2, shift=shift))
        got = m.state.inbuf[1:1 + 2 * len(vals):2].tolist()
        want = [min(max(_round_half_up(v, shift), ilo), ihi) for v in vals]
        assert got == want, (shift, vals)


@pytest.mark.parametrize("impl", ["fast", "naive"])
def test_accumulate_and_int32_wraparound(impl):
    cfg = MICRO
    m = Machine(cfg, impl=impl)
    m.state.outbuf[0] = 2**31 - 1
    m.state.outbuf[1] = -2**31
    for c in [Command.write_w(0, 0, 0, [1, -1]), Command.load_in(0, [1]),
              Command.mvm(array=0, row0=0, nrows=1, col0=0, ncols=2, in_addr=0, out_addr=0, adc_bits=8,
                          accumulate=True), Command.read(0, 2), Command.halt()]:
        m.execute(c)
    assert m.result().results.tolist() == [-2**31, 2**31 - 1]


@pytest.mark.parametrize("impl", ["fast", "naive"])
@pytest.mark.parametrize("cfg", [MICRO, ODD, TINY, WIDE, FORMATS[3], FORMATS[6], load_hw("fpga-tiny-sliced")],
                         ids=lambda c: c.name)
def test_every_bound_at_max_and_one_past(cfg, impl):
    """Each check of every opcode: its largest legal value passes, one more stops the machine with its code."""
    cases = boundary_cases(cfg)
    assert {code for _, _, code in cases} >= {ErrorCode.NONE, ErrorCode.BAD_ROW, ErrorCode.BAD_COL,
                                              ErrorCode.BAD_ADC, ErrorCode.BAD_IN_ADDR, ErrorCode.BAD_OUT_ADDR}
    for name, cmd, code in cases:
        r = run_commands(cfg, [Command.barrier(), cmd, Command.halt()], impl=impl, raise_on_error=False)
        want = ("HALTED", "NONE", 2) if code is ErrorCode.NONE else ("ERROR", code.name, 1)
        assert r.status_tuple() == want, name


def _mvm(**kw):
    base = dict(array=0, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, in_stride=1, out_addr=0, out_stride=1,
                accumulate=0, adc_bits=1, adc_shift=0)
    base.update(kw)
    return Command(Opcode.MVM, base)


@pytest.mark.parametrize("cmd, code, exc", [
    (Command.write_w(3, 0, 0, [1]), ErrorCode.BAD_ARRAY, OutOfRange),
    (Command.write_w(0, 0, 15, [1, 1]), ErrorCode.BAD_COL, OutOfRange),
    (Command.load_in(31, [1, 1]), ErrorCode.BAD_IN_ADDR, BufferOverflow),
    (_mvm(array=3), ErrorCode.BAD_ARRAY, OutOfRange),
    (_mvm(row0=10, nrows=7), ErrorCode.BAD_ROW, OutOfRange),
    (_mvm(nrows=0), ErrorCode.BAD_ROW, OutOfRange),
    (_mvm(col0=15, ncols=2), ErrorCode.BAD_COL, OutOfRange),
    (_mvm(adc_bits=0), ErrorCode.BAD_ADC, OutOfRange),
    (_mvm(adc_bits=9), ErrorCode.BAD_ADC, OutOfRange),
    (_mvm(nrows=4, in_addr=20, in_stride=4), ErrorCode.BAD_IN_ADDR, BufferOverflow),
    (_mvm(ncols=3, out_addr=30), ErrorCode.BAD_OUT_ADDR, BufferOverflow),
    (_mvm(ncols=2, out_stride=0), ErrorCode.BAD_OUT_ADDR, BufferOverflow),
    (Command.requant(src=30, count=3, dst=0), ErrorCode.BAD_OUT_ADDR, BufferOverflow),
    (Command.requant(src=0, count=3, dst=0, dst_stride=0), ErrorCode.BAD_IN_ADDR, BufferOverflow),
    (Command.requant(src=0, count=3, dst=28, dst_stride=2), ErrorCode.BAD_IN_ADDR, BufferOverflow),
    (Command.read(31, 2), ErrorCode.BAD_OUT_ADDR, BufferOverflow),
])
@pytest.mark.parametrize("impl", ["fast", "naive"])
def test_each_error_names_the_command_index(cmd, code, exc, impl):
    cmds = [Command.barrier(), Command.barrier(), cmd, Command.read(0, 1), Command.halt()]
    with pytest.raises(exc) as e:
        run_commands(ODD, cmds, impl=impl)
    assert e.value.code is code and e.value.index == 2
    assert str(e.value).startswith("command 2: ")
    r = run_commands(ODD, cmds, impl=impl, raise_on_error=False)
    assert r.status_tuple() == ("ERROR", code.name, 2) and len(r.results) == 0   # nothing after the error


def test_illegal_opcode_and_truncation():
    isa = Isa.of(MICRO)
    words = isa.encode([Command.barrier(), Command.load_in(0, list(range(-8, 8)) * 2), Command.halt()])
    with pytest.raises(IllegalOpcode) as e:
        run(MICRO, words[:1] + [0] + words[1:])
    assert e.value.index == 1 and e.value.code is ErrorCode.ILLEGAL_OPCODE
    with pytest.raises(TruncatedStream) as e:
        run(MICRO, words[:3])    # LOAD_IN needs 2 payload words, 1 present
    assert e.value.index == 1
    r = run(MICRO, words[:3], raise_on_error=False)
    assert r.machine.state.inbuf[:16].tolist() == list(range(-8, 8))   # the complete payload word was applied
    with pytest.raises(TruncatedStream, match="before HALT") as e:
        run(MICRO, words[:-1])
    assert e.value.index == 2
    assert isinstance(e.value, CimError)


def test_words_after_halt_are_ignored():
    isa = Isa.of(MICRO)
    words = isa.encode([Command.halt()]) + [0xF, 0xF]
    r = run(MICRO, words)
    assert r.state is RunState.HALTED and r.index == 0


def test_machine_refuses_after_stop():
    m = Machine(MICRO)
    m.execute(Command.halt())
    with pytest.raises(RuntimeError, match="HALTED"):
        m.execute(Command.barrier())
    with pytest.raises(ValueError, match="impl must be"):
        Machine(MICRO, impl="quick")


def test_batched_state_matches_per_vector_runs():
    """The vectorised semantics accept a trailing batch axis (used to run many tokens at once)."""
    cfg = TINY
    rng = np.random.default_rng(3)
    W = rng.integers(-8, 8, (32, 32))
    X = rng.integers(-128, 128, (32, 5))
    prog = [Command.write_w(0, r, 0, W[r]) for r in range(32)]
    mvm = Command.mvm(array=0, row0=0, nrows=32, col0=0, ncols=32, in_addr=0, out_addr=0, adc_bits=6,
                      adc_shift=2)
    m = Machine(cfg)
    for c in prog:
        m.execute(c)
    m.state.inbuf = np.zeros((cfg.in_depth, 5), dtype=np.int64)
    m.state.outbuf = np.zeros((cfg.out_depth, 5), dtype=np.int64)
    m.state.inbuf[:32] = X
    m.execute(mvm)
    for b in range(5):
        r = run_commands(cfg, prog + [Command.load_in(0, X[:, b]), mvm, Command.read(0, 32), Command.halt()])
        assert m.state.outbuf[:32, b].tolist() == r.results.tolist()


def test_cli_runs_streams_and_rejects_corrupt_files(tmp_path):
    import subprocess
    import sys

    from cimisa.stream import write_jsonl, write_stream
    cmds = [Command.write_w(0, 0, 0, [3]), Command.load_in(0, [-5]),
            Command.mvm(array=0, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, out_addr=0, adc_bits=8),
            Command.read(0, 1), Command.halt()]
    write_stream(tmp_path / "ok.bin", MICRO, cmds)
    write_jsonl(tmp_path / "ok.jsonl", MICRO, cmds)
    write_stream(tmp_path / "err.bin", MICRO, cmds[:2] + [Command.read(31, 2), Command.halt()])

    def cli(*a):
        return subprocess.run([sys.executable, "-m", "sw_model", "run", *a], capture_output=True, text=True)

    for name in ("ok.bin", "ok.jsonl"):
        r = cli(str(tmp_path / name), "--out", str(tmp_path / "res.json"), "--force")
        assert r.returncode == 0 and "state HALTED" in r.stdout, r.stderr
        assert '"results": [-15]' in (tmp_path / "res.json").read_text()
    r = cli(str(tmp_path / "err.bin"))
    assert r.returncode == 1 and r.stderr.strip() == "error: command 2: BAD_OUT_ADDR"
    blob = (tmp_path / "ok.bin").read_bytes()
    (tmp_path / "bad.bin").write_bytes(blob[:-2])
    r = cli(str(tmp_path / "bad.bin"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "truncated" in r.stderr
    assert "Traceback" not in r.stderr
