"""The batched MVM kernel: bit-serial MVMs of one window over a batch of input vectors, bit for bit.

:func:`mvm_acc` computes what :func:`cimisa.semantics.mvm` specifies (the ADC and shift-add rules of
:mod:`cimisa.rules`), for one input vector or a batch, fast: bit planes packed several to a float64 word go
through one exact BLAS product (exact below 2**53, float32 below 2**24, int64 beyond), and the ADC is applied to
the packed fields with masks, one clip and a field-summing multiplication (``packed codes``), or as the exact
product minus the fields' low bits when no code can saturate (``packed residues``). Windows that do not pack go
plane by plane through :func:`cimisa.rules.convert_planes`. The packed forms run only where a cached check shows
that :func:`cimisa.rules.adc_code` is floor-then-clip, so a changed ADC rule still reaches every model.
:class:`Window` caches a window's bounds and float copies; :func:`mvm_path` names the path a window takes.
Tests: ``tests/test_rules.py`` (every path against a rules-only reference), ``tests/test_golden_batch.py`` and
the kernel mutants of ``tests/test_mutants.py``.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import numpy as np

from cimisa import rules
from cimisa.rules import FLOAT_EXACT

_F32_EXACT = 1 << 24          # float32 holds every integer of magnitude below this exactly

__all__ = ["Window", "mvm_acc", "mvm_path"]


@functools.lru_cache(maxsize=64)
def _bits_table(input_bits: int, spacing: int, first: int, count: int) -> np.ndarray:
    """Return ``t[u] = sum_j bit(u, first+j) * 2**(spacing*j)`` (float64) for every ``input_bits``-bit ``u``.

    ``count=1`` gives bit plane ``first``; ``spacing > 0`` packs ``count`` planes into one number.
    """
    planes = rules.bit_planes(np.arange(1 << input_bits, dtype=np.int64), input_bits)[:, first:first + count]
    return (planes << (spacing * np.arange(count))).sum(axis=1).astype(np.float64)


@dataclass(frozen=True)
class Window:
    """The weights of one MVM window ``w`` (nrows, ncols, int64) with what the kernel derives from them: the
    column-sum bounds (:func:`cimisa.rules.colsum_bounds`) and the transpose in float64 and float32 (exact
    copies, made on first use). :meth:`MachineState.window` keeps them while the weights stay."""

    w: np.ndarray
    colmin: int
    colmax: int

    @classmethod
    def of(cls, w) -> Window:
        """Return the window of the weights ``w``."""
        w = np.asarray(w, dtype=np.int64)
        return cls(w, *rules.colsum_bounds(w))

    @functools.cached_property
    def _t64(self) -> np.ndarray:
        return np.ascontiguousarray(self.w.T, dtype=np.float64)

    @functools.cached_property
    def _t32(self) -> np.ndarray:
        return self._t64.astype(np.float32)

    def t(self, bound: int) -> np.ndarray:
        """Return ``w.T`` in the type :func:`_matmul` computes with for ``bound``."""
        if bound >= FLOAT_EXACT or self.colmax - self.colmin >= FLOAT_EXACT:
            return self.w.T
        return self._t32 if bound < _F32_EXACT else self._t64


def _matmul(wt: np.ndarray, x: np.ndarray, bound: int) -> np.ndarray:
    """Return the exact int64 product ``wt @ x``, given ``bound >= sum_k |wt[i, k] * x[k, j]|`` for all i, j:
    float32 BLAS when ``bound < 2**24``, float64 when ``bound < FLOAT_EXACT`` (each holds every such integer
    exactly, whatever the summation order), int64 numpy otherwise."""
    if bound < FLOAT_EXACT:
        ft = np.float32 if bound < _F32_EXACT else np.float64
        return (wt.astype(ft, copy=False) @ x.astype(ft, copy=False)).astype(np.int64)
    return wt.astype(np.int64) @ x.astype(np.int64)


def mvm_acc(w, x, input_bits, adc_bits, adc_shift, window: Window | None = None):
    """Return the shift-added ADC codes of one MVM: window ``w`` (nrows, ncols), inputs ``x`` (nrows[, B]).

    The ADC / shift-add rule of the module docstring (:func:`cimisa.rules.convert_planes`), for one input vector
    or a batch of them on a trailing axis of ``x`` (the result is ``(ncols,) + x.shape[1:]``, int64, before the
    accumulator wrap; ``window``: ``w``'s :class:`Window`, if known). Bit ``b`` of each input drives its rows;
    each column's sum of bit plane ``b`` is converted and weighted:

    >>> w = np.array([[1, -2], [3, 4]]); x = np.array([5, -6])
    >>> mvm_acc(w, x, input_bits=4, adc_bits=8, adc_shift=0).tolist()   # lossless: the exact product
    [-13, -34]
    >>> mvm_acc(w, x, input_bits=4, adc_bits=2, adc_shift=0).tolist()   # each plane's code saturates to -2..1
    [-1, -16]
    >>> mvm_acc(w, np.stack([x, -x, 0 * x], axis=1), 4, 3, 1).tolist()  # a batch of 3 vectors, step 2
    [[-12, 16, 0], [-34, 34, 0]]

    How: every column sum ``S`` of a bit plane lies in the window's :func:`cimisa.rules.colsum_bounds`
    ``colmin..colmax``. When no code can saturate (:func:`cimisa.rules.adc_fits`) and ``adc_shift = 0``, every
    code equals its sum and the result is the exact product ``w.T @ x`` (one BLAS product). Otherwise the plane
    sums are *packed*: ``v = S + off >= 0`` (``off`` a multiple of ``2**adc_shift``) has at most ``sigma`` bits,
    so ``g`` planes ``sigma`` bits apart make one exact float64 product (``g * sigma <= 52``; the planes' 0/1 bits
    are looked up ``sigma`` bits apart, :func:`_bits_table`), and :func:`_packed_codes` converts all fields of
    all packed words at once with integer masks, a clip of the fields (only when codes can saturate) and one
    multiplication that adds the fields, weighted ``2**j``, into one bit window (:func:`_field_sum`). When the
    codes are too wide for that window but cannot saturate, the identity ``(S >> s) << s == S - (S mod 2**s)``
    is used instead: the exact product minus the shift-add of the fields' low ``s`` bits (:func:`_packed_residues`).
    Windows that pack no better than one plane per product (sums near 2**52) take every plane through BLAS and
    :func:`cimisa.rules.convert_planes`.
    """
    nb, s = input_bits, adc_shift
    win = Window.of(w) if window is None else window
    x = np.asarray(x, dtype=np.int64)
    nrows, ncols = win.w.shape
    batch = x.shape[1:]
    u = x.reshape(nrows, -1) & ((1 << nb) - 1)                 # the nb-bit two's complement patterns, 0..2**nb-1
    colmin, colmax = win.colmin, win.colmax
    path, plan = _choose(win, nb, adc_bits, s)
    if path in ("product", "packed residues"):
        xs = u - ((u >> (nb - 1)) << nb)                        # the signed values the bits stand for
        bound = (colmax - colmin) << (nb - 1)
        acc = _matmul(win.t(bound), xs, bound)
        if s:
            acc -= _packed_residues(win, u, nb, s, plan)
    elif path == "packed codes":
        acc = _packed_codes(win, u, nb, s, plan)
    else:
        planes = rules.bit_plane_table(nb)[u]                   # (nrows, B, nb): bit b of every input
        colsum = _matmul(win.t(colmax - colmin), planes.reshape(nrows, -1), colmax - colmin)  # analog sums
        acc = rules.convert_planes(colsum.reshape(ncols, -1, nb), nb, adc_bits, s)  # ADC, shift-add
    return acc.reshape((ncols,) + batch)


def mvm_path(w, input_bits, adc_bits, adc_shift) -> str:
    """Return the form in which :func:`mvm_acc` computes the window ``w`` (or its :class:`Window`):
    ``"product"``, ``"packed codes"``, ``"packed residues"`` or ``"bit planes"``.

    >>> w = np.array([[1, -2], [3, 4]])
    >>> mvm_path(w, 4, 8, 0), mvm_path(w, 4, 2, 0), mvm_path(w, 4, 3, 1)
    ('product', 'packed codes', 'bit planes')
    """
    return _choose(w if isinstance(w, Window) else Window.of(w), input_bits, adc_bits, adc_shift)[0]


def _choose(win, nb, adc_bits, s):
    """Return ``(path, packing plan or None)`` of :func:`mvm_path`."""
    fits = rules.adc_fits(win.colmin, win.colmax, adc_bits, s)   # no code can saturate
    if fits and not s:
        return "product", None
    plan = _pack_plan(nb, adc_bits, s, win.colmin, win.colmax, fits)
    if plan is None or not _is_floor_clip(rules.adc_code, adc_bits, s, plan.sigma):
        return "bit planes", None                               # the packed forms restate this ADC rule only
    return ("packed codes" if plan.codes else "packed residues"), plan


@functools.lru_cache(maxsize=256)
def _is_floor_clip(adc_code, adc_bits: int, s: int, sigma: int) -> bool:
    """Whether the ADC rule ``adc_code`` is ``clip(S >> s, signed_range(adc_bits))`` on every column sum
    ``|S| <= 2**sigma``: what the packed forms compute (checked once per rule, width, step and field width)."""
    sums = np.arange(-(1 << sigma), (1 << sigma) + 1, dtype=np.int64)
    return np.array_equal(adc_code(sums, adc_bits, s), np.clip(sums >> s, *rules.signed_range(adc_bits)))


@dataclass(frozen=True)
class _PackPlan:
    """How the plane sums of one window are packed: fields ``sigma`` bits apart, ``g`` planes per word, each field
    ``v = S + off``; ``codes``: convert through clipped codes ``(v >> s) - (lf >> s)`` in ``0 .. 2**cb - 1``
    (``lf``..``hf``: the smallest and largest ``v`` with its low ``s`` bits cleared, after the clip when ``clip``),
    else through the residues ``v mod 2**s`` (``cb = s``)."""

    sigma: int
    g: int
    off: int
    codes: bool
    clip: bool
    lf: int
    hf: int
    cb: int


def _pack_plan(nb, adc_bits, s, colmin, colmax, fits) -> _PackPlan | None:
    """Return the packing of the window's plane sums with the fewest products, or None when none beats one plane
    per product. Field sums in one window (:func:`_field_sum`) need ``cb + g + 1 <= sigma``; a clip works on
    byte-aligned fields (``sigma`` 8 or 16), viewed as unsigned integers."""
    off = -((colmin >> s) << s)                                 # v = S + off >= 0, off a multiple of 2**s
    sigma = max(1, (colmax + off).bit_length())
    lo, hi = rules.signed_range(adc_bits)
    if fits:
        lf, hf = ((colmin + off) >> s) << s, ((colmax + off) >> s) << s
    elif sys.byteorder != "little":                             # the clip views a word's fields as uint8/uint16
        return None
    else:
        sigma = 8 if sigma <= 8 else 16 if sigma <= 16 else 0
        lf = max((lo << s) + off, 0)
        hf = min((hi << s) + off, (((1 << sigma) - 1) >> s) << s)
        if not sigma or lf > hf:
            return None
    cb = max(1, ((hf - lf) >> s).bit_length())
    g_codes = _fields_per_word(nb, sigma, cb, s)
    g_res = _fields_per_word(nb, sigma, s, 0) if fits and s else 0
    cost_codes = -(-nb // g_codes) if g_codes > 0 else nb + 1
    exact = 0.5 if (colmax - colmin) << (nb - 1) < _F32_EXACT else 1     # the exact product: float32 is faster
    cost_res = exact + -(-nb // g_res) if g_res > 0 else nb + 2
    if min(cost_codes, cost_res) >= nb:
        return None
    if cost_codes <= cost_res:
        return _PackPlan(sigma, g_codes, off, True, not fits, lf, hf, cb)
    return _PackPlan(sigma, g_res, off, False, False, 0, 0, s)


def _fields_per_word(nb, sigma, cb, shift) -> int:
    """Return the most fields of ``sigma`` bits one word holds (``<= 52`` bits: exact in float64) whose values
    ``< 2**cb`` (stored ``<< shift``) :func:`_field_sum` can add (0: none)."""
    g = min(nb, 52 // sigma, sigma - cb - 1)
    while g > 0 and (sigma - 1) * (g - 1) + shift + cb + g > 63:   # the sum's bit window inside the int64
        g -= 1
    return max(g, 0)


def _packed_words(win, u, nb, plan):
    """Yield, per group ``k`` of ``g`` planes (``k*g .. k*g+g-1``), the int64 words ``(ncols, B)`` holding the
    fields ``v = S + off`` of those planes, field ``j`` at bit ``sigma*j``; the last group's fields past plane
    ``nb-1`` hold ``off`` (a plane whose sums are 0); bits from ``sigma*g`` up are not fields."""
    sig, g = plan.sigma, plan.g
    bound = _word(sig, g, 1 << sig)                            # > sum |w| * max(table), as sum |w| < 2**sigma
    const = _word(sig, g, plan.off)
    for first in range(0, nb, g):
        cols = np.take(_bits_table(nb, sig, first, min(g, nb - first)), u, out=_scratch("cols", u.shape),
                       mode="wrap")
        if bound < FLOAT_EXACT:
            p = np.matmul(win.t(bound), cols, out=_scratch(first, (win.w.shape[1], u.shape[1])))
            yield np.add(p, float(const + (1 << 52)), out=p).view(np.int64)   # the mantissa: exact fields
        else:
            yield win.w.T @ cols.astype(np.int64) + const


_SCRATCH: dict = {}


def _scratch(name, shape) -> np.ndarray:
    """Return a float64 work array of ``shape`` kept for reuse under ``name`` (fresh large arrays cost page
    faults on every call); it never leaves the kernel."""
    a = _SCRATCH.get(name)
    if a is None or a.shape != shape:
        a = _SCRATCH[name] = np.empty(shape)
    return a


def _word(sigma, g, field):
    """Return the word holding ``field`` in each of its ``g`` fields ``sigma`` bits apart."""
    return sum(field << (sigma * j) for j in range(g))


def _field_sum(f, plan, shift):
    """Return ``sum_j 2**j * c_j`` for the words ``f`` (overwritten) whose field ``j`` holds ``c_j << shift``,
    ``0 <= c_j < 2**plan.cb``, and nothing else.

    One multiplication: with ``K = sum_j 2**(T - (sigma-1)*j - shift)`` and ``T = 64 - cb - g``, field ``j``
    times term ``j`` lands at bit ``T + j``; terms ``i < j`` land at ``T + sigma >= 64`` or above (gone mod
    2**64), terms ``i > j`` add up to less than ``2**T`` because ``cb + g + 1 <= sigma``: the top ``cb + g``
    bits hold the sum exactly.
    """
    g, sig = plan.g, plan.sigma
    t = 64 - plan.cb - g
    fu = f.view(np.uint64)
    np.multiply(fu, sum(1 << (t - (sig - 1) * j - shift) for j in range(g)), out=fu)
    return np.right_shift(fu, t, out=fu).view(np.int64)


def _packed_sum(win, u, nb, plan, convert, shift):
    """Return ``(sum_b 2**b * c_b, c_{nb-1})`` over all groups: ``convert(f)`` turns the words of a group into
    fields ``c_b << shift`` in place (:func:`_field_sum`)."""
    total = sign = None
    jl = (nb - 1) % plan.g
    for k, f in enumerate(_packed_words(win, u, nb, plan)):
        convert(f)
        if (k + 1) * plan.g >= nb:                             # the last group: the sign plane's field
            sign = (f >> (plan.sigma * jl + shift)) & ((1 << plan.cb) - 1)
        v = _field_sum(f, plan, shift)
        if total is None:
            total = v.copy()
        else:
            total += np.left_shift(v, k * plan.g, out=v)
    return total, sign


def _packed_codes(win, u, nb, s, plan):
    """The MVM through packed plane sums and clipped codes: ``code_b = (f_b - off) >> s`` with ``f_b`` the field
    ``v_b`` with its low ``s`` bits cleared, clipped to ``lf..hf`` (exactly ``clip(S_b >> s, lo, hi)``)."""
    sig, g = plan.sigma, plan.g
    floor, low = _word(sig, g, ((1 << sig) - 1) >> s << s), _word(sig, g, plan.lf)

    def convert(f):
        np.bitwise_and(f, floor, out=f)
        if plan.clip:                                          # saturation, on the fields as unsigned integers
            v = f.view(np.uint8 if sig == 8 else np.uint16)
            np.clip(v, plan.lf, plan.hf, out=v)
            np.bitwise_and(f, floor, out=f)                    # clear what the clip raised outside the fields
        np.subtract(f, low, out=f)                             # fields c << s: code = c + (lf - off) >> s

    acc, sign = _packed_sum(win, u, nb, plan, convert, s)
    pad = (min(max(plan.off, plan.lf), plan.hf) - plan.lf) >> s   # c of the padding fields past plane nb-1
    acc -= (sign << nb) + ((plan.lf - plan.off) >> s) + pad * ((1 << (-(-nb // g) * g)) - (1 << nb))
    return np.left_shift(acc, s, out=acc)                      # the sign plane weighs -2**(nb-1); all: -1


def _packed_residues(win, u, nb, s, plan):
    """Return ``sum_b +-2**b * (S_b mod 2**s)`` (minus for the sign plane) from packed plane sums (``off`` is a
    multiple of ``2**s``, so each field's low ``s`` bits are ``S_b mod 2**s``; 0 in the padding fields)."""
    mask = _word(plan.sigma, plan.g, (1 << s) - 1)
    acc, sign = _packed_sum(win, u, nb, plan, lambda f: np.bitwise_and(f, mask, out=f), 0)
    acc -= sign << nb
    return acc
