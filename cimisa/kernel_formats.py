"""The batched MVM kernel in any number format (:mod:`cimisa.formats`): cells, drive cycles, ADCs, shift-adds.

:func:`mvm_acc_format` computes what :meth:`cimisa.formats.NumberFormat.mvm_column` specifies, for every logical
column of a window and every input vector of a batch at once, bit for bit, in one of these forms
(:func:`format_path` names it; ``packed`` is ``cycles`` with several cycles per float32 word, :func:`format_sums`):

``product``
  no code can saturate and the step is 1 (``fmt.fits(window bounds, adc_bits, 0)``): every code equals its sum,
  and by linearity the MVM is the exact product of the *logical* weights and inputs the cells and drives stand
  for (``sum_p slice_weight_p * cell_p + bias_weight * bias_cell``, ``sum_d digit_weight_d * drive_d``: computed
  from the format's own cells and drives, so a wrong cell or weight still shows): one small BLAS product;
``int8 cycles``
  ``cycles`` with the column sums from the int8 engine (:mod:`cimisa.kernel_int8`: one exact int8 product of the
  cells and every cycle's drives, int32 sums) when every cell and drive lies in ``-128..127``;
``cycles``
  every drive cycle's physical column sums in one product (drives looked up in a per-format table indexed by the
  inputs' two's complement patterns; float32 when every sum is below 2**24, float64 below 2**53, int64 beyond),
  the ADC as one rounding and one clip against per-(slice, cycle) ranges (:func:`format_codes`), the shift-add a
  product with the digit weights, the slices a product with the slice weights, plus the bias column's value
  (one scalar clip when every column and cycle has the same code range).

The default format is :func:`cimisa.kernel.mvm_acc`'s (its own two engines); :mod:`cimisa.kernel`
re-exports these names. Tests: ``tests/test_golden_batch.py`` (every path against ``mvm_column`` and the naive
model, every encoding, cell and DAC width, rounding), ``tests/test_formats.py``, the format-kernel mutants of
``tests/test_mutants.py``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from cimisa import kernel_int8, rules
from cimisa.rules import FLOAT_EXACT

_F32_EXACT = 1 << 24          # float32 holds every integer of magnitude below this exactly

__all__ = ["mvm_acc_format", "format_sums", "format_codes", "format_path", "FORMAT_PATHS", "INT8_FORMAT_PATHS"]

#: The forms of :func:`mvm_acc_format` (module docstring): with the numpy engine, and with the int8 engine.
FORMAT_PATHS = ("product", "packed", "cycles")
INT8_FORMAT_PATHS = ("product", "int8 cycles")

_LIMITS: dict = {}     # what is derived from a format alone (code limits, drive tables), by key; tests clear it


def _exact_type(bound: int):
    """The type whose products and sums are exact for integers up to ``bound``: float32, float64 or int64."""
    return np.float32 if bound < _F32_EXACT else np.float64 if bound < FLOAT_EXACT else np.int64


@dataclass(frozen=True)
class _Weights:
    """Weights given as an array (not a :class:`cimisa.kernel.Window`): the same ``w`` and ``formats`` cache."""

    w: np.ndarray

    @functools.cached_property
    def formats(self) -> dict:
        return {}


def _window(win):
    """Return ``win`` if it caches formats (a :class:`cimisa.kernel.Window`), else its weights wrapped to."""
    return win if hasattr(win, "formats") else _Weights(np.asarray(win, dtype=np.int64))


@dataclass(frozen=True)
class _FormatCells:
    """A window's weights in one number format (cached on the window, per format).

    ``t``: the ``(ncols*P [+1 bias], nrows)`` cells (logical column ``c`` in rows ``c*P .. c*P+P-1``, the bias
    column last) in the type exact for ``bound >= max_q sum_r |t[q, r] * drive|`` with one bit of headroom (sums
    over ``2**s`` plus one half stay exact for ``nearest``)."""

    fmt: object
    w: np.ndarray
    t: np.ndarray
    bound: int

    @functools.cached_property
    def bounds(self) -> dict:
        """The window's sum bounds (:meth:`~cimisa.formats.NumberFormat.window_bounds`)."""
        return self.fmt.window_bounds(self.w)

    @functools.cached_property
    def logical(self) -> tuple[np.ndarray, int]:
        """``(wl.T, colmax)``: the logical weights the cells stand for, ``(ncols, nrows)`` int64 (``wl[r, c] =
        sum_p slice_weight_p * cell_p + bias_weight * bias_cell``), and the largest ``sum_r |wl[r, c]|``."""
        fmt, (nrows, ncols) = self.fmt, self.w.shape
        p = fmt.cols_per_weight
        cells = self.t[:ncols * p].astype(np.int64).reshape(ncols, p, nrows)
        wl = np.einsum("cpr,p->cr", cells, np.array(fmt.slice_weights, dtype=np.int64))
        if fmt.bias_cols:
            wl += fmt.bias_weight * self.t[-1].astype(np.int64)
        return wl, int(np.abs(wl).sum(axis=1).max(initial=0))

    @functools.cached_property
    def pack(self) -> tuple[int, int]:
        """``(sigma, g)``: when every sum is unsigned (no term negative: every partial sum of a product lies
        between 0 and its sum) and ``g >= 2`` fields of ``sigma`` bits (every sum below ``2**sigma``) fit in a
        float32 word (``g * sigma <= 24``), ``g`` cycles' drives ``sigma`` bits apart share one column of the
        product; else ``(0, 1)``."""
        if set(self.bounds) != {True} or self.t.dtype != np.float32:
            return 0, 1
        sigma = max(1, int(self.bounds[True][1]).bit_length())
        g = min(24 // sigma, self.fmt.digits)
        return (sigma, g) if g >= 2 else (0, 1)

    @functools.cached_property
    def fits_int8(self) -> bool:
        """Whether the int8 engine can take the window: every cell in ``-128..127``, every sum within int32."""
        return self.bound < 1 << 31 and kernel_int8.fits(self.t)

    @functools.cached_property
    def t8(self):
        """``t`` as an int8 torch tensor (:func:`cimisa.kernel_int8.as_int8`; torch must be loaded)."""
        return kernel_int8.as_int8(self.t)

    @functools.cached_property
    def typed(self) -> dict:
        """:attr:`logical`'s weights by type, made on first use."""
        return {}


def _format_cells(win, fmt) -> _FormatCells:
    """Return (cached on ``win``) the cells of ``win``'s weights in the format ``fmt``."""
    hit = win.formats.get(fmt)
    if hit is None:
        nrows, ncols = win.w.shape
        cells = fmt.cells(win.w)                                  # (nrows, ncols, P)
        t = np.empty((ncols * fmt.cols_per_weight + fmt.bias_cols, nrows), dtype=np.int64)
        t[:ncols * fmt.cols_per_weight] = cells.reshape(nrows, -1).T
        t[ncols * fmt.cols_per_weight:] = fmt.bias_cell
        dmax = max(max(-lo, hi) for lo, hi in fmt.drive_ranges)
        bound = int(np.abs(t).sum(axis=1).max(initial=0)) * dmax
        ft = _exact_type(2 * bound)
        hit = win.formats[fmt] = _FormatCells(fmt, win.w, np.ascontiguousarray(t, dtype=ft), bound)
    return hit


def _cached(key, make):
    """Return ``_LIMITS[key]``, made by ``make()`` on first use."""
    hit = _LIMITS.get(key)
    if hit is None:
        hit = _LIMITS[key] = make()
    return hit


def _drive_table(fmt) -> np.ndarray:
    """Return ``fmt.drive`` of every ``input_bits``-bit two's complement pattern ``u`` (the input it stands for),
    ``(2**input_bits, digits)`` int64, row ``u``: the drives of an input are ``table[x & (2**input_bits - 1)]``."""
    def make():
        n = fmt.input_bits
        u = np.arange(1 << n, dtype=np.int64)
        return np.ascontiguousarray(fmt.drive(u - ((u >> (n - 1)) << n)), dtype=np.int64)
    return _cached(("drive", fmt), make)


def _typed(table: np.ndarray, dtype) -> np.ndarray:
    """``table`` in ``dtype`` (cached with it)."""
    return _cached(("typed", id(table), np.dtype(dtype).str), lambda: table.astype(dtype))


def _held(fmt) -> np.ndarray:
    """The input each two's complement pattern drives as (``sum_d digit_weight_d * drive_d``), int64."""
    return _cached(("held", fmt), lambda: _drive_table(fmt) @ np.array(fmt.digit_weights, dtype=np.int64))


def _patterns(fmt, x) -> np.ndarray:
    """The ``input_bits``-bit two's complement patterns of the inputs ``x`` (nrows, B)."""
    return np.bitwise_and(x, (1 << fmt.input_bits) - 1)


def _code_limits(fmt, adc_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(lo, hi)`` code limits per ``(p, d)`` (shape ``(P, 1, D)``) and of the bias column (``(1, D)``):
    :func:`cimisa.rules.code_range` with :meth:`~cimisa.formats.NumberFormat.unsigned_sum`'s flag."""
    def limits(p):
        return np.array([rules.code_range(adc_bits, fmt.unsigned_sum(p, d)) for d in range(fmt.digits)]).T

    lo, hi = np.stack([limits(p) for p in range(fmt.cols_per_weight)], axis=1)[:, :, None, :]
    blo, bhi = limits(-1)[:, None, :]
    return lo, hi, blo, bhi


def format_path(win, fmt, adc_bits: int, adc_shift: int, batch: int = 1) -> str:
    """Return the form (:data:`FORMAT_PATHS`, :data:`INT8_FORMAT_PATHS`) in which :func:`mvm_acc_format` computes
    the window ``win`` (a :class:`cimisa.kernel.Window` or weights) in the format ``fmt`` on ``batch`` vectors.

    >>> from cimisa.formats import NumberFormat
    >>> f = NumberFormat(4, 4, 1, "differential"); w = np.array([[3, 7], [5, 4]])
    >>> format_path(w, f, 2, 0), format_path(w, f, 1, 0), format_path(w, f, 2, 1)   # sums 0..2: 1 bit saturates
    ('product', 'packed', 'packed')
    >>> format_path(w, NumberFormat(4, 4, 1, "twos"), 1, 0)           # a signed top slice: sums of both signs
    'cycles'

    """
    fc = _format_cells(_window(win), fmt)
    if not adc_shift and fmt.fits(fc.bounds, adc_bits, 0, fmt.adc_rounding):
        return "product"
    if _wants_int8(fc, batch) and kernel_int8.active() is not None:
        return "int8 cycles"
    return "packed" if fc.pack[1] > 1 else "cycles"


def format_sums(win, x, fmt) -> np.ndarray:
    """Return every drive cycle's physical column sums of one MVM in the format ``fmt``: ``(ncols*P [+1], B, D)``
    (exact integers, float32/float64/int64), logical column ``c`` in rows ``c*P ..``, the bias column last;
    ``x`` (nrows, B) the inputs. One product for all cycles and vectors, the drives looked up by pattern; when
    the window packs (:attr:`_FormatCells.pack`), ``g`` cycles per column of the product, their sums then read
    back from the float32 words by exact scalings and floors."""
    win = _window(win)
    fc = _format_cells(win, fmt)
    nrows = win.w.shape[0]
    u = _patterns(fmt, np.asarray(x, dtype=np.int64).reshape(nrows, -1))
    if _wants_int8(fc, u.shape[1]) and kernel_int8.active() is not None:
        s = kernel_int8.product(fc.t8, np.take(_drive_int8(fmt), u, axis=0).reshape(nrows, -1))   # int32, exact
        return s.astype(fc.t.dtype, copy=False).reshape(s.shape[0], u.shape[1], fmt.digits)
    sigma, g = fc.pack
    if g == 1:
        drive = np.take(_typed(_drive_table(fmt), fc.t.dtype), u, axis=0)   # (nrows, B, D)
        s = fc.t @ drive.reshape(nrows, -1)
        return s.reshape(s.shape[0], u.shape[1], fmt.digits)
    words = np.take(_packed_table(fmt, sigma, g), u, axis=0)              # (nrows, B, groups)
    p = fc.t @ words.reshape(nrows, -1)
    out = np.empty(p.shape + (g,), dtype=np.float32)
    for j in range(g - 1, 0, -1):                                          # field j: the word's bits sigma*j..
        top = np.floor(np.multiply(p, np.float32(2.0 ** (-sigma * j)), out=out[..., j]), out=out[..., j])
        p -= top * np.float32(2.0 ** (sigma * j))
    out[..., 0] = p
    return out.reshape(p.shape[0], u.shape[1], -1)[:, :, :fmt.digits]


def _wants_int8(fc, b: int) -> bool:
    """Whether the int8 engine (:mod:`cimisa.kernel_int8`) is to compute the sums of the cells ``fc`` for ``b``
    input vectors, if it is there: the cells, drives and sums fit, and the setting is ``"int8"``, or ``"auto"`` where it
    is expected to be faster: over the float32 words of the packed form, or on ``nrows * b >= 4096`` (the numpy
    form's small float32 product wins below: measured 0.7-0.9x on 16-64-row windows of one vector and 16-row
    windows of 64 vectors, 1.0-3.1x from 64 rows and 64 vectors up; bench/bench_golden.py's format table)."""
    m = kernel_int8.mode()
    if m == "numpy" or not fc.fits_int8 or _drive_int8(fc.fmt) is None:
        return False
    return m == "int8" or fc.pack[1] > 1 or fc.w.shape[0] * b >= 4096


def _drive_int8(fmt):
    """The drive table (:func:`_drive_table`) in int8, or None when a drive lies outside ``-128..127``."""
    def make():
        t = _drive_table(fmt)
        return t.astype(np.int8) if kernel_int8.fits(t) else False
    hit = _cached(("drive8", fmt), make)
    return None if hit is False else hit


def _packed_table(fmt, sigma: int, g: int) -> np.ndarray:
    """The drive table with cycles ``k*g + j`` at bit ``sigma*j`` of word ``k`` (float32, padded with 0)."""
    def make():
        t = _drive_table(fmt)
        groups = -(-t.shape[1] // g)
        pad = np.zeros((t.shape[0], groups * g), dtype=np.int64)
        pad[:, :t.shape[1]] = t
        return (pad.reshape(t.shape[0], groups, g) << (sigma * np.arange(g))).sum(axis=2).astype(np.float32)
    return _cached(("packed", fmt, sigma, g), make)


def format_codes(sums, fmt, adc_bits: int, adc_shift: int) -> np.ndarray:
    """Return the ADC codes of :func:`format_sums`' ``sums`` (a new array, same type): :func:`cimisa.rules.adc_code`
    per element, its rounding :func:`cimisa.rules.round_div` once for all, its range per ``(p, d)``."""
    codes = rules.round_div(sums, adc_shift, fmt.adc_rounding)
    n = (codes.shape[0] - fmt.bias_cols) // fmt.cols_per_weight
    lo, hi, blo, bhi = _cached(("limits", fmt, adc_bits), lambda: _code_limits(fmt, adc_bits))
    one = lo.min() == lo.max() and hi.min() == hi.max()
    if one and (not fmt.bias_cols or (blo.min() == blo.max() == lo.min() and bhi.min() == bhi.max() == hi.min())):
        # one range for every column and cycle: a scalar clip
        return np.clip(codes, lo.flat[0], hi.flat[0], out=codes)
    main = codes[:n * fmt.cols_per_weight].reshape((n, fmt.cols_per_weight) + codes.shape[1:])
    np.clip(main, _typed(lo, codes.dtype), _typed(hi, codes.dtype), out=main)
    if fmt.bias_cols:
        np.clip(codes[-1:], _typed(blo, codes.dtype), _typed(bhi, codes.dtype), out=codes[-1:])
    return codes


def _product(win, x, fmt) -> np.ndarray:
    """The ``product`` form: the logical weights times the inputs the drives stand for, exact (int64)."""
    wl, colmax = _format_cells(win, fmt).logical
    held = _held(fmt)
    bound = colmax * int(np.abs(held).max())
    ft = _exact_type(bound)
    xs = np.take(_typed(held, ft), _patterns(fmt, x), axis=0)
    fc = _format_cells(win, fmt)
    wt = fc.typed.get(ft)
    if wt is None:
        wt = fc.typed[ft] = wl.astype(ft)
    return (wt @ xs).astype(np.int64, copy=False)


def _cycles(win, x, fmt, adc_bits: int, adc_shift: int) -> np.ndarray:
    """The ``cycles`` form (module docstring), ``(ncols, B)`` int64 before the step and the wrap."""
    ncols = win.w.shape[1]
    codes = format_codes(format_sums(win, x, fmt), fmt, adc_bits, adc_shift)   # (Q, B, D)
    _, b, d = codes.shape
    cmax = max(abs(v) for v in rules.code_range(adc_bits, False) + rules.code_range(adc_bits, True))
    vbound = cmax * sum(map(abs, fmt.digit_weights))
    vt = _exact_type(vbound)                                          # each column value exact in this type
    digit_w = _cached(("digits", fmt, np.dtype(vt).str), lambda: np.array(fmt.digit_weights, dtype=vt))
    values = codes.reshape(-1, d).astype(vt, copy=False) @ digit_w   # (Q*B,)
    ft = _exact_type(vbound * (sum(map(abs, fmt.slice_weights)) + abs(fmt.bias_weight)))
    values = values.astype(ft, copy=False)
    main = values[:ncols * fmt.cols_per_weight * b].reshape(ncols, fmt.cols_per_weight, b)
    acc = np.matmul(np.array(fmt.slice_weights, dtype=ft), main)                                     # (ncols, B)
    if fmt.bias_cols:
        acc += fmt.bias_weight * values[-b:]
    return acc.astype(np.int64, copy=False)


def mvm_acc_format(win, x, fmt, adc_bits: int, adc_shift: int) -> np.ndarray:
    """:func:`cimisa.kernel.mvm_acc` for any number format ``fmt`` (:class:`cimisa.formats.NumberFormat`): the
    contract of :meth:`~cimisa.formats.NumberFormat.mvm_column`, for every logical column and input vector at once,
    in the form :func:`format_path` names (module docstring).

    ``win`` a :class:`cimisa.kernel.Window` (or weights (nrows, ncols)), ``x`` (nrows[, B]) inputs within
    ``input_bits`` (their two's complement patterns drive the rows); returns ``(ncols[, B])`` int64 before the
    accumulator wrap.

    >>> from cimisa.formats import NumberFormat
    >>> f = NumberFormat(4, 4, 1, "differential")
    >>> w = np.array([[3, -2], [-5, 4]]); x = np.array([5, -6])
    >>> mvm_acc_format(w, x, f, 8, 0).tolist()                       # lossless: the exact product
    [45, -34]
    >>> mvm_acc_format(w, np.stack([x, -x], 1), f, 2, 0).tolist()    # a batch of 2 vectors
    [[45, -45], [-34, 34]]
    >>> w = np.array([[3, 7], [5, 4]]); x = np.array([5, 7])
    >>> mvm_acc_format(w, x, f, 1, 0).tolist(), (w.T @ x).tolist()   # 1-bit unsigned codes 0..1 saturate
    ([45, 43], [50, 63])
    """
    x = np.asarray(x, dtype=np.int64)
    win = _window(win)
    nrows, ncols = win.w.shape
    x2 = x.reshape(nrows, -1)
    if format_path(win, fmt, adc_bits, adc_shift) == "product":
        acc = _product(win, x2, fmt)
    else:
        fc = _format_cells(win, fmt)
        timed = (kernel_int8.mode() == "auto" and _wants_int8(fc, x2.shape[1])
                 and kernel_int8.active() is None)              # auto loads torch after a while of these
        t0 = time.perf_counter()
        acc = _cycles(win, x2, fmt, adc_bits, adc_shift)
        np.left_shift(acc, adc_shift, out=acc)
        if timed:
            kernel_int8.note_numpy_time(time.perf_counter() - t0)
    return acc.reshape((ncols,) + x.shape[1:])
