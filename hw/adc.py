"""ADC emulation and digital shift-add for one ADC lane (one register stage)."""

from __future__ import annotations

from amaranth import Const, Mux, Signal, signed, unsigned
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from cimisa.config import ACC_BITS
from cimisa.isa import Isa, Opcode
from hw._util import check_cfg
from hw.numfmt import code_shape, colsum_shape, term_shift_bits

__all__ = ["AdcLane"]


class AdcLane(wiring.Component):
    """One shared ADC: quantises a column sum and shift-adds the code into an accumulator (2 stages).

    ``code = clip(round(colsum / 2**adc_shift), range)`` (:func:`cimisa.rules.adc_code`: ``round`` is the
    configuration's ``adc_rounding``, floor = arithmetic shift, nearest = add ``2**(adc_shift-1)`` first; the
    range is the command's ``adc_bits`` signed, or unsigned ``0..2**adc_bits-1`` when ``unsigned_range``) and
    ``acc_out = acc_in + (code << (amount + adc_shift))``, or minus that when ``neg``, wrapping to ``ACC_BITS``
    bits. ``amount``/``neg`` are ``log2|digit_weight * slice_weight|`` and its sign (:func:`hw.numfmt.shift_table`).

    Parameters
    ----------
    cfg : HwConfig

    Members
    -------
    colsum : ``In(colsum_shape(cfg))``
    adc_bits : ``In`` MVM field width; the command's resolution, 1..cfg.adc_bits (checked by the decoder)
    adc_shift : ``In`` MVM field width; the ADC step is ``2**adc_shift``
    unsigned_range : ``In(1)``, the column's sums cannot be negative (``fmt.unsigned_sum``): unsigned codes
    amount : ``In`` the term's shift before ``adc_shift`` (0..``term_shift_bits(fmt)``)
    neg : ``In(1)``, the term is subtracted
    acc_in : ``In(signed(32))``
    code : ``Out(code_shape(cfg))``
    acc_out : ``Out(signed(32))``

    Cycle-level contract: one register stage. ``colsum``, ``adc_bits``, ``adc_shift``, ``unsigned_range``,
    ``amount`` and ``neg`` are sampled at the end of cycle t (the quantiser: round, saturate); in cycle t+1
    ``code`` shows the code and ``acc_out`` is ``acc_in`` (of cycle t+1, combinationally) plus or minus the
    shifted code. Fully pipelined.
    """

    def __init__(self, cfg):
        self._cfg = cfg = check_cfg(cfg, self)
        widths = Isa.of(cfg).field_widths[Opcode.MVM]
        super().__init__({
            "colsum": In(colsum_shape(cfg)),
            "adc_bits": In(unsigned(widths["adc_bits"])),
            "adc_shift": In(unsigned(widths["adc_shift"])),
            "unsigned_range": In(1),
            "amount": In(unsigned(max(1, term_shift_bits(cfg.fmt).bit_length()))),
            "neg": In(1),
            "acc_in": In(signed(ACC_BITS)),
            "code": Out(code_shape(cfg)),
            "acc_out": Out(signed(ACC_BITS)),
        })

    def __repr__(self) -> str:
        return f"AdcLane({self._cfg.name!r})"

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        cb = cfg.adc_bits
        full = Signal(unsigned(cb + 1))                 # 2**adc_bits
        m.d.comb += full.eq(Const(1, 1) << self.adc_bits)
        hi = Signal(signed(cb + 2))
        lo = Signal(signed(cb + 2))
        m.d.comb += [hi.eq(Mux(self.unsigned_range, full - 1, (full >> 1) - 1)),
                     lo.eq(Mux(self.unsigned_range, 0, -(full >> 1)))]
        # Wide enough for the half step of the largest shift (nearest), so that any sum of less than half a step
        # rounds to 0.
        width = len(self.colsum) + 1
        if cfg.fmt.adc_rounding == "nearest":
            width = max(width, (1 << len(self.adc_shift)) + 1)
        rounded = Signal(signed(width + 1))
        if cfg.fmt.adc_rounding == "nearest":           # round half up: add half a step (none at step 1)
            m.d.comb += rounded.eq(self.colsum + ((Const(1, 1) << self.adc_shift) >> 1))
        else:
            m.d.comb += rounded.eq(self.colsum)
        shifted = Signal(signed(width + 1))
        m.d.comb += shifted.eq(rounded >> self.adc_shift)
        amount = Signal(max(len(self.amount), len(self.adc_shift)) + 1)
        neg = Signal()
        m.d.sync += [
            self.code.eq(Mux(shifted > hi, hi, Mux(shifted < lo, lo, shifted))),
            amount.eq(self.amount + self.adc_shift),
            neg.eq(self.neg),
        ]
        term = Signal(signed(ACC_BITS))
        m.d.comb += term.eq(self.code << amount)      # sign-extends or truncates to ACC_BITS
        m.d.comb += self.acc_out.eq(Mux(neg, self.acc_in - term, self.acc_in + term)[:ACC_BITS])
        return m
