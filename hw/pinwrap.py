"""A two-pin wrapper around the RTL top (:func:`hw.chip.top`: a tile or a chip) for FPGA resource and timing reports."""

from __future__ import annotations

from amaranth import Cat, Signal
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw._util import check_cfg
from hw.chip import top

__all__ = ["PinWrapper"]


class PinWrapper(wiring.Component):
    """Serial-in / XOR-out wrapper so the tile's ~140 ports fit any FPGA package.

    Every input of the tile (``cmd`` valid/payload, ``res.ready``) comes from a shift register fed by ``sin``;
    every output (``cmd.ready``, ``res`` valid/payload, ``status``) is registered and XOR-reduced onto ``sout``.
    Nothing is constant and everything is observable, so synthesis keeps the whole tile; the wrapper adds one
    flip-flop per port bit and a few LUTs (reported as part of the design: an upper bound on the tile alone).

    Parameters
    ----------
    cfg : HwConfig

    Members
    -------
    sin : ``In(1)``
    sout : ``Out(1)``
    """

    def __init__(self, cfg):
        self._cfg = check_cfg(cfg, self)
        super().__init__({"sin": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tile = tile = top(self._cfg)
        ins = Cat(tile.cmd.valid, tile.cmd.payload, tile.res.ready)
        shreg = Signal(len(ins))
        m.d.sync += shreg.eq(Cat(self.sin, shreg[:-1]))
        m.d.comb += ins.eq(shreg)
        outs = Cat(tile.cmd.ready, tile.res.valid, tile.res.payload, tile.status)
        oreg = Signal(len(outs))
        m.d.sync += [oreg.eq(outs), self.sout.eq(oreg.xor())]
        return m
