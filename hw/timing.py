"""Cycle count of each command on :class:`~hw.tile.CimTile`, as formulas (documented in ``docs/hw.md``).

The counts are controller cycles from the cycle the command's header is accepted to the cycle before the next
command can be accepted, with ``res.ready`` held high. The decoder's register stage overlaps with execution, so
a stream takes ``sum(command_cycles) + 2`` cycles (decoder latency plus the final status update).
"""

from __future__ import annotations

from cimisa.config import HwConfig
from cimisa.isa import Command, Isa, Opcode

__all__ = ["adc_rounds", "command_cycles", "mvm_cycles", "row_groups", "stream_cycles"]


def row_groups(cfg: HwConfig, row0: int, nrows: int) -> int:
    """Return the number of row groups (``rows_per_cycle`` rows each, aligned) an MVM window touches."""
    p = cfg.rows_per_cycle
    return (row0 + nrows - 1) // p - row0 // p + 1


def adc_rounds(cfg: HwConfig, ncols: int) -> int:
    """Return the ADC cycles of one drive cycle of an MVM over ``ncols`` logical columns: each of the
    ``fmt.cols_per_weight`` slices in rounds of ``adcs_per_array`` logical columns, then the bias column (one
    cycle, with ``offset`` weights). ``A * adc_rounds >= fmt.conversions(ncols)``, equal when ``A`` divides
    ``ncols`` and there is no bias column."""
    fmt = cfg.fmt
    return fmt.cols_per_weight * -(-ncols // cfg.adcs_per_array) + fmt.bias_cols


def mvm_cycles(cfg: HwConfig, row0: int, nrows: int, ncols: int) -> int:
    """Return the cycles of one MVM: gather, per drive cycle (crossbar groups + ADC rounds), write-back.

    ``nrows + ncols + fmt.digits * (G + 1 + adc_rounds(ncols)) + 6`` with ``G = row_groups(...)``; in the
    default format ``nrows + ncols + input_bits * (G + 1 + ceil(ncols / adcs_per_array)) + 6``.
    """
    g = row_groups(cfg, row0, nrows)
    return nrows + ncols + cfg.fmt.digits * (g + 1 + adc_rounds(cfg, ncols)) + 6


def command_cycles(cfg: HwConfig, cmd: Command) -> int:
    """Return the cycles ``cmd`` occupies the controller (see the module docstring)."""
    isa = Isa.of(cfg)
    op = cmd.op
    if op is Opcode.WRITE_W:
        return 2 + 2 * isa.payload_words(op, cmd.count)
    if op is Opcode.LOAD_IN:
        return 1 + isa.payload_words(op, cmd.count) + cmd.count
    if op is Opcode.MVM:
        return mvm_cycles(cfg, cmd.row0, cmd.nrows, cmd.ncols)
    if op is Opcode.REQUANT:
        return cmd.count + 4
    if op is Opcode.READ:
        return cmd.count + 2
    return 1


def stream_cycles(cfg: HwConfig, cmds) -> int:
    """Return the cycles of a legal stream of ``cmds`` ending in HALT (results always accepted)."""
    return sum(command_cycles(cfg, c) for c in cmds) + 2
