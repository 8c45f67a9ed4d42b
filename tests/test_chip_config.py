"""The chip hierarchy in the one hardware configuration: ``HwConfig.chip`` / ``HwConfig.tech``, their tables in
TOML/JSON files, their validation (every problem in one error), the arch hash and the chip presets."""

import json
import math

import numpy as np
import pytest

from cimisa.chip import TOPOLOGIES, ChipParams
from cimisa.config import BUILTIN, HwConfig, load_hw
from cimisa.errors import ConfigError
from cimisa.tech import TechParams

FLAT = ("paper-256", "fpga-tiny", "fpga-micro")
CHIPS = ("chip-3dsim", "chip-paper", "chip-tiny-4t")


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


# ---- validation: every problem, in one error -------------------------------------------------------------------

def test_every_chip_and_tech_violation_in_one_error():
    msg = _error(load_hw, "paper-256", rows=1, chip={
        "arrays_per_tile": 0, "mvms_per_tile": 2.5, "topology": "torus", "link_bytes_per_ns": float("nan"),
        "hop_latency_ns": -1.0, "digital_units": True, "dram_bytes_per_ns": float("inf")},
        tech={"adc_model": "flash", "tech_nm": 1, "p_adc_uw": "10"})
    for part in ("rows must be an integer",
                 "chip.arrays_per_tile must be an integer in 1..1048576, not 0",
                 "chip.mvms_per_tile must be an integer in 1..1048576, not 2.5",
                 "chip.topology must be one of ideal, mesh, ring, bus, not 'torus'",
                 "chip.link_bytes_per_ns must be a finite number", "not nan",
                 "chip.hop_latency_ns must be a finite number", "not -1.0",
                 "chip.digital_units must be an integer in 1..65536, not true",
                 "chip.dram_bytes_per_ns must be a finite number", "not inf",
                 "tech.adc_model must be one of survey, walden, not 'flash'",
                 "tech.tech_nm must be an integer in 3..180, not 1",
                 "tech.p_adc_uw must be a finite number"):
        assert part in msg, (part, msg)


@pytest.mark.parametrize("chip, needle", [
    ({"arrays_per_tile": 4, "mvms_per_tile": 5}, "chip.mvms_per_tile must be at most chip.arrays_per_tile (4), not 5"),
    ({"arrays_per_tile": 5}, "chip.arrays_per_tile must divide n_arrays (8192), not 5"),
    ({"arrays_per_tile": 3 * 8192}, "chip.arrays_per_tile must divide n_arrays (8192), not 24576"),
    ({"arrays_per_tile": 2**70}, "chip.arrays_per_tile must be an integer in 1..1048576, not ~2**70"),
    ({"sram_kib": -1}, "chip.sram_kib must be an integer in 0..1073741824, not -1"),
    ({"mesh_cols": 1.0}, "chip.mesh_cols must be an integer in 0..1048576, not 1.0"),
    ({"topology": 1}, "chip.topology must be one of ideal, mesh, ring, bus, not 1"),
    ({"link_bytes_per_ns": 1e13}, "chip.link_bytes_per_ns must be a finite number in 0..1e12, not 10000000000000.0"),
])
def test_chip_rules(chip, needle):
    assert needle in _error(load_hw, "paper-256", chip=chip)


def test_rules_between_settings_wait_for_valid_settings():
    # A broken n_arrays or arrays_per_tile gives its own message, not a second one derived from it.
    msg = _error(load_hw, "paper-256", n_arrays=0, chip={"arrays_per_tile": 3})
    assert "n_arrays must be an integer" in msg and "must divide" not in msg
    msg = _error(load_hw, "paper-256", chip={"arrays_per_tile": "x", "mvms_per_tile": 9})
    assert "chip.arrays_per_tile must be an integer" in msg and "at most" not in msg


