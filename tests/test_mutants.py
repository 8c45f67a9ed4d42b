"""Mutation demonstrations: a bug planted in-process must make the test meant to catch it fail.

Each mutant is the function's own source with one edit (a bound, a rounding constant, a floor), compiled in the
function's module namespace and monkeypatched in for the test only; nothing on disk changes. If the source text a
mutant edits disappears (the code was rewritten), :func:`mutant` fails loudly, so these demonstrations cannot go
stale silently. The checkers exercised are the real tests (or their helpers) of ``test_sw_model``,
``test_place``, ``test_hw_units`` and ``test_hw_tile``.
"""

from __future__ import annotations

import inspect
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cimisa import kernel, kernel_formats, kernel_int8, rules, semantics, streamgen
from cimisa.isa import Isa, Opcode
from sw_model import naive
from tests import test_hw_tile as hw_tile
from tests import test_hw_units as hw_units
from tests import test_place as place_tests
from tests import test_sw_model as sw_tests
from tests.test_golden_batch import engine


def mutant(fn, old: str, new: str, *, nth: int = 0, total: int = 1):
    """Return ``fn`` (a function, method or property) recompiled with occurrence ``nth`` of ``old`` replaced by
    ``new``; ``old`` must occur exactly ``total`` times in its source."""
    prop = isinstance(fn, property)
    f = fn.fget if prop else fn
    src = textwrap.dedent(inspect.getsource(f))
    assert src.count(old) == total, f"mutation site {old!r} not found {total} times in {f.__qualname__}"
    at = -1
    for _ in range(nth + 1):
        at = src.index(old, at + 1)
    ns = dict(inspect.unwrap(f).__globals__)
    exec(compile(src[:at] + new + src[at + len(old):], f"<mutant of {f.__qualname__}>", "exec"), ns)
    return ns[f.__name__]


def run_property(cfg, examples: int = 25) -> None:
    """Run ``test_naive_equals_vectorised_on_random_streams`` on ``cfg``: derandomized, no shrinking."""
    inner = sw_tests.test_naive_equals_vectorised_on_random_streams.hypothesis.inner_test
    prop = settings(max_examples=examples, derandomize=True, database=None, phases=[Phase.generate],
                    deadline=None, report_multiple_bugs=False, suppress_health_check=list(HealthCheck))(
        given(data=st.data())(inner))
    prop(cfg=cfg)


def test_property_passes_unmutated():
    run_property(sw_tests.MICRO, 5)


# ---- the golden models: naive loops (sw_model/naive.py), vectorised kernel (cimisa/semantics.py), rules ------
# The ADC, shift-add, REQUANT and wrap rules have one implementation (cimisa/rules.py) that both models call, so
# the naive-vs-vectorised property cannot see a rule mutant: the by-hand oracles of test_sw_model must (below),
# and tests/test_rules.py plants its own rule mutants. The property still guards what each model does alone:
# the naive model's addressing and loops, the vectorised kernel's exact shortcuts.
#: (name, naive function, old text, new text, configuration the property runs on)
NAIVE_MUTANTS = [
    ("accumulate_ignored", "_mvm", "old = int(st.outbuf[addr]) if accumulate else 0", "old = 0", "MICRO"),
    ("in_stride_ignored", "_mvm", "xs = [int(st.inbuf[in_addr + r * in_stride])",
     "xs = [int(st.inbuf[in_addr + r])", "MICRO"),
    ("out_stride_ignored", "_mvm", "addr = out_addr + j * out_stride", "addr = out_addr + j", "MICRO"),
    ("requant_stride_ignored", "_requant", "st.inbuf[dst + k * dst_stride]", "st.inbuf[dst + k]", "MICRO"),
    ("load_in_one_short", "_load_in", "for k in range(count):", "for k in range(count - 1):", "MICRO"),
    ("write_w_one_short", "_write_w", "for k in range(count):", "for k in range(count - 1):", "MICRO"),
]
_OPS = {"_mvm": Opcode.MVM, "_requant": Opcode.REQUANT, "_load_in": Opcode.LOAD_IN, "_write_w": Opcode.WRITE_W}


def _patch_naive(monkeypatch, fn_name, old, new):
    monkeypatch.setitem(naive.NAIVE_ACTIONS, _OPS[fn_name], mutant(getattr(naive, fn_name), old, new))


