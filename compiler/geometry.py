"""Monarch block geometry: one :class:`MatmulGeom` per matmul, plain Python (placement and option checks need no torch).

A matmul ``(out, in)`` with ``nblocks = k`` has Monarch factors ``R (k, q, p)`` and ``L (k, s, r)`` (see
:mod:`mapper.d2s.monarch` for the factor layout): ``p = ceil(in / k)`` inputs and ``s = ceil(out / k)`` outputs
per block; the middle width is whichever of the two is larger. :func:`monarch_shape` is the one rule that derives
the factor shapes; :func:`geometry` applies it to every mapped matmul of a model, :func:`default_nblocks` picks the
kit's default block count and :func:`lower_bound` the fewest arrays any placement can use.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from cimisa.config import HwConfig
from cimisa.errors import ShapeError

__all__ = ["MatmulGeom", "MonarchShape", "monarch_shape", "matmul_geom", "geometry", "default_nblocks",
           "lower_bound", "weight_cells_per_array"]


@dataclass(frozen=True)
class MatmulGeom:
    """Block geometry of one Monarch matmul (``r_shape = (k, q, p)``, ``l_shape = (k, s, r)``).

    ``name``, ``layer``, ``role``, ``stage`` and ``input_group`` say which matmul of a model this is (empty for
    a bare shape from :func:`monarch_shape`); the other fields are its geometry.
    """

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
    def in_blk(self) -> int:
        """Inputs per block ``p = ceil(in_features / nblocks)``."""
        return self.r_shape[2]

    @property
    def out_blk(self) -> int:
        """Outputs per block ``s = ceil(out_features / nblocks)``."""
        return self.l_shape[1]

    @property
    def in_ext(self) -> int:
        """The padded input width ``nblocks * in_blk``."""
        return self.nblocks * self.r_shape[2]

    @property
    def mid_len(self) -> int:
        """Length of the stage-1 output ``nblocks * q``."""
        return self.nblocks * self.r_shape[1]

    @property
    def out_ext(self) -> int:
        """The padded output width ``nblocks * out_blk``."""
        return self.nblocks * self.l_shape[1]

    @property
    def monarch_cells(self) -> int:
        """The number of factor entries (R and L, padding included)."""
        return math.prod(self.r_shape) + math.prod(self.l_shape)

    @property
    def params(self) -> int:
        """Same as :attr:`monarch_cells`."""
        return self.monarch_cells

    @property
    def macs(self) -> int:
        """Multiply-accumulates per input vector (padding included)."""
        return self.monarch_cells

    @property
    def dense_cells(self) -> int:
        """The number of entries of the dense matrix."""
        return self.out_features * self.in_features

    @property
    def dense_params(self) -> int:
        """Same as :attr:`dense_cells`."""
        return self.dense_cells

    def block_dims(self, factor: str) -> tuple[int, int]:
        """Return ``(rows, cols)`` of one crossbar block of ``factor`` ('R', 'L' or 'W')."""
        if factor == "R":
            return self.r_shape[2], self.r_shape[1]
        if factor == "L":
            return self.l_shape[2], self.l_shape[1]
        return self.in_features, self.out_features

    def to_dict(self) -> dict:
        """The ``matmuls`` entry of ``mapping.json``."""
        return {"name": self.name, "layer": self.layer, "role": self.role, "stage": self.stage,
                "input_group": self.input_group, "out_features": self.out_features,
                "in_features": self.in_features, "nblocks": self.nblocks, "r_shape": list(self.r_shape),
                "l_shape": list(self.l_shape)}


#: The former name of a bare shape (:func:`monarch_shape`); the same class.
MonarchShape = MatmulGeom


def _factor_shapes(out_features: int, in_features: int, nblocks: int) -> tuple[tuple[int, int, int],
                                                                                tuple[int, int, int]]:
    for what, v in (("out_features", out_features), ("in_features", in_features)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ShapeError(f"{what} must be a positive integer, not {v!r}")
    if not isinstance(nblocks, int) or isinstance(nblocks, bool) or nblocks < 1:
        raise ShapeError(f"nblocks must be a positive integer, not {nblocks!r}")
    if nblocks > min(out_features, in_features):
        raise ShapeError(f"nblocks {nblocks} is larger than min(out, in) = {min(out_features, in_features)} "
                         f"for a {out_features}x{in_features} matrix")
    k = nblocks
    in_blk = -(-in_features // k)
    out_blk = -(-out_features // k)
    if (k - 1) * in_blk >= in_features:
        raise ShapeError(f"nblocks {k} cannot split {in_features} inputs: blocks of {in_blk} leave the last "
                         f"block empty (choose nblocks that gives every block at least one input)")
    if k * in_blk < k * out_blk:
        return (k, in_blk, in_blk), (k, out_blk, in_blk)
    return (k, out_blk, in_blk), (k, out_blk, out_blk)


def monarch_shape(out_features: int, in_features: int, nblocks: int) -> MatmulGeom:
    """Return the factor shapes for an ``(out_features, in_features)`` matrix with ``nblocks`` blocks.

    Raises :class:`~cimisa.errors.ShapeError` if ``nblocks`` is not usable for the shape: below 1, above
    ``min(out_features, in_features)``, or so large that the last input block holds only padding.
    """
    r_shape, l_shape = _factor_shapes(out_features, in_features, nblocks)
    return MatmulGeom("", 0, "", "", "", out_features, in_features, nblocks, r_shape, l_shape)


def matmul_geom(m, nblocks: int) -> MatmulGeom:
    """Return the geometry of one :class:`~compiler.spec.MatmulSpec` with ``nblocks`` blocks."""
    r_shape, l_shape = _factor_shapes(m.out_features, m.in_features, nblocks)
    return MatmulGeom(m.name, m.layer, m.role, m.stage, m.input_group, m.out_features, m.in_features, nblocks,
                      r_shape, l_shape)


def geometry(spec, nblocks: int) -> tuple[MatmulGeom, ...]:
    """Return the block geometry of every mapped matmul of ``spec`` (a :class:`~compiler.spec.ModelSpec`)."""
    return tuple(matmul_geom(m, nblocks) for m in spec.mapped())


def default_nblocks(spec) -> int:
    """Return the default block count: ``2**round(log2(sqrt(d_model)))`` (32 for d_model 1024, 8 for 64).

    ``d_model`` is the most common ``in_features`` of the mapped matmuls; the result is reduced until every
    mapped matmul accepts it (:func:`monarch_shape`).
    """
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


def weight_cells_per_array(hw: HwConfig) -> int:
    """Cells of one array that can hold weights: ``rows * logical_cols * cols_per_weight`` (an ``offset`` bias
    column and columns too few for a whole weight hold none; ``rows * cols`` in the default format)."""
    return hw.rows * hw.logical_cols * hw.fmt.cols_per_weight


def lower_bound(geoms, hw: HwConfig) -> int:
    """Return ``ceil(Monarch weight cells / weight cells per array)``, in physical cells: a weight takes
    ``hw.fmt.cols_per_weight`` cells (:func:`weight_cells_per_array`)."""
    cells = sum(g.monarch_cells for g in geoms) * hw.fmt.cols_per_weight
    return -(-cells // weight_cells_per_array(hw))
