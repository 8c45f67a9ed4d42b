"""The per-phase work of a schedule: what one token costs in each phase, for both performance models.

One implementation, read by the analytic estimator (:func:`compiler.cost.estimate`) and the event-driven simulator
(:mod:`perf`): per-activation times and energies (:func:`activation_costs`, the ADC from
:mod:`compiler.components` and :func:`compiler.adc_model.adc_time_ns`), the digital work after a phase
(:func:`digital_ops`), the KV-cache reads (:func:`kv_memory`, :func:`attention_cost`; where each layer's cache
lives in prefill and in decode: :func:`prefill_kv`, :func:`decode_kv`), network transfers between tiles
(:func:`transfer`) and the :class:`Phase` list of a schedule (:func:`phases`, with each attention's kind: causal,
or a pipeline barrier). Semantics: ``docs/perf.md``; constants and their sources: ``docs/cost-model.md``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from cimisa.config import HwConfig
from compiler.adc_model import adc_time_ns
from compiler.components import adc_energy_pj, dac_energy_pj
from compiler.families import Family, config_int, generic_family
from compiler.families import family as family_rules
from compiler.place import Placement
from compiler.schedule import Schedule

__all__ = ["ModelDims", "Phase", "activation_costs", "digital_ops", "kv_memory", "attention_cost", "transfer",
           "phases", "array_tiles", "prefill_kv", "decode_kv", "segments", "memory_port", "attention_kind",
           "ACT_KEYS", "ATTN_ROLES"]

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
    """Return per-activation arrays: time components (ns), energy components (pJ) and ADC conversions.

    Through the number format (``hw.fmt``, :mod:`cimisa.formats`): an MVM runs ``fmt.digits`` drive cycles; each
    converts ``fmt.conversions(ncols)`` physical columns (``cols_per_weight`` per logical column, and the bias
    column) in ``ceil(conversions / adcs_per_array)`` rounds; each driven row costs
    :func:`compiler.components.dac_energy_pj` per cycle and each cell of the window (``Activation.cells``,
    physical) ``e_cell_read_pj``.
    """
    c = hw.cost
    fmt = hw.fmt
    acts = sched.activations
    n = len(acts)
    nr = np.fromiter((a.nrows for a in acts), dtype=np.float64, count=n)
    nc = np.fromiter((a.ncols for a in acts), dtype=np.float64, count=n)
    cells = np.fromiter((a.cells for a in acts), dtype=np.float64, count=n)
    bits = np.fromiter((a.adc_bits for a in acts), dtype=np.float64, count=n)
    cyc = fmt.digits
    conv = fmt.conversions(nc)                                    # (elementwise on the vector)
    rounds = np.ceil(conv / hw.adcs_per_array)
    t = {
        "mvm_fixed": np.full(n, c.t_mvm_fixed_ns),
        "dac_array": np.full(n, cyc * c.t_array_read_ns),
        "adc": cyc * rounds * adc_time_ns(bits, c),
        "shift_add": cyc * rounds * c.t_shift_add_ns,
    }
    e = {
        "mvm_fixed": np.full(n, c.e_mvm_fixed_nj * 1000.0),
        "dac_array": cyc * (nr * dac_energy_pj(hw) + cells * c.e_cell_read_pj),
        "adc": cyc * conv * np.asarray(adc_energy_pj(bits, hw), dtype=np.float64),
        "shift_add": cyc * conv * c.e_shift_add_pj,
    }
    return {"t": t, "e": e, "conversions": cyc * conv}


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
    return memory_port(hw, "sram" if attn_layers * 2 * ctx_max * dims.d_model <= hw.chip.sram_kib * 1024 else "dram")


def memory_port(hw: HwConfig, name: str) -> tuple[str, float, float]:
    """``(name, bytes per ns, pJ per byte)`` of the on-chip SRAM (``"sram"``) or the DRAM (``"dram"``)."""
    ch, c = hw.chip, hw.cost
    if name == "sram":
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
    causal: bool = False   # the attention after the phase reads the K/V of tokens <= t (else of every token)
    barrier: bool = False  # ... and needs every token of the sequence to have reached it (a pipeline barrier)

    @property
    def stage_ns(self) -> tuple[float, float]:
        """Time of stage 1 and stage 2 without contention: the busiest array of each."""
        return tuple(float(b.max()) if len(b) else 0.0 for b in self.busy)

    @property
    def attention(self) -> bool:
        return bool(self.roles & ATTN_ROLES)


def attention_kind(fam: Family, stage: str, roles) -> tuple[bool, bool]:
    """``(causal, bidirectional self-attention)`` of the attention after a phase of ``roles`` in ``stage``.

    Cross attention reads the encoder's K/V (every encoder token: not causal, and no barrier among the decoder's
    tokens); the encoder of an encoder-decoder attends both ways even though its decoder is causal."""
    if "cross_q" in roles:
        return False, False
    bidir = not fam.causal or (fam.decoder_reads_encoder and stage in fam.prefill_only_stages)
    return not bidir, bidir


def _phase_order(keys: list[tuple], roles: list[frozenset], fam: Family) -> list[int]:
    """Model order of the phases: the phases that only make the encoder's cross-attention K/V (prefill-only
    roles outside the prefill-only stages, e.g. BART's ``cross_k``/``cross_v``) read the encoder's output, so
    they run right after the encoder's last phase (not after the cross attention that reads their K/V)."""
    order = list(range(len(keys)))
    if not fam.prefill_only_roles:
        return order
    moved = [i for i in order if roles[i] <= fam.prefill_only_roles and keys[i][1] not in fam.prefill_only_stages]
    enc = [i for i in order if keys[i][1] in fam.prefill_only_stages]
    if not moved or not enc:
        return order
    rest = [i for i in order if i not in set(moved)]
    at = rest.index(enc[-1]) + 1
    return rest[:at] + moved + rest[at:]


