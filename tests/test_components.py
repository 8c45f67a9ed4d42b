"""Component models: the ADC model (survey fit, Walden option) and the chip's area and static power breakdowns."""

from dataclasses import fields

import numpy as np
import pytest

from cimisa.config import load_hw
from cimisa.errors import ConfigError
from cimisa.tech import TechParams
from compiler import adc_model as M
from compiler import components as C
from compiler.cost import activation_costs
from compiler.geometry import monarch_shape
from compiler.place import MatmulGeom, place
from compiler.schedule import schedule

HW = load_hw("paper-256")
SURVEY = HW.replace(tech={"adc_model": "survey"})
WALDEN = HW.replace(tech={"adc_model": "walden"})
#: A chip with every component present: 4 tiles of 2 arrays, 2 MVM ports each, a mesh network.
CHIP = HW.replace(n_arrays=8, chip={"arrays_per_tile": 2, "mvms_per_tile": 2, "topology": "mesh",
                                    "digital_units": 2, "attention_units": 3, "sram_kib": 2048})


def within_band(measured: float, modelled: float, band: tuple[float, float]) -> bool:
    return band[0] <= np.log(measured / modelled) <= band[1]


# --- the ADC model ------------------------------------------------------------------------------------------------

def test_walden_is_the_kits_formula_exactly():
    bits = np.arange(1, 17, dtype=np.float64)
    fom = WALDEN.cost.adc_fom_fj_per_step
    assert np.array_equal(C.adc_energy_pj(bits, WALDEN), fom * np.exp2(bits) / 1000.0)
    assert C.adc_energy_pj(8, WALDEN) == fom * 2 ** 8 / 1000.0
    # and the cost model's ADC energy of a real schedule is conversions * that figure
    s = monarch_shape(1024, 1024, 32)
    g = (MatmulGeom("w", 0, "q", "encoder", "g", 1024, 1024, 32, s.r_shape, s.l_shape),)
    sc = schedule(place(g, WALDEN, "sparse"), WALDEN, "paper")
    ac = activation_costs(sc, WALDEN)
    per_conv = ac["e"]["adc"] / (WALDEN.input_bits * np.array([a.ncols for a in sc.activations]))
    bits_used = np.array([a.adc_bits for a in sc.activations])
    np.testing.assert_allclose(per_conv, C.adc_energy_pj(bits_used, WALDEN), rtol=1e-13)


@pytest.mark.parametrize("hw", [SURVEY, WALDEN, SURVEY.replace(cost={"adc_ramp_fraction": 1.0}),
                                SURVEY.replace(tech={"adc_enob_loss": 1.5})], ids=["survey", "walden", "ramp", "loss"])
def test_energy_and_area_grow_with_bits_and_vectorise(hw):
    bits = np.arange(1, 20)
    e = C.adc_energy_pj(bits, hw)
    a = C.adc_area_um2(bits, hw)
    assert np.all(np.diff(e) >= 0) and np.all(np.diff(a) >= 0)
    # strictly two bits above the survey model's energy floor (B_MIN effective bits; Walden has none)
    floor = -1 if hw.tech.adc_model == "walden" else M.B_MIN + hw.tech.adc_enob_loss + 2
    above = bits[:-1] >= floor
    assert np.all(np.diff(e)[above] > 0) and np.all(np.diff(a)[above] > 0)
    assert hw.tech.adc_model == "walden" or e[0] == e[1] > 0     # 1 and 2 bits: the floor
    assert e.shape == bits.shape and isinstance(C.adc_energy_pj(8, hw), float)
    assert [C.adc_energy_pj(int(b), hw) for b in bits] == pytest.approx(e, rel=1e-12)
    assert [C.adc_area_um2(int(b), hw) for b in bits] == pytest.approx(a, rel=1e-12)


def test_energy_and_area_grow_with_rate_and_node():
    rates = np.logspace(3, 10, 29)
    e = M.survey_energy_pj(8, rates, 22)
    assert np.all(np.diff(e) >= 0) and e[-1] > 10 * e[0]            # flat below the corner, rising above
    assert np.all(np.diff(e[rates > M.F_CORNER * 1.01]) > 0)
    assert np.all(np.diff(M.survey_area_um2(rates, 22, e)) > 0)
    # through the configuration: a faster conversion (smaller t_adc_ns) costs more per conversion and area
    fast, slow = SURVEY.replace(cost={"t_adc_ns": 0.25}), SURVEY.replace(cost={"t_adc_ns": 4.0})
    assert C.adc_energy_pj(8, fast) > C.adc_energy_pj(8, SURVEY) > C.adc_energy_pj(8, slow)
    assert C.adc_area_um2(8, fast) > C.adc_area_um2(8, SURVEY) > C.adc_area_um2(8, slow)
    nodes = [7, 14, 22, 45, 90, 180]
    for hw_of in (lambda nm: SURVEY.replace(tech={"tech_nm": nm}), lambda nm: WALDEN.replace(tech={"tech_nm": nm})):
        areas = [C.adc_area_um2(8, hw_of(nm)) for nm in nodes]
        assert np.all(np.diff(areas) > 0)
    assert np.all(np.diff([C.adc_energy_pj(8, SURVEY.replace(tech={"tech_nm": nm})) for nm in nodes]) > 0)


