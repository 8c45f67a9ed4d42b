"""``python -m mapper build``: map a model onto CIM arrays and write report, mapping, stream and plots."""

from __future__ import annotations

import argparse
import os
import sys

from mapper.cli_args import MAX_ARRAYS, add_out_options, check_out, int_in, path_text, positive_int
from mapper.place import STRATEGIES

__all__ = ["register", "run", "default_out"]

_STEPS = ("model", "place", "baseline", "pareto", "weights", "stream", "check", "write")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build", help="map a model onto CIM arrays (placement, schedule, cost, command stream)",
        description="Map a model onto CIM crossbar arrays: placement, schedule, cost model; writes report.json, "
                    "mapping.json, plots/ and (when weights exist) commands.bin + commands.jsonl.")
    p.add_argument("--model", required=True, type=path_text,
                   help="built-in name, Hugging Face checkpoint folder or d2s output")
    p.add_argument("--hw", default="paper-256", type=path_text,
                   help="built-in configuration name or TOML/JSON file (default: paper-256)")
    p.add_argument("--nblocks", type=positive_int, default=None,
                   help="Monarch blocks per factor (default: the d2s folder's, else 2**round(log2(sqrt(d_model))), "
                        "32 for 1024)")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES, metavar="|".join(STRATEGIES),
                   help="placement strategy (default: auto)")
    p.add_argument("--adcs", type=positive_int, default=None, help="ADCs per array (overrides the configuration)")
    p.add_argument("--arrays", type=int_in(1, MAX_ARRAYS), default=None,
                   help=f"array budget, at most {MAX_ARRAYS:,} (auto: spread to minimise latency)")
    add_out_options(p, "output folder (default: build-<model>-<strategy> in the current folder); created or "
                       "replaced as a whole")
    p.add_argument("--no-weights", action="store_true", help="shape-only: no command stream")
    p.add_argument("--adc-mode", default="paper", choices=("paper", "exact"),
                   help="ADC resolution rule: paper (log2 of rows per column) or exact (lossless if possible)")
    p.add_argument("--cost", default=None, choices=("kit", "paper"), help="cost-model preset (default: kit)")
    p.add_argument("--no-colocate", action="store_true", help="auto: do not fire same-input blocks together")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)


def default_out(model: str, strategy: str) -> str:
    """Return the default output folder ``build-<model>-<strategy>`` (model: the last part of a path)."""
    name = os.path.basename(os.path.normpath(str(model))) or "model"
    if name in (".", ".."):
        name = os.path.basename(os.path.abspath(str(model))) or "model"
    return f"build-{name}-{strategy}"


def run(args: argparse.Namespace) -> int:
    out = args.out or default_out(args.model, args.strategy)
    check_out(out, args.force, models=[args.model], files=[args.hw])   # before any work
    from rich.console import Console
    from tqdm import tqdm

    from mapper.pipeline import build, write_build
    bar = tqdm(total=len(_STEPS), file=sys.stderr, desc="build", leave=False, disable=None)

    def step(name):
        bar.set_postfix_str(name)
        bar.update(1)

    try:
        res = build(args.model, args.hw, nblocks=args.nblocks, strategy=args.strategy, adcs=args.adcs,
                    arrays=args.arrays, weights=not args.no_weights, adc_mode=args.adc_mode, cost=args.cost,
                    colocate=not args.no_colocate, progress=step)
        step("write")
        write_build(res, out, plots=not args.no_plots, force=args.force)
    finally:
        bar.close()
    from mapper.report import layers_table, strategies_table, summary_table
    rep = res.report()
    console = Console()
    console.print(summary_table(rep))
    for table in (strategies_table(rep), layers_table(rep)):
        if table is not None:
            console.print(table)
    if rep.get("stream"):
        st = rep["stream"]
        console.print(f"stream: {len(res.commands)} commands; exact on sw_model: {st['exact']}; "
                      f"paper-ADC error (mean rel. L2): {st['adc_error']['mean_rel_l2']:.4f}")
    print(f"wrote {out}/")
    return 0
