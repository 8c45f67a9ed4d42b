"""Hypothesis strategies for commands and streams on a given hardware configuration."""

from __future__ import annotations

from hypothesis import strategies as st

from cimisa.config import HwConfig
from cimisa.isa import FIELDS, PAYLOAD, Command, Isa, Opcode


def any_command(cfg: HwConfig, op: Opcode | None = None):
    """Any encodable command (fields fit their widths; may be out of range for the configuration)."""
    isa = Isa.of(cfg)
    ops = [op] if op is not None else [o for o in Opcode if o is not Opcode.HALT]

    @st.composite
    def build(draw):
        o = draw(st.sampled_from(ops))
        args = {}
        for name, _kind in FIELDS[o]:
            width = isa.field_widths[o][name]
            args[name] = draw(st.integers(0, (1 << width) - 1))
        data = ()
        if o in PAYLOAD:
            lo, hi = isa.elem_range(PAYLOAD[o])
            count = draw(st.integers(1, min(40, (1 << isa.field_widths[o]["count"]) - 1)))
            args["count"] = count
            data = tuple(draw(st.lists(st.integers(lo, hi), min_size=count, max_size=count)))
        return Command(o, args, data)

    return build()


def legal_command(cfg: HwConfig):
    """A command that passes every check on ``cfg`` (random windows, strides, ADC settings)."""
    isa = Isa.of(cfg)
    wlo, whi = isa.elem_range("weight")
    ilo, ihi = isa.elem_range("input")

    @st.composite
    def build(draw):
        o = draw(st.sampled_from([Opcode.WRITE_W, Opcode.LOAD_IN, Opcode.MVM, Opcode.MVM, Opcode.REQUANT,
                                  Opcode.READ, Opcode.BARRIER]))
        if o is Opcode.WRITE_W:
            col = draw(st.integers(0, cfg.cols - 1))
            n = draw(st.integers(1, cfg.cols - col))
            return Command.write_w(draw(st.integers(0, cfg.n_arrays - 1)), draw(st.integers(0, cfg.rows - 1)), col,
                                   draw(st.lists(st.integers(wlo, whi), min_size=n, max_size=n)))
        if o is Opcode.LOAD_IN:
            addr = draw(st.integers(0, cfg.in_depth - 1))
            n = draw(st.integers(1, min(48, cfg.in_depth - addr)))
            return Command.load_in(addr, draw(st.lists(st.integers(ilo, ihi), min_size=n, max_size=n)))
        if o is Opcode.MVM:
            row0 = draw(st.integers(0, cfg.rows - 1))
            nrows = draw(st.integers(1, cfg.rows - row0))
            col0 = draw(st.integers(0, cfg.cols - 1))
            ncols = draw(st.integers(1, cfg.cols - col0))
            in_stride = draw(st.integers(0, (cfg.in_depth - 1) // max(1, nrows - 1)).map(lambda s: min(s, 5)))
            in_addr = draw(st.integers(0, cfg.in_depth - 1 - (nrows - 1) * in_stride))
            out_stride = draw(st.integers(1, max(1, min(3, (cfg.out_depth - 1) // max(1, ncols - 1)))))
            out_addr = draw(st.integers(0, cfg.out_depth - 1 - (ncols - 1) * out_stride))
            return Command.mvm(array=draw(st.integers(0, cfg.n_arrays - 1)), row0=row0, nrows=nrows, col0=col0,
                               ncols=ncols, in_addr=in_addr, in_stride=in_stride, out_addr=out_addr,
                               out_stride=out_stride, accumulate=draw(st.booleans()),
                               adc_bits=draw(st.integers(1, cfg.adc_bits)),
                               adc_shift=draw(st.integers(0, 3)))
        if o is Opcode.REQUANT:
            count = draw(st.integers(1, min(32, cfg.out_depth)))
            src = draw(st.integers(0, cfg.out_depth - count))
            stride = draw(st.integers(1, max(1, min(3, (cfg.in_depth - 1) // max(1, count - 1)))))
            dst = draw(st.integers(0, cfg.in_depth - 1 - (count - 1) * stride))
            return Command.requant(src=src, count=count, dst=dst, dst_stride=stride, shift=draw(st.integers(0, 31)))
        if o is Opcode.READ:
            addr = draw(st.integers(0, cfg.out_depth - 1))
            return Command.read(addr, draw(st.integers(1, min(16, cfg.out_depth - addr))))
        return Command.barrier()

    return build()


def legal_stream(cfg: HwConfig, max_size: int = 25):
    """A legal program: weights and inputs first (so MVMs see data), random commands, then HALT."""
    return st.lists(legal_command(cfg), min_size=1, max_size=max_size).map(lambda cs: cs + [Command.halt()])
