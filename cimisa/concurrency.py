"""When commands of a stream run at the same time on a chip of several tiles, and which overlaps are illegal.

The one definition of the concurrency rules; the golden model (:class:`sw_model.Machine`), the compiler
(:mod:`compiler.program`) and the RTL chip (:mod:`hw.chip`, which implements the same test in hardware) follow it.

A chip has ``cfg.n_tiles`` tiles of ``chip.arrays_per_tile`` arrays (array ``a`` is on tile
``a // arrays_per_tile``). A chip is *concurrent* when it has several tiles and command queues
(``chip.queue_depth >= 1``; :func:`is_concurrent`); any other configuration executes a stream one command at a time
and none of this applies. On a concurrent chip each tile executes its own commands in stream order, one at a time,
and tiles run side by side:

* **tile commands**: MVM and WRITE_W go to the queue of the tile that holds their array; the next command is
  dispatched without waiting for them to finish;
* **chip commands**: LOAD_IN, REQUANT, READ and HALT first wait until every tile has finished (they read or write
  the buffers that MVMs use), then run alone;
* **BARRIER** waits until every tile (``local = 0``) or the tile that holds ``array`` (``local = 1``) has
  finished.

So a stream's results are those of executing it in order (sequential consistency) as long as no two MVMs that may
run at the same time on different tiles write overlapping outputs (both orders of two writes, or of an
accumulation, would give different results). That is the one hazard, and it is checked exactly as the hardware can
check it, with one address interval and one power-of-two lattice per tile:

* the *output span* of an MVM is ``[out_addr, out_addr + (ncols - 1) * out_stride + 1)``; its *lattice* is
  ``(mask, out_addr)`` with ``mask = out_stride - 1`` when ``out_stride`` is a power of two, else 0 (:func:`out_mask`):
  every output address ``a`` has ``a & mask == out_addr & mask``;
* each tile keeps, over the MVMs it received since its last synchronisation (a BARRIER naming it, a BARRIER of
  every tile, or a chip command), the *hull* (smallest interval covering) of their output spans and the largest
  lattice they all lie on (the first MVM's, narrowed by each later one to the low bits where their phases agree:
  :func:`merge_lattice`);
* an MVM for tile ``t`` whose output span intersects the hull of another tile ``u != t``, and whose lattice meets
  ``u``'s (the phases agree on the bits of both masks: ``(out_addr ^ phase_u) & mask & mask_u == 0``), stops the
  machine with :attr:`~cimisa.isa.ErrorCode.HAZARD` (checked after :func:`cimisa.semantics.check`; the MVM has no
  effect).

The check is conservative (a hull covers the gaps between a tile's outputs; a stride that is not a power of two
carries no lattice): a compiler avoids a HAZARD by putting a BARRIER of the other tile first
(:meth:`Scoreboard.needs_barrier`). The lattice lets interleaved outputs run side by side: the MVMs of a Monarch
factor's second stage write ``y[j * k + a]`` (stride ``k``, phase ``a``), so blocks on different tiles never
meet when ``k`` is a power of two. On a chip that is not concurrent no stream has a hazard.

The check depends on the tiling, so a stream is checked (or compiled) for the chip it runs on. A stream without
hazards on a chip has no *race* (two MVMs that may run at the same time writing a common address) on any chip
whose tiles are unions of that chip's tiles (fewer, larger tiles: a BARRIER names an array, so it also synchronises
the larger tile that holds it), and so computes the in-order results there too; but that chip may still stop it
with HAZARD, because one hull then covers the MVMs of several smaller tiles *and the gaps between them* (tiles 0
and 1 of four writing ``[0, 2)`` and ``[10, 12)``, tile 2 writing ``[5, 6)``: no hazard on four tiles, a HAZARD
on two).
"""

from __future__ import annotations

from cimisa.config import HwConfig
from cimisa.isa import ErrorCode, Opcode

__all__ = ["Scoreboard", "out_span", "out_mask", "merge_lattice", "is_concurrent", "TILE_OPS", "CHIP_OPS"]

#: Commands queued on the tile that holds their array.
TILE_OPS = frozenset({Opcode.MVM, Opcode.WRITE_W})
#: Commands that wait until every tile has finished, then run alone.
CHIP_OPS = frozenset({Opcode.LOAD_IN, Opcode.REQUANT, Opcode.READ, Opcode.HALT})


def is_concurrent(cfg: HwConfig) -> bool:
    """Whether ``cfg``'s tiles run side by side: several tiles with command queues (``chip.queue_depth >= 1``)."""
    return cfg.n_tiles > 1 and cfg.chip.queue_depth > 0


