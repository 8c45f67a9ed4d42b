"""``python -m mapper build``: map a model onto CIM arrays and write report, mapping, stream and plots."""

from __future__ import annotations

import argparse
import sys

from mapper.place import STRATEGIES

__all__ = ["register", "run"]

_STEPS = ("model", "place", "baseline", "pareto", "weights", "stream", "check", "write")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build", help="map a model onto CIM arrays (placement, schedule, cost, command stream)",
        description="Map a model onto CIM crossbar arrays: placement, schedule, cost model; writes report.json, "
                    "mapping.json, plots/ and (when weights exist) commands.bin + commands.jsonl.")
    p.add_argument("--model", required=True, help="built-in name, Hugging Face checkpoint folder or d2s output")
    p.add_argument("--hw", default="paper-256", help="built-in configuration name or TOML/JSON file "
                                                     "(default: paper-256)")
    p.add_argument("--nblocks", type=int, default=None,
                   help="Monarch blocks per factor (default: 2**round(log2(sqrt(d_model))), 32 for 1024)")
    p.add_argument("--strategy", default="auto", metavar="|".join(STRATEGIES),
                   help="placement strategy (default: auto)")
    p.add_argument("--adcs", type=int, default=None, help="ADCs per array (overrides the configuration)")
    p.add_argument("--arrays", type=int, default=None, help="array budget (auto: spread to minimise latency)")
    p.add_argument("--out", default=None, help="output folder (default: build-<model>-<strategy>)")
    p.add_argument("--no-weights", action="store_true", help="shape-only: no command stream")
    p.add_argument("--adc-mode", default="paper", choices=("paper", "exact"),
                   help="ADC resolution rule: paper (log2 of rows per column) or exact (lossless if possible)")
    p.add_argument("--cost", default=None, choices=("kit", "paper"), help="cost-model preset (default: kit)")
    p.add_argument("--no-colocate", action="store_true", help="auto: do not fire same-input blocks together")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mapper.pipeline import build, write_build
    from tqdm import tqdm
    out = args.out or f"build-{str(args.model).rstrip('/').split('/')[-1]}-{args.strategy}"
    bar = tqdm(total=len(_STEPS), file=sys.stderr, desc="build", leave=False, disable=None)

    def step(name):
        bar.set_postfix_str(name)
        bar.update(1)

    try:
        res = build(args.model, args.hw, nblocks=args.nblocks, strategy=args.strategy, adcs=args.adcs,
                    arrays=args.arrays, weights=not args.no_weights, adc_mode=args.adc_mode, cost=args.cost,
                    colocate=not args.no_colocate, progress=step)
        step("write")
        write_build(res, out, plots=not args.no_plots)
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
    console.print(f"wrote {out}/")
    return 0
