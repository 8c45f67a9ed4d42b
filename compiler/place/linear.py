"""``linear``: the dense matrix cut into ``rows x cols`` tiles, one array each (the paper's baseline)."""

from __future__ import annotations

from collections.abc import Sequence

from cimisa.config import HwConfig
from compiler.geometry import MatmulGeom
from compiler.place.builder import Builder

__all__ = ["place_linear"]


def place_linear(geoms: Sequence[MatmulGeom], hw: HwConfig) -> Builder:
    """Place every matmul's dense ``in x out`` matrix (factor ``W``), tile by tile."""
    b = Builder(hw)
    for mi, g in enumerate(geoms):
        b.oversized(mi, "W", 0, g.in_features, g.out_features)
    return b
