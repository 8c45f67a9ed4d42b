"""Stream mode: the cycles the generated hardware takes to run one command stream (``docs/perf.md``).

:func:`predict` (commands) and :func:`predict_words` (stream words) return a :class:`StreamPrediction`: the total
cycles the RTL's co-simulation harness counts for the stream (``measured_cycles`` of ``python -m sim run``), and
where they go (per-tile controller time, bus time, dispatcher stalls, MVMs per tile, optionally a timeline).

* A configuration that is not concurrent (:func:`cimisa.concurrency.is_concurrent` false: one tile, or no command
  queues) runs the stream on one controller (:class:`hw.tile.CimTile`): ``cimisa.timing.stream_cycles``, i.e.
  ``sum(command_cycles) + 2``; computed here element by element so that a stream that stops early is priced too.
* A concurrent chip (:class:`hw.chip.CimChip`) is a discrete-event model of the chip timing spec (T1-T8 of
  ``docs/perf.md``, ``cimisa.timing``): a decoder stage, an in-order dispatcher, one queue of ``chip.queue_depth``
  elements and one controller per tile, a global controller for chip commands, and one bus to the output buffer
  that every MVM write-back holds (granted ``bus_latency`` cycles after the request at the earliest, lowest tile
  first on ties). Events are processed in time order, not program order (a later MVM on another tile may reach
  the bus first), and time jumps from event to event.

Every duration comes from :mod:`cimisa.timing` (``command_cycles``, ``mvm_front``, ``mvm_back``,
``bus_latency``) and every chip parameter from the configuration; nothing here is fitted to measurements.

A stream that stops with an error is priced up to the failing header (the RTL stops there; the words after it are
still accepted, one per cycle, and discarded); one that ends without HALT (TRUNCATED) up to the completion of its
last element. The cycle-for-cycle validation (``tests/test_perf_stream.py``) is on legal streams.

Imports cimisa only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from cimisa import semantics, timing
from cimisa.concurrency import Scoreboard, is_concurrent
from cimisa.config import HwConfig
from cimisa.isa import Command, ErrorCode, Isa, Opcode

__all__ = ["StreamPrediction", "predict", "predict_words", "stop_cycles", "HARNESSES"]

_INF = float("inf")

#: Who wins the bus among tiles that could be granted in the same cycle (T6: the lowest index). A module-level
#: name so that the mutant tests can swap it.
_grant = min

# Element kinds (one element per stream word, as the decoder hands them on).
_TILE, _MVM, _CHIP, _BAR, _HALT, _ERR = range(6)


def stop_cycles(cfg: HwConfig) -> int:
    """Cycles the harness counts after the cycle in which the element that stops the machine (HALT, or a header
    with an error) is accepted: ``cimisa.timing.CHIP_HALT_CYCLES`` on a concurrent chip (T8), 2 on one controller
    (the status register is written at the end of that cycle; the harness sees it one cycle later)."""
    return timing.CHIP_HALT_CYCLES if is_concurrent(cfg) else 2


@dataclass(frozen=True)
class StreamPrediction:
    """The predicted cycles of one stream and where they go.

    ``cycles``: what the co-simulation harness counts (reset to the cycle it sees the machine stopped).
    ``tile_busy[u]``: cycles tile ``u``'s controller was executing an element (an MVM counts from its start to the
    end of its write-back, bus wait included); ``tile_bus_wait[u]``: of those, cycles its MVMs waited for the bus
    beyond the hop latency; ``mvms_per_tile[u]``: MVMs tile ``u`` executed. ``bus_busy``: cycles the bus carried
    write-backs. ``global_busy``: cycles the global controller ran chip commands (LOAD_IN, REQUANT, READ).
    ``dispatch_stall``: cycles elements waited at the dispatcher after reaching it (queue full, a tile or the
    global controller busy). ``stop_cycle``: the cycle the machine stopped (HALT or error accepted, or the
    truncated stream's last element completed). ``state``: ``HALTED``, ``ERROR`` or ``TRUNCATED``.
    ``timeline``: with ``timeline=True``, ``(resource, start, end, kind, command)`` intervals (end exclusive;
    resources ``tile<u>``, ``bus``, ``global``).
    On a configuration that is not concurrent the whole chip is one tile (``tile_busy[0]`` = every command).
    """

    cycles: int
    concurrent: bool
    commands: int
    words: int
    state: str
    stop_cycle: int
    tile_busy: tuple[int, ...]
    tile_bus_wait: tuple[int, ...]
    mvms_per_tile: tuple[int, ...]
    bus_busy: int
    global_busy: int
    dispatch_stall: int
    timeline: tuple[tuple[str, int, int, str, int], ...] | None = None

    def to_json(self) -> dict:
        """The prediction as a JSON-ready dict (without the timeline)."""
        return {"cycles": self.cycles, "concurrent": self.concurrent, "commands": self.commands,
                "words": self.words, "state": self.state, "stop_cycle": self.stop_cycle,
                "tile_busy": list(self.tile_busy), "tile_bus_wait": list(self.tile_bus_wait),
                "mvms_per_tile": list(self.mvms_per_tile), "bus_busy": self.bus_busy,
                "global_busy": self.global_busy, "dispatch_stall": self.dispatch_stall}


def _elements(cfg: HwConfig, words: Sequence[int], concurrent: bool):
    """Return ``(elements, commands)``: one tuple per word up to the one that stops the machine, and the
    commands accepted (headers, the failing one included).

    An element is ``(kind, tile, a, b, command_index, opcode name)``: ``_TILE`` (a = cycles), ``_MVM`` (a = front,
    b = back), ``_CHIP`` (a = cycles), ``_BAR`` (tile -1: every tile), ``_HALT``, ``_ERR``.
    """
    isa = Isa.of(cfg)
    sb = Scoreboard(cfg)
    apt = cfg.chip.arrays_per_tile
    out = []
    i, n, ci = 0, len(words), 0
    while i < n:
        hdr = isa.decode_header(int(words[i]))
        if hdr is None:
            out.append((_ERR, -1, 1, 0, ci, "ILLEGAL"))
            return out, ci + 1
        op, args = hdr
        code = semantics.check(cfg, op, args)
        if code is ErrorCode.NONE:
            code = sb.step(op, args)
        if code is not ErrorCode.NONE:
            out.append((_ERR, -1, 1, 0, ci, code.name))
            return out, ci + 1
        name = op.name
        if op is Opcode.MVM:
            if concurrent:
                front = timing.mvm_front(cfg, args["row0"], args["nrows"], args["ncols"])
                out.append((_MVM, args["array"] // apt, front, timing.mvm_back(cfg, args["ncols"]), ci, name))
            else:
                out.append((_TILE, 0, timing.mvm_cycles(cfg, args["row0"], args["nrows"], args["ncols"]), 0, ci,
                            name))
        elif op is Opcode.WRITE_W:
            t = args["array"] // apt if concurrent else 0
            nw = isa.payload_words(op, args["count"])
            out.append((_TILE, t, 2 if i + 1 < n else 1, 0, ci, name))   # a header that is the last word: 1 cycle
            out.extend((_TILE, t, 2, 0, ci, name) for _ in range(min(nw, n - i - 1)))
            i += nw
        elif op is Opcode.LOAD_IN:
            per, count = isa.per_word(op), args["count"]
            nw = isa.payload_words(op, count)
            out.append((_CHIP if concurrent else _TILE, 0, 1, 0, ci, name))
            out.extend((_CHIP if concurrent else _TILE, 0, 1 + min(per, count - k * per), 0, ci, name)
                       for k in range(min(nw, n - i - 1)))
            i += nw
        elif op in (Opcode.REQUANT, Opcode.READ):
            out.append((_CHIP if concurrent else _TILE, 0, timing.command_cycles(cfg, Command(op, args)), 0, ci,
                        name))
        elif op is Opcode.BARRIER:
            if concurrent:
                out.append((_BAR, args["array"] // apt if args["local"] else -1, 1, 0, ci, name))
            else:
                out.append((_TILE, 0, 1, 0, ci, name))
        elif op is Opcode.HALT:
            out.append((_HALT, -1, 1, 0, ci, name))
            return out, ci + 1
        else:                                               # pragma: no cover - every opcode is handled above
            raise AssertionError(op)
        i += 1
        ci += 1
    return out, ci


#: Testbenches whose cycle counts :func:`predict_words` reproduces: the co-simulation harness (cocotb and the fast
#: C++ harness, ``measured_cycles`` of ``python -m sim run``) and :mod:`hw.pysim`'s, which counts one cycle fewer
#: when two or more words follow the element that stopped the machine (they differ only in that drain).
HARNESSES = ("cosim", "pysim")


def _stop(cfg: HwConfig, t: int, stop_elem: int, n_words: int, harness: str) -> int:
    """Cycles counted when the element ``stop_elem`` stopped the machine in cycle ``t``: the stop constant, or the
    cycles the testbench needs to offer (and the machine to discard) the words after it, one per cycle, if that
    is longer."""
    trail = n_words - 1 - stop_elem
    return max(t + stop_cycles(cfg), t + trail + (harness == "cosim"))


def _sequential(cfg: HwConfig, elems, n_words: int, commands: int, keep: bool, harness: str) -> StreamPrediction:
    """One controller: element ``k`` is accepted when element ``k - 1`` completes (the first in cycle 1)."""
    t = 1
    busy = 0
    mvms = 0
    tl = []
    for k, (kind, _u, dur, _b, ci, name) in enumerate(elems):
        if kind in (_HALT, _ERR):
            if keep:
                tl.append(("tile0", t, t + 1, name, ci))
            return _result(cfg, False, _stop(cfg, t, k, n_words, harness), commands, n_words,
                           "HALTED" if kind == _HALT else "ERROR", t, [busy + 1], [0], [mvms], 0, 0, 0, tl, keep)
        if keep:
            tl.append(("tile0", t, t + dur, name, ci))
        mvms += name == "MVM"
        busy += dur
        t += dur
    # Truncated: the last element completed in cycle t - 1; the status is written then.
    return _result(cfg, False, t + 1, commands, n_words, "TRUNCATED", t - 1, [busy], [0], [mvms], 0, 0, 0, tl,
                   keep)


def _result(cfg, concurrent, cycles, commands, n_words, state, stop, busy, wait, mvms, bus, glob, stall, tl, keep):
    return StreamPrediction(cycles=int(cycles), concurrent=concurrent, commands=commands, words=n_words,
                            state=state, stop_cycle=int(stop), tile_busy=tuple(int(v) for v in busy),
                            tile_bus_wait=tuple(int(v) for v in wait), mvms_per_tile=tuple(mvms),
                            bus_busy=int(bus), global_busy=int(glob), dispatch_stall=int(stall),
                            timeline=tuple(tl) if keep else None)


def _chip(cfg: HwConfig, elems, n_words: int, commands: int, keep: bool, harness: str) -> StreamPrediction:
    """The event model of a concurrent chip (spec T1-T8)."""
    T = cfg.n_tiles
    L = timing.bus_latency(cfg)
    Dq = cfg.chip.queue_depth
    queue = [deque() for _ in range(T)]     # (element, push cycle)
    free = [0] * T                          # cycle the tile's controller can take its next element (INF: on the bus)
    popped = [-1] * T                       # cycle of the tile's latest take (its slot frees one cycle later: T3)
    wait_bus: dict[int, tuple[int, int, int, int]] = {}  # tile -> (grantable from, back, start, element)
    busy = [0] * T
    bwait = [0] * T
    mvms = [0] * T
    bus_free = 0
    bus_busy = 0
    gfree = 0                               # cycle the global controller is idle again
    gbusy = 0
    stall = 0
    tl = []
    e, n = 0, len(elems)
    arrival = 1                             # cycle element e reaches the dispatcher at the earliest (T1)
    t = 0
    last_done = 0                           # completion of the latest element (for a truncated stream)

    def all_idle_from() -> float:
        m = 0
        for u in range(T):
            if queue[u] or u in wait_bus:
                return _INF
            m = max(m, free[u])
        return m

    while True:
        # ---- candidate cycles of the next events ----
        cand_d = _INF
        if e < n:
            kind, u, a, _b, _ci, _nm = elems[e]
            base = max(arrival, t)
            if kind == _ERR:                # once the global controller is idle (a READ in flight finishes)
                cand_d = max(base, gfree)
            elif kind in (_TILE, _MVM):
                if len(queue[u]) < Dq:
                    cand_d = max(base, gfree)
                    if popped[u] == cand_d and len(queue[u]) + 1 >= Dq:
                        cand_d += 1                 # a take in this cycle frees its slot in the next (T3)
            elif kind == _BAR and u >= 0:
                if not queue[u] and u not in wait_bus:
                    cand_d = max(base, gfree, free[u])
            else:                           # chip element, all-tile BARRIER, HALT
                cand_d = max(base, gfree, all_idle_from())
        pops = []
        cand_p = _INF
        for u in range(T):
            if queue[u] and u not in wait_bus:
                c = max(free[u], queue[u][0][1] + 1)
                if c < cand_p:
                    cand_p, pops = c, [u]
                elif c == cand_p:
                    pops.append(u)
        cand_b = _INF
        if wait_bus:
            cand_b = max(bus_free, min(v[0] for v in wait_bus.values()))
        now = min(cand_d, cand_p, cand_b)
        if now == _INF:
            if e >= n:                      # truncated: everything has completed
                break
            raise AssertionError(f"stream model deadlocked at element {e}")  # pragma: no cover
        t = int(now)
        # ---- the dispatcher (decided on the state before this cycle's pops: T3) ----
        if cand_d == t:
            kind, u, a, b, ci, nm = elems[e]
            stall += t - arrival
            if kind == _ERR or kind == _HALT:
                if keep:
                    tl.append(("dispatch", t, t + 1, nm, ci))
                return _result(cfg, True, _stop(cfg, t, e, n_words, harness), commands, n_words,
                               "HALTED" if kind == _HALT else "ERROR", t, busy, bwait, mvms, bus_busy, gbusy, stall,
                               tl, keep)
            if kind in (_TILE, _MVM):
                queue[u].append((e, t))
            elif kind == _CHIP:
                gfree = t + a
                gbusy += a
                last_done = max(last_done, gfree)
                if keep:
                    tl.append(("global", t, t + a, nm, ci))
            else:
                last_done = max(last_done, t + 1)
                if keep:
                    tl.append(("dispatch", t, t + 1, nm, ci))
            e += 1
            arrival = max(e + 1, t + 1)
        # ---- tile controllers take their next element (T3, T5) ----
        if cand_p == t:
            for u in pops:
                k, _pushed = queue[u].popleft()
                popped[u] = t
                kind, _u, a, b, ci, nm = elems[k]
                if kind == _MVM:
                    mvms[u] += 1
                    wait_bus[u] = (t + a + L, b, t, k)
                    free[u] = _INF
                else:
                    free[u] = t + a
                    busy[u] += a
                    last_done = max(last_done, t + a)
                    if keep:
                        tl.append((f"tile{u}", t, t + a, nm, ci))
        # ---- the bus grants the lowest waiting tile whose latency has passed (T6) ----
        if cand_b == t:
            u = _grant(v for v, w in wait_bus.items() if w[0] <= t)
            ready, back, start, k = wait_bus.pop(u)
            free[u] = t + back
            bus_free = t + back
            bus_busy += back
            busy[u] += t + back - start
            bwait[u] += t - ready
            last_done = max(last_done, t + back)
            if keep:
                ci = elems[k][4]
                tl.append((f"tile{u}", start, t + back, "MVM", ci))
                tl.append(("bus", t, t + back, "MVM", ci))
    # Truncated: the status changes in the first cycle every controller is idle after the stream's last element.
    return _result(cfg, True, last_done + stop_cycles(cfg), commands, n_words, "TRUNCATED", last_done, busy, bwait,
                   mvms, bus_busy, gbusy, stall, tl, keep)


def predict_words(cfg: HwConfig, words: Sequence[int], *, timeline: bool = False,
                  harness: str = "cosim") -> StreamPrediction:
    """Predict the cycles of the stream ``words`` on ``cfg``'s generated hardware (see the module docstring), as
    the testbench ``harness`` (:data:`HARNESSES`) counts them."""
    if harness not in HARNESSES:
        raise ValueError(f"harness must be one of {', '.join(HARNESSES)}, not {harness!r}")
    words = list(words)
    conc = is_concurrent(cfg)
    elems, commands = _elements(cfg, words, conc)
    if conc:
        return _chip(cfg, elems, len(words), commands, timeline, harness)
    return _sequential(cfg, elems, len(words), commands, timeline, harness)


def predict(cfg: HwConfig, cmds: Sequence[Command], *, timeline: bool = False,
            harness: str = "cosim") -> StreamPrediction:
    """Predict the cycles of the commands ``cmds`` (encoded as :meth:`cimisa.isa.Isa.encode` does)."""
    return predict_words(cfg, Isa.of(cfg).encode(cmds), timeline=timeline, harness=harness)
