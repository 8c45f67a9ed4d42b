"""``python -m mapper reproduce``: the paper's comparisons for BERT-large, BART-large and GPT-2-medium.

Two machines. The flat one (``--hw``, default ``paper-256``: every array owns its ADCs, as many arrays as a
strategy needs, per-token decode cost from the analytic model): arrays, lower bound and utilisation per strategy;
decode latency and energy against Linear under both cost presets (``kit`` and ``paper``); the sweep of ADCs per
array from 4 to 32; auto's Pareto front of arrays against latency (``strategies.csv``, ``adc_sweep.csv``,
``pareto.csv``). The chip (``--chip``, default ``chip-paper``: tiles sharing one periphery, a network, static
power and area; the performance simulator :mod:`perf`): every strategy on the same chip (``iso_area.csv``,
``iso_adc.csv``: the chip the strategy needs with its ADCs set so that the total area or ADC count equals
linear's) and on the chip each needs (``need.csv``): prefill latency of a sequence, time to first token, decode
tokens/s, energy per token, area. And the sensitivity map (``sensitivity.csv``/``.md``/``.png``): which of the
assumptions the paper leaves unstated reproduce its headline figures within 10 % (docs/paper-comparison.md).
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import math
from pathlib import Path

from cimisa import progress
from compiler.kinds import Strategy
from mapper import cli_args as A

__all__ = ["register", "run", "reproduce", "PAPER_MODELS", "ADC_SWEEP", "PAPER_FIGURES", "BUDGETS", "HEADLINES",
           "STATIC_SCALES", "ROW_STEPS", "TOLERANCE", "PREFILL_TOKENS", "chip_tables", "sensitivity_map",
           "write_outputs"]

PAPER_MODELS = ("bert-large", "bart-large", "gpt2-medium")
ADC_SWEEP = (4, 8, 16, 32)
STRATS = tuple(Strategy)
#: The paper's reported figures (arXiv 2510.11192; sources and tags in docs/paper-comparison.md, "The paper's figures").
PAPER_FIGURES = {
    "dense_array_reduction_vs_linear": "up to 0.87",
    "dense_array_reduction_vs_sparse": "> 0.73",
    "dense_avg_utilization": 0.788,
    "sparse_utilization": 0.125,
    "sparse_speedup_vs_linear": 1.59,
    "dense_speedup_vs_linear": 1.73,
    "dense_energy_gain_vs_linear": 1.74,
}
#: Chip budgets of the comparison (:mod:`compiler.budget`; reference ``linear``), each written to ``<budget>.csv``.
BUDGETS = ("iso-area", "iso-adc", "need")
#: The paper's headline figures the sensitivity map looks for: column -> the paper's value.
HEADLINES = {"sparse_speedup": PAPER_FIGURES["sparse_speedup_vs_linear"],
             "dense_speedup": PAPER_FIGURES["dense_speedup_vs_linear"],
             "dense_energy_gain": PAPER_FIGURES["dense_energy_gain_vs_linear"]}
#: Static power scales of the sensitivity map (every ``tech.p_*`` times the scale).
STATIC_SCALES = (0.0, 1.0, 10.0)
#: DenseMap row steps per block of the sensitivity map (the paper's four timestamps, and one).
ROW_STEPS = (4, 1)
#: A figure "reproduces" the paper's when within this fraction of it.
TOLERANCE = 0.10
#: Prefill tokens of the chip tables' and the sensitivity map's sequences by default: fewer than the paper's
#: 512 (BERT-large) and 1024 (BART-large, GPT-2-medium) so that the command takes minutes, not a quarter of an
#: hour (``--full-sequences``: each model's own; the attention share, and so the ratios, change with it).
PREFILL_TOKENS = 128


def register(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="regenerate the paper's comparisons (CSV + PNG)",
                              description="Regenerate the paper's comparisons for BERT-large, BART-large and "
                                          "GPT-2-medium: arrays, utilisation, latency and energy per strategy, the "
                                          "ADC sweep and auto's Pareto front on the flat machine; every strategy on "
                                          "the same chip (iso-area, iso-ADC) and on the chip it needs; the "
                                          "sensitivity map of the paper's unstated assumptions. Writes CSV, PNG "
                                          "and summary.md.")
    A.add_out_options(p, "output folder (default: reproduce-<hw> in the current folder); created or replaced as a "
                       "whole")
    p.add_argument("--hw", default="paper-256", type=A.path_text,
                   help="hardware configuration of the flat tables (default: paper-256)")
    p.add_argument("--chip", default="chip-paper", type=A.path_text,
                   help="chip of the iso-area, iso-ADC and need tables and of the sensitivity map: a built-in "
                        "name or a TOML/JSON file with a [chip] table (default: chip-paper)")
    A.add_format_options(p)
    A.add_nblocks_option(p)
    p.add_argument("--models", default=",".join(PAPER_MODELS), type=A.path_text,
                   help="comma-separated model names (default: %(default)s)")
    tokens = p.add_mutually_exclusive_group()
    tokens.add_argument("--prefill-tokens", type=A.positive_int, default=PREFILL_TOKENS, metavar="N",
                        help="prompt tokens of the chip tables' and the sensitivity map's sequences "
                             "(default: %(default)s)")
    tokens.add_argument("--full-sequences", action="store_true",
                        help="each model's own sequence length instead (512 BERT-large, 1024 BART-large and "
                             "GPT-2-medium: the paper's setting; several times slower)")
    p.add_argument("--no-sensitivity", action="store_true", help="skip the sensitivity map")
    p.add_argument("--workers", type=A.nonneg_int, default=None, metavar="N",
                   help="worker processes of a local Dask cluster for the sweeps (default: the usable cores; 0: "
                        "one point after the other in this process)")
    progress.add_common_options(p)
    p.set_defaults(func=run)


def _csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def _strategy_row(r: dict, preset: str) -> dict:
    """One row of ``strategies.csv`` from a sweep row (its ``baseline.*`` columns are linear on the same point)."""
    hist = [part.split(":")[0] for part in str(r["adc_bits_histogram"]).split()]
    return {
        "model": r["model"], "cost_preset": preset, "strategy": r["strategy"], "arrays": r["arrays"],
        "lower_bound": r["lower_bound_arrays"],
        "monarch_lower_bound": -(-r["params_monarch"] // (r["config.rows"] * r["config.cols"])),
        "utilization": round(r["utilization"], 4),
        "array_reduction_vs_linear": round(1 - r["arrays"] / r["baseline.arrays"], 4),
        "latency_ns": round(r["latency_ns"], 1), "energy_nj": round(r["energy_nj"], 2),
        "matmul_latency_ns": round(r["matmul_latency_ns"], 1), "matmul_energy_nj": round(r["matmul_energy_nj"], 2),
        "speedup_vs_linear": round(r["baseline.latency_ns"] / r["latency_ns"], 3),
        "matmul_speedup_vs_linear": round(r["baseline.matmul_latency_ns"] / r["matmul_latency_ns"], 3),
        "energy_gain_vs_linear": round(r["baseline.energy_nj"] / r["energy_nj"], 3),
        "matmul_energy_gain_vs_linear": round(r["baseline.matmul_energy_nj"] / r["matmul_energy_nj"], 3),
        "prefill_latency_ns": round(r["prefill_latency_ns"], 1),
        "adc_bits": "/".join(hist),
    }


def _run(grid, folder, extra: dict | None, sweep, *, chip: bool = False) -> list[dict]:
    """Run ``grid`` into ``folder`` with ``extra`` build options (``sweep``: :func:`mapper.sweep.runner.run_sweep`
    with the machine bound; ``chip``: each point's strategy alone on its chip,
    :func:`~mapper.sweep.point.evaluate_chip_point`); its rows, or a :class:`KitError` naming the first failed
    point."""
    from cimisa.errors import KitError
    from mapper.sweep.point import evaluate_chip_point, evaluate_point
    func = functools.partial(evaluate_chip_point if chip else evaluate_point, extra=extra)
    rows = sweep(grid, folder, func=func)["rows"]
    failed = [r for r in rows if r["error"] is not None]
    if failed:
        raise KitError(f"reproduce: {len(failed)} point(s) of {grid.name} failed, first: {failed[0]['error']}")
    return rows


def chip_tables(grid, root: Path, sweep, *, prefill_tokens: int | None = PREFILL_TOKENS, progress=None) -> dict:
    """Run ``grid`` (models x strategies on a chip) under every budget of :data:`BUDGETS` (reference linear),
    each into ``root / reproduce-chip-<budget>``; return ``{budget: rows}`` (:func:`~mapper.sweep.results.chip_table`).

    ``sweep``: :func:`mapper.sweep.runner.run_sweep` with the machine bound. Linear's iso chips are its need chip
    (it is the reference), so linear runs once, under ``need``.
    """
    from mapper.sweep.results import chip_table
    step = progress or (lambda msg: None)
    models = list(grid.values("model"))
    order = {st: i for i, st in enumerate(STRATS)}
    out, linear = {}, []
    for budget in sorted(BUDGETS, key=lambda b: b != "need"):
        g = grid if budget == "need" else grid.derive(
            axes={"strategy": [st for st in grid.values("strategy") if st != Strategy.LINEAR]})
        step(f"chip: {budget}, {g.size} points")
        got = _run(g, root / f"reproduce-chip-{budget}", {"budget": budget, "reference": "linear",
                                                          "prefill_tokens": prefill_tokens}, sweep, chip=True)
        if budget == "need":
            linear = [{**r, "chip.adc_ratio": 1.0, "chip.area_ratio": 1.0} for r in got if r["strategy"] == "linear"]
        else:
            got = sorted(linear + got, key=lambda r: (models.index(r["model"]), order[r["strategy"]]))
        out[budget] = chip_table(got, budget)
    return {b: out[b] for b in BUDGETS}


def sensitivity_map(grid, root: Path, sweep, *, prefill_tokens: int | None = PREFILL_TOKENS,
                    progress=None) -> list[dict]:
    """Run the sensitivity ``grid`` (assumption axes x linear/sparse/dense) on the chip each strategy needs,
    and its DenseMap points once more with one row step, into ``root / sensitivity*``; return the map's rows
    (:func:`~mapper.sweep.results.sensitivity_table`: :data:`HEADLINES` under every set, static power scaled by
    :data:`STATIC_SCALES`). Prefill of ``prefill_tokens`` (None: the model's sequence), no decode."""
    from mapper.sweep.results import sensitivity_table
    step = progress or (lambda msg: None)
    extra = {"budget": "need", "prefill_tokens": prefill_tokens, "decode_tokens": 0}
    step(f"sensitivity: {grid.size} points")
    got = _run(grid, root / "sensitivity", extra, sweep, chip=True)
    dense = grid.derive(axes={"strategy": [Strategy.DENSE.value]})
    step(f"sensitivity: {dense.size} points, DenseMap with one row step")
    one = _run(dense, root / "sensitivity-rows1", {**extra, "row_steps": 1}, sweep, chip=True)
    return sensitivity_table(got + [{**r, "row_steps": 1} for r in one], HEADLINES, scales=STATIC_SCALES,
                             row_steps=ROW_STEPS, tolerance=TOLERANCE)


def reproduce(hw: str = "paper-256", nblocks: int | None = None, models=PAPER_MODELS, progress=None,
              sweep_dir=None, workers: int = 0, *, chip: str | None = "chip-paper", sensitivity: bool = True,
              prefill_tokens: int | None = PREFILL_TOKENS, formats: dict | None = None) -> dict:
    """Compute every table of the comparison; return ``{"strategies", "adc_sweep", "pareto", "sweep", "chip",
    "sensitivity"}`` (``chip``: ``{budget: rows}``; empty when ``chip`` is None; ``sensitivity``: rows, empty
    when not asked for).

    The points are the shipped sweep grids (:mod:`mapper.sweep`, ``mapper/sweep/grids/``) with ``models``, ``hw``
    and ``nblocks`` applied, run into sub-folders of ``sweep_dir`` (a temporary folder when None) on ``workers``
    Dask workers (0: in this process): ``reproduce`` on the flat machine; ``reproduce-chip`` on ``chip`` once per
    budget of :data:`BUDGETS`; ``sensitivity`` (on BERT-large, else the first model of ``models``) on the chip each
    strategy needs, and once more for DenseMap with one row step. Chip sequences: ``prefill_tokens`` prompt tokens
    (None: each model's own sequence length), then the pipeline's decode tokens (none for the sensitivity map).
    ``nblocks`` None: each model's default (:func:`compiler.geometry.default_nblocks`, 32 for the paper's
    models). Auto's array-budget front depends on each model's minimum, so it is not a grid axis:
    :func:`mapper.pipeline.pareto` computes it per model. ``formats``: number-format overrides of both ``hw``
    and ``chip`` (:func:`mapper.cli_args.with_format`, set as configuration keys of every grid).
    """
    import contextlib
    import tempfile

    from compiler.cost import ModelDims
    from compiler.geometry import default_nblocks, geometry
    from compiler.place import place
    from mapper.models import load_model_spec
    from mapper.pipeline import check_nblocks, pareto, resolve_hw
    from mapper.sweep.engine import dask_client
    from mapper.sweep.grid import grid_path, load_grid
    from mapper.sweep.runner import run_sweep
    step = progress or (lambda msg: None)
    base_hw = resolve_hw(A.with_format(hw, formats))
    chip_keys = {}
    if chip is not None:                                              # a bad chip fails before any work
        chip_keys = _format_keys(resolve_hw(A.with_format(chip, formats)), formats)
    specs = {model: load_model_spec(model) for model in models}     # every model checked before any work
    nbs = {model: nblocks if nblocks is not None else default_nblocks(spec) for model, spec in specs.items()}
    for model, spec in specs.items():
        check_nblocks(spec, nbs[model])
    fixed = {"nblocks": nblocks} if nblocks is not None else {}
    with contextlib.ExitStack() as stack:
        root = Path(sweep_dir) if sweep_dir is not None else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="cim-reproduce-")))
        where = {}
        if workers:                        # one local cluster for every sweep (workers keep their imports)
            client = stack.enter_context(dask_client(workers))
            where = {"scheduler": client.scheduler.address, "say": lambda text: None}
        sweep = functools.partial(run_sweep, **where)
        grid = load_grid(grid_path("reproduce")).derive(
            axes={"model": list(models)}, fixed={"hw": hw if isinstance(hw, str) else base_hw.name, **fixed,
                                                 **_format_keys(base_hw, formats)})
        step(f"sweep: {grid.size} points")
        rows = _run(grid, root / "reproduce", {"simulate": False}, sweep)      # analytic figures only
        chip_rows, sens_rows = {}, []
        if chip is not None:
            grid = load_grid(grid_path("reproduce-chip")).derive(axes={"model": list(models)},
                                                                 fixed={"hw": chip, **fixed, **chip_keys})
            chip_rows = chip_tables(grid, root, sweep, prefill_tokens=prefill_tokens, progress=step)
        if chip is not None and sensitivity:
            model = "bert-large" if "bert-large" in models else models[0]
            grid = load_grid(grid_path("sensitivity"))
            tiers = math.lcm(*grid.values("chip.arrays_per_tile"), resolve_hw(chip).chip.arrays_per_tile)
            n = -(-resolve_hw(chip).n_arrays // tiers) * tiers         # every tier count divides it (budget: need)
            grid = grid.derive(fixed={"model": model, "hw": chip, "n_arrays": n, **fixed, **chip_keys})
            sens_rows = sensitivity_map(grid, root, sweep, prefill_tokens=prefill_tokens, progress=step)

    order = {st: i for i, st in enumerate(STRATS)}

    def pick(model, preset, adcs):
        sel = [r for r in rows if r["model"] == model and r["cost"] == preset and r["adcs"] == adcs]
        return sorted(sel, key=lambda r: order[r["strategy"]])

    strat_rows, sweep_rows, pareto_rows = [], [], []
    for model, spec in specs.items():
        for preset in ("kit", "paper"):
            strat_rows += [_strategy_row(r, preset) for r in pick(model, preset, 8)]
        for adcs in ADC_SWEEP:
            for r in pick(model, "kit", adcs):
                sweep_rows.append({"model": model, "adcs_per_array": adcs, "strategy": r["strategy"],
                                   "latency_ns": round(r["latency_ns"], 1),
                                   "matmul_latency_ns": round(r["matmul_latency_ns"], 1),
                                   "energy_nj": round(r["energy_nj"], 2)})
        step(f"{model}: pareto")
        geoms = geometry(spec, nbs[model])
        extra = tuple(place(geoms, base_hw, st).n_arrays for st in (Strategy.SPARSE, Strategy.DENSE))
        for p in pareto(geoms, base_hw, ModelDims.of(spec), extra=extra):
            pareto_rows.append({"model": model, **p})
    return {"strategies": strat_rows, "adc_sweep": sweep_rows, "pareto": pareto_rows, "sweep": rows,
            "chip": chip_rows, "sensitivity": sens_rows}


def _format_keys(cfg, formats: dict | None) -> dict:
    """The grid configuration keys of the number-format overrides (with the ADC width they imply)."""
    keys = {k: v for k, v in (formats or {}).items() if v is not None}
    return {**keys, "adc_bits": cfg.adc_bits} if keys else {}


def _plots(data: dict, out: Path, hw: str | None = None) -> dict:
    """Write the PNGs of the flat tables (:func:`mapper.sweep.plots.reproduce_plots`); ``{file name: Figure}``."""
    from mapper.sweep.plots import reproduce_plots
    return reproduce_plots(data, out, _hw_name(hw))


def _hw_name(hw) -> str | None:
    """The configuration's name for a plot title (a name or a JSON file)."""
    try:
        from mapper.pipeline import resolve_hw
        return None if hw is None else resolve_hw(hw).name
    except Exception:                      # noqa: BLE001  (a title only)
        return str(hw)


def write_outputs(data: dict, out: Path, *, hw: str | None = None, chip: str | None = None) -> list[Path]:
    """Write every table (CSV), ``summary.md``, ``sensitivity.md`` and the plots of ``data`` into ``out``;
    return the files written."""
    from mapper import perfplots
    from mapper.sweep.results import sensitivity_markdown, set_label
    files = []

    def put(name: str, text: str) -> None:
        (out / name).write_text(text)
        files.append(out / name)

    for key in ("strategies", "adc_sweep", "pareto"):
        put(f"{key}.csv", _csv(data[key]))
    put("summary.md", summary_markdown(data))
    files += [out / name for name in _plots(data, out, hw=hw)]
    chip_name = _hw_name(chip)
    for budget, rows in data["chip"].items():
        put(f"{budget.replace('-', '_')}.csv", _csv([{k: v for k, v in r.items() if not k.startswith("_")}
                                                     for r in rows]))
    models = list(dict.fromkeys(r["model"] for rows in data["chip"].values() for r in rows))
    for model in models:
        sel = {b: [r for r in rows if r["model"] == model] for b, rows in data["chip"].items()}
        pts = [{**r, "arrays": r["chip_arrays"] or r["arrays"]} for rows in sel.values() for r in rows]
        name = f"pareto_chip_{_file_part(model)}.png"
        if perfplots.pareto_strategies(pts, out / name, model=model, hw=chip_name,
                                       title="Chip: prefill latency, arrays and energy per strategy "
                                             "(budgets " + ", ".join(sel) + "; lines: fronts)"):
            files.append(out / name)
        for budget, rows in sel.items():
            parts = {r["strategy"]: r["_parts"] for r in rows if r.get("_parts")}
            if parts:
                name = f"breakdown_{budget.replace('-', '_')}_{_file_part(model)}.png"
                perfplots.breakdown_bars(parts, out / name, model=model, hw=chip_name, note=f"budget {budget}")
                files.append(out / name)
    if data["sensitivity"]:
        rows = data["sensitivity"]
        cols = [c for c in rows[0] if not c.startswith("_")]
        put("sensitivity.csv", _csv([{c: r[c] for c in cols} for r in rows]))
        put("sensitivity.md", sensitivity_markdown(rows, HEADLINES, TOLERANCE))
        ranked = sorted(rows, key=lambda r: -r["matches"])
        perfplots.sensitivity_heatmap([{**r, "set": set_label(r)} for r in ranked], HEADLINES,
                                      out / "sensitivity.png", label="set", tolerance=TOLERANCE,
                                      model=rows[0].get("model"), hw=chip_name, max_rows=len(rows))
        files.append(out / "sensitivity.png")
    return files


def _file_part(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).name)


