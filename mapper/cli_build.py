"""``python -m mapper build``: map a model onto CIM arrays and write report, mapping, stream and plots."""

from __future__ import annotations

import argparse

from cimisa import progress
from mapper.cli_args import (
    MAX_ARRAYS,
    add_adc_mode_option,
    add_chip_options,
    add_format_options,
    add_max_error_option,
    add_nblocks_option,
    add_out_options,
    add_strategy_option,
    check_out,
    format_overrides,
    hw_choice,
    int_in,
    path_text,
    positive_int,
    with_format,
)
from mapper.cli_args import default_out as _out

__all__ = ["register", "run", "default_out"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build", help="map a model onto CIM arrays (placement, schedule, cost, command stream)",
        description="Map a model onto CIM crossbar arrays: placement, schedule, cost model; writes report.json, "
                    "mapping.json, plots/ and (when weights exist) commands.bin + commands.jsonl.")
    p.add_argument("--model", required=True, type=path_text,
                   help="built-in name, Hugging Face checkpoint folder or d2s output")
    p.add_argument("--hw", default=None, type=path_text,
                   help="built-in configuration name or TOML/JSON file (default: paper-256)")
    add_format_options(p)
    add_chip_options(p)
    add_nblocks_option(p)
    add_strategy_option(p, "placement strategy (default: auto)")
    p.add_argument("--adcs", type=positive_int, default=None, help="ADCs per array (overrides the configuration)")
    p.add_argument("--arrays", type=int_in(1, MAX_ARRAYS), default=None,
                   help=f"array budget, at most {MAX_ARRAYS:,} (auto: spread to minimise latency)")
    add_out_options(p, "output folder (default: build-<model>-<strategy> in the current folder); created or "
                       "replaced as a whole")
    p.add_argument("--no-weights", action="store_true", help="shape-only: no command stream")
    add_adc_mode_option(p, "ADC resolution rule: paper (log2 of rows per column), exact (lossless if possible) "
                           "or accuracy (per MVM the fewest bits keeping the stream's error under --max-error)")
    add_max_error_option(p, "--adc-mode")
    p.add_argument("--cost", default=None, choices=("kit", "paper"), help="cost-model preset (default: kit)")
    p.add_argument("--no-colocate", action="store_true", help="auto: do not fire same-input blocks together")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    progress.add_common_options(p)
    p.set_defaults(func=run)


def default_out(model: str, strategy: str) -> str:
    """Return the default output folder ``build-<model>-<strategy>`` (model: the last part of a path)."""
    return _out("build", model, strategy)


def run(args: argparse.Namespace) -> int:
    out = args.out or default_out(args.model, args.strategy)
    hw = hw_choice(args.hw, args.chip)
    check_out(out, args.force, models=[args.model], files=[hw])   # before any work
    cfg = with_format(hw, format_overrides(args))
    from rich.console import Console

    from mapper.pipeline import BuildOptions, build, write_build
    options = BuildOptions(nblocks=args.nblocks, strategy=args.strategy, adcs=args.adcs, arrays=args.arrays,
                           weights=not args.no_weights, adc_mode=args.adc_mode, cost=args.cost,
                           colocate=not args.no_colocate, row_steps=args.row_steps, budget=args.budget,
                           reference=args.reference, weight_reload=args.weight_reload,
                           prefill_tokens=args.prefill_tokens, decode_tokens=args.decode_tokens,
                           trace=not args.no_plots, max_error=args.max_error)
    # Every build step can still find bad input (a budget too small, a stream that does not fit): its stage
    # lines are held until the build succeeds, so an error stays the one error: line.
    with progress.hold(), progress.steps("build", merge={"weights": "model"}) as step:
        res = build(args.model, cfg, options, progress=step)
    with progress.stage("build: write"):
        write_build(res, out, plots=not args.no_plots, force=args.force)
    from mapper.report import chip_line, format_line, layers_table, selection_line, strategies_table, summary_table
    rep = res.report()
    console = Console(width=max(120, Console().width))
    console.print(summary_table(rep))
    console.print(format_line(rep["format"]), markup=False)
    if rep["summary"].get("chip"):
        console.print(chip_line(rep["summary"]["chip"]), markup=False)
    for table in (strategies_table(rep), layers_table(rep)):
        if table is not None:
            console.print(table)
    if rep.get("stream"):
        st = rep["stream"]
        console.print(f"stream: {len(res.commands)} commands; exact on sw_model: {st['exact']}; "
                      f"paper-ADC error (mean rel. L2): {st['adc_error']['mean_rel_l2']:.4f}")
    if rep.get("adc_selection"):
        console.print(selection_line(rep["adc_selection"]), markup=False)
    print(f"wrote {out}/")
    return 0
