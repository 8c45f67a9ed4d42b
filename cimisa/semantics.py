"""The meaning of every CIM opcode, as numpy. These functions *are* the specification.

The golden model (:mod:`sw_model`) executes them; the RTL (:mod:`hw`) must reproduce their results bit for bit;
``docs/isa.md`` quotes their source. Each runs on a :class:`MachineState` and has a doctest.

Number formats
  * weights: ``weight_bits``-bit two's complement, one per cell;
  * inputs: ``input_bits``-bit two's complement, applied **bit-serially, LSB first**. Bit ``b`` of ``x`` is
    ``(x >> b) & 1`` (two's complement bits); the column sum of bit ``b`` is weighted ``+2**b`` for
    ``b < input_bits-1`` and ``-2**(input_bits-1)`` for the sign bit, so the weighted sum over all bits equals
    ``x * w`` exactly (the usual signed bit-serial convention: the MSB column sum is subtracted);
  * ADC: ``code = clip(colsum >> adc_shift, -2**(adc_bits-1), 2**(adc_bits-1)-1)`` (arithmetic shift = floor
    division by the step ``2**adc_shift``, then saturation); the digital side adds ``code << (b + adc_shift)``;
  * REQUANT: ``clip((v + 2**(shift-1)) >> shift, -2**(input_bits-1), 2**(input_bits-1)-1)`` (round half up);
  * accumulators and result words: ``ACC_BITS`` = 32-bit two's complement, wrapping on overflow.

Each of these rules is one function of :mod:`cimisa.rules` (``adc_code``, ``shift_add``, ``requant``,
``wrap_acc``), which every model of the machine calls.

With ``adc_shift = 0`` and ``adc_bits >= cfg.lossless_adc_bits`` an MVM returns the exact integer product of the
active weight window and the input vector.

Checks (:func:`check`) run on each header before its action; the first failing check stops the machine with that
:class:`~cimisa.isa.ErrorCode` and the command has no effect.
"""

from __future__ import annotations

import functools

import numpy as np

from cimisa import rules
from cimisa.config import HwConfig
from cimisa.isa import ErrorCode, Opcode
from cimisa.rules import FLOAT_EXACT, wrap_acc

__all__ = ["MachineState", "check", "wrap_acc", "write_w", "load_in", "mvm", "mvm_acc", "requant", "read", "barrier",
           "halt", "ACTIONS", "FLOAT_EXACT"]


class MachineState:
    """Architectural state of one CIM tile: weights, input buffer, output buffer, results.

    Weight arrays are allocated on first write; an array never written reads as zeros.
    """

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        self._arrays: dict[int, np.ndarray] = {}
        self.inbuf = np.zeros(cfg.in_depth, dtype=np.int64)
        self.outbuf = np.zeros(cfg.out_depth, dtype=np.int64)
        self.results: list[int] = []

    def array(self, index: int) -> np.ndarray:
        """Return the (rows, cols) weight array ``index`` (allocated on first use)."""
        a = self._arrays.get(index)
        if a is None:
            a = self._arrays[index] = np.zeros((self.cfg.rows, self.cfg.cols), dtype=np.int64)
        return a

    @property
    def batch(self) -> int | None:
        """Number of input vectors the buffers hold side by side (``None``: one, 1-D buffers)."""
        return self.inbuf.shape[1] if self.inbuf.ndim == 2 else None

    def set_batch(self, batch: int | None) -> None:
        """Replace both buffers by zeroed ``(depth, batch)`` ones (``None``: 1-D, one vector).

        With a batch every command acts on all vectors at once, as if each had its own machine sharing the
        weights: LOAD_IN writes the same data to every vector, MVM/REQUANT run per vector, READ emits one result
        per vector (a ``(batch,)`` array per address).
        """
        shape = () if batch is None else (int(batch),)
        self.inbuf = np.zeros((self.cfg.in_depth,) + shape, dtype=np.int64)
        self.outbuf = np.zeros((self.cfg.out_depth,) + shape, dtype=np.int64)

    @property
    def programmed_arrays(self) -> list[int]:
        """Indices of the arrays that have been written."""
        return sorted(self._arrays)

    def __repr__(self) -> str:
        return (f"MachineState({self.cfg.name!r}, arrays={len(self._arrays)}, results={len(self.results)})")