def summary_markdown(data: dict) -> str:
    """Return the kit-vs-paper table as Markdown."""
    lines = ["| model | preset | strategy | arrays | LB | util | array red. vs linear | speed-up vs linear | "
             "matmul speed-up | energy gain vs linear | ADC bits |", "|" + "---|" * 11]
    for r in data["strategies"]:
        lines.append(f"| {r['model']} | {r['cost_preset']} | {r['strategy']} | {r['arrays']} | {r['lower_bound']} | "
                     f"{r['utilization']:.1%} | {r['array_reduction_vs_linear']:.1%} | {r['speedup_vs_linear']:.2f} | "
                     f"{r['matmul_speedup_vs_linear']:.2f} | {r['energy_gain_vs_linear']:.2f} | {r['adc_bits']} |")
    lines.append("")
    lines.append("Paper (arXiv 2510.11192; what each figure is and where it comes from: docs/paper-comparison.md, "
                 "section \"The paper's figures\"): " + json.dumps(PAPER_FIGURES))
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from cimisa.errors import ModelError
    from cimisa.fsutil import atomic_dir
    from cimisa.threads import available_cpus
    from mapper.sweep.results import set_label
    models = tuple(dict.fromkeys(m.strip() for m in args.models.split(",") if m.strip()))
    if not models:
        raise ModelError("--models: no model names given")
    if args.out is None:
        args.out = A.default_out("reproduce", args.hw)
    A.check_out(args.out, args.force, models=models, files=[args.hw, args.chip])          # before any work
    from mapper.models import resolve_source
    for m in models:
        resolve_source(m)                      # an unknown name fails before any work
    with progress.steps("reproduce") as step:
        current = [None]

        def on_step(msg):                      # one stage per model; its sub-steps show on a terminal
            model = msg.split(": ", 1)[0]
            if model != current[0]:
                current[0] = model
                step(model)

        with atomic_dir(args.out, force=args.force) as tmp:
            workers = available_cpus() if args.workers is None else args.workers
            data = reproduce(args.hw, args.nblocks, models, progress=on_step, sweep_dir=tmp / "sweeps",
                             workers=workers, chip=args.chip, sensitivity=not args.no_sensitivity,
                             prefill_tokens=None if args.full_sequences else args.prefill_tokens,
                             formats=A.format_overrides(args))
            step("CSV, plots")
            write_outputs(data, tmp, hw=args.hw, chip=args.chip)
    from rich.markup import escape
    from rich.table import Table
    t = Table(title="kit vs linear (kit cost preset)")
    for c in ("model", "strategy", "arrays", "util", "speed-up", "energy gain"):
        t.add_column(c, justify="left" if c == "model" else "right", no_wrap=True)
    for r in data["strategies"]:
        if r["cost_preset"] == "kit":
            t.add_row(escape(r["model"]), r["strategy"], f"{r['arrays']:,}", f"{r['utilization']:.1%}",
                      f"{r['speedup_vs_linear']:.2f}", f"{r['energy_gain_vs_linear']:.2f}")
    Console(width=max(100, Console().width)).print(t)
    for h, paper in HEADLINES.items() if data["sensitivity"] else ():
        hits = [r for r in data["sensitivity"] if r[f"{h}_within"]]
        print(f"{h} (paper {paper}x): {len(hits)} of {len(data['sensitivity'])} assumption sets within "
              f"{TOLERANCE:.0%}" + (f", e.g. {set_label(hits[0])}" if hits else ""))
    print(f"wrote {args.out}/")
    return 0
