"""The MVM sequencer of a controller (:class:`hw.controller.Controller`): its FSM states, from the gather to the
write-back (the datapath registers are the controller's; the ADC stages 2-3 are :mod:`hw.adcbank`)."""

from __future__ import annotations

from amaranth import signed
from amaranth.lib import data

from hw._util import addr_bits
from hw.numfmt import bias_index, drive_value

__all__ = ["mvm_states"]


def mvm_states(m, cfg, r, finish, *, bus=None, lat: int = 1):
    """Add the MVM states (``M_GATHER`` .. ``M_WWAIT2``) to the FSM being built in ``m``.

    ``r`` holds the controller's registers and ports by name (``k``, ``n``, ``xbar``, ``a`` the ADC stage 1, ...);
    ``finish(m, complete)`` ends the command. With ``bus`` (the tile controller's ``(bus_req, bus_gnt, wait)``)
    the write-back waits in ``M_REQ``: ``bus_req`` rises once ``lat - 1`` cycles have passed there, and a grant
    seen in a cycle starts the write-back in the next one (``lat`` cycles after entering ``M_REQ`` at the
    earliest).
    """
    fmt = cfg.fmt
    R, Cn, A, P, B = cfg.rows, cfg.logical_cols, cfg.adcs_per_array, cfg.rows_per_cycle, cfg.input_bits
    D, Q = fmt.digits, fmt.cols_per_weight
    G = R // P
    mv = r.cur.args.mvm
    xbar, st1 = r.xbar, r.st1
    k, n, g, dig, sl, lane, laddr = r.k, r.n, r.g, r.dig, r.sl, r.lane, r.laddr

    with m.State("M_GATHER"):
        m.d.comb += [r.inbuf.rd_en.eq(1), r.inbuf.rd_addr.eq(r.in_ptr)]
        m.d.sync += [
            r.g_v.eq(1), r.g_row.eq(r.row_ptr), r.row_ptr.eq(r.row_ptr + 1), r.in_ptr.eq(r.in_ptr + mv.in_stride),
            k.eq(k + 1),
        ]
        with m.If(k == n - 1):
            m.next = "M_GWAIT"

    with m.State("M_GWAIT"):
        m.d.sync += [g.eq(r.g0), dig.eq(0)]
        m.next = "M_XBAR"

    with m.State("M_XBAR"):
        grp = data.View(data.ArrayLayout(data.ArrayLayout(signed(B), P), G), r.xreg)[g]
        m.d.comb += [
            xbar.rd_en.eq(1), xbar.rd_array.eq(r.local(mv.array)), xbar.rd_group.eq(g),
            xbar.rd_first.eq(g == r.g0),
        ]
        m.d.comb += [xbar.rd_drive[s].eq(drive_value(fmt, grp[s], dig)) for s in range(P)]
        m.d.sync += g.eq(g + 1)
        with m.If(g == r.g1):
            m.next = "M_XWAIT"

    with m.State("M_XWAIT"):           # the last group's read data is in the crossbar's register
        m.next = "M_XWAIT2"

    with m.State("M_XWAIT2"):          # ... and its sums are added in this cycle
        m.d.sync += [k.eq(0), laddr.eq(0), sl.eq(0)]
        m.next = "M_ADC"

    def next_digit():
        m.d.sync += [dig.eq(dig + 1), g.eq(r.g0)]
        with m.If(dig == D - 1):
            m.next = "M_AWAIT"
        with m.Else():
            m.next = "M_XBAR"

    with m.State("M_ADC"):
        # Stage 1: pick A column sums: slice sl of logical columns col0 + k .. col0 + k + A - 1.
        for ln in range(A):
            j = k + ln
            m.d.sync += [
                st1.cs[ln].eq(xbar.colsum[((mv.col0 + j) * Q + sl)[:addr_bits(Cn * Q + A * Q) + 1]]),
                st1.act[ln].eq(j < mv.ncols),
            ]
        m.d.sync += [st1.v.eq(1), st1.addr.eq(laddr), st1.first.eq((dig == 0) & (sl == 0)), st1.bias.eq(0),
                     st1.tix.eq(dig * (Q + 1) + sl), k.eq(k + A), laddr.eq(laddr + 1)]
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
        m.d.sync += [st1.cs[0].eq(xbar.colsum[bias_index(cfg)]), st1.act.eq(0), st1.v.eq(1),
                     st1.first.eq(dig == 0), st1.bias.eq(1), st1.tix.eq(dig * (Q + 1) + Q)]
        next_digit()

    with m.State("M_AWAIT"):           # the last ADC step is in stage 2
        m.next = "M_AWAIT2"

    with m.State("M_AWAIT2"):          # ... and in stage 3 (its write lands at the end of this cycle)
        m.d.sync += [k.eq(0), lane.eq(0), laddr.eq(0), r.out_ptr.eq(mv.out_addr)]
        m.next = "M_WB" if bus is None else "M_REQ"

    if bus is not None:
        bus_req, bus_gnt, wait = bus
        with m.State("M_REQ"):         # wait for the bus (the hop latency, then the arbiter's grant)
            m.d.comb += bus_req.eq(wait == lat - 1)
            with m.If(wait != lat - 1):
                m.d.sync += wait.eq(wait + 1)
            with m.If(bus_gnt):
                m.d.sync += wait.eq(0)
                m.next = "M_WB"

    with m.State("M_WB"):
        m.d.comb += r.in_wb.eq(1)
        m.d.comb += [r.outbuf.rd_en.eq(1), r.outbuf.rd_addr.eq(r.out_ptr)]
        m.d.sync += [r.w_v.eq(1), r.w_lane.eq(lane), r.w_ptr.eq(r.out_ptr), r.out_ptr.eq(r.out_ptr + mv.out_stride),
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
