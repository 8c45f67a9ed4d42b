"""Analytic cost model: latency and energy per token (decode) and per sequence (prefill), from the schedule.

The fast estimator, and the lower bound of the event-driven simulator (:mod:`perf`): both read the same
per-phase work (:func:`phases`: activation times, REQUANT, network transfers, digital work, KV-cache reads); this
model ignores contention between shared resources. Constants: :class:`cimisa.config.CostParams` (``hw.cost``) and
the chip (``hw.chip``); sources in ``docs/cost-model.md``, semantics in ``docs/perf.md``.

Activation (one MVM) with ``n_r`` rows, ``n_c`` columns, ``cells`` weight cells and a ``b``-bit ADC, on an array
with ``A`` ADCs, for ``I`` input bits::

    rounds   = ceil(n_c / A)
    t_adc(b) = t_adc * ((1 - ramp) * b / adc_ref_bits + ramp * 2**(b - adc_ref_bits))   # SAR .. ramp ADC
    time     = t_mvm_fixed + I * (t_array_read + rounds * (t_adc(b) + t_shift_add))
    energy   = e_mvm_fixed + I * (n_r * e_row_read + cells * e_cell_read
                                  + n_c * (compiler.components.adc_energy_pj(b) + e_shift_add))

Phases: matmuls that read the same input (one ``input_group`` of one layer), in model order. Per token a phase
is the chain stage 1 (``T1`` = the busiest array's summed activation times) -> REQUANT (``ceil(count /
digital_lanes)`` cycles) -> shuffle to the stage-2 tiles -> stage 2 (``T2``) -> transfer to the next phase's
tiles (``t_comm`` on the ``ideal`` network) -> the digital work after the phase (attention with its KV-cache read,
norms, activation). Decode: one vector through the phases :meth:`compiler.families.Family.in_decode` names, with
a context of ``seq_len`` tokens. Prefill of ``T`` tokens: :func:`prefill_bound`, a flow-shop lower bound.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from cimisa.config import HwConfig
from compiler.components import adc_energy_pj
from compiler.families import Family, config_int, generic_family
from compiler.families import family as family_rules
from compiler.place import Placement
from compiler.schedule import Schedule

__all__ = ["ModelDims", "CostReport", "Phase", "activation_costs", "digital_ops", "kv_memory", "attention_cost",
           "transfer", "phases", "prefill_bound", "estimate", "cost_of_compiled", "COMPONENTS", "ACT_KEYS"]

#: Latency/energy components, in report order.
COMPONENTS = ("mvm_fixed", "dac_array", "adc", "shift_add", "requant_buffer", "digital", "comm", "memory")
#: The components of one analog activation.
ACT_KEYS = ("mvm_fixed", "dac_array", "adc", "shift_add")
#: Roles after which attention runs; the roles whose attention reads the encoder's K/V (all of its tokens).
ATTN_ROLES = frozenset({"q", "qkv", "cross_q"})


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
        "adc": ib * nc * np.asarray(adc_energy_pj(bits, hw), dtype=np.float64),
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


def digital_ops(dims: ModelDims, roles, ctx: float, hw: HwConfig) -> dict[str, tuple[float, float]]:
    """Return ``{kind: (time ns, energy nJ)}`` of the digital work of one token after a phase with ``roles``.

    ``attention`` (after Q/K/V, fused QKV or cross-Q: ``2 * ctx * d`` multiply-adds and ``3 * ctx * heads`` softmax
    operations on one attention unit of ``chip.attention_lanes`` lanes; its KV-cache read is
    :func:`attention_cost`'s), ``add_norm`` (after O, cross-O, FFN-down), ``activation`` (after FFN-up/gate).
    """
    c = hw.cost
    d, eop = dims.d_model, c.e_digital_op_pj
    out: dict[str, tuple[float, float]] = {}
    if roles & ATTN_ROLES:
        ops = 2 * ctx * d + 3 * ctx * dims.heads
        out["attention"] = (math.ceil(ops / hw.chip.attention_lanes) * c.t_digital_cycle_ns, ops * eop / 1000.0)
    if roles & {"o", "cross_o", "ffn_down"}:
        out["add_norm"] = (c.t_add_ns + c.t_layernorm_ns, d * 6 * eop / 1000.0)   # residual add + norm (~5 ops)
    if roles & {"ffn_up", "ffn_gate"}:
        out["activation"] = (c.t_activation_ns, d * 4 * 4 * eop / 1000.0)       # ~4 ops per hidden element
    return out


def kv_memory(hw: HwConfig, dims: ModelDims, attn_layers: int, ctx_max: int) -> tuple[str, float, float]:
    """Where the KV cache lives: ``(memory, bytes per ns, pJ per byte)``; SRAM if ``attn_layers`` caches of
    ``2 * ctx_max * d_model`` bytes (8-bit K and V, as 3D-SiM) fit ``chip.sram_kib``, else DRAM."""
    ch, c = hw.chip, hw.cost
    if attn_layers * 2 * ctx_max * dims.d_model <= ch.sram_kib * 1024:
        return "sram", ch.sram_bytes_per_ns, c.e_sram_pj_per_byte
    return "dram", ch.dram_bytes_per_ns, c.e_dram_pj_per_byte


def attention_cost(compute_ns: float, ctx: float, dims: ModelDims, mem: tuple[str, float, float]
                   ) -> tuple[float, float, float]:
    """``(time ns, read time ns, read energy nJ)`` of one attention: the K/V of ``ctx`` tokens (``2 * ctx *
    d_model`` bytes) stream from ``mem`` while the unit computes, so the time is the larger of the two."""
    nbytes = 2.0 * ctx * dims.d_model
    read = nbytes / mem[1]
    return max(compute_ns, read), read, nbytes * mem[2] / 1000.0


def _positions(tiles: np.ndarray, hw: HwConfig) -> np.ndarray:
    cols = hw.chip.grid(hw.n_arrays)[1]
    return np.stack([tiles // cols, tiles % cols], axis=1)


def _hops(src: np.ndarray, dst: np.ndarray, hw: HwConfig) -> np.ndarray:
    """Hops between every pair of ``src`` and ``dst`` tiles (a matrix)."""
    topo = hw.chip.topology
    if topo == "bus":
        return (src[:, None] != dst[None, :]).astype(np.float64)
    if topo == "ring":
        n = hw.n_tiles
        d = np.abs(src[:, None] - dst[None, :])
        return np.minimum(d, n - d).astype(np.float64)
    ps, pd = _positions(src, hw), _positions(dst, hw)            # mesh, XY routing: Manhattan distance
    return (np.abs(ps[:, None, 0] - pd[None, :, 0]) + np.abs(ps[:, None, 1] - pd[None, :, 1])).astype(np.float64)


def transfer(src_tiles: np.ndarray, dst_tiles: np.ndarray, nbytes: float, hw: HwConfig) -> tuple[float, float]:
    """``(time ns, energy nJ)`` of moving ``nbytes`` from the ``src_tiles`` to the ``dst_tiles`` without contention.

    ``ideal``: ``cost.t_comm_ns``, no energy. Otherwise the data leave the sources evenly and reach the
    destinations evenly: time = the farthest pair's hops * ``hop_latency_ns`` + the busiest endpoint link's bytes
    (``nbytes / min(sources, destinations)``; all of them on a ``bus``) / ``link_bytes_per_ns``; energy = bits *
    mean hops * ``cost.e_link_pj_per_bit_hop``. Data staying on one tile cost nothing.
    """
    ch = hw.chip
    if ch.topology == "ideal":
        return hw.cost.t_comm_ns, 0.0
    src, dst = np.unique(src_tiles), np.unique(dst_tiles)
    if not len(src) or not len(dst) or nbytes <= 0:
        return 0.0, 0.0
    rng = np.random.default_rng(0)                       # large sets: hops of a fixed sample of each side
    s = src if len(src) <= 512 else rng.choice(src, 512, replace=False)
    d = dst if len(dst) <= 512 else rng.choice(dst, 512, replace=False)
    h = _hops(s, d, hw)
    if h.max() == 0:
        return 0.0, 0.0
    busiest = nbytes if ch.topology == "bus" else nbytes / min(len(src), len(dst))
    return (float(h.max()) * ch.hop_latency_ns + busiest / ch.link_bytes_per_ns,
            nbytes * 8 * float(h.mean()) * hw.cost.e_link_pj_per_bit_hop / 1000.0)


@dataclass(frozen=True, eq=False)
class Phase:
    """The work of one token in one phase (see the module docstring); times in ns, energies in nJ."""

    index: int
    stage: str
    layer: int
    roles: frozenset
    in_decode: bool
    epoch: int
    matmuls: tuple
    arrays: tuple          # logical arrays of stage 1 and of stage 2 (int64 vectors; stage 2 empty for Linear)
    busy: tuple            # per-token busy time of each of those arrays
    crit: tuple            # time components of the busiest array of each stage
    energy: dict           # analog activation energy by ACT_KEYS, and requant_buffer
    rq_ns: float           # REQUANT of the stage-1 accumulators on one digital unit
    shuffle: tuple         # (ns, nJ) stage-1 tiles -> stage-2 tiles (0 on the ideal network)
    comm: tuple            # (ns, nJ) the phase's output -> the next phase's tiles
    mid_bytes: int
    out_bytes: int

    @property
    def stage_ns(self) -> tuple[float, float]:
        """Time of stage 1 and stage 2 without contention: the busiest array of each."""
        return tuple(float(b.max()) if len(b) else 0.0 for b in self.busy)

    @property
    def attention(self) -> bool:
        return bool(self.roles & ATTN_ROLES)


def phases(sched: Schedule, hw: HwConfig, dims: ModelDims, chipmap=None) -> list[Phase]:
    """The :class:`Phase` list of a schedule, in model order. ``chipmap`` (a :class:`compiler.chipmap.ChipMap`,
    identity when None) places the logical arrays on tiles; ``hw`` is the chip the work runs on."""
    pl = sched.placement
    geoms, c = pl.matmuls, hw.cost
    ac = activation_costs(sched, hw)
    acts = sched.activations
    n = len(acts)
    t_total = sum(ac["t"].values()) if n else np.zeros(0)
    arr = np.fromiter((a.array for a in acts), dtype=np.int64, count=n)
    stage2 = np.fromiter((a.factor == "L" for a in acts), dtype=bool, count=n)
    owner = np.fromiter((a.matmul for a in acts), dtype=np.int64, count=n)
    phase_of: dict[tuple, int] = {}
    mat_phase = np.zeros(len(geoms), dtype=np.int64)
    for mi, g in enumerate(geoms):
        mat_phase[mi] = phase_of.setdefault((g.input_group, g.stage, g.layer), len(phase_of))
    ph = mat_phase[owner] if n else np.zeros(0, dtype=np.int64)
    order = np.argsort(ph, kind="stable")
    bounds = np.searchsorted(ph[order], np.arange(len(phase_of) + 1))
    members_of: dict[int, list[int]] = {}
    for mi in range(len(geoms)):
        members_of.setdefault(int(mat_phase[mi]), []).append(mi)
    tiles = (np.arange(pl.n_arrays, dtype=np.int64) // hw.chip.arrays_per_tile if chipmap is None
             else chipmap.tiles_of())
    epoch = chipmap.epoch_of_matmul() if chipmap is not None else {}
    fam = dims.rules
    raw = []
    for p in range(len(phase_of)):
        members = members_of[p]
        g0 = geoms[members[0]]
        roles = frozenset(geoms[mi].role for mi in members)
        idx = order[bounds[p]:bounds[p + 1]]
        arrays, busy, crit = [], [], []
        for s2 in (False, True):
            sel = idx[stage2[idx] == s2]
            ua, inv = np.unique(arr[sel], return_inverse=True)
            b = np.bincount(inv, weights=t_total[sel], minlength=len(ua)) if len(sel) else np.zeros(0)
            on = sel[inv == int(np.argmax(b))] if len(b) else sel
            arrays.append(ua)
            busy.append(b)
            crit.append({k: float(ac["t"][k][on].sum()) for k in ACT_KEYS})
        rq = 0 if pl.strategy == "linear" else sum(geoms[mi].mid_len for mi in members)
        out = sum(geoms[mi].out_features for mi in members)
        energy = {k: float(ac["e"][k][idx].sum()) / 1000.0 for k in ACT_KEYS}
        energy["requant_buffer"] = (rq * (2 * c.e_buffer_pj + c.e_digital_op_pj)
                                    + (g0.in_ext + out) * c.e_buffer_pj) / 1000.0
        rq_ns = math.ceil(rq / c.digital_lanes) * c.t_digital_cycle_ns if rq else 0.0
        raw.append((p, g0, roles, fam.in_decode(g0.stage, roles), epoch.get(members[0], 0), tuple(members),
                    tuple(arrays), tuple(busy), tuple(crit), energy, rq_ns, rq, out))
    result = []
    for i, r in enumerate(raw):
        arrays = r[6]
        first, last = tiles[arrays[0]], tiles[arrays[1]] if len(arrays[1]) else tiles[arrays[0]]
        nxt = raw[i + 1][6][0] if i + 1 < len(raw) else arrays[1] if len(arrays[1]) else arrays[0]
        shuffle = transfer(first, last, r[11], hw) if len(arrays[1]) and hw.chip.topology != "ideal" else (0.0, 0.0)
        result.append(Phase(r[0], r[1].stage, r[1].layer, r[2], r[3], r[4], r[5], arrays, r[7], r[8], r[9], r[10],
                            shuffle, transfer(last, tiles[nxt], r[12], hw), r[11], r[12]))
    return result


def _ctx(fam: Family, ph: Phase, T: int, t: np.ndarray) -> np.ndarray:
    """Context of token(s) ``t`` attending after phase ``ph`` in a prefill of ``T`` tokens."""
    causal = fam.causal and "cross_q" not in ph.roles
    return (t + 1).astype(np.float64) if causal else np.full(len(t), float(T))


def _barrier(fam: Family, ph: Phase) -> bool:
    """Whether the attention after ``ph`` needs the K/V of every token of the sequence (a pipeline barrier)."""
    return ph.attention and (not fam.causal or "cross_q" in ph.roles)


def prefill_bound(ps: list[Phase], hw: HwConfig, dims: ModelDims, T: int, tiles: np.ndarray | None = None) -> float:
    """Lower bound of the time to prefill ``T`` tokens through the phases ``ps`` (any schedule of them).

    Tokens flow through the chain of steps of every phase (a flow shop). Bidirectional and cross attention need
    the K/V of all tokens: the chain splits there into segments run one after the other. Per segment the time is
    at least the last token's chain, and, for every resource ``r`` of ``k`` servers doing ``w`` per token (an
    array, a tile's ``mvms_per_tile`` ports, the digital and the attention units, the KV-cache memory port),
    ``head + T * w / k + tail``
    (``head``/``tail``: the shortest chain before its first / after its last use). With one resource per step
    that is the flow-shop makespan ``sum(p) + (T - 1) * max(p)``.
    """
    fam, ch = dims.rules, hw.chip
    n_attn = sum(p.attention for p in ps)
    mem = kv_memory(hw, dims, n_attn, T)
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
        ctx = _ctx(fam, ph, T, tok)
        for kind, (t, _) in digital_ops(dims, ph.roles, 1.0, hw).items():
            if kind == "attention":
                if _barrier(fam, ph):
                    close()
                xs, counts = np.unique(ctx, return_counts=True)
                tr = np.array([attention_cost(digital_ops(dims, ph.roles, x, hw)["attention"][0], x, dims,
                                              mem)[:2] for x in xs.tolist()])
                seg.append((float(tr[:, 0].min()), float(tr[:, 0].max()),
                            [("attention", ch.attention_units, None, float((tr[:, 0] * counts).sum()) / T),
                             ("memory", 1, None, float((tr[:, 1] * counts).sum()) / T)]))
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

    Decode: one token through the decode phases with a context of ``dims.seq_len``. Prefill:
    :func:`prefill_bound` of ``dims.seq_len`` tokens; its components are the one-token chain's, scaled to it.
    """
    pl = sched.placement
    ps = phases(sched, hw, dims, chipmap)
    T = dims.seq_len
    fam = dims.rules
    tiles = (np.arange(pl.n_arrays, dtype=np.int64) // hw.chip.arrays_per_tile if chipmap is None
             else chipmap.tiles_of())
    mem_dec = kv_memory(hw, dims, sum(p.attention for p in ps if p.in_decode), T)
    mem_pre = kv_memory(hw, dims, sum(p.attention for p in ps), T)
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
        ctx, counts = np.unique(_ctx(fam, ph, T, tok), return_counts=True)
        for x, n in zip(ctx.tolist(), counts.tolist()):
            lat_p, en_p = _decode_token(ph, dims, hw, x, mem_pre)
            for k in COMPONENTS:
                en_pre[k] += en_p[k] * n
        lat_p, _ = _decode_token(ph, dims, hw, float(ctx.max()), mem_pre)
        for k in COMPONENTS:
            chain[k] += lat_p[k]
        row["prefill_latency_ns"] += sum(lat_p.values())
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
        program_energy_nj=pl.weight_cells * hw.cost.e_program_cell_pj / 1000.0)


def cost_of_compiled(compiled, hw: HwConfig | None = None, spec=None) -> dict:
    """Return the cost report (as a dict) of a :class:`~compiler.program.CompiledModel`."""
    hw = hw or compiled.hw
    dims = ModelDims.of(spec, compiled.placement)
    return estimate(compiled.schedule, hw, dims).to_dict()
