"""The naive golden model: every opcode with explicit Python loops over plain integers, obviously right.

It exists to check :mod:`cimisa.semantics` (which the fast model runs) on random streams; it is slow. The
addressing, the drive cycles, the column sums and the shift-adds are its own loops, for every number format; the
numeric rules are the scalar forms of the one definition: the cells of a weight and the drive of an input
(:meth:`cimisa.formats.NumberFormat.cells`, :meth:`~cimisa.formats.NumberFormat.drive`, whose weights and
ranges they read), the ADC code, REQUANT rounding and accumulator wrap (:mod:`cimisa.rules`), checked by hand
in ``tests/test_formats.py`` and ``tests/test_rules.py``.
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
    fmt = cfg.fmt
    a = st.array(array)
    xs = [int(st.inbuf[in_addr + r * in_stride]) for r in range(nrows)]
    drives = [fmt.drive(x) for x in xs]                          # each cycle's drive of each row
    for j in range(ncols):
        cells = [fmt.cells(int(a[row0 + r, col0 + j])) for r in range(nrows)]
        columns = [([cells[r][p] for r in range(nrows)], fmt.slice_weights[p], p) for p in range(fmt.cols_per_weight)]
        if fmt.bias_cols:
            columns.append(([fmt.bias_cell] * nrows, fmt.bias_weight, -1))
        total = 0
        for column, slice_weight, p in columns:                  # every physical column of the logical column
            value = 0
            for d in range(fmt.digits):                          # every drive cycle
                colsum = 0
                for r in range(nrows):
                    colsum += drives[r][d] * column[r]
                code = rules.adc_code(colsum, adc_bits, adc_shift, fmt.adc_rounding, fmt.unsigned_sum(p, d))
                value += fmt.digit_weights[d] * (code << adc_shift)
            total += slice_weight * value
        addr = out_addr + j * out_stride
        old = int(st.outbuf[addr]) if accumulate else 0
        st.outbuf[addr] = rules.wrap_acc(old + total)


def _requant(st, src, count, dst, dst_stride, shift):
    for k in range(count):
        v = int(st.outbuf[src + k])
        st.inbuf[dst + k * dst_stride] = rules.requant(v, shift, st.cfg.input_bits, st.cfg.fmt.input_range)


def _read(st, addr, count):
    for k in range(count):
        st.results.append(int(st.outbuf[addr + k]))


def _nothing(st, **_fields):
    pass


NAIVE_ACTIONS = {Opcode.WRITE_W: _write_w, Opcode.LOAD_IN: _load_in, Opcode.MVM: _mvm, Opcode.REQUANT: _requant,
                 Opcode.READ: _read, Opcode.BARRIER: _nothing, Opcode.HALT: _nothing}
