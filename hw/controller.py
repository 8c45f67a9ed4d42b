"""Controllers: execute decoded commands on the crossbar and the buffers (one tile, or one role in a chip)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from amaranth import Cat, Const, Mux, Signal, signed
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from cimisa.config import ACC_BITS
from cimisa.isa import ErrorCode, Isa, Opcode, RunState
from cimisa.timing import bus_latency
from hw._util import addr_bits, check_cfg, check_int, div_const, mod_const
from hw.adcbank import AdcStage1, adc_bank
from hw.buffers import buffer_port
from hw.crossbar import crossbar_port
from hw.decoder import decoded_layout
from hw.mvmseq import mvm_states
from hw.numfmt import bias_shift, saturate_weight

__all__ = ["Controller", "ROLES"]

#: Controller roles: ``full`` (every opcode: :class:`hw.tile.CimTile`), ``tile`` (MVM and WRITE_W of one tile of
#: :class:`hw.chip.CimChip`, write-back over the chip's bus) and ``global`` (LOAD_IN, REQUANT, READ of a chip).
ROLES = ("full", "tile", "global")


def tile_cfg(cfg):
    """The configuration of one tile's crossbar: ``chip.arrays_per_tile`` arrays."""
    return dataclasses.replace(cfg, n_arrays=cfg.chip.arrays_per_tile)