def check(cfg: HwConfig, op: Opcode, a: dict) -> ErrorCode:
    """Return the error a header would raise, checking in the order below (the RTL uses the same order).

    >>> from cimisa.config import BUILTIN
    >>> check(BUILTIN["fpga-micro"], Opcode.READ, dict(addr=30, count=3)).name
    'BAD_OUT_ADDR'
    """
    if op is Opcode.WRITE_W:
        if a["array"] >= cfg.n_arrays:
            return ErrorCode.BAD_ARRAY
        if a["row"] >= cfg.rows:
            return ErrorCode.BAD_ROW
        if a["count"] < 1 or a["col"] + a["count"] > cfg.cols:
            return ErrorCode.BAD_COL
    elif op is Opcode.LOAD_IN:
        if a["count"] < 1 or a["addr"] + a["count"] > cfg.in_depth:
            return ErrorCode.BAD_IN_ADDR
    elif op is Opcode.MVM:
        if a["array"] >= cfg.n_arrays:
            return ErrorCode.BAD_ARRAY
        if a["nrows"] < 1 or a["row0"] + a["nrows"] > cfg.rows:
            return ErrorCode.BAD_ROW
        if a["ncols"] < 1 or a["col0"] + a["ncols"] > cfg.cols:
            return ErrorCode.BAD_COL
        if not 1 <= a["adc_bits"] <= cfg.adc_bits:
            return ErrorCode.BAD_ADC
        if a["in_addr"] + (a["nrows"] - 1) * a["in_stride"] >= cfg.in_depth:
            return ErrorCode.BAD_IN_ADDR
        if (a["out_addr"] + (a["ncols"] - 1) * a["out_stride"] >= cfg.out_depth
                or (a["ncols"] > 1 and a["out_stride"] == 0)):
            return ErrorCode.BAD_OUT_ADDR
    elif op is Opcode.REQUANT:
        if a["count"] < 1 or a["src"] + a["count"] > cfg.out_depth:
            return ErrorCode.BAD_OUT_ADDR
        if (a["dst"] + (a["count"] - 1) * a["dst_stride"] >= cfg.in_depth
                or (a["count"] > 1 and a["dst_stride"] == 0)):
            return ErrorCode.BAD_IN_ADDR
    elif op is Opcode.READ:
        if a["count"] < 1 or a["addr"] + a["count"] > cfg.out_depth:
            return ErrorCode.BAD_OUT_ADDR
    return ErrorCode.NONE


def write_w(st, array, row, col, count, data):
    """WRITE_W: program ``count`` weights into ``array`` at ``row``, columns ``col..col+count-1``.

    >>> from cimisa.config import BUILTIN
    >>> st = MachineState(BUILTIN["fpga-micro"])
    >>> write_w(st, array=1, row=2, col=3, count=3, data=(5, -8, 7))
    >>> st.array(1)[2, 3:6].tolist()
    [5, -8, 7]
    """
    st.array(array)[row, col:col + count] = data


def load_in(st, addr, count, data):
    """LOAD_IN: store ``count`` input values at input-buffer addresses ``addr..addr+count-1``.

    >>> from cimisa.config import BUILTIN
    >>> st = MachineState(BUILTIN["fpga-micro"])
    >>> load_in(st, addr=4, count=2, data=(-3, 7))
    >>> st.inbuf[3:7].tolist()
    [0, -3, 7, 0]
    """
    data = np.asarray(data, dtype=np.int64)
    st.inbuf[addr:addr + count] = data if st.inbuf.ndim == 1 else data[:, None]   # batch: the same for every vector


def mvm(st, array, row0, nrows, col0, ncols, in_addr, in_stride, out_addr, out_stride, accumulate, adc_bits,
        adc_shift):
    """MVM: multiply the active window of one array by inputs gathered with a stride, bit-serially.

    Row ``row0+k`` is driven by ``inbuf[in_addr + k*in_stride]``; column ``col0+j`` goes to
    ``outbuf[out_addr + j*out_stride]``, added to it when ``accumulate`` is 1, replacing it otherwise.
    Strides fold permutations into addressing.

    >>> from cimisa.config import BUILTIN
    >>> st = MachineState(BUILTIN["fpga-micro"])
    >>> st.array(0)[:2, :2] = [[1, -2], [3, 4]]
    >>> st.inbuf[:4] = [5, 0, -6, 0]              # rows read addresses 0 and 2 (stride 2)
    >>> mvm(st, array=0, row0=0, nrows=2, col0=0, ncols=2, in_addr=0, in_stride=2, out_addr=8, out_stride=1,
    ...     accumulate=0, adc_bits=8, adc_shift=0)
    >>> st.outbuf[8:10].tolist()                  # [5*1 + -6*3, 5*-2 + -6*4]: exact with a lossless ADC
    [-13, -34]
    >>> mvm(st, array=0, row0=0, nrows=2, col0=0, ncols=2, in_addr=0, in_stride=2, out_addr=8, out_stride=1,
    ...     accumulate=1, adc_bits=2, adc_shift=0)  # 2-bit ADC: each bit's column sum saturates to -2..1
    >>> st.outbuf[8:10].tolist()
    [-14, -50]
    """
    x = st.inbuf[_strided(in_addr, in_stride, nrows)]         # (nrows,), or (nrows, B) for a batch of inputs
    w = st.array(array)[row0:row0 + nrows, col0:col0 + ncols]
    acc = mvm_acc(w, x, st.cfg.input_bits, adc_bits, adc_shift)  # bit-serial, ADC, shift-add: see mvm_acc
    dst = _strided(out_addr, out_stride, ncols)
    if accumulate:
        acc += st.outbuf[dst]
    st.outbuf[dst] = rules.wrap_acc_inplace(acc)                 # = wrap_acc(acc)


