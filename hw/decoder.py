"""Command decoder: splits the word stream into headers and payload words and checks every header."""

from __future__ import annotations

from amaranth import Mux, Signal, unsigned
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from cimisa.isa import ErrorCode, Isa, Opcode, bits_for
from hw._util import check_cfg

__all__ = ["CommandDecoder", "decoded_layout"]


def decoded_layout(cfg) -> data.StructLayout:
    """Return the layout of one decoded stream element.

    Fields:
      ``header``  the command's header (for a payload word: the header of the command it belongs to);
      ``word``    the raw stream word (a payload word's elements);
      ``payload`` 0 for a header, 1 for a payload word;
      ``error``   the :class:`ErrorCode` of a header (:func:`cimisa.semantics.check` plus illegal opcodes);
                  always NONE for payload words;
      ``left``    payload elements still to come, this word's included (payload words only);
      ``final``   this payload word completes its command;
      ``last``    the stream's last word (the ``last`` flag of the input stream).
    """
    cfg = check_cfg(cfg)
    isa = Isa.of(cfg)
    return data.StructLayout({
        "header": isa.header_layout,
        "word": unsigned(isa.word_bits),
        "payload": unsigned(1),
        "error": ErrorCode,
        "left": unsigned(max(bits_for(cfg.cols), bits_for(cfg.in_depth))),
        "final": unsigned(1),
        "last": unsigned(1),
    })


