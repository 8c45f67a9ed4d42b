import dataclasses
import json
import re

import pytest

from cimisa.config import BUILTIN, CostParams, HwConfig, list_builtin, load_hw
from cimisa.errors import ConfigError


def test_builtins_valid_and_named():
    assert {"paper-256", "fpga-tiny", "fpga-micro"} <= set(list_builtin())
    for name in list_builtin():
        cfg = load_hw(name)
        assert cfg.name == name and not cfg.violations()
    p = load_hw("paper-256")
    assert (p.rows, p.cols) == (256, 256) and 4 <= p.adcs_per_array <= 32


@pytest.mark.parametrize("adcs", [4, 8, 16, 32])
def test_paper_adc_sweep_overrides(adcs):
    assert load_hw("paper-256", adcs_per_array=adcs).adcs_per_array == adcs


def test_every_violation_listed_in_one_error():
    with pytest.raises(ConfigError) as e:
        load_hw("paper-256", rows=3, adcs_per_array=0, weight_bits=1)
    msg = str(e.value)
    for part in ("adcs_per_array", "rows_per_cycle", "weight_bits"):
        assert part in msg


def test_lossless_adc_bits():
    # 32 rows of 4-bit weights: column sums in -256..224 -> 9-bit signed.
    assert load_hw("fpga-tiny").lossless_adc_bits == 9
    assert load_hw("paper-256").lossless_adc_bits == 16
    assert load_hw("paper-256").lossless().adc_bits == 16