def test_property_catches_noop_naive_mvm(monkeypatch):
    _patch_naive(monkeypatch, "_mvm", "    cfg = st.cfg\n", "    return\n")
    with pytest.raises(AssertionError):
        run_property(sw_tests.MICRO)


@pytest.mark.parametrize("name,fn_name,old,new,cfg", NAIVE_MUTANTS, ids=[m[0] for m in NAIVE_MUTANTS])
def test_property_catches_naive_mutant(monkeypatch, name, fn_name, old, new, cfg):
    _patch_naive(monkeypatch, fn_name, old, new)
    with pytest.raises((AssertionError, IndexError)):          # a stride mutant may also read past a buffer
        run_property(getattr(sw_tests, cfg))


def _patch_semantics(monkeypatch, name: str, old: str, new: str) -> None:
    """Replace ``cimisa.semantics.<name>``, ``cimisa.kernel.<name>``, ``cimisa.kernel_formats.<name>`` or
    ``cimisa.kernel_int8.<name>`` (in every module that holds it, and its ACTIONS entry, if it is one) by a
    mutant."""
    fn = (getattr(kernel, name, None) or getattr(kernel_formats, name, None) or getattr(kernel_int8, name, None)
          or getattr(semantics, name))
    m = mutant(fn, old, new)
    for mod in (kernel, kernel_formats, kernel_int8, semantics):
        if getattr(mod, name, None) is fn:
            monkeypatch.setattr(mod, name, m)
    for op, action in list(semantics.ACTIONS.items()):
        if action is fn:
            monkeypatch.setitem(semantics.ACTIONS, op, m)


#: The vectorised kernel's own logic: path choice, packed codes (floor, clip, sign plane) and packed residues.
SEM_MUTANTS = [
    ("product_shortcut_when_saturating", "_choose", "if fits and not s:", "if not s:"),
    ("codes_clip_skipped", "_packed_codes", "if plan.clip:", "if False:"),
    ("codes_sign_plane_added", "_packed_codes", "acc -= (sign << nb)", "acc -= (0 * sign)"),
    ("codes_floor_dropped", "_packed_codes", "((1 << sig) - 1) >> s << s", "((1 << sig) - 1)"),
    ("sign_extension_off", "mvm_acc", "xs = u - ((u >> (nb - 1)) << nb)", "xs = u"),
]
#: Kernel mutants of the packed-residue path, which the micro-configuration's random streams reach only a few
#: times (and, with other modules loaded, sometimes not at all): caught by the seeded random kernel-vs-naive
#: comparison instead.
KERNEL_MUTANTS = [
    ("residues_ignored", "mvm_acc", "acc -= rp", "acc -= 0 * rp"),
    ("residue_mask_one_bit_short", "_packed_residues", "_word(plan.sigma, plan.g, (1 << s) - 1)",
     "_word(plan.sigma, plan.g, (1 << s) // 2 - 1)"),
    ("residue_sign_complement_ignored", "_packed_residues", "plan.ce - _sign_fix(nb, s)", "plan.ce"),
    ("exact_product_read_as_fields", "_packed_residues", "nb - (len(mask) - 1) * plan.g, (1 << s) - 1)",
     "plan.g, (1 << s) - 1)"),
    ("separate_product_sign_fix_negated", "mvm_acc", "acc += _sign_fix(nb, s)", "acc -= _sign_fix(nb, s)"),
]


#: The int8 engine (cimisa.kernel_int8 and cimisa.kernel._int8_codes): the planes, the ADC and the shift-add on the
#: int32 sums. Caught by the seeded kernel-vs-naive comparison and by the random streams of the micro
#: configuration, both run with the int8 engine.
INT8_MUTANTS = [
    ("int8_step_dropped", "_int8_codes", "    if s:\n        np.right_shift", "    if False:\n        np.right_shift"),
    ("int8_clip_skipped", "_int8_codes", "np.clip(sums, max(lo, -(1 << 31)), min(hi, (1 << 31) - 1), out=sums)",
     "None"),
    ("int8_clip_one_high", "_int8_codes", "min(hi, (1 << 31) - 1)", "min(hi + 1, (1 << 31) - 1)"),
    ("int8_sign_plane_positive", "_int8_codes", "weights = rules.plane_weights(nb, s)",
     "weights = tuple(abs(v) for v in rules.plane_weights(nb, s))"),
    ("int8_plane_bit0_dropped", "_plane_table", "for b in range(min(8, nbytes))", "for b in range(1, min(8, nbytes))"),
    ("int8_top_input_bit_dropped", "plane_sums", "np.take(_plane_table(p), u & 255)",
     "np.take(_plane_table(p), u & 127)"),
    ("int8_second_byte_dropped", "plane_sums", "(u >> (8 * k)) & 255", "(u >> (8 * k)) & 0"),
]

