"""The ADC bank of one MVM engine: ``adcs_per_array`` ADC lanes, their accumulator memories and the forward path.

Built into the module of the controller that drives it (:func:`adc_bank`), so its registers keep the controller's
names; the controller's MVM sequencer feeds stage 1 and reads the accumulators back during the write-back.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Mux, Signal, signed
from amaranth.hdl import Module

from cimisa.config import ACC_BITS
from hw.adc import AdcLane
from hw.buffers import Buffer
from hw.numfmt import colsum_shape, const_table, shift_table

__all__ = ["AdcStage1", "adc_bank"]


@dataclass
class AdcStage1:
    """Stage-1 registers of one conversion round, loaded by the sequencer (``a_*`` in the controller)."""

    v: Signal        # the round is valid
    addr: Signal     # accumulator address (logical column // A)
    cs: list         # the column sum of each lane
    act: Signal      # lanes holding a logical column of the window
    first: Signal    # the round initialises its accumulators (d = 0, q = 0)
    bias: Signal     # the round converts the bias column (lane 0)
    tix: Signal      # index into the (digit, slice) shift tables

    @classmethod
    def make(cls, cfg, acc_depth: int) -> AdcStage1:
        """Fresh stage-1 registers for ``cfg``'s lanes."""
        A = cfg.adcs_per_array
        return cls(Signal(name="a_v"), Signal(range(acc_depth + 1), name="a_addr"),
                   [Signal(colsum_shape(cfg), name=f"a_cs{lane}") for lane in range(A)], Signal(A, name="a_act"),
                   Signal(name="a_first"), Signal(name="a_bias"),
                   Signal(range(len(shift_table(cfg.fmt))), name="a_tix"))


def adc_bank(m: Module, cfg, a: AdcStage1, *, adc_bits, adc_shift, wb_addr, in_wb):
    """Build the lanes in ``m``: stage 2 quantises (inside the lanes) and reads the accumulators, stage 3
    shift-adds and writes them back. A round that reads the address the previous round writes (one round per
    slice, only with several slices) takes the value being written (the lane memories are not transparent).

    ``in_wb`` switches the accumulator read address to ``wb_addr`` (the write-back). Returns ``(rd_data,
    bias_acc)``: each lane's accumulator read data (one cycle after the address) and the bias register.
    """
    fmt = cfg.fmt
    A, Q = cfg.adcs_per_array, fmt.cols_per_weight
    acc_depth = -(-cfg.logical_cols // A)
    lanes, adcs = [], []
    for lane in range(A):
        buf = Buffer(signed(ACC_BITS), max(2, acc_depth))
        adc = AdcLane(cfg)
        m.submodules[f"acc{lane}"] = buf
        m.submodules[f"adc{lane}"] = adc
        lanes.append(buf.port)
        adcs.append(adc)
    table = shift_table(fmt)
    t_amt = const_table([t[0] for t in table], max(1, max(t[0] for t in table).bit_length()))
    t_neg = const_table([int(t[1]) for t in table], 1)
    t_uns = const_table([int(t[2]) for t in table], 1)

    b_v = Signal()
    b_act = Signal(A)
    b_addr = Signal.like(a.addr)
    b_first = Signal()
    b_bias = Signal()
    b_hit = Signal(A)
    fwd = [Signal(signed(ACC_BITS), name=f"fwd{lane}") for lane in range(A)]
    bias_acc = Signal(signed(ACC_BITS))
    m.d.sync += [b_v.eq(a.v), b_act.eq(a.act), b_addr.eq(a.addr), b_first.eq(a.first), b_bias.eq(a.bias),
                 b_hit.eq(Mux(a.v & b_v & (a.addr == b_addr), b_act, 0) if Q > 1 else 0)]
    for lane in range(A):
        adc = adcs[lane]
        old = Mux(b_hit[lane], fwd[lane], lanes[lane].rd_data)
        if lane == 0 and fmt.bias_cols:
            old = Mux(b_bias, bias_acc, old)
        m.d.comb += [
            adc.colsum.eq(a.cs[lane]), adc.adc_bits.eq(adc_bits), adc.adc_shift.eq(adc_shift),
            adc.amount.eq(t_amt[a.tix]), adc.neg.eq(t_neg[a.tix]), adc.unsigned_range.eq(t_uns[a.tix]),
            adc.acc_in.eq(Mux(b_first, 0, old)),
            lanes[lane].rd_addr.eq(Mux(in_wb, wb_addr, a.addr)),
            lanes[lane].wr_addr.eq(b_addr), lanes[lane].wr_data.eq(adc.acc_out),
            lanes[lane].wr_en.eq(b_v & b_act[lane]),
            lanes[lane].rd_en.eq(1),
        ]
        if Q > 1:
            m.d.sync += fwd[lane].eq(adc.acc_out)
    if fmt.bias_cols:
        with m.If(b_v & b_bias):
            m.d.sync += bias_acc.eq(adcs[0].acc_out)
    return [ln.rd_data for ln in lanes], bias_acc
