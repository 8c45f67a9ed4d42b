"""``mapper reproduce`` on a chip: the iso-area / iso-ADC / need tables and the sensitivity map, on tiny grids.

The tiny models on ``chip-tiny-4t`` (4 tiles of 24 arrays), a few prompt tokens, in this process: every table has
every strategy, the iso budgets give every strategy the reference's ADC count or area (within one ADC per array),
ratios are recomputed from the rows, the sensitivity map has its documented columns, and every plot is a PNG.
"""

import csv
import functools

import pytest

from mapper import cli_reproduce as R
from mapper.sweep import grid as G
from mapper.sweep.results import _energy, sensitivity_table
from mapper.sweep.runner import run_sweep

CHIP = "chip-tiny-4t"
STRATEGIES = ["linear", "sparse", "dense", "auto"]
SENSITIVITY_COLUMNS = ["tiers_per_tile", "adc_time", "network", "row_steps", "static_scale", "linear_prefill_ns",
                       "sparse_prefill_ns", "dense_prefill_ns", "sparse_speedup", "dense_speedup",
                       "dense_energy_gain", "sparse_energy_gain", "sparse_speedup_within", "dense_speedup_within",
                       "dense_energy_gain_within", "matches"]


def _grid(text: str, tmp_path, name: str):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return G.load_grid(path)


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chip")
    grid = _grid(f"[sweep]\nname='c'\n[fixed]\nhw='{CHIP}'\nweights=false\n[axes]\nmodel=['tiny-bert','tiny-gpt2']\n"
                 f"strategy={STRATEGIES}\n", tmp, "c")
    return R.chip_tables(grid, tmp, functools.partial(run_sweep), prefill_tokens=4)