#: The number-format kernel (cimisa.kernel.mvm_acc_format and its helpers), against the naive loops on the random
#: streams of a format configuration (tests/test_sw_model.py FORMATS) that exercises it.
FORMAT_KERNEL_MUTANTS = [
    ("bias_column_dropped", "_cycles", "acc += fmt.bias_weight * values[-b:]", "pass", "c2-offset-nearest"),
    ("clip_skipped", "format_codes", "np.clip(main, _typed(lo, codes.dtype), _typed(hi, codes.dtype), out=main)",
     "pass", "c1-twos"),
    ("scalar_clip_skipped", "format_codes", "return np.clip(codes, lo.flat[0], hi.flat[0], out=codes)",
     "return codes", "c1-diff"),
    ("unsigned_range_signed", "_code_limits", "fmt.unsigned_sum(p, d)", "False", "c1-twos"),
    ("slice_weights_reversed", "_cycles", "np.array(fmt.slice_weights, dtype=ft)",
     "np.array(fmt.slice_weights[::-1], dtype=ft)", "c3-diff-dac2"),
    ("rounding_floor", "format_codes", "adc_shift, fmt.adc_rounding)", "adc_shift)", "c2-twos-dac2-nearest"),
    ("step_dropped", "mvm_acc_format", "np.left_shift(acc, adc_shift, out=acc)", "pass", "c1-offset-sm-dac2"),
    # the drive table, the packed cycles and the exact product (kernel_formats.format_path)
    ("drive_patterns_unsigned", "_drive_table", "fmt.drive(u - ((u >> (n - 1)) << n))", "fmt.drive(u)",
     "c2-diff-sm-nearest"),
    ("packed_low_field_dropped", "format_sums", "out[..., 0] = p", "out[..., 0] = 0 * p", "c1-diff"),
    ("product_when_saturating", "format_path", "if not adc_shift and fmt.fits(", "if not adc_shift or 0 * fmt.fits(",
     "c1-diff"),
    ("product_digit_weights_dropped", "_held", "np.array(fmt.digit_weights, dtype=np.int64)",
     "np.abs(np.array(fmt.digit_weights, dtype=np.int64))", "c2-twos-dac2-nearest"),
]


def format_streams_differ(cfg, seeds=range(12)) -> bool:
    """Whether the naive and vectorised models differ on any of the seeded random streams of ``cfg`` (the check of
    ``test_naive_equals_vectorised_on_seeded_format_streams``; a fresh configuration: no cached windows)."""
    cfg = cfg.replace(name=cfg.name + "-m")
    return any(sw_tests.naive_vs_fast(cfg, streamgen.random_commands(cfg, seed, 15)) for seed in seeds)


@pytest.mark.parametrize("name,fn_name,old,new,cfg_name", FORMAT_KERNEL_MUTANTS,
                         ids=[m[0] for m in FORMAT_KERNEL_MUTANTS])
def test_format_streams_catch_kernel_mutant(monkeypatch, name, fn_name, old, new, cfg_name):
    with kernel_int8.use("numpy"):                               # the numpy forms
        _format_streams_catch(monkeypatch, fn_name, old, new, cfg_name)


def _format_streams_catch(monkeypatch, fn_name, old, new, cfg_name):
    cfg = next(c for c in sw_tests.FORMATS if c.name == cfg_name)
    assert not format_streams_differ(cfg, range(3))             # the real kernel agrees
    _patch_semantics(monkeypatch, fn_name, old, new)
    kernel._LIMITS.clear()
    try:
        assert format_streams_differ(cfg)
    finally:
        kernel._LIMITS.clear()


#: The int8 engine's part of the number-format kernel, caught by the same random format streams run with it.
FORMAT_INT8_MUTANTS = [
    ("int8_drive_table_off_by_one", "_drive_int8", "return t.astype(np.int8) if", "return (t + 1).astype(np.int8) if",
     "c2-twos-dac2-nearest"),
    ("int8_sums_low_bit_dropped", "format_sums", "return s.astype(fc.t.dtype, copy=False)",
     "return (s >> 1 << 1).astype(fc.t.dtype, copy=False)", "c1-offset-sm-dac2"),
]


