"""``sparse`` (SparseMap): each array holds one group of ``D`` blocks of one factor on its block diagonal.

The rest of the array is zero padding; one MVM fires the whole group. R groups are ``D`` consecutive blocks
(inputs and outputs contiguous). L groups use *permutation folding*: blocks ``a0, a0+g, ..., a0+(D-1)g``
(``g = k/D``) with their rows and columns interleaved (block ``d`` on rows/cols ``d, d+D, d+2D, ...``), so that
row ``c*D+d`` reads ``h[c*k + a0 + d*g]`` and column ``t*D+d`` writes ``y[t*k + a0 + d*g]``: one stride ``g`` on
each side, no explicit permutation.
"""

from __future__ import annotations

from collections.abc import Sequence

from cimisa.config import HwConfig
from compiler.geometry import MatmulGeom
from compiler.place.builder import Builder, fitting_factors

__all__ = ["place_sparse"]


def _largest_divisor_at_most(k: int, cap: int) -> int:
    return max(d for d in range(1, min(k, cap) + 1) if k % d == 0)


def place_sparse(geoms: Sequence[MatmulGeom], hw: HwConfig) -> Builder:
    """Place every factor's blocks in block-diagonal groups, one group per array."""
    b = Builder(hw)
    for mi, factor, k, h, w in fitting_factors(b, geoms):
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