def test_unknown_chip_and_tech_keys_named():
    assert "unknown setting(s) chip.foo, tech.bar" in _error(load_hw, "paper-256", chip={"foo": 1}, tech={"bar": 2})
    msg = _error(HwConfig.from_dict, {"base": "paper-256", "name": "x", "chip": {"foo": 1, "tiers": 2},
                                      "tech": {"node": 7}, "gpu": 1})
    for part in ("unknown setting 'gpu'", "unknown setting chip.foo", "unknown setting chip.tiers",
                 "unknown setting tech.node"):
        assert part in msg, (part, msg)
    for bad in (3, [1], "mesh"):
        assert "chip must be a table" in _error(HwConfig.from_dict, {"name": "x", "chip": bad})
    assert "tech must be a TechParams, not int" in _error(load_hw("paper-256").replace, tech=5)


def test_chip_values_are_normalised():
    cfg = load_hw("paper-256", chip={"arrays_per_tile": np.int64(16), "link_bytes_per_ns": 64,
                                     "hop_latency_ns": np.float32(2.0)})
    assert type(cfg.chip.arrays_per_tile) is int and type(cfg.chip.link_bytes_per_ns) is float
    assert type(cfg.chip.hop_latency_ns) is float
    assert json.loads(cfg.to_json())["chip"]["arrays_per_tile"] == 16


# ---- files, round trips, overrides ----------------------------------------------------------------------------