@pytest.mark.parametrize("name,fn_name,old,new,cfg_name", FORMAT_INT8_MUTANTS,
                         ids=[m[0] for m in FORMAT_INT8_MUTANTS])
def test_format_streams_catch_int8_mutant(monkeypatch, name, fn_name, old, new, cfg_name):
    with engine("int8"):
        _format_streams_catch(monkeypatch, fn_name, old, new, cfg_name)


def kernel_matches_naive(seeds=range(6)) -> bool:
    """Random windows, widths, ADC settings and batches: ``semantics.mvm_acc`` equals the naive model."""
    from tests.test_golden_batch import naive_mvm, random_windows
    for seed in seeds:
        for w, x, nb, adc_bits, shift in random_windows(seed):
            got = rules.wrap_acc(semantics.mvm_acc(w, x, nb, adc_bits, shift))
            if not np.array_equal(got, naive_mvm(w, x, nb, adc_bits, shift)):
                return False
    return True


@pytest.mark.parametrize("eng", ["numpy", "int8"])
def test_kernel_comparison_passes_on_the_real_kernel(eng):
    with engine(eng):
        assert kernel_matches_naive(range(2))


@pytest.mark.parametrize("name,fn_name,old,new", KERNEL_MUTANTS, ids=[m[0] for m in KERNEL_MUTANTS])
def test_kernel_comparison_catches_mutant(monkeypatch, name, fn_name, old, new):
    _patch_semantics(monkeypatch, fn_name, old, new)
    with kernel_int8.use("numpy"):                               # the packed forms
        assert not kernel_matches_naive()


@pytest.mark.parametrize("name,fn_name,old,new", SEM_MUTANTS, ids=[m[0] for m in SEM_MUTANTS])
def test_property_catches_semantics_mutant(monkeypatch, name, fn_name, old, new):
    """The vectorised side too: the property compares the two models, whichever is wrong."""
    _patch_semantics(monkeypatch, fn_name, old, new)
    with kernel_int8.use("numpy"), pytest.raises(AssertionError):
        run_property(sw_tests.MICRO)


@pytest.mark.parametrize("name,fn_name,old,new", INT8_MUTANTS, ids=[m[0] for m in INT8_MUTANTS])
def test_kernel_comparison_catches_int8_mutant(monkeypatch, name, fn_name, old, new):
    with engine("int8"):
        _patch_semantics(monkeypatch, fn_name, old, new)
        assert not kernel_matches_naive()


@pytest.mark.parametrize("name,fn_name,old,new", INT8_MUTANTS[:4], ids=[m[0] for m in INT8_MUTANTS[:4]])
def test_property_catches_int8_mutant(monkeypatch, name, fn_name, old, new):
    """The machine's random streams on the micro configuration reach the int8 engine's ADC and shift-add."""
    with engine("int8"):
        _patch_semantics(monkeypatch, fn_name, old, new)
        with pytest.raises(AssertionError):
            run_property(sw_tests.MICRO)


_ADC_FLOOR = "    return v >> shift  "
_TRUNC = "    return v // (1 << shift) + (v < 0) * (v % (1 << shift) != 0)  "
_RQ = "(v + (1 << (shift - 1))) >> shift"
#: (name, rules function, old, new, by-hand oracle of test_sw_model, model it runs on)
RULE_ORACLE_MUTANTS = [
    ("adc_truncates_toward_zero_naive", "round_div", _ADC_FLOOR, _TRUNC, "adc", "naive"),
    ("adc_truncates_toward_zero_fast", "round_div", _ADC_FLOOR, _TRUNC, "adc", "fast"),
    ("adc_hi_one_high", "signed_range", "(1 << (bits - 1)) - 1", "(1 << (bits - 1))", "adc", "naive"),
    ("requant_rounding_constant_halved", "round_shift", _RQ, "(v + ((1 << shift) >> 2)) >> shift", "requant", "fast"),
    ("requant_rounding_constant_halved_naive", "round_shift", _RQ, "(v + ((1 << shift) >> 2)) >> shift",
     "requant", "naive"),
    ("requant_round_half_down", "round_shift", _RQ, "(v + (1 << (shift - 1)) - 1) >> shift", "requant", "naive"),
]


