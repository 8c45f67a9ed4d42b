"""The meaning of every CIM opcode, as numpy. These functions *are* the specification.

The golden model (:mod:`sw_model`) executes them; the RTL (:mod:`hw`) must reproduce their results bit for bit;
``docs/isa.md`` quotes their source. Each runs on a :class:`MachineState` and has a doctest.

Number formats (:mod:`cimisa.formats`, the one definition; ``HwConfig.fmt`` is the configuration's)
  * the command set counts **logical columns**: one logical column holds one ``weight_bits``-bit two's
    complement weight per row, as WRITE_W carries it; an array of ``cols`` physical columns (cells) holds
    ``logical_cols`` of them. Logical column ``c`` is the physical columns ``c*P .. c*P+P-1``
    (``P = fmt.cols_per_weight``: weight slices of ``cell_bits`` bits, twice as many for differential pairs);
    ``offset`` weights add one bias column per array (its last physical column, every cell ``fmt.bias_cell``).
    The machine keeps the weights and derives the cells with ``fmt.cells(w)`` (differential weights saturate to
    the symmetric range); an unwritten weight is 0;
  * an MVM runs ``fmt.digits`` drive cycles: in cycle ``d`` row ``r`` is driven with ``fmt.drive(x_r)[d]``
    (``twos`` inputs: the bits of the two's complement pattern, LSB first, ``dac_bits`` per cycle, the sign bit
    last; ``sign-magnitude``: the magnitude's digits times the sign of ``x``);
  * every physical column of the window (and the bias column) sums ``S = sum_r drive * cell`` each cycle and its
    ADC converts ``code = clip(round(S / 2**adc_shift), range)`` (``rules.adc_code``; ``round`` is the
    configuration's ``adc_rounding``, floor or nearest; the range is unsigned ``0..2**adc_bits-1`` for a
    column whose sums cannot be negative, ``fmt.unsigned_sum(p, d)``, else signed
    ``-2**(adc_bits-1)..2**(adc_bits-1)-1``): ``fmt.conversions(ncols)`` conversions per cycle;
  * the digital side adds ``V = sum_d fmt.digit_weights[d] * (code_d << adc_shift)`` per physical column (the
    sign cycle of ``twos`` inputs weighs ``-2**(input_bits-1)``) and ``y_c = sum_p fmt.slice_weights[p] *
    V_{c*P+p} + fmt.bias_weight * V_bias`` per logical column (``NumberFormat.mvm_column``, the scalar
    definition);
  * with the default format (one signed cell per weight, ``twos`` bit-serial inputs, floor) this is the bit-serial
    MVM: bit ``b`` of ``x`` is ``(x >> b) & 1``, plane ``b``'s code weighs ``+2**b``, the sign plane's
    ``-2**(input_bits-1)``, so a lossless ADC gives ``x * w`` exactly, and
    ``code = clip(colsum >> adc_shift, -2**(adc_bits-1), 2**(adc_bits-1)-1)``;
  * REQUANT: ``clip((v + 2**(shift-1)) >> shift, fmt.input_range)`` (round half up; the input range is
    ``-2**(input_bits-1)..2**(input_bits-1)-1``, symmetric ``-(2**(input_bits-1)-1)..`` for sign-magnitude);
  * accumulators and result words: ``ACC_BITS`` = 32-bit two's complement, wrapping on overflow.

Each of these rules is one function of :mod:`cimisa.formats` (``cells``, ``drive``, the weights and ranges) or
:mod:`cimisa.rules` (``adc_code``, ``shift_add``, ``requant``, ``wrap_acc``), which every model of the machine
calls.

With ``adc_shift = 0`` and ``adc_bits >= cfg.lossless_adc_bits`` an MVM returns the exact integer product of the
active weight window and the input vector (of the saturated weights and inputs: differential weights and
sign-magnitude inputs have symmetric ranges).

Checks (:func:`check`) run on each header before its action; the first failing check stops the machine with that
:class:`~cimisa.isa.ErrorCode` and the command has no effect.
"""

from __future__ import annotations

import numpy as np

from cimisa import kernel, rules
from cimisa.config import HwConfig
from cimisa.isa import ErrorCode, Opcode
from cimisa.kernel import Window, mvm_acc, mvm_path
from cimisa.rules import ACC_BITS, FLOAT_EXACT, wrap_acc

__all__ = ["MachineState", "Window", "check", "wrap_acc", "write_w", "load_in", "mvm", "mvm_acc", "mvm_path",
           "requant", "read", "barrier", "halt", "ACTIONS", "FLOAT_EXACT"]