def _strided(addr: int, stride: int, n: int):
    """Return the index of buffer addresses ``addr + k*stride``, ``k < n`` (a slice when ``stride`` is 1)."""
    return slice(addr, addr + n) if stride == 1 else addr + stride * np.arange(n)


@functools.lru_cache(maxsize=64)
def _bits_table(input_bits: int, spacing: int, first: int, count: int) -> np.ndarray:
    """Return ``t[u] = sum_j bit(u, first+j) * 2**(spacing*j)`` (float64) for every ``input_bits``-bit ``u``.

    ``count=1`` gives bit plane ``first``; ``spacing > 0`` packs ``count`` planes into one number.
    """
    planes = rules.bit_planes(np.arange(1 << input_bits, dtype=np.int64), input_bits)[:, first:first + count]
    return (planes << (spacing * np.arange(count))).sum(axis=1).astype(np.float64)


def _matmul(wt: np.ndarray, x: np.ndarray, bound: int) -> np.ndarray:
    """Return the exact int64 product ``wt @ x``, given ``bound >= sum_k |wt[i, k] * x[k, j]|`` for all i, j:
    float64 BLAS when ``bound < FLOAT_EXACT`` (float64 holds every such integer exactly, whatever the summation
    order), int64 numpy otherwise."""
    if bound < FLOAT_EXACT:
        return (wt.astype(np.float64) @ x.astype(np.float64, copy=False)).astype(np.int64)
    return wt.astype(np.int64) @ x.astype(np.int64)


