"""``mapper build`` / ``mapper reproduce``: outputs, determinism, clean errors, snapshots of command streams."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cimisa.config import load_hw
from cimisa.stream import dumps_jsonl
from compiler.place import geometry
from compiler.program import compile_model
from mapper.cli import main
from mapper.models import load_model_spec

SNAP = Path(__file__).parent / "snapshots"
SUMMARY_KEYS = {"arrays", "lower_bound_arrays", "utilization", "params_dense", "params_monarch", "macs_dense",
                "macs_monarch", "latency_ns", "energy_nj"}
PERF_KEYS = {"prefill_latency_ns", "ttft_ns", "decode_tokens_per_s", "energy_per_token_nj", "static_energy_nj",
             "area_mm2"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "tiny-bert"
    assert main(["build", "--model", "tiny-bert", "--hw", "fpga-tiny", "--out", str(out)]) == 0
    return out


def test_build_outputs(built):
    names = {p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()}
    assert {"report.json", "mapping.json", "commands.bin", "commands.jsonl", "plots/occupancy.png",
            "plots/utilization_per_layer.png", "plots/breakdown.png", "plots/pareto.png"} <= names
    rep = json.loads((built / "report.json").read_text())
    s = rep["summary"]
    assert SUMMARY_KEYS <= set(s) and SUMMARY_KEYS <= set(s["baseline"])
    assert s["baseline"]["strategy"] == "linear"
    assert s["arrays"] == s["lower_bound_arrays"]
    assert rep["stream"]["exact"] is True and "mean_rel_l2" in rep["stream"]["adc_error"]
    assert rep["layers"] and {"linear", "sparse", "dense", "auto"} == set(rep["utilization_per_layer"])
    assert any(p["on_front"] for p in rep["pareto"])
    mp = json.loads((built / "mapping.json").read_text())
    assert mp["arrays"] == s["arrays"] and len(mp["tiles"]) > 0
    # the simulator's figures, its full report and the chip, for the main strategy and every one compared
    assert PERF_KEYS <= set(s) and PERF_KEYS <= set(s["baseline"]) and {"perf", "chip"} <= set(s)
    assert all(PERF_KEYS <= set(row) for row in rep["strategies"].values())
    assert s["chip"]["budget"] == "fixed" and s["chip"]["epochs"] == 1
    o = rep["options"]
    assert (o["row_steps"], o["budget"], o["weight_reload"], o["decode_tokens"]) == (4, "fixed", False, 1)
    assert o["prefill_tokens"] == load_model_spec("tiny-bert").seq_len
    assert {"timeline_token.png", "perf_breakdown.png"} <= {p.name for p in (built / "plots").iterdir()}


def test_build_is_deterministic(built, tmp_path):
    again = tmp_path / "again"
    assert main(["build", "--model", "tiny-bert", "--hw", "fpga-tiny", "--out", str(again)]) == 0
    for p in built.rglob("*"):
        if p.is_file():
            assert (again / p.relative_to(built)).read_bytes() == p.read_bytes(), p.name


@pytest.mark.parametrize("argv,needle", [
    (["--model", "no-such-model"], "unknown model"),
    (["--model", "tiny-bert", "--hw", "no-such-hw"], "unknown hardware configuration"),
    (["--model", "tiny-bert", "--hw", "fpga-tiny", "--arrays", "3"], "budget too small"),
    (["--model", "tiny-bert", "--hw", "fpga-tiny", "--nblocks", "100"], "nblocks"),
    (["--model", "tiny-bert", "--strategy", "best"], "--strategy: invalid choice"),
])
def test_build_errors_are_one_line_and_leave_nothing(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    assert main(["build", *argv, "--out", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_shape_only_build_has_no_stream(tmp_path):
    out = tmp_path / "gpt2"
    assert main(["build", "--model", "gpt2", "--strategy", "sparse", "--no-plots", "--out", str(out)]) == 0
    assert not (out / "commands.bin").exists()
    rep = json.loads((out / "report.json").read_text())
    assert rep["stream"] is None and rep["summary"]["utilization"] < 0.15


def test_cli_subprocess(tmp_path):
    out = tmp_path / "sub"
    r = subprocess.run([sys.executable, "-m", "mapper", "build", "--model", "tiny-gpt2", "--hw", "fpga-tiny",
                        "--strategy", "dense", "--no-plots", "--out", str(out)], capture_output=True, text=True,
                       cwd=Path(__file__).parents[1], timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "commands.bin").is_file() and "dense" in r.stdout


def test_reproduce_small(tmp_path):
    out = tmp_path / "rep"
    assert main(["reproduce", "--out", str(out), "--hw", "fpga-tiny", "--chip", "chip-tiny-4t", "--nblocks", "8",
                 "--models", "tiny-bert", "--no-sensitivity", "--workers", "0", "--prefill-tokens", "8"]) == 0
    for f in ("strategies.csv", "adc_sweep.csv", "pareto.csv", "summary.md", "arrays_utilization.png",
              "latency_energy_vs_linear.png", "adc_sweep.png", "pareto.png", "iso_area.csv", "iso_adc.csv",
              "need.csv"):
        assert (out / f).is_file(), f
    assert "tiny-bert" in (out / "strategies.csv").read_text()


@pytest.mark.slow
def test_reproduce_paper_models(tmp_path):
    out = tmp_path / "rep"
    # the paper's three models, every flat table and the chip tables (a short prompt; the sensitivity map has
    # its own tests in tests/test_reproduce.py)
    assert main(["reproduce", "--out", str(out), "--no-sensitivity", "--prefill-tokens", "16"]) == 0
    rows = (out / "strategies.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2 * 4
    import csv
    for table in ("iso_area.csv", "iso_adc.csv", "need.csv"):
        got = {(r["model"], r["strategy"]) for r in csv.DictReader((out / table).open())}
        assert got == {(m, s) for m in ("bert-large", "bart-large", "gpt2-medium")
                       for s in ("linear", "sparse", "dense", "auto")}, table


# ---- snapshots ----------------------------------------------------------------------------------------------

def snapshot_stream(model: str) -> str:
    """Return the JSONL stream of ``model`` on fpga-tiny (auto, co-located), from seeded numpy factors.

    Factors come from a numpy generator (not from the torch projection), so the snapshot does not depend on
    floating-point details of the machine.
    """
    spec = load_model_spec(model)
    hw = load_hw("fpga-tiny")
    rng = np.random.default_rng(7)
    factors = {g.name: (rng.standard_normal(g.r_shape), rng.standard_normal(g.l_shape), None)
               for g in geometry(spec, 8)}
    cm = compile_model(spec, factors, hw, strategy="auto", adc_mode="paper", colocate=True)
    inputs = {n: rng.integers(-128, 128, size=cm.quant[n].in_features) for n in cm.programs}
    for n, p in cm.programs.items():
        if p.depends_on:
            inputs[n] = inputs[p.depends_on[0]]
    text = dumps_jsonl(hw, cm.full_stream(inputs))
    head, _, rest = text.partition("\n")
    head = json.loads(head)
    head["hw"].pop("cost")          # cost-model constants do not change the stream
    return json.dumps(head, sort_keys=True) + "\n" + rest


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-gpt2"])
def test_snapshot(model):
    path = SNAP / f"{model}.jsonl"
    text = snapshot_stream(model)
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        path.write_text(text)
    old = path.read_text().splitlines()
    new = text.splitlines()
    diff = [f"line {i}: {a[:120]} != {b[:120]}" for i, (a, b) in enumerate(zip(old, new)) if a != b]
    assert len(old) == len(new) and not diff, (f"{model}: stream changed ({len(diff)} lines, {len(old)} -> "
                                               f"{len(new)}); rerun with UPDATE_SNAPSHOTS=1 if intended:\n"
                                               + "\n".join(diff[:5]))


def test_build_from_a_d2s_folder(tmp_path):
    """`mapper d2s` output feeds `mapper build`: the folder's nblocks is used and the stream is exact."""
    assert main(["d2s", "--model", "tiny-bert", "--nblocks", "4", "--out", str(tmp_path / "f")]) == 0
    assert main(["build", "--model", str(tmp_path / "f"), "--hw", "fpga-tiny", "--out", str(tmp_path / "b")]) == 0
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rep["summary"]["arrays"] >= rep["summary"]["lower_bound_arrays"] > 0
    assert (tmp_path / "b" / "commands.bin").stat().st_size > 0
    from cimisa.stream import read_stream
    from sw_model import run
    f = read_stream(tmp_path / "b" / "commands.bin")
    assert run(f.cfg, f.words).ok
    # an explicit nblocks that disagrees with the folder is a one-line user error
    assert main(["build", "--model", str(tmp_path / "f"), "--nblocks", "8", "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c").exists()


def _shape_build(model="tiny-bert", hw="chip-tiny-4t", **kw):
    from mapper.pipeline import BuildOptions, build
    return build(model, hw, BuildOptions(weights=False, **kw))


def test_chip_build_iso_adc_maps_every_strategy_onto_its_chip():
    res = _shape_build(budget="iso-adc", decode_tokens=2, prefill_tokens=8)
    rep = res.report()
    chip = rep["summary"]["chip"]
    assert chip["budget"] == "iso-adc" and chip["reference"] == "linear"
    ref_adcs = res.compare["linear"].chip.hw.total_adcs
    for st, r in res.compare.items():
        assert r.chip.violations(r.placement) == [], st
        assert r.chip.hw.total_adcs <= ref_adcs and r.chip.hw.n_arrays >= r.placement.n_arrays
    assert rep["options"]["decode_tokens"] == 2 and rep["options"]["prefill_tokens"] == 8
    assert rep["summary"]["area_mm2"] == pytest.approx(res.main.perf.summary()["area_mm2"], rel=1e-3)


def test_weight_reload_build_runs_in_epochs(tmp_path):
    small = tmp_path / "small.toml"
    small.write_text('base = "chip-tiny-4t"\nname = "small"\nn_arrays = 48\n')
    from cimisa.errors import KitError
    with pytest.raises(KitError, match="needs 64 arrays"):
        _shape_build(hw=str(small), strategy="linear", prefill_tokens=4)
    res = _shape_build(hw=str(small), strategy="linear", weight_reload=True, prefill_tokens=4)
    chip = res.report()["summary"]["chip"]
    assert chip["epochs"] >= 2 and all(r > 0 for r in chip["reload_rows"][1:])


def test_row_steps_option_reaches_the_dense_placement():
    one = _shape_build(hw="fpga-tiny", strategy="dense", row_steps=1, simulate=False)
    four = _shape_build(hw="fpga-tiny", strategy="dense", simulate=False)
    assert one.main.placement.row_steps == 1 and four.main.placement.row_steps == 4
    assert one.report()["options"]["row_steps"] == 1
    assert len(one.main.schedule.activations) < len(four.main.schedule.activations)
    assert "perf" not in one.report()["summary"]                  # simulate=False: analytic figures only


def test_decoder_models_decode_sixteen_tokens_by_default():
    rep = _shape_build(model="tiny-gpt2", hw="fpga-tiny", strategy="sparse", prefill_tokens=4).report()
    assert rep["options"]["decode_tokens"] == 16


def test_stream_check_uses_the_streamed_placement():
    """A weights build with DenseMap row steps 1 checks the stream it writes (not a re-placement with 4)."""
    from mapper.pipeline import BuildOptions, build
    res = build("tiny-bert", "fpga-tiny", BuildOptions(strategy="dense", row_steps=1, with_pareto=False,
                                                       simulate=False))
    assert res.check.exact and res.main.placement.row_steps == 1
    mvms = sum(1 for c in res.commands if c.op.name == "MVM")
    assert mvms == len(res.main.schedule.activations)
    # the paper-ADC check ran the same schedule: row steps set the ADC bits (32 rows -> 5 b; 8 rows -> 3 b)
    assert res.check.adc_error.adc_bits == {str(k): v for k, v in res.main.schedule.adc_bits_histogram().items()}


# ---- number formats and the accuracy ADC rule (issue 14) -----------------------------------------------------
FORMAT_ARGS = ["--cell-bits", "1", "--weight-encoding", "differential", "--input-encoding", "sign-magnitude",
               "--dac-bits", "2", "--adc-rounding", "nearest"]


def test_format_options_reach_the_report(tmp_path, capsys):
    out = tmp_path / "f"
    assert main(["build", "--model", "tiny-bert", "--hw", "fpga-tiny", *FORMAT_ARGS, "--no-weights", "--no-plots",
                 "--strategy", "sparse", "--prefill-tokens", "1", "--decode-tokens", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    hw = rep["hw"]
    assert (hw["cell_bits"], hw["weight_encoding"], hw["input_encoding"], hw["dac_bits"], hw["adc_rounding"]) == (
        1, "differential", "sign-magnitude", 2, "nearest")
    want = load_hw("fpga-tiny").replace(cell_bits=1, weight_encoding="differential", input_encoding="sign-magnitude",
                                        dac_bits=2, adc_rounding="nearest", adc_bits=hw["adc_bits"])
    f = rep["format"]
    assert f["describe"] == want.fmt.describe() and f["describe"] in printed.replace("\n", "")
    # 4-bit weights: 3 magnitude slices, each a + and - cell; 32 physical columns hold 5 weights per row
    assert (f["cells_per_weight"], f["physical_cols"], f["logical_cols"]) == (6, 32, 5)
    # fpga-tiny's 9-bit ADCs are capped at the format's lossless width (signed sums of 32 rows of 0/1 cells
    # driven -3..3: -96..96, 8 bits); a format left alone keeps the configuration's own ADCs
    assert hw["adc_bits"] == want.lossless_adc_bits == 8
    from mapper.cli_args import with_format
    assert with_format("fpga-tiny", {"cell_bits": None}) == load_hw("fpga-tiny")


@pytest.mark.parametrize("argv,needle", [
    (["--cell-bits", "17"], "--cell-bits"),
    (["--cell-bits", "4", "--weight-encoding", "differential"], "cell_bits must be at most 3"),
    (["--weight-encoding", "ones"], "--weight-encoding"),
    (["--dac-bits", "8"], "dac_bits must be at most 7"),
    (["--adc-rounding", "up"], "--adc-rounding"),
    (["--adc-mode", "accuracy"], "--max-error"),
    (["--max-error", "0.1"], "accuracy ADC rule only"),
    (["--adc-mode", "accuracy", "--max-error", "-0.5"], "--max-error"),
    (["--adc-mode", "accuracy", "--max-error", "0.1", "--no-weights"], "needs its weights"),
])
def test_format_and_accuracy_option_errors(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    assert main(["build", "--model", "tiny-bert", "--hw", "fpga-tiny", *argv, "--out", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


def _stream_errors(cm, seeds) -> list[float]:
    """Relative L2 error of every matmul output of ``cm``'s full stream (run on sw_model from its words) against
    the float product, for the inputs of each seed: measured independently of mapper.adc_select."""
    from compiler.quant import float_product
    from compiler.stream_inputs import stream_inputs
    from sw_model import run_commands
    errs = []
    for seed in seeds:
        inputs = stream_inputs(cm, seed)
        out = run_commands(cm.hw, cm.full_stream(inputs)).results
        pos = 0
        for name in cm.program_order(inputs):
            p = cm.programs[name]
            ref = float_product(cm.quant[name], inputs[name], p.requant_shift)
            errs.append(float(np.linalg.norm(out[pos:pos + p.out_len] - ref) / np.linalg.norm(ref)))
            pos += p.out_len
    return errs


@pytest.fixture(scope="module")
def tiny_compiled():
    from mapper.pipeline import load_factors
    spec = load_model_spec("tiny-bert")
    factors = load_factors("tiny-bert", spec, 8)
    hw = load_hw("fpga-tiny")
    return {mode: compile_model(spec, factors, hw, strategy="auto", adc_mode=mode, colocate=True)
            for mode in ("exact", "accuracy")}


HELD_OUT = (7, 8, 9, 10)          # neither the calibration seeds nor the held-out seeds of the rule


def test_accuracy_rule_meets_its_bound_with_fewer_bits(tiny_compiled):
    from mapper.adc_select import CALIB_SEEDS, select_for_build
    assert not set(HELD_OUT) & set(CALIB_SEEDS)
    sel = select_for_build(tiny_compiled["accuracy"], 0.02)
    cm = sel.compiled
    assert np.mean(_stream_errors(cm, HELD_OUT)) <= 0.02 and sel.heldout_error <= 0.02
    exact_bits = sum(a.adc_bits for a in tiny_compiled["exact"].schedule.activations)
    mvms = [c for p in cm.programs.values() for c in p.commands if c.op.name == "MVM"]
    assert sum(c.args["adc_bits"] for c in mvms) < exact_bits
    # the schedule (what the cost model and the simulator price) carries the stream's settings
    assert sorted((c.args["adc_bits"], c.args["adc_shift"]) for c in mvms) == sorted(
        (a.adc_bits, a.adc_shift) for a in cm.schedule.activations)


def test_accuracy_rule_without_its_verification_is_caught(tiny_compiled, monkeypatch):
    """Mutant: per-MVM picks at the bound without running the stream (the verification loop skipped)."""
    from mapper import adc_select
    bound = 0.3
    honest = adc_select.select_for_build(tiny_compiled["accuracy"], bound)
    assert honest.choice.rounds > 1 and np.mean(_stream_errors(honest.compiled, HELD_OUT)) <= bound
    monkeypatch.setattr(adc_select, "stream_error", lambda outs, refs: 0.0)
    mutant = adc_select.select_for_build(tiny_compiled["accuracy"], bound)
    assert np.mean(_stream_errors(mutant.compiled, HELD_OUT)) > bound


def test_accuracy_build_prices_the_chosen_bits():
    from mapper.pipeline import BuildOptions, build
    opts = dict(with_pareto=False, simulate=False)
    acc = build("tiny-bert", "fpga-tiny", BuildOptions(adc_mode="accuracy", max_error=0.02, **opts))
    exact = build("tiny-bert", "fpga-tiny", BuildOptions(adc_mode="exact", **opts))
    rep = acc.report()
    sel = rep["adc_selection"]
    assert rep["options"]["max_error"] == 0.02 and sel["met_on_heldout"]
    assert rep["summary"]["adc_bits_histogram"] == sel["adc_bits_histogram"]
    assert sel["adc_bits_sum"] < sel["lossless_adc_bits_sum"]
    assert rep["summary"]["energy_nj"] < exact.report()["summary"]["energy_nj"]
    streamed = sorted(c.args["adc_bits"] for c in acc.commands if c.op.name == "MVM")
    assert streamed == sorted(a.adc_bits for a in acc.main.schedule.activations)


@pytest.mark.parametrize("strategy", ["auto", "sparse", "linear"])
def test_sliced_cells_keep_the_paper_adc_rule_accurate(strategy):
    """Issue 14's done-when: 1-bit differential cells make the paper's log2(rows) ADCs nearly lossless
    (one-cell 4-bit weights with the same rule: error above 1)."""
    from mapper.pipeline import load_factors
    from mapper.stream_check import stream_check
    spec = load_model_spec("tiny-bert")
    factors = load_factors("tiny-bert", spec, 8)
    sliced = stream_check(spec, factors, load_hw("fpga-tiny-sliced"), strategy)
    assert sliced.exact and sliced.adc_error.mean_rel_l2 <= 0.01
    if strategy == "auto":
        assert stream_check(spec, factors, load_hw("fpga-tiny"), strategy).adc_error.mean_rel_l2 > 1
