"""``python -m mapper reproduce``: the paper's comparisons for BERT-large, BART-large and GPT-2-medium.

For each model at m = 256 and nblocks = 32 (``paper-256``): arrays, lower bound and utilisation per strategy;
decode latency and energy against Linear under both cost presets (``kit`` and ``paper``); the sweep of ADCs per
array from 4 to 32; auto's Pareto front of arrays against latency. Writes CSV and PNG files and a
``summary.md`` (the kit's figures beside the paper's, see ``docs/paper-comparison.md``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from mapper.cli_args import add_out_options, check_out, path_text, positive_int

__all__ = ["register", "run", "reproduce", "PAPER_MODELS", "ADC_SWEEP", "PAPER_FIGURES"]

PAPER_MODELS = ("bert-large", "bart-large", "gpt2-medium")
ADC_SWEEP = (4, 8, 16, 32)
STRATS = ("linear", "sparse", "dense", "auto")
#: The paper's reported figures (paper-notes.md section 6).
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
                              description=__doc__.splitlines()[0])
    add_out_options(p, "output folder (created or replaced as a whole)", required=True)
    p.add_argument("--hw", default="paper-256", type=path_text, help="hardware configuration (default: paper-256)")
    p.add_argument("--nblocks", type=positive_int, default=32, help="Monarch blocks (default: 32, the paper's)")
    p.add_argument("--models", default=",".join(PAPER_MODELS), type=path_text,
                   help="comma-separated model names (default: %(default)s)")
    p.set_defaults(func=run)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def reproduce(hw: str = "paper-256", nblocks: int = 32, models=PAPER_MODELS, progress=None) -> dict:
    """Compute every table of the comparison; return ``{"strategies", "adc_sweep", "pareto"}`` rows."""
    from cimisa.config import CostParams
    from mapper.cost import ModelDims, estimate
    from mapper.models import load_model_spec
    from mapper.pipeline import check_nblocks, pareto, resolve_hw
    from mapper.place import geometry, place
    from mapper.schedule import schedule
    step = progress or (lambda msg: None)
    base_hw = resolve_hw(hw)
    specs = {model: load_model_spec(model) for model in models}     # every model checked before any work
    for spec in specs.values():
        check_nblocks(spec, nblocks)
    strat_rows, sweep_rows, pareto_rows = [], [], []
    for model, spec in specs.items():
        geoms = geometry(spec, nblocks)
        dims = ModelDims.of(spec)
        scheds = {}
        for st in STRATS:
            step(f"{model}: {st}")
            pl = place(geoms, base_hw, st, validate=(st != "linear"))
            scheds[st] = schedule(pl, base_hw, "paper")
        for preset in ("kit", "paper"):
            cfg = base_hw.replace(cost=CostParams.preset(preset))
            costs = {st: estimate(scheds[st], cfg, dims) for st in STRATS}
            lin = costs["linear"]
            for st in STRATS:
                pl, c = scheds[st].placement, costs[st]
                strat_rows.append({
                    "model": model, "cost_preset": preset, "strategy": st, "arrays": pl.n_arrays,
                    "lower_bound": pl.lower_bound,
                    "monarch_lower_bound": -(-pl.monarch_cells // pl.cells_per_array),
                    "utilization": round(pl.utilization, 4),
                    "array_reduction_vs_linear": round(1 - pl.n_arrays / scheds["linear"].placement.n_arrays, 4),
                    "latency_ns": round(c.decode_latency_ns, 1), "energy_nj": round(c.decode_energy_nj, 2),
                    "matmul_latency_ns": round(c.matmul_latency_ns, 1),
                    "matmul_energy_nj": round(c.matmul_energy_nj, 2),
                    "speedup_vs_linear": round(lin.decode_latency_ns / c.decode_latency_ns, 3),
                    "matmul_speedup_vs_linear": round(lin.matmul_latency_ns / c.matmul_latency_ns, 3),
                    "energy_gain_vs_linear": round(lin.decode_energy_nj / c.decode_energy_nj, 3),
                    "matmul_energy_gain_vs_linear": round(lin.matmul_energy_nj / c.matmul_energy_nj, 3),
                    "prefill_latency_ns": round(c.prefill_latency_ns, 1),
                    "adc_bits": "/".join(str(b) for b in c.adc_bits_histogram),
                })
            if preset == "kit":
                for adcs in ADC_SWEEP:
                    step(f"{model}: {adcs} ADCs")
                    cfg_a = cfg.replace(adcs_per_array=adcs)
                    for st in STRATS:
                        c = estimate(scheds[st], cfg_a, dims)
                        sweep_rows.append({"model": model, "adcs_per_array": adcs, "strategy": st,
                                           "latency_ns": round(c.decode_latency_ns, 1),
                                           "matmul_latency_ns": round(c.matmul_latency_ns, 1),
                                           "energy_nj": round(c.decode_energy_nj, 2)})
        step(f"{model}: pareto")
        extra = tuple(scheds[st].placement.n_arrays for st in ("sparse", "dense"))
        for p in pareto(geoms, base_hw, dims, extra=extra):
            pareto_rows.append({"model": model, **p})
    return {"strategies": strat_rows, "adc_sweep": sweep_rows, "pareto": pareto_rows}


def _plots(data: dict, out: Path) -> None:
    from matplotlib.ticker import NullFormatter

    from mapper.plots import _plt, save
    plt = _plt()
    rows = [r for r in data["strategies"] if r["cost_preset"] == "kit"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    # arrays and utilisation per strategy
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    w = 0.2
    for i, st in enumerate(STRATS):
        sel = [next(r for r in rows if r["model"] == m and r["strategy"] == st) for m in models]
        x = [j + i * w for j in range(len(models))]
        axes[0].bar(x, [r["arrays"] for r in sel], w, label=st)
        axes[1].bar(x, [100 * r["utilization"] for r in sel], w, label=st)
    for ax, lab in ((axes[0], "arrays"), (axes[1], "utilisation (%)")):
        ax.set_xticks([j + 1.5 * w for j in range(len(models))])
        ax.set_xticklabels(models)
        ax.set_ylabel(lab)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save(fig, out / "arrays_utilization.png")
    # latency and energy vs linear, both presets
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, (key, lab) in enumerate((("speedup_vs_linear", "speed-up vs linear"),
                                    ("energy_gain_vs_linear", "energy gain vs linear"))):
        ax = axes[k]
        labels = []
        for i, st in enumerate(STRATS[1:]):
            for pi, preset in enumerate(("kit", "paper")):
                sel = [next(r for r in data["strategies"] if r["model"] == m and r["strategy"] == st and
                            r["cost_preset"] == preset) for m in models]
                x = [j + (i * 2 + pi) * 0.13 for j in range(len(models))]
                ax.bar(x, [r[key] for r in sel], 0.13, label=f"{st} ({preset})")
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_xticks([j + 0.33 for j in range(len(models))])
        ax.set_xticklabels(models)
        ax.set_ylabel(lab)
        ax.set_yscale("log")
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save(fig, out / "latency_energy_vs_linear.png")
    # ADC sweep
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.5), squeeze=False)
    for j, m in enumerate(models):
        ax = axes[0][j]
        for st in STRATS:
            sel = [r for r in data["adc_sweep"] if r["model"] == m and r["strategy"] == st]
            ax.plot([r["adcs_per_array"] for r in sel], [r["matmul_latency_ns"] for r in sel], "o-", label=st)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("ADCs per array")
        ax.set_ylabel("matmul latency per token (ns)")
        ax.set_title(m)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, out / "adc_sweep.png")
    # Pareto
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.5), squeeze=False)
    for j, m in enumerate(models):
        ax = axes[0][j]
        sel = [r for r in data["pareto"] if r["model"] == m]
        ax.plot([r["arrays"] for r in sel], [r["matmul_latency_ns"] for r in sel], "o-", label="auto")
        for st in ("linear", "sparse", "dense"):
            r = next(r for r in rows if r["model"] == m and r["strategy"] == st)
            ax.plot([r["arrays"]], [r["matmul_latency_ns"]], "s", label=st)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("arrays")
        ax.set_ylabel("matmul latency per token (ns)")
        ax.set_title(m)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, out / "pareto.png")


def summary_markdown(data: dict) -> str:
    """Return the kit-vs-paper table as Markdown."""
    lines = ["| model | preset | strategy | arrays | LB | util | array red. vs linear | speed-up vs linear | "
             "matmul speed-up | energy gain vs linear | ADC bits |", "|" + "---|" * 11]
    for r in data["strategies"]:
        lines.append(f"| {r['model']} | {r['cost_preset']} | {r['strategy']} | {r['arrays']} | {r['lower_bound']} | "
                     f"{r['utilization']:.1%} | {r['array_reduction_vs_linear']:.1%} | {r['speedup_vs_linear']:.2f} | "
                     f"{r['matmul_speedup_vs_linear']:.2f} | {r['energy_gain_vs_linear']:.2f} | {r['adc_bits']} |")
    lines.append("")
    lines.append("Paper (paper-notes.md section 6): " + json.dumps(PAPER_FIGURES))
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from tqdm import tqdm

    from cimisa.errors import ModelError
    from cimisa.fsutil import atomic_dir
    models = tuple(dict.fromkeys(m.strip() for m in args.models.split(",") if m.strip()))
    if not models:
        raise ModelError("--models: no model names given")
    check_out(args.out, args.force, models=models, files=[args.hw])          # before any work
    from mapper.models import resolve_source
    for m in models:
        resolve_source(m)                      # an unknown name fails before any work
    bar = tqdm(total=len(models) * (len(STRATS) + len(ADC_SWEEP) + 1), file=sys.stderr, desc="reproduce",
               leave=False, disable=None)

    def step(msg):
        bar.set_postfix_str(msg)
        bar.update(1)

    try:
        data = reproduce(args.hw, args.nblocks, models, progress=step)
        with atomic_dir(args.out, force=args.force) as tmp:
            for key in ("strategies", "adc_sweep", "pareto"):
                (tmp / f"{key}.csv").write_text(_csv(data[key]))
            (tmp / "summary.md").write_text(summary_markdown(data))
            _plots(data, tmp)
    finally:
        bar.close()
    from rich.markup import escape
    from rich.table import Table
    t = Table(title="kit vs linear (kit cost preset)")
    for c in ("model", "strategy", "arrays", "util", "speed-up", "energy gain"):
        t.add_column(c, justify="right")
    for r in data["strategies"]:
        if r["cost_preset"] == "kit":
            t.add_row(escape(r["model"]), r["strategy"], f"{r['arrays']:,}", f"{r['utilization']:.1%}",
                      f"{r['speedup_vs_linear']:.2f}", f"{r['energy_gain_vs_linear']:.2f}")
    Console().print(t)
    print(f"wrote {args.out}/")
    return 0
