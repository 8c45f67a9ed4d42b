"""The cycles of the generated hardware, as formulas: the one definition (``docs/hw.md``, ``docs/perf.md``).

The RTL (:mod:`hw`) is checked against them cycle for cycle, and the performance simulator's stream mode
(:mod:`perf.stream`) predicts a whole stream's cycles from them.

**One controller** (:class:`hw.tile.CimTile`, a chip of one tile, and each tile of :class:`hw.chip.CimChip`):
:func:`command_cycles` counts controller cycles from the cycle a command's header is accepted to the cycle before
the next command can be accepted, with ``res.ready`` held high. The decoder's register stage overlaps with
execution, so on a chip of one tile a stream takes ``sum(command_cycles) + 2`` cycles (decoder latency plus the
final status update: :func:`stream_cycles`).

**A chip of several tiles** (:class:`hw.chip.CimChip`, the rules of :mod:`cimisa.concurrency`): an MVM splits
into :func:`mvm_front` cycles (gather, drive cycles and conversions, on the tile alone) and :func:`mvm_back`
cycles of write-back, which hold the chip's shared bus to the output buffer; the bus is granted
:func:`bus_latency` cycles after the request at the earliest (the network's hop latency) and carries one 32-bit
accumulator per cycle (its bandwidth). The event rules are in :mod:`perf.stream`; :func:`rtl_chip_problems`
says why a configuration's chip cannot be generated.

**The chip timing spec as built** (``docs/hw.md``; cycle 0 is the first cycle word 0 is offered, ``L =
bus_latency``, ``Dq = chip.queue_depth``): T1 element ``k`` reaches the dispatcher in cycle ``k + 1`` at the
earliest; T2 the dispatcher takes at most one element per cycle, in order: a tile element (MVM header passing the
HAZARD check, WRITE_W header or payload word) when its tile's queue holds fewer than ``Dq`` elements and the
global controller is idle; a chip element when every tile is idle and the global controller is in its idle
state; BARRIER when its tile (``local``) or every tile is idle and the global controller is idle; HALT when
everything is idle; **a header with an error once the global controller is idle** (pinned: a READ in flight
delivers all its words first, so the result words equal the golden model's; tiles still computing are not waited
for); T3 an element pushed in cycle ``c`` can be taken in ``c + 1``, a take in ``c`` frees its slot for a push in
``c + 1``; T4 a tile is idle when its queue is empty and its controller idle, not between WRITE_W payload words;
T5 the single controller's cycles per element, except an MVM taken in ``c`` requests the bus in ``r = c +
mvm_front`` and, granted in ``g``, writes back in ``g .. g + mvm_back - 1`` and takes its next element in ``g +
mvm_back``; T6 ``g`` is the first cycle ``>= r + L`` in which the bus is free, lowest tile first; T7 a chip element
runs ``command_cycles`` on the global controller; T8 (pinned) the harness counts :data:`CHIP_HALT_CYCLES` = 2
cycles after the cycle in which the dispatcher accepts HALT or an erroneous header (as on one controller: a stream
of MVM + HALT on a chip takes ``stream_cycles + 1 + L``, the queue's cycle and the hop latency); a stream that ends
without HALT stops (TRUNCATED) in the first cycle every controller is idle after its last element, counted the
same way (+2).
"""

from __future__ import annotations

from cimisa.config import HwConfig
from cimisa.isa import Command, Isa, Opcode

__all__ = ["adc_rounds", "command_cycles", "mvm_cycles", "mvm_front", "mvm_back", "row_groups", "stream_cycles",
           "bus_latency", "bus_words_per_cycle", "rtl_chip_problems", "BUS_WORD_BYTES", "MAX_RTL_TILES",
           "CHIP_HALT_CYCLES"]

