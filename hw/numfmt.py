"""The number formats (:mod:`cimisa.formats`) as hardware: cells of a weight, row drives of an input, the shapes
of drives, column sums and ADC codes, and the per-(slice, digit) shift-add constants.

Every width, range and constant is read from ``cfg.fmt`` (:class:`cimisa.formats.NumberFormat`); nothing here
restates a format rule. Digits and slices are bit fields of a pattern: digit ``d`` of an input starts at bit
``log2|digit_weights[d]|`` and is ``drive_ranges[d][1].bit_length()`` bits wide; slice ``p`` of a weight starts at
bit ``log2|slice_weights[p]|`` and spans ``cell_ranges[p]``. ``tests/test_hw_units.py`` checks
:func:`cell_values` and :func:`drive_value` against ``fmt.cells`` and ``fmt.drive`` for every weight and input.
"""

from __future__ import annotations

from amaranth import Array, Const, Mux, Shape, Value, signed

__all__ = ["drive_shape", "colsum_shape", "code_shape", "phys_cols", "bias_index", "cell_values", "drive_value",
           "saturate_weight", "shift_table", "term_shift_bits", "bias_shift", "product", "const_table"]


def _log2(v: int) -> int:
    """The exponent of a power of two (the format's weights are all +-2**n)."""
    v = abs(v)
    assert v and v & (v - 1) == 0, v
    return v.bit_length() - 1


def _shape_of(lo: int, hi: int) -> Shape:
    """The narrowest shape holding ``lo..hi`` (unsigned when ``lo >= 0``)."""
    return Shape.cast(range(min(lo, 0), max(hi, 0) + 1))


def drive_shape(fmt) -> Shape:
    """The shape of one row's drive in any cycle (``fmt.drive_ranges``)."""
    return _shape_of(min(r[0] for r in fmt.drive_ranges), max(r[1] for r in fmt.drive_ranges))


def colsum_shape(cfg) -> Shape:
    """The shape of a column-sum register: every sum of any rows of the array (``fmt.sum_bounds(rows)``)."""
    b = cfg.fmt.sum_bounds(cfg.rows).values()
    return _shape_of(min(lo for lo, _ in b), max(hi for _, hi in b))


def code_shape(cfg) -> Shape:
    """The shape of an ADC code: signed ``-2**(adc_bits-1)`` .. unsigned ``2**adc_bits - 1``."""
    return signed(cfg.adc_bits + 1)


def phys_cols(cfg) -> int:
    """The physical columns the crossbar sums: every cell of ``logical_cols`` weights and the bias column."""
    return cfg.fmt.conversions(cfg.logical_cols)


def bias_index(cfg) -> int:
    """The crossbar's column-sum index of the bias column (the last one; only with ``fmt.bias_cols``)."""
    return phys_cols(cfg) - 1


def saturate_weight(fmt, w: Value) -> Value:
    """``w`` clipped to ``fmt.weight_range`` (what WRITE_W stores; only ``differential`` clips anything)."""
    lo, hi = fmt.weight_range
    full = -(1 << (fmt.weight_bits - 1)), (1 << (fmt.weight_bits - 1)) - 1
    if (lo, hi) == full:
        return w
    return Mux(w < lo, lo, Mux(w > hi, hi, w))[:fmt.weight_bits].as_signed()


def cell_values(fmt, w: Value) -> list[Value]:
    """Return the ``P`` cells of the stored weight ``w`` (``signed(weight_bits)``, already saturated), as
    ``fmt.cells``: slices of ``w`` (``twos``), of ``max(w, 0)`` and ``max(-w, 0)`` (``differential``: the first
    half of the columns is positive, ``slice_weights > 0``) or of ``w + 2**(weight_bits-1)`` (``offset``)."""
    wb = fmt.weight_bits
    if fmt.weight_encoding == "differential":
        pos = Mux(w > 0, w, 0)[:wb - 1]
        neg = Mux(w < 0, -w, 0)[:wb - 1]
    elif fmt.weight_encoding == "offset":
        pos = neg = (w.as_unsigned() ^ (1 << (wb - 1)))[:wb]   # w + 2**(wb-1) in wb bits: the top bit flipped
    else:
        pos = neg = w.as_unsigned()
    out = []
    for p, sw in enumerate(fmt.slice_weights):
        lo, hi = fmt.cell_ranges[p]
        start = _log2(sw)
        width = (hi - lo).bit_length()
        field = (pos if sw > 0 else neg)[start:start + width]
        out.append(field.as_signed() if lo < 0 else field)
    return out


def drive_value(fmt, x: Value, d: Value) -> Value:
    """Return the drive of the input ``x`` (``signed(input_bits)``) in cycle ``d`` (a runtime index), as
    ``fmt.drive(x)[d]``: bit fields of the two's complement pattern (unipolar digits, the sign bit its own digit)
    or of the saturated magnitude, negated for negative inputs (bipolar digits)."""
    fields = []
    if all(fmt.digit_unipolar):
        pat, neg = x.as_unsigned(), None
    else:
        hi = fmt.input_range[1]
        neg = x < 0
        pat = Mux(neg, Mux(x < -hi, hi, -x), x)[:fmt.input_bits - 1]
    for dw, (_, dhi) in zip(fmt.digit_weights, fmt.drive_ranges, strict=True):
        start = _log2(dw)
        f = pat[start:start + dhi.bit_length()]
        fields.append(f if neg is None else Mux(neg, -f, f))
    shape = drive_shape(fmt)
    sel = Array([Value.cast(f).as_signed() if shape.signed else Value.cast(f) for f in fields])
    return sel[d] if len(fields) > 1 else sel[0]


def product(fmt, drive: Value, cell: Value, p: int) -> Value:
    """``drive * cell`` for a cell of slice ``p``: a multiplexer when either side is 0/1, else a multiplier."""
    dlo = min(r[0] for r in fmt.drive_ranges)
    dhi = max(r[1] for r in fmt.drive_ranges)
    clo, chi = fmt.cell_ranges[p]
    if (dlo, dhi) == (0, 1):
        return Mux(drive[0], cell, 0)
    if (clo, chi) == (0, 1):
        return Mux(cell[0], drive, 0)
    return drive * cell


def term_shift_bits(fmt) -> int:
    """Largest ``log2|digit_weight * slice_weight|`` (the shift-add amount before ``adc_shift``)."""
    return max(_log2(dw) for dw in fmt.digit_weights) + max(_log2(sw) for sw in fmt.slice_weights)


def shift_table(fmt) -> list[tuple[int, bool, bool]]:
    """Per (cycle ``d``, column ``p``), flattened ``d * (P + 1) + p`` with ``p = P`` the bias column:
    ``(log2|digit_weight * slice_weight|, negative, fmt.unsigned_sum(p, d))``. The bias column's slice weight is
    taken as 1: its ``bias_weight`` is applied once, at write-back (:func:`bias_shift`)."""
    P = fmt.cols_per_weight
    out = []
    for d, dw in enumerate(fmt.digit_weights):
        for p in range(P + 1):
            sw = fmt.slice_weights[p] if p < P else 1
            out.append((_log2(dw) + _log2(sw), dw * sw < 0, fmt.unsigned_sum(p if p < P else -1, d)))
    return out


def bias_shift(fmt) -> tuple[int, bool]:
    """``(log2|bias_weight|, bias_weight < 0)`` (only with a bias column)."""
    return _log2(fmt.bias_weight), fmt.bias_weight < 0


def const_table(values: list[int], width: int) -> Array:
    """An indexable table of constants (a small ROM)."""
    return Array([Const(v, width) for v in values])