class CommandDecoder(wiring.Component):
    """Command decoder: stream words in, decoded elements (header view + payload words) out.

    Each input word gives exactly one output element. A header's ``error`` is the first failing check, in the
    order of :func:`cimisa.semantics.check`, after the illegal-opcode check. After a legal WRITE_W or LOAD_IN
    header, the next ``ceil(count / per_word)`` words are payload words; an input word with ``last`` set ends
    any payload (the controller reports TRUNCATED).

    Parameters
    ----------
    cfg : HwConfig

    Members
    -------
    cmd : ``In(stream.Signature(isa.cmd_layout))``
    out : ``Out(stream.Signature(decoded_layout(cfg)))``

    Cycle-level contract: one register stage (latency 1 cycle), full throughput;
    ``cmd.ready = ~out.valid | out.ready`` (back-pressure passes through combinationally).
    """

    def __init__(self, cfg):
        self._cfg = cfg = check_cfg(cfg, self)
        self._isa = isa = Isa.of(cfg)
        super().__init__({
            "cmd": In(stream.Signature(isa.cmd_layout)),
            "out": Out(stream.Signature(decoded_layout(cfg))),
        })

    def __repr__(self) -> str:
        return f"CommandDecoder({self._cfg.name!r})"

    def check(self, m: Module, h) -> Signal:
        """Return a signal holding the error code of header view ``h`` (combinational).

        The strided bound ``addr + (n - 1) * stride >= depth`` is checked as ``n * stride >= depth + stride -
        addr`` (the same for ``n >= 1``, which the earlier checks guarantee): the multiplier takes the stream
        word's fields directly and the signed right-hand side is computed beside it, so the decoder's longest
        path is stream word -> multiplier -> comparator -> error register, with no adder before or after the
        multiplier.
        """
        cfg = self._cfg
        err = Signal(ErrorCode)
        legal = h.opcode.as_value().matches(*[op.value for op in Opcode])
        with m.If(~legal):
            m.d.comb += err.eq(ErrorCode.ILLEGAL_OPCODE)
        with m.Elif(h.opcode == Opcode.WRITE_W):
            a = h.args.write_w
            with m.If(a.array >= cfg.n_arrays):
                m.d.comb += err.eq(ErrorCode.BAD_ARRAY)
            with m.Elif(a.row >= cfg.rows):
                m.d.comb += err.eq(ErrorCode.BAD_ROW)
            with m.Elif((a.count == 0) | (a.col + a.count > cfg.logical_cols)):
                m.d.comb += err.eq(ErrorCode.BAD_COL)
        with m.Elif(h.opcode == Opcode.LOAD_IN):
            a = h.args.load_in
            with m.If((a.count == 0) | (a.addr + a.count > cfg.in_depth)):
                m.d.comb += err.eq(ErrorCode.BAD_IN_ADDR)
        with m.Elif(h.opcode == Opcode.MVM):
            a = h.args.mvm
            with m.If(a.array >= cfg.n_arrays):
                m.d.comb += err.eq(ErrorCode.BAD_ARRAY)
            with m.Elif((a.nrows == 0) | (a.row0 + a.nrows > cfg.rows)):
                m.d.comb += err.eq(ErrorCode.BAD_ROW)
            with m.Elif((a.ncols == 0) | (a.col0 + a.ncols > cfg.logical_cols)):
                m.d.comb += err.eq(ErrorCode.BAD_COL)
            with m.Elif((a.adc_bits == 0) | (a.adc_bits > cfg.adc_bits)):
                m.d.comb += err.eq(ErrorCode.BAD_ADC)
            with m.Elif(a.nrows * a.in_stride >= cfg.in_depth + a.in_stride - a.in_addr):   # nrows >= 1 here
                m.d.comb += err.eq(ErrorCode.BAD_IN_ADDR)
            with m.Elif((a.ncols * a.out_stride >= cfg.out_depth + a.out_stride - a.out_addr)   # ncols >= 1
                        | ((a.ncols > 1) & (a.out_stride == 0))):
                m.d.comb += err.eq(ErrorCode.BAD_OUT_ADDR)
        with m.Elif(h.opcode == Opcode.REQUANT):
            a = h.args.requant
            with m.If((a.count == 0) | (a.src + a.count > cfg.out_depth)):
                m.d.comb += err.eq(ErrorCode.BAD_OUT_ADDR)
            with m.Elif((a.count * a.dst_stride >= cfg.in_depth + a.dst_stride - a.dst)   # count >= 1 here
                        | ((a.count > 1) & (a.dst_stride == 0))):
                m.d.comb += err.eq(ErrorCode.BAD_IN_ADDR)
        with m.Elif(h.opcode == Opcode.READ):
            a = h.args.read
            with m.If((a.count == 0) | (a.addr + a.count > cfg.out_depth)):
                m.d.comb += err.eq(ErrorCode.BAD_OUT_ADDR)
        with m.Elif(h.opcode == Opcode.BARRIER):
            with m.If(h.args.barrier.array >= cfg.n_arrays):
                m.d.comb += err.eq(ErrorCode.BAD_ARRAY)
        return err

    def payload_ok(self, h):
        """Return ``(write_ok, load_ok)``: header ``h`` is a legal WRITE_W / LOAD_IN (starts a payload).

        The same conditions as :meth:`check` for these two opcodes, without the MVM/REQUANT checks (their
        multipliers), so the payload bookkeeping stays off the decoder's longest path.
        """
        cfg = self._cfg
        w, ld = h.args.write_w, h.args.load_in
        write_ok = ((h.opcode == Opcode.WRITE_W) & (w.array < cfg.n_arrays) & (w.row < cfg.rows)
                    & (w.count != 0) & (w.col + w.count <= cfg.logical_cols))
        load_ok = (h.opcode == Opcode.LOAD_IN) & (ld.count != 0) & (ld.addr + ld.count <= cfg.in_depth)
        return write_ok, load_ok

    def elaborate(self, platform):
        isa = self._isa
        m = Module()
        word = self.cmd.payload.word
        last = self.cmd.payload.last
        h = data.View(isa.header_layout, word[:isa.header_layout.size])
        err = self.check(m, h)
        write_ok, load_ok = self.payload_ok(h)

        in_payload = Signal()
        hdr = Signal(isa.header_layout)
        left = Signal.like(self.out.payload.left)
        per = Signal(range(max(isa.per_word_weights, isa.per_word_inputs) + 1))
        m.d.comb += per.eq(Mux(hdr.opcode == Opcode.WRITE_W, isa.per_word_weights, isa.per_word_inputs))

        accept = Signal()
        m.d.comb += [
            self.cmd.ready.eq(~self.out.valid | self.out.ready),
            accept.eq(self.cmd.valid & self.cmd.ready),
        ]
        o = self.out.payload
        with m.If(accept):
            m.d.sync += [self.out.valid.eq(1), o.word.eq(word), o.last.eq(last)]
            with m.If(in_payload):
                final = left <= per
                m.d.sync += [
                    o.header.eq(hdr), o.payload.eq(1), o.error.eq(ErrorCode.NONE), o.left.eq(left),
                    o.final.eq(final), left.eq(left - per),
                ]
                with m.If(final):
                    m.d.sync += in_payload.eq(0)
            with m.Else():
                m.d.sync += [o.header.eq(h), o.payload.eq(0), o.error.eq(err), o.left.eq(0), o.final.eq(0)]
                with m.If(write_ok):
                    m.d.sync += [in_payload.eq(1), hdr.eq(h), left.eq(h.args.write_w.count)]
                with m.If(load_ok):
                    m.d.sync += [in_payload.eq(1), hdr.eq(h), left.eq(h.args.load_in.count)]
            with m.If(last):
                m.d.sync += in_payload.eq(0)
        with m.Elif(self.out.ready):
            m.d.sync += self.out.valid.eq(0)
        return m