@pytest.mark.parametrize("name,fn,old,new,oracle,impl", RULE_ORACLE_MUTANTS, ids=[m[0] for m in RULE_ORACLE_MUTANTS])
def test_hand_oracles_catch_rule_mutants(monkeypatch, name, fn, old, new, oracle, impl):
    """The by-hand ADC and REQUANT tests (every weight, negative sums, ties, saturation) catch a wrong rule."""
    monkeypatch.setattr(rules, fn, mutant(getattr(rules, fn), old, new))
    with pytest.raises(AssertionError):
        if oracle == "adc":
            sw_tests.test_adc_floor_step_and_saturation_for_every_weight(impl)
        else:
            sw_tests.test_requant_ties_and_saturation_for_every_shift(sw_tests.MICRO, impl)


CHECK_MUTANTS = [   # (name, old, new, occurrence of old, occurrences in the source)
    ("write_w_array", 'if a["array"] >= cfg.n_arrays:', 'if a["array"] > cfg.n_arrays:', 0, 3),
    ("mvm_array", 'if a["array"] >= cfg.n_arrays:', 'if a["array"] > cfg.n_arrays:', 1, 3),
    ("barrier_array", 'if a["array"] >= cfg.n_arrays:', 'if a["array"] > cfg.n_arrays:', 2, 3),
    ("load_in_end", 'a["addr"] + a["count"] > cfg.in_depth', 'a["addr"] + a["count"] >= cfg.in_depth', 0, 1),
    ("mvm_in_last", 'a["in_addr"] + (a["nrows"] - 1) * a["in_stride"] >= cfg.in_depth',
     'a["in_addr"] + (a["nrows"] - 1) * a["in_stride"] > cfg.in_depth', 0, 1),
    ("mvm_out_last", 'a["out_addr"] + (a["ncols"] - 1) * a["out_stride"] >= cfg.out_depth',
     'a["out_addr"] + (a["ncols"] - 1) * a["out_stride"] > cfg.out_depth', 0, 1),
    ("mvm_adc_max", 'if not 1 <= a["adc_bits"] <= cfg.adc_bits:', 'if not 1 <= a["adc_bits"] < cfg.adc_bits:', 0, 1),
    ("requant_dst_last", 'a["dst"] + (a["count"] - 1) * a["dst_stride"] >= cfg.in_depth',
     'a["dst"] + (a["count"] - 1) * a["dst_stride"] > cfg.in_depth', 0, 1),
    ("mvm_row_end", 'a["row0"] + a["nrows"] > cfg.rows', 'a["row0"] + a["nrows"] >= cfg.rows', 0, 1),
]


@pytest.mark.parametrize("name,old,new,nth,total", CHECK_MUTANTS, ids=[m[0] for m in CHECK_MUTANTS])
def test_bound_test_catches_check_mutant(monkeypatch, name, old, new, nth, total):
    """semantics.check is shared by both models (the property cannot see it): the boundary test must."""
    monkeypatch.setattr(semantics, "check", mutant(semantics.check, old, new, nth=nth, total=total))
    with pytest.raises((AssertionError, IndexError)):           # a missed bound may also index past a buffer
        sw_tests.test_every_bound_at_max_and_one_past(sw_tests.ODD, "naive")


# ---- the mapper's lower bound ----------------------------------------------------------------------------------
def test_lower_bound_is_ceil_catches_floor(monkeypatch):
    import compiler.geometry as geometry_mod
    import compiler.place as place_mod
    bad = mutant(geometry_mod.lower_bound, "return -(-cells // weight_cells_per_array(hw))",
                 "return cells // weight_cells_per_array(hw)")
    for mod in (geometry_mod, place_mod, place_tests):     # where it is defined, re-exported and used
        monkeypatch.setattr(mod, "lower_bound", bad)
    with pytest.raises(AssertionError):
        place_tests.test_lower_bound_is_ceil(48, 4, 2, 3)


def test_placement_lower_bound_is_ceil_catches_floor(monkeypatch):
    from compiler.place import Placement
    monkeypatch.setattr(Placement, "lower_bound", mutant(
        Placement.__dict__["lower_bound"], "return -(-self.weight_cells // self.cells_per_array)",
        "return self.weight_cells // self.cells_per_array"))
    with pytest.raises(AssertionError):
        place_tests.test_lower_bound_is_ceil(96, 4, 5, 9)


def test_utilization_checked_against_placed_cells(monkeypatch):
    from compiler.place import Placement
    monkeypatch.setattr(Placement, "utilization", mutant(
        Placement.__dict__["utilization"], "return self.weight_cells / (", "return self.monarch_cells / ("))
    with pytest.raises(AssertionError):
        place_tests.test_lower_bound_is_ceil(48, 4, 2, 3)


