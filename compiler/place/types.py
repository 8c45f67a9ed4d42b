"""The placement data: :class:`Tile` (a piece of a block on an array), :class:`Piece` (a piece of a block not yet
on an array, as ``auto`` lays them), :class:`Placement` (a strategy's result) and :class:`PlacementError`.
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

    def __repr__(self) -> str:
        return (f"Placement(strategy={str(self.strategy)!r}, arrays={self.n_arrays}, tiles={len(self.tiles)}, "
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
            "strategy": str(self.strategy), "array_rows": self.rows, "array_cols": self.cols, "nblocks": self.nblocks,
            "arrays": self.n_arrays, "row_steps": self.row_steps, "shelf_rows": self.shelf_rows,
            "budget": self.budget,
            "matmuls": [m.to_dict() for m in self.matmuls],
            "tile_fields": ["matmul", "factor", "block", "r0", "c0", "rows", "cols", "array", "row0", "col0",
                            "step", "group", "rotation"],
            "tiles": [[t.matmul, t.factor, t.block, t.r0, t.c0, t.rows, t.cols, t.array, t.row0, t.col0, t.step,
                       t.group, t.rotation] for t in self.tiles],
            "groups": [list(g) for g in self.groups],
        }
