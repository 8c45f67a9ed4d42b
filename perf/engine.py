"""The event-driven engine: tokens through the chain of steps, on counted resources, prefill then decode.

Prefill of ``P`` tokens is pipelined over tokens and layers: token ``t`` enters step ``i`` when it left step
``i - 1`` and the step's resource is free (tiles and injection links in booking order, token after token,
digital units, attention units, the SRAM and DRAM ports and a bus filling gaps: :mod:`perf.resources`). A
barrier attention (bidirectional, or the first cross attention) needs every token to have reached it; causal
attention the K/V of tokens ``<= t``. Each attention reads its K/V from the memory the caller gives per phase
(:func:`compiler.phases.prefill_kv`, :func:`compiler.phases.decode_kv`). A new weight
epoch (:class:`compiler.chipmap.ChipMap`) waits for every token of the previous one and its reload. Decode: ``N``
tokens, each after the previous one, attending to ``P + i`` tokens (an encoder: ``P``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cimisa.config import HwConfig
from compiler.phases import ModelDims, attention_cost, digital_ops
from perf.resources import InOrder, Pool
from perf.workload import Step

__all__ = ["Engine", "Event"]


@dataclass(frozen=True)
class Event:
    """One executed step (an interval): what determined its start is ``pred`` (an earlier event id or -1).
    The engine keeps events as plain tuples in this field order."""

    start_ns: float
    end_ns: float
    kind: str
    resource: str
    tile: int | None
    layer: str
    token: int
    pred: int


@dataclass
class Engine:
    """Runs steps on the chip's resources and books time, energy and events."""

    hw: HwConfig
    dims: ModelDims
    n_tiles: int
    keep_events: bool = True
    events: list = field(default_factory=list)
    energy: dict = field(default_factory=dict)
    energy_layer: dict = field(default_factory=dict)
    busy: dict = field(default_factory=dict)
    trace_tokens: int = 0
    trace_layers: frozenset | None = None
    trace: list = field(default_factory=list)
    phase: str = "prefill"
    trace_phase: str = "prefill"

    def __post_init__(self):
        ch = self.hw.chip
        self.tiles = InOrder(self.n_tiles)
        self.links = InOrder(self.n_tiles)
        self.pools = {"digital": Pool(ch.digital_units), "attention": Pool(ch.attention_units),
                      "sram": Pool(1), "dram": Pool(1), "bus": Pool(1)}
        self._att: dict = {}
        self.util: list = []      # (class, start, end, busy units-time)

    def traced(self, st: Step, token: int) -> bool:
        """Whether the trace keeps ``st`` of ``token`` (bounded: the first tokens of one phase of the run)."""
        return (self.phase == self.trace_phase and 0 <= token < self.trace_tokens
                and (self.trace_layers is None or st.layer in self.trace_layers))

    def _book(self, kind, res, tile, layer, token, start, end, pred, energy: dict, busy: float):
        for k, v in energy.items():
            self.energy[k] = self.energy.get(k, 0.0) + v
            self.energy_layer[layer] = self.energy_layer.get(layer, 0.0) + v
        self.busy[res] = self.busy.get(res, 0.0) + busy
        if self.keep_events:
            self.events.append((start, end, kind, res, tile, layer, token, pred))
            self.util.append((res, start, end, busy))
        return len(self.events) - 1 if self.keep_events else -1

    def attention(self, st: Step, ctx: float, mem) -> tuple[float, float, float, float]:
        """``(time, read time, compute energy nJ, read energy nJ)`` of one attention over ``ctx`` tokens."""
        key = (st.roles, ctx, mem)
        got = self._att.get(key)
        if got is None:
            t, e = digital_ops(self.dims, st.roles, ctx, self.hw)["attention"]
            total, read, e_read = attention_cost(t, ctx, self.dims, mem)
            got = self._att[key] = (total, read, e, e_read)
        return got

    def run(self, st: Step, ready: float, token: int, pred: int, ctx: float, mem) -> tuple[float, int]:
        """Run ``st`` for ``token`` once its input is ready; return ``(end, event id)``."""
        res = st.res
        tile = None
        energy = st.energy
        busy = st.dur
        if res == "tile" or res == "link":
            unit = self.tiles if res == "tile" else self.links
            start, end, tile, wait, s_all, e_all = unit.book(st.units, ready, st.spans, len(self.events))
            if self.traced(st, token):
                self.trace.extend((res, int(u), float(a), float(b), st.kind, st.layer, token)
                                  for u, a, b in zip(st.units.tolist(), s_all.tolist(), e_all.tolist()))
            busy = float(st.spans.sum())
        elif res == "delay":
            start, end, wait = ready, ready + st.dur, -1
        elif res == "attention":
            dur, read, e, e_read = self.attention(st, ctx, mem)
            att, memp = self.pools["attention"], self.pools[mem[0]]
            t = ready
            while True:                      # an attention unit and the memory port from the same start
                s1, _ = att.earliest(t, dur)
                s2, _ = memp.earliest(s1, read)
                if s2 == s1:
                    break
                t = s2
            start, wait = att.reserve(s1, dur, len(self.events), after=ready)
            _, wait_mem = memp.reserve(start, read, len(self.events), after=ready)
            wait = wait if wait >= 0 else wait_mem         # what it waited for: the unit, else the port
            end = start + dur
            energy = {"digital": e, "memory": e_read}
            busy = dur
        else:
            start, wait = self.pools[res].reserve(ready, st.dur, len(self.events))
            end = start + st.dur
        eid = self._book(st.kind, res, tile, st.layer, token, start, end, wait if wait >= 0 else pred, energy, busy)
        if res not in ("tile", "link") and self.traced(st, token):
            self.trace.append((res, None, start, end, st.kind, st.layer, token))
        return end, eid

    def chain(self, chain: list[Step], ready: float, token: int, ctx_of, mems: dict, pred: int = -1,
              kv: dict | None = None) -> tuple[float, int]:
        """Run one token through ``chain`` (``mems``: phase -> where its attention reads the K/V); ``kv`` holds,
        per causal attention step, the latest K/V ready time."""
        r = ready
        for st in chain:
            if st.res == "attention" and kv is not None and st.causal:
                t_kv, p_kv = kv.get(st.phase, (0.0, -1))
                if t_kv > r:                                # the K/V of an earlier token arrive later
                    r, pred = t_kv, p_kv
                kv[st.phase] = (r, pred)
            r, pred = self.run(st, r, token, pred, ctx_of(st, token), mems.get(st.phase))
        return r, pred

    def pipeline(self, chain: list[Step], tokens: int, start: float, reload_ns, mems: dict) -> tuple[float, int]:
        """Prefill: ``tokens`` tokens through ``chain`` from ``start`` (``mems``: phase -> memory of its K/V);
        return (finish, last event id)."""
        segments: list[list[Step]] = [[]]
        for st in chain:
            new_epoch = segments[-1] and st.epoch != segments[-1][-1].epoch
            if (st.barrier and tokens > 1) or new_epoch:
                segments.append([])
            segments[-1].append(st)
        t0, pred = start, -1
        ctx_of = (lambda st, t: float(t + 1) if st.causal else float(tokens))   # noqa: E731
        for i, seg in enumerate(segments):
            if not seg:
                continue
            if i and seg[0].epoch != segments[i - 1][-1].epoch:
                ns, e = reload_ns(seg[0].epoch)
                pred = self._book("reload", "reload", None, seg[0].layer, -1, t0, t0 + ns, pred, e, ns)
                t0 += ns
            kv: dict = {}
            finish, last = t0, pred
            for t in range(tokens):
                end, eid = self.chain(seg, t0, t, ctx_of, mems, pred, kv)
                if end >= finish:
                    finish, last = end, eid
            t0, pred = finish, last
        return t0, pred

    def decode(self, chain: list[Step], tokens: int, prompt: int, start: float, reload_ns, epochs: int,
               mem: tuple, pred: int = -1) -> tuple[list[float], int]:
        """``tokens`` tokens one after the other from ``start``, the KV cache in ``mem``; return (each token's
        finish, last event id)."""
        ends = []
        r = start
        for i in range(tokens):
            ctx_of = (lambda st, t, i=i: float(prompt + i) if st.causal else float(prompt))  # noqa: E731
            epoch = None
            for st in chain:
                if epochs > 1 and st.epoch != epoch:
                    ns, e = reload_ns(st.epoch if epoch is not None else -1)
                    pred = self._book("reload", "reload", None, st.layer, i, r, r + ns, pred, e, ns)
                    r += ns
                    epoch = st.epoch
                r, pred = self.run(st, r, i, pred, ctx_of(st, i), mem)
            ends.append(r)
        return ends, pred