def out_span(args) -> tuple[int, int]:
    """The output span ``[lo, hi)`` of an MVM's header fields."""
    lo = args["out_addr"]
    return lo, lo + (args["ncols"] - 1) * args["out_stride"] + 1


def out_mask(args) -> int:
    """The *lattice mask* of an MVM: ``out_stride - 1`` when ``out_stride`` is a power of two, else 0. Every
    output address ``a`` of the MVM has ``a & mask == out_addr & mask``."""
    s = args["out_stride"]
    return s - 1 if s > 0 and s & (s - 1) == 0 else 0


def merge_lattice(mask: int, phase: int, mask2: int, phase2: int) -> int:
    """The largest lattice mask on which the lattices ``(mask, phase)`` and ``(mask2, phase2)`` agree: the common
    mask ``mask & mask2``, cut below the lowest bit where the phases differ (the phase stays ``phase``)."""
    m = mask & mask2
    d = (phase ^ phase2) & m
    return m if d == 0 else (d & -d) - 1


class Scoreboard:
    """The per-tile output hulls of the MVMs since each tile's last synchronisation (see the module docstring).

    >>> from cimisa.config import BUILTIN
    >>> sb = Scoreboard(BUILTIN["fpga-tiny-4t"])          # 4 tiles of 24 arrays
    >>> mvm = dict(array=0, out_addr=0, ncols=8, out_stride=1)
    >>> sb.step(Opcode.MVM, mvm).name, sb.step(Opcode.MVM, dict(mvm, array=24)).name
    ('NONE', 'HAZARD')
    >>> sb.step(Opcode.BARRIER, dict(array=5, local=1)).name, sb.step(Opcode.MVM, dict(mvm, array=24)).name
    ('NONE', 'NONE')
    >>> sb.step(Opcode.BARRIER, dict(array=0, local=0)).name           # strided outputs on different phases
    'NONE'
    >>> even, odd = dict(mvm, out_stride=2), dict(mvm, out_stride=2, out_addr=1, array=24)
    >>> sb.step(Opcode.MVM, even).name, sb.step(Opcode.MVM, odd).name, sb.step(Opcode.MVM, dict(odd, out_addr=3)).name
    ('NONE', 'NONE', 'NONE')
    >>> sb.step(Opcode.MVM, dict(even, array=48, out_stride=1, ncols=1, out_addr=4)).name   # address 4: tile 0's
    'HAZARD'
    """

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        self.apt = cfg.chip.arrays_per_tile
        self.n_tiles = cfg.n_tiles
        self.concurrent = is_concurrent(cfg)
        self.hulls: dict[int, list[int]] = {}      # tile -> [lo, hi) of its MVMs since its last synchronisation
        self.lattices: dict[int, tuple[int, int]] = {}   # tile -> (mask, phase) of the same MVMs

    def tile_of(self, array: int) -> int:
        """The tile that holds ``array``."""
        return array // self.apt

    def conflict(self, args) -> int | None:
        """The other tile whose hull the MVM ``args`` would overlap (the lowest), or None."""
        if not self.concurrent:
            return None
        t = args["array"] // self.apt
        lo, hi = out_span(args)
        mask, phase = out_mask(args), args["out_addr"]
        hit = [u for u, (a, b) in self.hulls.items() if u != t and lo < b and a < hi
               and not (phase ^ self.lattices[u][1]) & mask & self.lattices[u][0]]
        return min(hit) if hit else None

    def needs_barrier(self, args) -> int | None:
        """Alias of :meth:`conflict` for compilers: the tile a BARRIER must name before the MVM ``args``."""
        return self.conflict(args)

    def step(self, op: Opcode, args) -> ErrorCode:
        """Check a legal header (:func:`cimisa.semantics.check` passed) and record it; HAZARD records nothing."""
        if not self.concurrent:
            return ErrorCode.NONE
        if op is Opcode.MVM:
            if self.conflict(args) is not None:
                return ErrorCode.HAZARD
            t = args["array"] // self.apt
            lo, hi = out_span(args)
            h = self.hulls.get(t)
            self.hulls[t] = [lo, hi] if h is None else [min(h[0], lo), max(h[1], hi)]
            mask, phase = out_mask(args), args["out_addr"]
            lat = self.lattices.get(t)
            self.lattices[t] = (mask, phase) if lat is None else (merge_lattice(*lat, mask, phase), lat[1])
        elif op is Opcode.BARRIER:
            if args["local"]:
                self.hulls.pop(args["array"] // self.apt, None)
                self.lattices.pop(args["array"] // self.apt, None)
            else:
                self.hulls.clear()
                self.lattices.clear()
        elif op in CHIP_OPS:
            self.hulls.clear()
            self.lattices.clear()
        return ErrorCode.NONE