def mvm_acc(w, x, input_bits, adc_bits, adc_shift):
    """Return the shift-added ADC codes of one MVM: window ``w`` (nrows, ncols), inputs ``x`` (nrows[, B]).

    The ADC / shift-add rule of the module docstring (:func:`cimisa.rules.convert_planes`), for one input vector
    or a batch of them on a trailing axis of ``x`` (the result is ``(ncols,) + x.shape[1:]``, int64, before the
    accumulator wrap). Bit ``b`` of each input drives its rows; each column's sum of bit plane ``b`` is converted
    and weighted:

    >>> w = np.array([[1, -2], [3, 4]]); x = np.array([5, -6])
    >>> mvm_acc(w, x, input_bits=4, adc_bits=8, adc_shift=0).tolist()   # lossless: the exact product
    [-13, -34]
    >>> mvm_acc(w, x, input_bits=4, adc_bits=2, adc_shift=0).tolist()   # each plane's code saturates to -2..1
    [-1, -16]
    >>> mvm_acc(w, np.stack([x, -x, 0 * x], axis=1), 4, 3, 1).tolist()  # a batch of 3 vectors, step 2
    [[-12, 16, 0], [-34, 34, 0]]

    How: the column sums of the 0/1 bit planes of the whole batch are one BLAS product in float64, exact since
    they are integers below ``nrows * max|w|`` (< 2**53; larger bounds use int64), then converted by
    :func:`cimisa.rules.convert_planes`. When no code can saturate (:func:`cimisa.rules.adc_fits` holds for the
    window's :func:`cimisa.rules.colsum_bounds`; always true with ``adc_shift = 0`` and a lossless ADC), two exact
    identities of that rule skip the per-plane sums:

    * ``adc_shift = 0``: every code equals its column sum, so the shift-add of the planes is ``w.T @ x``;
    * ``adc_shift = s > 0``: ``(S >> s) << s == S - (S mod 2**s)`` for each plane sum ``S``, so the result is
      ``w.T @ x`` minus the shift-add of the residues ``S mod 2**s``; these depend only on ``w mod 2**s``, whose
      small plane sums are packed several planes per float64 product (fields that cannot carry into each other).
    """
    nb, s = input_bits, adc_shift
    w = np.asarray(w, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    nrows, ncols = w.shape
    batch = x.shape[1:]
    u = x.reshape(nrows, -1) & ((1 << nb) - 1)                 # the nb-bit two's complement patterns, 0..2**nb-1
    wt = w.T
    wmax = int(np.abs(w).max(initial=0))
    if rules.adc_fits(*rules.colsum_bounds(w), adc_bits, s):     # no code can saturate
        xs = u - ((u >> (nb - 1)) << nb)                        # the signed values the bits stand for
        acc = _matmul(wt, xs, nrows * wmax << (nb - 1))
        if s:
            acc -= _residue_shift_add(wt & ((1 << s) - 1), u, nb, s)
    else:
        planes = rules.bit_plane_table(nb)[u]                   # (nrows, B, nb): bit b of every input
        colsum = _matmul(wt, planes.reshape(nrows, -1), nrows * wmax).reshape(ncols, -1, nb)  # analog sums
        acc = rules.convert_planes(colsum, nb, adc_bits, s)     # ADC (step 2**s, saturation), shift-add
    return acc.reshape((ncols,) + batch)


def _residue_shift_add(ut, u, nb, s):
    """Return ``sum_b +-2**b * ((ut @ bit_b(u)) mod 2**s)`` (minus for the sign bit ``b = nb-1``), (ncols, B).

    ``ut`` holds weights ``0 .. 2**s-1``, so a plane's column sums lie in ``0 .. nrows*(2**s-1)`` and fit a
    field of ``k`` bits: ``g = 53 // k`` planes go through one float64 product with the planes ``k`` bits
    apart (the sum ``< 2**(g*k) <= 2**53`` is exact and the fields do not carry into each other).
    """
    ncols, nrows = ut.shape
    k = max(1, (nrows * ((1 << s) - 1)).bit_length())
    g = max(1, min(nb, 53 // k))
    mask = (1 << s) - 1
    out = np.zeros((ncols, u.shape[1]), dtype=np.int64)
    tmp = np.empty_like(out)
    for first in range(0, nb, g):
        cnt = min(g, nb - first)
        packed = _matmul(ut, _bits_table(nb, k, first, cnt)[u], 1 << (k * cnt))
        for j in range(cnt):
            b = first + j
            np.right_shift(packed, k * j, out=tmp)
            np.bitwise_and(tmp, mask, out=tmp)
            np.left_shift(tmp, b, out=tmp)
            (np.subtract if b == nb - 1 else np.add)(out, tmp, out=out)
    return out


def requant(st, src, count, dst, dst_stride, shift):
    """REQUANT: round accumulators ``src..src+count-1`` right by ``shift``, saturate to inputs, store strided.

    Rounding adds ``2**(shift-1)`` before the arithmetic shift (round half up).

    >>> from cimisa.config import BUILTIN
    >>> st = MachineState(BUILTIN["fpga-micro"])        # 4-bit inputs: -8..7
    >>> st.outbuf[:3] = [5, -6, 100]
    >>> requant(st, src=0, count=3, dst=1, dst_stride=2, shift=1)
    >>> st.inbuf[:6].tolist()
    [0, 3, 0, -3, 0, 7]
    """
    v = st.outbuf[src:src + count]
    st.inbuf[dst + dst_stride * np.arange(count)] = rules.requant(v, shift, st.cfg.input_bits)


def read(st, addr, count):
    """READ: emit accumulators ``addr..addr+count-1`` as result words, in order.

    >>> from cimisa.config import BUILTIN
    >>> st = MachineState(BUILTIN["fpga-micro"])
    >>> st.outbuf[2:4] = [-1, 9]
    >>> read(st, addr=2, count=2); st.results
    [-1, 9]
    """
    v = st.outbuf[addr:addr + count]
    st.results.extend(v.tolist() if v.ndim == 1 else list(v.copy()))


def barrier(st):
    """BARRIER: every earlier command has finished before any later one starts (no effect on state)."""


def halt(st):
    """HALT: the machine stops in state HALTED; words after it are ignored."""


#: Opcode -> action.
ACTIONS = {Opcode.WRITE_W: write_w, Opcode.LOAD_IN: load_in, Opcode.MVM: mvm, Opcode.REQUANT: requant,
           Opcode.READ: read, Opcode.BARRIER: barrier, Opcode.HALT: halt}
