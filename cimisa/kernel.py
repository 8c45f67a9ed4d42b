"""The batched MVM kernel: bit-serial MVMs of one window over a batch of input vectors, bit for bit.

:func:`mvm_acc` computes what :func:`cimisa.semantics.mvm` specifies (the ADC and shift-add rules of
:mod:`cimisa.rules`), for one input vector or a batch, fast: bit planes packed several to a float64 word go
through one exact BLAS product (exact below 2**53, float32 below 2**24, int64 beyond), and the ADC is applied to
the packed fields with masks, one clip and a field-summing multiplication (``packed codes``), or as the exact
product (above the last word's fields when it fits) minus the fields' low bits when no code can saturate
(``packed residues``); work arrays are reused per thread. Windows that do not pack go
plane by plane through :func:`cimisa.rules.convert_planes`. The packed forms run only where a cached check shows
that :func:`cimisa.rules.adc_code` is floor-then-clip, so a changed ADC rule still reaches every model.
The *int8 engine* (:mod:`cimisa.kernel_int8`) takes windows of weights within int8 instead, where it is expected
to be faster (:func:`_int8_cheaper`): all bit planes' exact column sums in one int8 product, then the floor, clip
and shift-add on the int32 sums (:func:`_int8_codes`; :func:`cimisa.rules.convert_planes` for another ADC rule).
:class:`Window` caches a window's bounds and float copies; :func:`mvm_path` names the path a window takes.
Number formats other than the default run through :mod:`cimisa.kernel_formats` (re-exported here:
:func:`mvm_acc_format`, :func:`format_sums`, :func:`format_codes`, :func:`format_path`).
Tests: ``tests/test_rules.py`` (every path against a rules-only reference), ``tests/test_golden_batch.py`` and
the kernel mutants of ``tests/test_mutants.py``.
"""

from __future__ import annotations

import functools
import math
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from cimisa import kernel_int8, rules
from cimisa.kernel_formats import _LIMITS, format_codes, format_path, format_sums, mvm_acc_format  # noqa: F401
from cimisa.rules import FLOAT_EXACT

_F32_EXACT = 1 << 24          # float32 holds every integer of magnitude below this exactly
_EXP52 = int(np.float64(1 << 52).view(np.int64))   # the bits of 2.0**52: 2**52 + n (0 <= n < 2**52) is _EXP52 + n

__all__ = ["Window", "mvm_acc", "mvm_acc_format", "format_sums", "format_codes", "format_path", "mvm_path"]


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

    @functools.cached_property
    def plans(self) -> dict:
        """The packing plans of this window so far, by input bits, ADC bits, step and whether codes fit."""
        return {}

    @functools.cached_property
    def aug(self) -> np.ndarray:
        """``[w.T | 1]`` in float64 (ncols, nrows + 1): the packed products add a constant row of the inputs."""
        a = np.ones((self.w.shape[1], self.w.shape[0] + 1))
        a[:, :-1] = self.w.T
        return a

    @functools.cached_property
    def w8(self):
        """``w.T`` as an int8 torch tensor for the int8 engine (:func:`cimisa.kernel_int8.weights`), or None."""
        return kernel_int8.weights(self.w)

    @functools.cached_property
    def fits_int8(self) -> bool:
        """Whether every weight lies in ``-128..127`` (the int8 engine can take the window)."""
        return kernel_int8.fits(self.w)

    @functools.cached_property
    def formats(self) -> dict:
        """The cells of this window by number format so far (:mod:`cimisa.kernel_formats`)."""
        return {}

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
    are looked up ``sigma`` bits apart, :func:`_group_tables`, and a constant input row adds ``off`` to every
    field and ``2**52``, so that the product's bits are the fields), and :func:`_packed_codes` converts all fields
    of all packed words at once with integer masks, a clip of the fields (only when codes can saturate) and one
    multiplication that adds the fields, weighted ``2**j``, into one bit window (:func:`_field_sum`). When the
    codes are too wide for that window but cannot saturate, the identity ``(S >> s) << s == S - (S mod 2**s)``
    is used instead: the exact product minus the shift-add of the fields' low ``s`` bits (:func:`_packed_residues`;
    the exact product rides above the last word's fields when it fits there, else it is one more product).
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
    timed = False
    if _wants_int8(win, path, plan, nb, u.shape[1]):
        if _int8_ready(win):
            return _int8_codes(win, u, nb, adc_bits, s).reshape((ncols,) + batch)
        timed = kernel_int8.mode() == "auto"                    # auto loads torch after a while of these
        t0 = time.perf_counter()
    if path in ("product", "packed residues"):
        rp, acc = _packed_residues(win, u, nb, s, plan) if s else (None, None)
        if acc is None:                                         # the exact product on its own
            xs = u - ((u >> (nb - 1)) << nb)                    # the signed values the bits stand for
            bound = (colmax - colmin) << (nb - 1)
            acc = _matmul(win.t(bound), xs, bound)
            if s:
                acc += _sign_fix(nb, s)
        if s:
            acc -= rp                                           # minus the residues: the floored codes
    elif path == "packed codes":
        acc = _packed_codes(win, u, nb, s, plan)
    else:
        planes = rules.bit_plane_table(nb)[u]                   # (nrows, B, nb): bit b of every input
        colsum = _matmul(win.t(colmax - colmin), planes.reshape(nrows, -1), colmax - colmin)  # analog sums
        acc = rules.convert_planes(colsum.reshape(ncols, -1, nb), nb, adc_bits, s)  # ADC, shift-add
    if timed:
        kernel_int8.note_numpy_time(time.perf_counter() - t0)
    return acc.reshape((ncols,) + batch)


