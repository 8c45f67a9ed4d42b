"""Hardware benchmark: MVM cycles measured in Amaranth's simulator vs the documented formula, and FPGA figures.

Run ``python bench/bench_hw.py [--no-synth]``. Prints two tables and writes ``bench/results/hw.json``:

* cycles of one MVM for several window sizes on fpga-micro, fpga-tiny and fpga-tiny-sliced (its 4-bit weights as
  1-bit differential cells), measured (stream with the MVM minus the same stream without it) next to
  :func:`hw.timing.mvm_cycles` (printed side by side, not asserted);
* resources and Fmax from yosys + nextpnr: fpga-micro on ice40-up5k, fpga-tiny and fpga-tiny-sliced on ecp5-25k
  (minutes each). ``--only NAME`` restricts both tables to one configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cimisa.config import load_hw  # noqa: E402
from cimisa.fsutil import atomic_write_text  # noqa: E402
from cimisa.isa import Command, Isa  # noqa: E402
from hw.pysim import run_tile  # noqa: E402
from hw.timing import mvm_cycles, row_groups  # noqa: E402

WINDOWS = {  # (row0, nrows, col0, ncols)
    "fpga-micro": [(0, 1, 0, 1), (0, 4, 0, 4), (2, 5, 3, 6), (0, 8, 0, 8), (0, 16, 0, 16)],
    "fpga-tiny": [(0, 1, 0, 1), (0, 8, 0, 8), (3, 9, 5, 11), (0, 16, 0, 16), (0, 32, 0, 4), (0, 32, 0, 32)],
    "fpga-tiny-sliced": [(0, 1, 0, 1), (0, 8, 0, 8), (3, 9, 5, 11), (0, 32, 0, 4), (0, 32, 0, 32)],
}
SYNTH = [("fpga-micro", "ice40-up5k"), ("fpga-tiny", "ecp5-25k"), ("fpga-tiny-sliced", "ecp5-25k")]


def measure_mvm(cfg, row0, nrows, col0, ncols) -> int:
    """Return the cycles one MVM adds to a stream, measured in pysim."""
    isa = Isa.of(cfg)
    base = [Command.load_in(0, [1] * min(cfg.in_depth, cfg.rows))]
    mvm = Command.mvm(array=0, row0=row0, nrows=nrows, col0=col0, ncols=ncols, in_addr=0, out_addr=0,
                      adc_bits=cfg.adc_bits)
    t0 = run_tile(cfg, isa.encode(base + [Command.halt()])).cycles
    t1 = run_tile(cfg, isa.encode(base + [mvm, Command.halt()])).cycles
    return t1 - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-synth", action="store_true", help="skip yosys/nextpnr (cycle table only)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "hw.json"))
    ap.add_argument("--only", choices=sorted(WINDOWS), help="one configuration only")
    args = ap.parse_args(argv)

    rows = []
    print(f"{'config':11} {'row0':>4} {'nrows':>5} {'col0':>4} {'ncols':>5} {'groups':>6} {'measured':>8} "
          f"{'formula':>7} {'MACs/cycle':>10}")
    for name, windows in WINDOWS.items():
        if args.only and name != args.only:
            continue
        cfg = load_hw(name)
        for row0, nrows, col0, ncols in windows:
            meas = measure_mvm(cfg, row0, nrows, col0, ncols)
            form = mvm_cycles(cfg, row0, nrows, ncols)
            g = row_groups(cfg, row0, nrows)
            rows.append(dict(config=name, row0=row0, nrows=nrows, col0=col0, ncols=ncols, groups=g,
                             measured=meas, formula=form, macs_per_cycle=round(nrows * ncols / meas, 3)))
            print(f"{name:11} {row0:4} {nrows:5} {col0:4} {ncols:5} {g:6} {meas:8} {form:7} "
                  f"{nrows * ncols / meas:10.3f}")
    result = {"mvm_cycles": rows,
              "formula": ("nrows + ncols + fmt.digits*(G + 1 + cols_per_weight*ceil(ncols/adcs_per_array) + bias_cols)"
                          " + 6"),
              "synth": []}
    if not args.no_synth:
        from hw.synth import format_table, synth
        for name, target in SYNTH:
            if args.only and name != args.only:
                continue
            t = time.time()
            print(f"synthesising {name} for {target} ...", flush=True)
            res = synth(load_hw(name), target)
            res["wall_seconds"] = round(time.time() - t, 1)
            result["synth"].append(res)
        print(format_table(result["synth"]))
    atomic_write_text(args.out, json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