def test_rate_follows_the_conversion_time():
    assert M.adc_rate_hz(8, SURVEY) == pytest.approx(1e9 / SURVEY.cost.t_adc_ns)
    assert M.adc_rate_hz(4, SURVEY) == pytest.approx(2e9 / SURVEY.cost.t_adc_ns)     # SAR: linear in bits
    # no ADC time of its own: the ADC's share of one MVM within the fixed MVM time
    hidden = SURVEY.replace(cost={"t_adc_ns": 0.0, "t_mvm_fixed_ns": 100.0})
    per_mvm = hidden.input_bits * -(-hidden.cols // hidden.adcs_per_array)
    assert M.adc_rate_hz(8, hidden) == pytest.approx(per_mvm / 100e-9)
    assert M.adc_rate_hz(8, hidden.replace(cost={"t_mvm_fixed_ns": 0.0})) == M.F_MAX
    assert np.isfinite(C.static_power_mw(hidden.replace(cost={"t_mvm_fixed_ns": 0.0})))


def test_shipped_constants_are_the_fit_of_the_shipped_survey():
    fit = M.fit_survey()
    assert fit.n == 215
    for k, v in fit.energy.items():
        assert M.SURVEY_ENERGY[k] == pytest.approx(v, abs=1e-5), k
    for k, v in fit.area.items():
        assert M.SURVEY_AREA[k] == pytest.approx(v, abs=1e-5), k
    assert M.F_CORNER == pytest.approx(fit.f_corner, rel=1e-6)
    assert M.ENERGY_BAND == pytest.approx(fit.energy_band, abs=1e-4)
    assert M.AREA_BAND == pytest.approx(fit.area_band, abs=1e-4)
    # the bands hold 90 % of the published designs around the shipped model
    d = M.load_survey()
    e = M.survey_energy_pj(d["enob"], d["rate_hz"], d["tech_nm"])
    inside = (np.log(d["energy_pj"] / e) >= M.ENERGY_BAND[0]) & (np.log(d["energy_pj"] / e) <= M.ENERGY_BAND[1])
    assert 0.88 <= inside.mean() <= 0.92
    # the energy quantile: 20 % of the designs are more efficient than the model
    assert np.mean(d["energy_pj"] < e) == pytest.approx(M.ENERGY_QUANTILE, abs=0.03)


def test_fit_can_fail():
    """A planted fault in the data moves the fit away from the shipped constants (the check above can fail)."""
    d = M.load_survey()
    bad = dict(d, energy_pj=d["energy_pj"] * np.exp2(d["enob"] / 4))       # energy grows faster with bits
    assert M.fit_survey(bad).energy["E_BIT"] > M.SURVEY_ENERGY["E_BIT"] + 0.1


def test_known_designs_and_the_plug_in():
    """Published ADCs against the model; tolerance = the band that holds 90 % of the survey's designs.

    L. Kull et al., ISSCC 2013 (the ADC ISAAC uses): 8 b 1.2 GS/s SAR in 32 nm, SNDR 39.3 dB (6.2 ENOB), 3.1 mW
    (2.58 pJ per conversion), 0.0015 mm^2. ISAAC (Shafiee et al., ISCA 2016, table of components): 8 ADCs of 8 bits
    at 1.28 GS/s, 16 mW and 0.0096 mm^2 in all, i.e. 1.56 pJ and 1200 um^2 each.
    """
    assert within_band(3.1e-3 / 1.2e9 * 1e12, M.survey_energy_pj(6.235, 1.2e9, 32), M.ENERGY_BAND)
    assert within_band(16e-3 / 8 / 1.28e9 * 1e12, M.survey_energy_pj(8, 1.28e9, 32), M.ENERGY_BAND)
    # an 8-bit 1 GS/s SAR at 28 nm costs about 1..10 pJ per conversion (Murmann's survey, its 2010s SAR designs)
    assert 1.0 <= M.survey_energy_pj(8, 1e9, 28) <= 10.0
    # The Accelergy plug-in's own model (its published coefficients, hwcomponents-adc adc_data/model.yaml) at the
    # same points: energy (pJ) and area (um^2). Both fits of the same survey agree within 2x; both put ISAAC's
    # compact ADC (1200 um^2) about 5x below a typical survey design.
    plug_in = {(8, 1.28e9, 32): (1.929, 6469.0), (8, 1e9, 28): (1.333, 4852.0), (8, 1e9, 22): (0.847, 3334.0),
               (5, 1e9, 22): (0.463, 2782.0), (10, 1e9, 22): (6.894, 6242.0)}
    for (b, f, nm), (e_ref, a_ref) in plug_in.items():
        e = M.survey_energy_pj(b, f, nm)
        assert 0.5 <= e / e_ref <= 2.0, (b, f, nm)
        assert 0.5 <= M.survey_area_um2(f, nm, e) / a_ref <= 2.0, (b, f, nm)


def test_survey_leakage_split():
    """Dynamic plus static energy of one conversion at the full rate is the survey's full energy (plug-in: 80/20)."""
    full = M.survey_energy_pj(8, M.adc_rate_hz(8, SURVEY), SURVEY.tech.tech_nm)
    rate = M.adc_rate_hz(8, SURVEY)
    assert C.adc_energy_pj(8, SURVEY) == pytest.approx(0.8 * full)
    assert C.adc_energy_pj(8, SURVEY) + C.adc_static_uw(8, SURVEY) * 1e6 / rate == pytest.approx(full)
    assert C.adc_static_uw(8, WALDEN) == WALDEN.tech.p_adc_uw
    more = SURVEY.replace(tech={"p_adc_uw": 5.0})
    assert C.adc_static_uw(8, more) == pytest.approx(C.adc_static_uw(8, SURVEY) + 5.0)


# --- area and static power of the chip ------------------------------------------------------------------------------

@pytest.mark.parametrize("hw", [HW, CHIP, CHIP.replace(tech={"adc_model": "walden", "array_stack": "3d"})])
def test_breakdowns_add_up(hw):
    area, power = C.area_breakdown(hw), C.static_power_breakdown(hw)
    assert tuple(area) == C.AREA_KEYS and tuple(power) == C.POWER_KEYS
    assert C.area_mm2(hw) == pytest.approx(sum(area.values()))
    assert C.static_power_mw(hw) == pytest.approx(sum(power.values()))
    assert all(v >= 0 and np.isfinite(v) for v in [*area.values(), *power.values()])


def changed(a: dict, b: dict) -> set[str]:
    return {k for k in a if not np.isclose(a[k], b[k], rtol=1e-12, atol=0.0)}


def test_counts_scale_the_right_components():
    base_a, base_p = C.area_breakdown(CHIP), C.static_power_breakdown(CHIP)
    more_tiles = CHIP.replace(n_arrays=16)
    a, p = C.area_breakdown(more_tiles), C.static_power_breakdown(more_tiles)
    for k in ("arrays", "adc", "dac", "shift_add", "network"):
        assert a[k] == pytest.approx(2 * base_a[k]), k
    assert changed(base_a, a) == {"arrays", "adc", "dac", "shift_add", "network"}
    assert changed(base_p, p) == {"adc", "dac", "shift_add", "network"}       # p_array_uw is 0 by default
    more_adcs = CHIP.replace(adcs_per_array=16)
    a = C.area_breakdown(more_adcs)
    assert changed(base_a, a) == {"adc", "shift_add"} and a["shift_add"] == pytest.approx(2 * base_a["shift_add"])
    assert CHIP.total_adcs * C.adc_area_um2(CHIP.adc_bits, CHIP) / 1e6 == pytest.approx(base_a["adc"])
    ports = CHIP.replace(chip={"mvms_per_tile": 1})
    assert changed(base_a, C.area_breakdown(ports)) == {"adc", "dac", "shift_add"}
    stacked = CHIP.replace(tech={"array_stack": "3d"})
    assert C.area_breakdown(stacked)["arrays"] == pytest.approx(base_a["arrays"] / CHIP.chip.arrays_per_tile)
    assert C.area_breakdown(CHIP.replace(chip={"topology": "ideal"}))["network"] == 0.0
    assert C.area_breakdown(CHIP.replace(chip={"topology": "bus"}))["network"] == pytest.approx(
        base_a["network"] / CHIP.n_tiles)
    units = CHIP.replace(chip={"digital_units": 4, "attention_lanes": 2048})
    a = C.area_breakdown(units)
    assert changed(base_a, a) == {"digital", "attention"}
    assert a["digital"] == pytest.approx(2 * base_a["digital"]) and a["attention"] == pytest.approx(
        2 * base_a["attention"])


#: Which components each technology constant may move (area, static power).
MOVES = {
    "tech_nm": (set(C.AREA_KEYS), {"adc"}),
    "adc_leak_fraction": (set(), {"adc"}),
    "adc_enob_loss": ({"adc"}, {"adc"}),
    "ref_nm": ({"dac", "shift_add", "digital", "attention", "sram", "network"}, set()),
    "cell_area_f2": ({"arrays"}, set()),
    "dac_area_um2": ({"dac"}, set()),
    "shift_add_area_um2": ({"shift_add"}, set()),
    "digital_lane_area_um2": ({"digital"}, set()),
    "attention_lane_area_um2": ({"attention"}, set()),
    "sram_mm2_per_mib": ({"sram"}, set()),
    "router_area_mm2": ({"network"}, set()),
    "p_array_uw": (set(), {"arrays"}),
    "p_adc_uw": (set(), {"adc"}),
    "p_dac_uw": (set(), {"dac"}),
    "p_shift_add_uw": (set(), {"shift_add"}),
    "p_digital_lane_uw": (set(), {"digital"}),
    "p_attention_lane_uw": (set(), {"attention"}),
    "p_sram_mw_per_mib": (set(), {"sram"}),
    "p_router_mw": (set(), {"network"}),
    "p_dram_mw": (set(), {"dram"}),
}


def test_each_constant_moves_its_component_only():
    hw = CHIP.replace(tech={"adc_model": "survey"})
    base_a, base_p = C.area_breakdown(hw), C.static_power_breakdown(hw)
    numeric = [f.name for f in fields(TechParams) if f.name not in ("adc_model", "array_stack")]
    assert set(numeric) == set(MOVES)
    for name in numeric:
        v = getattr(hw.tech, name)
        new = {"tech_nm": 45, "adc_leak_fraction": 0.5, "adc_enob_loss": 1.0}.get(name, (v or 1.0) * 2)
        other = hw.replace(tech={name: new})
        want_a, want_p = MOVES[name]
        assert changed(base_a, C.area_breakdown(other)) == want_a, name
        assert changed(base_p, C.static_power_breakdown(other)) == want_p, name
        for k in want_a:
            assert C.area_breakdown(other)[k] != base_a[k]


def test_logic_area_scales_with_the_node_squared():
    a22, a11 = C.area_breakdown(CHIP), C.area_breakdown(CHIP.replace(tech={"tech_nm": 11}))
    for k in ("arrays", "dac", "shift_add", "digital", "attention", "sram", "network"):
        assert a11[k] == pytest.approx(a22[k] / 4), k
    assert a11["adc"] < a22["adc"]


def test_bad_technology_settings_are_named():
    assert TechParams().violations() == []
    bad = TechParams(ref_nm=0, adc_leak_fraction=1.0, array_stack="stacked", adc_model="flash", tech_nm=2,
                     p_dram_mw=-1.0)
    got = " ".join(bad.violations())
    for key in ("tech.ref_nm", "tech.adc_leak_fraction", "tech.array_stack", "tech.adc_model", "tech.tech_nm",
                "tech.p_dram_mw"):
        assert key in got
    with pytest.raises(ConfigError, match="tech.adc_enob_loss"):
        HW.replace(tech={"adc_enob_loss": 9.0})


def test_dac_model_grows_with_its_levels_and_polarity():
    """A k-bit DAC: 2**k - 1 unit drivers (energy per row drive, area, static power), twice for bipolar
    (sign-magnitude) drive; the default 1-bit unipolar drive is today's e_row_read_pj and DAC area."""
    hw = load_hw("fpga-tiny")
    assert C.dac_energy_pj(hw) == hw.cost.e_row_read_pj and C.dac_units(hw) == 1
    e = [C.dac_energy_pj(hw.replace(dac_bits=k)) for k in range(1, 8)]
    assert all(a < b for a, b in zip(e, e[1:]))
    assert e[2] == pytest.approx(7 * hw.cost.e_row_read_pj)                    # 3 bits: 7 levels above zero
    base = C.area_breakdown(hw)["dac"]
    assert C.area_breakdown(hw.replace(dac_bits=3))["dac"] == pytest.approx(7 * base)
    sm = hw.replace(input_encoding="sign-magnitude")
    assert C.dac_units(sm) == 2 and C.dac_energy_pj(sm) == C.dac_energy_pj(hw)  # one polarity fires per drive
    assert changed(C.area_breakdown(hw), C.area_breakdown(sm)) == {"dac"}
    assert C.static_power_breakdown(sm)["dac"] == pytest.approx(2 * C.static_power_breakdown(hw)["dac"])


def test_sliced_cells_take_physical_area():
    """fpga-tiny-sliced: the same arrays with 192 physical columns, 6x fpga-tiny's cell area."""
    a, b = C.area_breakdown(load_hw("fpga-tiny")), C.area_breakdown(load_hw("fpga-tiny-sliced"))
    assert b["arrays"] == pytest.approx(6 * a["arrays"])