@pytest.fixture(scope="module")
def sens(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sens")
    grid = _grid(f"[sweep]\nname='s'\n[fixed]\nmodel='tiny-bert'\nhw='{CHIP}'\nweights=false\n[axes]\n"
                 "tiers=[{chip={arrays_per_tile=1}}, {chip={arrays_per_tile=24}}]\n"
                 "adc=[{cost={adc_ramp_fraction=0.0}}, {cost={adc_ramp_fraction=1.0}}]\n"
                 "strategy=['linear','sparse','dense']\n", tmp, "s")
    return R.sensitivity_map(grid, tmp, functools.partial(run_sweep), prefill_tokens=4)


def test_chip_tables_hold_every_strategy_on_equal_chips(chip):
    from compiler.components import area_mm2
    from mapper.pipeline import resolve_hw
    assert list(chip) == list(R.BUDGETS)
    base = resolve_hw(CHIP)
    for budget, rows in chip.items():
        assert [(r["model"], r["strategy"]) for r in rows] == [(m, s) for m in ("tiny-bert", "tiny-gpt2")
                                                               for s in STRATEGIES], budget
        for model in ("tiny-bert", "tiny-gpt2"):
            sel = {r["strategy"]: r for r in rows if r["model"] == model}
            lin = sel["linear"]
            lin_area = area_mm2(base.replace(n_arrays=lin["chip_arrays"], adcs_per_array=lin["adcs_per_array"]))
            for r in sel.values():
                assert r["budget"] == budget and r["prefill_tokens"] == 4
                assert r["chip_arrays"] >= r["arrays"] and r["chip_arrays"] % base.chip.arrays_per_tile == 0
                assert r["chip_arrays"] - r["arrays"] < base.chip.arrays_per_tile       # need: whole tiles only
                assert r["prefill_speedup_vs_linear"] == pytest.approx(
                    lin["prefill_latency_ns"] / r["prefill_latency_ns"], rel=1e-3)
                assert r["energy_gain_vs_linear"] == pytest.approx(
                    lin["energy_per_token_nj"] / r["energy_per_token_nj"], rel=1e-3)
                # the chip's own ADC count and area, recomputed from its size
                cfg = base.replace(n_arrays=r["chip_arrays"], adcs_per_array=r["adcs_per_array"])
                assert r["total_adcs"] == cfg.total_adcs
                assert r["area_mm2"] == pytest.approx(area_mm2(cfg), rel=1e-3)
                step = base.replace(n_arrays=r["chip_arrays"], adcs_per_array=r["adcs_per_array"] + 1)
                if budget == "iso-adc":           # equal ADCs, up to rounding down to a whole ADC per array
                    assert cfg.total_adcs <= lin["total_adcs"] < step.total_adcs or r["adcs_per_array"] == cfg.cols
                if budget == "iso-area":          # the largest ADC count whose area fits the reference's
                    assert area_mm2(cfg) <= lin_area * (1 + 1e-9) or r["adcs_per_array"] == 1
                    assert area_mm2(step) > lin_area or r["adcs_per_array"] == cfg.cols
                if budget == "need":
                    assert r["adcs_per_array"] == base.adcs_per_array


def test_sensitivity_map_columns_and_ratios(sens):
    assert len(sens) == 2 * 2 * len(R.ROW_STEPS) * len(R.STATIC_SCALES)
    for r in sens:
        assert [c for c in r] == SENSITIVITY_COLUMNS
        assert r["sparse_speedup"] == pytest.approx(r["linear_prefill_ns"] / r["sparse_prefill_ns"], rel=1e-3)
        for h, paper in R.HEADLINES.items():
            assert r[f"{h}_within"] == (abs(r[h] / paper - 1) <= R.TOLERANCE)
        assert r["matches"] == sum(r[f"{h}_within"] for h in R.HEADLINES)
    # one row step per block instead of four: DenseMap's latency changes, linear's and sparse's do not
    key = ("tiers_per_tile", "adc_time", "network", "static_scale")
    by = {(tuple(r[k] for k in key), r["row_steps"]): r for r in sens}
    for (k, steps), r in by.items():
        other = by[(k, 1 if steps == 4 else 4)]
        assert r["sparse_prefill_ns"] == other["sparse_prefill_ns"]
        assert r["dense_prefill_ns"] != other["dense_prefill_ns"]
    # static power only moves energy: the speed-ups are those of scale 0
    lat = {(tuple(r[k] for k in key[:3]), r["row_steps"], r["static_scale"]): r for r in sens}
    for (k, steps, _scale), r in lat.items():
        assert r["dense_speedup"] == lat[(k, steps, 0.0)]["dense_speedup"]
        assert r["sparse_speedup"] == lat[(k, steps, 0.0)]["sparse_speedup"]


def test_static_scaling_equals_a_run_with_scaled_static_power(tmp_path):
    """The map scales static power from each point's static energy; a sweep with every static power constant
    (tech.p_*) times 4 gives the same energies (the independent check of that shortcut). The ADC's leaking share
    is set to 0 in both: in the survey model it also moves energy between dynamic and static."""
    from mapper.pipeline import resolve_hw
    from mapper.sweep.point import evaluate_chip_point
    tech = resolve_hw(CHIP).tech
    p10 = "{" + ", ".join(f"{k} = {getattr(tech, k) * 4!r}" for k in vars(tech) if k.startswith("p_")) + "}"
    grid = _grid(f"[sweep]\nname='x'\n[fixed]\nmodel='tiny-bert'\nhw='{CHIP}'\nweights=false\n"
                 "'tech.adc_leak_fraction'=0.0\n[axes]\n"
                 f"static=[{{tech={{}}}}, {{tech={p10}}}]\nstrategy=['linear','sparse','dense']\n", tmp_path, "x")
    extra = {"budget": "need", "prefill_tokens": 4, "decode_tokens": 0}
    rows = run_sweep(grid, tmp_path / "x", func=functools.partial(evaluate_chip_point, extra=extra))["rows"]
    assert all(r["error"] is None for r in rows)
    for plain, scaled in zip(rows[:3], rows[3:], strict=True):
        assert plain["strategy"] == scaled["strategy"] and plain["perf.energy_per_token_nj.static"] > 0
        assert _energy(plain, 4.0) == pytest.approx(scaled["energy_per_token_nj"], rel=1e-4)
        assert _energy(plain, 4.0) > 1.5 * plain["energy_per_token_nj"]          # the check can fail
        assert plain["prefill_latency_ns"] == scaled["prefill_latency_ns"]


def test_sensitivity_check_can_fail():
    """A planted wrong ratio is flagged: the within flags follow the values, not the other way round."""
    row = {"config.chip.arrays_per_tile": 1, "config.cost.adc_ramp_fraction": 0.0, "config.cost.t_adc_ns": 1.0,
           "config.chip.topology": "ideal", "energy_per_token_nj": 10.0, "perf.energy_per_token_nj.static": 0.0}
    rows = [{**row, "strategy": "linear", "prefill_latency_ns": 159.0},
            {**row, "strategy": "sparse", "prefill_latency_ns": 100.0},
            {**row, "strategy": "dense", "prefill_latency_ns": 159.0, "energy_per_token_nj": 5.0}]
    r = sensitivity_table(rows, R.HEADLINES, scales=(1.0,), row_steps=(4,))[0]
    assert r["sparse_speedup_within"] and not r["dense_speedup_within"] and r["dense_energy_gain_within"] is False
    assert r["matches"] == 1


def test_outputs_are_written(chip, sens, tmp_path):
    data = {"strategies": [], "adc_sweep": [], "pareto": [], "chip": chip, "sensitivity": sens}
    from unittest import mock
    with mock.patch.object(R, "_plots", return_value={}), mock.patch.object(R, "summary_markdown", return_value=""):
        files = R.write_outputs(data, tmp_path, hw="paper-256", chip=CHIP)
    names = {f.name for f in files}
    assert {"iso_area.csv", "iso_adc.csv", "need.csv", "sensitivity.csv", "sensitivity.md", "sensitivity.png",
            "pareto_chip_tiny-bert.png", "pareto_chip_tiny-gpt2.png", "breakdown_iso_area_tiny-bert.png"} <= names
    for f in files:
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 2000, f
    with open(tmp_path / "iso_area.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["strategy"] for r in rows} == set(STRATEGIES) and "_parts" not in rows[0]
    with open(tmp_path / "sensitivity.csv") as fh:
        assert next(csv.reader(fh)) == SENSITIVITY_COLUMNS
    md = (tmp_path / "sensitivity.md").read_text()
    assert all(f"## {h}: paper {v}x" in md for h, v in R.HEADLINES.items())


def test_reproduce_takes_number_formats(monkeypatch):
    """Format options set every grid's configuration (with the ADC width the format implies); a bad one fails
    before any work."""
    from cimisa.errors import ConfigError
    grids = []
    monkeypatch.setattr(R, "_run", lambda grid, *a, **k: grids.append(grid) or [])
    R.reproduce("fpga-tiny", 8, ("tiny-bert",), chip=None, formats={"cell_bits": 1, "weight_encoding": "differential"})
    assert {(p.hw.cell_bits, p.hw.weight_encoding, p.hw.adc_bits) for p in G.points(grids[0])} == {
        (1, "differential", 6)}
    with pytest.raises(ConfigError, match="cell_bits must be at most 3"):
        R.reproduce("fpga-tiny", 8, ("tiny-bert",), chip=CHIP, formats={"cell_bits": 4,
                                                                         "weight_encoding": "differential"})
