"""The shared stream generator (cimisa.streamgen): legal, deterministic, computes on data, hits every bin."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sw_model
from cimisa import semantics, streamgen
from cimisa.config import HwConfig, load_hw
from cimisa.isa import Command, ErrorCode, Isa, Opcode
from tests.strategies import legal_stream

MICRO = load_hw("fpga-micro")
TINY = load_hw("fpga-tiny")
ODD = HwConfig(name="odd", rows=12, cols=10, n_arrays=3, weight_bits=3, input_bits=5, adc_bits=6,
               adcs_per_array=3, in_depth=20, out_depth=24, rows_per_cycle=3)
WIDE = HwConfig(name="wide16", rows=4, cols=4, n_arrays=2, weight_bits=16, input_bits=16, adc_bits=18,
                adcs_per_array=4, in_depth=16, out_depth=16, rows_per_cycle=4)
CONFIGS = [MICRO, TINY, ODD, WIDE]
N_STREAMS, LENGTH = 20, 60


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: c.name)
def streams(request):
    cfg = request.param
    return cfg, [streamgen.random_commands(cfg, seed, LENGTH) for seed in range(N_STREAMS)]


def test_streams_are_legal_deterministic_and_halt(streams):
    cfg, cmd_lists = streams
    isa = Isa.of(cfg)
    for seed, cmds in enumerate(cmd_lists[:5]):
        assert cmds == streamgen.random_commands(cfg, seed, LENGTH)
        assert cmds[-1].op is Opcode.HALT and Opcode.HALT not in {c.op for c in cmds[:-1]}
        r = sw_model.run(cfg, isa.encode(cmds))
        assert r.status_tuple() == ("HALTED", "NONE", len(cmds) - 1)
    assert cmd_lists[0] != cmd_lists[1]


def test_every_coverage_bin_is_hit(streams):
    """Opcodes, field corners (addresses 0 and last, full and 1-element windows, strides, shifts 0 and max,
    ADC resolution 1 and max) and value bins (ADC saturation both ends, floor of negative sums, REQUANT ties of
    both signs, saturation both ends, results observed by READs) over the streams."""
    cfg, cmd_lists = streams
    hit = set().union(*(streamgen.covered(cfg, cmds) for cmds in cmd_lists))
    assert streamgen.coverage_bins(cfg) - hit == set()
    assert hit <= streamgen.coverage_bins(cfg)


def test_mvm_outputs_are_mostly_nonzero(streams):
    """MVMs compute on programmed weights and loaded inputs: most outputs are non-zero, lossy and exact ones."""
    cfg, cmd_lists = streams
    stats = [streamgen.stream_stats(cfg, cmds) for cmds in cmd_lists]
    outputs = sum(s.mvm_outputs for s in stats)
    nonzero = sum(s.mvm_nonzero for s in stats)
    assert nonzero / outputs >= 0.5, (nonzero, outputs)
    assert all(s.mvm_nonzero > 0 for s in stats)                       # every single stream computes
    assert sum(s.mvm_exact for s in stats) >= N_STREAMS and sum(s.mvm_lossy for s in stats) >= N_STREAMS
    assert sum(s.adc_saturations for s in stats) > 0 and sum(s.requant_ties for s in stats) >= N_STREAMS
    assert sum(s.results for s in stats) > 0


def test_coverage_bins_by_hand():
    cfg = MICRO
    cmds = [Command.write_w(0, 0, 0, [-8] + [7] * 15), Command.load_in(0, [-1]),
            Command.mvm(array=0, row0=0, nrows=1, col0=0, ncols=2, in_addr=0, out_addr=0, adc_bits=2, adc_shift=1),
            Command.read(0, 2), Command.halt()]
    hit = streamgen.covered(cfg, cmds)
    # colsum -8 >> 1 = -4 -> -2 (low end), 7 >> 1 = 3 -> 1 (high end), 7 has a remainder: floor of a positive sum
    assert {"mvm:adc_sat_lo", "mvm:adc_sat_hi", "mvm:floor_pos", "mvm:neg_input", "mvm:nonzero",
            "mvm:observed", "write_w:count=full", "write_w:weight=min", "write_w:weight=max", "load_in:count=1",
            "read:addr=0", "mvm:adc_shift>0"} <= hit
    assert "mvm:floor_neg" not in hit and "mvm:exact_nonzero" not in hit
    assert streamgen.covered(cfg, [Command.read(0, 1)]) == {"op:READ", "read:addr=0", "read:count=1"}
    # REQUANT of a tie (-2 at shift 2 is -0.5: rounds up to 0) whose result an MVM reads and a READ shows
    st_cmds = [Command.write_w(1, 0, 0, [1]), Command.load_in(0, [-2]),
               Command.mvm(array=1, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, out_addr=3, adc_bits=8),
               Command.requant(src=3, count=1, dst=5, dst_stride=0, shift=2),
               Command.mvm(array=1, row0=0, nrows=1, col0=0, ncols=1, in_addr=5, out_addr=4, adc_bits=8),
               Command.read(4, 1)]
    hit = streamgen.covered(cfg, st_cmds)
    assert {"requant:tie_neg", "requant:observed", "mvm:array=max", "mvm:exact_nonzero"} <= hit
    assert "requant:tie_pos" not in hit
    s = streamgen.stream_stats(cfg, st_cmds)
    assert (s.mvms, s.mvm_outputs, s.mvm_nonzero, s.requant_ties, s.results) == (2, 2, 1, 1, 1)


def test_covered_stops_at_the_first_illegal_command():
    cfg = MICRO
    assert streamgen.covered(cfg, [Command.read(31, 2), Command.barrier()]) == set()


def test_boundary_cases_agree_with_the_checks():
    from tests.test_sw_model import FORMATS
    for cfg in CONFIGS + FORMATS + [load_hw("fpga-tiny-sliced")]:    # column bounds in logical columns
        cases = streamgen.boundary_cases(cfg)
        names = [n for n, _, _ in cases]
        assert len(names) == len(set(names))
        for name, cmd, code in cases:
            assert streamgen.fits(cfg, cmd)
            assert semantics.check(cfg, cmd.op, cmd.args) is code, (cfg.name, name)
        ops = {cmd.op for _, cmd, code in cases if code is not ErrorCode.NONE}
        assert ops - {Opcode.BARRIER} == {Opcode.WRITE_W, Opcode.LOAD_IN, Opcode.MVM, Opcode.REQUANT, Opcode.READ}
        assert (Opcode.BARRIER in ops) == ("mvm:array=max+1" in names)       # where an index past the end fits
    # 3 arrays: the index 3 is encodable, so both ends of the array bound are there
    assert {"write_w:array=max+1", "mvm:array=max+1", "barrier:array=max+1", "barrier:all,array=max+1"} <= {
        n for n, _, _ in streamgen.boundary_cases(ODD)}
    assert "mvm:array=max+1" not in {n for n, _, _ in streamgen.boundary_cases(MICRO)}   # 1-bit field


def test_generate_draws_from_any_randint_source():
    """The same draws give the same stream; ``prologue=False`` / ``halt=False`` leave those parts out."""
    a = streamgen.generate(ODD, random.Random(5), 10)
    b = streamgen.generate(ODD, random.Random(5), 10)
    assert a == b and a[0].op is Opcode.WRITE_W
    bare = streamgen.generate(ODD, random.Random(5), 10, prologue=False, halt=False)
    assert bare[-1].op is not Opcode.HALT and {Opcode.MVM, Opcode.REQUANT, Opcode.READ} <= {c.op for c in bare}
    with pytest.raises(ValueError):
        streamgen.generate(ODD, random.Random(5), -1)


@settings(max_examples=15)
@given(data=st.data())
def test_hypothesis_streams_are_legal(data):
    cmds = data.draw(legal_stream(ODD, max_size=12))
    r = sw_model.run(ODD, Isa.of(ODD).encode(cmds))
    assert r.ok and r.commands == len(cmds)


def test_sim_streams_keep_their_api():
    """sim.streams (co-simulation) draws from the same generator and keeps its coverage bins."""
    from sim import streams as sim_streams
    cfg = TINY
    case = sim_streams.random_stream(cfg, 3, n=20)
    assert list(case.commands) == streamgen.random_commands(cfg, 3, 20)
    assert sim_streams.random_commands(cfg, 3, 20) == list(case.commands)
    assert sim_streams.covered(cfg, case.commands) <= sim_streams.coverage_bins(cfg)
    assert sim_streams.coverage_bins(cfg) <= streamgen.coverage_bins(cfg)
    assert sim_streams.covered(cfg, [Command.read(0, 1)]) == {"op:READ", "read:count=1"}


def test_any_command_is_encodable_and_illegal_streams_stop_as_intended():
    """The generator's other streams: any encodable command round-trips through the encoding; every illegal
    stream stops sw_model with the error it was built for."""
    isa = Isa.of(ODD)
    rng = random.Random(3)
    for _ in range(50):
        cmd = streamgen.any_command(ODD, rng)
        assert streamgen.fits(ODD, cmd) and cmd.op is not Opcode.HALT
        assert isa.decode(isa.encode([cmd])) == [cmd]
    assert streamgen.any_command(ODD, rng, Opcode.READ).op is Opcode.READ
    for case in streamgen.illegal_streams(ODD):
        assert sw_model.run(ODD, case.words, raise_on_error=False).error is case.intent, case
    s = streamgen.stream_stats(ODD, streamgen.random_commands(ODD, 0, 20))
    with pytest.raises(AttributeError):
        s.mvms = 0                                            # frozen: counts are results, not state


def test_format_streams_hit_every_bin():
    """In every number format (tests/test_sw_model.py FORMATS) the streams hit every bin, including an unsigned
    ADC range saturated (formats with unsigned sums), sums half a step from a code (nearest rounding) and, only
    where sums can be negative, the signed range's low end."""
    from tests.test_sw_model import FORMATS
    for cfg in FORMATS:
        bins = streamgen.coverage_bins(cfg)
        kinds = cfg.fmt.sum_bounds(cfg.rows)
        assert ("mvm:adc_sat_unsigned" in bins) == (True in kinds)
        assert ("mvm:adc_sat_lo" in bins) == (False in kinds)
        assert ("mvm:adc_half_step" in bins) == (cfg.adc_rounding == "nearest")
        hit = set().union(*(streamgen.covered(cfg, streamgen.random_commands(cfg, seed, 40)) for seed in range(12)))
        assert bins - hit == set(), cfg.name
