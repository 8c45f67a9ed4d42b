"""Command line: ``python -m hw export|lint|synth|diagram``.

User errors (unknown configuration or target, bad option, unusable output path, tool failure) print one line
``error: ...`` on stderr and exit with status 2 (a tool failure names its log). Output paths are checked before
any work; outputs are written atomically and replace only what the kit wrote, unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import sys

from cimisa import progress
from cimisa.errors import KitArgumentParser, KitError, cli_main

__all__ = ["make_parser", "main"]

#: Default output of ``python -m hw diagram`` (in the current folder).
DIAGRAM_OUT = "hw_block.png"


def _seed(text: str) -> int:
    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
    if not 0 <= v < 2**31:
        raise argparse.ArgumentTypeError(f"must be from 0 to {2**31 - 1}, not {v}")
    return v


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    p = KitArgumentParser(prog="python -m hw",
                          description="CIM RTL (one tile, or a concurrent chip of several tiles): Verilog "
                                      "export, lint, FPGA synthesis reports, block diagram.")
    progress.add_common_options(p, threads=False, top_level=True)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    e = sub.add_parser("export", help="write cim_tile_<tag>.v and its JSON sidecar into a folder",
                       description="Export the RTL of a configuration (a tile, or a concurrent chip) as Verilog "
                                   "(cim_tile_<tag>.v) with a JSON "
                                   "sidecar of its ports and parameters; optionally lint it with Verilator.")
    e.add_argument("--hw", required=True, help="built-in configuration name or a .toml/.json file")
    e.add_argument("--out", default=None, help="output folder (default: export-<hw> in the current folder; written "
                                               "all at once; replaced if the kit wrote it)")
    e.add_argument("--lint", action="store_true",
                   help="also run verilator --lint-only -Wall on the result (nothing is written if it fails)")
    e.add_argument("--force", action="store_true", help="replace --out even if the kit did not write it")
    progress.add_common_options(e, threads=False)
    e.set_defaults(func=_export)
    ln = sub.add_parser("lint", help="verilator --lint-only -Wall (documented waivers) on a Verilog file",
                        description="Lint a Verilog file with verilator --lint-only -Wall and the kit's documented "
                                    "waivers; exit 0 when clean.")
    ln.add_argument("path", help="the Verilog file")
    progress.add_common_options(ln, threads=False)
    ln.set_defaults(func=_lint)
    s = sub.add_parser("synth", help="yosys + nextpnr: resources and Fmax",
                       description="Synthesise (yosys), place and route (nextpnr) the RTL for an FPGA target and "
                                   "print its resources and Fmax; takes one to several minutes.")
    s.add_argument("--hw", required=True, help="built-in configuration name or a .toml/.json file")
    s.add_argument("--target", required=True, help="ice40-up5k | ecp5-25k | ecp5-45k | ecp5-85k")
    s.add_argument("--out", help="also write the figures to this JSON file (default: print only)")
    s.add_argument("--work-dir", help="keep yosys/nextpnr files and logs in this folder (kept when a tool fails)")
    s.add_argument("--seed", type=_seed, default=1, help="nextpnr placement seed (default: %(default)s)")
    s.add_argument("--force", action="store_true",
                   help="replace an existing --out file, or a --work-dir the kit did not write")
    progress.add_common_options(s, threads=False)
    s.set_defaults(func=_synth)
    d = sub.add_parser("diagram", help="draw the block diagram (PNG)",
                       description="Draw the block diagram of the CIM tile as a PNG file; with --hw naming a "
                                   "concurrent configuration (several tiles with command queues), the chip's "
                                   "(dispatcher, tile queues, bus), every number from the configuration.")
    d.add_argument("--hw", default=None,
                   help="built-in configuration name or a .toml/.json file (default: the tile's diagram, the same "
                        "for every configuration that executes in order; docs/img/chip_block.png: fpga-tiny-4t)")
    d.add_argument("--out", default=DIAGRAM_OUT,
                   help="PNG file (default: %(default)s in the current folder; docs/img/hw_block.png for the docs)")
    d.add_argument("--force", action="store_true", help="replace an existing --out file")
    progress.add_common_options(d, threads=False)
    d.set_defaults(func=_diagram)
    return p


def _export(args) -> int:
    from cimisa.config import load_hw
    from cimisa.fsutil import atomic_dir, check_out_dir
    cfg = load_hw(args.hw)
    if args.out is None:
        from mapper.cli_args import default_out  # noqa: PLC0415
        args.out = default_out("export", cfg.name or args.hw)
    out = check_out_dir(args.out, force=args.force)
    from hw.export import export_verilog, lint
    with atomic_dir(out, force=args.force) as tmp:
        path = export_verilog(cfg, tmp)
        if args.lint:
            with progress.stage("verilator lint"):
                lint(path)
    print(out / path.name)
    print(out / path.with_suffix(".json").name)
    if args.lint:
        print("lint ok")
    return 0


def _lint(args) -> int:
    from hw.export import lint
    lint(args.path)
    print(f"lint ok: {args.path}")
    return 0


def _synth(args) -> int:
    from cimisa.config import load_hw
    from cimisa.fsutil import atomic_dir, atomic_write_text, check_out_dir, check_out_file
    from hw.synth import TARGETS, SynthError, format_table, synth
    if args.target not in TARGETS:
        raise KitError(f"unknown target {args.target!r} (choose from {', '.join(TARGETS)})")
    cfg = load_hw(args.hw)
    out = check_out_file(args.out, force=args.force) if args.out else None
    if args.work_dir is None:
        res = synth(cfg, args.target, seed=args.seed)
    else:
        wd = check_out_dir(args.work_dir, force=args.force, what="work folder")
        if out is not None and (out == wd or wd in out.parents):
            raise KitError(f"--out {args.out} must not lie in --work-dir {args.work_dir} (it is replaced)")
        failure = None
        with atomic_dir(wd, force=args.force) as tmp:
            try:
                res = synth(cfg, args.target, work_dir=tmp, seed=args.seed)
            except SynthError as exc:          # keep the folder: its logs say why
                failure = exc
        if failure is not None:
            raise failure.moved(tmp, wd)
    print(format_table([res]))
    if out is not None:
        atomic_write_text(out, json.dumps(res, indent=2, sort_keys=True) + "\n")
    return 0


def _diagram(args) -> int:
    from cimisa.config import load_hw
    from cimisa.fsutil import check_out_file
    from hw.diagram import diagram_for, draw
    cfg = None if args.hw is None else load_hw(args.hw)
    diagram_for(cfg)                       # a chip the RTL cannot generate is refused before the output is checked
    out = check_out_file(args.out, force=args.force)
    draw(out, cfg)
    print(args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    return cli_main(make_parser, argv, setup=progress.setup)


if __name__ == "__main__":
    sys.exit(main())