def segments(ps: list[Phase]) -> tuple[list[int], list[int]]:
    """Prefill segments (between barriers): per phase, the segment of its first step and of its last step
    (a barrier attention opens a new segment, so it lies in the segment after the phase's matmuls)."""
    seg, first, last = 0, [], []
    for ph in ps:
        first.append(seg)
        seg += bool(ph.attention and ph.barrier)
        last.append(seg)
    return first, last


def prefill_kv(ps: list[Phase], hw: HwConfig, dims: ModelDims, T: int) -> tuple[dict, float]:
    """Where each attention phase's K/V lives during a prefill of ``T`` tokens, and the bytes written to DRAM.

    A layer's cache (``2 * T * d_model`` bytes) is live from the segment (:func:`segments`) whose matmuls make
    its K/V (the phase itself; for cross attention, the ``cross_k``/``cross_v`` phase of its layer) to the
    segment of its attention; only the caches live in a segment share ``chip.sram_kib``. A layer is read from
    SRAM if every segment of its live range fits, else from DRAM. Returns ``({phase index: (memory, bytes per
    ns, pJ per byte)}, DRAM bytes written)``: every layer whose cache is in DRAM in prefill, or in decode
    (:func:`decode_kv` at context ``T``; its prefill K/V are streamed there once), is written once.
    """
    first, last = segments(ps)
    maker = {(ph.stage, ph.layer): ph.index for ph in ps if ph.roles & {"cross_k", "cross_v"}}
    pos = {ph.index: i for i, ph in enumerate(ps)}
    live: dict[int, tuple[int, int]] = {}
    for i, ph in enumerate(ps):
        if ph.attention:
            src = pos.get(maker.get((ph.stage, ph.layer), -1), i) if "cross_q" in ph.roles else i
            live[ph.index] = (min(first[src], last[i]), last[i])
    per_layer = 2 * T * dims.d_model
    load = Counter(s for a, b in live.values() for s in range(a, b + 1))
    fits = {s: n * per_layer <= hw.chip.sram_kib * 1024 for s, n in load.items()}
    sram, dram = memory_port(hw, "sram"), memory_port(hw, "dram")
    mem = {p: sram if all(fits[s] for s in range(a, b + 1)) else dram for p, (a, b) in live.items()}
    dec = decode_kv(ps, hw, dims, T)
    written = sum(per_layer for p, m in mem.items()
                  if m[0] == "dram" or (dec[0] == "dram" and ps[pos[p]].in_decode))
    return mem, float(written)


