"""The builder every placement strategy fills: tiles, activation groups and a count of arrays.

:class:`Builder` hands out new arrays and groups, records tiles into groups, and cuts blocks larger than an
array into one-array tiles (:meth:`Builder.oversized`). :func:`fitting_factors` walks the Monarch factors of a
model for the strategies that place whole blocks (``sparse``, ``dense``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from cimisa.config import HwConfig
from compiler.geometry import MatmulGeom
from compiler.place.gcpause import paused_gc
from compiler.place.types import Tile

__all__ = ["Builder", "pieces", "fitting_factors", "paused_gc"]


def pieces(n: int, size: int) -> list[tuple[int, int]]:
    """Cut ``n`` into ``(offset, length)`` pieces of at most ``size`` (the last one shorter)."""
    return [(o, min(size, n - o)) for o in range(0, n, size)]


class Builder:
    """Tiles and groups under construction (``groups[g]``: indices into ``tiles``); ``next_array`` arrays used.

    An array is ``m_r`` rows by ``m_c`` *logical* columns (``hw.logical_cols``: weights per row; each weight takes
    ``hw.fmt.cols_per_weight`` physical columns, :mod:`cimisa.formats`)."""

    def __init__(self, hw: HwConfig):
        self.m_r, self.m_c = hw.rows, hw.logical_cols
        self.tiles: list[Tile] = []
        self.groups: list[list[int]] = []
        self.next_array = 0

    def new_array(self) -> int:
        a = self.next_array
        self.next_array += 1
        return a

    def add(self, group: int, **kw) -> int:
        """Append a :class:`Tile` (fields ``kw``) to ``group``; return its index."""
        self.tiles.append(Tile(group=group, **kw))
        self.groups[group].append(len(self.tiles) - 1)
        return len(self.tiles) - 1

    def new_group(self) -> int:
        self.groups.append([])
        return len(self.groups) - 1

    def oversized(self, mi: int, factor: str, block: int, h: int, w: int) -> None:
        """Cut a block larger than the array into tiles, one array each (row pieces in order)."""
        for r0, rr in pieces(h, self.m_r):
            for c0, cc in pieces(w, self.m_c):
                self.add(self.new_group(), matmul=mi, factor=factor, block=block, r0=r0, c0=c0, rows=rr,
                         cols=cc, array=self.new_array(), row0=0, col0=0)


def fitting_factors(b: Builder, geoms: Sequence[MatmulGeom]) -> Iterator[tuple[int, str, int, int, int]]:
    """Yield ``(matmul, factor, nblocks, block rows, block cols)`` for each factor whose blocks fit an array;
    blocks larger than an array are tiled across arrays here (:meth:`Builder.oversized`) and not yielded."""
    for mi, g in enumerate(geoms):
        for factor in ("R", "L"):
            h, w = g.block_dims(factor)
            if h > b.m_r or w > b.m_c:
                for blk in range(g.nblocks):
                    b.oversized(mi, factor, blk, h, w)
                continue
            yield mi, factor, g.nblocks, h, w
