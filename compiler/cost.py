"""Cost model: latency and energy per token (decode) and per sequence (prefill), from the schedule.

Every constant is a field of :class:`cimisa.config.CostParams` (sources in ``docs/cost-model.md``).

Activation (one MVM, :class:`~compiler.schedule.Activation`) with ``n_r`` rows, ``n_c`` columns, ``cells`` weight
cells and a ``b``-bit ADC, on an array with ``A`` ADCs, for ``I`` input bits::

    rounds   = ceil(n_c / A)
    t_adc(b) = t_adc * ((1 - ramp) * b / adc_ref_bits + ramp * 2**(b - adc_ref_bits))   # SAR .. ramp ADC
    time     = t_mvm_fixed + I * (t_array_read + rounds * (t_adc(b) + t_shift_add))
    energy   = e_mvm_fixed + I * (n_r * e_row_read + cells * e_cell_read
                                  + n_c * (adc_fom * 2**b + e_shift_add))

Phases. Matmuls that read the same input (one ``input_group`` of one layer) run together; phases follow the
model order. In a phase, arrays run in parallel and the activations of one array in order, so stage 1 takes
``T1 = max over arrays of the summed stage-1 activation times``; then REQUANT (``count / digital_lanes`` cycles),
then stage 2 (``T2``, likewise), then ``t_comm``. Decode: one vector through every phase, plus the digital work
between phases (attention over ``ctx`` previous tokens, softmax, norms, activation, residual adds).
Prefill of ``T`` tokens: each phase is a pipeline over tokens, ``fill + (T-1) * bottleneck`` with ``bottleneck``
the busiest array (stage 1 + stage 2 activations of one token) or the REQUANT; attention work grows as ``T^2``
(causal: ``T(T+1)/2``). Decode runs the phases :meth:`compiler.families.Family.in_decode` names (BART: the decoder
only; cross K/V are computed once, in prefill).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from cimisa.config import HwConfig
from compiler.families import Family, config_int, generic_family
from compiler.families import family as family_rules
from compiler.place import Placement
from compiler.schedule import Schedule

__all__ = ["ModelDims", "CostReport", "activation_costs", "estimate", "cost_of_compiled", "COMPONENTS"]

#: Latency/energy components, in report order.
COMPONENTS = ("mvm_fixed", "dac_array", "adc", "shift_add", "requant_buffer", "digital", "comm")


@dataclass(frozen=True)
class ModelDims:
    """What the digital (non-matmul) work depends on: the model family (causal attention, which phases run per
    token: :mod:`compiler.families`), model width, heads and sequence length."""

    family: str
    d_model: int
    heads: int
    seq_len: int

    @property
    def rules(self) -> Family:
        """The :class:`~compiler.families.Family` of the model."""
        return family_rules(self.family)

    @classmethod
    def of(cls, spec=None, placement: Placement | None = None, seq_len: int | None = None) -> ModelDims:
        """Build from a :class:`~compiler.spec.ModelSpec` (or guess from the placement's matmuls)."""
        if spec is not None:
            fam = family_rules(spec.family)
            c = spec.hf_config or {}
            d = config_int(c, fam.hidden_keys) or 0
            h = config_int(c, fam.heads_keys) or 0
            if not d:
                d = Counter(m.in_features for m in spec.mapped()).most_common(1)[0][0]
            return cls(spec.family, d, h or max(1, d // 64), int(seq_len or spec.seq_len))
        d = Counter(g.in_features for g in placement.matmuls).most_common(1)[0][0]
        fam = generic_family({g.stage for g in placement.matmuls})
        return cls(fam.name, d, max(1, d // 64), int(seq_len or 512))


def activation_costs(sched: Schedule, hw: HwConfig) -> dict[str, np.ndarray]:
    """Return per-activation arrays: time components (ns) and energy components (pJ)."""
    c = hw.cost
    acts = sched.activations
    n = len(acts)
    nr = np.fromiter((a.nrows for a in acts), dtype=np.float64, count=n)
    nc = np.fromiter((a.ncols for a in acts), dtype=np.float64, count=n)
    cells = np.fromiter((a.cells for a in acts), dtype=np.float64, count=n)
    bits = np.fromiter((a.adc_bits for a in acts), dtype=np.float64, count=n)
    ib = hw.input_bits
    rounds = np.ceil(nc / hw.adcs_per_array)
    t = {
        "mvm_fixed": np.full(n, c.t_mvm_fixed_ns),
        "dac_array": np.full(n, ib * c.t_array_read_ns),
        "adc": ib * rounds * c.t_adc_ns * ((1 - c.adc_ramp_fraction) * bits / c.adc_ref_bits
                                           + c.adc_ramp_fraction * np.exp2(bits - c.adc_ref_bits)),
        "shift_add": ib * rounds * c.t_shift_add_ns,
    }
    e = {
        "mvm_fixed": np.full(n, c.e_mvm_fixed_nj * 1000.0),
        "dac_array": ib * (nr * c.e_row_read_pj + cells * c.e_cell_read_pj),
        "adc": ib * nc * c.adc_fom_fj_per_step * np.exp2(bits) / 1000.0,
        "shift_add": ib * nc * c.e_shift_add_pj,
    }
    return {"t": t, "e": e, "conversions": ib * nc}


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
        return sum(v for k, v in self.latency_components_ns.items() if k != "digital")

    @property
    def matmul_energy_nj(self) -> float:
        """Decode energy of the weight matmuls alone."""
        return sum(v for k, v in self.energy_components_nj.items() if k != "digital")

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


def _digital_ops(dims: ModelDims, roles: set[str], ctx_sum: float, tokens: int, c) -> tuple[dict, dict]:
    """Return (time, energy) by kind of the digital work that follows a phase with ``roles``."""
    t: dict[str, float] = {}
    e: dict[str, float] = {}
    d, H = dims.d_model, dims.heads
    lanes, cyc, eop = c.digital_lanes, c.t_digital_cycle_ns, c.e_digital_op_pj

    def vec(ops_total: float):
        return math.ceil(ops_total / lanes) * cyc, ops_total * eop / 1000.0

    if roles & {"q", "qkv", "cross_q"}:
        # scores q.k over ctx tokens, softmax (exp, sum, divide: 3 ops), weighted sum of values
        macs = 2 * ctx_sum * d
        sm = 3 * ctx_sum * H
        tt, ee = vec(macs + sm)
        t["attention"], e["attention"] = tt, ee
    if roles & {"o", "cross_o", "ffn_down"}:
        tt, ee = vec(tokens * d * 6)           # residual add (1 op) + norm (~5 ops per element)
        t["add_norm"] = tokens * (c.t_add_ns + c.t_layernorm_ns)
        e["add_norm"] = ee
    if roles & {"ffn_up", "ffn_gate"}:
        t["activation"] = tokens * c.t_activation_ns
        e["activation"] = tokens * d * 4 * 4 * eop / 1000.0   # ~4 ops per element of a 4*d hidden vector
    return t, e


def estimate(sched: Schedule, hw: HwConfig, dims: ModelDims) -> CostReport:
    """Return the :class:`CostReport` of a schedule (see the module docstring for the model)."""
    pl = sched.placement
    geoms = pl.matmuls
    c = hw.cost
    ac = activation_costs(sched, hw)
    acts = sched.activations
    n = len(acts)
    t_total = sum(ac["t"].values()) if n else np.zeros(0)
    arr = np.fromiter((a.array for a in acts), dtype=np.int64, count=n)
    stage2 = np.fromiter((a.factor == "L" for a in acts), dtype=bool, count=n)
    owner = np.fromiter((a.matmul for a in acts), dtype=np.int64, count=n)
    # phases in model order
    phase_of: dict[tuple, int] = {}
    mat_phase = np.zeros(len(geoms), dtype=np.int64)
    for mi, g in enumerate(geoms):
        key = (g.input_group, g.stage, g.layer)
        mat_phase[mi] = phase_of.setdefault(key, len(phase_of))
    ph = mat_phase[owner] if n else np.zeros(0, dtype=np.int64)
    linear = pl.strategy == "linear"
    T = dims.seq_len
    fam = dims.rules
    comps = COMPONENTS
    lat_dec = dict.fromkeys(comps, 0.0)
    lat_pre = dict.fromkeys(comps, 0.0)
    en_dec = dict.fromkeys(comps, 0.0)
    en_pre = dict.fromkeys(comps, 0.0)
    per_layer: dict[tuple, dict] = {}
    lanes, cyc = c.digital_lanes, c.t_digital_cycle_ns
    order = np.argsort(ph, kind="stable")
    bounds = np.searchsorted(ph[order], np.arange(len(phase_of) + 1))
    for p in phase_of.values():
        members = [mi for mi in range(len(geoms)) if mat_phase[mi] == p]
        g0 = geoms[members[0]]
        roles = {geoms[mi].role for mi in members}
        in_decode = fam.in_decode(g0.stage, roles)
        idx = order[bounds[p]:bounds[p + 1]]
        # stage times: per array sums, critical array
        comp_dec = dict.fromkeys(comps, 0.0)
        comp_bot = dict.fromkeys(comps, 0.0)
        busy_tot = np.zeros(0)
        fill = 0.0
        if len(idx):
            a_idx = arr[idx]
            ua, inv = np.unique(a_idx, return_inverse=True)
            busy_tot = np.bincount(inv, weights=t_total[idx], minlength=len(ua))
            for s2 in (False, True):
                sel = stage2[idx] == s2
                if not sel.any():
                    continue
                busy = np.bincount(inv[sel], weights=t_total[idx][sel], minlength=len(ua))
                crit = int(np.argmax(busy))
                fill += float(busy[crit])
                on = idx[sel][inv[sel] == crit]
                for k in ("mvm_fixed", "dac_array", "adc", "shift_add"):
                    comp_dec[k] += float(ac["t"][k][on].sum())
            bot = int(np.argmax(busy_tot))
            on = idx[inv == bot]
            for k in ("mvm_fixed", "dac_array", "adc", "shift_add"):
                comp_bot[k] = float(ac["t"][k][on].sum())
        # REQUANT (Monarch only): all members' accumulators through the vector unit; buffers read + written
        rq = 0 if linear else sum(geoms[mi].mid_len for mi in members)
        t_rq = math.ceil(rq / lanes) * cyc if rq else 0.0
        e_rq = rq * (2 * c.e_buffer_pj + c.e_digital_op_pj) / 1000.0
        e_io = (g0.in_ext + sum(geoms[mi].out_features for mi in members)) * c.e_buffer_pj / 1000.0
        comp_dec["requant_buffer"] = t_rq
        comp_dec["comm"] = c.t_comm_ns
        e_act = {k: float(ac["e"][k][idx].sum()) / 1000.0 for k in ("mvm_fixed", "dac_array", "adc", "shift_add")}
        # digital work after the phase
        # decode: the new token attends to a context of T tokens (encoder length for cross-attention)
        dt_dec, de_dec = _digital_ops(dims, roles, float(T), 1, c)
        ctx_pre = (T * (T + 1) / 2) if (fam.causal and not g0.role.startswith("cross")) else float(T * T)
        dt_pre, de_pre = _digital_ops(dims, roles, ctx_pre, T, c)
        dec_time = sum(comp_dec.values()) + sum(dt_dec.values())
        pre = {k: comp_dec[k] + (T - 1) * comp_bot.get(k, 0.0) for k in ("mvm_fixed", "dac_array", "adc",
                                                                          "shift_add")}
        if t_rq > (float(busy_tot.max()) if len(busy_tot) else 0.0):   # the vector unit is the bottleneck
            pre = {k: comp_dec[k] for k in pre}
            pre["requant_buffer"] = t_rq * T
        else:
            pre["requant_buffer"] = t_rq
        pre["comm"] = c.t_comm_ns
        pre["digital"] = sum(dt_pre.values())
        if in_decode:
            for k in comps:
                lat_dec[k] += comp_dec.get(k, 0.0)
            lat_dec["digital"] += sum(dt_dec.values())
            for k, v in e_act.items():
                en_dec[k] += v
            en_dec["requant_buffer"] += e_rq + e_io
            en_dec["digital"] += sum(de_dec.values())
        for k in comps:
            lat_pre[k] += pre.get(k, 0.0)
        for k, v in e_act.items():
            en_pre[k] += v * T
        en_pre["requant_buffer"] += (e_rq + e_io) * T
        en_pre["digital"] += sum(de_pre.values())
        row = per_layer.setdefault((g0.stage, g0.layer), {"stage": g0.stage, "layer": g0.layer,
                                                          "latency_ns": 0.0, "energy_nj": 0.0,
                                                          "prefill_latency_ns": 0.0, "arrays": 0})
        if in_decode:
            row["latency_ns"] += dec_time
            row["energy_nj"] += sum(e_act.values()) + e_rq + e_io + sum(de_dec.values())
        row["prefill_latency_ns"] += sum(pre.values())
    # arrays per layer
    arrays_by_layer: dict[tuple, set] = {}
    for t in pl.tiles:
        g = geoms[t.matmul]
        arrays_by_layer.setdefault((g.stage, g.layer), set()).add(t.array)
    rows = []
    for key in sorted(per_layer, key=lambda k: (k[0] != "encoder", k[1])):
        row = per_layer[key]
        row["arrays"] = len(arrays_by_layer.get(key, ()))
        rows.append(row)
    return CostReport(
        decode_latency_ns=sum(lat_dec.values()), decode_energy_nj=sum(en_dec.values()),
        prefill_latency_ns=sum(lat_pre.values()), prefill_energy_nj=sum(en_pre.values()), seq_len=T,
        latency_components_ns=lat_dec, energy_components_nj=en_dec, prefill_latency_components_ns=lat_pre,
        prefill_energy_components_nj=en_pre, per_layer=rows, activations=n,
        conversions_per_token=float(ac["conversions"].sum()) if n else 0.0,
        adc_bits_histogram=sched.adc_bits_histogram(),
        program_energy_nj=pl.weight_cells * c.e_program_cell_pj / 1000.0)


def cost_of_compiled(compiled, hw: HwConfig | None = None, spec=None) -> dict:
    """Return the cost report (as a dict) of a :class:`~compiler.program.CompiledModel`."""
    hw = hw or compiled.hw
    dims = ModelDims.of(spec, compiled.placement)
    return estimate(compiled.schedule, hw, dims).to_dict()
