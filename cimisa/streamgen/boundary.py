"""Commands at the edges of the legal: every bound at its largest legal value and one past it, and any
encodable command (fields that fit their widths, values that may be out of range for the configuration).
"""

from __future__ import annotations

from cimisa.config import HwConfig
from cimisa.isa import FIELDS, PAYLOAD, Command, ErrorCode, Isa, Opcode
from cimisa.streamgen.generate import Randomness

__all__ = ["fits", "boundary_cases", "any_command"]


def fits(cfg: HwConfig, cmd: Command) -> bool:
    """Whether every header field of ``cmd`` fits its width on ``cfg`` (so the command can be encoded)."""
    widths = Isa.of(cfg).field_widths[cmd.op]
    return all(0 <= v < (1 << widths[k]) for k, v in cmd.args.items())


def boundary_cases(cfg: HwConfig) -> list[tuple[str, Command, ErrorCode]]:
    """Return ``(name, command, expected error)`` for every bound of every check, at its largest legal value
    (``ErrorCode.NONE``) and one past it (the check's error), plus empty windows and aliased strides.

    Covers each ``>=`` / ``>`` of :func:`cimisa.semantics.check`: array index, row and column windows (through the
    start and through the count), ADC resolution 1..max, input and output windows (contiguous, and strided so that
    the *last* element lands on or past the end), REQUANT source and destination, READ, BARRIER's array (local and
    all-tile). Commands whose fields do
    not fit their widths on ``cfg`` are left out; payloads (when legal) hold small non-zero values.
    """
    R, C, I, O, N = cfg.rows, cfg.logical_cols, cfg.in_depth, cfg.out_depth, cfg.n_arrays
    A = cfg.adc_bits
    ok, e = ErrorCode.NONE, ErrorCode
    out: list[tuple[str, Command, ErrorCode]] = []

    def data(n):
        return tuple((k % 5) - 2 or 1 for k in range(n))

    def ww(name, code, array=0, row=0, col=0, count=1):
        out.append((f"write_w:{name}", Command(Opcode.WRITE_W, dict(array=array, row=row, col=col, count=count),
                                               data(count)), code))

    def li(name, code, addr=0, count=1):
        out.append((f"load_in:{name}", Command(Opcode.LOAD_IN, dict(addr=addr, count=count), data(count)), code))

    def mvm(name, code, **kw):
        args = dict(array=0, row0=0, nrows=1, col0=0, ncols=1, in_addr=0, in_stride=1, out_addr=0, out_stride=1,
                    accumulate=0, adc_bits=A, adc_shift=0)
        args.update(kw)
        out.append((f"mvm:{name}", Command(Opcode.MVM, args), code))

    def rq(name, code, **kw):
        args = dict(src=0, count=1, dst=0, dst_stride=1, shift=0)
        args.update(kw)
        out.append((f"requant:{name}", Command(Opcode.REQUANT, args), code))

    def rd(name, code, addr=0, count=1):
        out.append((f"read:{name}", Command(Opcode.READ, dict(addr=addr, count=count)), code))

    ww("array=max", ok, array=N - 1)
    ww("array=max+1", e.BAD_ARRAY, array=N)
    ww("row=max", ok, row=R - 1)
    ww("row=max+1", e.BAD_ROW, row=R)
    ww("col=max", ok, col=C - 1)
    ww("col=max+1", e.BAD_COL, col=C)
    ww("count=full", ok, count=C)
    ww("count=full+1", e.BAD_COL, count=C + 1)
    ww("end=max", ok, col=C // 2, count=C - C // 2)
    ww("end=max+1", e.BAD_COL, col=C // 2, count=C - C // 2 + 1)
    ww("count=0", e.BAD_COL, count=0)
    li("addr=max", ok, addr=I - 1)
    li("addr=max+1", e.BAD_IN_ADDR, addr=I)
    li("count=full", ok, count=I)
    li("count=full+1", e.BAD_IN_ADDR, count=I + 1)
    li("end=max", ok, addr=I // 2, count=I - I // 2)
    li("end=max+1", e.BAD_IN_ADDR, addr=I // 2, count=I - I // 2 + 1)
    li("count=0", e.BAD_IN_ADDR, count=0)
    mvm("array=max", ok, array=N - 1)
    mvm("array=max+1", e.BAD_ARRAY, array=N)
    mvm("row0=max", ok, row0=R - 1)
    mvm("row0=max+1", e.BAD_ROW, row0=R)
    mvm("nrows=full", ok, nrows=R)
    mvm("nrows=full+1", e.BAD_ROW, nrows=R + 1)
    mvm("row_end=max", ok, row0=1, nrows=R - 1)
    mvm("row_end=max+1", e.BAD_ROW, row0=1, nrows=R)
    mvm("nrows=0", e.BAD_ROW, nrows=0)
    mvm("col0=max", ok, col0=C - 1)
    mvm("col0=max+1", e.BAD_COL, col0=C)
    mvm("ncols=full", ok, ncols=C)
    mvm("ncols=full+1", e.BAD_COL, ncols=C + 1)
    mvm("col_end=max", ok, col0=1, ncols=C - 1)
    mvm("col_end=max+1", e.BAD_COL, col0=1, ncols=C)
    mvm("ncols=0", e.BAD_COL, ncols=0)
    mvm("adc_bits=1", ok, adc_bits=1)
    mvm("adc_bits=0", e.BAD_ADC, adc_bits=0)
    mvm("adc_bits=max+1", e.BAD_ADC, adc_bits=A + 1)
    mvm("in_addr=max", ok, in_addr=I - 1)
    mvm("in_addr=max+1", e.BAD_IN_ADDR, in_addr=I)
    mvm("in_end=max", ok, nrows=2, in_addr=I - 2)
    mvm("in_end=max+1", e.BAD_IN_ADDR, nrows=2, in_addr=I - 1)
    if R >= 3:
        st = (I - 1) // 2
        mvm("in_stride_end=max", ok, nrows=3, in_addr=(I - 1) - 2 * st, in_stride=st)
        mvm("in_stride_end=max+1", e.BAD_IN_ADDR, nrows=3, in_addr=(I - 1) - 2 * st + 1, in_stride=st)
    mvm("in_stride=max", ok, nrows=2, in_stride=I - 1)
    mvm("in_stride=max+1", e.BAD_IN_ADDR, nrows=2, in_stride=I)
    mvm("in_stride=0", ok, nrows=R, in_addr=I - 1, in_stride=0)
    mvm("out_addr=max", ok, out_addr=O - 1)
    mvm("out_addr=max+1", e.BAD_OUT_ADDR, out_addr=O)
    mvm("out_end=max", ok, ncols=2, out_addr=O - 2)
    mvm("out_end=max+1", e.BAD_OUT_ADDR, ncols=2, out_addr=O - 1)
    if C >= 3:
        st = (O - 1) // 2
        mvm("out_stride_end=max", ok, ncols=3, out_addr=(O - 1) - 2 * st, out_stride=st)
        mvm("out_stride_end=max+1", e.BAD_OUT_ADDR, ncols=3, out_addr=(O - 1) - 2 * st + 1, out_stride=st)
    mvm("out_stride=max", ok, ncols=2, out_stride=O - 1)
    mvm("out_stride=max+1", e.BAD_OUT_ADDR, ncols=2, out_stride=O)
    mvm("out_stride=0,ncols=1", ok, out_stride=0)
    mvm("out_stride=0,ncols=2", e.BAD_OUT_ADDR, ncols=2, out_stride=0)
    mvm("order:array>row", e.BAD_ARRAY, array=N, nrows=0)
    mvm("order:row>col", e.BAD_ROW, nrows=0, ncols=0)
    mvm("order:col>adc", e.BAD_COL, ncols=0, adc_bits=0)
    mvm("order:adc>in", e.BAD_ADC, adc_bits=0, in_addr=I)
    mvm("order:in>out", e.BAD_IN_ADDR, in_addr=I, out_addr=O)
    rq("src=max", ok, src=O - 1)
    rq("src=max+1", e.BAD_OUT_ADDR, src=O)
    rq("count=full", ok, count=min(O, I))
    rq("src_end=max", ok, src=O // 2, count=O - O // 2)
    rq("src_end=max+1", e.BAD_OUT_ADDR, src=O // 2, count=O - O // 2 + 1)
    rq("count=0", e.BAD_OUT_ADDR, count=0)
    rq("dst=max", ok, dst=I - 1)
    rq("dst=max+1", e.BAD_IN_ADDR, dst=I)
    rq("dst_end=max", ok, count=2, dst=I - 2)
    rq("dst_end=max+1", e.BAD_IN_ADDR, count=2, dst=I - 1)
    st = (I - 1) // 2
    rq("dst_stride_end=max", ok, count=3, dst=(I - 1) - 2 * st, dst_stride=st)
    rq("dst_stride_end=max+1", e.BAD_IN_ADDR, count=3, dst=(I - 1) - 2 * st + 1, dst_stride=st)
    rq("dst_stride=0,count=1", ok, dst_stride=0)
    rq("dst_stride=0,count=2", e.BAD_IN_ADDR, count=2, dst_stride=0)
    rq("shift=max", ok, shift=(1 << Isa.of(cfg).field_widths[Opcode.REQUANT]["shift"]) - 1)
    rq("order:src>dst", e.BAD_OUT_ADDR, src=O, dst=I)
    rd("addr=max", ok, addr=O - 1)
    rd("addr=max+1", e.BAD_OUT_ADDR, addr=O)
    rd("count=full", ok, count=O)
    rd("count=full+1", e.BAD_OUT_ADDR, count=O + 1)
    rd("end=max", ok, addr=O // 2, count=O - O // 2)
    rd("end=max+1", e.BAD_OUT_ADDR, addr=O // 2, count=O - O // 2 + 1)
    rd("count=0", e.BAD_OUT_ADDR, count=0)
    out.append(("barrier:array=max", Command.barrier(N - 1), ok))
    out.append(("barrier:array=max+1", Command.barrier(N), e.BAD_ARRAY))
    out.append(("barrier:all,array=max+1", Command(Opcode.BARRIER, dict(array=N, local=0)), e.BAD_ARRAY))
    return [(name, cmd, code) for name, cmd, code in out if fits(cfg, cmd)]


def any_command(cfg: HwConfig, rng: Randomness, op: Opcode | None = None) -> Command:
    """Any encodable command (every field fits its width; it may be out of range for ``cfg``), of opcode ``op``
    or any but HALT, with a payload of 1..40 elements when the opcode carries one; ``rng`` as
    :func:`cimisa.streamgen.generate` takes it."""
    isa = Isa.of(cfg)
    ops = [op] if op is not None else [o for o in Opcode if o is not Opcode.HALT]
    o = ops[rng.randint(0, len(ops) - 1)]
    args = {name: rng.randint(0, (1 << isa.field_widths[o][name]) - 1) for name, _kind in FIELDS[o]}
    data: tuple[int, ...] = ()
    if o in PAYLOAD:
        lo, hi = isa.elem_range(PAYLOAD[o])
        count = rng.randint(1, min(40, (1 << isa.field_widths[o]["count"]) - 1))
        args["count"] = count
        data = tuple(rng.randint(lo, hi) for _ in range(count))
    return Command(o, args, data)