class MachineState:
    """Architectural state of one CIM tile: weights, input buffer, output buffer, results.

    Weight arrays hold logical weights ``(rows, cfg.logical_cols)`` (the cells follow from them,
    :mod:`cimisa.formats`); they are allocated on first write; an array never written reads as zeros.
    """

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        self._arrays: dict[int, np.ndarray] = {}
        self._windows: dict[int, dict[tuple, Window]] = {}
        self.inbuf = np.zeros(cfg.in_depth, dtype=np.int64)
        self.outbuf = np.zeros(cfg.out_depth, dtype=np.int64)
        self.results: list[int] = []

    def array(self, index: int) -> np.ndarray:
        """Return the (rows, logical_cols) weight array ``index`` (allocated on first use), to read or write.

        The call forgets the :class:`Window` data cached for the array's MVMs, so a write through the returned
        array is seen by the next MVM; write through a fresh call, not through an array kept from before an MVM.
        """
        self._windows.pop(index, None)
        a = self._arrays.get(index)
        if a is None:
            a = self._arrays[index] = np.zeros((self.cfg.rows, self.cfg.logical_cols), dtype=np.int64)
        return a

    def window(self, index: int, row0: int, nrows: int, col0: int, ncols: int) -> Window:
        """Return the :class:`Window` of rows ``row0..`` and columns ``col0..`` of array ``index`` (cached until
        the next :meth:`array` call for that array)."""
        a = self._arrays.get(index)
        if a is None:
            a = self.array(index)
        cache = self._windows.setdefault(index, {})
        key = (row0, nrows, col0, ncols)
        win = cache.get(key)
        if win is None:
            win = cache[key] = Window.of(a[row0:row0 + nrows, col0:col0 + ncols])
        return win

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
        if a["count"] < 1 or a["col"] + a["count"] > cfg.logical_cols:
            return ErrorCode.BAD_COL
    elif op is Opcode.LOAD_IN:
        if a["count"] < 1 or a["addr"] + a["count"] > cfg.in_depth:
            return ErrorCode.BAD_IN_ADDR
    elif op is Opcode.MVM:
        if a["array"] >= cfg.n_arrays:
            return ErrorCode.BAD_ARRAY
        if a["nrows"] < 1 or a["row0"] + a["nrows"] > cfg.rows:
            return ErrorCode.BAD_ROW
        if a["ncols"] < 1 or a["col0"] + a["ncols"] > cfg.logical_cols:
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
    elif op is Opcode.BARRIER:
        if a["array"] >= cfg.n_arrays:
            return ErrorCode.BAD_ARRAY
    return ErrorCode.NONE


def write_w(st, array, row, col, count, data):
    """WRITE_W: program ``count`` weights into ``array`` at ``row``, logical columns ``col..col+count-1``.

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
    """MVM: multiply the active window of one array by inputs gathered with a stride, in drive cycles.

    Row ``row0+k`` is driven by ``inbuf[in_addr + k*in_stride]``; logical column ``col0+j`` goes to
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
    >>> sl = MachineState(BUILTIN["fpga-micro"].replace(cols=48, cell_bits=1, weight_encoding="differential",
    ...                                                 adc_bits=5))       # 8 logical columns of 3 + 3 cells
    >>> sl.array(0)[:2, :2] = [[1, -2], [3, 4]]; sl.inbuf[:4] = [5, 0, 7, 0]
    >>> mvm(sl, array=0, row0=0, nrows=2, col0=0, ncols=2, in_addr=0, in_stride=2, out_addr=8, out_stride=1,
    ...     accumulate=0, adc_bits=1, adc_shift=0)  # unsigned 1-bit codes 0..1: a sum of 2 saturates
    >>> sl.outbuf[8:10].tolist()                  # exact [26, 18]: cells of 1, 3 both hold bit 0, 5, 7 share bits 0, 2
    [21, 18]
    """
    x = st.inbuf[_strided(in_addr, in_stride, nrows)]         # (nrows,), or (nrows, B) for a batch of inputs
    win = st.window(array, row0, nrows, col0, ncols)         # the weights, cached with their bounds
    fmt = st.cfg.fmt
    if fmt.is_default:                                       # bit-serial, ADC, shift-add
        acc = kernel.mvm_acc(win.w, x, st.cfg.input_bits, adc_bits, adc_shift, win)
    else:                                                    # cells, drive cycles, ADCs, shift-adds
        acc = kernel.mvm_acc_format(win, x, fmt, adc_bits, adc_shift)
    dst = _strided(out_addr, out_stride, ncols)
    if accumulate:
        acc += st.outbuf[dst]
    if (accumulate or not fmt.is_default
            or (max(-win.colmin, win.colmax) + (1 << adc_shift)) << st.cfg.input_bits > 1 << (ACC_BITS - 1)):
        rules.wrap_acc_inplace(acc)                            # = wrap_acc(acc); else |acc| < 2**31 already
    st.outbuf[dst] = acc


def _strided(addr: int, stride: int, n: int):
    """Return the index of buffer addresses ``addr + k*stride``, ``k < n`` (a slice when ``stride`` is 1)."""
    return slice(addr, addr + n) if stride == 1 else addr + stride * np.arange(n)


def requant(st, src, count, dst, dst_stride, shift):
    """REQUANT: round accumulators ``src..src+count-1`` right by ``shift``, saturate to inputs, store strided.

    Rounding adds ``2**(shift-1)`` before the arithmetic shift (round half up); the inputs' range is the
    format's (``cfg.fmt.input_range``: symmetric for sign-magnitude inputs).

    >>> from cimisa.config import BUILTIN
    >>> st = MachineState(BUILTIN["fpga-micro"])        # 4-bit inputs: -8..7
    >>> st.outbuf[:3] = [5, -6, 100]
    >>> requant(st, src=0, count=3, dst=1, dst_stride=2, shift=1)
    >>> st.inbuf[:6].tolist()
    [0, 3, 0, -3, 0, 7]
    """
    v = rules.requant(st.outbuf[src:src + count], shift, st.cfg.input_bits, st.cfg.fmt.input_range)
    st.inbuf[dst + dst_stride * np.arange(count)] = v


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


def barrier(st, array=0, local=0):
    """BARRIER: every earlier command (``local``: every earlier command of the tile that holds ``array``) has
    finished before any later one starts. No effect on the state; on a chip of several tiles it ends the
    concurrency window of those tiles (:mod:`cimisa.concurrency`)."""


def halt(st):
    """HALT: the machine stops in state HALTED; words after it are ignored."""


#: Opcode -> action.
ACTIONS = {Opcode.WRITE_W: write_w, Opcode.LOAD_IN: load_in, Opcode.MVM: mvm, Opcode.REQUANT: requant,
           Opcode.READ: read, Opcode.BARRIER: barrier, Opcode.HALT: halt}
