"""The hypothesis adapter of the one stream generator (:mod:`cimisa.streamgen`).

Hypothesis draws feed the generator's ``randint`` (:class:`DrawRandomness`), so every command and stream here is
the generator's own, and failing examples shrink.
"""

from __future__ import annotations

from hypothesis import strategies as st

from cimisa import streamgen
from cimisa.config import HwConfig
from cimisa.isa import Opcode


class DrawRandomness:
    """Adapts a hypothesis ``draw`` to the ``randint(lo, hi)`` that :mod:`cimisa.streamgen` draws from."""

    def __init__(self, draw):
        self._draw = draw

    def randint(self, lo: int, hi: int) -> int:
        return self._draw(st.integers(lo, hi))


def any_command(cfg: HwConfig, op: Opcode | None = None):
    """Any encodable command (:func:`cimisa.streamgen.any_command`: fields fit their widths, values may be out of
    range for the configuration), drawn by hypothesis."""
    return st.composite(lambda draw: streamgen.any_command(cfg, DrawRandomness(draw), op))()


def legal_stream(cfg: HwConfig, max_size: int = 25, *, prologue: bool = True):
    """A legal program from the shared generator (:func:`cimisa.streamgen.generate`), drawn by hypothesis.

    Weights and inputs are programmed first (``prologue``), then ``1..max_size`` body commands (every non-HALT
    opcode, MVMs that compute on data and are read back, REQUANTs probed through an identity MVM), then HALT.
    """

    @st.composite
    def build(draw):
        n = draw(st.integers(1, max_size))
        return streamgen.generate(cfg, DrawRandomness(draw), n, prologue=prologue)

    return build()
