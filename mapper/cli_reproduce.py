"""``python -m mapper reproduce``: the paper's comparisons for BERT-large, BART-large and GPT-2-medium.

For each model at m = 256 and nblocks = 32 (``paper-256``; 32 is each paper model's default nblocks): arrays,
lower bound and utilisation per strategy; decode latency and energy against Linear under both cost presets
(``kit`` and ``paper``); the sweep of ADCs per array from 4 to 32; auto's Pareto front of arrays against
latency. Writes CSV and PNG files and a ``summary.md`` (the kit's figures beside the paper's, see
``docs/paper-comparison.md``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from cimisa import progress
from compiler.kinds import Strategy
from mapper.cli_args import add_nblocks_option, add_out_options, check_out, default_out, path_text

__all__ = ["register", "run", "reproduce", "PAPER_MODELS", "ADC_SWEEP", "PAPER_FIGURES"]

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


def register(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="regenerate the paper's comparisons (CSV + PNG)",
                              description="Regenerate the paper's comparisons for BERT-large, BART-large and "
                                          "GPT-2-medium: arrays, utilisation, latency and energy per strategy, the "
                                          "ADC sweep and auto's Pareto front; writes CSV, PNG and summary.md.")
    add_out_options(p, "output folder (default: reproduce-<hw> in the current folder); created or replaced as a "
                       "whole")
    p.add_argument("--hw", default="paper-256", type=path_text, help="hardware configuration (default: paper-256)")
    add_nblocks_option(p)
    p.add_argument("--models", default=",".join(PAPER_MODELS), type=path_text,
                   help="comma-separated model names (default: %(default)s)")
    progress.add_common_options(p)
    p.set_defaults(func=run)


def _csv(rows: list[dict]) -> str:
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


def reproduce(hw: str = "paper-256", nblocks: int | None = None, models=PAPER_MODELS, progress=None,
              sweep_dir=None, workers: int = 0) -> dict:
    """Compute every table of the comparison; return ``{"strategies", "adc_sweep", "pareto", "sweep"}``.

    The points are the shipped sweep grid ``reproduce`` (:mod:`mapper.sweep`, ``mapper/sweep/grids/reproduce.toml``)
    with ``models``, ``hw`` and ``nblocks`` applied, run into ``sweep_dir`` (a temporary folder when None) on
    ``workers`` Dask workers (0: in this process). ``nblocks`` None: each model's default
    (:func:`compiler.geometry.default_nblocks`, 32 for the paper's models). Auto's array-budget front depends on
    each model's minimum, so it is not a grid axis: :func:`mapper.pipeline.pareto` computes it per model.
    """
    import tempfile

    from compiler.cost import ModelDims
    from compiler.geometry import default_nblocks, geometry
    from compiler.place import place
    from mapper.models import load_model_spec
    from mapper.pipeline import check_nblocks, pareto, resolve_hw
    from mapper.sweep.grid import grid_path, load_grid
    from mapper.sweep.runner import run_sweep
    step = progress or (lambda msg: None)
    base_hw = resolve_hw(hw)
    specs = {model: load_model_spec(model) for model in models}     # every model checked before any work
    nbs = {model: nblocks if nblocks is not None else default_nblocks(spec) for model, spec in specs.items()}
    for model, spec in specs.items():
        check_nblocks(spec, nbs[model])
    fixed = {"hw": hw if isinstance(hw, str) else base_hw.name}
    if nblocks is not None:
        fixed["nblocks"] = nblocks
    grid = load_grid(grid_path("reproduce")).derive(axes={"model": list(models)}, fixed=fixed)
    step(f"sweep: {grid.size} points")
    with tempfile.TemporaryDirectory(prefix="cim-reproduce-") as tmp:
        result = run_sweep(grid, sweep_dir if sweep_dir is not None else f"{tmp}/sweep", workers=workers)
    rows = result["rows"]
    failed = [r for r in rows if r["error"] is not None]
    if failed:
        from cimisa.errors import KitError
        raise KitError(f"reproduce: {len(failed)} point(s) failed, first: {failed[0]['error']}")
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
    return {"strategies": strat_rows, "adc_sweep": sweep_rows, "pareto": pareto_rows, "sweep": rows}


def _plots(data: dict, out: Path, hw: str | None = None) -> dict:
    """Write the comparison's PNGs (:mod:`mapper.plotstyle`: same strategy colours as ``mapper build``).

    Returns ``{file name: Figure}`` (closed figures, still drawable).
    """
    import numpy as np
    from matplotlib.patches import Patch

    from mapper import plotstyle as S
    from mapper.plots import pareto_axes
    plt = S.pyplot()
    hw_name = _hw_name(hw)
    rows = [r for r in data["strategies"] if r["cost_preset"] == "kit"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    strats = [st for st in S.STRATEGY_COLORS if st in STRATS]
    model_text = ", ".join(models)
    figs = {}

    def row(m, st, preset="kit"):
        return next(r for r in data["strategies"] if r["model"] == m and r["strategy"] == st
                    and r["cost_preset"] == preset)

    def finish(fig, name, what, preset, legend_ax, handles=None, labels=None, legend_title="strategy"):
        fig.suptitle(S.title(what, model=model_text, hw=hw_name, preset=preset))
        fig.tight_layout()
        S.legend_outside(legend_ax, handles, labels, where="right", title=legend_title)
        S.save(fig, out / name)
        figs[name] = fig

    # arrays and utilisation per strategy
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    w = 0.8 / len(strats)
    x = np.arange(len(models))
    for i, st in enumerate(strats):
        sel = [row(m, st) for m in models]
        off = x + (i - (len(strats) - 1) / 2) * w
        axes[0].bar(off, [r["arrays"] for r in sel], w, label=st, color=S.strategy_color(st))
        axes[1].bar(off, [100 * r["utilization"] for r in sel], w, label=st, color=S.strategy_color(st))
    for ax, lab in ((axes[0], "arrays used (count, log scale)"), (axes[1], "utilisation (%)")):
        ax.set_xticks(x, models)
        ax.set_xlabel("model")
        ax.set_ylabel(lab)
    S.log_axis(axes[0], "y")
    axes[0].set_title("arrays")
    axes[1].set_ylim(0, 105)
    axes[1].set_title("utilisation")
    finish(fig, "arrays_utilization.png", "Arrays and utilisation per strategy", "kit", axes[1])
    # latency and energy vs linear, both presets
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8))
    shown = [st for st in strats if st != Strategy.LINEAR]
    presets = ("kit", "paper")
    w = 0.8 / (len(shown) * len(presets))
    for k, (key, lab) in enumerate((("speedup_vs_linear", "decode speed-up vs linear (x, log scale)"),
                                    ("energy_gain_vs_linear", "decode energy gain vs linear (x, log scale)"))):
        ax = axes[k]
        for i, st in enumerate(shown):
            for pi, preset in enumerate(presets):
                sel = [row(m, st, preset) for m in models]
                j = i * len(presets) + pi
                ax.bar(x + (j - (len(shown) * len(presets) - 1) / 2) * w, [r[key] for r in sel], w,
                       color=S.strategy_color(st), hatch=S.PRESET_HATCH[preset], edgecolor="white", lw=0.4)
        ax.axhline(1.0, color="k", lw=0.6, ls="--")
        ax.set_xticks(x, models)
        ax.set_xlabel("model")
        ax.set_ylabel(lab)
        S.log_axis(ax, "y")
        ax.set_title("latency" if k == 0 else "energy")
    handles = [Patch(facecolor=S.strategy_color(st), label=st) for st in shown]
    handles += [Patch(facecolor="#dddddd", hatch=S.PRESET_HATCH[p], edgecolor="#555555", label=f"{p} preset")
                for p in presets]
    handles.append(plt.Line2D([], [], color="k", lw=0.6, ls="--", label="linear (= 1)"))
    finish(fig, "latency_energy_vs_linear.png", "Decode latency and energy against linear", "kit and paper",
           axes[1], handles, [h.get_label() for h in handles], legend_title="strategy / preset")
    # ADC sweep
    fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models) + 0.6, 3.4), squeeze=False)
    for j, m in enumerate(models):
        ax = axes[0][j]
        for st in strats:
            sel = [r for r in data["adc_sweep"] if r["model"] == m and r["strategy"] == st]
            ax.plot([r["adcs_per_array"] for r in sel], [r["matmul_latency_ns"] for r in sel], "o-", ms=4,
                    label=st, color=S.strategy_color(st))
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(ADC_SWEEP), [str(a) for a in ADC_SWEEP])
        S.log_axis(ax, "y")
        ax.grid(alpha=0.3)
        ax.set_xlabel("ADCs per array (count)")
        ax.set_ylabel("matmul latency per token (ns)" if j == 0 else "")
        ax.set_title(m)
    finish(fig, "adc_sweep.png", "Matmul latency against ADCs per array", "kit", axes[0][-1])
    # Pareto
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models) + 0.6, 3.5), squeeze=False)
    for j, m in enumerate(models):
        ax = axes[0][j]
        sel = [r for r in data["pareto"] if r["model"] == m]
        others = {st: (row(m, st)["arrays"], row(m, st)["matmul_latency_ns"]) for st in strats if st != Strategy.AUTO}
        pareto_axes(ax, sel, others, ykey="matmul_latency_ns")
        ax.set_ylabel("matmul latency per token (ns, log)" if j == 0 else "")
        ax.set_title(m)
    finish(fig, "pareto.png", "auto: arrays vs matmul latency (budgets from the minimum up)", "kit", axes[0][-1])
    return figs


def _hw_name(hw) -> str | None:
    """The configuration's name for a plot title (a name or a JSON file)."""
    if hw is None:
        return None
    try:
        from mapper.pipeline import resolve_hw
        return resolve_hw(hw).name
    except Exception:                      # noqa: BLE001  (a title only)
        return str(hw)


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
    models = tuple(dict.fromkeys(m.strip() for m in args.models.split(",") if m.strip()))
    if not models:
        raise ModelError("--models: no model names given")
    if args.out is None:
        args.out = default_out("reproduce", args.hw)
    check_out(args.out, args.force, models=models, files=[args.hw])          # before any work
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
            data = reproduce(args.hw, args.nblocks, models, progress=on_step, sweep_dir=tmp / "sweep")
            step("CSV, plots")
            for key in ("strategies", "adc_sweep", "pareto"):
                (tmp / f"{key}.csv").write_text(_csv(data[key]))
            (tmp / "summary.md").write_text(summary_markdown(data))
            _plots(data, tmp, hw=args.hw)
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
    print(f"wrote {args.out}/")
    return 0