class Controller(wiring.Component):
    """Controller: sequences the opcodes of its role, emulates the shared ADCs, keeps a status register.

    Commands run one at a time, in order. The controller accepts a decoded element only in its idle state; a
    multi-cycle command holds ``dec.ready`` low until it is done. In role ``full`` (:class:`hw.tile.CimTile`)
    BARRIER is a one-cycle no-op and the status register is the tile's; in a chip (:class:`hw.chip.CimChip`) the
    dispatcher owns the status, a ``tile`` controller runs MVM and WRITE_W on its tile's arrays (header ``array``
    minus ``array_base``) and a ``global`` controller runs LOAD_IN, REQUANT and READ (no crossbar, no ADC lanes).

    Sequencing (``A = adcs_per_array``, ``P = rows_per_cycle``, ``D = fmt.digits``, ``Q = fmt.cols_per_weight``):

    * WRITE_W: the addressed row is read into a row register (1 cycle), then each payload word is aligned with
      its columns (1 cycle; weights saturated to ``fmt.weight_range``) and merged into it (only the lanes of the
      command's logical columns), and the whole row is written back (1 cycle).
    * LOAD_IN: one input element written per cycle.
    * MVM: gather the ``nrows`` inputs (``in_addr + k*in_stride``) into a per-row input register, one per cycle
      (rows outside the window hold 0, so they add nothing); then for each drive cycle ``d`` read the ``G`` row
      groups covering the window with the rows driven ``fmt.drive(x)[d]`` (``P`` rows summed per cycle in the
      crossbar), and convert the window's physical columns through ``A`` ADC lanes (:mod:`hw.adcbank`): slice by
      slice (``q`` = 0..Q-1), ``A`` logical columns per cycle, lane ``l`` always on logical columns ``k + l`` so
      that it shift-adds (by ``digit_weight[d] * slice_weight[q]``) straight into its per-lane accumulator
      memory; then the bias column (``offset``) on lane 0 into the bias register; finally write ``ncols``
      accumulators (plus the old value when ``accumulate``, plus ``bias_weight`` times the bias register) to the
      output buffer at ``out_addr + j*out_stride``, one per cycle. A ``tile`` controller raises ``bus_req``
      before the write-back (``bus_latency(cfg) - 1`` cycles after it is ready to write, so that a grant in
      that cycle starts the write-back ``bus_latency`` cycles after the request) and writes back from the cycle
      after ``bus_gnt``; ``wb`` is high while the write-back still holds the bus in the next cycle.
    * REQUANT: one accumulator per cycle: rounded shift, saturation to ``fmt.input_range``, strided store.
    * READ: one result word per cycle on ``res`` when ``res.ready`` is held high (back-pressure stalls).
    * HALT: state HALTED. Errors from the decoder: state ERROR with that code; the command has no effect.

    ``status.index`` counts completed commands (the index of the failing command, or of HALT). When the element
    with ``last`` set has been executed and the state is still RUNNING, the state becomes ERROR/TRUNCATED.
    Once HALTED or in ERROR, every element is accepted and discarded (role ``full``).

    Parameters
    ----------
    cfg : HwConfig
    role : ``"full"`` | ``"tile"`` | ``"global"``
    array_base : int
        (``tile``) the first array of the tile.

    Members
    -------
    dec : ``In(stream.Signature(decoded_layout(cfg)))``
    res : ``Out(stream.Signature(signed(32)))``
    status : ``Out(isa.status_layout)``
    idle : ``Out(1)``: in the idle state with no command in progress (not between a WRITE_W's payload words)
    xbar : ``Out(crossbar_port(cfg))`` (``full``; ``tile``: a crossbar of ``chip.arrays_per_tile`` arrays)
    inbuf : ``Out(buffer_port(signed(input_bits), in_depth))``
    outbuf : ``Out(buffer_port(signed(32), out_depth))``
    bus_req, wb : ``Out(1)``; bus_gnt : ``In(1)`` (``tile`` only)

    Cycle counts of each command are in ``docs/hw.md``.
    """

    def __init__(self, cfg, role: str = "full", array_base: int = 0):
        self._cfg = cfg = check_cfg(cfg, self)
        if role not in ROLES:
            self._MustUse__silence = True
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        self._role = role
        self._base = check_int("array_base", array_base, 0, cfg.n_arrays - 1, owner=self)
        self._isa = isa = Isa.of(cfg)
        ports = {
            "dec": In(stream.Signature(decoded_layout(cfg))),
            "res": Out(stream.Signature(isa.result_shape)),
            "status": Out(isa.status_layout),
            "idle": Out(1),
            "inbuf": Out(buffer_port(signed(cfg.input_bits), cfg.in_depth)),
            "outbuf": Out(buffer_port(signed(ACC_BITS), cfg.out_depth)),
        }
        if role != "global":
            ports["xbar"] = Out(crossbar_port(tile_cfg(cfg) if role == "tile" else cfg))
        if role == "tile":
            ports.update(bus_req=Out(1), bus_gnt=In(1), wb=Out(1))
        super().__init__(ports)

    @property
    def role(self) -> str:
        """``full``, ``tile`` or ``global``."""
        return self._role

    def __repr__(self) -> str:
        return f"Controller({self._cfg.name!r}, role={self._role!r})"

    def elaborate(self, platform):
        cfg, isa, role = self._cfg, self._isa, self._role
        mvm_on, chip_on = role != "global", role != "tile"
        m = Module()
        fmt = cfg.fmt
        R, Cn, A, P, B = cfg.rows, cfg.logical_cols, cfg.adcs_per_array, cfg.rows_per_cycle, cfg.input_bits
        D, Q = fmt.digits, fmt.cols_per_weight
        G = R // P
        wb = cfg.weight_bits
        acc_depth = -(-Cn // A)

        # ---- status register ---------------------------------------------------------------------------
        state = Signal(RunState)
        error = Signal(ErrorCode)
        index = Signal(isa.index_bits)
        m.d.comb += [self.status.state.eq(state), self.status.error.eq(error), self.status.index.eq(index)]
        running = state == RunState.RUNNING if role == "full" else Const(1)

        d = self.dec.payload
        cur = Signal(isa.header_layout)          # header of the command being executed
        last_pend = Signal()                     # the command's element was the stream's last word
        final_pend = Signal()
        wip = Signal()                           # a WRITE_W / LOAD_IN is between its payload words

        def finish(m, complete):
            """Complete the current element: count the command, apply end-of-stream truncation."""
            m.d.sync += index.eq(index + complete)
            with m.If(last_pend):
                m.d.sync += [state.eq(RunState.ERROR), error.eq(ErrorCode.TRUNCATED)]
            m.next = "IDLE"

        def local(array):
            """The array index in this controller's crossbar."""
            return (array - self._base)[:len(xbar.rd_array)] if role == "tile" else array

        # ---- working registers -------------------------------------------------------------------------
        xbar = self.xbar if mvm_on else None
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
        st1 = AdcStage1.make(cfg, acc_depth)
        w_v = Signal()
        w_lane = Signal.like(lane)
        w_ptr = Signal.like(out_ptr)
        q_v = Signal()
        q_ptr = Signal.like(in_ptr)
        m.d.sync += [g_v.eq(0), st1.v.eq(0), w_v.eq(0), q_v.eq(0)]

        mv = cur.args.mvm
        rq = cur.args.requant
        in_wb = Signal()

        if mvm_on:
            # Gathered input -> input register of its row.
            with m.If(g_v):
                m.d.sync += xreg[g_row].eq(self.inbuf.rd_data)

            # WRITE_W: align the lanes of the decoded payload word with their columns. Loaded every cycle (no
            # enable, to keep the high fan-out off the handshake path); used in W_MERGE, right after the word is
            # accepted.
            wa = cur.args.write_w
            base = Signal(range(Cn + 1))
            m.d.comb += base.eq(wa.col + wa.count - d.left)
            lanes_in = data.View(isa.weight_layout, d.word[:isa.weight_layout.size])
            lanes_v = Cat(*[saturate_weight(fmt, lanes_in[i]) for i in range(isa.per_word_weights)])
            lmask = Cat(*[Mux(i < d.left, Const((1 << wb) - 1, wb), 0) for i in range(isa.per_word_weights)])
            m.d.sync += [w_data.eq((lanes_v << (base * wb))[:Cn * wb]),
                         w_mask.eq((lmask << (base * wb))[:Cn * wb])]

            # ADC stages 2 and 3 (hw.adcbank).
            lane_data, bias_acc = adc_bank(m, cfg, st1, adc_bits=mv.adc_bits, adc_shift=mv.adc_shift,
                                           wb_addr=laddr, in_wb=in_wb)

            # Write-back stage 2: add the accumulator to the old value (or 0); stage 3: store it.
            acc_sel = Signal(signed(ACC_BITS))
            m.d.comb += acc_sel.eq(Cat(*lane_data).word_select(w_lane, ACC_BITS).as_signed()
                                   if A > 1 else lane_data[0])
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
                m.d.comb += [self.outbuf.wr_en.eq(1), self.outbuf.wr_addr.eq(w2_ptr),
                             self.outbuf.wr_data.eq(w_sum)]

        if chip_on:
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

        if role == "tile":
            lat = bus_latency(cfg)
            wait = Signal(range(lat))                    # cycles in M_REQ, saturating at lat - 1

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += [self.dec.ready.eq(1), self.idle.eq(~wip)]
                with m.If(self.dec.valid & running):
                    with m.If(d.error != ErrorCode.NONE):
                        m.d.sync += [state.eq(RunState.ERROR), error.eq(d.error)]
                    with m.Elif(~d.payload):
                        h = d.header
                        m.d.sync += [cur.eq(h), last_pend.eq(d.last)]
                        truncated = Signal()
                        with m.Switch(h.opcode):
                            if mvm_on:
                                with m.Case(Opcode.WRITE_W):
                                    a = h.args.write_w
                                    m.d.comb += [
                                        xbar.rd_en.eq(1), xbar.rd_array.eq(local(a.array)),
                                        xbar.rd_group.eq(div_const(a.row, P)),
                                    ]
                                    m.d.comb += truncated.eq(d.last)
                                    with m.If(~d.last):
                                        m.d.sync += wip.eq(1)
                                        m.next = "W_FETCH"
                            if chip_on:
                                with m.Case(Opcode.LOAD_IN):
                                    m.d.sync += in_ptr.eq(h.args.load_in.addr)
                                    m.d.comb += truncated.eq(d.last)
                                    with m.If(~d.last):
                                        m.d.sync += wip.eq(1)
                            if mvm_on:
                                with m.Case(Opcode.MVM):
                                    a = h.args.mvm
                                    m.d.sync += [
                                        xreg.eq(0), k.eq(0), n.eq(a.nrows), in_ptr.eq(a.in_addr),
                                        row_ptr.eq(a.row0), g0.eq(div_const(a.row0, P)),
                                        g1.eq(div_const(a.row0 + a.nrows - 1, P)),
                                    ]
                                    m.next = "M_GATHER"
                            if chip_on:
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
                            if role == "full":
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
                        if mvm_on:
                            m.next = "W_MERGE"
                    with m.Else():
                        # LOAD_IN payload word: write its lanes one per cycle.
                        m.d.sync += [pw.eq(d.word), n.eq(d.left), k.eq(0), final_pend.eq(d.final),
                                     last_pend.eq(d.last)]
                        if chip_on:
                            m.next = "L_WRITE"

            def end_payload(m):
                """A payload word ends its command (its final word, or the stream's last): no longer in progress."""
                with m.If(final_pend | last_pend):
                    m.d.sync += wip.eq(0)
                finish(m, final_pend)

            if mvm_on:
                with m.State("W_MERGE"):
                    # Merge the aligned lanes into the row register and write the whole row.
                    merged = Signal(Cn * wb)
                    m.d.comb += merged.eq((row_reg.as_value() & ~w_mask) | (w_data & w_mask))
                    m.d.sync += row_reg.eq(merged)
                    m.d.comb += [
                        xbar.wr_en.eq(1), xbar.wr_array.eq(local(cur.args.write_w.array)),
                        xbar.wr_row.eq(cur.args.write_w.row), xbar.wr_data.eq(merged),
                    ]
                    end_payload(m)

                with m.State("W_FETCH"):
                    m.d.sync += row_reg.eq(xbar.rd_rows[mod_const(cur.args.write_w.row, P)])
                    m.next = "IDLE"

            if chip_on:
                with m.State("L_WRITE"):
                    m.d.comb += [
                        self.inbuf.wr_en.eq(1), self.inbuf.wr_addr.eq(in_ptr),
                        self.inbuf.wr_data.eq(pw[:B]),
                    ]
                    m.d.sync += [pw.eq(pw >> B), in_ptr.eq(in_ptr + 1), k.eq(k + 1), n.eq(n - 1)]
                    with m.If((n == 1) | (k == isa.per_word_inputs - 1)):
                        end_payload(m)

            if mvm_on:
                mvm_states(m, cfg, SimpleNamespace(**locals(), inbuf=self.inbuf, outbuf=self.outbuf), finish,
                           bus=(self.bus_req, self.bus_gnt, wait) if role == "tile" else None,
                           lat=bus_latency(cfg))

            if chip_on:
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
        if role == "tile":
            m.d.comb += self.wb.eq(fsm.ongoing("M_WB") | fsm.ongoing("M_WWAIT"))
        return m
