"""``auto``: the kit's own placement, striped shelf packing.

Every array is cut into shelves of one row height (:func:`shelf_height`). Pieces of every factor of every matmul
(:class:`~compiler.place.types.Piece`, :func:`bundles`) are laid along the shelves, each bundle on the emptiest
array that holds nothing of its stage yet (:class:`Stripes`: a stage's pieces land on different arrays, so every
stage uses the ADCs of many arrays at once, and the arrays fill evenly); a piece crossing a shelf end is cut in
two (no waste, :class:`Shelves`), and blocks that read the same input (Q, K, V; gate and up) are laid side by
side so one row activation serves them all. Without a budget it uses the fewest arrays the shelves allow
(:func:`array_count`: the lower bound when the shelf height divides the block heights); with ``arrays=N`` it
spreads over ``N`` arrays (more arrays, fewer activations per array, lower latency).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from cimisa.config import HwConfig
from compiler.geometry import MatmulGeom
from compiler.place.builder import Builder, pieces
from compiler.place.types import Piece, PlacementError, Tile

__all__ = ["place_auto", "shelf_height", "block_shapes", "bundles", "array_count", "Stripes", "Shelves"]


def shelf_height(items_hw: list[tuple[int, int, int]], m_r: int, tolerance: float = 0.03) -> int:
    """Pick the shelf height: the tallest divisor of the array rows that wastes at most ``tolerance`` of the
    cells more than the least wasteful divisor (taller shelves: fewer row pieces, fewer activations).

    ``items_hw`` lists block shapes ``(rows, cols, count)``; a block of ``h`` rows takes ``ceil(h / hs)``
    shelves of ``hs`` rows.
    """
    total = sum(min(h, m_r) * w * n * -(-h // m_r) for h, w, n in items_hw) or 1
    waste = {}
    for hs in (d for d in range(1, m_r + 1) if m_r % d == 0):
        waste[hs] = sum((-(-min(h, m_r) // hs) * hs - min(h, m_r)) * w * n * -(-h // m_r) for h, w, n in items_hw)
    best = min(waste.values())
    return max(hs for hs, wst in waste.items() if wst <= best + tolerance * total)


def block_shapes(geoms: Sequence[MatmulGeom]) -> list[tuple[int, int, int]]:
    """Return ``(rows, cols, count)`` of every distinct crossbar block shape of the model's R and L factors."""
    shapes: dict[tuple[int, int], int] = {}
    for g in geoms:
        for f in ("R", "L"):
            h, w = g.block_dims(f)
            shapes[(h, w)] = shapes.get((h, w), 0) + g.nblocks
    return [(h, w, n) for (h, w), n in shapes.items()]


def bundles(geoms: Sequence[MatmulGeom], hs: int, m_c: int, colocate: bool = True) -> list[list[Piece]]:
    """Return the bundles to lay, in order: lists of pieces laid side by side (same rows -> one activation when
    they read the same input). Block rows are cut at the shelf height ``hs``, columns at the array width ``m_c``.

    With ``colocate``, the R pieces of the matmuls of one (input group, stage, layer) with equal R shapes form
    one bundle per block row piece (BART's cross K/V of all layers read one encoder output, but run layer by
    layer); L pieces never share inputs and are bundles of one.
    """
    out: list[list[Piece]] = []
    by_group: dict[tuple, list[int]] = {}
    for mi, g in enumerate(geoms):
        by_group.setdefault((g.input_group, g.stage, g.layer), []).append(mi)
    done: set[int] = set()
    for mi, g in enumerate(geoms):
        if mi in done:
            continue
        members = by_group[(g.input_group, g.stage, g.layer)] if colocate else [mi]
        members = [x for x in members if geoms[x].r_shape == g.r_shape] if colocate else members
        done.update(members)
        h, w = g.block_dims("R")
        rows_p, cols_p = pieces(h, hs), pieces(w, m_c)
        for blk in range(g.nblocks):
            for r0, rr in rows_p:
                out.append([Piece(x, "R", blk, r0, c0, rr, cc) for x in members for c0, cc in cols_p])
        for x in members:
            gx = geoms[x]
            h, w = gx.block_dims("L")
            rc = [(r0, c0, rr, cc) for r0, rr in pieces(h, hs) for c0, cc in pieces(w, m_c)]
            for blk in range(gx.nblocks):
                out += [[Piece(x, "L", blk, r0, c0, rr, cc)] for r0, c0, rr, cc in rc]
    return out


