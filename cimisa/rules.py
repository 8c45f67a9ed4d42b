"""The numeric rules of the CIM machine, each defined once (numpy only).

Every rule that converts, rounds, saturates or wraps a number on the tile is one function here. The specification
(:mod:`cimisa.semantics`), the naive and the noisy golden models (:mod:`sw_model`), the compiler
(:mod:`compiler.quant`, :mod:`compiler.schedule`) and the end-to-end executor call them instead of restating them.
Each works on numpy arrays and on plain Python integers (the naive model's scalar form).

Forward rules

* :func:`signed_range`: an ``n``-bit two's complement number lies in ``-2**(n-1) .. 2**(n-1)-1`` (inputs,
  ADC codes, weights); :func:`signed_bits` is its inverse;
* :func:`bit_planes`: inputs drive the rows bit-serially, LSB first; bit ``b`` of ``x`` is ``(x >> b) & 1``;
* :func:`adc_code`: an ADC converts a column sum to ``clip(round(colsum / 2**adc_shift), code_range(adc_bits))``,
  ``round`` floor (the default) or nearest (:func:`round_div`), the range signed or, for sums that cannot be
  negative, unsigned (:func:`code_range`); how weights become cells and inputs become row drives is
  :mod:`cimisa.formats`;
* :func:`shift_add`: the code of bit plane ``b`` is weighted ``+2**(b + adc_shift)``, the sign plane's
  (``b = input_bits-1``) ``-2**(input_bits-1 + adc_shift)``, so that with a lossless ADC the sum is the exact
  product; :func:`convert_planes` is the ADC followed by the shift-add: one MVM column's value;
* :func:`requant`: REQUANT rounds half up, ``(v + 2**(shift-1)) >> shift`` (:func:`round_shift`), and saturates to
  ``signed_range(input_bits)``;
* :func:`wrap_acc`: accumulators and result words wrap to :data:`ACC_BITS`-bit two's complement.

Inverse rules (what the compiler and the executor choose)

* :func:`lossless_adc_bits`: the ADC width that holds every column sum of ``nrows`` rows;
* :func:`colsum_bounds`: the smallest and largest column sum a weight window allows over all inputs;
* :func:`adc_fits` / :func:`adc_shift_for`: whether / with which smallest step a column-sum range converts
  without saturating;
* :func:`requant_shift_for`: the smallest REQUANT shift that brings a magnitude into the input range;
* :data:`MAX_REQUANT_SHIFT`, :func:`field_max`: the largest shifts the command fields hold.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["ACC_BITS", "MAX_REQUANT_SHIFT", "FLOAT_EXACT", "signed_range", "signed_bits", "bit_planes",
           "bit_plane_table", "code_range", "round_div", "adc_code", "plane_weights", "shift_add", "convert_planes",
           "round_shift", "requant",
           "wrap_acc", "wrap_acc_inplace", "lossless_adc_bits", "colsum_bounds", "adc_fits", "adc_shift_for",
           "requant_shift_for", "field_max"]

#: Width of every output-buffer accumulator and result word (two's complement, wraps on overflow).
ACC_BITS = 32

#: float64 holds every integer of magnitude below this exactly (whatever the summation order of a product).
FLOAT_EXACT = 1 << 53
_FLOAT32_EXACT = 1 << 24


def field_max(value: int) -> int:
    """Return the largest value of the unsigned command field sized to hold ``0..value`` (at least 1 bit).

    >>> field_max(31), field_max(16), field_max(0)
    (31, 31, 1)
    """
    return (1 << max(1, int(value).bit_length())) - 1


#: Largest REQUANT shift: the command field holds ``0..ACC_BITS-1`` (a wider shift has nothing left to keep).
MAX_REQUANT_SHIFT = field_max(ACC_BITS - 1)


def signed_range(bits: int) -> tuple[int, int]:
    """Return ``(lo, hi)``, the range of a ``bits``-bit two's complement number (ADC codes, inputs, weights).

    >>> signed_range(4)
    (-8, 7)
    """
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def signed_bits(lo: int, hi: int) -> int:
    """Return the smallest two's complement width whose :func:`signed_range` holds ``lo..hi`` (at least 1).

    >>> signed_bits(-8, 7), signed_bits(-9, 0), signed_bits(0, 8), signed_bits(0, 0)
    (4, 5, 5, 1)
    """
    return 1 + max((-int(lo) - 1).bit_length() if lo < 0 else 0, int(hi).bit_length())


def _saturate(v, lo: int, hi: int):
    """Clip ``v`` (a numpy array, in place, or a Python integer) to ``lo..hi``."""
    if isinstance(v, np.ndarray):
        return np.clip(v, lo, hi, out=v)
    return min(max(v, lo), hi)


# ---- forward rules -----------------------------------------------------------------------------------------------
def bit_planes(x, input_bits: int):
    """Return the ``input_bits`` two's complement bits of ``x``, LSB first: a tuple for an integer, else a trailing
    axis of 0/1 int64.

    >>> bit_planes(-3, 4)                         # -3 = 0b1101 in 4 bits
    (1, 0, 1, 1)
    >>> bit_planes(np.array([5, -1]), 3).tolist()
    [[1, 0, 1], [1, 1, 1]]
    """
    if isinstance(x, np.ndarray):
        return (x.astype(np.int64)[..., None] >> np.arange(input_bits)) & 1
    return tuple((int(x) >> b) & 1 for b in range(input_bits))


@functools.lru_cache(maxsize=32)
def bit_plane_table(input_bits: int, dtype=np.float64) -> np.ndarray:
    """Return ``t[u] = bit_planes(u)`` for every ``input_bits``-bit pattern ``u`` (``x & (2**input_bits-1)``), in
    ``dtype``: the planes of a whole batch by one lookup.

    >>> bit_plane_table(3)[np.array([-3, 2]) & 7].tolist()
    [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    t = bit_planes(np.arange(1 << input_bits, dtype=np.int64), input_bits).astype(dtype)
    t.flags.writeable = False
    return t


def code_range(adc_bits: int, unsigned: bool = False) -> tuple[int, int]:
    """Return the codes of an ``adc_bits``-bit ADC: :func:`signed_range`, or ``0..2**adc_bits-1`` for a column
    whose sums are never negative (:meth:`cimisa.formats.NumberFormat.unsigned_sum`).

    >>> code_range(5), code_range(5, unsigned=True)
    ((-16, 15), (0, 31))
    """
    return (0, (1 << adc_bits) - 1) if unsigned else signed_range(adc_bits)


def round_div(v, shift: int, rounding: str = "floor"):
    """Divide integers by ``2**shift`` and round: ``floor`` (an arithmetic shift) or ``nearest`` (half up,
    :func:`round_shift`); floating values are floored after adding half a step for ``nearest``.

    >>> [round_div(v, 2) for v in (5, 6, -5, -6)], [round_div(v, 2, "nearest") for v in (5, 6, -5, -6)]
    ([1, 1, -2, -2], [1, 2, -1, -1])
    """
    if isinstance(v, np.ndarray) and v.dtype.kind == "f":
        q = np.multiply(v, v.dtype.type(2.0 ** -shift))
        if rounding == "nearest":
            q += v.dtype.type(0.5)
        return np.floor(q, out=q)
    if rounding == "nearest" and shift:
        return round_shift(v, shift)
    return v >> shift                                          # (a new array: adc_code clips it in place)


def adc_code(colsum, adc_bits: int, adc_shift: int, rounding: str = "floor", unsigned: bool = False):
    """ADC: ``clip(round(colsum / 2**adc_shift), code_range(adc_bits, unsigned))``, per element.

    ``rounding`` is the configuration's ``adc_rounding`` (:func:`round_div`: ``floor`` or ``nearest``);
    ``unsigned`` the range of a column whose sums cannot be negative (:func:`code_range`). Integers shift
    arithmetically; floating column sums (the analog sums of the noise model) are rounded the same way. A new
    array is returned for an array.

    >>> [adc_code(s, 4, 1) for s in (13, 15, 16, -3, -16, -17, -18)]   # step 2, codes -8..7
    [6, 7, 7, -2, -8, -8, -8]
    >>> adc_code(np.array([15.9, -0.5, -16.5]), 4, 1).tolist()
    [7.0, -1.0, -8.0]
    >>> [adc_code(s, 4, 1, "nearest", unsigned=True) for s in (-1, 0, 1, 2, 29, 30, 31)]   # codes 0..15
    [0, 0, 1, 1, 15, 15, 15]
    """
    lo, hi = code_range(adc_bits, unsigned)
    return _saturate(round_div(colsum, adc_shift, rounding), lo, hi)


def plane_weights(input_bits: int, adc_shift: int) -> tuple[int, ...]:
    """Return the shift-add weight of each bit plane's code: ``+2**(b + adc_shift)``, the sign plane's negated.

    >>> plane_weights(4, 1)
    (2, 4, 8, -16)
    """
    return tuple((-1 if b == input_bits - 1 else 1) << (b + adc_shift) for b in range(input_bits))


def shift_add(codes, input_bits: int, adc_shift: int, adc_bits: int):
    """Digital shift-add: ``sum_b plane_weights[b] * codes[..., b]`` (bit planes on the last axis; a sequence of
    Python integers for one column). Returns int64 (the caller wraps to :data:`ACC_BITS`).

    Floating codes (whole numbers, ``|code| <= 2**(adc_bits-1)``) are summed in float32 or float64 when that is
    exact for every sum, otherwise in int64.

    >>> shift_add([3, -1, 0, 2], 4, 0, 8)          # 3 - 2 + 0 - 2*8
    -15
    >>> shift_add(np.array([[3., -1., 0., 2.]], dtype=np.float32), 4, 0, 8).tolist()
    [-15]
    """
    w = plane_weights(input_bits, adc_shift)
    if not isinstance(codes, np.ndarray):
        return sum(c * wb for c, wb in zip(codes, w, strict=True))
    lead = codes.shape[:-1]
    flat = codes.reshape(-1, input_bits)
    if codes.dtype.kind == "f":
        bound = 1 << (adc_bits - 1 + input_bits + adc_shift)          # > |sum| of any codes
        ct = (np.float32 if bound < _FLOAT32_EXACT and codes.dtype == np.float32
              else np.float64 if bound < FLOAT_EXACT else None)
        if ct is not None:
            return np.rint(flat.astype(ct, copy=False) @ np.array(w, dtype=ct)).astype(np.int64).reshape(lead)
        flat = flat.astype(np.int64)
    return (flat @ np.array(w, dtype=np.int64)).reshape(lead)


def convert_planes(colsums, input_bits: int, adc_bits: int, adc_shift: int):
    """One MVM column's value: the ADC code of each bit plane's column sum, shift-added (bit planes on the last
    axis; a sequence of Python integers for one column).

    >>> convert_planes([5, -13, 0, 12], 4, 8, 0)   # lossless: 5 - 2*13 - 8*12
    -117
    >>> convert_planes([5, -13, 0, 12], 4, 3, 1)   # 3-bit codes 2, -4, 0, 3 (step 2): 2*2 - 4*4 - 16*3
    -60
    """
    if isinstance(colsums, np.ndarray):
        codes = adc_code(colsums, adc_bits, adc_shift)
    else:
        codes = [adc_code(c, adc_bits, adc_shift) for c in colsums]
    return shift_add(codes, input_bits, adc_shift, adc_bits)


def round_shift(v, shift: int):
    """REQUANT's rounding: ``(v + 2**(shift-1)) >> shift`` (round half up; ``v`` itself for shift 0).

    >>> [round_shift(v, 1) for v in (5, -5, 6, -6)]
    [3, -2, 3, -3]
    """
    return (v + (1 << (shift - 1))) >> shift if shift else v


def requant(v, shift: int, input_bits: int, input_range: tuple[int, int] | None = None):
    """REQUANT: :func:`round_shift`, then saturate to ``input_range`` (the number format's inputs,
    :attr:`cimisa.formats.NumberFormat.input_range`; None: ``signed_range(input_bits)``).

    >>> [requant(v, 1, 4) for v in (5, -6, 100, -100)]
    [3, -3, 7, -8]
    >>> requant(np.array([5, -6, 100]), 1, 4).tolist()
    [3, -3, 7]
    >>> requant(-100, 1, 4, input_range=(-7, 7))          # sign-magnitude inputs: symmetric
    -7
    """
    lo, hi = signed_range(input_bits) if input_range is None else input_range
    if isinstance(v, np.ndarray):
        v = round_shift(v.astype(np.int64), shift)             # a new array: the caller's is not changed
    else:
        v = round_shift(v, shift)
    return _saturate(v, lo, hi)


def wrap_acc_inplace(a: np.ndarray) -> np.ndarray:
    """Wrap the int64 array ``a`` to :data:`ACC_BITS`-bit two's complement in place; return it."""
    half = 1 << (ACC_BITS - 1)
    np.add(a, half, out=a)
    np.bitwise_and(a, (1 << ACC_BITS) - 1, out=a)
    np.subtract(a, half, out=a)
    return a


def wrap_acc(v):
    """Wrap integers to :data:`ACC_BITS`-bit two's complement (a Python integer of any size, or int64 arrays).

    >>> wrap_acc(2**31), wrap_acc(-2**31 - 1), wrap_acc(2**70 + 5)
    (-2147483648, 2147483647, 5)
    >>> wrap_acc(np.array([2**31, 7])).tolist()
    [-2147483648, 7]
    """
    if isinstance(v, (int, np.integer)):
        half = 1 << (ACC_BITS - 1)
        return ((int(v) + half) & ((1 << ACC_BITS) - 1)) - half
    return wrap_acc_inplace(np.array(v, dtype=np.int64))


# ---- inverse rules -----------------------------------------------------------------------------------------------
def lossless_adc_bits(nrows: int, weight_bits: int) -> int:
    """Return the ADC width that holds every column sum of ``nrows`` rows of ``weight_bits``-bit weights.

    Column sums of one bit plane lie in ``-2**(weight_bits-1) * nrows .. (2**(weight_bits-1) - 1) * nrows``:

    >>> lossless_adc_bits(256, 8), lossless_adc_bits(32, 4), lossless_adc_bits(1, 8)
    (16, 9, 8)
    """
    wlo, whi = signed_range(weight_bits)
    return signed_bits(wlo * nrows, whi * nrows)


def colsum_bounds(w) -> tuple[int, int]:
    """Return ``(colmin, colmax)``: the smallest and largest column sum of the window ``w`` (nrows, ncols) over all
    0/1 bit planes (a column's sum of its negative, resp. positive weights; 0 for an empty window).

    >>> colsum_bounds(np.array([[1, -2], [3, 4], [-5, 0]]))
    (-5, 4)
    """
    w = np.asarray(w)
    return (int(np.minimum(w, 0).sum(axis=0).min(initial=0)),
            int(np.maximum(w, 0).sum(axis=0).max(initial=0)))


def adc_fits(colmin: int, colmax: int, adc_bits: int, adc_shift: int) -> bool:
    """Whether every column sum in ``colmin..colmax`` converts without saturating (:func:`adc_code`).

    >>> adc_fits(-16, 15, 4, 1), adc_fits(-16, 16, 4, 1), adc_fits(-17, 15, 4, 1)
    (True, False, False)
    """
    lo, hi = signed_range(adc_bits)
    return lo <= (colmin >> adc_shift) and (colmax >> adc_shift) <= hi


def adc_shift_for(colmin: int, colmax: int, adc_bits: int, max_shift: int | None = None) -> int:
    """Return the smallest ``adc_shift`` with which every column sum in ``colmin..colmax`` fits the ADC
    (:func:`adc_fits`), at most ``max_shift`` (``None``: no limit).

    >>> adc_shift_for(-100, 900, 5), adc_shift_for(-100, 900, 5, max_shift=3), adc_shift_for(-8, 7, 4)
    (6, 3, 0)
    """
    s = 0
    while (max_shift is None or s < max_shift) and not adc_fits(colmin, colmax, adc_bits, s):
        s += 1
    return s


def requant_shift_for(amax: int, input_bits: int, max_shift: int = MAX_REQUANT_SHIFT) -> int:
    """Return the smallest REQUANT shift with which a value of magnitude up to ``amax`` does not saturate the
    ``input_bits``-bit input range after rounding (:func:`round_shift`), at most ``max_shift``.

    >>> requant_shift_for(127, 8), requant_shift_for(128, 8), requant_shift_for(254, 8), requant_shift_for(255, 8)
    (0, 1, 1, 2)
    """
    hi = signed_range(input_bits)[1]
    s = 0
    while s < max_shift and round_shift(int(amax), s) > hi:
        s += 1
    return s
