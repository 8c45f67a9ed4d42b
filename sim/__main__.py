"""Command line of the co-simulation: ``python -m sim run --model M --hw H [...]``.

User errors (:class:`cimisa.errors.KitError`) print one line ``error: ...`` and exit with status 2; a run with
any mismatch exits with status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cimisa.errors import run_cli

__all__ = ["make_parser", "main"]


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    from sim.model_stream import STRATEGIES  # noqa: PLC0415
    from sim.runner import SIMULATORS  # noqa: PLC0415
    p = argparse.ArgumentParser(prog="python -m sim",
                                description="Co-simulate CIM command streams on the RTL (cocotb) against sw_model.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    r = sub.add_parser("run", help="map a model, run its stream on the RTL and on sw_model, compare")
    r.add_argument("--model", required=True,
                   help="tiny zoo model (tiny-bert, tiny-gpt2, ...), checkpoint folder, or mapper output folder "
                        "with commands.bin")
    r.add_argument("--hw", default="fpga-tiny", help="built-in configuration name or .toml/.json file")
    r.add_argument("--strategy", default="auto", choices=(*STRATEGIES, "all"),
                   help="placement strategy (all: every strategy, one stream each)")
    r.add_argument("--simulator", default="verilator", choices=SIMULATORS)
    r.add_argument("--waves", action="store_true", help="record waves (VCD with Verilator, FST with Icarus)")
    r.add_argument("--out", default="build/cosim", help="output folder (default: %(default)s)")
    r.add_argument("--seed", type=int, default=0, help="seed of the input vectors and handshake randomness")
    r.add_argument("--nblocks", type=int, default=4, help="Monarch blocks (default: %(default)s)")
    r.add_argument("--gap", type=float, default=0.0, help="probability of an idle cycle on cmd.valid")
    r.add_argument("--backpressure", type=float, default=0.0, help="probability of res.ready low on a cycle")
    r.set_defaults(func=_run)
    c = sub.add_parser("check", help="run random legal streams and every illegal-stream variant on the RTL")
    c.add_argument("--hw", default="fpga-tiny", help="built-in configuration name or .toml/.json file")
    c.add_argument("--simulator", default="verilator", choices=SIMULATORS)
    c.add_argument("--random", type=int, default=10, help="random legal streams (default: %(default)s)")
    c.add_argument("--length", type=int, default=60, help="commands per random stream (default: %(default)s)")
    c.add_argument("--no-illegal", action="store_true", help="leave out the illegal streams")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--gap", type=float, default=0.0, help="probability of an idle cycle on cmd.valid")
    c.add_argument("--backpressure", type=float, default=0.0, help="probability of res.ready low on a cycle")
    c.add_argument("--out", default=None, help="output folder for summary.json and the simulator files")
    c.set_defaults(func=_check)
    return p


def _print_summary(s: dict, out) -> None:
    b = s["build"]
    built = "reused" if b["reused"] else f"{b['seconds']:.1f} s"
    print(f"{s['model']} on {s['hw']} ({s['hw_tag']}), {s['simulator']}: build {built}")
    width = max([24] + [len(st["name"]) for st in s["streams"]])
    print(f"{'stream':<{width}} {'commands':>9} {'words':>7} {'cycles':>9} {'cycles/s':>10} {'results':>8} "
          f"{'status':<28} {'mismatches':>10}")
    for st in s["streams"]:
        status = "/".join(str(v) for v in st["status"])
        print(f"{st['name']:<{width}} {st['commands']:>9} {st['words']:>7} {st['cycles']:>9} "
              f"{st['cycles_per_s']:>10.0f} {st['results']:>8} {status:<28} {st['mismatches']:>10}")
    where = f" -> {out}/summary.json" if out else ""
    print(f"total: {s['commands']} commands, {s['cycles']} cycles, {s['cycles_per_s']:.0f} cycles/s, "
          f"{s['mismatches']} mismatches{where}")


def _check(args) -> int:
    from cimisa.config import load_hw  # noqa: PLC0415
    from sim.flow import cosim_check  # noqa: PLC0415
    s = cosim_check(load_hw(args.hw), n_random=args.random, length=args.length, illegal=not args.no_illegal,
                    simulator=args.simulator, seed=args.seed, gap=args.gap, backpressure=args.backpressure,
                    out_dir=args.out)
    _print_summary(s, args.out)
    return 0 if s["ok"] else 1


def _run(args) -> int:
    from cimisa.config import load_hw  # noqa: PLC0415
    from sim.flow import cosim_model  # noqa: PLC0415
    from sim.model_stream import STRATEGIES  # noqa: PLC0415
    cfg = load_hw(args.hw)
    strategies = list(STRATEGIES) if args.strategy == "all" else [args.strategy]
    s = cosim_model(args.model, cfg, strategies=strategies, simulator=args.simulator, waves=args.waves,
                    out_dir=args.out, seed=args.seed, nblocks=args.nblocks, gap=args.gap,
                    backpressure=args.backpressure)
    _print_summary(s, args.out)
    return 0 if s["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_cli(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