def array_count(total: int, cap: int, budget: int | None, hw: HwConfig, hs: int) -> int:
    """Return the arrays to spread ``total`` shelf columns over: ``budget``, or the fewest that hold them
    (``cap`` shelf columns per array); raise :class:`PlacementError` when the budget is below that."""
    n_min = -(-total // cap)
    if budget is not None and budget < n_min:
        raise PlacementError(f"arrays budget too small: auto needs at least {n_min} arrays of "
                             f"{hw.rows}x{hw.logical_cols} (shelves of {hs} rows), budget {budget}")
    return budget if budget is not None else n_min


class Stripes:
    """Which array gets the next bundle: the one with the most free cells among those holding nothing of the
    bundle's stage yet (so a stage's activations spread over distinct arrays and the arrays fill evenly).

    ``heap`` holds ``(fill, array)`` entries (stale ones, whose fill has changed since, are dropped when
    popped); entries of arrays that already hold the current stage wait in ``parked`` until the stage changes
    (they would be popped and skipped by every bundle of the stage: keeping them aside makes a stage cost its
    bundles, not its bundles times the arrays it has used). ``fill`` is shared with :class:`Shelves`.
    """

    __slots__ = ("fill", "cap", "n", "heap", "parked", "stage", "used")

    def __init__(self, fill: list[int], cap: int):
        self.fill, self.cap, self.n = fill, cap, len(fill)
        self.heap = [(0, a) for a in range(self.n)]
        self.parked: list[tuple[int, int]] = []
        self.stage: tuple[int, str] | None = None
        self.used: set[int] = set()

    def pick(self, stage: tuple[int, str]) -> int:
        """Return the array for the next bundle of ``stage`` ``(matmul, factor)`` and mark it used."""
        fill, cap, used = self.fill, self.cap, self.used
        if stage != self.stage or len(used) >= self.n:
            self.stage, used = stage, set()
            self.used = used
            if self.parked:
                self.heap += self.parked
                heapq.heapify(self.heap)
                self.parked = []
        heap, parked, heappop = self.heap, self.parked, heapq.heappop
        a = None
        while heap:
            f_a, cand = heappop(heap)
            if f_a != fill[cand]:          # stale entry
                continue
            if f_a >= cap:
                continue
            if cand in used:
                parked.append((f_a, cand))
                continue
            a = cand
            break
        if a is None:                      # every array with room already holds this stage: reuse the emptiest
            live = [it for it in parked if it[0] == fill[it[1]] and it[0] < cap]
            a = min(live)[1] if live else next(j for j in range(self.n) if fill[j] < cap)
        used.add(a)
        return a

    def release(self, touched: list[int]) -> None:
        """Put the arrays a bundle was laid on back in the heap with their new fill."""
        for t_a in set(touched):
            heapq.heappush(self.heap, (self.fill[t_a], t_a))


class Shelves:
    """The shelves of ``n`` arrays as one tape each (``fill[a]`` shelf columns used) and the tiles laid on them.

    ``remaining`` counts the shelf columns still to lay, ``free`` the free ones: when a budget leaves spare
    capacity, a bundle that would cross a shelf end starts on a fresh shelf instead (:meth:`lay`).
    """

    __slots__ = ("hs", "m_c", "cap", "n", "fill", "free", "remaining", "tiles", "groups")

    def __init__(self, b: Builder, hs: int, n: int, total: int):
        self.hs, self.m_c = hs, b.m_c
        self.cap = (b.m_r // hs) * b.m_c
        self.n = n
        self.fill = [0] * n
        self.free = n * self.cap
        self.remaining = total
        self.tiles, self.groups = b.tiles, b.groups

    def _next_with_room(self, a: int) -> int | None:
        fill, cap, n = self.fill, self.cap, self.n
        return next((j % n for j in range(a + 1, a + 1 + n) if fill[j % n] < cap), None)

    def lay(self, bd: list[Piece], a: int) -> list[int]:
        """Lay bundle ``bd`` along the shelves from array ``a`` on; return the arrays it touched."""
        fill, cap, m_c, hs = self.fill, self.cap, self.m_c, self.hs
        tiles, groups = self.tiles, self.groups
        touched = [a]
        width = bd[0].cols if len(bd) == 1 else sum(p.cols for p in bd)
        pos = fill[a]
        col = pos % m_c
        if col and col + width > m_c >= width and self.free - (m_c - col) >= self.remaining:
            # spare capacity (a budget above the minimum): start on a fresh shelf instead of cutting the bundle
            self.free -= m_c - col
            pos = fill[a] = pos + m_c - col
            if pos >= cap:
                nxt = self._next_with_room(a)
                a = a if nxt is None else nxt
                touched.append(a)
        self.remaining -= width
        self.free -= width
        grp = -1
        for mi, f, blk, r0, c0, rr, cc in bd:
            while True:
                pos = fill[a]
                if pos >= cap:
                    nxt = self._next_with_room(a)
                    if nxt is None:
                        raise PlacementError("auto placement overflow (internal)")
                    a = nxt
                    touched.append(a)
                    grp = -1
                    pos = fill[a]
                shelf, col = divmod(pos, m_c)
                take = m_c - col
                if take > cc:
                    take = cc
                if grp < 0:
                    grp = len(groups)
                    groups.append([])
                groups[grp].append(len(tiles))
                tiles.append(Tile(mi, f, blk, r0, c0, rr, take, a, shelf * hs, col, 1, grp, 0))
                pos += take
                fill[a] = pos
                if pos % m_c == 0:
                    grp = -1          # next shelf (or array): new rows, new activation
                if take == cc:
                    break
                c0 += take
                cc -= take
        return touched


def place_auto(geoms: Sequence[MatmulGeom], hw: HwConfig, budget: int | None, colocate: bool = True) -> Builder:
    """Place every matmul's R and L pieces on shelves, striped over the fewest arrays or over ``budget``."""
    b = Builder(hw)
    hs = shelf_height(block_shapes(geoms), b.m_r)
    bds = bundles(geoms, hs, b.m_c, colocate)
    total = sum(p.cols for bd in bds for p in bd)
    n = array_count(total, (b.m_r // hs) * b.m_c, budget, hw, hs)
    shelves = Shelves(b, hs, n, total)
    stripes = Stripes(shelves.fill, shelves.cap)
    for bd in bds:
        p0 = bd[0]
        stripes.release(shelves.lay(bd, stripes.pick((p0.matmul, p0.factor))))
    b.next_array = n
    return b
