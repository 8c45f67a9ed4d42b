"""The placement checker: every rule a :class:`~compiler.place.types.Placement` breaks (:func:`violations`).

Rules: every tile inside its array and inside ``0..n_arrays-1``, no cell holding two tiles, every activation group
non-empty and on one array, every tile in exactly one group. Overlaps are found per array from the tiles'
row/column lattices (bounding boxes and, for interleaved tiles, residues), cell by cell only for arrays mixing
different steps. The lattice test runs on all arrays at once: tiles sorted by (array, first row), each compared
with the later tiles of its array that start above its last row (the only ones it can overlap).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from compiler.place.gcpause import paused_gc

if TYPE_CHECKING:
    from compiler.place.types import Placement

__all__ = ["violations"]


def violations(p: Placement) -> list[str]:
    """Return every rule ``p`` breaks (empty when valid), in a fixed order: tiles, overlaps, groups."""
    with paused_gc():
        return _violations(p)


def _violations(p: Placement) -> list[str]:
    out: list[str] = []
    tiles = p.tiles
    nt = len(tiles)
    if nt:
        attr = np.array([(t.array, t.rows, t.cols, t.step, t.row0, t.col0) for t in tiles], dtype=np.int64)
    else:
        attr = np.zeros((0, 6), dtype=np.int64)
    arr, rows, cols, step, row0, col0 = attr.T
    row_end = row0 + (rows - 1) * step + 1
    col_end = col0 + (cols - 1) * step + 1
    off = (arr < 0) | (arr >= p.n_arrays)
    outside = ~off & ((rows < 1) | (cols < 1) | (step < 1) | (row0 < 0) | (col0 < 0) | (row_end > p.rows) |
                      (col_end > p.cols))
    for n in np.flatnonzero(off | outside).tolist():
        t = tiles[n]
        if off[n]:
            out.append(f"tile {n} on array {t.array} outside 0..{p.n_arrays - 1}")
        else:
            out.append(f"tile {n} ({t.rows}x{t.cols} at {t.row0},{t.col0} step {t.step}) outside the "
                       f"{p.rows}x{p.cols} array")
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
            c = np.zeros((p.rows, p.cols), dtype=np.int16)
            for i in srt[a_srt == a].tolist():
                t = tiles[i]
                c[t.row0:t.row_end:t.step, t.col0:t.col_end:t.step] += 1
            bad_by_array[a] = int((c > 1).sum())
        # one step per array: lattice test on candidate pairs (i before j in (array, row0) order)
        uni = ok[~np.isin(a_ok, mixed_arrays)]
        if len(uni) > 1:
            big = int(p.rows) + 1
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
    ng = len(p.groups)
    lens = np.fromiter((len(m) for m in p.groups), dtype=np.int64, count=ng)
    flat = np.fromiter((i for m in p.groups for i in m), dtype=np.int64, count=int(lens.sum()))
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
            arrays = {tiles[i].array for i in p.groups[g]}
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

