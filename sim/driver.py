"""The command driver: pushes stream words into the tile's ``cmd`` stream (valid/ready handshake).

Each word is packed with the command set's ``Isa.cmd_layout`` (``{"word", "last"}``), ``last`` set on the final
word of the stream. Optional random valid gaps exercise the tile's handshake.

Handshake timing (the same for every simulator): inputs are written just after a rising edge; the transfer
condition ``valid & ready`` is sampled in the read-only phase of that cycle, so it is the value the tile sees at
the next rising edge.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from cocotb.simtime import get_sim_time
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer

from cimisa.isa import Isa

__all__ = ["CommandDriver"]


class CommandDriver:
    """Drive words into ``dut.cmd__*`` on ``dut.clk``.

    Parameters: ``dut`` (the ``cim_tile`` toplevel), ``isa`` (the configuration's command set), ``period_ns`` (the
    clock period, for counting cycles), ``gap`` (probability of leaving ``valid`` low on a cycle), ``rng`` (for
    the gaps).
    Members: ``sent`` (words accepted so far), ``stalled`` (cycles with ``valid`` high and ``ready`` low),
    ``cycles`` (rising edges the last :meth:`send` took).
    """

    def __init__(self, dut, isa: Isa, *, period_ns: float, gap: float = 0.0, rng: random.Random | None = None):
        if not 0.0 <= gap < 1.0:
            raise ValueError(f"gap must be in [0, 1), not {gap!r}")
        self.clk = dut.clk
        self.valid = dut.cmd__valid
        self.ready = dut.cmd__ready
        self.payload = dut.cmd__payload
        self.isa = isa
        self.gap = gap
        self.period_ns = period_ns
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

        Call right after a rising edge (or before the first one); returns right after a rising edge. Without
        gaps, a stalled word does not poll ``ready`` every cycle: the driver sleeps until ``ready`` rises (the
        tile's multi-cycle commands then simulate at the simulator's own speed).
        """
        packed = self.pack(words)
        n, i, stall_run = len(packed), 0, 0
        fired, driving, stuck = False, False, False
        gap, rng, period = self.gap, self.rng, self.period_ns
        t0 = get_sim_time("ns")

        def elapsed() -> int:
            return round((get_sim_time("ns") - t0) / period)

        while True:
            await RisingEdge(self.clk)
            if fired:
                i += 1
                self.sent = i
            cycles = elapsed()
            if i >= n or cycles > max_cycles:
                break
            want = not (gap and rng.random() < gap)
            if want:
                self.payload.value = packed[i]
            if want != driving:
                self.valid.value = int(want)
                driving = want
            await ReadOnly()
            ready = _high(self.ready)
            if want and not ready:
                if gap:                               # gapped: poll every cycle, count the stall run
                    self.stalled += 1
                    stall_run += 1
                    if stall_limit and stall_run >= stall_limit:
                        stuck = True
                        break
                else:                                 # sleep until ready rises (or the budget runs out)
                    stall_start = cycles
                    while not ready:
                        budget = max_cycles - cycles
                        if stall_limit:
                            budget = min(budget, stall_limit - (cycles - stall_start))
                        if budget <= 0:
                            break
                        await First(RisingEdge(self.ready), Timer(budget * period, "ns"))
                        await ReadOnly()
                        ready = _high(self.ready)
                        cycles = elapsed()
                    self.stalled += cycles - stall_start
                    if not ready:
                        stuck = True
                        break
            elif want:
                stall_run = 0
            fired = want and ready
        if stuck:                                     # left in the read-only phase: step to a writable one
            await RisingEdge(self.clk)
        if driving:
            self.valid.value = 0
        self.cycles = elapsed()
        return i >= n


def _high(sig) -> bool:
    """Whether a 1-bit signal is 1 (X/Z count as 0)."""
    v = sig.value
    return bool(v.is_resolvable and int(v))