def _wants_int8(win, path, plan, nb, b) -> bool:
    """Whether the int8 engine is the one to take this MVM (``b`` vectors), if it is there: never for the
    exact product or weights outside int8; always when set to ``"int8"``; under ``"auto"`` when
    :func:`_int8_cheaper`."""
    if path == "product" or not win.fits_int8:
        return False
    m = kernel_int8.mode()
    return m == "int8" or (m == "auto" and _int8_cheaper(win, plan, nb, b))


def _int8_ready(win) -> bool:
    """Whether the int8 engine can run on ``win`` now (torch loaded and checked, the weights as int8)."""
    return kernel_int8.active() is not None and win.w8 is not None


def _int8_cheaper(win, plan, nb, b) -> bool:
    """Whether the int8 engine is expected to be clearly faster than the numpy form ``plan`` (None: one product
    per bit plane) on ``b`` vectors. A cost model fitted on one 2-core x86 machine (``python bench/bench_golden.py``,
    its engine-choice table: windows of 16..256 rows, batches of 1..633): per call 23 (int8) or 28 (numpy) us,
    per output plane ``0.63 + 0.0061 * nrows`` ns (int8: every plane through the int32 conversion) or per packed
    word ``2.0 + 0.046 * nrows`` ns (numpy: float64 products; the float32 exact product of a residue form counts
    0.1 word). int8 is taken when expected 15 % faster: near-ties (32-row windows of MiniLM over 633 tokens,
    residue forms of 2 words) stay with numpy, which measured up to 10 % faster there inside a model run. int8
    wins elsewhere, up to 2.5x at 256 rows. Both engines give the same bits: a wrong guess only costs time."""
    if plan is None:
        return True
    nrows, ncols = win.w.shape
    exact = 0 if plan.codes or plan.top else 0.1 if (win.colmax - win.colmin) << (nb - 1) < _F32_EXACT else 1
    words = -(-nb // plan.g) + exact                            # the exact product of the residue form: float32?
    int8 = 23e3 + ncols * b * kernel_int8.planes_per_vector(nb) * (0.63 + 0.0061 * nrows)
    return 1.15 * int8 < 28e3 + ncols * b * words * (2.0 + 0.046 * nrows)


def _int8_codes(win, u, nb, adc_bits, s):
    """The MVM through the int8 engine: every plane's exact column sums (:func:`cimisa.kernel_int8.plane_sums`),
    then, when the ADC rule is floor-then-clip (:func:`_is_floor_clip`), the shift and clip in place and the
    shift-add as one exact float product with the plane weights; otherwise :func:`cimisa.rules.convert_planes`."""
    sums = kernel_int8.plane_sums(win.w8, u, nb)                # (ncols, B, P) int32, planes past nb all 0
    p = sums.shape[2]
    peak = max(-win.colmin, win.colmax)                         # every |sum| <= peak
    if not _is_floor_clip(rules.adc_code, adc_bits, s, peak.bit_length()):
        return rules.convert_planes(sums[..., :nb].astype(np.int64), nb, adc_bits, s)
    lo, hi = rules.signed_range(adc_bits)
    if s:
        np.right_shift(sums, s, out=sums)
    np.clip(sums, max(lo, -(1 << 31)), min(hi, (1 << 31) - 1), out=sums)   # int32 sums: the same clip
    weights = rules.plane_weights(nb, s) + (0,) * (p - nb)
    bound = min(1 << (adc_bits - 1), (peak >> s) + 1) << (nb + s)      # > |any shift-added sum|
    ft = np.int64 if bound >= FLOAT_EXACT else np.float32 if bound < _F32_EXACT else np.float64   # exact types
    return (sums.reshape(-1, p).astype(ft) @ _typed_weights(weights, ft)).astype(np.int64, copy=False)


@functools.lru_cache(maxsize=256)
def _typed_weights(weights: tuple, ft) -> np.ndarray:
    return np.array(weights, dtype=ft)


def mvm_path(w, input_bits, adc_bits, adc_shift, fmt=None, batch: int = 1) -> str:
    """Return the form in which :func:`mvm_acc` computes the window ``w`` (or its :class:`Window`):
    ``"product"``, ``"packed codes"``, ``"packed residues"`` or ``"bit planes"``; ``"formats"`` for a number
    format ``fmt`` (:class:`cimisa.formats.NumberFormat`) that is not the default (:func:`mvm_acc_format`; its
    form: :func:`format_path`).

    ``"int8 planes"`` when the int8 engine (:mod:`cimisa.kernel_int8`) takes the window now, on ``batch``
    vectors, instead of one of the last three (:func:`_wants_int8`).

    >>> w = np.array([[1, -2], [3, 4]])
    >>> with kernel_int8.use("numpy"):
    ...     mvm_path(w, 4, 8, 0), mvm_path(w, 4, 2, 0), mvm_path(w, 4, 3, 1)
    ('product', 'packed codes', 'bit planes')
    """
    if fmt is not None and not fmt.is_default:
        return "formats"
    win = w if isinstance(w, Window) else Window.of(w)
    path, plan = _choose(win, input_bits, adc_bits, adc_shift)
    if _wants_int8(win, path, plan, input_bits, batch) and _int8_ready(win):
        return "int8 planes"
    return path


def _choose(win, nb, adc_bits, s):
    """Return ``(path, packing plan or None)`` of :func:`mvm_path`."""
    fits = rules.adc_fits(win.colmin, win.colmax, adc_bits, s)   # no code can saturate
    if fits and not s:
        return "product", None
    key = (nb, adc_bits, s, fits)
    plan = win.plans[key] if key in win.plans else win.plans.setdefault(
        key, _pack_plan(nb, adc_bits, s, win.colmin, win.colmax, fits))
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
    else through the residues ``v mod 2**s`` (``cb = s``), the sign plane's field then holding ``soff - 1 - S``
    (``soff`` a multiple of ``2**s``: its residue is ``2**s - 1 - (S mod 2**s)``, so every field adds with weight
    ``+2**b``), and, when ``top``, the last word holding ``E + ce`` (``E`` the exact product) from bit ``top``."""

    sigma: int
    g: int
    off: int
    codes: bool
    clip: bool
    lf: int
    hf: int
    cb: int
    soff: int = -1
    top: int = 0
    ce: int = 0


def _pack_plan(nb, adc_bits, s, colmin, colmax, fits) -> _PackPlan | None:
    """Return the packing of the window's plane sums with the fewest products, or None when none beats one plane
    per product. Field sums in one window (:func:`_field_sum`) need ``cb + g + 1 <= sigma``; a clip works on
    byte-aligned fields (``sigma`` 8 or 16), viewed as unsigned integers."""
    off = -((colmin >> s) << s)                                 # v = S + off >= 0, off a multiple of 2**s
    sigma = max(1, (colmax + off).bit_length())
    lo, hi = rules.signed_range(adc_bits)
    res = _residue_plan(nb, s, colmin, colmax, off) if fits and s else None
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
    cost_codes = -(-nb // g_codes) if g_codes > 0 else nb + 1
    cost_res = nb + 2
    if res is not None:
        exact = 0 if res.top else 0.5 if (colmax - colmin) << (nb - 1) < _F32_EXACT else 1   # float32: faster
        cost_res = exact + -(-nb // res.g)
    if min(cost_codes, cost_res) >= nb:
        return None
    if cost_codes <= cost_res:
        return _PackPlan(sigma, g_codes, off, True, not fits, lf, hf, cb)
    return res


def _residue_plan(nb, s, colmin, colmax, off) -> _PackPlan | None:
    """Return the packed-residues plan (``soff``, and ``top`` when the exact product fits above the last word's
    fields, exactly in float64 with the ``2**52`` of :func:`_packed_words`), or None when no field sum fits."""
    soff = ((colmax + (1 << s)) >> s) << s                     # soff - 1 - S >= 0, soff a multiple of 2**s
    sigma = max(1, (colmax + off).bit_length(), (soff - 1 - colmin).bit_length())
    g = _fields_per_word(nb, sigma, s, 0)
    if g <= 0:
        return None
    plan = _PackPlan(sigma, g, off, False, False, 0, 0, s, soff)
    span, ce = colmax - colmin, (colmax - colmin) << (nb - 1)   # |E| <= ce
    top = sigma * (nb - (-(-nb // g) - 1) * g)                  # above the last word's fields
    with_top = _PackPlan(sigma, g, off, False, False, 0, 0, s, soff, top, ce)
    *_, const, tmax = _group_tables(nb, with_top)[-1]
    return with_top if span * tmax + const < 1 << 52 else plan


def _fields_per_word(nb, sigma, cb, shift) -> int:
    """Return the most fields of ``sigma`` bits one word holds (``<= 52`` bits: exact in float64) whose values
    ``< 2**cb`` (stored ``<< shift``) :func:`_field_sum` can add (0: none)."""
    g = min(nb, 52 // sigma, sigma - cb - 1)
    while g > 0 and (sigma - 1) * (g - 1) + shift + cb + g > 63:   # the sum's bit window inside the int64
        g -= 1
    return max(g, 0)


def _group_tables(nb, plan) -> tuple:
    """Return, per group of ``g`` planes, ``(t, t as float64, const, tmax = max |t|)``: a window's packed word is
    ``sum_r w[r] * t[u[r]] + const`` (``u``: the inputs' bit patterns). Field ``j`` of group ``k`` is plane ``k*g
    + j``: ``t`` holds its bit at bit ``sigma*j``, ``const`` its offset ``off`` (the sign plane of a residue plan:
    ``-bit``, ``soff - 1``); the last group's fields past plane ``nb-1`` hold ``off``, or, with ``plan.top``,
    ``t`` holds the signed input value and ``const`` ``ce`` from bit ``top`` instead."""
    tables = _tables(nb, plan.sigma, plan.g, plan.soff >= 0, plan.top)
    return tuple((t, tf, c, tmax) for (t, tf, tmax), c in zip(tables, _consts(nb, plan)))


def _fields(nb, g, top, first):
    """Return the planes ``first, first+1, ..`` of the fields of the group starting at plane ``first``."""
    return range(first, first + (nb - first if first + g >= nb and top else g))


@functools.lru_cache(maxsize=256)
def _tables(nb, sigma, g, neg_sign, top) -> tuple:
    """Return :func:`_group_tables`' ``(t, t as float64, tmax)`` per group (``neg_sign``: the sign plane's bit
    counts negative)."""
    u = np.arange(1 << nb, dtype=np.int64)
    bits = rules.bit_planes(u, nb)
    out = []
    for first in range(0, nb, g):
        t = np.zeros(1 << nb, dtype=np.int64)
        for b in _fields(nb, g, top, first):
            if b < nb:
                t += ((-1 if b == nb - 1 and neg_sign else 1) * bits[:, b]) << (sigma * (b - first))
        if first + g >= nb and top:
            t += (u - ((u >> (nb - 1)) << nb)) << top           # the signed values: E above the fields
        out.append((t, t.astype(np.float64), int(np.abs(t).max())))
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _consts(nb, plan) -> tuple:
    """Return :func:`_group_tables`' ``const`` per group."""
    out = []
    for first in range(0, nb, plan.g):
        const = sum((plan.soff - 1 if b == nb - 1 and plan.soff >= 0 else plan.off) << (plan.sigma * (b - first))
                    for b in _fields(nb, plan.g, plan.top, first))
        out.append(const + (plan.ce << plan.top if first + plan.g >= nb and plan.top else 0))
    return tuple(out)


def _packed_words(win, u, nb, plan):
    """Return ``(f, hi)``: group ``k``'s packed words (:func:`_group_tables`) plus ``hi`` as int64 ``f[k]`` (``f``
    ``(groups, ncols, B)``, a work array). ``hi`` is 2**52's float64 bits (float64 products, a constant input row
    adding 2**52 and the offsets: every partial sum in 2**52..2**53), or 0 (an int64 product)."""
    nrows, ncols = win.w.shape
    groups = _group_tables(nb, plan)
    ng, b = len(groups), u.shape[1]
    consts = np.array([c for _, _, c, _ in groups])[:, None, None]
    bound = (win.colmax - win.colmin) * max(tm for *_, tm in groups)   # >= |every partial sum of the product|
    fused = bound + int(consts.max()) + (1 << 52) < FLOAT_EXACT    # the constant row in the product, or added
    if not fused and bound >= FLOAT_EXACT:
        return win.w.T @ np.stack([t[u] for t, *_ in groups]) + consts, 0
    cols = _scratch("cols", (ng, nrows + fused, b))
    for k, (_, tf, _, _) in enumerate(groups):
        np.take(tf, u, out=cols[k, :nrows], mode="clip")
    if fused:
        cols[:, nrows] = consts[:, 0] + 2.0 ** 52              # times the window's column of ones
    p = np.matmul(win.aug if fused else win._t64, cols, out=_scratch("words", (ng, ncols, b)))
    if not fused:
        np.add(p, consts + 2.0 ** 52, out=p)                   # every word is below 2**52: exact
    return p.view(np.int64), _EXP52


_LOCAL = threading.local()


def _scratch(name, shape) -> np.ndarray:
    """Return a float64 work array of ``shape`` kept (per thread) for reuse under ``name`` (fresh large arrays
    cost page faults on every call); it never leaves the kernel."""
    pool = _LOCAL.__dict__.setdefault("pool", {})
    n = math.prod(shape)
    a = pool.get(name)
    if a is None or a.size < n:
        a = pool[name] = np.empty(n)
    return a[:n].reshape(shape)


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
    """Return ``(sum_b 2**b * c_b, c_{nb-1})`` over all groups (a work array): ``convert(f)`` turns the words into
    fields ``c_b << shift`` in place (:func:`_field_sum`)."""
    f, _ = _packed_words(win, u, nb, plan)
    convert(f)
    sign = (f[-1] >> (plan.sigma * ((nb - 1) % plan.g) + shift)) & ((1 << plan.cb) - 1)   # the sign plane
    v = _field_sum(f, plan, shift)
    return _add_groups(v, plan.g), sign


def _add_groups(v, g):
    """Return ``sum_k v[k] << (k*g)`` (in ``v``'s first group; ``v`` is overwritten)."""
    total = v[0]
    for k in range(1, len(v)):
        total += np.left_shift(v[k], k * g, out=v[k])
    return total


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
        if plan.lf:
            np.subtract(f, low, out=f)                         # fields c << s: code = c + (lf - off) >> s

    acc, sign = _packed_sum(win, u, nb, plan, convert, s)
    pad = (min(max(plan.off, plan.lf), plan.hf) - plan.lf) >> s   # c of the padding fields past plane nb-1
    acc -= (sign << nb) + ((plan.lf - plan.off) >> s) + pad * ((1 << (-(-nb // g) * g)) - (1 << nb))
    return np.left_shift(acc, s)                               # the sign plane weighs -2**(nb-1); all: -1


def _sign_fix(nb, s) -> int:
    """What the complemented sign field adds to the residue sum: ``2**(nb-1) * (2**s - 1)``."""
    return ((1 << s) - 1) << (nb - 1)


def _packed_residues(win, u, nb, s, plan):
    """Return ``(R', E')``: ``R' = sum_b 2**b * r_b`` over the fields' low ``s`` bits (``r_b = S_b mod 2**s``;
    the sign plane's field holds ``2**s - 1 - r``, so ``R' = sum_b +-2**b * (S_b mod 2**s) + _sign_fix``; a work
    array), and, when the plan has ``top``, ``E' = E + _sign_fix`` (``E`` the exact product, a new array), else
    None. The MVM is then ``E' - R'``."""
    mask = np.full(-(-nb // plan.g), _word(plan.sigma, plan.g, (1 << s) - 1))
    f, hi = _packed_words(win, u, nb, plan)
    e = None
    if plan.top:                                                # the last word: E + ce above its fields
        e = np.right_shift(f[-1], plan.top)
        e -= (hi >> plan.top) + plan.ce - _sign_fix(nb, s)
        mask[-1] = _word(plan.sigma, nb - (len(mask) - 1) * plan.g, (1 << s) - 1)   # its fields only
    np.bitwise_and(f, mask[:, None, None], out=f)
    return _add_groups(_field_sum(f, plan, 0), plan.g), e
