"""Cycle count of each command on :class:`~hw.tile.CimTile`, as formulas (documented in ``docs/hw.md``).

The counts are controller cycles from the cycle the command's header is accepted to the cycle before the next
command can be accepted, with ``res.ready`` held high. The decoder's register stage overlaps with execution, so
a stream takes ``sum(command_cycles) + 2`` cycles (decoder latency plus the final status update).
"""

from __future__ import annotations

from cimisa.config import HwConfig
from cimisa.isa import Command, Isa, Opcode

__all__ = ["command_cycles", "mvm_cycles", "row_groups", "stream_cycles"]


def row_groups(cfg: HwConfig, row0: int, nrows: int) -> int:
    """Return the number of row groups (``rows_per_cycle`` rows each, aligned) an MVM window touches."""
    p = cfg.rows_per_cycle
    return (row0 + nrows - 1) // p - row0 // p + 1


def mvm_cycles(cfg: HwConfig, row0: int, nrows: int, ncols: int) -> int:
    """Return the cycles of one MVM: gather, per input bit (crossbar groups + ADC lanes), write-back.

    ``nrows + ncols + input_bits * (G + 1 + ceil(ncols / adcs_per_array)) + 6`` with ``G = row_groups(...)``.
    """
    g = row_groups(cfg, row0, nrows)
    adc = -(-ncols // cfg.adcs_per_array)
    return nrows + ncols + cfg.input_bits * (g + 1 + adc) + 6


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
