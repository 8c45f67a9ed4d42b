"""The naive golden model: every opcode with explicit Python loops over plain integers, obviously right.

It exists to check :mod:`cimisa.semantics` (which the fast model runs) on random streams; it is slow.
"""

from __future__ import annotations

from cimisa.config import ACC_BITS
from cimisa.isa import Opcode

__all__ = ["NAIVE_ACTIONS"]


def _wrap(v: int) -> int:
    v &= (1 << ACC_BITS) - 1
    return v - (1 << ACC_BITS) if v >> (ACC_BITS - 1) else v


def _write_w(st, array, row, col, count, data):
    a = st.array(array)
    for k in range(count):
        a[row, col + k] = data[k]


def _load_in(st, addr, count, data):
    for k in range(count):
        st.inbuf[addr + k] = data[k]


def _mvm(st, array, row0, nrows, col0, ncols, in_addr, in_stride, out_addr, out_stride, accumulate, adc_bits,
         adc_shift):
    cfg = st.cfg
    a = st.array(array)
    lo, hi = -(2 ** (adc_bits - 1)), 2 ** (adc_bits - 1) - 1
    xs = [int(st.inbuf[in_addr + r * in_stride]) for r in range(nrows)]
    for j in range(ncols):
        total = 0
        for b in range(cfg.input_bits):
            colsum = 0
            for r in range(nrows):
                bit = (xs[r] >> b) & 1           # Python ints: two's complement bits of negatives too
                if bit:
                    colsum += int(a[row0 + r, col0 + j])
            code = colsum // (2 ** adc_shift)    # floor division == arithmetic shift
            code = min(max(code, lo), hi)
            value = code * 2 ** (b + adc_shift)
            if b == cfg.input_bits - 1:
                total -= value
            else:
                total += value
        addr = out_addr + j * out_stride
        old = int(st.outbuf[addr]) if accumulate else 0
        st.outbuf[addr] = _wrap(old + total)


def _requant(st, src, count, dst, dst_stride, shift):
    lo, hi = -(2 ** (st.cfg.input_bits - 1)), 2 ** (st.cfg.input_bits - 1) - 1
    for k in range(count):
        v = int(st.outbuf[src + k])
        if shift:
            v = (v + 2 ** (shift - 1)) // (2 ** shift)
        st.inbuf[dst + k * dst_stride] = min(max(v, lo), hi)


def _read(st, addr, count):
    for k in range(count):
        st.results.append(int(st.outbuf[addr + k]))


def _nothing(st):
    pass


NAIVE_ACTIONS = {Opcode.WRITE_W: _write_w, Opcode.LOAD_IN: _load_in, Opcode.MVM: _mvm, Opcode.REQUANT: _requant,
                 Opcode.READ: _read, Opcode.BARRIER: _nothing, Opcode.HALT: _nothing}
