"""The one stream generator every test tier draws from: random legal streams, boundary and illegal streams, coverage.

The golden-model property tests (through the hypothesis adapter in ``tests/strategies.py``, which hands hypothesis
draws to :func:`generate`), the Amaranth simulation tests (``tests/test_hw_tile.py``) and co-simulation
(:mod:`sim.streams`, :mod:`sim.flow`) all take their streams from here:

* :mod:`cimisa.streamgen.generate`: random legal programs that compute on real data (:func:`generate` from any
  ``randint`` source, :func:`random_commands` seeded); on a concurrent chip, with the tiles computing side by
  side and no HAZARD (:mod:`cimisa.streamgen.chipgen`);
* :mod:`cimisa.streamgen.boundary`: every bound at its largest legal value and one past it
  (:func:`boundary_cases`), any encodable command (:func:`any_command`);
* :mod:`cimisa.streamgen.streams`: named word streams, random (:func:`random_stream`) and illegal ones that each
  stop with one error (:func:`illegal_streams`);
* :mod:`cimisa.streamgen.coverage`: the coverage bins a stream hits and its counts (:func:`covered`,
  :func:`stream_stats`), with the concurrency bins of a concurrent chip (:func:`chip_coverage_bins`).

Whether a run of these streams is right is the one checker's job (:mod:`cimisa.check`).
"""

from __future__ import annotations

from cimisa.streamgen.boundary import any_command, boundary_cases, fits
from cimisa.streamgen.coverage import (
    HAZARD_BIN,
    StreamStats,
    chip_coverage_bins,
    cosim_coverage_bins,
    cosim_covered,
    coverage_bins,
    covered,
    stream_stats,
)
from cimisa.streamgen.generate import HOT_ARRAY, PROBE_SIZE, Randomness, generate, probe_array, random_commands
from cimisa.streamgen.streams import (
    StreamCase,
    hazard_cases,
    illegal_commands,
    illegal_streams,
    opcodes_of,
    random_stream,
    reachable_errors,
    with_opcode,
)

__all__ = ["Randomness", "generate", "random_commands", "coverage_bins", "covered", "stream_stats", "StreamStats",
           "PROBE_SIZE", "HOT_ARRAY", "probe_array", "boundary_cases", "fits", "any_command", "StreamCase",
           "random_stream", "illegal_commands", "illegal_streams", "reachable_errors", "with_opcode", "opcodes_of",
           "cosim_coverage_bins", "cosim_covered", "chip_coverage_bins", "HAZARD_BIN", "hazard_cases"]
