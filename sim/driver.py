"""The command driver: pushes stream words into the tile's ``cmd`` stream (valid/ready handshake).

Each word is packed with the command set's ``Isa.cmd_layout`` (``{"word", "last"}``), ``last`` set on the final
word of the stream. Optional random valid gaps exercise the tile's handshake.

Handshake timing (the same for every simulator): inputs are written just after a rising edge; the transfer
condition ``valid & ready`` is sampled in the read-only phase of that cycle, so it is the value the tile sees at
the next rising edge.
"""

from __future__ import annotations

import random
from typing import Sequence

from cocotb.triggers import ReadOnly, RisingEdge

from cimisa.isa import Isa

__all__ = ["CommandDriver"]


class CommandDriver:
    """Drive words into ``dut.cmd__*`` on ``dut.clk``.

    Parameters: ``dut`` (the ``cim_tile`` toplevel), ``isa`` (the configuration's command set), ``gap`` (probability
    of leaving ``valid`` low on a cycle), ``rng`` (for the gaps).
    Members: ``sent`` (words accepted so far), ``stalled`` (cycles with ``valid`` high and ``ready`` low),
    ``cycles`` (rising edges the last :meth:`send` took).
    """

    def __init__(self, dut, isa: Isa, *, gap: float = 0.0, rng: random.Random | None = None):
        if not 0.0 <= gap < 1.0:
            raise ValueError(f"gap must be in [0, 1), not {gap!r}")
        self.clk = dut.clk
        self.valid = dut.cmd__valid
        self.ready = dut.cmd__ready
        self.payload = dut.cmd__payload
        self.isa = isa
        self.gap = gap
        self.rng = rng or random.Random(0)
        self.sent = 0
        self.stalled = 0
        self.cycles = 0

    def __repr__(self) -> str:
        return f"CommandDriver({self.isa!r}, gap={self.gap}, sent={self.sent})"

    def pack(self, words: Sequence[int]) -> list[int]:
        """Return the ``cmd`` payload values of a stream: each word with ``last`` set on the final one."""
        n = len(words)
        layout = self.isa.cmd_layout
        return [layout.const({"word": int(w), "last": int(i == n - 1)}).as_bits() for i, w in enumerate(words)]

    def idle(self) -> None:
        """Drive ``valid`` low and the payload to zero (call when reset is applied: no input is left X)."""
        self.valid.value = 0
        self.payload.value = 0

    async def send(self, words: Sequence[int], max_cycles: int, stall_limit: int = 0) -> bool:
        """Push every word; return True when all were accepted, False if ``max_cycles`` ran out first or
        ``ready`` stayed low for ``stall_limit`` cycles in a row (0: no limit).

        Call right after a rising edge (or before the first one); returns right after a rising edge.
        """
        packed = self.pack(words)
        n, i, cycles, stall = len(packed), 0, 0, 0
        fired, driving = False, False
        gap, rng = self.gap, self.rng
        while True:
            await RisingEdge(self.clk)
            cycles += 1
            if fired:
                i += 1
                self.sent = i
            if i >= n or cycles > max_cycles or (stall_limit and stall >= stall_limit):
                break
            want = not (gap and rng.random() < gap)
            if want:
                self.payload.value = packed[i]
            if want != driving:
                self.valid.value = int(want)
                driving = want
            await ReadOnly()
            rv = self.ready.value
            ready = rv.is_resolvable and int(rv)           # X/Z: not ready (and counted as a stall)
            fired = want and ready
            if want and not ready:
                self.stalled += 1
                stall += 1
            elif fired:
                stall = 0
        if driving:
            self.valid.value = 0
        self.cycles = cycles
        return i >= n
