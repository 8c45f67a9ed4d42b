"""The kit's closed sets of names, defined once.

Each is a :class:`enum.StrEnum`, so a member equals its string (``Strategy.AUTO == "auto"``): command lines,
JSON reports and file names keep the plain words, while code passes the enum between stages.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Strategy", "AdcMode", "AdcRule", "choices"]


class Strategy(StrEnum):
    """How a matmul's Monarch blocks are placed onto crossbar arrays (see ``docs/mapping.md``)."""

    LINEAR = "linear"   # the dense matrix, tiled (the paper's baseline)
    SPARSE = "sparse"   # SparseMap: one block per array, blocks side by side
    DENSE = "dense"     # DenseMap: blocks packed diagonally into arrays
    AUTO = "auto"       # the kit's search: the fewest arrays, ties broken by latency


class AdcMode(StrEnum):
    """How a schedule sets each MVM's ADC resolution (see :mod:`compiler.schedule`)."""

    PAPER = "paper"     # ceil(log2(rows summed)) bits, the paper's rule
    EXACT = "exact"     # lossless: enough bits for every column sum the weights allow
    ACCURACY = "accuracy"   # the fewest bits per MVM that keep the stream's error under a bound (calibration)


class AdcRule(StrEnum):
    """How the end-to-end executor picks each MVM's ADC step (see :mod:`mapper.evaluate.executor`)."""

    BOUND = "bound"     # no column sum the programmed weights allow can saturate
    CALIB = "calib"     # the column-sum range seen on calibration activations fits
    ACCURACY = "accuracy"   # the fewest bits per MVM keeping the calibration error under a bound (mapper.adc_select)
    PAPER = "paper"     # the compiler's paper rule: ceil(log2(rows summed)) bits, the format's range (less its top)


def choices(kind: type[StrEnum]) -> tuple[str, ...]:
    """The member values in definition order, for ``argparse`` ``choices`` and messages."""
    return tuple(m.value for m in kind)
