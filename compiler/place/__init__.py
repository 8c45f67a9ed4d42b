"""Placement: which piece of which factor of which matmul sits on which crossbar array, where.

A matmul ``(out, in)`` with ``nblocks = k`` has Monarch factors ``R (k, q, p)`` and ``L (k, s, r)``
(:mod:`compiler.geometry`). On a crossbar, rows are inputs and columns outputs, so block ``i`` of ``R`` is a
``p x q`` rectangle (cell ``(m, j) = R[i, j, m]``) and block ``a`` of ``L`` an ``r x s`` rectangle
(cell ``(c, t) = L[a, t, c]``). The ``linear`` baseline places the dense ``W`` (an ``in x out`` rectangle).
Columns are *logical* (``hw.logical_cols`` weights per array row; a weight takes ``hw.fmt.cols_per_weight``
physical cells, :mod:`cimisa.formats`). A :class:`Tile` is a piece of one block that fits an array; blocks
larger than an array are cut into tiles (row pieces accumulate into the same outputs). Tiles that one MVM fires
together form a *group*.

:func:`place` takes the geometry of a model (:func:`compiler.geometry.geometry`) and one
:class:`~compiler.kinds.Strategy`, each in its own module:

* :mod:`compiler.place.linear` -- the dense matrix tiled (the paper's baseline);
* :mod:`compiler.place.sparse` -- SparseMap, block-diagonal groups with permutation folding;
* :mod:`compiler.place.dense` -- DenseMap, rotated block diagonals fired in row chunks;
* :mod:`compiler.place.auto` -- the kit's striped shelf packing.

The data types are in :mod:`compiler.place.types`, the shared builder in :mod:`compiler.place.builder`, the
validity checker in :mod:`compiler.place.check`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cimisa.config import HwConfig
from compiler.geometry import MatmulGeom, default_nblocks, geometry, lower_bound
from compiler.kinds import Strategy, choices
from compiler.place.auto import place_auto
from compiler.place.builder import Builder, paused_gc
from compiler.place.dense import DENSE_STEPS, dense_row_steps, place_dense
from compiler.place.linear import place_linear
from compiler.place.sparse import place_sparse
from compiler.place.types import Piece, Placement, PlacementError, Tile

__all__ = ["STRATEGIES", "DENSE_STEPS", "dense_row_steps", "MatmulGeom", "Tile", "Piece", "Placement",
           "PlacementError", "geometry", "place", "lower_bound", "default_nblocks", "paused_gc", "as_strategy"]

#: The strategy names, in order (``choices(Strategy)``).
STRATEGIES = choices(Strategy)

#: One builder per strategy: ``(geoms, hw, budget, colocate) -> Builder``.
_PLACERS: dict[Strategy, Callable[[tuple[MatmulGeom, ...], HwConfig, int | None, bool], Builder]] = {
    Strategy.LINEAR: lambda geoms, hw, budget, colocate: place_linear(geoms, hw),
    Strategy.SPARSE: lambda geoms, hw, budget, colocate: place_sparse(geoms, hw),
    Strategy.DENSE: lambda geoms, hw, budget, colocate: place_dense(geoms, hw),
    Strategy.AUTO: place_auto,
}


def as_strategy(name: str) -> Strategy:
    """Return the :class:`~compiler.kinds.Strategy` named ``name``; :class:`PlacementError` if there is none."""
    try:
        return Strategy(name)
    except ValueError:
        raise PlacementError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None


def place(geoms: Sequence[MatmulGeom], hw: HwConfig, strategy: Strategy | str = Strategy.AUTO, *,
          arrays: int | None = None, colocate: bool = True, validate: bool = True,
          row_steps: int | None = None) -> Placement:
    """Place every matmul of ``geoms`` (the :class:`MatmulGeom` tuple of :func:`geometry`) with ``strategy``.

    ``arrays`` is a budget: ``auto`` spreads over exactly that many arrays (minimising latency), the other
    strategies raise :class:`PlacementError` when they need more. ``row_steps``: the row chunks DenseMap fires
    each block in (None: :data:`DENSE_STEPS`; :func:`dense_row_steps` checks it); other strategies fire whole
    groups and ignore it.
    """
    st = as_strategy(strategy)
    if arrays is not None and (not isinstance(arrays, int) or arrays < 1):
        raise PlacementError(f"arrays budget must be a positive integer, not {arrays!r}")
    geoms = tuple(geoms)
    if not all(isinstance(g, MatmulGeom) for g in geoms):
        raise TypeError("place() takes MatmulGeom objects; call compiler.geometry.geometry(spec, nblocks) first")
    steps = dense_row_steps(geoms, hw, row_steps) if st is Strategy.DENSE else 1
    with paused_gc():
        b = _PLACERS[st](geoms, hw, arrays, colocate)
        return _placement(b, geoms, hw, st, arrays, validate, steps)


def _placement(b: Builder, geoms: tuple[MatmulGeom, ...], hw: HwConfig, st: Strategy, arrays: int | None,
               validate: bool, row_steps: int) -> Placement:
    shelf = max((t.rows for t in b.tiles), default=0) if st is Strategy.AUTO else 0
    fmt = hw.fmt
    p = Placement(strategy=st, rows=hw.rows, cols=hw.logical_cols, nblocks=geoms[0].nblocks if geoms else 1,
                  matmuls=geoms, tiles=tuple(b.tiles), groups=tuple(tuple(g) for g in b.groups),
                  n_arrays=b.next_array, row_steps=row_steps, shelf_rows=shelf, budget=arrays,
                  cells_per_weight=fmt.cols_per_weight, bias_cols=fmt.bias_cols, phys_cols=hw.cols)
    if arrays is not None and p.n_arrays > arrays:
        raise PlacementError(f"arrays budget too small: {st} needs {p.n_arrays} arrays, budget {arrays}")
    if validate:
        p.validate()
    return p
