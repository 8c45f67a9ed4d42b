"""The placement data: :class:`Tile` (a piece of a block on an array), :class:`Piece` (a piece of a block not yet
on an array, as ``auto`` lays them), :class:`Placement` (a strategy's result) and :class:`PlacementError`.

Units: tiles, windows and :attr:`Placement.cols` are in *logical* columns (one weight each, as the command set
addresses them); a weight takes :attr:`Placement.cells_per_weight` physical cells and an ``offset`` array keeps
:attr:`Placement.bias_cols` bias columns (:mod:`cimisa.formats`). Figures named ``cells`` count physical cells,
those named ``weights`` count weights; in the default format (one cell per weight) they are equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from cimisa.errors import KitError
from compiler.geometry import MatmulGeom
from compiler.kinds import Strategy
from compiler.place.check import violations

__all__ = ["PlacementError", "Tile", "Piece", "Placement"]


class PlacementError(KitError):
    """A placement is impossible (e.g. the array budget is too small) or invalid (overlapping tiles)."""


class Piece(NamedTuple):
    """A piece of one block before it is laid on an array: block rows ``r0..r0+rows-1`` and block columns
    ``c0..c0+cols-1`` of block ``block`` of ``factor`` ('R', 'L') of matmul ``matmul``.

    A named tuple rather than a dataclass: ``auto`` builds one per piece of every block of a model (hundreds of
    thousands for a large model) and reads them in its inner loop.
    """

    matmul: int
    factor: str
    block: int
    r0: int
    c0: int
    rows: int
    cols: int


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
    def weights(self) -> int:
        """Weights of the tile (``rows * cols``)."""
        return self.rows * self.cols

    @property
    def cells(self) -> int:
        """The tile's weights (as :attr:`weights`; kept for old callers): its physical cells are
        ``weights * Placement.cells_per_weight``."""
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
    group is fired in (``DENSE_STEPS`` for DenseMap, else 1). An array is ``rows x cols`` weights (``cols``:
    ``hw.logical_cols``) in ``rows x phys_cols`` physical cells: ``cells_per_weight`` per weight
    (``fmt.cols_per_weight``) and ``bias_cols`` bias columns (``offset``); ``phys_cols`` 0 means
    ``cols * cells_per_weight + bias_cols``.
    """

    strategy: Strategy
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
    cells_per_weight: int = 1
    bias_cols: int = 0
    phys_cols: int = 0

    def __repr__(self) -> str:
        return (f"Placement(strategy={str(self.strategy)!r}, arrays={self.n_arrays}, tiles={len(self.tiles)}, "
                f"groups={len(self.groups)}, utilization={self.utilization:.4f})")

    @property
    def array_cols(self) -> int:
        """Physical columns of an array (``hw.cols``)."""
        return self.phys_cols or self.cols * self.cells_per_weight + self.bias_cols

    @property
    def array_cells(self) -> int:
        """Physical cells of one array (``rows * array_cols``)."""
        return self.rows * self.array_cols

    @property
    def cells_per_array(self) -> int:
        """Cells of one array that can hold weights: ``rows * cols * cells_per_weight`` (without the bias
        column and any columns too few for a whole weight)."""
        return self.rows * self.cols * self.cells_per_weight

    @property
    def weights(self) -> int:
        """Weights placed (Monarch factor entries, or dense entries for ``linear``)."""
        return sum(t.weights for t in self.tiles)

    @property
    def weight_cells(self) -> int:
        """Physical cells holding the placed weights (``weights * cells_per_weight``)."""
        return self.weights * self.cells_per_weight

    @property
    def bias_cells(self) -> int:
        """Cells of the bias columns of the arrays used (``offset``; 0 otherwise)."""
        return self.n_arrays * self.rows * self.bias_cols

    @property
    def monarch_cells(self) -> int:
        """Physical cells of the model's Monarch factors (or dense matrices for ``linear`` geometries)."""
        return sum(m.monarch_cells for m in self.matmuls) * self.cells_per_weight

    @property
    def utilization(self) -> float:
        """Weight cells / physical cells of the arrays used (a bias column and spare columns count as unused)."""
        return self.weight_cells / (self.n_arrays * self.array_cells) if self.n_arrays else 0.0

    @property
    def lower_bound(self) -> int:
        """``ceil(weight cells / cells per array)``: the fewest arrays that hold the placed weights' cells."""
        return -(-self.weight_cells // self.cells_per_array)

    def tiles_of(self, array: int) -> list[Tile]:
        return [t for t in self.tiles if t.array == array]

    def occupancy(self, array: int) -> np.ndarray:
        """Return a ``(rows, cols)`` int32 map of the array's logical columns: matmul index + 1 per placed
        weight, 0 where empty."""
        occ = np.zeros((self.rows, self.cols), dtype=np.int32)
        for t in self.tiles:
            if t.array == array:
                occ[t.row0:t.row_end:t.step, t.col0:t.col_end:t.step] = t.matmul + 1
        return occ

    def violations(self) -> list[str]:
        """Return every rule the placement breaks: tiles outside arrays, overlapping tiles, bad groups
        (:func:`compiler.place.check.violations`)."""
        return violations(self)

    def validate(self) -> Placement:
        """Raise :class:`PlacementError` listing every violation; return self when valid."""
        problems = self.violations()
        if problems:
            raise PlacementError(f"invalid {self.strategy} placement: " + "; ".join(problems[:20]) +
                                 (f"; ... {len(problems) - 20} more" if len(problems) > 20 else ""))
        return self

    def per_matmul(self) -> dict[int, dict]:
        """Return per matmul index: arrays touched, weights and cells placed."""
        res: dict[int, dict] = {}
        for t in self.tiles:
            d = res.setdefault(t.matmul, {"arrays": set(), "weights": 0, "cells": 0})
            d["arrays"].add(t.array)
            d["weights"] += t.weights
            d["cells"] += t.weights * self.cells_per_weight
        return res

    def to_json(self) -> dict:
        """Return ``mapping.json`` content: geometry, every tile, every group."""
        return {
            "strategy": str(self.strategy), "array_rows": self.rows, "array_cols": self.cols, "nblocks": self.nblocks,
            "arrays": self.n_arrays, "row_steps": self.row_steps, "shelf_rows": self.shelf_rows,
            "budget": self.budget, "cells_per_weight": self.cells_per_weight, "bias_cols": self.bias_cols,
            "array_phys_cols": self.array_cols,
            "matmuls": [m.to_dict() for m in self.matmuls],
            "tile_fields": ["matmul", "factor", "block", "r0", "c0", "rows", "cols", "array", "row0", "col0",
                            "step", "group", "rotation"],
            "tiles": [[t.matmul, t.factor, t.block, t.r0, t.c0, t.rows, t.cols, t.array, t.row0, t.col0, t.step,
                       t.group, t.rotation] for t in self.tiles],
            "groups": [list(g) for g in self.groups],
        }
