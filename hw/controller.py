"""Tile controller: executes decoded commands on the crossbar and the buffers; owns the status register."""

from __future__ import annotations

from amaranth import Cat, Const, Mux, Signal, signed
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from cimisa.config import ACC_BITS
from cimisa.isa import ErrorCode, Isa, Opcode, RunState
from hw._util import addr_bits, check_cfg, div_const, mod_const
from hw.adc import AdcLane
from hw.buffers import Buffer, buffer_port
from hw.crossbar import crossbar_port
from hw.decoder import decoded_layout
from hw.numfmt import bias_index, bias_shift, colsum_shape, const_table, drive_value, saturate_weight, shift_table

__all__ = ["Controller"]


class Controller(wiring.Component):
    """Tile controller: sequences every opcode, emulates the shared ADCs, keeps the status register.

    Commands run one at a time, in order (so BARRIER is a one-cycle no-op). The controller accepts a decoded
    element only in its idle state; a multi-cycle command holds ``dec.ready`` low until it is done.

    Sequencing (``A = adcs_per_array``, ``P = rows_per_cycle``, ``D = fmt.digits``, ``Q = fmt.cols_per_weight``):

    * WRITE_W: the addressed row is read into a row register (1 cycle), then each payload word is aligned with
      its columns (1 cycle; weights saturated to ``fmt.weight_range``) and merged into it (only the lanes of the
      command's logical columns), and the whole row is written back (1 cycle).
    * LOAD_IN: one input element written per cycle.
    * MVM: gather the ``nrows`` inputs (``in_addr + k*in_stride``) into a per-row input register, one per cycle
      (rows outside the window hold 0, so they add nothing); then for each drive cycle ``d`` read the ``G`` row
      groups covering the window with the rows driven ``fmt.drive(x)[d]`` (``P`` rows summed per cycle in the
      crossbar), and convert the window's physical columns through ``A`` ADC lanes: slice by slice (``q`` =
      0..Q-1), ``A`` logical columns per cycle, lane ``l`` always on logical columns ``k + l`` so that it
      shift-adds (by ``digit_weight[d] * slice_weight[q]``) straight into its per-lane accumulator memory; then
      the bias column (``offset``) on lane 0 into the bias register; finally write ``ncols`` accumulators (plus
      the old value when ``accumulate``, plus ``bias_weight`` times the bias register) to the output buffer at
      ``out_addr + j*out_stride``, one per cycle.
    * REQUANT: one accumulator per cycle: rounded shift, saturation to ``fmt.input_range``, strided store.
    * READ: one result word per cycle on ``res`` when ``res.ready`` is held high (back-pressure stalls).
    * HALT: state HALTED. Errors from the decoder: state ERROR with that code; the command has no effect.

    ``status.index`` counts completed commands (the index of the failing command, or of HALT). When the element
    with ``last`` set has been executed and the state is still RUNNING, the state becomes ERROR/TRUNCATED.
    Once HALTED or in ERROR, every element is accepted and discarded.

    Parameters
    ----------
    cfg : HwConfig

    Members
    -------
    dec : ``In(stream.Signature(decoded_layout(cfg)))``
    res : ``Out(stream.Signature(signed(32)))``
    status : ``Out(isa.status_layout)``
    xbar : ``Out(crossbar_port(cfg))``
    inbuf : ``Out(buffer_port(signed(input_bits), in_depth))``
    outbuf : ``Out(buffer_port(signed(32), out_depth))``

    Cycle counts of each command are in ``docs/hw.md``.
    """

    def __init__(self, cfg):
        self._cfg = cfg = check_cfg(cfg, self)
        self._isa = isa = Isa.of(cfg)
        super().__init__({
            "dec": In(stream.Signature(decoded_layout(cfg))),
            "res": Out(stream.Signature(isa.result_shape)),
            "status": Out(isa.status_layout),
            "xbar": Out(crossbar_port(cfg)),
            "inbuf": Out(buffer_port(signed(cfg.input_bits), cfg.in_depth)),
            "outbuf": Out(buffer_port(signed(ACC_BITS), cfg.out_depth)),
        })

    def __repr__(self) -> str:
        return f"Controller({self._cfg.name!r})"

    def elaborate(self, platform):
        cfg, isa = self._cfg, self._isa
        m = Module()
        fmt = cfg.fmt
        R, Cn, A, P, B = cfg.rows, cfg.logical_cols, cfg.adcs_per_array, cfg.rows_per_cycle, cfg.input_bits
        D, Q = fmt.digits, fmt.cols_per_weight
        G = R // P
        wb = cfg.weight_bits
        acc_depth = -(-Cn // A)

        # ---- accumulator lanes and ADCs ---------------------------------------------------------------
        lanes, adcs = [], []
        for l in range(A):
            buf = Buffer(signed(ACC_BITS), max(2, acc_depth))
            adc = AdcLane(cfg)
            m.submodules[f"acc{l}"] = buf
            m.submodules[f"adc{l}"] = adc
            lanes.append(buf.port)
            adcs.append(adc)

        # ---- status register ---------------------------------------------------------------------------
        state = Signal(RunState)
        error = Signal(ErrorCode)
        index = Signal(isa.index_bits)
        m.d.comb += [self.status.state.eq(state), self.status.error.eq(error), self.status.index.eq(index)]
        running = state == RunState.RUNNING

        d = self.dec.payload
        cur = Signal(isa.header_layout)          # header of the command being executed
        last_pend = Signal()                     # the command's element was the stream's last word
        final_pend = Signal()

        def finish(m, complete):
            """Complete the current element: count the command, apply end-of-stream truncation."""
            m.d.sync += index.eq(index + complete)
            with m.If(last_pend):
                m.d.sync += [state.eq(RunState.ERROR), error.eq(ErrorCode.TRUNCATED)]
            m.next = "IDLE"

        # ---- working registers -------------------------------------------------------------------------
        xbar = self.xbar
        row_reg = Signal(data.ArrayLayout(signed(wb), Cn))
        xreg = Signal(data.ArrayLayout(signed(B), R))   # gathered inputs, by physical row
        k = Signal(range(max(R, Cn, cfg.out_depth, cfg.in_depth, isa.per_word_inputs) + 1))
        n = Signal.like(k)                               # element count of the current loop
        in_ptr = Signal(addr_bits(cfg.in_depth) + 1)
        out_ptr = Signal(addr_bits(cfg.out_depth) + 1)
        row_ptr = Signal(range(R + 1))
        g = Signal(range(G + 1))
        g0 = Signal(range(G))
        g1 = Signal(range(G))
        dig = Signal(range(D))                           # drive cycle
        sl = Signal(range(Q))                            # slice (physical column of a weight)
        lane = Signal(range(A))
        laddr = Signal(range(acc_depth + 1))
        pw = Signal(isa.word_bits)                       # LOAD_IN payload word, shifted one lane per cycle
        w_data = Signal(Cn * wb)                         # WRITE_W payload lanes aligned with their columns
        w_mask = Signal(Cn * wb)
        rv = Signal()                                    # READ: res.valid
        rnd = Signal(ACC_BITS)                           # REQUANT rounding constant

        # Pipeline registers of the one-cycle memory reads.
        g_v = Signal()
        g_row = Signal(range(R))
        a_v = Signal()
        a_addr = Signal.like(laddr)
        a_cs = [Signal(colsum_shape(cfg), name=f"a_cs{l}") for l in range(A)]
        a_act = Signal(A)
        a_first = Signal()                               # the round initialises its accumulators (d = 0, q = 0)
        a_bias = Signal()                                # the round converts the bias column (lane 0)
        table = shift_table(fmt)
        t_amt = const_table([t[0] for t in table], max(1, max(t[0] for t in table).bit_length()))
        t_neg = const_table([int(t[1]) for t in table], 1)
        t_uns = const_table([int(t[2]) for t in table], 1)
        a_tix = Signal(range(len(table)))                # index into the (d, q) tables
        w_v = Signal()
        w_lane = Signal.like(lane)
        w_ptr = Signal.like(out_ptr)
        q_v = Signal()
        q_ptr = Signal.like(in_ptr)
        m.d.sync += [g_v.eq(0), a_v.eq(0), w_v.eq(0), q_v.eq(0)]

        mv = cur.args.mvm
        rq = cur.args.requant

        # Gathered input -> input register of its row.
        with m.If(g_v):
            m.d.sync += xreg[g_row].eq(self.inbuf.rd_data)

        # WRITE_W: align the lanes of the decoded payload word with their columns. Loaded every cycle (no enable,
        # to keep the high fan-out off the handshake path); used in W_MERGE, right after the word is accepted.
        wa = cur.args.write_w
        base = Signal(range(Cn + 1))
        m.d.comb += base.eq(wa.col + wa.count - d.left)
        lanes_in = data.View(isa.weight_layout, d.word[:isa.weight_layout.size])
        lanes_v = Cat(*[saturate_weight(fmt, lanes_in[i]) for i in range(isa.per_word_weights)])
        lmask = Cat(*[Mux(i < d.left, Const((1 << wb) - 1, wb), 0) for i in range(isa.per_word_weights)])
        m.d.sync += [w_data.eq((lanes_v << (base * wb))[:Cn * wb]), w_mask.eq((lmask << (base * wb))[:Cn * wb])]

        # ADC stage 2: quantise (inside the lanes) and read the accumulators; stage 3: shift-add and write back.
        # A round that reads the address the previous round writes (one round per slice, only with several slices)
        # takes the value being written (the lane memories are not transparent).
        b_v = Signal()
        b_act = Signal(A)
        b_addr = Signal.like(laddr)
        b_first = Signal()
        b_bias = Signal()
        b_hit = Signal(A)
        fwd = [Signal(signed(ACC_BITS), name=f"fwd{l}") for l in range(A)]
        bias_acc = Signal(signed(ACC_BITS))
        m.d.sync += [b_v.eq(a_v), b_act.eq(a_act), b_addr.eq(a_addr), b_first.eq(a_first), b_bias.eq(a_bias),
                     b_hit.eq(Mux(a_v & b_v & (a_addr == b_addr), b_act, 0) if Q > 1 else 0)]
        in_wb = Signal()
        for l in range(A):
            adc = adcs[l]
            old = Mux(b_hit[l], fwd[l], lanes[l].rd_data)
            if l == 0 and fmt.bias_cols:
                old = Mux(b_bias, bias_acc, old)
            m.d.comb += [
                adc.colsum.eq(a_cs[l]), adc.adc_bits.eq(mv.adc_bits), adc.adc_shift.eq(mv.adc_shift),
                adc.amount.eq(t_amt[a_tix]), adc.neg.eq(t_neg[a_tix]), adc.unsigned_range.eq(t_uns[a_tix]),
                adc.acc_in.eq(Mux(b_first, 0, old)),
                lanes[l].rd_addr.eq(Mux(in_wb, laddr, a_addr)),
                lanes[l].wr_addr.eq(b_addr), lanes[l].wr_data.eq(adc.acc_out),
                lanes[l].wr_en.eq(b_v & b_act[l]),
                lanes[l].rd_en.eq(1),
            ]
            if Q > 1:
                m.d.sync += fwd[l].eq(adc.acc_out)
        if fmt.bias_cols:
            with m.If(b_v & b_bias):
                m.d.sync += bias_acc.eq(adcs[0].acc_out)

        # Write-back stage 2: add the accumulator to the old value (or 0); stage 3: store it.
        acc_sel = Signal(signed(ACC_BITS))
        m.d.comb += acc_sel.eq(Cat(*[ln.rd_data for ln in lanes]).word_select(w_lane, ACC_BITS).as_signed()
                               if A > 1 else lanes[0].rd_data)
        w2_v = Signal()
        w2_ptr = Signal.like(w_ptr)
        w_sum = Signal(signed(ACC_BITS))
        bias_term = 0
        if fmt.bias_cols:                                # bias_weight * the bias column's value
            bsh, bneg = bias_shift(fmt)
            bias_term = -(bias_acc << bsh) if bneg else (bias_acc << bsh)
        m.d.sync += [w2_v.eq(w_v), w2_ptr.eq(w_ptr),
                     w_sum.eq(Mux(mv.accumulate, self.outbuf.rd_data, 0) + acc_sel + bias_term)]
        with m.If(w2_v):
            m.d.comb += [self.outbuf.wr_en.eq(1), self.outbuf.wr_addr.eq(w2_ptr), self.outbuf.wr_data.eq(w_sum)]

        # REQUANT stage 2: add the rounding constant; stage 3: arithmetic shift; stage 4: saturate and store.
        ilo, ihi = fmt.input_range
        q_sum = Signal(signed(ACC_BITS + 2))
        q_val = Signal(signed(ACC_BITS + 2))
        q2_v, q3_v = Signal(), Signal()
        q2_ptr, q3_ptr = Signal.like(in_ptr), Signal.like(in_ptr)
        m.d.sync += [
            q_sum.eq(self.outbuf.rd_data + rnd), q2_v.eq(q_v), q2_ptr.eq(q_ptr),
            q_val.eq(q_sum >> rq.shift), q3_v.eq(q2_v), q3_ptr.eq(q2_ptr),
        ]
        with m.If(q3_v):
            m.d.comb += [
                self.inbuf.wr_en.eq(1), self.inbuf.wr_addr.eq(q3_ptr),
                self.inbuf.wr_data.eq(Mux(q_val > ihi, ihi, Mux(q_val < ilo, ilo, q_val))),
            ]

        m.d.comb += [self.res.payload.eq(self.outbuf.rd_data), self.res.valid.eq(rv)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.dec.ready.eq(1)
                with m.If(self.dec.valid & running):
                    with m.If(d.error != ErrorCode.NONE):
                        m.d.sync += [state.eq(RunState.ERROR), error.eq(d.error)]
                    with m.Elif(~d.payload):
                        h = d.header
                        m.d.sync += [cur.eq(h), last_pend.eq(d.last)]
                        truncated = Signal()
                        with m.Switch(h.opcode):
                            with m.Case(Opcode.WRITE_W):
                                a = h.args.write_w
                                m.d.comb += [
                                    xbar.rd_en.eq(1), xbar.rd_array.eq(a.array),
                                    xbar.rd_group.eq(div_const(a.row, P)),
                                ]
                                m.d.comb += truncated.eq(d.last)
                                with m.If(~d.last):
                                    m.next = "W_FETCH"
                            with m.Case(Opcode.LOAD_IN):
                                m.d.sync += in_ptr.eq(h.args.load_in.addr)
                                m.d.comb += truncated.eq(d.last)
                            with m.Case(Opcode.MVM):
                                a = h.args.mvm
                                m.d.sync += [
                                    xreg.eq(0), k.eq(0), n.eq(a.nrows), in_ptr.eq(a.in_addr), row_ptr.eq(a.row0),
                                    g0.eq(div_const(a.row0, P)), g1.eq(div_const(a.row0 + a.nrows - 1, P)),
                                ]
                                m.next = "M_GATHER"
                            with m.Case(Opcode.REQUANT):
                                a = h.args.requant
                                m.d.sync += [
                                    k.eq(0), n.eq(a.count), out_ptr.eq(a.src), in_ptr.eq(a.dst),
                                    rnd.eq(((Const(1, 1) << a.shift) >> 1)[:ACC_BITS]),
                                ]
                                m.next = "RQ"
                            with m.Case(Opcode.READ):
                                a = h.args.read
                                m.d.sync += [n.eq(a.count), out_ptr.eq(a.addr), rv.eq(0)]
                                m.next = "RD"
                            with m.Case(Opcode.BARRIER):
                                m.d.sync += index.eq(index + 1)
                                m.d.comb += truncated.eq(d.last)
                            with m.Case(Opcode.HALT):
                                m.d.sync += state.eq(RunState.HALTED)
                        with m.If(truncated):
                            m.d.sync += [state.eq(RunState.ERROR), error.eq(ErrorCode.TRUNCATED)]
                    with m.Elif(cur.opcode == Opcode.WRITE_W):
                        # w_data/w_mask (loaded every cycle) now hold this word's aligned lanes.
                        m.d.sync += [final_pend.eq(d.final), last_pend.eq(d.last)]
                        m.next = "W_MERGE"
                    with m.Else():
                        # LOAD_IN payload word: write its lanes one per cycle.
                        m.d.sync += [pw.eq(d.word), n.eq(d.left), k.eq(0), final_pend.eq(d.final),
                                     last_pend.eq(d.last)]
                        m.next = "L_WRITE"

            with m.State("W_MERGE"):
                # Merge the aligned lanes into the row register and write the whole row.
                merged = Signal(Cn * wb)
                m.d.comb += merged.eq((row_reg.as_value() & ~w_mask) | (w_data & w_mask))
                m.d.sync += row_reg.eq(merged)
                m.d.comb += [
                    xbar.wr_en.eq(1), xbar.wr_array.eq(cur.args.write_w.array),
                    xbar.wr_row.eq(cur.args.write_w.row), xbar.wr_data.eq(merged),
                ]
                finish(m, final_pend)

            with m.State("W_FETCH"):
                m.d.sync += row_reg.eq(xbar.rd_rows[mod_const(cur.args.write_w.row, P)])
                m.next = "IDLE"

            with m.State("L_WRITE"):
                m.d.comb += [
                    self.inbuf.wr_en.eq(1), self.inbuf.wr_addr.eq(in_ptr),
                    self.inbuf.wr_data.eq(pw[:B]),
                ]
                m.d.sync += [pw.eq(pw >> B), in_ptr.eq(in_ptr + 1), k.eq(k + 1), n.eq(n - 1)]
                with m.If((n == 1) | (k == isa.per_word_inputs - 1)):
                    finish(m, final_pend)

            with m.State("M_GATHER"):
                m.d.comb += [self.inbuf.rd_en.eq(1), self.inbuf.rd_addr.eq(in_ptr)]
                m.d.sync += [
                    g_v.eq(1), g_row.eq(row_ptr), row_ptr.eq(row_ptr + 1), in_ptr.eq(in_ptr + mv.in_stride),
                    k.eq(k + 1),
                ]
                with m.If(k == n - 1):
                    m.next = "M_GWAIT"

            with m.State("M_GWAIT"):
                m.d.sync += [g.eq(g0), dig.eq(0)]
                m.next = "M_XBAR"

            with m.State("M_XBAR"):
                grp = data.View(data.ArrayLayout(data.ArrayLayout(signed(B), P), G), xreg)[g]
                m.d.comb += [
                    xbar.rd_en.eq(1), xbar.rd_array.eq(mv.array), xbar.rd_group.eq(g),
                    xbar.rd_first.eq(g == g0),
                ]
                m.d.comb += [xbar.rd_drive[s].eq(drive_value(fmt, grp[s], dig)) for s in range(P)]
                m.d.sync += g.eq(g + 1)
                with m.If(g == g1):
                    m.next = "M_XWAIT"

            with m.State("M_XWAIT"):
                m.d.sync += [k.eq(0), laddr.eq(0), sl.eq(0)]
                m.next = "M_ADC"

            def next_digit():
                m.d.sync += [dig.eq(dig + 1), g.eq(g0)]
                with m.If(dig == D - 1):
                    m.next = "M_AWAIT"
                with m.Else():
                    m.next = "M_XBAR"

            with m.State("M_ADC"):
                # Stage 1: pick A column sums: slice sl of logical columns col0 + k .. col0 + k + A - 1.
                for l in range(A):
                    j = k + l
                    m.d.sync += [
                        a_cs[l].eq(xbar.colsum[((mv.col0 + j) * Q + sl)[:addr_bits(Cn * Q + A * Q) + 1]]),
                        a_act[l].eq(j < mv.ncols),
                    ]
                m.d.sync += [a_v.eq(1), a_addr.eq(laddr), a_first.eq((dig == 0) & (sl == 0)), a_bias.eq(0),
                             a_tix.eq(dig * (Q + 1) + sl), k.eq(k + A), laddr.eq(laddr + 1)]
                with m.If(k + A >= mv.ncols):
                    m.d.sync += [k.eq(0), laddr.eq(0), sl.eq(sl + 1)]
                    with m.If(sl == Q - 1):
                        m.d.sync += sl.eq(0)
                        if fmt.bias_cols:
                            m.next = "M_BIAS"
                        else:
                            next_digit()

            with m.State("M_BIAS"):
                # Stage 1 of the bias column's conversion (lane 0, into the bias register).
                m.d.sync += [a_cs[0].eq(xbar.colsum[bias_index(cfg)]), a_act.eq(0), a_v.eq(1),
                             a_first.eq(dig == 0), a_bias.eq(1), a_tix.eq(dig * (Q + 1) + Q)]
                next_digit()

            with m.State("M_AWAIT"):           # the last ADC step is in stage 2
                m.next = "M_AWAIT2"

            with m.State("M_AWAIT2"):          # ... and in stage 3 (its write lands at the end of this cycle)
                m.d.sync += [k.eq(0), lane.eq(0), laddr.eq(0), out_ptr.eq(mv.out_addr)]
                m.next = "M_WB"

            with m.State("M_WB"):
                m.d.comb += in_wb.eq(1)
                m.d.comb += [self.outbuf.rd_en.eq(1), self.outbuf.rd_addr.eq(out_ptr)]
                m.d.sync += [w_v.eq(1), w_lane.eq(lane), w_ptr.eq(out_ptr), out_ptr.eq(out_ptr + mv.out_stride),
                             k.eq(k + 1)]
                with m.If(lane == A - 1):
                    m.d.sync += [lane.eq(0), laddr.eq(laddr + 1)]
                with m.Else():
                    m.d.sync += lane.eq(lane + 1)
                with m.If(k == mv.ncols - 1):
                    m.next = "M_WWAIT"

            with m.State("M_WWAIT"):
                m.next = "M_WWAIT2"

            with m.State("M_WWAIT2"):
                finish(m, 1)

            with m.State("RQ"):
                m.d.comb += [self.outbuf.rd_en.eq(1), self.outbuf.rd_addr.eq(out_ptr)]
                m.d.sync += [q_v.eq(1), q_ptr.eq(in_ptr), in_ptr.eq(in_ptr + rq.dst_stride),
                             out_ptr.eq(out_ptr + 1), k.eq(k + 1)]
                with m.If(k == n - 1):
                    m.next = "RQ_WAIT"

            with m.State("RQ_WAIT"):
                m.next = "RQ_WAIT2"

            with m.State("RQ_WAIT2"):
                m.next = "RQ_WAIT3"

            with m.State("RQ_WAIT3"):
                finish(m, 1)

            with m.State("RD"):
                advance = ~rv | self.res.ready
                m.d.comb += [self.outbuf.rd_en.eq(advance & (n != 0)), self.outbuf.rd_addr.eq(out_ptr)]
                with m.If(advance):
                    m.d.sync += rv.eq(n != 0)
                    with m.If(n != 0):
                        m.d.sync += [out_ptr.eq(out_ptr + 1), n.eq(n - 1)]
                    with m.Else():
                        finish(m, 1)
        return m
