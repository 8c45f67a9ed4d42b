"""The naive golden model: every opcode with explicit Python loops over plain integers, obviously right.

It exists to check :mod:`cimisa.semantics` (which the fast model runs) on random streams; it is slow. The
addressing, bit-serial drive and column sums are its own loops; the numeric rules (ADC code, shift-add, REQUANT
rounding, accumulator wrap) are the scalar forms of the one definition in :mod:`cimisa.rules`, checked by hand in
``tests/test_rules.py``.
"""

from __future__ import annotations

from cimisa import rules
from cimisa.isa import Opcode

__all__ = ["NAIVE_ACTIONS"]


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
    xs = [int(st.inbuf[in_addr + r * in_stride]) for r in range(nrows)]
    bits = [rules.bit_planes(x, cfg.input_bits) for x in xs]     # Python ints: two's complement bits of negatives
    for j in range(ncols):
        colsums = []
        for b in range(cfg.input_bits):
            colsum = 0
            for r in range(nrows):
                if bits[r][b]:
                    colsum += int(a[row0 + r, col0 + j])
            colsums.append(colsum)
        total = rules.convert_planes(colsums, cfg.input_bits, adc_bits, adc_shift)   # ADC and shift-add
        addr = out_addr + j * out_stride
        old = int(st.outbuf[addr]) if accumulate else 0
        st.outbuf[addr] = rules.wrap_acc(old + total)


def _requant(st, src, count, dst, dst_stride, shift):
    for k in range(count):
        v = int(st.outbuf[src + k])
        st.inbuf[dst + k * dst_stride] = rules.requant(v, shift, st.cfg.input_bits)


def _read(st, addr, count):
    for k in range(count):
        st.results.append(int(st.outbuf[addr + k]))


def _nothing(st):
    pass


NAIVE_ACTIONS = {Opcode.WRITE_W: _write_w, Opcode.LOAD_IN: _load_in, Opcode.MVM: _mvm, Opcode.REQUANT: _requant,
                 Opcode.READ: _read, Opcode.BARRIER: _nothing, Opcode.HALT: _nothing}
