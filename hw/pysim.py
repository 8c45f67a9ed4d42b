"""Run a command stream through the RTL top (:func:`hw.chip.top`: :class:`~hw.tile.CimTile` or
:class:`~hw.chip.CimChip`) in Amaranth's Python simulator.

This is the testbench used by the pysim tests and the cycle benchmark (:class:`TileSim` keeps one simulator for
many streams, :func:`run_tile` runs one); it drives ``cmd`` with the words (``last``
on the final one), collects ``res`` (optionally with back-pressure) and returns what happened.
:func:`check_words` runs a stream on the tile and on sw_model and returns the one checker's verdict
(:mod:`cimisa.check`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from amaranth.sim import Simulator

import sw_model
from cimisa.check import Verdict, check_runs
from cimisa.config import HwConfig
from cimisa.isa import ErrorCode, RunState
from hw.chip import CimChip, top
from hw.tile import CimTile

__all__ = ["TileRun", "TileSim", "run_tile", "check_words"]


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


class TileSim:
    """One Amaranth simulation of a :class:`CimTile` that runs many streams, reset (memories too) in between.

    Elaborating the design costs far more than a short stream, so tests that run many short streams keep one
    of these per configuration; :func:`run_tile` is the one-stream case.
    """

    def __init__(self, cfg, tile: CimTile | CimChip | None = None):
        self.cfg = cfg
        self.dut = dut = tile if tile is not None else top(cfg)
        self._words: list[int] = []
        self._ready = None
        self._max = 0
        self._out: TileRun | None = None

        async def tb(ctx):
            words, n, out, ready_fn = self._words, len(self._words), self._out, self._ready
            i = cycle = 0
            ready = True
            ctx.set(dut.res.ready, 1)
            while True:
                if i < n:
                    ctx.set(dut.cmd.valid, 1)
                    ctx.set(dut.cmd.payload.word, words[i])
                    ctx.set(dut.cmd.payload.last, int(i == n - 1))
                else:
                    ctx.set(dut.cmd.valid, 0)
                if ready_fn is not None:
                    ready = bool(ready_fn(cycle))
                    ctx.set(dut.res.ready, int(ready))
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
                if cycle >= self._max:
                    raise TimeoutError(f"tile still running after {self._max} cycles ({i}/{n} words accepted)")
            out.state = RunState(ctx.get(dut.status.state))
            out.error = ErrorCode(ctx.get(dut.status.error))
            out.index = int(ctx.get(dut.status.index))
            out.cycles = cycle

        self._tb = tb
        self._build()

    def _build(self):
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-8)
        self.sim.add_testbench(self._tb)
        self._fresh = True

    def run(self, words, *, res_ready=None, max_cycles: int | None = None, vcd: str | None = None) -> TileRun:
        """Run ``words`` from reset (``last`` on the final word) and return what the tile did.

        ``res_ready(cycle)`` gives ``res.ready`` per cycle (default: always ready). The run stops once every
        word has been accepted and the tile has left RUNNING; it raises TimeoutError after ``max_cycles``
        (default ``2000 + 600 * len(words)``). ``vcd`` writes the waves of this run to that file.
        """
        words = [int(w) for w in words]
        if not words:
            raise ValueError("words must hold at least one word")
        if not self._fresh:
            self.sim.reset()
        self._fresh = False
        self._words, self._ready = words, res_ready
        self._max = max_cycles if max_cycles is not None else 2000 + 600 * len(words)
        self._out = TileRun(RunState.RUNNING, ErrorCode.NONE, 0)
        try:
            if vcd:
                with self.sim.write_vcd(vcd):
                    self.sim.run()
            else:
                self.sim.run()
        except BaseException:
            self._build()                   # a testbench that raised leaves the simulator unusable
            raise
        return self._out


def run_tile(cfg: HwConfig, words: Sequence[int], *, max_cycles: int | None = None,
             res_ready: Callable[[int], bool] | None = None, vcd: str | None = None,
             tile: CimTile | CimChip | None = None) -> TileRun:
    """Simulate ``words`` (``last`` set on the final word) on a fresh tile and return a :class:`TileRun`.

    The one-stream case of :class:`TileSim` (same options).
    """
    return TileSim(cfg, tile).run(words, res_ready=res_ready, max_cycles=max_cycles, vcd=vcd)


def check_words(cfg: HwConfig, words: Sequence[int], *, sim: TileSim | None = None, name: str = "",
                expected_cycles: int | None = None, **run_kw) -> Verdict:
    """Run ``words`` on sw_model (the reference, errors reported as status) and on the tile (``sim``, else a fresh
    one; ``run_kw`` as :meth:`TileSim.run`) and compare them with the one checker, :func:`cimisa.check.check_runs`
    (result words, status and, with ``expected_cycles``, cycles). A run that times out raises TimeoutError."""
    ref = sw_model.run(cfg, words, raise_on_error=False)
    got = (sim if sim is not None else TileSim(cfg)).run(words, **run_kw)
    return check_runs(ref, got, expected_cycles=expected_cycles, name=name)
