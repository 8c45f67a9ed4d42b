"""Crossbar emulation for FPGA: the weight memories of every array and the per-physical-column analog sums."""

from __future__ import annotations

from amaranth import Signal, signed
from amaranth.hdl import Module
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from hw._util import addr_bits, check_cfg, div_const, mod_const
from hw.numfmt import cell_values, colsum_shape, drive_shape, phys_cols, product

__all__ = ["Crossbar", "crossbar_port"]


def _row_layout(cfg):
    """One stored row: ``logical_cols`` weights (the cells are derived from them when read)."""
    return data.ArrayLayout(signed(cfg.weight_bits), cfg.logical_cols)


def crossbar_port(cfg) -> wiring.Signature:
    """Return the signature of the crossbar's port, from the controller's side.

    Members (controller's view):
      ``rd_en``, ``rd_array``, ``rd_group``, ``rd_drive``, ``rd_first`` (Out): read row group ``rd_group`` (rows
      ``rd_group*rows_per_cycle ..``) of ``rd_array`` and drive its rows with ``rd_drive`` (element ``s``
      drives row ``rd_group*rows_per_cycle + s``: ``fmt.drive(x)[d]``); ``rd_first`` starts a new column sum;
      ``rd_rows`` (In): the logical weights of the group read in the previous cycle (``rows_per_cycle`` rows);
      ``colsum`` (In): per-physical-column sums (:func:`hw.numfmt.phys_cols`: logical column ``c``'s cell ``p``
      at ``c*P + p``, the bias column last), updated at the end of the cycle after each read;
      ``wr_en``, ``wr_array``, ``wr_row``, ``wr_data`` (Out): write one whole row (logical weights) of one array.
    """
    cfg = check_cfg(cfg)
    groups = cfg.rows // cfg.rows_per_cycle
    return wiring.Signature({
        "rd_en": Out(1),
        "rd_array": Out(addr_bits(cfg.n_arrays)),
        "rd_group": Out(addr_bits(groups)),
        "rd_drive": Out(data.ArrayLayout(drive_shape(cfg.fmt), cfg.rows_per_cycle)),
        "rd_first": Out(1),
        "rd_rows": In(data.ArrayLayout(_row_layout(cfg), cfg.rows_per_cycle)),
        "colsum": In(data.ArrayLayout(colsum_shape(cfg), phys_cols(cfg))),
        "wr_en": Out(1),
        "wr_array": Out(addr_bits(cfg.n_arrays)),
        "wr_row": Out(addr_bits(cfg.rows)),
        "wr_data": Out(_row_layout(cfg)),
    })


class Crossbar(wiring.Component):
    """``n_arrays`` crossbars of ``rows`` x ``cols`` cells holding ``logical_cols`` weights per row, emulated
    with block RAM.

    The weights live in ``rows_per_cycle`` memories (banks): row ``r`` of array ``a`` is the word at address
    ``a * (rows // rows_per_cycle) + r // rows_per_cycle`` of bank ``r % rows_per_cycle``, one word holding a
    whole row (``logical_cols`` weights). One read returns a *row group*: ``rows_per_cycle`` consecutive rows of
    one array, every column at once. The cells of each weight are derived from it combinationally
    (:func:`hw.numfmt.cell_values`, ``fmt.cells``); the bias column's cells are the constant ``fmt.bias_cell``.

    Analog emulation: for each physical column ``pc`` the group's contribution is ``sum_s drive[s] *
    cell[s, pc]``; it is added to the column-sum register ``colsum[pc]`` (or replaces it when ``rd_first``),
    which holds every sum of ``fmt.sum_bounds(rows)``, so it never overflows.

    Parameters
    ----------
    cfg : HwConfig
        rows, n_arrays, rows_per_cycle and the number format (``cfg.fmt``, ``cfg.logical_cols``) are used.

    Members
    -------
    port : ``In(crossbar_port(cfg))``

    Cycle-level contract: a read issued in cycle t (``rd_en``) shows its weights on ``rd_rows`` in cycle t+1 and
    its sums in ``colsum`` from cycle t+3 (the weights are registered in t+1, summed in t+2: the block RAM's
    clock-to-output delay and the adders in separate cycles). One read per cycle, fully pipelined. A row write in
    cycle t is seen by reads from cycle t+1. Writes never go out of range: ``wr_array``/``wr_row`` are checked by
    the decoder.
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

        # The read data is registered before the column-sum adders (the block RAM's clock-to-output delay and the
        # adders in separate cycles); the drives and the "first" flag travel with the read, two cycles.
        fmt = cfg.fmt
        rows_q = [Signal.like(r, name=f"rows_q{s}", reset_less=True) for s, r in enumerate(rows)]
        drives0, drives = Signal.like(p.rd_drive), Signal.like(p.rd_drive)
        first0, first, valid0, valid = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [drives0.eq(p.rd_drive), first0.eq(p.rd_first), valid0.eq(p.rd_en),
                     drives.eq(drives0), first.eq(first0), valid.eq(valid0)]
        m.d.sync += [q.eq(r) for q, r in zip(rows_q, rows)]
        rows = rows_q

        cells = [[cell_values(fmt, rows[s][c]) for c in range(cfg.logical_cols)] for s in range(rpc)]
        shape = colsum_shape(cfg)
        colsum = Signal(data.ArrayLayout(shape, phys_cols(cfg)))
        m.d.comb += p.colsum.eq(colsum)
        P = fmt.cols_per_weight
        partials = []
        for c in range(cfg.logical_cols):
            for q in range(P):
                partials.append(sum(product(fmt, drives[s], cells[s][c][q], q) for s in range(rpc)))
        if fmt.bias_cols:
            partials.append(sum(drives[s] for s in range(rpc)) * fmt.bias_cell)
        for pc, partial in enumerate(partials):
            with m.If(valid):
                with m.If(first):
                    m.d.sync += colsum[pc].eq(partial)
                with m.Else():
                    m.d.sync += colsum[pc].eq(colsum[pc] + partial)
        return m