def test_toml_with_base_and_cost(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text('base = "paper-256"\nname = "mine"\nadcs_per_array = 16\n[cost]\nt_adc_ns = 2.5\n')
    cfg = load_hw(f)
    assert cfg.name == "mine" and cfg.adcs_per_array == 16 and cfg.cost.t_adc_ns == 2.5
    assert cfg.rows == 256


def test_json_roundtrip(tmp_path):
    cfg = load_hw("fpga-tiny")
    f = tmp_path / "c.json"
    f.write_text(json.dumps(cfg.to_dict()))
    assert load_hw(f) == cfg


@pytest.mark.parametrize("text, needle", [
    ('name = "x"\nrows = 0\nbogus = 1\n[cost]\nnope = 2\n', "unknown setting 'bogus'"),
    ('base = "nope"\n', "unknown base configuration"),
    ('name = "x"\nrows = "many"\n', "rows must be an integer"),
    ('rows = [', "not valid TOML"),
    ('name = "x"\n[cost]\nt_adc_ns = -1\n', r"cost.t_adc_ns must be a finite number in 0\.\.1e9, not -1"),
])
def test_bad_files(tmp_path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_hw(f)


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown hardware configuration"):
        load_hw("paper-512")
    with pytest.raises(ConfigError, match="cannot read"):
        load_hw(tmp_path / "missing.toml")


def test_arch_hash_ignores_name_cost_chip_and_tech():
    a = load_hw("fpga-tiny")
    assert a.replace(name="other", cost={"t_adc_ns": 9.0}).arch_hash == a.arch_hash
    assert a.replace(chip={"arrays_per_tile": 4}, tech={"tech_nm": 45}).arch_hash == a.arch_hash
    assert a.replace(adc_bits=8).arch_hash != a.arch_hash


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        BUILTIN["paper-256"].rows = 3
    assert isinstance(BUILTIN["paper-256"].cost, CostParams)
    assert "HwConfig(name='paper-256'" in repr(BUILTIN["paper-256"])


# ---- range and type checks before anything derived (no hang on huge widths) ---------------------------------

def _loop_lossless(wb, rows):
    """The definition: the narrowest signed width holding every column sum of ``rows`` ``wb``-bit weights."""
    lo, hi = -(1 << (wb - 1)) * rows, ((1 << (wb - 1)) - 1) * rows
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def test_lossless_adc_bits_closed_form_matches_definition():
    for wb in range(2, 17):
        for rows in [2, 3, 4, 5, 31, 32, 33, 255, 256, 257, 1000, 4095, 4096]:
            cfg = load_hw("paper-256").replace(rows=rows, rows_per_cycle=1, weight_bits=wb, adc_bits=1)
            assert cfg.lossless_adc_bits == _loop_lossless(wb, rows), (wb, rows)
    # The widest configuration still has a lossless variant.
    assert load_hw("paper-256").replace(rows=4096, weight_bits=16, n_arrays=1).lossless().adc_bits == 28


@pytest.mark.parametrize("change, needle", [
    (dict(weight_bits=10**6), r"weight_bits must be an integer in 2\.\.16, not 1000000"),
    (dict(weight_bits=2**70), r"weight_bits must be an integer in 2\.\.16, not ~2\*\*70"),
    (dict(weight_bits=10**5000), r"weight_bits must be an integer in 2\.\.16, not ~2\*\*16609"),
    (dict(weight_bits=0), "weight_bits must be an integer in 2..16, not 0"),
    (dict(weight_bits=-4), "weight_bits must be an integer in 2..16, not -4"),
    (dict(input_bits=2**40), "input_bits must be an integer in 2..16"),
    (dict(adc_bits=10**9), "adc_bits must be an integer in 1..28"),
    (dict(rows=10**12), "rows must be an integer in 2..4096"),
    (dict(in_depth=1 << 30), "in_depth must be an integer in 2..1048576"),
    (dict(out_depth=1 << 30), "out_depth must be an integer in 2..1048576"),
    (dict(rows=32.0), "rows must be an integer in 2..4096, not 32.0"),
    (dict(rows=32.5), "rows must be an integer in 2..4096, not 32.5"),
    (dict(rows=True), "rows must be an integer in 2..4096, not true"),
    (dict(rows="32"), "rows must be an integer in 2..4096, not '32'"),
    (dict(rows=[]), "rows must be an integer in 2..4096, not a list of 0 items"),
    (dict(n_arrays=[1]), "n_arrays must be an integer in 1..1048576, not a list of 1 item"),
    (dict(adcs_per_array=300), r"adcs_per_array must be at most cols \(256\), not 300"),
    (dict(rows=4096, cols=4096, n_arrays=10**6), r"n_arrays\*rows\*cols = 16777216000000 weight cells, more than"),
    (dict(name=""), "name must be a non-empty string"),
    (dict(name="a\nb"), "name must be a non-empty string of at most 100 printable characters"),
    (dict(name=7), "name must be a non-empty string"),
    (dict(cost={"digital_lanes": 0}), r"cost.digital_lanes must be an integer in 1\.\.1048576, not 0"),
    (dict(cost={"digital_lanes": 1e-320}), "cost.digital_lanes must be an integer in 1..1048576, not 1e-320"),
    (dict(cost={"digital_lanes": 64.0}), "cost.digital_lanes must be an integer"),
    (dict(cost={"adc_ramp_fraction": 2}), r"cost.adc_ramp_fraction must be a number in 0\.\.1, not 2"),
    (dict(cost={"adc_ramp_fraction": -0.1}), "cost.adc_ramp_fraction must be a number in 0..1"),
    (dict(cost={"adc_ref_bits": 0}), "cost.adc_ref_bits must be an integer in 1..28"),
    (dict(cost={"t_adc_ns": float("inf")}), "cost.t_adc_ns must be a finite number in 0..1e9, not inf"),
    (dict(cost={"t_adc_ns": float("nan")}), "cost.t_adc_ns must be a finite number in 0..1e9, not nan"),
    (dict(cost={"t_adc_ns": 10**400}), r"cost.t_adc_ns must be a finite number in 0\.\.1e9, not ~2\*\*"),
    (dict(cost={"t_adc_ns": 1e300}), "cost.t_adc_ns must be a finite number in 0..1e9"),
    (dict(cost={"t_adc_ns": True}), "cost.t_adc_ns must be a finite number in 0..1e9, not true"),
    (dict(cost={"t_adc_ns": "1"}), "cost.t_adc_ns must be a finite number in 0..1e9, not '1'"),
    (dict(cost={"nope": 1}), r"unknown setting\(s\) cost.nope"),
])
def test_bad_values_are_one_config_error(change, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        load_hw("paper-256", **change)
    assert "\n" not in e.value.one_line()


def test_none_is_not_a_number():
    with pytest.raises(ConfigError, match="rows must be an integer in 2..4096, not null"):
        HwConfig(name="x", rows=None)


def test_violations_listed_together_and_derived_rules_wait_for_valid_fields():
    with pytest.raises(ConfigError) as e:
        load_hw("paper-256", weight_bits=2**70, rows=32.0, cost={"digital_lanes": 0, "t_adc_ns": float("inf")})
    msg = str(e.value)
    for part in ("weight_bits", "rows must", "cost.digital_lanes", "cost.t_adc_ns"):
        assert part in msg
    assert "lossless" not in msg and "divide" not in msg     # not computed from invalid fields


def test_numpy_integers_and_integer_costs_are_normalised():
    np = pytest.importorskip("numpy")
    cfg = load_hw("fpga-tiny", adcs_per_array=np.int64(8), cost={"t_adc_ns": 2, "digital_lanes": np.int32(64)})
    assert type(cfg.adcs_per_array) is int and cfg.cost.t_adc_ns == 2.0 and type(cfg.cost.t_adc_ns) is float
    assert type(cfg.cost.digital_lanes) is int
    json.loads(cfg.to_json())


@pytest.mark.parametrize("suffix, text, needle", [
    (".toml", 'name = "x"\nweight_bits = 1000000\n', "weight_bits must be an integer in 2..16"),
    (".toml", 'base = ["paper-256"]\nname = "x"\n', "base must be a string naming a built-in configuration"),
    (".toml", 'base = {a = 1}\nname = "x"\n', "paper-256), not a table"),
    (".toml", 'name = "x"\n[cost]\nt_adc_ns = inf\n', "cost.t_adc_ns must be a finite number in 0..1e9, not inf"),
    (".toml", 'name = "x"\n[cost]\nt_adc_ns = nan\n', "not nan"),
    (".toml", 'name = "x"\nrows = 32.0\n', "rows must be an integer in 2..4096, not 32.0"),
    (".toml", 'name = "x"\nrows = true\n', "rows must be an integer in 2..4096, not true"),
    (".toml", 'name = "x"\ncost = 3\n', "cost must be a table, not 3"),
    (".toml", 'name = "x"\n' + "a = " + "[" * 5000 + "]" * 5000 + "\n", "not valid TOML"),
    (".json", '{"name": "x", "base": "paper-256", "cost": {"t_adc_ns": NaN}}', "cost.t_adc_ns must be a finite"),
    (".json", '{"name": "x", "base": "paper-256", "cost": {"e_buffer_pj": Infinity}}', "not inf"),
    (".json", '{"name": "x", "base": "paper-256", "rows": 1e400}', "rows must be an integer in 2..4096, not inf"),
    (".json", '[1, 2]', "expected a table of settings, not a list of 2 items"),
    (".json", '{"name": "x",', "not valid JSON"),
    (".json", "[" * 100000, "not valid JSON"),
])
def test_bad_file_values(tmp_path, suffix, text, needle):
    f = tmp_path / f"bad{suffix}"
    f.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_hw(f)


def test_unusable_files(tmp_path):
    (tmp_path / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid TOML: not UTF-8 text"):
        load_hw(tmp_path / "latin1.toml")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_hw(tmp_path / "bin.json")
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="it is a folder"):
        load_hw(tmp_path / "dir.toml")
    with pytest.raises(ConfigError, match="not a regular file"):
        HwConfig.from_file("/dev/zero")          # would never end
    big = tmp_path / "big.toml"
    big.write_text('name = "x"\n' + "# pad\n" * 200000)
    with pytest.raises(ConfigError, match="more than the limit"):
        load_hw(big)
    with pytest.raises(ConfigError, match="must be a name or a file"):
        load_hw(42)


def test_replace_rejects_unknown_settings():
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) bogus"):
        load_hw("fpga-tiny").replace(bogus=1)
    with pytest.raises(ConfigError, match="cost.nope"):
        load_hw("fpga-tiny").replace(cost={"nope": 1})


def test_largest_valid_tile_loads_fast():
    import time
    t = time.perf_counter()
    cfg = load_hw("paper-256", n_arrays=1 << 20)       # 2**36 cells: the limit itself (bench/bench_mapper.py)
    assert cfg.total_cells == 1 << 36
    with pytest.raises(ConfigError, match="weight cells"):
        load_hw("paper-256", n_arrays=(1 << 20), rows=512, rows_per_cycle=16)
    assert time.perf_counter() - t < 1.0
