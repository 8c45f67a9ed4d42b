"""Crossbar emulation for FPGA: the weight memories of every array and the per-column analog sums."""

from __future__ import annotations

from amaranth import Mux, Signal, signed
from amaranth.hdl import Module
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from hw._util import addr_bits, check_cfg, div_const, mod_const

__all__ = ["Crossbar", "crossbar_port"]


def _row_layout(cfg):
    return data.ArrayLayout(signed(cfg.weight_bits), cfg.cols)


def crossbar_port(cfg) -> wiring.Signature:
    """Return the signature of the crossbar's port, from the controller's side.

    Members (controller's view):
      ``rd_en``, ``rd_array``, ``rd_group``, ``rd_xbits``, ``rd_first`` (Out): read row group ``rd_group`` (rows
      ``rd_group*rows_per_cycle ..``) of ``rd_array`` and drive its rows with the input bits ``rd_xbits``
      (bit ``s`` drives row ``rd_group*rows_per_cycle + s``); ``rd_first`` starts a new column sum;
      ``rd_rows`` (In): the weights of the group read in the previous cycle (``rows_per_cycle`` rows);
      ``colsum`` (In): per-column sums, updated at the end of the cycle after each read;
      ``wr_en``, ``wr_array``, ``wr_row``, ``wr_data`` (Out): write one whole row of one array.
    """
    cfg = check_cfg(cfg)
    groups = cfg.rows // cfg.rows_per_cycle
    return wiring.Signature({
        "rd_en": Out(1),
        "rd_array": Out(addr_bits(cfg.n_arrays)),
        "rd_group": Out(addr_bits(groups)),
        "rd_xbits": Out(cfg.rows_per_cycle),
        "rd_first": Out(1),
        "rd_rows": In(data.ArrayLayout(_row_layout(cfg), cfg.rows_per_cycle)),
        "colsum": In(data.ArrayLayout(signed(cfg.lossless_adc_bits), cfg.cols)),
        "wr_en": Out(1),
        "wr_array": Out(addr_bits(cfg.n_arrays)),
        "wr_row": Out(addr_bits(cfg.rows)),
        "wr_data": Out(_row_layout(cfg)),
    })


class Crossbar(wiring.Component):
    """``n_arrays`` crossbars of ``rows`` x ``cols`` signed weights, emulated with block RAM.

    The weights live in ``rows_per_cycle`` memories (banks): row ``r`` of array ``a`` is the word at address
    ``a * (rows // rows_per_cycle) + r // rows_per_cycle`` of bank ``r % rows_per_cycle``, one word holding a
    whole row (``cols`` weights). One read returns a *row group*: ``rows_per_cycle`` consecutive rows of one
    array, every column at once.

    Analog emulation: for each column ``c`` the group's contribution is ``sum_s w[s, c] * xbit[s]`` (the rows
    driven by a 1 input bit); it is added to the column-sum register ``colsum[c]`` (or replaces it when
    ``rd_first``), which is ``lossless_adc_bits`` wide, so it never overflows.

    Parameters
    ----------
    cfg : HwConfig
        rows, cols, n_arrays, weight_bits, rows_per_cycle, lossless_adc_bits are used.

    Members
    -------
    port : ``In(crossbar_port(cfg))``

    Cycle-level contract: a read issued in cycle t (``rd_en``) shows its weights on ``rd_rows`` in cycle t+1 and
    its sums in ``colsum`` from cycle t+2. One read per cycle, fully pipelined. A row write in cycle t is seen by
    reads from cycle t+1. Writes never go out of range: ``wr_array``/``wr_row`` are checked by the decoder.
    """

    def __init__(self, cfg):
        self._cfg = check_cfg(cfg, self)
        super().__init__({"port": In(crossbar_port(cfg))})

    def __repr__(self) -> str:
        return f"Crossbar({self._cfg.name!r})"

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        p = self.port
        rpc = cfg.rows_per_cycle
        groups = cfg.rows // rpc
        depth = cfg.n_arrays * groups
        rd_addr = Signal(addr_bits(depth))
        wr_addr = Signal(addr_bits(depth))
        wr_slot = Signal(max(1, addr_bits(rpc)))
        m.d.comb += [
            rd_addr.eq(p.rd_array * groups + p.rd_group),
            wr_addr.eq(p.wr_array * groups + div_const(p.wr_row, rpc)),
            wr_slot.eq(mod_const(p.wr_row, rpc)),
        ]
        rows = []
        for s in range(rpc):
            bank = memory.Memory(shape=_row_layout(cfg), depth=depth, init=[])
            m.submodules[f"bank{s}"] = bank
            rd = bank.read_port()
            wr = bank.write_port()
            m.d.comb += [
                rd.addr.eq(rd_addr), rd.en.eq(p.rd_en),
                wr.addr.eq(wr_addr), wr.data.eq(p.wr_data),
                wr.en.eq(p.wr_en & (wr_slot == s) & (wr_addr < depth)),
                p.rd_rows[s].eq(rd.data),
            ]
            rows.append(rd.data)

        # The input bits and the "first" flag travel with the read, one cycle.
        xbits = Signal(rpc)
        first = Signal()
        valid = Signal()
        m.d.sync += [xbits.eq(p.rd_xbits), first.eq(p.rd_first), valid.eq(p.rd_en)]

        L = cfg.lossless_adc_bits
        colsum = Signal(data.ArrayLayout(signed(L), cfg.cols))
        m.d.comb += p.colsum.eq(colsum)
        for c in range(cfg.cols):
            partial = 0
            for s in range(rpc):
                partial = partial + Mux(xbits[s], rows[s][c], 0)
            with m.If(valid):
                m.d.sync += colsum[c].eq(Mux(first, partial, colsum[c] + partial)[:L].as_signed())
        return m
