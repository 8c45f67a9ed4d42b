"""Placement: which piece of which factor of which matmul sits on which crossbar array, where.

A matmul ``(out, in)`` with ``nblocks = k`` has Monarch factors ``R (k, q, p)`` and ``L (k, s, r)``
(:mod:`mapper.d2s.monarch`). On a crossbar, rows are inputs and columns outputs, so block ``i`` of ``R`` is a
``p x q`` rectangle (cell ``(m, j) = R[i, j, m]``) and block ``a`` of ``L`` an ``r x s`` rectangle
(cell ``(c, t) = L[a, t, c]``). The ``linear`` baseline places the dense ``W`` (an ``in x out`` rectangle).
A :class:`Tile` is a piece of one block that fits an array; blocks larger than an array are cut into tiles
(row pieces accumulate into the same outputs).

Tiles that one MVM fires together form a *group*. Strategies (:data:`STRATEGIES`):

``linear``
    the dense matrix cut into ``rows x cols`` tiles, one array each (the paper's baseline).
``sparse``
    SparseMap: each array holds one group of ``D`` blocks of one factor on its block diagonal, the rest is zero
    padding; one MVM fires the whole group. R groups are ``D`` consecutive blocks (inputs and outputs
    contiguous). L groups use *permutation folding*: blocks ``a0, a0+g, ..., a0+(D-1)g`` (``g = k/D``) with
    their rows and columns interleaved (block ``d`` on rows/cols ``d, d+D, d+2D, ...``), so that row ``c*D+d``
    reads ``h[c*k + a0 + d*g]`` and column ``t*D+d`` writes ``y[t*k + a0 + d*g]``: one stride ``g`` on each
    side, no explicit permutation.
``dense``
    DenseMap: blocks packed on rotated block diagonals (diagonal ``o`` puts block ``u`` of the diagonal at slot
    ``(u, (u+o) mod nc)``), R and L of each matmul on their own arrays; a column mixes blocks of different
    diagonals, so each block is fired alone, in row chunks (the paper's four timestamps t0..t3).
``auto``
    the kit's own: striped shelf packing. Every array is cut into shelves of one row height; pieces of every
    factor of every matmul are laid along the shelves, each on the emptiest array that holds nothing of its
    stage yet (a stage's pieces land on different arrays, so every stage uses the ADCs of many arrays at
    once, and the arrays fill evenly), a piece crossing a
    shelf end is cut in two (no waste), and blocks that read the same input (Q, K, V; gate and up) are laid
    side by side so one row activation serves them all. Without a budget it uses the fewest arrays the shelves
    allow (the lower bound when the shelf height divides the block heights); with ``arrays=N`` it spreads over
    ``N`` arrays (more arrays, fewer activations per array, lower latency).
"""

from __future__ import annotations

import gc
import heapq
import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from cimisa.config import HwConfig
from cimisa.errors import KitError, ShapeError
from compiler.geometry import monarch_shape

__all__ = ["STRATEGIES", "DENSE_STEPS", "MatmulGeom", "Tile", "Placement", "PlacementError", "geometry",
           "place", "lower_bound", "default_nblocks"]

STRATEGIES = ("linear", "sparse", "dense", "auto")
#: DenseMap fires each block in this many row chunks (the paper's t0..t3; 32-row blocks -> 8 rows -> 3-bit ADC).
DENSE_STEPS = 4


class PlacementError(KitError):
    """A placement is impossible (e.g. the array budget is too small) or invalid (overlapping tiles)."""


