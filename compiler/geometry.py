"""Monarch block geometry (:func:`monarch_shape`): plain Python, so that placement and option checks need no torch.

See :mod:`mapper.d2s.monarch` for the factor layout; everything here is re-exported there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cimisa.errors import ShapeError

__all__ = ["MonarchShape", "monarch_shape"]


@dataclass(frozen=True)
class MonarchShape:
    """Block geometry of one Monarch matrix (see the module docstring for the symbols)."""

    out_features: int
    in_features: int
    nblocks: int
    in_blk: int
    out_blk: int
    r_shape: tuple[int, int, int]
    l_shape: tuple[int, int, int]

    @property
    def in_ext(self) -> int:
        """The padded input width ``nblocks * in_blk``."""
        return self.nblocks * self.in_blk

    @property
    def out_ext(self) -> int:
        """The padded output width ``nblocks * out_blk``."""
        return self.nblocks * self.out_blk

    @property
    def params(self) -> int:
        """The number of factor entries (R and L, padding included)."""
        return math.prod(self.r_shape) + math.prod(self.l_shape)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per input vector (padding included)."""
        return self.params

    @property
    def dense_params(self) -> int:
        """The number of entries of the dense matrix."""
        return self.out_features * self.in_features


def monarch_shape(out_features: int, in_features: int, nblocks: int) -> MonarchShape:
    """Return the factor shapes for an ``(out_features, in_features)`` matrix with ``nblocks`` blocks.

    Raises :class:`~cimisa.errors.ShapeError` if ``nblocks`` is not usable for the shape: below 1, above
    ``min(out_features, in_features)``, or so large that the last input block holds only padding.
    """
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
        r_shape, l_shape = (k, in_blk, in_blk), (k, out_blk, in_blk)
    else:
        r_shape, l_shape = (k, out_blk, in_blk), (k, out_blk, out_blk)
    return MonarchShape(out_features, in_features, k, in_blk, out_blk, r_shape, l_shape)
