"""ADC emulation and digital shift-add for one ADC lane (combinational)."""

from __future__ import annotations

from amaranth import Const, Mux, Signal, signed, unsigned
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from cimisa.config import ACC_BITS
from cimisa.isa import Isa, Opcode
from hw._util import check_cfg

__all__ = ["AdcLane"]


class AdcLane(wiring.Component):
    """One shared ADC: quantises a column sum and shift-adds the code into an accumulator (2 stages).

    ``code = clip(colsum >> adc_shift, -2**(adc_bits-1), 2**(adc_bits-1)-1)`` (arithmetic shift, then
    saturation to the command's resolution) and ``acc_out = acc_in + (code << (bit + adc_shift))``, or minus
    that for the input's sign bit (``msb``), wrapping to ``ACC_BITS`` bits (see :mod:`cimisa.semantics`).

    Parameters
    ----------
    cfg : HwConfig

    Members
    -------
    colsum : ``In(signed(lossless_adc_bits))``
    adc_bits : ``In`` MVM field width; the command's resolution, 1..cfg.adc_bits (checked by the decoder)
    adc_shift : ``In`` MVM field width; the ADC step is ``2**adc_shift``
    bit : ``In`` input-bit index ``b`` (0..input_bits-1)
    msb : ``In(1)``, 1 for the sign bit (its term is subtracted)
    acc_in : ``In(signed(32))``
    code : ``Out(signed(cfg.adc_bits))``
    acc_out : ``Out(signed(32))``

    Cycle-level contract: one register stage. ``colsum``, ``adc_bits``, ``adc_shift``, ``bit`` and ``msb`` are
    sampled at the end of cycle t (the quantiser: shift, saturate); in cycle t+1 ``code`` shows the code and
    ``acc_out`` is ``acc_in`` (of cycle t+1, combinationally) plus or minus the shifted code. Fully pipelined.
    """

    def __init__(self, cfg):
        self._cfg = cfg = check_cfg(cfg, self)
        widths = Isa.of(cfg).field_widths[Opcode.MVM]
        super().__init__({
            "colsum": In(signed(cfg.lossless_adc_bits)),
            "adc_bits": In(unsigned(widths["adc_bits"])),
            "adc_shift": In(unsigned(widths["adc_shift"])),
            "bit": In(unsigned(max(1, (cfg.input_bits - 1).bit_length()))),
            "msb": In(1),
            "acc_in": In(signed(ACC_BITS)),
            "code": Out(signed(cfg.adc_bits)),
            "acc_out": Out(signed(ACC_BITS)),
        })

    def __repr__(self) -> str:
        return f"AdcLane({self._cfg.name!r})"

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        half = Signal(unsigned(cfg.adc_bits))          # 2**(adc_bits-1)
        m.d.comb += half.eq((Const(1, 1) << self.adc_bits) >> 1)
        hi = Signal(signed(cfg.adc_bits + 1))
        lo = Signal(signed(cfg.adc_bits + 1))
        m.d.comb += [hi.eq(half - 1), lo.eq(-half)]
        shifted = Signal(signed(cfg.lossless_adc_bits))
        m.d.comb += shifted.eq(self.colsum >> self.adc_shift)
        amount = Signal(max(len(self.bit), len(self.adc_shift)) + 1)
        msb = Signal()
        m.d.sync += [
            self.code.eq(Mux(shifted > hi, hi, Mux(shifted < lo, lo, shifted))),
            amount.eq(self.bit + self.adc_shift),
            msb.eq(self.msb),
        ]
        term = Signal(signed(ACC_BITS))
        m.d.comb += term.eq(self.code << amount)      # sign-extends or truncates to ACC_BITS
        m.d.comb += self.acc_out.eq(Mux(msb, self.acc_in - term, self.acc_in + term)[:ACC_BITS])
        return m
