"""Command line of the co-simulation: ``python -m sim run --model M [--hw H] [...]`` and ``python -m sim check``.

User errors (:class:`cimisa.errors.KitError`: bad option, unknown model or configuration, unusable output folder,
missing simulator, tool failure) print one line ``error: ...`` and exit with status 2, before any simulator
build where the input allows; a run with any mismatch exits with status 1.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

from cimisa import progress, threads
from cimisa.errors import KitArgumentParser, cli_main

__all__ = ["make_parser", "main"]

#: Largest accepted ``--seed`` (numpy and the handshake generators take any non-negative integer; this keeps
#: seeds within what every tool reading summary.json handles).
MAX_SEED = 2**63 - 1
_SEED = "a non-negative integer below 2**63"
_SIM_HELP = ("verilator or icarus: cocotb testbench (handshake checks, waves); verilator-fast: the exported Verilog "
             "in the kit's C++ harness, no cocotb, ~50x faster, same cycles and checker; auto (default): "
             "verilator-fast for long streams, verilator otherwise")


def _int_in(lo: int, hi: int, bound: str | None = None):
    """An argparse type: an integer from ``lo`` to ``hi`` (inclusive); ``bound`` words the range in errors."""
    def parse(text: str) -> int:
        try:
            v = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be {bound or f'from {lo} to {hi}'}, not {v}")
        return v
    parse.__name__ = "integer"
    return parse


def _probability(text: str) -> float:
    """An argparse type: a finite number in [0, 1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not (math.isfinite(v) and 0.0 <= v < 1.0):
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1), not {text!r}")
    return v


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    from sim.flow import (  # noqa: PLC0415
        MAX_LENGTH,
        MAX_RANDOM,
        MAX_RANDOM_COMMANDS,
        SIMULATOR_CHOICES,  # noqa: PLC0415
    )
    from sim.model_stream import DEFAULT_HW, STRATEGIES, STREAM_SEED  # noqa: PLC0415
    p = KitArgumentParser(prog="python -m sim",
                          description="Co-simulate CIM command streams on the RTL (cocotb) against sw_model.")
    progress.add_common_options(p, threads=False, top_level=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    r = sub.add_parser("run", help="map a model, run its stream on the RTL and on sw_model, compare",
                       description="Map a model exactly as `python -m mapper build` does (same stream for the "
                                   "same --hw, --strategy, --nblocks and --seed) or take a mapper output "
                                   "folder's commands.bin, run it on the RTL and on sw_model, compare.")
    progress.add_common_options(r)
    r.add_argument("--model", required=True,
                   help="tiny zoo model (tiny-bert, tiny-gpt2, ...), checkpoint or d2s folder, mapper output "
                        "folder with commands.bin, or a .bin stream file")
    r.add_argument("--hw", default=None,
                   help=f"built-in configuration name or .toml/.json file (default: a stream's own "
                        f"configuration, else {DEFAULT_HW})")
    r.add_argument("--strategy", default="auto", choices=(*STRATEGIES, "all"),
                   help="placement strategy (all: every strategy, one stream each; default: %(default)s)")
    r.add_argument("--simulator", default="auto", choices=SIMULATOR_CHOICES, help=_SIM_HELP)
    r.add_argument("--waves", action="store_true", help="record waves (VCD with Verilator, FST with Icarus)")
    r.add_argument("--out", default="build/cosim", help="output folder (default: %(default)s, in the current "
                                                        "folder)")
    r.add_argument("--force", action="store_true", help="replace --out even if the kit did not write it")
    r.add_argument("--seed", type=_int_in(0, MAX_SEED, _SEED), default=STREAM_SEED,
                   help="seed of the input vectors (as mapper build's) and of the handshake randomness "
                        "(default: %(default)s)")
    r.add_argument("--nblocks", type=_int_in(1, 4096), default=None,
                   help="Monarch blocks (default: mapper build's, 2**round(log2(sqrt(d_model))))")
    r.add_argument("--gap", type=_probability, default=0.0, help="probability of an idle cycle on cmd.valid")
    r.add_argument("--backpressure", type=_probability, default=0.0,
                   help="probability of res.ready low on a cycle")
    r.set_defaults(func=_run)
    c = sub.add_parser("check", help="run random legal streams and every illegal-stream variant on the RTL",
                       description="Run random legal command streams and every illegal-stream variant on the RTL "
                                   "and on sw_model; compare results and error codes.")
    progress.add_common_options(c)
    c.add_argument("--hw", default=DEFAULT_HW, help="built-in configuration name or .toml/.json file "
                                                    "(default: %(default)s)")
    c.add_argument("--simulator", default="auto", choices=SIMULATOR_CHOICES, help=_SIM_HELP)
    c.add_argument("--random", type=_int_in(0, MAX_RANDOM), default=10,
                   help=f"random legal streams, 0 to {MAX_RANDOM} (default: %(default)s)")
    c.add_argument("--length", type=_int_in(1, MAX_LENGTH), default=60,
                   help=f"commands per random stream, 1 to {MAX_LENGTH}; --random x --length at most "
                        f"{MAX_RANDOM_COMMANDS} (default: %(default)s)")
    c.add_argument("--no-illegal", action="store_true", help="leave out the illegal streams")
    c.add_argument("--seed", type=_int_in(0, MAX_SEED, _SEED), default=0,
                   help="seed of the streams and handshakes (default: %(default)s)")
    c.add_argument("--gap", type=_probability, default=0.0, help="probability of an idle cycle on cmd.valid")
    c.add_argument("--backpressure", type=_probability, default=0.0,
                   help="probability of res.ready low on a cycle")
    c.add_argument("--out", default=None, help="also write summary.json and the simulator files into this folder "
                                                "(default: print only)")
    c.add_argument("--force", action="store_true", help="replace --out even if the kit did not write it")
    c.set_defaults(func=_check)
    return p


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _print_summary(s: dict, out) -> None:
    b = s["build"]
    built = "reused" if b["reused"] else f"{b['seconds']:.1f} s"
    print(f"{s['model']} on {s['hw']} ({s['hw_tag']}), {s['simulator']}: build {built}")
    width = max([24] + [len(st["name"]) for st in s["streams"]])
    print(f"{'stream':<{width}} {'commands':>9} {'words':>7} {'cycles':>9} {'predicted':>9} {'ratio':>7} "
          f"{'cycles/s':>10} {'results':>8} {'status':<28} {'mismatches':>10}")
    for st in s["streams"]:
        status = "/".join(str(v) for v in st["status"])
        print(f"{st['name']:<{width}} {st['commands']:>9} {st['words']:>7} {st['cycles']:>9} "
              f"{st.get('predicted_cycles', '-'):>9} {_ratio(st.get('cycle_ratio')):>7} "
              f"{st['cycles_per_s']:>10.0f} {st['results']:>8} {status:<28} {st['mismatches']:>10}")
    where = f" -> {out}/summary.json" if out else ""
    pred = ""
    if "predicted_cycles" in s:
        worst = s["cycle_ratio_worst"]
        on = f" on {s['cycle_ratio_worst_stream']}" if worst is not None else ""
        pred = f", predicted {s['predicted_cycles']} (worst predicted/measured {_ratio(worst)}{on})"
    print(f"total: {s['commands']} commands, {s['cycles']} cycles{pred}, {s['cycles_per_s']:.0f} cycles/s, "
          f"{s['mismatches']} mismatches{where}")
    if s.get("cycle_note"):
        print(f"note: cycle ratios: {s['cycle_note']}")


def _check(args) -> int:
    from cimisa.config import load_hw  # noqa: PLC0415
    from cimisa.fsutil import check_out_dir  # noqa: PLC0415
    from sim.flow import cosim_check  # noqa: PLC0415
    cfg = load_hw(args.hw)
    if args.out is not None:
        check_out_dir(args.out, force=args.force)
    # The whole check as one step (its build and simulation report their own steps inside): the fast harness's
    # build shows progress too.
    with progress.stage(f"sim check ({args.simulator})"):
        s = cosim_check(cfg, n_random=args.random, length=args.length, illegal=not args.no_illegal,
                        simulator=args.simulator, seed=args.seed, gap=args.gap, backpressure=args.backpressure,
                        out_dir=args.out, force=args.force)
    _print_summary(s, args.out)
    return 0 if s["ok"] else 1


def _run(args) -> int:
    from cimisa.config import load_hw  # noqa: PLC0415
    from cimisa.fsutil import check_out_dir  # noqa: PLC0415
    from sim.flow import cosim_model  # noqa: PLC0415
    from sim.model_stream import STRATEGIES  # noqa: PLC0415
    cfg = load_hw(args.hw) if args.hw is not None else None
    check_out_dir(args.out, force=args.force)
    strategies = list(STRATEGIES) if args.strategy == "all" else [args.strategy]
    with progress.stage(f"sim run ({args.simulator})"):
        s = cosim_model(args.model, cfg, strategies=strategies, simulator=args.simulator, waves=args.waves,
                        out_dir=args.out, seed=args.seed, nblocks=args.nblocks, gap=args.gap,
                        backpressure=args.backpressure, force=args.force)
    _print_summary(s, args.out)
    return 0 if s["ok"] else 1


def _setup(args) -> None:
    progress.setup(args)
    if getattr(args, "verbose", False):
        logging.getLogger().setLevel(logging.INFO)     # the simulators' debug output is too much


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    threads.early(argv)                     # BLAS thread variables before numpy or torch load
    return cli_main(make_parser, argv, setup=_setup)


if __name__ == "__main__":
    sys.exit(main())
