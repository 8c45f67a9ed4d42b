"""``dense`` (DenseMap): blocks packed on rotated block diagonals, R and L of each matmul on their own arrays.

Diagonal ``o`` puts block ``u`` of the diagonal at slot ``(u, (u+o) mod nc)``. A column mixes blocks of different
diagonals, so each block is fired alone, in row chunks: :data:`DENSE_STEPS` by default (the paper's four
timestamps t0..t3), or any ``row_steps`` that divides the rows of every block (:func:`dense_row_steps`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cimisa.config import HwConfig
from compiler.geometry import MatmulGeom
from compiler.place.builder import Builder, fitting_factors
from compiler.place.types import PlacementError

__all__ = ["DENSE_STEPS", "place_dense", "diagonal_slots", "dense_row_steps"]

#: DenseMap fires each block in this many row chunks by default (the paper's t0..t3; 32-row blocks -> 8 rows ->
#: 3-bit ADC).
DENSE_STEPS = 4


def dense_row_steps(geoms: Sequence[MatmulGeom], hw: HwConfig, row_steps: int | None) -> int:
    """Return DenseMap's row chunks per block: ``row_steps``, which must divide the rows every block (or
    array-sized piece of a block) is fired with, so every chunk has the same rows and the ADC resolution is one
    per factor; :class:`PlacementError` otherwise. None: :data:`DENSE_STEPS`, unchecked (as before the
    parameter: a block of fewer rows is fired in fewer, shorter chunks)."""
    if row_steps is None:
        return DENSE_STEPS
    steps = row_steps
    heights = [x for g in geoms for f in ("R", "L") for x in (min(g.block_dims(f)[0], hw.rows),
                                                                g.block_dims(f)[0] % hw.rows) if x]
    rows = math.gcd(*heights) if heights else hw.rows
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or rows % steps:
        ok = ", ".join(str(d) for d in range(1, rows + 1) if rows % d == 0)
        raise PlacementError(f"row steps must divide the rows of every block ({rows}): one of {ok}, not "
                             f"{steps!r}")
    return steps


def diagonal_slots(nr: int, nc: int) -> list[tuple[int, int, int]]:
    """Return the ``(row slot, column slot, rotation)`` of each block position of an array, in filling order.

    A slot ``(u, v)`` appears once: for fixed ``o``, ``u -> v`` is injective; all ``nr*nc`` pairs are covered
    when ``nr <= nc``; when ``nr > nc`` some ``(u, v)`` repeat across ``o``, so the first is kept and the
    uncovered slots follow.
    """
    slots = [(u, (u + o) % nc, o) for o in range(nc) for u in range(nr)]
    seen, uniq = set(), []
    for u, v, o in slots:
        if (u, v) not in seen:
            seen.add((u, v))
            uniq.append((u, v, o))
    if len(uniq) < nr * nc:
        uniq += [(u, v, (v - u) % nc) for u in range(nr) for v in range(nc) if (u, v) not in seen]
    return uniq


def place_dense(geoms: Sequence[MatmulGeom], hw: HwConfig) -> Builder:
    """Place every factor's blocks on rotated diagonals, each block its own activation group."""
    b = Builder(hw)
    for mi, factor, k, h, w in fitting_factors(b, geoms):
        uniq = diagonal_slots(b.m_r // h, b.m_c // w)
        arr = None
        for blk in range(k):
            s = blk % len(uniq)
            if s == 0:
                arr = b.new_array()
            u, v, o = uniq[s]
            b.add(b.new_group(), matmul=mi, factor=factor, block=blk, r0=0, c0=0, rows=h, cols=w, array=arr,
                  row0=u * h, col0=v * w, rotation=o)
    return b
