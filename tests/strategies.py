"""Hypothesis strategies for commands and streams on a given hardware configuration.

Legal streams come from the generator every tier shares (:mod:`cimisa.streamgen`); this module only adapts
hypothesis draws to it, so failing streams shrink.
"""

from __future__ import annotations

from hypothesis import strategies as st

from cimisa import streamgen
from cimisa.config import HwConfig
from cimisa.isa import FIELDS, PAYLOAD, Command, Isa, Opcode


def any_command(cfg: HwConfig, op: Opcode | None = None):
    """Any encodable command (fields fit their widths; may be out of range for the configuration)."""
    isa = Isa.of(cfg)
    ops = [op] if op is not None else [o for o in Opcode if o is not Opcode.HALT]

    @st.composite
    def build(draw):
        o = draw(st.sampled_from(ops))
        args = {}
        for name, _kind in FIELDS[o]:
            width = isa.field_widths[o][name]
            args[name] = draw(st.integers(0, (1 << width) - 1))
        data = ()
        if o in PAYLOAD:
            lo, hi = isa.elem_range(PAYLOAD[o])
            count = draw(st.integers(1, min(40, (1 << isa.field_widths[o]["count"]) - 1)))
            args["count"] = count
            data = tuple(draw(st.lists(st.integers(lo, hi), min_size=count, max_size=count)))
        return Command(o, args, data)

    return build()


class DrawRandomness:
    """Adapts a hypothesis ``draw`` to the ``randint(lo, hi)`` that :mod:`cimisa.streamgen` draws from."""

    def __init__(self, draw):
        self._draw = draw

    def randint(self, lo: int, hi: int) -> int:
        return self._draw(st.integers(lo, hi))


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