# ---- the RTL (Amaranth simulation tier) -------------------------------------------------------------------------
def _padded(rows, width: int):
    """Rows with the optional (occurrence, occurrences) of their mutation site filled in (default: the only one)."""
    return [tuple(r) if len(r) == width else tuple(r) + (0, 1) for r in rows]


def _patch_rtl(monkeypatch, cls, attr, old, new, nth=0, total=1):
    monkeypatch.setattr(cls, attr, mutant(cls.__dict__[attr], old, new, nth=nth, total=total))


#: In Controller.elaborate, WRITE_W, LOAD_IN and BARRIER (in this order) flag a header that is the stream's last word.
TRUNCATED_AT_HEADER = "m.d.comb += truncated.eq(d.last)"


def _decoder_mismatches(cfg) -> int:
    items, want, _ = hw_units.boundary_decoder_items(cfg)
    return sum(w != g for w, g in zip(want, hw_units.decoder_trace(cfg, items)))


def test_rtl_requant_rounding_constant_halved_is_caught(monkeypatch):
    """Halving REQUANT's rounding constant in the controller: every tie on the wide configuration differs."""
    from hw.controller import Controller
    _patch_rtl(monkeypatch, Controller, "elaborate", "rnd.eq(((Const(1, 1) << a.shift) >> 1)[:ACC_BITS])",
               "rnd.eq(((Const(1, 1) << a.shift) >> 2)[:ACC_BITS])")
    cmds, _ = hw_tile.requant_ties_program(hw_tile.WIDE)
    problems = hw_tile.stream_problems(hw_tile.WIDE, [("rq", Isa.of(hw_tile.WIDE).encode(cmds))],
                                       hw_tile.TileBatch(hw_tile.WIDE))
    assert len(problems) > 60


#: (name, decoder method, old, new[, occurrence, occurrences]): off-by-one bounds in the RTL decoder.
DECODER_MUTANTS = [
    ("mvm_in_addr_bound", "check", "a.nrows * a.in_stride >= cfg.in_depth + a.in_stride - a.in_addr",
     "a.nrows * a.in_stride > cfg.in_depth + a.in_stride - a.in_addr"),
    ("load_in_bound", "check", "(a.addr + a.count > cfg.in_depth)", "(a.addr + a.count >= cfg.in_depth)"),
    ("requant_dst_bound", "check", "(a.count * a.dst_stride >= cfg.in_depth + a.dst_stride - a.dst)",
     "(a.count * a.dst_stride > cfg.in_depth + a.dst_stride - a.dst)"),
    ("mvm_out_addr_bound", "check", "(a.ncols * a.out_stride >= cfg.out_depth + a.out_stride - a.out_addr)",
     "(a.ncols * a.out_stride > cfg.out_depth + a.out_stride - a.out_addr)"),
    ("read_bound", "check", "(a.addr + a.count > cfg.out_depth)", "(a.addr + a.count >= cfg.out_depth)"),
    ("write_w_array_bound", "check", "with m.If(a.array >= cfg.n_arrays):", "with m.If(a.array > cfg.n_arrays):", 0,
     2),
    ("mvm_array_bound", "check", "with m.If(a.array >= cfg.n_arrays):", "with m.If(a.array > cfg.n_arrays):", 1, 2),
    ("load_payload_bound", "payload_ok", "(ld.addr + ld.count <= cfg.in_depth)", "(ld.addr + ld.count < cfg.in_depth)"),
    ("last_payload_word", "elaborate", "final = left <= per", "final = left < per"),
]


@pytest.mark.parametrize("name,attr,old,new,nth,total", _padded(DECODER_MUTANTS, 6),
                         ids=[m[0] for m in DECODER_MUTANTS])
def test_rtl_decoder_bound_mutant_is_caught(monkeypatch, name, attr, old, new, nth, total):
    """An off-by-one bound in hw/decoder.py shows in the decoder's boundary test (fpga-micro, or the odd
    configuration for the array index, which needs an encodable index past the array count)."""
    from hw.decoder import CommandDecoder
    _patch_rtl(monkeypatch, CommandDecoder, attr, old, new, nth, total)
    assert _decoder_mismatches(hw_tile.ODD if "array" in name else hw_tile.MICRO) > 0


