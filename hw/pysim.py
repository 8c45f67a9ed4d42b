"""Run a command stream through :class:`~hw.tile.CimTile` in Amaranth's Python simulator.

This is the testbench used by the pysim tests and the cycle benchmark; it drives ``cmd`` with the words (``last``
on the final one), collects ``res`` (optionally with back-pressure) and returns what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from amaranth.sim import Simulator

from cimisa.config import HwConfig
from cimisa.isa import ErrorCode, RunState
from hw.tile import CimTile

__all__ = ["TileRun", "run_tile"]


@dataclass
class TileRun:
    """What the RTL did with a stream: final status, READ outputs in order, clock cycles used."""

    state: RunState
    error: ErrorCode
    index: int
    results: list[int] = field(default_factory=list)
    cycles: int = 0
    #: Cycle (from the start) at which each stream word was accepted.
    accepted_at: list[int] = field(default_factory=list)

    def status_tuple(self) -> tuple[str, str, int]:
        """Return ``(state, error, index)`` names, as :meth:`sw_model.RunResult.status_tuple`."""
        return self.state.name, self.error.name, self.index


def run_tile(cfg: HwConfig, words: Sequence[int], *, max_cycles: int | None = None,
             res_ready: Callable[[int], bool] | None = None, vcd: str | None = None,
             tile: CimTile | None = None) -> TileRun:
    """Simulate ``words`` (``last`` set on the final word) on a fresh tile and return a :class:`TileRun`.

    ``res_ready(cycle)`` gives ``res.ready`` per cycle (default: always ready). The run stops once every word
    has been accepted and the tile has left RUNNING; it raises TimeoutError after ``max_cycles``.
    """
    words = [int(w) for w in words]
    if not words:
        raise ValueError("words must hold at least one word (the RTL only ends a stream on a word with last=1)")
    dut = tile if tile is not None else CimTile(cfg)
    if max_cycles is None:
        max_cycles = 2000 + 600 * len(words)
    out = TileRun(RunState.RUNNING, ErrorCode.NONE, 0)
    n = len(words)

    async def tb(ctx):
        i = 0
        cycle = 0
        ready = True
        while True:
            if i < n:
                ctx.set(dut.cmd.valid, 1)
                ctx.set(dut.cmd.payload.word, words[i])
                ctx.set(dut.cmd.payload.last, int(i == n - 1))
            else:
                ctx.set(dut.cmd.valid, 0)
            if res_ready is not None:
                ready = bool(res_ready(cycle))
                ctx.set(dut.res.ready, int(ready))
            elif cycle == 0:
                ctx.set(dut.res.ready, 1)
            _, _, c_ready, r_valid, r_data, state = await ctx.tick().sample(
                dut.cmd.ready, dut.res.valid, dut.res.payload, dut.status.state)
            cycle += 1
            if i < n and c_ready:
                out.accepted_at.append(cycle)
                i += 1
            if r_valid and ready:
                out.results.append(int(r_data))
            if i >= n and state != RunState.RUNNING:
                break
            if cycle >= max_cycles:
                raise TimeoutError(f"tile still running after {max_cycles} cycles ({i}/{n} words accepted)")
        out.state = RunState(ctx.get(dut.status.state))
        out.error = ErrorCode(ctx.get(dut.status.error))
        out.index = int(ctx.get(dut.status.index))
        out.cycles = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return out


def compare(expected, got: TileRun) -> list[str]:
    """Return the mismatches between a :class:`sw_model.RunResult` and a :class:`TileRun` (empty if equal).

    Every result word is compared (as Expected/Actual lines with its position), then the count, then the
    final ``(state, error, index)``.
    """
    out = []
    exp = [int(v) for v in expected.results]
    for i, (e, a) in enumerate(zip(exp, got.results)):
        if e != a:
            out.append(f"result {i}: expected {e}, actual {a}")
    if len(exp) != len(got.results):
        out.append(f"result count: expected {len(exp)}, actual {len(got.results)}")
    if tuple(expected.status_tuple()) != got.status_tuple():
        out.append(f"status: expected {expected.status_tuple()}, actual {got.status_tuple()}")
    return out
