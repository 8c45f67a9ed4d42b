"""``python -m mapper sweep`` (mapper.sweep): grid validation, rows equal to a serial run on a Dask cluster that
loses a worker, interrupt-and-resume computing only missing points, failing points as rows, the cache key, and
the shipped reproduce grid against ``mapper reproduce``'s own figures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from mapper.sweep import grid as G
from mapper.sweep.point import evaluate_point
from mapper.sweep.results import front, read_table
from mapper.sweep.runner import run_sweep

REPO = Path(__file__).resolve().parents[1]
KILL_FLAG = "CIM_TEST_SWEEP_KILL_FLAG"

TINY = """
[sweep]
name = "tiny"
[fixed]
weights = false
[axes]
model = ["tiny-bert", "tiny-gpt2"]
strategy = ["linear", "sparse", "dense", "auto"]
setting = [{ adcs = 8 }, { adcs = 300 }, { nblocks = 65 }, { adcs = 4, "cost.t_adc_ns" = 2.0 }]
"""


def _cli(*args, cwd: Path, check_rc: int | None = None, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "mapper", "sweep", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300, **kw)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr
    return proc


def _grid(text: str, **axes) -> G.Grid:
    data = tomllib.loads(text)
    data.setdefault("axes", {}).update(axes)
    return G.parse_grid(data)


def _kill_once(point):
    """The point function of the kill test: the first call anywhere kills its own worker process."""
    try:
        fd = os.open(os.environ[KILL_FLAG], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return evaluate_point(point)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os._exit(1)


# ---- grid validation ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expect", [
    ("[fixed]\nmodel='tiny-bert'\nbogus=1\n[axes]\nstrategy=['auto','diagonal']\nrows=[]\n[extra]\n",
     ["unknown setting 'bogus'", "strategy must be one of linear, sparse, dense, auto, not 'diagonal'",
      "rows: must be a non-empty list", "unknown table [extra]"]),
    ("[axes]\nstrategy=['auto']\n", ["no model"]),
    ("[fixed]\nmodel='tiny-bert'\nadcs=4\n[axes]\nadcs_per_array=[2, 2]\n",
     ["repeats a value", "set adcs or adcs_per_array, not both"]),
    ("[fixed]\nmodel='tiny-bert'\nrows=128\n[axes]\narray=[{rows=64, cols=64}]\n",
     ["rows is already set by [fixed]"]),
    ("[fixed]\nmodel='tiny-bert'\n[axes]\nmix=[{rows=64, speed=2}]\ncost={t_adc_ns=[1.0], nope=[2]}\n",
     ["[axes] mix: unknown setting 'speed'", "unknown setting 'cost.nope'"]),
    ("[fixed]\nmodel='tiny-bert'\nnblocks=0\nweights='yes'\n",
     ["nblocks must be a positive integer, not 0", "weights must be true or false"]),
])
def test_grid_problems_listed_together(text, expect):
    with pytest.raises(G.ConfigError) as info:
        G.parse_grid(tomllib.loads(text), origin="g.toml")
    msg = info.value.one_line()
    assert msg.startswith("g.toml: ")
    for e in expect:
        assert e in msg


@pytest.mark.parametrize("content, args, expect", [
    ("[fixed]\nmodel='tiny-bert'\n[axes]\nstrategy=['x']\nrowz=[1]\n", [],
     "strategy must be one of linear, sparse, dense, auto, not 'x'; [axes]: unknown setting 'rowz'"),
    ("[fixed\n", [], "not valid TOML"),
    ("[fixed]\nmodel='no-such-model'\n", [], "unknown model 'no-such-model'"),
    ("[fixed]\nmodel='tiny-bert'\nhw='no-such-hw'\n", [], "unknown hardware configuration 'no-such-hw'"),
    (None, ["--grid", "no-such-grid"], "unknown grid 'no-such-grid'"),
    ("[fixed]\nmodel='tiny-bert'\n", ["--workers", "-1"], "--workers"),
    ("[fixed]\nmodel='tiny-bert'\n", ["--scheduler", "localhost"], "tcp://HOST:PORT"),
])
def test_cli_bad_input_is_one_error_line(tmp_path, content, args, expect):
    if content is not None:
        (tmp_path / "g.toml").write_text(content)
        args = ["--grid", "g.toml", *args]
    proc = _cli(*args, "--out", "o", cwd=tmp_path, check_rc=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


# ---- rows, failures, a killed worker ---------------------------------------------------------------------------

def test_dask_rows_equal_serial_and_a_killed_worker_loses_no_point(tmp_path, monkeypatch):
    grid = _grid(TINY)
    ref = run_sweep(grid, tmp_path / "serial", workers=0)
    assert ref["points"] == 32 and ref["computed"] == 24 and ref["failed"] == 16
    rows = ref["rows"]
    bad_cfg = [r for r in rows if r["adcs"] == 300]
    bad_nb = [r for r in rows if r["nblocks"] == 65]
    assert all("adcs_per_array must be at most cols (256), not 300" in r["error"] for r in bad_cfg)
    assert all("nblocks 65 does not fit" in r["error"] for r in bad_nb) and len(bad_nb) == 8
    ok = [r for r in rows if r["error"] is None]
    assert len(ok) == 16 and all(r["latency_ns"] > 0 and r["arrays"] >= 1 for r in ok)
    assert {r["config.cost.t_adc_ns"] for r in ok} == {1.0, 2.0}
    # Parquet and CSV hold the same rows
    assert read_table(tmp_path / "serial" / "results.parquet") == rows
    assert read_table(tmp_path / "serial" / "results.csv") == rows

    monkeypatch.setenv(KILL_FLAG, str(tmp_path / "killed"))
    said = []
    res = run_sweep(grid, tmp_path / "dask", workers=2, func=_kill_once, say=said.append)
    assert (tmp_path / "killed").is_file()                  # a worker did die mid-sweep
    assert said and "local cluster of 2 worker processes" in said[0]
    assert res["computed"] == 24 and res["failed"] == 16
    assert res["rows"] == rows
    assert len(list((tmp_path / "dask" / "points").iterdir())) == 24   # config errors are not cached


# ---- interrupt and resume ---------------------------------------------------------------------------------------

def test_interrupted_sweep_resumes_computing_only_missing_points(tmp_path):
    text = TINY.replace('setting = [', 'adcs = [2, 4, 8, 16, 32]\n# setting = [')
    (tmp_path / "g.toml").write_text(text)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "mapper", "sweep", "--grid", "g.toml", "--out", "o",
                             "--workers", "1", "--no-plots"], cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    points = tmp_path / "o" / "points"
    deadline = time.monotonic() + 200
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if points.is_dir() and len([p for p in points.iterdir() if p.suffix == ".json"]) >= 3:
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)              # the client and its workers, at once
        proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in points.iterdir() if p.suffix == ".json"}
    assert 3 <= len(done) < 40, "the sweep was not interrupted mid-way"
    out = _cli("--grid", "g.toml", "--out", "o", "--workers", "0", "--no-plots", cwd=tmp_path, check_rc=0).stdout
    assert f"40 points: {len(done)} from the cache, {40 - len(done)} computed, 0 failed" in out
    assert all((points / n).stat().st_mtime_ns == t for n, t in done.items())    # not rewritten
    out = _cli("--grid", "g.toml", "--out", "o", "--workers", "0", "--no-plots", cwd=tmp_path, check_rc=0).stdout
    assert "40 points: 40 from the cache, 0 computed, 0 failed" in out
    # another grid into the same folder: refused, then --force starts over keeping the shared points
    (tmp_path / "g.toml").write_text(text.replace("adcs = [2, 4, 8, 16, 32]", "adcs = [2, 4, 64]"))
    err = _cli("--grid", "g.toml", "--out", "o", "--workers", "0", cwd=tmp_path, check_rc=2).stderr
    assert "holds the sweep 'tiny' of another grid" in err and err.count("\n") == 1
    out = _cli("--grid", "g.toml", "--out", "o", "--workers", "0", "--force", cwd=tmp_path, check_rc=0).stdout
    assert "24 points: 16 from the cache, 8 computed, 0 failed" in out
    assert (tmp_path / "o" / "pareto.png").is_file() and (tmp_path / "o" / ".cim-kit-output").is_file()
    # a folder the kit did not write is refused
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    err = _cli("--grid", "g.toml", "--out", "mine", "--workers", "0", cwd=tmp_path, check_rc=2).stderr
    assert "was not written by the kit" in err and (tmp_path / "mine" / "notes.txt").is_file()


# ---- the cache key -----------------------------------------------------------------------------------------------

def test_point_hash_changes_with_every_input(monkeypatch, tmp_path):
    base = "[fixed]\nmodel='tiny-bert'\nstrategy='auto'\nrows_per_cycle=16\n[fixed.cost]\nt_adc_ns=1.0\n"
    ref = G.points(G.parse_grid(tomllib.loads(base)))[0]
    variants = {
        "model": base.replace("tiny-bert", "tiny-gpt2"),
        "option": base.replace("'auto'", "'dense'"),
        "config key": base.replace("rows_per_cycle=16", "rows_per_cycle=8"),
        "cost key": base.replace("t_adc_ns=1.0", "t_adc_ns=1.5"),
        "hw": base.replace("[fixed]\n", "[fixed]\nhw='fpga-tiny'\n"),
    }
    ids = {k: G.points(G.parse_grid(tomllib.loads(v)))[0].id for k, v in variants.items()}
    assert len(set(ids.values()) | {ref.id}) == len(ids) + 1, ids
    # the same configuration written two ways is the same point
    same = base.replace("t_adc_ns=1.0", "t_adc_ns=1")
    assert G.points(G.parse_grid(tomllib.loads(same)))[0].id == ref.id
    monkeypatch.setattr(G, "kit_version", lambda: "9.9.9")
    assert G.points(G.parse_grid(tomllib.loads(base)))[0].id != ref.id
    # a model folder counts by its files' content
    from mapper.sweep.store import model_key
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    k1 = model_key(str(folder))
    (folder / "config.json").write_text("{ }")
    assert model_key(str(folder)) != k1 and model_key("tiny-bert") == "tiny-bert"


def test_pareto_front():
    pairs = [(1, 5), (2, 3), (2, 4), (3, 3), (4, 1), None, (1, 5)]
    assert front(pairs) == [True, True, False, False, True, False, True]


# ---- the shipped grids -------------------------------------------------------------------------------------------

def test_shipped_grids():
    assert {"tiny", "reproduce", "reproduce-chip", "sensitivity", "bert-large-200"} <= set(G.shipped_grids())
    assert G.load_grid(G.grid_path("tiny")).size == 16
    big = G.load_grid(G.grid_path("bert-large-200"))
    assert big.size >= 200 and big.fixed["model"] == "bert-large" and big.fixed["weights"] is False
    rep = G.load_grid(G.grid_path("reproduce"))
    assert rep.size == 60 and len({p.id for p in G.points(rep)}) == 60
    moved = rep.derive(fixed={"model": "bert-large", "nblocks": 16}, axes={"strategy": ["auto"]})
    assert moved.size == 5 and moved.fixed["nblocks"] == 16 and moved.hash != rep.hash
    with pytest.raises(G.ConfigError, match="strategy must be one of"):
        rep.derive(axes={"strategy": ["diagonal"]})


def test_reproduce_runs_its_grid_and_equals_direct_figures(tmp_path):
    """``mapper reproduce`` runs the shipped ``reproduce`` grid; its tables equal figures computed directly from
    placement, schedule and cost (the independent oracle: no build, no sweep)."""
    from cimisa.config import CostParams, load_hw
    from compiler.cost import ModelDims, estimate
    from compiler.geometry import default_nblocks, geometry
    from compiler.kinds import AdcMode, Strategy
    from compiler.place import place
    from compiler.schedule import schedule
    from mapper.cli_reproduce import ADC_SWEEP, reproduce
    from mapper.models import load_model_spec
    models = ("tiny-bert", "tiny-gpt2")
    data = reproduce("paper-256", None, models, sweep_dir=tmp_path / "s", chip=None)
    assert len(data["sweep"]) == G.load_grid(G.grid_path("reproduce")).derive(axes={"model": list(models)}).size
    assert (tmp_path / "s" / "reproduce" / "results.parquet").is_file()
    assert data["chip"] == {} and data["sensitivity"] == []
    hw = load_hw("paper-256")
    for model in models:
        spec = load_model_spec(model)
        geoms = geometry(spec, default_nblocks(spec))
        dims = ModelDims.of(spec)
        scheds = {st: schedule(place(geoms, hw, st), hw, AdcMode.PAPER) for st in Strategy}
        for preset in ("kit", "paper"):
            cfg = hw.replace(cost=CostParams.preset(preset))
            costs = {st: estimate(scheds[st], cfg, dims) for st in Strategy}
            for st in Strategy:
                want_pl, want = scheds[st].placement, costs[st]
                got = [r for r in data["strategies"] if r["model"] == model and r["cost_preset"] == preset
                       and r["strategy"] == st]
                assert len(got) == 1
                g = got[0]
                assert (g["arrays"], g["lower_bound"]) == (want_pl.n_arrays, want_pl.lower_bound)
                assert g["monarch_lower_bound"] == -(-want_pl.monarch_cells // want_pl.cells_per_array)
                assert g["utilization"] == pytest.approx(want_pl.utilization, abs=0.000051)
                assert g["latency_ns"] == pytest.approx(want.decode_latency_ns, abs=0.051)
                assert g["energy_nj"] == pytest.approx(want.decode_energy_nj, abs=0.011)
                lin = costs[Strategy.LINEAR]
                assert g["speedup_vs_linear"] == pytest.approx(lin.decode_latency_ns / want.decode_latency_ns,
                                                               abs=0.00051)
                assert g["adc_bits"] == "/".join(str(b) for b in want.adc_bits_histogram)
        for adcs in ADC_SWEEP:
            cfg = hw.replace(cost=CostParams.preset("kit"), adcs_per_array=adcs)
            for st in Strategy:
                want = estimate(scheds[st], cfg, dims)
                got = [r for r in data["adc_sweep"] if r["model"] == model and r["strategy"] == st
                       and r["adcs_per_array"] == adcs]
                assert len(got) == 1
                assert got[0]["matmul_latency_ns"] == pytest.approx(want.matmul_latency_ns, abs=0.051)
                assert got[0]["energy_nj"] == pytest.approx(want.decode_energy_nj, abs=0.011)


def test_accuracy_front_and_plot_with_weights(tmp_path):
    from mapper.sweep.plots import pareto_plot
    grid = _grid("[sweep]\nname='acc'\n[fixed]\nmodel='tiny-bert'\n[axes]\nstrategy=['linear','dense']\n")
    rows = run_sweep(grid, tmp_path / "s", workers=0)["rows"]
    assert all(r["stream.adc_error.mean_rel_l2"] is not None and r["stream.exact"] for r in rows)
    assert any(r["front.latency_accuracy"] for r in rows)
    fig = pareto_plot(rows, tmp_path / "s" / "pareto.png", "acc")
    assert len(fig.axes) == 4 and "Sweep acc" in fig._suptitle.get_text()          # + latency vs chip area
    assert fig.axes[-1].get_ylabel() == "chip area (mm^2)"
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["points"] == 2


def test_number_formats_and_the_accuracy_rule_in_a_grid():
    """Format keys set the configuration, max_error reaches the build, and an accuracy point without its bound
    (or wider ADCs than its format's lossless width) is a row with its error, not a crash."""
    from mapper.sweep.point import build_options, run_point
    grid = _grid("[sweep]\nname='fmt'\n[fixed]\nmodel='tiny-bert'\nhw='fpga-tiny'\nadc_mode='accuracy'\n"
                 "[axes]\nmax_error=[0.05]\nformat=[{cell_bits=0}, {cell_bits=1, weight_encoding='differential', "
                 "adc_bits=6}, {cell_bits=1, weight_encoding='differential'}]\n")
    pts = G.points(grid)
    assert [p.hw.fmt.cols_per_weight if p.hw else None for p in pts] == [1, 6, None]
    assert "adc_bits must be at most 6" in pts[2].error
    assert build_options(pts[0].options).max_error == 0.05
    no_bound = G.points(_grid("[sweep]\nname='nb'\n[fixed]\nmodel='tiny-bert'\nhw='fpga-tiny'\nweights=false\n"
                              "[axes]\nadc_mode=['accuracy']\n"))[0]
    row = run_point(evaluate_point, no_bound)
    assert "--max-error" in row["error"]