def test_toml_partial_tables_merge_over_base(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('base = "chip-paper"\nname = "mine"\n[chip]\nmvms_per_tile = 2\n[tech]\ntech_nm = 45\n'
                 '[cost]\ne_link_pj_per_bit_hop = 0.5\n')
    cfg = load_hw(f)
    base = BUILTIN["chip-paper"]
    assert cfg.chip.mvms_per_tile == 2 and cfg.tech.tech_nm == 45 and cfg.cost.e_link_pj_per_bit_hop == 0.5
    # Everything the tables leave out comes from the base.
    assert cfg.chip.arrays_per_tile == base.chip.arrays_per_tile and cfg.chip.topology == "mesh"
    assert cfg.tech.adc_model == base.tech.adc_model and cfg.cost.t_adc_ns == base.cost.t_adc_ns
    assert cfg.adcs_per_tile == 2 * cfg.adcs_per_array


def test_file_without_tables_is_the_flat_machine(tmp_path):
    f = tmp_path / "flat.toml"
    f.write_text('name = "flat"\nn_arrays = 12\n')
    cfg = load_hw(f)
    assert cfg.chip == ChipParams() and cfg.tech == TechParams()
    assert cfg.n_tiles == 12 and cfg.total_adcs == 12 * cfg.adcs_per_array


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_json_round_trip(tmp_path, name):
    cfg = BUILTIN[name]
    assert HwConfig.from_dict(json.loads(cfg.to_json())) == cfg
    f = tmp_path / "c.json"
    f.write_text(json.dumps(cfg.to_dict()))
    assert load_hw(f) == cfg


def test_overrides_keep_the_chip():
    cfg = load_hw("chip-paper", adcs_per_array=16, chip=None)
    assert cfg.chip == BUILTIN["chip-paper"].chip and cfg.total_adcs == 512 * 16
    cfg = load_hw("paper-256", chip={"arrays_per_tile": 16})
    assert cfg.n_tiles == 512 and cfg.chip.topology == "ideal"
    assert "must divide n_arrays (8008)" in _error(load_hw, "chip-paper", n_arrays=8008)


def test_arch_hash_leaves_out_chip_and_tech():
    a = BUILTIN["paper-256"]
    b = a.replace(chip={"arrays_per_tile": 64, "topology": "ring"}, tech={"tech_nm": 7, "adc_model": "walden"},
                  cost={"e_dram_pj_per_byte": 1.0})
    assert b.arch_hash == a.arch_hash and b != a
    assert a.replace(n_arrays=4096).arch_hash != a.arch_hash
    # The tiled presets run the command streams of the flat machine they organise.
    assert BUILTIN["chip-3dsim"].arch_hash == BUILTIN["chip-paper"].arch_hash == a.arch_hash
    assert BUILTIN["chip-tiny-4t"].arch_hash == BUILTIN["fpga-tiny"].arch_hash


# ---- presets ---------------------------------------------------------------------------------------------------

def _bert_large_linear_arrays(rows: int, cols: int) -> int:
    """Arrays of BERT-large's dense (linear) mapping: 24 layers of Q, K, V, O (1024 x 1024) and the FFN
    (1024 x 4096, 4096 x 1024), each matrix tiled onto rows x cols arrays."""
    shapes = [(1024, 1024)] * 4 + [(1024, 4096), (4096, 1024)]
    return 24 * sum(math.ceil(r / rows) * math.ceil(c / cols) for r, c in shapes)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_presets_valid(name):
    cfg = BUILTIN[name]
    assert cfg.violations() == [] and cfg.name == name
    assert cfg.chip.topology in TOPOLOGIES
    assert cfg.n_tiles * cfg.chip.arrays_per_tile == cfg.n_arrays
    rows, cols = cfg.chip.grid(cfg.n_arrays)
    assert rows * cols >= cfg.n_tiles and cfg.chip.tile_of(cfg.n_arrays - 1) == cfg.n_tiles - 1


@pytest.mark.parametrize("name", FLAT)
def test_flat_builtins_are_todays_machine(name):
    cfg = BUILTIN[name]
    assert cfg.chip == ChipParams() and cfg.tech == TechParams()
    assert cfg.n_tiles == cfg.n_arrays and cfg.total_adcs == cfg.n_arrays * cfg.adcs_per_array


def test_chip_presets_are_tiled_and_hold_bert_large():
    for name in CHIPS:
        cfg = BUILTIN[name]
        assert cfg.chip.arrays_per_tile > 1 and cfg.chip.mvms_per_tile < cfg.chip.arrays_per_tile
        assert cfg.chip.topology != "ideal"
        assert cfg.total_adcs < cfg.n_arrays * cfg.adcs_per_array      # the periphery is shared
    assert _bert_large_linear_arrays(256, 256) == 4608                 # the count
    for name in ("chip-3dsim", "chip-paper"):
        assert BUILTIN[name].n_arrays >= _bert_large_linear_arrays(256, 256)


def test_chip_3dsim_follows_3dsim_defaults():
    """IBM 3D-SiM's AcceleratorConfig: one MVM per tile, 4 digital and 1 MHA unit of 1 W passive power each,
    MVM 100 ns / 10 nJ, DRAM 5.332 GB/s at 0.2467 W active and 0.1297 W idle."""
    cfg = BUILTIN["chip-3dsim"]
    c, t, k = cfg.chip, cfg.tech, cfg.cost
    assert (c.mvms_per_tile, c.digital_units, c.attention_units) == (1, 4, 1)
    assert (k.t_mvm_fixed_ns, k.e_mvm_fixed_nj, c.dram_bytes_per_ns) == (100.0, 10.0, 5.332)
    assert k.digital_lanes * t.p_digital_lane_uw == pytest.approx(1e6)       # 1 W per digital unit
    assert c.attention_lanes * t.p_attention_lane_uw == pytest.approx(1e6)   # 1 W per attention unit
    assert t.p_dram_mw == pytest.approx(129.7)
    assert k.e_dram_pj_per_byte * c.dram_bytes_per_ns == pytest.approx(246.7, rel=1e-3)   # mW active


def test_chip_tiny_4t_is_fpga_tiny_in_four_tiles():
    cfg, tiny = BUILTIN["chip-tiny-4t"], BUILTIN["fpga-tiny"]
    assert cfg.n_tiles == 4 and cfg.chip.mvms_per_tile == 1
    assert cfg.replace(name="fpga-tiny", chip=ChipParams(), tech=TechParams()) == tiny
