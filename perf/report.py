"""The simulator's report: latencies, energy (dynamic + static), area, utilisation, breakdowns, critical path."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PerfReport", "utilisation", "critical_path"]

#: Trace interval fields (``mapper.perfplots.TRACE_FIELDS``).
TRACE_FIELDS = ("resource", "tile", "start_ns", "end_ns", "kind", "layer", "token")


def _r(v: float) -> float:
    return float(f"{v:.6g}")


@dataclass(frozen=True, eq=False)
class PerfReport:
    """What :func:`perf.simulate` measured; times in ns, energies in nJ, area in mm^2, power in mW."""

    prefill_tokens: int
    decode_tokens: int
    prefill_latency_ns: float
    decode_token_ns: tuple                  # each decode token's latency
    prefill_energy: dict                    # dynamic energy of the prefill by component
    decode_energy: dict                     # dynamic energy of all decode tokens by component
    energy_by_layer: dict
    static_power_mw: float
    static_power_breakdown: dict
    area_breakdown: dict
    busy_ns: dict                           # busy time (unit-ns) by resource class
    utilisation: dict                       # {"bin_ns": w, "<class>": [busy fraction per bin]}
    critical_path: list                     # the chain of intervals that ends last (latest last)
    critical_by_kind: dict                  # time on the critical path by step kind
    analytic: dict = field(default_factory=dict)
    trace: list = field(default_factory=list, repr=False)
    #: What one "token" of :meth:`summary`'s ``energy_per_token_nj`` is: ``decode`` (a generated token, with the
    #: static energy of its time) or ``prefill`` (an encoder-only model: a token of the sequence, the sequence's
    #: energy over its tokens; its one-vector "decode" is a latency figure only).
    energy_basis: str = "decode"

    @property
    def decode_latency_ns(self) -> float:
        """Mean latency of one decode token."""
        return float(np.mean(self.decode_token_ns)) if self.decode_token_ns else 0.0

    @property
    def elapsed_ns(self) -> float:
        return self.prefill_latency_ns + float(sum(self.decode_token_ns))

    def summary(self) -> dict:
        """The headline figures (see ``docs/perf.md``)."""
        dec = self.decode_latency_ns
        p_dyn, d_dyn = sum(self.prefill_energy.values()), sum(self.decode_energy.values())
        stat = self.static_power_mw * self.elapsed_ns / 1000.0
        if self.decode_tokens and self.energy_basis == "decode":
            per_token = (d_dyn + self.static_power_mw * sum(self.decode_token_ns) / 1000.0) / self.decode_tokens
        elif self.prefill_tokens:
            per_token = (p_dyn + self.static_power_mw * self.prefill_latency_ns / 1000.0) / self.prefill_tokens
        else:
            per_token = 0.0
        return {
            "prefill_tokens": self.prefill_tokens, "decode_tokens": self.decode_tokens,
            "prefill_latency_ns": self.prefill_latency_ns, "ttft_ns": self.prefill_latency_ns,
            "decode_latency_ns": dec, "decode_tokens_per_s": 1e9 / dec if dec else 0.0,
            "prefill_tokens_per_s": 1e9 * self.prefill_tokens / self.prefill_latency_ns
            if self.prefill_latency_ns else 0.0,
            "energy_per_token_nj": per_token, "energy_basis": self.energy_basis,
            "dynamic_energy_nj": p_dyn + d_dyn, "static_energy_nj": stat,
            "prefill_energy_nj": p_dyn, "decode_energy_nj": d_dyn / self.decode_tokens if self.decode_tokens else 0.0,
            "static_power_mw": self.static_power_mw, "area_mm2": float(sum(self.area_breakdown.values())),
        }

    def to_dict(self) -> dict:
        """Everything, JSON-ready (the trace is left out: :attr:`trace`)."""
        s = self.summary()
        by_decode = bool(self.decode_tokens) and self.energy_basis == "decode"
        n = (self.decode_tokens if by_decode else self.prefill_tokens) or 1
        dyn = self.decode_energy if by_decode else self.prefill_energy
        wall = sum(self.decode_token_ns) if by_decode else self.prefill_latency_ns
        per_token = {k: _r(v / n) for k, v in dyn.items()}
        per_token["static"] = _r(self.static_power_mw * wall / 1000.0 / n)
        return {
            "summary": {k: (_r(v) if isinstance(v, float) else v) for k, v in s.items()},
            "breakdown": {
                "energy_per_token_nj": per_token,
                "prefill_energy_nj": {k: _r(v) for k, v in self.prefill_energy.items()},
                "decode_energy_nj": {k: _r(v) for k, v in self.decode_energy.items()},
                "area_mm2": {k: _r(v) for k, v in self.area_breakdown.items()},
                "static_power_mw": {k: _r(v) for k, v in self.static_power_breakdown.items()},
                "energy_by_layer_nj": {k: _r(v) for k, v in self.energy_by_layer.items()},
                "busy_ns": {k: _r(v) for k, v in self.busy_ns.items()},
                "critical_path_ns_by_kind": {k: _r(v) for k, v in self.critical_by_kind.items()},
            },
            "decode_token_ns": [_r(v) for v in self.decode_token_ns[:1024]],
            "utilisation": self.utilisation,
            "critical_path": self.critical_path,
            "analytic": {k: (_r(v) if isinstance(v, float) else v) for k, v in self.analytic.items()},
        }


def utilisation(util: list, end_ns: float, capacity: dict, bins: int = 40) -> dict:
    """Busy fraction per resource class in ``bins`` equal time bins of ``0..end_ns`` (each interval's busy
    unit-time spread evenly over it, divided by the class's ``capacity`` units)."""
    if not util or end_ns <= 0:
        return {"bin_ns": 0.0}
    edges = np.linspace(0.0, end_ns, bins + 1)
    out: dict = {"bin_ns": _r(end_ns / bins)}
    cls = np.array([u[0] for u in util])
    s = np.array([u[1] for u in util])
    e = np.array([u[2] for u in util])
    b = np.array([u[3] for u in util])
    for c in sorted(set(cls.tolist()) - {"delay"}):
        m = cls == c
        ss, ee, bb = s[m], e[m], b[m]
        length = np.maximum(ee - ss, 1e-300)
        dens = np.where(ee > ss, bb / length, 0.0)
        cum = np.array([float((dens * np.clip(x - ss, 0.0, length)).sum()) for x in edges])
        frac = np.diff(cum) / (np.diff(edges) * max(1, capacity.get(c, 1)))
        out[c] = [_r(min(1.0, f)) for f in frac]
    return out


def critical_path(events: list, last: int, limit: int = 2000) -> tuple[list, dict]:
    """Follow ``pred`` from event ``last``: the chain of intervals that decided the finish time (latest last,
    at most ``limit`` kept) and its time by kind. An interval counts up to the start of the one that waited for
    it (a request on several tiles ends when its last tile does; the waiting one needed only one of them), so the
    times by kind add up to the finish time."""
    path = []
    by_kind: dict = {}
    i = last
    nxt = float("inf")
    while i >= 0:
        s, e, kind, res, tile, layer, token, pred = events[i]
        by_kind[kind] = by_kind.get(kind, 0.0) + (min(e, nxt) - s)
        nxt = s
        if len(path) < limit:
            path.append({"kind": kind, "resource": res, "tile": tile, "layer": layer, "token": token,
                         "start_ns": _r(s), "end_ns": _r(e)})
        i = pred
    path.reverse()
    return path, by_kind
