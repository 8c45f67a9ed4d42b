"""The fast placement paths give exactly what straightforward reference code gives, on small random cases.

``compiler.place`` builds ``auto`` placements with a tuned loop and checks placements with an all-arrays lattice
test; ``compiler.schedule`` summarises each group once and takes the shortcut for whole-tile windows. The
references below are the plain versions (one tile at a time, one array at a time, one window at a time): the
tuned code must reproduce their tiles, groups, violation messages and activations exactly. No timing here
(``bench/bench_mapper.py`` measures).
"""

from __future__ import annotations

import dataclasses
import heapq
import math

import numpy as np
import pytest

from cimisa.config import HwConfig
from cimisa.errors import ShapeError
from compiler.geometry import monarch_shape
from compiler.place import STRATEGIES, MatmulGeom, Placement, PlacementError, Tile, place
from compiler.place.auto import shelf_height
from compiler.schedule import adc_setting, schedule


def _pieces(n, size):
    return [(o, min(size, n - o)) for o in range(0, n, size)]


def reference_auto(geoms, rows, cols, budget=None, colocate=True):
    """The ``auto`` rule one piece at a time: return ``(tiles as tuples, groups, arrays)``."""
    m_r, m_c = rows, cols
    shapes = {}
    for g in geoms:
        for f in ("R", "L"):
            h, w = g.block_dims(f)
            shapes[(h, w)] = shapes.get((h, w), 0) + g.nblocks
    hs = shelf_height([(h, w, n) for (h, w), n in shapes.items()], m_r)
    cap = (m_r // hs) * m_c
    bundles = []
    by_group = {}
    for mi, g in enumerate(geoms):
        by_group.setdefault((g.input_group, g.stage, g.layer), []).append(mi)
    done = set()
    for mi, g in enumerate(geoms):
        if mi in done:
            continue
        members = by_group[(g.input_group, g.stage, g.layer)] if colocate else [mi]
        members = [x for x in members if geoms[x].r_shape == g.r_shape] if colocate else members
        done.update(members)
        h, w = g.block_dims("R")
        for blk in range(g.nblocks):
            for r0, rr in _pieces(h, hs):
                bundles.append([(x, "R", blk, r0, c0, rr, cc) for x in members for c0, cc in _pieces(w, m_c)])
        for x in members:
            h, w = geoms[x].block_dims("L")
            for blk in range(geoms[x].nblocks):
                for r0, rr in _pieces(h, hs):
                    for c0, cc in _pieces(w, m_c):
                        bundles.append([(x, "L", blk, r0, c0, rr, cc)])
    total = sum(p[6] for bd in bundles for p in bd)
    n_min = -(-total // cap)
    if budget is not None and budget < n_min:
        raise PlacementError("budget too small")
    n = budget if budget is not None else n_min
    fill = [0] * n
    remaining, free = total, n * cap
    tiles, groups = [], []
    heap = [(0, a) for a in range(n)]
    stage_key, used = None, set()
    for bd in bundles:
        key = (bd[0][0], bd[0][1])
        if key != stage_key or len(used) >= n:
            stage_key, used = key, set()
        skipped, a = [], None
        while heap:
            f_a, cand = heapq.heappop(heap)
            if f_a != fill[cand] or fill[cand] >= cap:
                continue
            if cand in used:
                skipped.append((f_a, cand))
                continue
            a = cand
            break
        if a is None:
            skipped.sort()
            a = skipped.pop(0)[1] if skipped else next(j for j in range(n) if fill[j] < cap)
        for item in skipped:
            heapq.heappush(heap, item)
        used.add(a)
        touched = {a}
        pieces = list(bd)
        width = sum(p[6] for p in pieces)
        col = fill[a] % m_c
        if col and col + width > m_c >= width and free - (m_c - col) >= remaining:
            free -= m_c - col
            fill[a] += m_c - col
            if fill[a] >= cap:
                a = next((j % n for j in range(a + 1, a + 1 + n) if fill[j % n] < cap), a)
                touched.add(a)
        remaining -= width
        free -= width
        grp = None
        while pieces:
            if fill[a] >= cap:
                a = next(j % n for j in range(a + 1, a + 1 + n) if fill[j % n] < cap)
                touched.add(a)
                grp = None
            shelf, col = divmod(fill[a], m_c)
            mi, f, blk, r0, c0, rr, cc = pieces.pop(0)
            take = min(cc, m_c - col)
            if grp is None:
                groups.append([])
                grp = len(groups) - 1
            groups[grp].append(len(tiles))
            tiles.append((mi, f, blk, r0, c0, rr, take, a, shelf * hs, col, 1, grp, 0))
            fill[a] += take
            if take < cc:
                pieces.insert(0, (mi, f, blk, r0, c0 + take, rr, cc - take))
            if fill[a] % m_c == 0:
                grp = None
        for t_a in touched:
            heapq.heappush(heap, (fill[t_a], t_a))
    return tiles, groups, n


def reference_violations(p: Placement) -> list[str]:
    """Overlaps array by array (pairwise lattice test, or a cell count when steps differ), groups one by one."""
    out = []
    by_array = {}
    for n, t in enumerate(p.tiles):
        if not (0 <= t.array < p.n_arrays):
            out.append(f"tile {n} on array {t.array} outside 0..{p.n_arrays - 1}")
            continue
        if t.rows < 1 or t.cols < 1 or t.step < 1 or t.row0 < 0 or t.col0 < 0 or t.row_end > p.rows or \
                t.col_end > p.cols:
            out.append(f"tile {n} ({t.rows}x{t.cols} at {t.row0},{t.col0} step {t.step}) outside the "
                       f"{p.rows}x{p.cols} array")
            continue
        by_array.setdefault(t.array, []).append(n)
    for a, idx in sorted(by_array.items()):
        ts = [p.tiles[i] for i in idx]
        if len({t.step for t in ts}) == 1:
            bad = sum(any(i != j and t.row0 < u.row_end and u.row0 < t.row_end and t.col0 < u.col_end and
                          u.col0 < t.col_end and t.row0 % t.step == u.row0 % t.step and
                          t.col0 % t.step == u.col0 % t.step for j, u in enumerate(ts)) for i, t in enumerate(ts))
        else:
            c = np.zeros((p.rows, p.cols), dtype=np.int16)
            for t in ts:
                c[t.row0:t.row_end:t.step, t.col0:t.col_end:t.step] += 1
            bad = int((c > 1).sum())
        if bad:
            out.append(f"array {a}: {bad} cells or tiles hold more than one tile")
    seen = np.zeros(len(p.tiles), dtype=np.int32)
    for g, members in enumerate(p.groups):
        if not members:
            out.append(f"group {g} is empty")
            continue
        arrays = {p.tiles[i].array for i in members}
        if len(arrays) != 1:
            out.append(f"group {g} spans arrays {sorted(arrays)}")
        seen[list(members)] += 1
    if len(p.tiles) and (seen != 1).any():
        out.append(f"{int((seen != 1).sum())} tiles are not in exactly one group")
    return out


def reference_schedule(p: Placement, hw, mode):
    """Activations as tuples: every group, every row chunk, every tile's rows counted in the window."""
    def rows_in(t, lo, hi):
        return sum(1 for rho in range(t.rows) if lo <= t.row0 + rho * t.step < hi)

    comp = list(range(len(p.matmuls)))                  # owner of co-located matmuls: the smallest index
    changed = True
    while changed:
        changed = False
        for members in p.groups:
            ms = {comp[p.tiles[i].matmul] for i in members}
            lo = min(ms)
            for m in range(len(comp)):
                if comp[m] in ms and comp[m] != lo:
                    comp[m], changed = lo, True
    per_stage = {}
    for g, members in enumerate(p.groups):
        ts = [p.tiles[i] for i in members]
        owner = min(comp[t.matmul] for t in ts) if ts[0].factor == "R" else ts[0].matmul
        per_stage.setdefault((owner, ts[0].factor), []).append((min(t.r0 for t in ts), g))
    order = {"W": 0, "R": 1, "L": 2}
    acts, t_on = [], {}
    steps = max(1, p.row_steps)
    for key in sorted(per_stage, key=lambda k: (k[0], order[k[1]])):
        for r0, g in sorted(per_stage[key]):
            ts = [p.tiles[i] for i in p.groups[g]]
            arr = ts[0].array
            row_lo, row_hi = min(t.row0 for t in ts), max(t.row_end for t in ts)
            col_lo, col_hi = min(t.col0 for t in ts), max(t.col_end for t in ts)
            chunk = -(-(row_hi - row_lo) // steps)
            for c, lo in enumerate(range(row_lo, row_hi, chunk)):
                hi = min(row_hi, lo + chunk)
                rpc = max(rows_in(t, lo, hi) for t in ts)
                if rpc == 0:
                    continue
                bits, shift = adc_setting(rpc, hw, mode)
                tt = t_on.get(arr, 0)
                t_on[arr] = tt + 1
                acts.append((arr, tt, key[0], key[1], g, c, lo, hi - lo, col_lo, col_hi - col_lo, rpc,
                             sum(rows_in(t, lo, hi) * t.cols for t in ts), bits, shift, r0 > 0 or c > 0,
                             tuple(sorted({t.matmul for t in ts}))))
    return acts


def _hw(rows, cols):
    return HwConfig(name="perf", rows=rows, cols=cols, n_arrays=1 << 14, weight_bits=4, input_bits=6,
                    adc_bits=HwConfig(name="x", rows=rows, cols=cols, weight_bits=4, adc_bits=1,
                                      rows_per_cycle=1).lossless_adc_bits,
                    adcs_per_array=2, in_depth=4096, out_depth=4096, rows_per_cycle=1)


def random_case(seed):
    """Random matmuls (some sharing an input and a layer, so ``auto`` co-locates them) and an array size."""
    rng = np.random.default_rng(seed)
    rows, cols = [(8, 8), (16, 16), (16, 8), (12, 20), (32, 32), (24, 16)][rng.integers(6)]
    k = int(rng.integers(1, 9))
    geoms = []
    for i in range(int(rng.integers(1, 8))):
        o, n = int(rng.integers(4, 80)), int(rng.integers(4, 80))
        if rng.random() < 0.4 and geoms:              # same input as an earlier matmul: Q/K/V-like
            prev = geoms[int(rng.integers(len(geoms)))]
            n, grp, layer, stage = prev.in_features, prev.input_group, prev.layer, prev.stage
        else:
            grp, layer, stage = f"x{i}", int(rng.integers(0, 3)), ["encoder", "decoder"][int(rng.integers(2))]
        try:
            s = monarch_shape(o, n, k)
        except ShapeError:
            continue
        geoms.append(MatmulGeom(f"m{i}", layer, "q", stage, grp, o, n, k, s.r_shape, s.l_shape))
    return tuple(geoms), _hw(rows, cols), rng


SEEDS = range(60)


@pytest.mark.parametrize("seed", SEEDS)
def test_auto_matches_reference(seed):
    geoms, hw, rng = random_case(seed)
    if not geoms:
        pytest.skip("no matmul accepts this block count")
    colocate = bool(rng.integers(2))
    base = place(geoms, hw, "auto", colocate=colocate, validate=False).n_arrays
    for budget in (None, base, base + int(rng.integers(1, 5)), 2 * base + 1):
        p = place(geoms, hw, "auto", arrays=budget, colocate=colocate)
        tiles, groups, n = reference_auto(geoms, hw.rows, hw.cols, budget, colocate)
        assert [dataclasses.astuple(t) for t in p.tiles] == tiles
        assert [list(g) for g in p.groups] == groups
        assert p.n_arrays == n
        assert p.shelf_rows == max((t[5] for t in tiles), default=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_schedule_matches_reference(seed):
    geoms, hw, rng = random_case(seed)
    if not geoms:
        pytest.skip("no matmul accepts this block count")
    for st in STRATEGIES:
        p = place(geoms, hw, st, colocate=bool(rng.integers(2)))
        for mode in ("paper", "exact"):
            got = [dataclasses.astuple(a) for a in schedule(p, hw, mode).activations]
            assert got == reference_schedule(p, hw, mode), (st, mode)


def _corrupt(p: Placement, rng) -> Placement:
    """Move, resize, re-step, re-array or re-group a few tiles (some moves stay valid)."""
    tiles, groups = list(p.tiles), [list(g) for g in p.groups]
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(len(tiles)))
        t = tiles[i]
        what = int(rng.integers(7))
        if what == 0:
            t = dataclasses.replace(t, row0=max(0, t.row0 + int(rng.integers(-3, 4))),
                                    col0=max(0, t.col0 + int(rng.integers(-3, 4))))
        elif what == 1:
            t = dataclasses.replace(t, array=int(rng.integers(-1, p.n_arrays + 1)))
        elif what == 2:
            t = dataclasses.replace(t, step=int(rng.integers(1, 4)))
        elif what == 3:
            t = dataclasses.replace(t, rows=int(rng.integers(0, p.rows + 2)), cols=int(rng.integers(1, 5)))
        elif what == 4 and len(groups) > 1:
            groups[int(rng.integers(len(groups)))].append(i)             # a tile in two groups
        elif what == 5:
            groups.append([])                                           # an empty group
        else:
            j = int(rng.integers(len(tiles)))
            t = dataclasses.replace(t, array=tiles[j].array, row0=tiles[j].row0, col0=tiles[j].col0)
        tiles[i] = t
    return dataclasses.replace(p, tiles=tuple(tiles), groups=tuple(tuple(g) for g in groups))


@pytest.mark.parametrize("seed", SEEDS)
def test_violations_match_reference(seed):
    geoms, hw, rng = random_case(seed)
    if not geoms:
        pytest.skip("no matmul accepts this block count")
    for st in STRATEGIES:
        p = place(geoms, hw, st)
        assert p.violations() == reference_violations(p) == []
        for _ in range(5):
            q = _corrupt(p, rng)
            assert q.violations() == reference_violations(q), st


def test_violations_overlap_counts():
    """Interleaved tiles on one step: residues decide; mixed steps: cells are counted."""
    def pl(tiles, n=1):
        return Placement("auto", 8, 8, 1, (), tuple(tiles), tuple((i,) for i in range(len(tiles))), n)

    a = Tile(0, "R", 0, 0, 0, 4, 4, 0, 0, 0, step=2)
    b = Tile(0, "R", 1, 0, 0, 4, 4, 0, 1, 1, step=2)          # other residue: no overlap
    c = Tile(0, "R", 2, 0, 0, 2, 2, 0, 2, 2, step=2)          # same residue inside a: overlap
    assert pl([a, b]).violations() == []
    assert pl([a, b, c]).violations() == reference_violations(pl([a, b, c])) == \
        ["array 0: 2 cells or tiles hold more than one tile"]
    d = Tile(0, "R", 3, 0, 0, 2, 2, 0, 0, 0)                  # step 1 with step 2 on one array: cell count
    assert pl([a, d]).violations() == reference_violations(pl([a, d])) == \
        ["array 0: 1 cells or tiles hold more than one tile"]
    assert math.isclose(pl([a, b]).utilization, 32 / 64)
