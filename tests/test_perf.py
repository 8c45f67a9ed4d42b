"""perf.simulate against the analytic model (compiler.cost.estimate): equal without contention, never faster.

Random transformer-shaped models (tiny Monarch matmuls), strategies and chips. Each check has a mutant that it
catches (a simulator without the tile's port limit, without the attention barrier, without the chain order).
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import perf
import perf.engine
import perf.workload
from cimisa.config import HwConfig
from cimisa.errors import ModelError
from compiler.chipmap import ChipMap
from compiler.cost import ModelDims, estimate
from compiler.geometry import MatmulGeom
from compiler.place import place
from compiler.schedule import schedule
from mapper.d2s.monarch import monarch_shape

ROLES = (("q", "attn_in", 1), ("k", "attn_in", 1), ("v", "attn_in", 1), ("o", "attn_ctx", 1),
         ("ffn_up", "ffn_in", 2), ("ffn_down", "ffn_hidden", 2))


def model(layers: int, d: int, k: int, stage: str = "encoder") -> tuple[MatmulGeom, ...]:
    """A BERT-shaped stack of ``layers`` layers of width ``d`` (FFN 2d) with ``k`` Monarch blocks."""
    out = []
    for layer in range(layers):
        for role, group, mult in ROLES:
            o, i = (d * mult, d) if role != "ffn_down" else (d, 2 * d)
            s = monarch_shape(o, i, k)
            out.append(MatmulGeom(f"{stage}.{layer}.{role}", layer, role, stage, f"{stage}.{layer}.{group}", o, i,
                                  k, s.r_shape, s.l_shape))
    return tuple(out)


def chip(apt: int = 1, mvms: int = 1, topology: str = "ideal", units: int = 65536, **chip_kw) -> HwConfig:
    base = HwConfig(name="perf-test", rows=32, cols=32, n_arrays=3072, weight_bits=4, input_bits=4, adc_bits=5,
                    adcs_per_array=4, in_depth=4096, out_depth=4096, rows_per_cycle=8)
    ch = dataclasses.replace(base.chip, arrays_per_tile=apt, mvms_per_tile=mvms, topology=topology,
                             digital_units=units, attention_units=units, attention_lanes=64, **chip_kw)
    return base.replace(chip=ch)


def build(geoms, hw, strategy):
    sc = schedule(place(geoms, hw, strategy), hw, "paper")
    return sc, ChipMap.identity(sc.placement, hw)


configs = st.fixed_dictionaries({
    "layers": st.integers(1, 2), "d": st.sampled_from([16, 32, 48]), "k": st.sampled_from([2, 4]),
    "strategy": st.sampled_from(["linear", "sparse", "dense", "auto"]), "family": st.sampled_from(["bert", "gpt2"]),
    "seq": st.integers(1, 12)})
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _setup(c, hw):
    stage = "encoder" if c["family"] == "bert" else "decoder"
    sc, cm = build(model(c["layers"], c["d"], c["k"], stage), hw, c["strategy"])
    return sc, cm, ModelDims(c["family"], c["d"], 2, c["seq"])


def dedicated_tiles(cm, sched) -> bool:
    """Every tile serves one stage of one phase (the prefill pipeline condition)."""
    from compiler.phases import phases
    seen: dict = {}
    tiles = cm.tiles_of()
    for ph in phases(sched, cm.hw, ModelDims("bert", 16, 2, 1), cm):
        for si, a in enumerate(ph.arrays):
            for t in set(tiles[a].tolist()):
                if seen.setdefault(t, (ph.index, si)) != (ph.index, si):
                    return False
    return True


@FAST
@given(configs, st.sampled_from([(1, 1), (2, 2), (4, 4), (3, 3)]))
def test_decode_equals_analytic_without_contention(c, tile):
    hw = chip(*tile)
    sc, cm, dims = _setup(c, hw)
    sim = perf.simulate(sc, cm.hw, dims, chipmap=cm, decode_tokens=1)
    an = estimate(sc, cm.hw, dims, cm)
    assert sim.decode_latency_ns == pytest.approx(an.decode_latency_ns, rel=1e-9, abs=1e-9)
    assert sim.summary()["decode_energy_nj"] == pytest.approx(an.decode_energy_nj, rel=1e-9, abs=1e-9)


@FAST
@given(configs.filter(lambda c: c["family"] == "bert"), st.sampled_from([(1, 1), (2, 2)]))
def test_prefill_equals_flow_shop_bound_under_pipeline_conditions(c, tile):
    """Bidirectional attention, dedicated tiles, enough units and memory bandwidth, ideal network: the simulated
    prefill is the flow-shop makespan, which is the analytic bound."""
    hw = chip(*tile, sram_bytes_per_ns=1e12)
    sc, cm, dims = _setup(c, hw)
    if not dedicated_tiles(cm, sc):
        return
    sim = perf.simulate(sc, cm.hw, dims, chipmap=cm)
    assert sim.prefill_latency_ns == pytest.approx(estimate(sc, cm.hw, dims, cm).prefill_latency_ns, rel=1e-9)


@FAST
@given(configs, st.sampled_from([(1, 1), (2, 1), (4, 1), (4, 2), (3, 3)]),
       st.sampled_from(["ideal", "mesh", "ring", "bus"]), st.integers(1, 3))
def test_never_faster_than_the_analytic_bound(c, tile, topology, units):
    hw = chip(*tile, topology=topology, units=units)
    sc, cm, dims = _setup(c, hw)
    sim = perf.simulate(sc, cm.hw, dims, chipmap=cm, decode_tokens=2)
    an = estimate(sc, cm.hw, dims, cm)
    assert sim.prefill_latency_ns >= an.prefill_latency_ns * (1 - 1e-9)
    assert min(sim.decode_token_ns) >= an.decode_latency_ns * (1 - 1e-9)
    # the critical path starts at 0 and its intervals (each up to its successor's start) add up to the finish
    assert sim.critical_path[0]["start_ns"] == 0
    assert sum(sim.critical_by_kind.values()) == pytest.approx(sim.elapsed_ns, rel=1e-9)


def _bert(strategy="linear", apt=1, mvms=1, seq=12, **kw):
    hw = chip(apt, mvms, **kw)
    sc, cm = build(model(2, 32, 4), hw, strategy)
    return sc, cm, ModelDims("bert", 32, 2, seq)


def test_port_limit_mutant_is_caught(monkeypatch):
    sc, cm, dims = _bert(apt=4, mvms=1)
    bound = estimate(sc, cm.hw, dims, cm).prefill_latency_ns
    assert perf.simulate(sc, cm.hw, dims, chipmap=cm).prefill_latency_ns >= bound
    real = perf.workload.tile_spans
    monkeypatch.setattr(perf.workload, "tile_spans", lambda t, b, ports: real(t, b, 1 << 20))
    assert perf.simulate(sc, cm.hw, dims, chipmap=cm).prefill_latency_ns < bound * (1 - 1e-6)


def test_barrier_mutant_is_caught(monkeypatch):
    sc, cm, dims = _bert(sram_bytes_per_ns=1e12)
    bound = estimate(sc, cm.hw, dims, cm).prefill_latency_ns
    assert perf.simulate(sc, cm.hw, dims, chipmap=cm).prefill_latency_ns == pytest.approx(bound, rel=1e-9)
    real = perf.workload.Step
    monkeypatch.setattr(perf.workload, "Step", lambda *a, **k: real(*a, **{**k, "barrier": False}))
    assert perf.simulate(sc, cm.hw, dims, chipmap=cm).prefill_latency_ns < bound * (1 - 1e-6)


def test_chain_order_mutant_is_caught(monkeypatch):
    sc, cm, dims = _bert()
    an = estimate(sc, cm.hw, dims, cm).decode_latency_ns
    real = perf.engine.Engine.run
    monkeypatch.setattr(perf.engine.Engine, "run", lambda self, st, ready, token, pred, ctx, mem:
                        real(self, st, ready * 0.5, token, pred, ctx, mem))
    assert perf.simulate(sc, cm.hw, dims, chipmap=cm, decode_tokens=1).decode_latency_ns < an * (1 - 1e-6)


def test_contention_slows_and_reports():
    """Fewer ports, units and a bus make it slower; the report holds every documented figure."""
    sc, cm, dims = _bert("sparse", apt=4, mvms=4)
    free = perf.simulate(sc, cm.hw, dims, chipmap=cm, decode_tokens=3, trace=True)
    sc2, cm2, _ = _bert("sparse", apt=4, mvms=1, topology="bus", units=1)
    busy = perf.simulate(sc2, cm2.hw, dims, chipmap=cm2, decode_tokens=3)
    assert busy.prefill_latency_ns > free.prefill_latency_ns
    assert busy.decode_latency_ns > free.decode_latency_ns
    s = free.summary()
    for key in ("prefill_latency_ns", "ttft_ns", "decode_latency_ns", "decode_tokens_per_s", "energy_per_token_nj",
                "dynamic_energy_nj", "static_energy_nj", "area_mm2"):
        assert s[key] > 0, key
    d = free.to_dict()
    assert d["critical_path"] and d["critical_path"][-1]["end_ns"] == pytest.approx(free.elapsed_ns, rel=1e-5)
    util = d["utilisation"]
    assert all(0 <= f <= 1 for k, v in util.items() if k != "bin_ns" for f in v)
    assert {"tile", "attention"} <= set(util)
    assert free.trace and {iv["token"] for iv in free.trace} == {0}
    assert all(iv["end_ns"] >= iv["start_ns"] for iv in free.trace)
    # causal decode: a longer context never makes a token faster
    assert list(free.decode_token_ns) == sorted(free.decode_token_ns) or dims.rules.causal is False


def test_static_energy_is_power_times_time():
    sc, cm, dims = _bert()
    r = perf.simulate(sc, cm.hw, dims, chipmap=cm, decode_tokens=2)
    s = r.summary()
    assert s["static_energy_nj"] == pytest.approx(s["static_power_mw"] * r.elapsed_ns / 1000.0)
    assert np.isclose(s["area_mm2"], sum(r.area_breakdown.values()))


@pytest.mark.parametrize("kw", [{"prefill_tokens": -1}, {"decode_tokens": 1.5}, {"decode_tokens": True}])
def test_bad_token_counts_are_one_error(kw):
    sc, cm, dims = _bert()
    with pytest.raises(ModelError, match="tokens must be an integer"):
        perf.simulate(sc, cm.hw, dims, chipmap=cm, **kw)


def bart(layers: int, d: int, k: int) -> tuple[MatmulGeom, ...]:
    """A BART-shaped encoder-decoder: ``layers`` encoder layers, then ``layers`` decoder layers with cross
    attention (cross K/V read the encoder's output), in the order the kit lists a checkpoint's matmuls."""
    out = list(model(layers, d, k, "encoder"))
    for layer in range(layers):
        for role, group in (("q", "attn_in"), ("k", "attn_in"), ("v", "attn_in"), ("o", "attn_ctx"),
                            ("cross_q", "cross_in"), ("cross_k", None), ("cross_v", None), ("cross_o", "cross_ctx"),
                            ("ffn_up", "ffn_in"), ("ffn_down", "ffn_hidden")):
            o, i = (2 * d, d) if role == "ffn_up" else (d, 2 * d) if role == "ffn_down" else (d, d)
            s = monarch_shape(o, i, k)
            grp = "@encoder.output" if group is None else f"decoder.{layer}.{group}"
            out.append(MatmulGeom(f"decoder.{layer}.{role}", layer, role, "decoder", grp, o, i, k, s.r_shape,
                                  s.l_shape))
    return tuple(out)


def test_encoder_decoder_attention_kinds_and_order():
    """BART: the encoder attends both ways (barriers) though the decoder is causal; the cross K/V are made right
    after the encoder (before the cross attention that reads them); only the first cross attention waits for
    every token."""
    from compiler.phases import phases
    hw = chip()
    sc, cm = build(bart(2, 32, 4), hw, "sparse")
    ps = phases(sc, hw, ModelDims("bart", 32, 2, 8), cm)
    att = [p for p in ps if p.attention]
    enc = [p for p in att if p.stage == "encoder"]
    assert enc and all(p.barrier and not p.causal for p in enc)
    dec_self = [p for p in att if p.stage == "decoder" and "q" in p.roles]
    assert dec_self and all(p.causal and not p.barrier for p in dec_self)
    cross = [p for p in att if "cross_q" in p.roles]
    assert [p.barrier for p in cross] == [True] + [False] * (len(cross) - 1)
    kv = [i for i, p in enumerate(ps) if p.roles <= {"cross_k", "cross_v"}]
    first_dec = min(i for i, p in enumerate(ps) if p.stage == "decoder" and not p.roles <= {"cross_k", "cross_v"})
    last_enc = max(i for i, p in enumerate(ps) if p.stage == "encoder")
    assert kv == list(range(last_enc + 1, first_dec))


@FAST
@given(st.integers(1, 2), st.sampled_from(["linear", "sparse", "auto"]), st.integers(1, 8),
       st.sampled_from([(1, 1), (4, 1), (2, 2)]), st.integers(1, 2))
def test_encoder_decoder_never_faster_than_the_bound(layers, strategy, seq, tile, units):
    hw = chip(*tile, units=units, sram_kib=1)
    sc, cm = build(bart(layers, 32, 4), hw, strategy)
    dims = ModelDims("bart", 32, 2, seq)
    sim = perf.simulate(sc, cm.hw, dims, chipmap=cm, decode_tokens=2)
    an = estimate(sc, cm.hw, dims, cm)
    assert sim.prefill_latency_ns >= an.prefill_latency_ns * (1 - 1e-9)
    assert min(sim.decode_token_ns) >= an.decode_latency_ns * (1 - 1e-9)


def test_prefill_holds_only_the_kv_of_the_layers_in_flight():
    """Bidirectional layers: a layer's K/V live from its Q/K/V matmuls to its attention, so at most two layers'
    caches (2 * T * d bytes each, here 1 KiB) are on chip at once: SRAM for two is as good as unlimited SRAM in
    prefill (before: every layer's cache had to fit, or all of them were read from DRAM), one is not. Decode
    needs the whole cache: with two layers' room it reads DRAM, and the prefill writes every K/V there once."""
    T, d, layers = 16, 32, 3
    dims = ModelDims("bert", d, 2, T)
    runs = {}
    for kib in (1, 2, 1 << 20):
        hw = chip(sram_kib=kib)
        sc, cm = build(model(layers, d, 4), hw, "sparse")
        runs[kib] = perf.simulate(sc, cm.hw, dims, chipmap=cm, decode_tokens=1)
        assert runs[kib].prefill_latency_ns >= estimate(sc, cm.hw, dims, cm).prefill_latency_ns * (1 - 1e-9)
    two, big, one = runs[2], runs[1 << 20], runs[1]
    assert two.prefill_latency_ns == pytest.approx(big.prefill_latency_ns, rel=1e-12)
    assert one.prefill_latency_ns > big.prefill_latency_ns * 1.01
    assert two.decode_latency_ns > big.decode_latency_ns * 1.01
    c = chip().cost
    written = layers * 2 * T * d * c.e_dram_pj_per_byte / 1000.0
    assert two.prefill_energy["memory"] - big.prefill_energy["memory"] == pytest.approx(written, rel=1e-9)


def test_a_request_of_no_duration_never_waits():
    """Linear has no REQUANT (0 ns): it must not wait for a busy digital unit (it did, by the unit's backlog)."""
    from perf.resources import Pool
    pool = Pool(1)
    assert pool.reserve(0.0, 10.0, 0) == (0.0, -1)
    assert pool.reserve(5.0, 0.0, 1) == (5.0, -1)
    assert pool.reserve(5.0, 1.0, 2) == (10.0, 0)


def test_energy_per_token_of_an_encoder_is_per_sequence_token():
    """BERT's one-vector 'decode' is a latency figure; its energy per token is the sequence's over its tokens."""
    from cimisa.config import load_hw
    from compiler.geometry import geometry
    from mapper.models import load_model_spec
    spec = load_model_spec("tiny-bert")
    hw = load_hw("fpga-tiny")
    sc = schedule(place(geometry(spec, 8), hw, "sparse"), hw, "paper")
    dims = ModelDims.of(spec, seq_len=8)
    rep = perf.simulate(sc, hw, dims, prefill_tokens=8, decode_tokens=1)
    s = rep.summary()
    assert s["energy_basis"] == "prefill" and s["decode_tokens_per_s"] > 0
    want = (s["prefill_energy_nj"] + rep.static_power_mw * rep.prefill_latency_ns / 1000.0) / 8
    assert s["energy_per_token_nj"] == pytest.approx(want, rel=1e-12)


def test_weight_reload_programs_cells_and_reads_weights():
    """Reloading a row programs its cells (6 per 4-bit weight as 1-bit differential pairs) and reads its weights
    from DRAM (4 bits each, as WRITE_W carries them): 6x the programming energy, the same DRAM bytes."""
    from compiler.phases import phases
    g = model(1, 32, 2)
    out = {}
    for name, hw in (("twos", chip()), ("sliced", chip().replace(cols=192, cell_bits=1,
                                                                  weight_encoding="differential"))):
        sc, cm = build(g, hw, "sparse")
        cm = dataclasses.replace(cm, wrap_rows=32)
        ps = phases(sc, hw, ModelDims("bert", 32, 2, 4), cm)
        out[name] = perf._reloader(cm, hw, cm.tiles_of(), ps)(-1)[1]
    c = chip().cost
    assert out["twos"]["reload"] == pytest.approx(32 * 32 * c.e_program_cell_pj / 1000)
    assert out["sliced"]["reload"] == pytest.approx(32 * 192 * c.e_program_cell_pj / 1000)
    assert out["sliced"]["memory"] == pytest.approx(out["twos"]["memory"]) == pytest.approx(
        32 * 32 * 4 / 8 * c.e_dram_pj_per_byte / 1000)
