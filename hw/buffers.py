"""A buffer memory (input buffer, output buffer, accumulator lanes) with one read and one write port."""

from __future__ import annotations

from amaranth import Shape
from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hw._util import addr_bits, check_int

__all__ = ["Buffer", "buffer_port"]


def buffer_port(shape, depth: int) -> wiring.Signature:
    """Return the signature of a buffer's port, from the user's side.

    Members:
      ``rd_addr``, ``rd_en`` (Out): read address and enable;
      ``rd_data`` (In): the word at the ``rd_addr`` of the last cycle in which ``rd_en`` was 1 (held otherwise);
      ``wr_addr``, ``wr_en``, ``wr_data`` (Out): write port; the word is stored at the end of the cycle.
    """
    aw = addr_bits(depth)
    return wiring.Signature({
        "rd_addr": Out(aw), "rd_en": Out(1), "rd_data": In(shape),
        "wr_addr": Out(aw), "wr_en": Out(1), "wr_data": Out(shape),
    })


class Buffer(wiring.Component):
    """A ``depth``-entry memory of ``shape`` elements, initialised to zero.

    Parameters
    ----------
    shape : ShapeLike
        Element shape (e.g. ``signed(8)`` for inputs, ``signed(32)`` for accumulators).
    depth : int
        Number of elements (>= 2).

    Members
    -------
    port : ``In(buffer_port(shape, depth))``
        One synchronous read port (one cycle latency, not transparent: a read in the cycle of a write to the same
        address returns the old word) and one write port.

    Cycle-level contract: one read and one write per cycle; no back-pressure. Addresses are never out of range
    when the users respect the command checks; an out-of-range write address is ignored (``wr_en`` gated).
    """

    def __init__(self, shape, depth: int):
        try:
            Shape.cast(shape)
        except TypeError:
            self._MustUse__silence = True
            raise TypeError(f"shape must be a shape-castable object, not {shape!r}") from None
        self._shape = shape
        self._depth = check_int("depth", depth, 2, owner=self)
        super().__init__({"port": In(buffer_port(shape, depth))})

    @property
    def depth(self) -> int:
        """Number of elements."""
        return self._depth

    def __repr__(self) -> str:
        return f"Buffer({self._shape!r}, depth={self._depth})"

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self._shape, depth=self._depth, init=[])
        rd = mem.read_port()
        wr = mem.write_port()
        p = self.port
        m.d.comb += [
            rd.addr.eq(p.rd_addr), rd.en.eq(p.rd_en), p.rd_data.eq(rd.data),
            wr.addr.eq(p.wr_addr), wr.data.eq(p.wr_data),
        ]
        if (1 << addr_bits(self._depth)) == self._depth:
            m.d.comb += wr.en.eq(p.wr_en)
        else:
            m.d.comb += wr.en.eq(p.wr_en & (p.wr_addr < self._depth))
        return m