def test_rtl_decoder_in_addr_bound_is_caught_by_the_tile_tier(monkeypatch):
    """The same off-by-one, through the whole tile: the one-past-max streams do not stop where sw_model stops."""
    from hw.decoder import CommandDecoder
    _patch_rtl(monkeypatch, CommandDecoder, "check", "a.nrows * a.in_stride >= cfg.in_depth + a.in_stride - a.in_addr",
               "a.nrows * a.in_stride > cfg.in_depth + a.in_stride - a.in_addr")
    cfg = hw_tile.MICRO
    assert hw_tile.stream_problems(cfg, hw_tile.bounds_past_max_streams(cfg), hw_tile.TileBatch(cfg))


def test_rtl_load_in_header_last_without_truncated_is_caught(monkeypatch):
    """A LOAD_IN header arriving as the stream's last word must stop with TRUNCATED."""
    from hw.controller import Controller
    _patch_rtl(monkeypatch, Controller, "elaborate", TRUNCATED_AT_HEADER, "pass", 1, 3)
    cfg = hw_tile.MICRO
    problems = hw_tile.stream_problems(cfg, hw_tile.truncation_streams(cfg), hw_tile.TileBatch(cfg))
    assert problems        # the tile waits for more words instead of stopping (a timeout in the testbench)


#: (name, component, old, new, killing test[, occurrence, occurrences]): the ADC lanes and the controller.
RTL_DATAPATH_MUTANTS = [
    ("adc_saturates_one_high", "AdcLane", "(full >> 1) - 1)", "(full >> 1))", "random"),
    ("adc_lo_one_high", "AdcLane", "-(full >> 1)))", "-(full >> 1) + 1))", "random"),
    ("requant_saturates_lo_one_high", "Controller", "Mux(q_val < ilo, ilo, q_val)",
     "Mux(q_val < ilo + 1, ilo + 1, q_val)", "requant"),
    ("requant_stride_ignored", "Controller", "in_ptr.eq(in_ptr + rq.dst_stride)", "in_ptr.eq(in_ptr + 1)",
     "bounds"),
    ("accumulate_always", "Controller", "Mux(mv.accumulate, self.outbuf.rd_data, 0)", "self.outbuf.rd_data",
     "requant"),
    ("write_w_last_not_truncated", "Controller", TRUNCATED_AT_HEADER, "pass", "truncation", 0, 3),
    ("barrier_last_not_truncated", "Controller", TRUNCATED_AT_HEADER, "pass", "truncation", 2, 3),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,cls_name,old,new,killer,nth,total", _padded(RTL_DATAPATH_MUTANTS, 7),
                         ids=[m[0] for m in RTL_DATAPATH_MUTANTS])
def test_rtl_datapath_mutants_are_caught(monkeypatch, name, cls_name, old, new, killer, nth, total):
    from hw.adc import AdcLane
    from hw.controller import Controller
    cls = {"AdcLane": AdcLane, "Controller": Controller}[cls_name]
    _patch_rtl(monkeypatch, cls, "elaborate", old, new, nth, total)
    cfg = hw_tile.MICRO
    isa = Isa.of(cfg)
    if killer == "random":
        streams = [(str(s), isa.encode(hw_tile.random_commands(cfg, s, 18))) for s in range(4)]
    elif killer == "requant":
        streams = [("rq", isa.encode(hw_tile.requant_micro_program(cfg)[0]))]
    elif killer == "bounds":
        streams = [("bounds", isa.encode(hw_tile.bounds_at_max_program(cfg)))]
    else:
        streams = hw_tile.truncation_streams(cfg)
    assert hw_tile.stream_problems(cfg, streams, hw_tile.TileBatch(cfg))