@dataclass(frozen=True)
class MatmulGeom:
    """Block geometry of one mapped matmul (``r_shape = (k, q, p)``, ``l_shape = (k, s, r)``)."""

    name: str
    layer: int
    role: str
    stage: str
    input_group: str
    out_features: int
    in_features: int
    nblocks: int
    r_shape: tuple[int, int, int]
    l_shape: tuple[int, int, int]

    @property
    def in_ext(self) -> int:
        return self.nblocks * self.r_shape[2]

    @property
    def mid_len(self) -> int:
        return self.nblocks * self.r_shape[1]

    @property
    def out_ext(self) -> int:
        return self.nblocks * self.l_shape[1]

    @property
    def monarch_cells(self) -> int:
        return math.prod(self.r_shape) + math.prod(self.l_shape)

    @property
    def dense_cells(self) -> int:
        return self.out_features * self.in_features

    def block_dims(self, factor: str) -> tuple[int, int]:
        """Return ``(rows, cols)`` of one crossbar block of ``factor`` ('R', 'L' or 'W')."""
        if factor == "R":
            return self.r_shape[2], self.r_shape[1]
        if factor == "L":
            return self.l_shape[2], self.l_shape[1]
        return self.in_features, self.out_features

    def to_dict(self) -> dict:
        return {"name": self.name, "layer": self.layer, "role": self.role, "stage": self.stage,
                "input_group": self.input_group, "out_features": self.out_features,
                "in_features": self.in_features, "nblocks": self.nblocks, "r_shape": list(self.r_shape),
                "l_shape": list(self.l_shape)}


@dataclass(frozen=True)
class Tile:
    """A piece of one block on one array.

    The piece covers block rows ``r0..r0+rows-1`` (inputs) and block columns ``c0..c0+cols-1`` (outputs);
    its cell ``(rho, kappa)`` sits at array row ``row0 + rho*step``, column ``col0 + kappa*step`` (``step > 1``
    for interleaved SparseMap groups). ``group`` is the activation group (tiles fired by one MVM).
    ``rotation`` is the block-diagonal offset (DenseMap) or 0.
    """

    matmul: int
    factor: str
    block: int
    r0: int
    c0: int
    rows: int
    cols: int
    array: int
    row0: int
    col0: int
    step: int = 1
    group: int = 0
    rotation: int = 0

    @property
    def cells(self) -> int:
        return self.rows * self.cols

    @property
    def row_end(self) -> int:
        """One past the last array row used."""
        return self.row0 + (self.rows - 1) * self.step + 1

    @property
    def col_end(self) -> int:
        return self.col0 + (self.cols - 1) * self.step + 1


