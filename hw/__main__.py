"""Command line: ``python -m hw export|lint|synth|diagram``.

User errors (unknown configuration, bad option, tool failure) print one line ``error: ...`` on stderr and exit
with status 2; output files are written atomically, so nothing partial is left behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cimisa.errors import KitError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise KitError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m hw", description="CIM tile RTL: Verilog export, lint, FPGA synthesis reports.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    e = sub.add_parser("export", help="write cim_tile_<tag>.v and its JSON sidecar")
    e.add_argument("--hw", required=True, help="built-in configuration name or a .toml/.json file")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall on the result")
    ln = sub.add_parser("lint", help="verilator --lint-only -Wall (documented waivers) on a Verilog file")
    ln.add_argument("path")
    s = sub.add_parser("synth", help="yosys + nextpnr: resources and Fmax")
    s.add_argument("--hw", required=True, help="built-in configuration name or a .toml/.json file")
    s.add_argument("--target", required=True, help="ice40-up5k | ecp5-25k | ecp5-85k")
    s.add_argument("--out", help="write the figures to this JSON file")
    s.add_argument("--work-dir", help="keep yosys/nextpnr files and logs here")
    s.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    d = sub.add_parser("diagram", help="draw the block diagram (PNG)")
    d.add_argument("--out", default="docs/img/hw_block.png")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        args = _parser().parse_args(argv)
        if args.cmd == "export":
            from hw.export import export_verilog, lint
            path = export_verilog(args.hw, args.out)
            if args.lint:
                lint(path)
            print(path)
            print(path.with_suffix(".json"))
        elif args.cmd == "lint":
            from hw.export import lint
            lint(args.path)
            print(f"lint ok: {args.path}")
        elif args.cmd == "synth":
            from cimisa.config import load_hw
            from cimisa.fsutil import atomic_write_text
            from hw.synth import TARGETS, format_table, synth
            cfg = load_hw(args.hw)
            if args.target not in TARGETS:
                raise KitError(f"unknown target {args.target!r} (choose from {', '.join(TARGETS)})")
            res = synth(cfg, args.target, work_dir=args.work_dir, seed=args.seed)
            print(format_table([res]))
            if args.out:
                atomic_write_text(args.out, json.dumps(res, indent=2, sort_keys=True) + "\n")
        elif args.cmd == "diagram":
            from hw.diagram import draw
            print(draw(Path(args.out)))
    except KitError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