# ---- the concurrency hazard check (cimisa.concurrency.Scoreboard, shared by the golden models) ------------------
#: (name, Scoreboard method or module function, old, new): each must make the hand cases of
#: tests/test_concurrency.py (and the golden model's HAZARD streams) fail.
SCOREBOARD_MUTANTS = [
    ("hull_replaced_not_merged", "step", "[lo, hi] if h is None else [min(h[0], lo), max(h[1], hi)]", "[lo, hi]"),
    ("local_barrier_clears_all", "step", 'self.hulls.pop(args["array"] // self.apt, None)', "self.hulls.clear()"),
    ("chip_op_does_not_clear", "step",
     "elif op in CHIP_OPS:\n        self.hulls.clear()\n        self.lattices.clear()",
     "elif op in CHIP_OPS:\n        pass"),
    ("write_w_clears", "step", "elif op in CHIP_OPS:", "elif op in CHIP_OPS | {Opcode.WRITE_W}:"),
    ("local_flag_ignored", "step", 'if args["local"]:', "if False:"),
    ("span_end_one_short", "out_span", 'lo + (args["ncols"] - 1) * args["out_stride"] + 1',
     'lo + (args["ncols"] - 1) * args["out_stride"]'),
    ("span_stride_ignored", "out_span", 'lo + (args["ncols"] - 1) * args["out_stride"] + 1', 'lo + args["ncols"]'),
    ("adjacent_spans_meet", "conflict", "lo < b and a < hi", "lo <= b and a <= hi"),
    ("own_tile_conflicts", "conflict", "u != t and lo < b", "lo < b"),
    ("highest_tile_reported", "conflict", "return min(hit) if hit else None", "return max(hit) if hit else None"),
    ("lattice_masks_or", "conflict", "& mask & self.lattices[u][0]", "& (mask | self.lattices[u][0])"),
    ("lattice_ignored_phases", "conflict", "(phase ^ self.lattices[u][1])", "(phase ^ phase)"),
    ("lattice_merge_keeps_mask", "step", "(merge_lattice(*lat, mask, phase), lat[1])", "(lat[0], lat[1])"),
    ("lattice_kept_past_local_barrier", "step", 'self.lattices.pop(args["array"] // self.apt, None)', "pass"),
    ("lattice_any_stride", "out_mask", "s - 1 if s > 0 and s & (s - 1) == 0 else 0", "s - 1 if s > 0 else 0"),
]


@pytest.mark.parametrize("name,fn_name,old,new", SCOREBOARD_MUTANTS, ids=[m[0] for m in SCOREBOARD_MUTANTS])
def test_scoreboard_cases_catch_mutant(monkeypatch, name, fn_name, old, new):
    from cimisa import concurrency
    from tests import test_concurrency as conc_tests
    assert conc_tests.scoreboard_problems() == []
    if fn_name in ("out_span", "out_mask"):                   # module functions
        monkeypatch.setattr(concurrency, fn_name, mutant(getattr(concurrency, fn_name), old, new))
    else:
        monkeypatch.setattr(concurrency.Scoreboard, fn_name, mutant(concurrency.Scoreboard.__dict__[fn_name], old, new))
    assert conc_tests.scoreboard_problems()


#: The concurrency coverage (cimisa.streamgen.coverage._ChipCoverage) and the generator's hazard avoidance
#: (cimisa.streamgen.chipgen.ChipBuilder.emit): (name, class, method, old, new, killing test of test_concurrency).
CHIP_STREAM_MUTANTS = [
    ("queue_run_long_one_early", "_ChipCoverage", "step", "self.run[1] >= self.depth + 2",
     "self.run[1] >= self.depth + 1", "test_chip_bins_by_hand"),
    ("busy_barrier_swapped", "_ChipCoverage", "step", '"chip:barrier_local_busy" if t in self.busy',
     '"chip:barrier_local_busy" if t not in self.busy', "test_chip_bins_by_hand"),
    ("run_not_broken_by_other_commands", "_ChipCoverage", "step", "    self.run = (-1, 0)\n", "",
     "test_chip_bins_by_hand"),
    ("hazard_not_stopping", "_ChipCoverage", "step", "hit.add(HAZARD_BIN)\n            return False",
     "hit.add(HAZARD_BIN)", "test_chip_bins_by_hand"),
    ("generator_ignores_hazards", "ChipBuilder", "emit", "while (u := self.sb.conflict(cmd.args)) is not None:",
     "while False:", "test_concurrent_streams_are_legal_hazard_free_and_cover_every_bin"),
]


@pytest.mark.parametrize("name,cls_name,meth,old,new,killer", CHIP_STREAM_MUTANTS,
                         ids=[m[0] for m in CHIP_STREAM_MUTANTS])
def test_chip_stream_checks_catch_mutant(monkeypatch, name, cls_name, meth, old, new, killer):
    from cimisa.streamgen import chipgen, coverage
    from tests import test_concurrency as conc_tests
    cls = {"_ChipCoverage": coverage._ChipCoverage, "ChipBuilder": chipgen.ChipBuilder}[cls_name]
    monkeypatch.setattr(cls, meth, mutant(cls.__dict__[meth], old, new))
    test = getattr(conc_tests, killer)
    with pytest.raises(AssertionError):
        test(conc_tests.MICRO3) if killer.startswith("test_concurrent") else test()