@dataclass(frozen=True, eq=False)
class Placement:
    """The result of a placement strategy: tiles on arrays and the activation groups, in firing order.

    ``groups[g]`` lists the indices (into ``tiles``) fired together; ``row_steps`` is how many row chunks each
    group is fired in (``DENSE_STEPS`` for DenseMap, else 1).
    """

    strategy: str
    rows: int
    cols: int
    nblocks: int
    matmuls: tuple[MatmulGeom, ...]
    tiles: tuple[Tile, ...] = field(repr=False)
    groups: tuple[tuple[int, ...], ...] = field(repr=False)
    n_arrays: int
    row_steps: int = 1
    shelf_rows: int = 0
    budget: int | None = None

    def __repr__(self) -> str:
        return (f"Placement(strategy={self.strategy!r}, arrays={self.n_arrays}, tiles={len(self.tiles)}, "
                f"groups={len(self.groups)}, utilization={self.utilization:.4f})")

    @property
    def cells_per_array(self) -> int:
        return self.rows * self.cols

    @property
    def weight_cells(self) -> int:
        """Weight cells placed (Monarch factor entries, or dense entries for ``linear``)."""
        return sum(t.cells for t in self.tiles)

    @property
    def monarch_cells(self) -> int:
        return sum(m.monarch_cells for m in self.matmuls)

    @property
    def utilization(self) -> float:
        """Weight cells / (arrays used * cells per array)."""
        return self.weight_cells / (self.n_arrays * self.cells_per_array) if self.n_arrays else 0.0

    @property
    def lower_bound(self) -> int:
        """``ceil(Monarch weight cells / cells per array)`` (dense cells for ``linear``)."""
        return -(-self.weight_cells // self.cells_per_array)

    def tiles_of(self, array: int) -> list[Tile]:
        return [t for t in self.tiles if t.array == array]

    def occupancy(self, array: int) -> np.ndarray:
        """Return a ``(rows, cols)`` int32 map of the array: matmul index + 1 per used cell, 0 where empty."""
        occ = np.zeros((self.rows, self.cols), dtype=np.int32)
        for t in self.tiles:
            if t.array == array:
                occ[t.row0:t.row_end:t.step, t.col0:t.col_end:t.step] = t.matmul + 1
        return occ

    def violations(self) -> list[str]:
        """Return every rule the placement breaks: tiles outside arrays, overlapping tiles, bad groups.

        Overlaps are found per array from the tiles' row/column lattices (bounding boxes and, for interleaved
        tiles, residues), cell by cell only for arrays mixing different steps. The lattice test runs on all
        arrays at once: tiles sorted by (array, first row), each compared with the later tiles of its array
        that start above its last row (the only ones it can overlap).
        """
        with paused_gc():
            return self._violations()

    def _violations(self) -> list[str]:
        out: list[str] = []
        tiles = self.tiles
        nt = len(tiles)
        if nt:
            attr = np.array([(t.array, t.rows, t.cols, t.step, t.row0, t.col0) for t in tiles], dtype=np.int64)
        else:
            attr = np.zeros((0, 6), dtype=np.int64)
        arr, rows, cols, step, row0, col0 = attr.T
        row_end = row0 + (rows - 1) * step + 1
        col_end = col0 + (cols - 1) * step + 1
        off = (arr < 0) | (arr >= self.n_arrays)
        outside = ~off & ((rows < 1) | (cols < 1) | (step < 1) | (row0 < 0) | (col0 < 0) | (row_end > self.rows) |
                          (col_end > self.cols))
        for n in np.flatnonzero(off | outside).tolist():
            t = tiles[n]
            if off[n]:
                out.append(f"tile {n} on array {t.array} outside 0..{self.n_arrays - 1}")
            else:
                out.append(f"tile {n} ({t.rows}x{t.cols} at {t.row0},{t.col0} step {t.step}) outside the "
                           f"{self.rows}x{self.cols} array")
        ok = np.flatnonzero(~(off | outside))
        bad_by_array: dict[int, int] = {}
        if len(ok) > 1:
            a_ok = arr[ok]
            # arrays whose tiles do not all share one step: cell by cell
            order = np.lexsort((ok, a_ok))
            srt, a_srt = ok[order], a_ok[order]
            first = np.r_[True, a_srt[1:] != a_srt[:-1]]
            starts = np.flatnonzero(first)
            s_min = np.minimum.reduceat(step[srt], starts)
            s_max = np.maximum.reduceat(step[srt], starts)
            mixed_arrays = a_srt[starts][s_min != s_max]
            for a in mixed_arrays.tolist():
                c = np.zeros((self.rows, self.cols), dtype=np.int16)
                for i in srt[a_srt == a].tolist():
                    t = tiles[i]
                    c[t.row0:t.row_end:t.step, t.col0:t.col_end:t.step] += 1
                bad_by_array[a] = int((c > 1).sum())
            # one step per array: lattice test on candidate pairs (i before j in (array, row0) order)
            uni = ok[~np.isin(a_ok, mixed_arrays)]
            if len(uni) > 1:
                big = int(self.rows) + 1
                key = arr[uni] * big + row0[uni]
                o2 = np.argsort(key, kind="stable")
                u, key = uni[o2], key[o2]
                pos = np.arange(len(u))
                stop = np.searchsorted(key, arr[u] * big + np.minimum(row_end[u], big - 1), side="left")
                cnt = np.maximum(stop - pos - 1, 0)
                total = int(cnt.sum())
                hits: list[np.ndarray] = []
                chunk = 1 << 19
                lo = 0
                csum = np.cumsum(cnt)
                while lo < len(u) and total:
                    hi = int(np.searchsorted(csum, (csum[lo - 1] if lo else 0) + chunk, side="right"))
                    hi = max(hi, lo + 1)
                    c_ = cnt[lo:hi]
                    if c_.sum():
                        ii = np.repeat(np.arange(lo, hi), c_)
                        base = np.repeat(np.cumsum(c_) - c_, c_)
                        jj = ii + 1 + (np.arange(len(ii)) - base)
                        ti, tj = u[ii], u[jj]
                        s = step[ti]
                        ov = ((col0[ti] < col_end[tj]) & (col0[tj] < col_end[ti]) &
                              (row0[ti] % s == row0[tj] % s) & (col0[ti] % s == col0[tj] % s))
                        if ov.any():
                            hits += [ti[ov], tj[ov]]
                    lo = hi
                if hits:
                    bad_tiles = np.unique(np.concatenate(hits))
                    ba, bc = np.unique(arr[bad_tiles], return_counts=True)
                    for a, c in zip(ba.tolist(), bc.tolist()):
                        bad_by_array[a] = c
        for a in sorted(bad_by_array):
            if bad_by_array[a]:
                out.append(f"array {a}: {bad_by_array[a]} cells or tiles hold more than one tile")
        ng = len(self.groups)
        lens = np.fromiter((len(m) for m in self.groups), dtype=np.int64, count=ng)
        flat = np.fromiter((i for m in self.groups for i in m), dtype=np.int64, count=int(lens.sum()))
        if len(flat) and nt:
            flat_arr = arr[flat]
        else:
            flat_arr = np.zeros(len(flat), dtype=np.int64)
            for k, i in enumerate(flat.tolist()):        # no tiles: let the lookup fail as it would
                flat_arr[k] = tiles[i].array
        nonempty = np.flatnonzero(lens > 0)
        gmsg: list[tuple[int, str]] = [(int(g), f"group {g} is empty") for g in np.flatnonzero(lens == 0)]
        if len(nonempty):
            st = (np.cumsum(lens) - lens)[nonempty]
            spans = np.minimum.reduceat(flat_arr, st) != np.maximum.reduceat(flat_arr, st)
            for g in nonempty[spans].tolist():
                arrays = {tiles[i].array for i in self.groups[g]}
                gmsg.append((g, f"group {g} spans arrays {sorted(arrays)}"))
        out += [m for _, m in sorted(gmsg)]
        if nt:
            # a tile listed twice in one group counts once there (as ``seen[list(members)] += 1`` would)
            gid = np.repeat(np.arange(ng, dtype=np.int64), lens)
            pairs = np.unique(gid * nt + np.where(flat < 0, flat + nt, flat))
            seen = np.bincount(pairs % nt, minlength=nt)
            if (seen != 1).any():
                out.append(f"{int((seen != 1).sum())} tiles are not in exactly one group")
        return out

    def validate(self) -> Placement:
        """Raise :class:`PlacementError` listing every violation; return self when valid."""
        problems = self.violations()
        if problems:
            raise PlacementError(f"invalid {self.strategy} placement: " + "; ".join(problems[:20]) +
                                 (f"; ... {len(problems) - 20} more" if len(problems) > 20 else ""))
        return self

    def per_matmul(self) -> dict[int, dict]:
        """Return per matmul index: arrays touched, cells placed."""
        res: dict[int, dict] = {}
        for t in self.tiles:
            d = res.setdefault(t.matmul, {"arrays": set(), "cells": 0})
            d["arrays"].add(t.array)
            d["cells"] += t.cells
        return res

    def to_json(self) -> dict:
        """Return ``mapping.json`` content: geometry, every tile, every group."""
        return {
            "strategy": self.strategy, "array_rows": self.rows, "array_cols": self.cols, "nblocks": self.nblocks,
            "arrays": self.n_arrays, "row_steps": self.row_steps, "shelf_rows": self.shelf_rows,
            "budget": self.budget,
            "matmuls": [m.to_dict() for m in self.matmuls],
            "tile_fields": ["matmul", "factor", "block", "r0", "c0", "rows", "cols", "array", "row0", "col0",
                            "step", "group", "rotation"],
            "tiles": [[t.matmul, t.factor, t.block, t.r0, t.c0, t.rows, t.cols, t.array, t.row0, t.col0, t.step,
                       t.group, t.rotation] for t in self.tiles],
            "groups": [list(g) for g in self.groups],
        }


# ---------------------------------------------------------------------------------------------------------------

def default_nblocks(spec) -> int:
    """Return the default block count: ``2**round(log2(sqrt(d_model)))`` (32 for d_model 1024, 8 for 64).

    ``d_model`` is the most common ``in_features`` of the mapped matmuls; the result is reduced until every
    mapped matmul accepts it (:func:`mapper.d2s.monarch.monarch_shape`).
    """
    from collections import Counter
    mapped = spec.mapped()
    if not mapped:
        raise ShapeError(f"model {spec.name!r} has no mapped matmuls")
    d = Counter(m.in_features for m in mapped).most_common(1)[0][0]
    k = 1 << max(0, round(math.log2(math.sqrt(d))))
    while k > 1:
        try:
            for m in mapped:
                monarch_shape(m.out_features, m.in_features, k)
            break
        except ShapeError:
            k //= 2
    return k


def geometry(spec, nblocks: int) -> tuple[MatmulGeom, ...]:
    """Return the block geometry of every mapped matmul of ``spec`` (a :class:`~mapper.models.ModelSpec`)."""
    out = []
    for m in spec.mapped():
        shp = monarch_shape(m.out_features, m.in_features, nblocks)
        out.append(MatmulGeom(m.name, m.layer, m.role, m.stage, m.input_group, m.out_features, m.in_features,
                              nblocks, tuple(shp.r_shape), tuple(shp.l_shape)))
    return tuple(out)


def lower_bound(geoms, hw: HwConfig) -> int:
    """Return ``ceil(Monarch weight cells / cells per array)``."""
    cells = sum(g.monarch_cells for g in geoms)
    return -(-cells // hw.cells_per_array)


@contextmanager
def paused_gc():
    """Pause the cyclic garbage collector while building tens of thousands of small acyclic objects (tiles,
    groups, activations): otherwise every few hundred allocations trigger a collection that walks every live
    object (more than half of the time of a large ``auto`` placement). Nothing built here forms a cycle, so
    no garbage is left for later; the collector is restored on exit."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _pieces(n: int, size: int) -> list[tuple[int, int]]:
    return [(o, min(size, n - o)) for o in range(0, n, size)]


class _Builder:
    def __init__(self, hw: HwConfig):
        self.m_r, self.m_c = hw.rows, hw.cols
        self.tiles: list[Tile] = []
        self.groups: list[list[int]] = []
        self.next_array = 0

    def new_array(self) -> int:
        a = self.next_array
        self.next_array += 1
        return a

    def add(self, group: int, **kw) -> int:
        self.tiles.append(Tile(group=group, **kw))
        self.groups[group].append(len(self.tiles) - 1)
        return len(self.tiles) - 1

    def new_group(self) -> int:
        self.groups.append([])
        return len(self.groups) - 1

    def oversized(self, mi: int, factor: str, block: int, h: int, w: int):
        """Cut a block larger than the array into tiles, one array each (row pieces in order)."""
        for r0, rr in _pieces(h, self.m_r):
            for c0, cc in _pieces(w, self.m_c):
                self.add(self.new_group(), matmul=mi, factor=factor, block=block, r0=r0, c0=c0, rows=rr,
                         cols=cc, array=self.new_array(), row0=0, col0=0)


def _largest_divisor_at_most(k: int, cap: int) -> int:
    return max(d for d in range(1, min(k, cap) + 1) if k % d == 0)


def _place_linear(geoms, hw) -> _Builder:
    b = _Builder(hw)
    for mi, g in enumerate(geoms):
        b.oversized(mi, "W", 0, g.in_features, g.out_features)
    return b


def _fitting_factors(b: _Builder, geoms):
    """Yield ``(matmul, factor, nblocks, block rows, block cols)`` for each factor whose blocks fit an array;
    blocks larger than an array are tiled across arrays here (``_Builder.oversized``) and not yielded."""
    for mi, g in enumerate(geoms):
        for factor in ("R", "L"):
            h, w = g.block_dims(factor)
            if h > b.m_r or w > b.m_c:
                for blk in range(g.nblocks):
                    b.oversized(mi, factor, blk, h, w)
                continue
            yield mi, factor, g.nblocks, h, w


def _place_sparse(geoms, hw) -> _Builder:
    b = _Builder(hw)
    for mi, factor, k, h, w in _fitting_factors(b, geoms):
        dmax = min(b.m_r // h, b.m_c // w)
        if factor == "R":
            for start in range(0, k, dmax):
                arr, grp = b.new_array(), b.new_group()
                for d, blk in enumerate(range(start, min(k, start + dmax))):
                    b.add(grp, matmul=mi, factor="R", block=blk, r0=0, c0=0, rows=h, cols=w, array=arr,
                          row0=d * h, col0=d * w)
        else:
            D = _largest_divisor_at_most(k, dmax)
            gstride = k // D
            for a0 in range(gstride):
                arr, grp = b.new_array(), b.new_group()
                for d in range(D):
                    b.add(grp, matmul=mi, factor="L", block=a0 + d * gstride, r0=0, c0=0, rows=h, cols=w,
                          array=arr, row0=d, col0=d, step=D)
    return b


def _place_dense(geoms, hw) -> _Builder:
    b = _Builder(hw)
    for mi, factor, k, h, w in _fitting_factors(b, geoms):
        nr, nc = b.m_r // h, b.m_c // w
        slots = [(u, (u + o) % nc, o) for o in range(nc) for u in range(nr)]
        # a slot (u, v) appears once: for fixed o, u -> v is injective; all nr*nc pairs are covered when
        # nr <= nc; when nr > nc some (u, v) repeat across o, so deduplicate keeping the first.
        seen, uniq = set(), []
        for u, v, o in slots:
            if (u, v) not in seen:
                seen.add((u, v))
                uniq.append((u, v, o))
        if len(uniq) < nr * nc:
            uniq += [(u, v, (v - u) % nc) for u in range(nr) for v in range(nc) if (u, v) not in seen]
        arr = None
        for blk in range(k):
            s = blk % len(uniq)
            if s == 0:
                arr = b.new_array()
            u, v, o = uniq[s]
            b.add(b.new_group(), matmul=mi, factor=factor, block=blk, r0=0, c0=0, rows=h, cols=w, array=arr,
                  row0=u * h, col0=v * w, rotation=o)
    return b


def _shelf_height(items_hw: list[tuple[int, int, int]], m_r: int, tolerance: float = 0.03) -> int:
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


def _place_auto(geoms, hw, budget: int | None, colocate: bool = True) -> _Builder:
    b = _Builder(hw)
    m_r, m_c = b.m_r, b.m_c
    # Pieces: (matmul, factor, block, r0, c0, rows, cols), block rows cut at the shelf height, columns at m_c.
    shapes: dict[tuple[int, int], int] = {}
    for g in geoms:
        for f in ("R", "L"):
            h, w = g.block_dims(f)
            shapes[(h, w)] = shapes.get((h, w), 0) + g.nblocks
    hs = _shelf_height([(h, w, n) for (h, w), n in shapes.items()], m_r)
    shelves = m_r // hs
    cap = shelves * m_c                      # tape length per array (shelf-column units)

    # Bundles: lists of pieces laid side by side (same rows -> one activation when they read the same input).
    bundles: list[list[tuple]] = []
    by_group: dict[tuple, list[int]] = {}
    for mi, g in enumerate(geoms):
        # same input and same layer: live together (BART's cross K/V of all layers read one encoder output,
        # but run layer by layer)
        by_group.setdefault((g.input_group, g.stage, g.layer), []).append(mi)
    done: set[int] = set()
    for mi, g in enumerate(geoms):
        if mi in done:
            continue
        members = by_group[(g.input_group, g.stage, g.layer)] if colocate else [mi]
        members = [x for x in members if geoms[x].r_shape == g.r_shape] if colocate else members
        done.update(members)
        h, w = g.block_dims("R")
        rows_p, cols_p = _pieces(h, hs), _pieces(w, m_c)
        for blk in range(g.nblocks):
            for r0, rr in rows_p:
                bundles.append([(x, "R", blk, r0, c0, rr, cc) for x in members for c0, cc in cols_p])
        # L stages never share inputs: each member's L pieces on its own
        for x in members:
            gx = geoms[x]
            h, w = gx.block_dims("L")
            rc = [(r0, c0, rr, cc) for r0, rr in _pieces(h, hs) for c0, cc in _pieces(w, m_c)]
            for blk in range(gx.nblocks):
                bundles += [[(x, "L", blk, r0, c0, rr, cc)] for r0, c0, rr, cc in rc]
    total = sum(p[6] for bd in bundles for p in bd)
    n_min = -(-total // cap)
    if budget is not None and budget < n_min:
        raise PlacementError(f"arrays budget too small: auto needs at least {n_min} arrays of {m_r}x{m_c} "
                             f"(shelves of {hs} rows), budget {budget}")
    n = budget if budget is not None else n_min
    fill = [0] * n
    remaining = total
    free = n * cap
    tiles, groups = b.tiles, b.groups
    heappop, heappush = heapq.heappop, heapq.heappush
    # Striping: each bundle goes to the array with the most free cells among those that hold nothing of the
    # same stage yet (so a stage's activations spread over distinct arrays and the arrays fill evenly).
    # ``heap`` holds (fill, array) entries (stale ones, whose fill has changed since, are dropped when popped);
    # entries of arrays that already hold the current stage wait in ``parked`` until the stage changes (they
    # would be popped and skipped by every bundle of the stage: keeping them aside makes a stage cost its
    # bundles, not its bundles times the arrays it has used).
    heap = [(0, a) for a in range(n)]
    parked: list[tuple[int, int]] = []
    stage_key, used = None, set()
    for bd in bundles:
        p0 = bd[0]
        key = (p0[0], p0[1])
        if key != stage_key or len(used) >= n:
            stage_key, used = key, set()
            if parked:
                heap += parked
                heapq.heapify(heap)
                parked = []
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
            a = min(live)[1] if live else next(j for j in range(n) if fill[j] < cap)
        used.add(a)
        touched = [a]
        width = p0[6] if len(bd) == 1 else sum(p[6] for p in bd)
        pos = fill[a]
        col = pos % m_c
        if col and col + width > m_c >= width and free - (m_c - col) >= remaining:
            # spare capacity (a budget above the minimum): start on a fresh shelf instead of cutting the bundle
            free -= m_c - col
            pos = fill[a] = pos + m_c - col
            if pos >= cap:
                a = next((j % n for j in range(a + 1, a + 1 + n) if fill[j % n] < cap), a)
                touched.append(a)
        remaining -= width
        free -= width
        grp = -1
        for mi, f, blk, r0, c0, rr, cc in bd:
            while True:
                pos = fill[a]
                if pos >= cap:
                    a = next((j % n for j in range(a + 1, a + 1 + n) if fill[j % n] < cap), None)
                    if a is None:
                        raise PlacementError("auto placement overflow (internal)")
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
        for t_a in set(touched):
            heappush(heap, (fill[t_a], t_a))
    b.next_array = n
    return b


def place(spec_or_geoms, hw: HwConfig, strategy: str = "auto", *, nblocks: int | None = None,
          arrays: int | None = None, colocate: bool = True, validate: bool = True) -> Placement:
    """Place every mapped matmul of a :class:`~mapper.models.ModelSpec` (or a tuple of :class:`MatmulGeom`).

    ``arrays`` is a budget: ``auto`` spreads over exactly that many arrays (minimising latency), the other
    strategies raise :class:`PlacementError` when they need more.
    """
    if strategy not in STRATEGIES:
        raise PlacementError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if arrays is not None and (not isinstance(arrays, int) or arrays < 1):
        raise PlacementError(f"arrays budget must be a positive integer, not {arrays!r}")
    if isinstance(spec_or_geoms, tuple) and (not spec_or_geoms or isinstance(spec_or_geoms[0], MatmulGeom)):
        geoms = spec_or_geoms
        nb = geoms[0].nblocks if geoms else (nblocks or 1)
    else:
        nb = nblocks if nblocks is not None else default_nblocks(spec_or_geoms)
        geoms = geometry(spec_or_geoms, nb)
    with paused_gc():
        return _place(geoms, hw, strategy, nb, arrays, colocate, validate)


def _place(geoms, hw: HwConfig, strategy: str, nb: int, arrays: int | None, colocate: bool,
           validate: bool) -> Placement:
    if strategy == "linear":
        b = _place_linear(geoms, hw)
    elif strategy == "sparse":
        b = _place_sparse(geoms, hw)
    elif strategy == "dense":
        b = _place_dense(geoms, hw)
    else:
        b = _place_auto(geoms, hw, arrays, colocate)
    shelf = 0
    if strategy == "auto":
        shelf = max((t.rows for t in b.tiles), default=0)
    p = Placement(strategy=strategy, rows=hw.rows, cols=hw.cols, nblocks=nb, matmuls=tuple(geoms),
                  tiles=tuple(b.tiles), groups=tuple(tuple(g) for g in b.groups), n_arrays=b.next_array,
                  row_steps=DENSE_STEPS if strategy == "dense" else 1, shelf_rows=shelf,
                  budget=arrays)
    if arrays is not None and p.n_arrays > arrays:
        raise PlacementError(f"arrays budget too small: {strategy} needs {p.n_arrays} arrays, budget {arrays}")
    if validate:
        p.validate()
    return p
