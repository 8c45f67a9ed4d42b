import json

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
    ('name = "x"\n[cost]\nt_adc_ns = -1\n', "cost.t_adc_ns must be a finite number >= 0"),
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


def test_arch_hash_ignores_name_and_cost():
    a = load_hw("fpga-tiny")
    assert a.replace(name="other", cost={"t_adc_ns": 9.0}).arch_hash == a.arch_hash
    assert a.replace(adc_bits=8).arch_hash != a.arch_hash


def test_frozen():
    with pytest.raises(Exception):
        BUILTIN["paper-256"].rows = 3
    assert isinstance(BUILTIN["paper-256"].cost, CostParams)
    assert "HwConfig(name='paper-256'" in repr(BUILTIN["paper-256"])
