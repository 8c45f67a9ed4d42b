"""The CIM tile: command decoder, controller, crossbar emulation and buffers, wired together."""

from __future__ import annotations

from amaranth import signed
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from cimisa.config import ACC_BITS
from cimisa.isa import Isa
from hw._util import check_cfg
from hw.buffers import Buffer
from hw.controller import Controller
from hw.crossbar import Crossbar
from hw.decoder import CommandDecoder

__all__ = ["CimTile", "top_members"]


def top_members(cfg) -> dict:
    """The members of a top (:class:`CimTile`, :class:`hw.chip.CimChip`): ``cmd``, ``res``, ``status``."""
    isa = Isa.of(cfg)
    return {
        "cmd": In(stream.Signature(isa.cmd_layout)),
        "res": Out(stream.Signature(isa.result_shape)),
        "status": Out(isa.status_layout),
    }


class CimTile(wiring.Component):
    """One CIM tile executing a command stream exactly as :mod:`sw_model` does.

    ::

        cmd --> CommandDecoder --> Controller --> res
                                   |  |  |  \\--> status
                          Crossbar-/  |  \\-Buffer (output, out_depth x int32)
                                      \\-Buffer (input, in_depth x input_bits)

    Parameters
    ----------
    cfg : HwConfig
        Every RTL parameter derives from it.

    Members
    -------
    cmd : ``In(stream.Signature(isa.cmd_layout))``
        Stream words; ``last`` = 1 marks the stream's final word (after it, a tile that has not HALTED stops
        with TRUNCATED).
    res : ``Out(stream.Signature(signed(32)))``
        READ outputs in order, with back-pressure.
    status : ``Out(isa.status_layout)``
        ``state`` (RUNNING/HALTED/ERROR), ``error`` (:class:`~cimisa.isa.ErrorCode`), ``index`` (the command
        index, as :func:`sw_model.run` reports it).

    Cycle-level contract: one clock domain ``sync``. After HALT or an error ``cmd.ready`` stays high and words
    are discarded. While a multi-cycle command runs, ``cmd.ready`` is low once the decoder's register is full.
    """

    def __init__(self, cfg):
        self._cfg = cfg = check_cfg(cfg, self)
        super().__init__(top_members(cfg))

    @property
    def cfg(self):
        """The hardware configuration."""
        return self._cfg

    def __repr__(self) -> str:
        return f"CimTile({self._cfg.name!r})"

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.decoder = dec = CommandDecoder(cfg)
        m.submodules.controller = ctrl = Controller(cfg)
        m.submodules.crossbar = xbar = Crossbar(cfg)
        m.submodules.inbuf = inbuf = Buffer(signed(cfg.input_bits), cfg.in_depth)
        m.submodules.outbuf = outbuf = Buffer(signed(ACC_BITS), cfg.out_depth)
        connect(m, flipped(self.cmd), dec.cmd)
        connect(m, dec.out, ctrl.dec)
        connect(m, ctrl.res, flipped(self.res))
        connect(m, ctrl.xbar, xbar.port)
        connect(m, ctrl.inbuf, inbuf.port)
        connect(m, ctrl.outbuf, outbuf.port)
        m.d.comb += self.status.eq(ctrl.status)
        return m
