"""The monitors: collect result words from the tile's ``res`` stream and read its ``status`` register.

Result words are signed ``Isa.result_shape`` values; the status register is unpacked with
``Isa.status_layout.from_bits`` into ``(state, error, index)`` names, the form ``sw_model`` reports.
"""

from __future__ import annotations

import random

from cocotb.triggers import ReadOnly, RisingEdge

from cimisa.isa import ErrorCode, Isa, RunState

__all__ = ["ResultMonitor", "read_status", "unpack_status"]


class ResultMonitor:
    """Accept words from ``dut.res__*`` on ``dut.clk`` and record them in ``words``.

    ``backpressure`` is the probability of holding ``res.ready`` low on a cycle (0: always ready); it may be
    changed while running.
    Start :meth:`run` as a task; cancel it when done.
    """

    def __init__(self, dut, isa: Isa, *, backpressure: float = 0.0, rng: random.Random | None = None):
        if not 0.0 <= backpressure < 1.0:
            raise ValueError(f"backpressure must be in [0, 1), not {backpressure!r}")
        self.clk = dut.clk
        self.valid = dut.res__valid
        self.ready = dut.res__ready
        self.payload = dut.res__payload
        width = isa.result_shape.width
        if len(self.payload) != width:
            raise ValueError(f"res__payload must be {width} bits wide (Isa.result_shape), not {len(self.payload)}")
        self.signed = isa.result_shape.signed
        self.backpressure = backpressure
        self.rng = rng or random.Random(1)
        self.words: list[int] = []

    def __repr__(self) -> str:
        return f"ResultMonitor(backpressure={self.backpressure}, words={len(self.words)})"

    def idle(self) -> None:
        """Drive ``ready`` low (call right after reset is applied)."""
        self.ready.value = 0

    async def run(self) -> None:
        """Collect words forever (call right after a rising edge).

        While ``ready`` is high without back-pressure and no word is offered, the monitor sleeps until ``valid``
        rises instead of polling every cycle.
        """
        rng = self.rng
        fired, ready, value = False, False, 0
        while True:
            await RisingEdge(self.clk)
            if fired:
                self.words.append(value)
            bp = self.backpressure
            want = not (bp and rng.random() < bp)
            if want != ready:
                self.ready.value = int(want)
                ready = want
            await ReadOnly()
            fired = ready and _high(self.valid)
            if ready and not bp and not fired:
                await RisingEdge(self.valid)
                await ReadOnly()
                fired = _high(self.valid)
            if fired:
                v = self.payload.value
                if v.is_resolvable:
                    value = v.to_signed() if self.signed else v.to_unsigned()
                else:
                    value = f"X:{v}"                           # reported as a mismatch, never as a number


def _high(sig) -> bool:
    """Whether a 1-bit signal is 1 (X/Z count as 0)."""
    v = sig.value
    return bool(v.is_resolvable and int(v))


def unpack_status(isa: Isa, bits: int) -> tuple[str, str, int]:
    """Return ``(state, error, index)`` names of a raw status register value (unknown codes as ``"?<n>"``)."""
    s = isa.status_layout.from_bits(bits)

    def name(v, enum):
        return v.name if isinstance(v, enum) else f"?{int(v)}"

    return name(s.state, RunState), name(s.error, ErrorCode), int(s.index)


def read_status(dut, isa: Isa) -> tuple[str, str, int]:
    """Return the status register of ``dut`` as ``(state, error, index)`` names."""
    v = dut.status.value
    if not v.is_resolvable:
        return f"X:{v}", "X", -1
    return unpack_status(isa, v.to_unsigned())
