"""Analytic cost model: latency and energy per token (decode) and per sequence (prefill), from the schedule.

The fast estimator, and the lower bound of the event-driven simulator (:mod:`perf`): both read the same
per-phase work (:func:`phases`: activation times, REQUANT, network transfers, digital work, KV-cache reads); this
model ignores contention between shared resources. Constants: :class:`cimisa.config.CostParams` (``hw.cost``) and
the chip (``hw.chip``); sources in ``docs/cost-model.md``, semantics in ``docs/perf.md``.

Activation (one MVM) with ``n_r`` rows, ``n_c`` logical columns, ``cells`` physical cells and a ``b``-bit ADC, on
an array with ``A`` ADCs, in ``D = fmt.digits`` drive cycles (``input_bits`` bit planes in the default format),
converting ``C = fmt.conversions(n_c)`` physical columns per cycle (:mod:`cimisa.formats`)::

    rounds   = ceil(C / A)
    t_adc(b) = t_adc * ((1 - ramp) * b / adc_ref_bits + ramp * 2**(b - adc_ref_bits))   # SAR .. ramp ADC
    time     = t_mvm_fixed + D * (t_array_read + rounds * (t_adc(b) + t_shift_add))
    energy   = e_mvm_fixed + D * (n_r * compiler.components.dac_energy_pj + cells * e_cell_read
                                  + C * (compiler.components.adc_energy_pj(b) + e_shift_add))

Phases: matmuls that read the same input (one ``input_group`` of one layer), in model order. Per token a phase
is the chain stage 1 (``T1`` = the busiest array's summed activation times) -> REQUANT (``ceil(count /
digital_lanes)`` cycles) -> shuffle to the stage-2 tiles -> stage 2 (``T2``) -> transfer to the next phase's
tiles (``t_comm`` on the ``ideal`` network) -> the digital work after the phase (attention with its KV-cache read,
norms, activation). Decode: one vector through the phases :meth:`compiler.families.Family.in_decode` names, with
a context of ``seq_len`` tokens. Prefill of ``T`` tokens: :func:`prefill_bound`, a flow-shop lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cimisa.config import HwConfig
from compiler.phases import (
    ACT_KEYS,
    ModelDims,
    Phase,
    activation_costs,
    array_tiles,
    attention_cost,
    decode_kv,
    digital_ops,
    kv_memory,
    phases,
    prefill_kv,
    transfer,
)
from compiler.schedule import Schedule

__all__ = ["ModelDims", "CostReport", "Phase", "activation_costs", "digital_ops", "kv_memory", "attention_cost",
           "transfer", "phases", "prefill_bound", "estimate", "cost_of_compiled", "COMPONENTS", "ACT_KEYS"]

#: Latency/energy components, in report order.
COMPONENTS = ("mvm_fixed", "dac_array", "adc", "shift_add", "requant_buffer", "digital", "comm", "memory")


@dataclass
class CostReport:
    """Latency (ns) and energy (nJ) per token and per sequence, by component and by layer."""

    decode_latency_ns: float
    decode_energy_nj: float
    prefill_latency_ns: float
    prefill_energy_nj: float
    seq_len: int
    latency_components_ns: dict
    energy_components_nj: dict
    prefill_latency_components_ns: dict
    prefill_energy_components_nj: dict
    per_layer: list = field(default_factory=list)
    activations: int = 0
    conversions_per_token: float = 0.0
    adc_bits_histogram: dict = field(default_factory=dict)
    program_energy_nj: float = 0.0

    @property
    def matmul_latency_ns(self) -> float:
        """Decode latency of the weight matmuls alone (analog activations, REQUANT, communication)."""
        return sum(v for k, v in self.latency_components_ns.items() if k not in ("digital", "memory"))

    @property
    def matmul_energy_nj(self) -> float:
        """Decode energy of the weight matmuls alone."""
        return sum(v for k, v in self.energy_components_nj.items() if k not in ("digital", "memory"))

    def to_dict(self) -> dict:
        r = lambda v: float(f"{v:.6g}")  # noqa: E731 - stable, compact floats
        return {
            "latency_ns": r(self.decode_latency_ns), "energy_nj": r(self.decode_energy_nj),
            "matmul_latency_ns": r(self.matmul_latency_ns), "matmul_energy_nj": r(self.matmul_energy_nj),
            "prefill_latency_ns": r(self.prefill_latency_ns), "prefill_energy_nj": r(self.prefill_energy_nj),
            "seq_len": self.seq_len, "activations": self.activations,
            "conversions_per_token": r(self.conversions_per_token),
            "adc_bits_histogram": {str(k): v for k, v in self.adc_bits_histogram.items()},
            "latency_components_ns": {k: r(v) for k, v in self.latency_components_ns.items()},
            "energy_components_nj": {k: r(v) for k, v in self.energy_components_nj.items()},
            "prefill_latency_components_ns": {k: r(v) for k, v in self.prefill_latency_components_ns.items()},
            "prefill_energy_components_nj": {k: r(v) for k, v in self.prefill_energy_components_nj.items()},
            "weight_programming_energy_nj": r(self.program_energy_nj),
            "per_layer": [{k: (r(v) if isinstance(v, float) else v) for k, v in row.items()}
                          for row in self.per_layer],
        }

def _ctx(ph: Phase, T: int, t: np.ndarray) -> np.ndarray:
    """Context of token(s) ``t`` attending after phase ``ph`` in a prefill of ``T`` tokens."""
    return (t + 1).astype(np.float64) if ph.causal else np.full(len(t), float(T))


def prefill_bound(ps: list[Phase], hw: HwConfig, dims: ModelDims, T: int, tiles: np.ndarray | None = None) -> float:
    """Lower bound of the time to prefill ``T`` tokens through the phases ``ps`` (any schedule of them).

    Tokens flow through the chain of steps of every phase (a flow shop). Bidirectional attention (and the first
    cross attention, which needs the cross K/V of every encoder token) needs all tokens: the chain splits there
    into segments run one after the other (:attr:`Phase.barrier`). Per segment the time is at least the last
    token's chain, and, for every resource ``r`` of ``k`` servers doing ``w`` per token (an array, a tile's
    ``mvms_per_tile`` ports, the digital and the attention units, the SRAM and DRAM ports: each attention reads
    its K/V where :func:`compiler.phases.prefill_kv` puts them),
    ``head + T * w / k + tail``
    (``head``/``tail``: the shortest chain before its first / after its last use). With one resource per step
    that is the flow-shop makespan ``sum(p) + (T - 1) * max(p)``.
    """
    ch = hw.chip
    mems = prefill_kv(ps, hw, dims, T)[0]
    tok = np.arange(T)
    total = 0.0
    seg: list[tuple] = []          # (p_min, p_max, [(resource, servers, ids or None, work per token)])

    def close():
        nonlocal total
        if not seg:
            return
        pmin = np.array([s[0] for s in seg])
        before = np.concatenate([[0.0], np.cumsum(pmin)])
        best = float(sum(s[1] for s in seg))
        pools: dict = {}
        for i, (_, _, uses) in enumerate(seg):
            for key, k, ids, w in uses:
                for j, x in (zip(ids.tolist(), w.tolist()) if ids is not None else ((None, w),)):
                    f, _, s = pools.get((key, j), (i, i, 0.0))
                    pools[(key, j)] = (min(f, i), i, s + x / k)
        for f, last, s in pools.values():
            best = max(best, before[f] + T * s + before[-1] - before[last + 1])
        total += best
        seg.clear()

    for ph in ps:
        s1, s2 = ph.stage_ns
        for si, p in ((0, s1), (1, s2)):
            if len(ph.arrays[si]):
                a, b = ph.arrays[si], ph.busy[si]
                uses = [("array", 1, a, b)]
                if tiles is not None:
                    ut, inv = np.unique(tiles[a], return_inverse=True)
                    uses.append(("tile", ch.mvms_per_tile, ut, np.bincount(inv, weights=b)))
                seg.append((p, p, uses))
            if si == 0:
                seg.append((ph.rq_ns, ph.rq_ns, [("digital", ch.digital_units, None, ph.rq_ns)]))
                seg.append((ph.shuffle[0], ph.shuffle[0], []))
        seg.append((ph.comm[0], ph.comm[0], []))
        ctx = _ctx(ph, T, tok)
        for kind, (t, _) in digital_ops(dims, ph.roles, 1.0, hw).items():
            if kind == "attention":
                if ph.barrier:
                    close()
                mem = mems[ph.index]
                xs, counts = np.unique(ctx, return_counts=True)
                tr = np.array([attention_cost(digital_ops(dims, ph.roles, x, hw)["attention"][0], x, dims,
                                              mem)[:2] for x in xs.tolist()])
                seg.append((float(tr[:, 0].min()), float(tr[:, 0].max()),
                            [("attention", ch.attention_units, None, float((tr[:, 0] * counts).sum()) / T),
                             (mem[0], 1, None, float((tr[:, 1] * counts).sum()) / T)]))
            else:
                seg.append((t, t, [("digital", ch.digital_units, None, t)]))
    close()
    return total


def _decode_token(ph: Phase, dims: ModelDims, hw: HwConfig, ctx: float, mem) -> tuple[dict, dict]:
    """Latency and energy components of one token through ``ph`` without contention."""
    lat = dict.fromkeys(COMPONENTS, 0.0)
    en = dict.fromkeys(COMPONENTS, 0.0)
    for crit in ph.crit:
        for k in ACT_KEYS:
            lat[k] += crit[k]
    for k in (*ACT_KEYS, "requant_buffer"):
        en[k] += ph.energy[k]
    lat["requant_buffer"] = ph.rq_ns
    lat["comm"] = ph.shuffle[0] + ph.comm[0]
    en["comm"] = ph.shuffle[1] + ph.comm[1]
    for kind, (t, e) in digital_ops(dims, ph.roles, ctx, hw).items():
        en["digital"] += e
        if kind == "attention":
            t_all, _, e_read = attention_cost(t, ctx, dims, mem)
            lat["memory"] += t_all - t
            en["memory"] += e_read
        lat["digital"] += t
    return lat, en


def estimate(sched: Schedule, hw: HwConfig, dims: ModelDims, chipmap=None) -> CostReport:
    """Return the :class:`CostReport` of a schedule (see the module docstring for the model).

    Decode: one token through the decode phases with a context of ``dims.seq_len``, the whole KV cache where
    :func:`compiler.phases.decode_kv` puts it. Prefill: :func:`prefill_bound` of ``dims.seq_len`` tokens; its
    components are the one-token chain's, scaled to it; its energy includes writing to DRAM, once, the K/V that
    live there (:func:`compiler.phases.prefill_kv`).
    """
    pl = sched.placement
    ps = phases(sched, hw, dims, chipmap)
    T = dims.seq_len
    tiles = array_tiles(pl, hw, chipmap)
    mem_dec = decode_kv(ps, hw, dims, T)
    mems_pre, written = prefill_kv(ps, hw, dims, T)
    lat_dec = dict.fromkeys(COMPONENTS, 0.0)
    en_dec = dict.fromkeys(COMPONENTS, 0.0)
    chain = dict.fromkeys(COMPONENTS, 0.0)
    en_pre = dict.fromkeys(COMPONENTS, 0.0)
    per_layer: dict[tuple, dict] = {}
    tok = np.arange(T)
    for ph in ps:
        lat, en = _decode_token(ph, dims, hw, float(T), mem_dec)
        row = per_layer.setdefault((ph.stage, ph.layer), {"stage": ph.stage, "layer": ph.layer, "latency_ns": 0.0,
                                                          "energy_nj": 0.0, "prefill_latency_ns": 0.0,
                                                          "arrays": set()})
        row["arrays"].update(np.concatenate(ph.arrays).tolist())
        if ph.in_decode:
            for k in COMPONENTS:
                lat_dec[k] += lat[k]
                en_dec[k] += en[k]
            row["latency_ns"] += sum(lat.values())
            row["energy_nj"] += sum(en.values())
        mem_pre = mems_pre.get(ph.index, mem_dec)
        ctx, counts = np.unique(_ctx(ph, T, tok), return_counts=True)
        for x, n in zip(ctx.tolist(), counts.tolist()):      # ascending: lat_p ends as the longest context's
            lat_p, en_p = _decode_token(ph, dims, hw, x, mem_pre)
            for k in COMPONENTS:
                en_pre[k] += en_p[k] * n
        for k in COMPONENTS:
            chain[k] += lat_p[k]
        row["prefill_latency_ns"] += sum(lat_p.values())
    en_pre["memory"] += written * hw.cost.e_dram_pj_per_byte / 1000.0
    pre = prefill_bound(ps, hw, dims, T, tiles)
    scale = pre / sum(chain.values()) if sum(chain.values()) else 0.0
    rows = []
    for key in sorted(per_layer, key=lambda k: (k[0] != "encoder", k[1])):
        row = per_layer[key]
        row["arrays"] = len(row["arrays"])
        row["prefill_latency_ns"] *= scale
        rows.append(row)
    n = len(sched.activations)
    return CostReport(
        decode_latency_ns=sum(lat_dec.values()), decode_energy_nj=sum(en_dec.values()),
        prefill_latency_ns=pre, prefill_energy_nj=sum(en_pre.values()), seq_len=T,
        latency_components_ns=lat_dec, energy_components_nj=en_dec,
        prefill_latency_components_ns={k: v * scale for k, v in chain.items()},
        prefill_energy_components_nj=en_pre, per_layer=rows, activations=n,
        conversions_per_token=float(activation_costs(sched, hw)["conversions"].sum()) if n else 0.0,
        adc_bits_histogram=sched.adc_bits_histogram(),
        program_energy_nj=(pl.weight_cells + pl.bias_cells) * hw.cost.e_program_cell_pj / 1000.0)


def cost_of_compiled(compiled, hw: HwConfig | None = None, spec=None) -> dict:
    """Return the cost report (as a dict) of a :class:`~compiler.program.CompiledModel`."""
    hw = hw or compiled.hw
    dims = ModelDims.of(spec, compiled.placement)
    return estimate(compiled.schedule, hw, dims).to_dict()
