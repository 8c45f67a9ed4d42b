"""Cost model: the per-activation formulas, presets, and auto against dense/sparse at equal array count."""

import dataclasses
import math

import numpy as np
import pytest

from cimisa.config import CostParams, load_hw
from cimisa.errors import ConfigError
from compiler.cost import ModelDims, activation_costs, estimate
from compiler.place import MatmulGeom, geometry, place
from compiler.schedule import schedule
from mapper.d2s.monarch import monarch_shape
from mapper.models import load_model_spec

HW = load_hw("paper-256")


def one_square():
    s = monarch_shape(1024, 1024, 32)
    return (MatmulGeom("w", 0, "q", "encoder", "g", 1024, 1024, 32, s.r_shape, s.l_shape),)


def test_activation_formula_and_adc_sharing():
    sc = schedule(place(one_square(), HW, "sparse"), HW, "paper")
    a = sc.activations[0]
    c = HW.cost
    ac = activation_costs(sc, HW)
    rounds = math.ceil(a.ncols / HW.adcs_per_array)
    assert ac["t"]["adc"][0] == pytest.approx(HW.input_bits * rounds * c.t_adc_ns * a.adc_bits / c.adc_ref_bits)
    walden = HW.replace(tech=dataclasses.replace(HW.tech, adc_model="walden"))
    # the Walden option gives exactly the kit's figures from before the survey model
    assert activation_costs(sc, walden)["e"]["adc"][0] == (HW.input_bits * a.ncols * c.adc_fom_fj_per_step
                                                           * 2 ** a.adc_bits / 1000)
    more = HW.replace(adcs_per_array=32)
    assert activation_costs(sc, more)["t"]["adc"][0] == pytest.approx(ac["t"]["adc"][0] / 4)
    ramp = HW.replace(cost={"adc_ramp_fraction": 1.0})
    assert activation_costs(sc, ramp)["t"]["adc"][0] == pytest.approx(
        HW.input_bits * rounds * c.t_adc_ns * 2.0 ** (a.adc_bits - c.adc_ref_bits))


def test_paper_preset():
    p = CostParams.preset("paper")
    assert (p.t_mvm_fixed_ns, p.e_mvm_fixed_nj, p.t_layernorm_ns, p.t_activation_ns, p.t_add_ns, p.t_comm_ns) == \
        (100.0, 10.0, 50.0, 10.0, 10.0, 10.0)
    hw = HW.replace(cost=p)
    sc = schedule(place(one_square(), hw, "linear"), hw, "paper")
    ac = activation_costs(sc, hw)
    t = sum(v for v in ac["t"].values())
    assert set(t.round(6)) == {100.0}
    with pytest.raises(ConfigError):
        CostParams.preset("nope")


def test_components_add_up_and_layers():
    spec = load_model_spec("gpt2-medium")
    g = geometry(spec, 32)
    sc = schedule(place(g, HW, "auto"), HW, "paper")
    r = estimate(sc, HW, ModelDims.of(spec))
    assert sum(r.latency_components_ns.values()) == pytest.approx(r.decode_latency_ns)
    assert sum(r.energy_components_nj.values()) == pytest.approx(r.decode_energy_nj)
    assert len(r.per_layer) == 24
    assert sum(x["latency_ns"] for x in r.per_layer) == pytest.approx(r.decode_latency_ns)
    assert r.prefill_latency_ns > 100 * r.decode_latency_ns / 24
    assert r.latency_components_ns["digital"] > 0 and r.latency_components_ns["adc"] > 0


@pytest.mark.parametrize("preset", ["kit", "paper"])
def test_auto_never_slower_than_dense_or_sparse_at_equal_arrays(preset):
    hw = HW.replace(cost=CostParams.preset(preset))
    spec = load_model_spec("bert-large")
    g = geometry(spec, 32)
    dims = ModelDims.of(spec)
    for st in ("sparse", "dense"):
        ref = place(g, hw, st)
        r_ref = estimate(schedule(ref, hw, "paper"), hw, dims)
        auto = place(g, hw, "auto", arrays=ref.n_arrays, validate=False)
        r_auto = estimate(schedule(auto, hw, "paper"), hw, dims)
        assert auto.n_arrays == ref.n_arrays
        assert r_auto.decode_latency_ns <= r_ref.decode_latency_ns * (1 + 1e-9), st


def test_differential_one_bit_cells_cost_six_times_the_conversions_and_cells():
    """fpga-tiny-sliced holds fpga-tiny's 4-bit weights as 3 magnitude bits in 1-bit cells, + and - (6 cells per
    weight) and drives the same 8 bit planes: the same placement converts 6x the columns and reads 6x the cells
    per token; the paper rule's bits are the same (ceil(log2 32) = 5 for 32-row blocks)."""
    from mapper.models import load_model_spec as spec_of
    spec = spec_of("tiny-bert")
    g = geometry(spec, 8)
    dims = ModelDims.of(spec)
    ref_hw, hw = load_hw("fpga-tiny"), load_hw("fpga-tiny-sliced")
    for st in ("sparse", "auto"):
        s_ref, s = schedule(place(g, ref_hw, st), ref_hw, "paper"), schedule(place(g, hw, st), hw, "paper")
        assert s.adc_bits_histogram() == s_ref.adc_bits_histogram()
        r_ref, r = estimate(s_ref, ref_hw, dims), estimate(s, hw, dims)
        assert r.conversions_per_token == pytest.approx(6 * r_ref.conversions_per_token)
        assert r.program_energy_nj == pytest.approx(6 * r_ref.program_energy_nj)
        assert sum(a.cells for a in s.activations) == 6 * sum(a.cells for a in s_ref.activations)
        a, b = activation_costs(s_ref, ref_hw), activation_costs(s, hw)
        # rounds per bit plane: ceil(6 * n / 8) on the sliced preset's 8 ADCs instead of ceil(n / 4)
        assert (ref_hw.adcs_per_array, hw.adcs_per_array) == (4, 8)
        nc = np.array([x.ncols for x in s.activations])
        assert b["t"]["adc"] / a["t"]["adc"] == pytest.approx(np.ceil(6 * nc / 8) / np.ceil(nc / 4))


def test_drive_cycles_set_the_array_time():
    """Sign-magnitude 8-bit inputs through 4-bit DACs: 7 magnitude bits in 2 cycles, against 8 bit planes."""
    ref_hw = load_hw("fpga-tiny")
    hw = ref_hw.replace(input_encoding="sign-magnitude", dac_bits=4)
    m = monarch_shape(64, 64, 2)
    g = (MatmulGeom("w", 0, "q", "encoder", "g", 64, 64, 2, m.r_shape, m.l_shape),)
    a = activation_costs(schedule(place(g, ref_hw, "sparse"), ref_hw, "exact"), ref_hw)
    b = activation_costs(schedule(place(g, hw, "sparse"), hw, "exact"), hw)
    assert b["t"]["dac_array"] == pytest.approx(a["t"]["dac_array"] * 2 / 8)
    assert b["conversions"] == pytest.approx(a["conversions"] * 2 / 8)