#: Bytes the chip's bus carries per word: one 32-bit accumulator.
BUS_WORD_BYTES = 4
#: Cycles the harness counts after the cycle in which :class:`hw.chip.CimChip`'s dispatcher accepts HALT (or a
#: header with an error): its status register is written at the end of that cycle and seen one cycle later,
#: exactly as on one controller (T8).
CHIP_HALT_CYCLES = 2
#: Most tiles the RTL generates (one controller, ADC bank and command queue each).
MAX_RTL_TILES = 16


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

    ``nrows + ncols + fmt.digits * (G + 2 + adc_rounds(ncols)) + 6`` with ``G = row_groups(...)``; in the
    default format ``nrows + ncols + input_bits * (G + 2 + ceil(ncols / adcs_per_array)) + 6``.
    """
    g = row_groups(cfg, row0, nrows)
    return nrows + ncols + cfg.fmt.digits * (g + 2 + adc_rounds(cfg, ncols)) + 6


def mvm_back(cfg: HwConfig, ncols: int) -> int:
    """Return the write-back cycles of an MVM (``ncols`` accumulators, one per cycle, then 2 pipeline cycles); on a
    chip of several tiles they hold the bus."""
    return ncols + 2


def mvm_front(cfg: HwConfig, row0: int, nrows: int, ncols: int) -> int:
    """Return the cycles of an MVM before its write-back: ``mvm_cycles - mvm_back``."""
    return mvm_cycles(cfg, row0, nrows, ncols) - mvm_back(cfg, ncols)


def bus_words_per_cycle(cfg: HwConfig) -> float:
    """32-bit words the chip's network link carries per digital cycle (``cost.t_digital_cycle_ns``)."""
    return cfg.chip.link_bytes_per_ns * cfg.cost.t_digital_cycle_ns / BUS_WORD_BYTES


def bus_latency(cfg: HwConfig) -> int:
    """Cycles from a write-back's bus request to its grant at the earliest: ``chip.hop_latency_ns`` in digital
    cycles (rounded up, at least 1)."""
    return max(1, -(-round(cfg.chip.hop_latency_ns * 1e6) // round(cfg.cost.t_digital_cycle_ns * 1e6)))


def rtl_chip_problems(cfg: HwConfig) -> list[str]:
    """Why the RTL cannot generate ``cfg``'s chip (empty: it can).

    A chip that is not concurrent (one tile, or no command queues: :func:`cimisa.concurrency.is_concurrent`) is
    :class:`hw.tile.CimTile`, one controller executing the stream in order. A concurrent chip
    (:class:`hw.chip.CimChip`) needs a ``bus`` network carrying one 32-bit word per digital cycle, with a hop
    latency of whole cycles, one MVM per tile at a time, and at most :data:`MAX_RTL_TILES` tiles.
    """
    ch, t = cfg.chip, cfg.n_tiles
    if not (t > 1 and ch.queue_depth > 0):
        return []
    out = []
    if t > MAX_RTL_TILES:
        hint = (" (chip.arrays_per_tile is 1: every array its own tile)" if ch.arrays_per_tile == 1 else "")
        out.append(f"the RTL generates at most {MAX_RTL_TILES} tiles, not {t}{hint}")
    if ch.mvms_per_tile != 1:
        out.append(f"chip.mvms_per_tile must be 1 for the RTL (one MVM engine per tile), not {ch.mvms_per_tile}")
    if ch.topology != "bus":
        out.append(f"chip.topology must be bus for a chip of several tiles (the RTL's inter-tile path), "
                   f"not {ch.topology}")
    if abs(bus_words_per_cycle(cfg) - 1.0) > 1e-9:
        out.append(f"chip.link_bytes_per_ns must carry one {BUS_WORD_BYTES}-byte word per digital cycle "
                   f"({BUS_WORD_BYTES / cfg.cost.t_digital_cycle_ns:g} at cost.t_digital_cycle_ns = "
                   f"{cfg.cost.t_digital_cycle_ns:g}), not {ch.link_bytes_per_ns:g}")
    lat = ch.hop_latency_ns / cfg.cost.t_digital_cycle_ns
    if abs(lat - round(lat)) > 1e-9 or round(lat) < 1:
        out.append(f"chip.hop_latency_ns must be a whole number (>= 1) of digital cycles "
                   f"(cost.t_digital_cycle_ns = {cfg.cost.t_digital_cycle_ns:g}), not {ch.hop_latency_ns:g}")
    return out


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