def decode_kv(ps: list[Phase], hw: HwConfig, dims: ModelDims, ctx: int) -> tuple[str, float, float]:
    """Where the KV cache lives in decode: every decode attention layer's cache of ``ctx`` tokens at once
    (:func:`kv_memory`)."""
    return kv_memory(hw, dims, sum(p.attention for p in ps if p.in_decode), ctx)


def array_tiles(placement: Placement, hw: HwConfig, chipmap=None) -> np.ndarray:
    """The tile of every logical array of ``placement`` (int64 vector): ``chipmap``'s, or with none the flat
    numbering (logical == physical)."""
    if chipmap is not None:
        return chipmap.tiles_of()
    return np.arange(placement.n_arrays, dtype=np.int64) // hw.chip.arrays_per_tile


def phases(sched: Schedule, hw: HwConfig, dims: ModelDims, chipmap=None) -> list[Phase]:
    """The :class:`Phase` list of a schedule, in model order (:func:`_phase_order`). ``chipmap`` (a
    :class:`compiler.chipmap.ChipMap`, identity when None) places the logical arrays on tiles; ``hw`` is the
    chip the work runs on."""
    pl = sched.placement
    geoms, c = pl.matmuls, hw.cost
    fam = dims.rules
    ac = activation_costs(sched, hw)
    acts = sched.activations
    n = len(acts)
    t_total = sum(ac["t"].values()) if n else np.zeros(0)
    arr = np.fromiter((a.array for a in acts), dtype=np.int64, count=n)
    stage2 = np.fromiter((a.factor == "L" for a in acts), dtype=bool, count=n)
    owner = np.fromiter((a.matmul for a in acts), dtype=np.int64, count=n)
    first_of: dict[tuple, int] = {}
    roles_of: dict[tuple, set] = {}
    for g in geoms:
        key = (g.input_group, g.stage, g.layer)
        first_of.setdefault(key, len(first_of))
        roles_of.setdefault(key, set()).add(g.role)
    keys = list(first_of)
    rank = _phase_order(keys, [frozenset(roles_of[k]) for k in keys], fam)
    phase_of = {keys[j]: i for i, j in enumerate(rank)}
    mat_phase = np.zeros(len(geoms), dtype=np.int64)
    for mi, g in enumerate(geoms):
        mat_phase[mi] = phase_of[(g.input_group, g.stage, g.layer)]
    ph = mat_phase[owner] if n else np.zeros(0, dtype=np.int64)
    order = np.argsort(ph, kind="stable")
    bounds = np.searchsorted(ph[order], np.arange(len(phase_of) + 1))
    members_of: dict[int, list[int]] = {}
    for mi in range(len(geoms)):
        members_of.setdefault(int(mat_phase[mi]), []).append(mi)
    tiles = array_tiles(pl, hw, chipmap)
    epoch = chipmap.epoch_of_matmul() if chipmap is not None else {}
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
    cross_seen = False
    for i, r in enumerate(raw):
        arrays = r[6]
        first, last = tiles[arrays[0]], tiles[arrays[1]] if len(arrays[1]) else tiles[arrays[0]]
        nxt = raw[i + 1][6][0] if i + 1 < len(raw) else arrays[1] if len(arrays[1]) else arrays[0]
        shuffle = transfer(first, last, r[11], hw) if len(arrays[1]) and hw.chip.topology != "ideal" else (0.0, 0.0)
        causal, barrier = attention_kind(fam, r[1].stage, r[2]) if r[2] & ATTN_ROLES else (False, False)
        if r[2] & ATTN_ROLES and "cross_q" in r[2]:       # the first cross attention waits for the cross K/V
            barrier, cross_seen = not cross_seen, True     # of every encoder token; the later ones find them
        result.append(Phase(r[0], r[1].stage, r[1].layer, r[2], r[3], r[4], r[5], arrays, r[7], r[8], r[9], r[10],
                            shuffle, transfer(last, tiles[nxt], r[12], hw), r[11], r[12], causal, barrier))
    return result
