"""Command streams for co-simulation: the one generator's (:mod:`cimisa.streamgen`) under the names sim uses.

Seeded random legal streams (:func:`random_stream`), illegal streams, one per error (:func:`illegal_streams`), and
the co-simulation's coverage bins (:func:`coverage_bins`, a subset of :func:`cimisa.streamgen.coverage_bins`).
Deterministic: the same configuration and seed give the same stream.
"""

from __future__ import annotations

from cimisa.streamgen import (
    StreamCase,
    illegal_streams,
    opcodes_of,
    random_commands,
    random_stream,
    reachable_errors,
    with_opcode,
)
from cimisa.streamgen import cosim_coverage_bins as coverage_bins
from cimisa.streamgen import cosim_covered as covered

__all__ = ["StreamCase", "random_commands", "random_stream", "illegal_streams", "reachable_errors",
           "with_opcode", "opcodes_of", "coverage_bins", "covered"]
