"""Counted resources of the performance simulator: pools of servers that fill gaps, and in-order unit vectors.

A :class:`Pool` is ``k`` identical servers (the chip's digital units, attention units, the KV-cache memory
port, a bus). A request ``(ready, duration)`` takes the server and the earliest start ``>= ready`` at which that
server is idle for the whole duration: requests may fill gaps left by requests reserved earlier (out of order),
so a shared unit does not serialise the pipeline. Servers are opened lazily, so ``k`` may be large.
:class:`InOrder` is a vector of single-server units served in request order (the tiles' periphery, the tiles'
network injection links): a request on several units starts when all of them are free.
"""

from __future__ import annotations

from bisect import bisect_right, insort

import numpy as np

__all__ = ["Pool", "InOrder"]


class _Server:
    """Busy intervals of one server, sorted and merged when they touch; ``ids[i]`` ends interval ``i``."""

    __slots__ = ("starts", "ends", "ids")

    def __init__(self):
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.ids: list[int] = []

    def earliest(self, ready: float, dur: float) -> float:
        ends, starts = self.ends, self.starts
        i = bisect_right(ends, ready)
        t = ready
        while i < len(starts) and starts[i] < t + dur:
            t = max(t, ends[i])
            i += 1
        return t

    def reserve(self, start: float, end: float, rid: int) -> int:
        """Book ``[start, end)``; return the id of the request that ended exactly at ``start`` (-1 if none)."""
        starts, ends, ids = self.starts, self.ends, self.ids
        i = bisect_right(starts, start)
        pred = ids[i - 1] if i and ends[i - 1] == start else -1
        if i and ends[i - 1] == start:                       # extend the left neighbour
            ends[i - 1] = end
            ids[i - 1] = rid
            if i < len(starts) and starts[i] == end:         # ... and swallow the right one
                ends[i - 1] = ends[i]
                ids[i - 1] = ids[i]
                del starts[i], ends[i], ids[i]
        elif i < len(starts) and starts[i] == end:
            starts[i] = start
        else:
            insort(starts, start)
            ends.insert(i, end)
            ids.insert(i, rid)
        return pred


class Pool:
    """``k`` servers with gap filling (see the module docstring); ``busy_ns`` sums every booked duration."""

    def __init__(self, k: int):
        self.k = int(k)
        self.servers: list[_Server] = []
        self.busy_ns = 0.0

    def reset(self) -> None:
        self.servers = []

    def earliest(self, ready: float, dur: float) -> tuple[float, int]:
        """Earliest start ``>= ready`` of a request of ``dur`` and the server that gives it (-1: a new one)."""
        best, where = None, -1
        for j, s in enumerate(self.servers):
            t = s.earliest(ready, dur)
            if best is None or t < best:
                best, where = t, j
                if t == ready:
                    break
        if (best is None or best > ready) and len(self.servers) < self.k:
            return ready, -1
        return best, where

    def reserve(self, ready: float, dur: float, rid: int, after: float | None = None) -> tuple[float, int]:
        """Book the earliest slot; return ``(start, id of the request it waited for or -1)`` (it waited if it
        starts later than ``after``, default ``ready``). A request of no duration starts at once."""
        if dur <= 0:
            return ready, -1
        start, j = self.earliest(ready, dur)
        if j < 0:
            self.servers.append(_Server())
            j = len(self.servers) - 1
        self.busy_ns += dur
        pred = self.servers[j].reserve(start, start + dur, rid)
        return start, (pred if start > (ready if after is None else after) else -1)


class InOrder:
    """``n`` single-server units served in request order: ``free[u]`` is when unit ``u`` is next free."""

    def __init__(self, n: int):
        self.free = np.zeros(n)
        self.last = np.full(n, -1, dtype=np.int64)

    def book(self, units: np.ndarray, ready: float, spans: np.ndarray, rid: int) -> tuple:
        """Run ``spans[i]`` on ``units[i]`` from ``max(ready, free)``; return ``(start, end, unit, pred, starts,
        ends)``: those of the unit that ends last (``pred``: the request it waited for, -1 if it did not wait),
        then every unit's interval."""
        free = self.free[units]
        s = np.maximum(free, ready)
        e = s + spans
        i = int(np.argmax(e))
        pred = int(self.last[units[i]]) if free[i] > ready else -1
        self.free[units] = e
        self.last[units] = rid
        return float(s[i]), float(e[i]), int(units[i]), pred, s, e
