"""Hardware benchmark: MVM cycles measured in Amaranth's simulator vs the documented formula, and FPGA figures.

Run ``python bench/bench_hw.py [--no-synth]``. Prints two tables and writes ``bench/results/hw.json``:

* cycles of one MVM for several window sizes on fpga-micro, fpga-tiny and fpga-tiny-sliced (its 4-bit weights as
  1-bit differential cells), measured (stream with the MVM minus the same stream without it) next to
  :func:`hw.timing.mvm_cycles` (printed side by side, not asserted);
* the concurrent chips (fpga-tiny-2t, fpga-tiny-4t: :class:`hw.chip.CimChip`): the same MVMs on one tile and
  spread over every tile, measured in pysim next to the performance model's prediction (:func:`perf.stream.predict`)
  and the speed-up of spreading, measured and predicted;
* resources and Fmax from yosys + nextpnr: fpga-micro on ice40-up5k, fpga-tiny and fpga-tiny-sliced on ecp5-25k,
  fpga-tiny-2t on ecp5-45k, fpga-tiny-4t on ecp5-85k (minutes each; tens of minutes for the 4-tile chip), with
  each chip's Fmax as a fraction of the single tile's (fpga-tiny). ``--synth-json FILE ...`` takes figures from
  earlier ``python -m hw synth --out FILE`` runs instead of synthesising those configurations again. ``--only
  NAME`` restricts the tables to one configuration.
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
SYNTH = [("fpga-micro", "ice40-up5k"), ("fpga-tiny", "ecp5-25k"), ("fpga-tiny-sliced", "ecp5-25k"),
         ("fpga-tiny-2t", "ecp5-45k"), ("fpga-tiny-4t", "ecp5-85k")]
#: Concurrent chips of the spread table, and the MVMs per tile of its stream.
CHIPS = ["fpga-tiny-2t", "fpga-tiny-4t"]
SPREAD_MVMS = 8


def spread_streams(cfg, n: int):
    """The same ``n`` MVMs (full 32x32 windows, disjoint outputs) on tile 0 only, and round-robin over the tiles."""
    apt, t = cfg.chip.arrays_per_tile, cfg.n_tiles
    out_n = cfg.logical_cols

    def mvm(array, j):
        return Command.mvm(array=array, row0=0, nrows=cfg.rows, col0=0, ncols=out_n, in_addr=0,
                           out_addr=(j * out_n) % cfg.out_depth, adc_bits=cfg.adc_bits)

    pre = [Command.load_in(0, [1] * cfg.rows)]
    one = pre + [mvm(j % apt, j) for j in range(n)] + [Command.halt()]
    spread = pre + [mvm((j % t) * apt + (j // t) % apt, j) for j in range(n)] + [Command.halt()]
    return one, spread


def chip_table(names) -> list[dict]:
    """Measured (pysim) and predicted cycles of the same MVMs on one tile and spread over every tile."""
    from perf.stream import predict  # noqa: PLC0415
    rows = []
    print(f"{'config':13} {'stream':7} {'MVMs':>4} {'measured':>8} {'predicted':>9} {'ratio':>6}")
    for name in names:
        cfg = load_hw(name)
        isa = Isa.of(cfg)
        got = {}
        for kind, cmds in zip(("one", "spread"), spread_streams(cfg, SPREAD_MVMS)):
            meas = run_tile(cfg, isa.encode(cmds)).cycles
            pred = predict(cfg, cmds, harness="pysim").cycles
            got[kind] = (meas, pred)
            rows.append(dict(config=name, stream=kind, mvms=SPREAD_MVMS, measured=meas, predicted=pred,
                             ratio=round(pred / meas, 4)))
            print(f"{name:13} {kind:7} {SPREAD_MVMS:4} {meas:8} {pred:9} {pred / meas:6.3f}")
        sm = got["one"][0] / got["spread"][0]
        sp = got["one"][1] / got["spread"][1]
        rows.append(dict(config=name, stream="speedup", measured=round(sm, 4), predicted=round(sp, 4)))
        print(f"{name:13} speed-up of spreading: measured {sm:.3f}, predicted {sp:.3f}")
    return rows


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
    ap.add_argument("--only", choices=sorted({n for n, _ in SYNTH}), help="one configuration only")
    ap.add_argument("--synth-json", nargs="*", default=[],
                    help="figures of earlier `python -m hw synth --out FILE` runs (used instead of synthesising)")
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
              "formula": ("nrows + ncols + fmt.digits*(G + 2 + cols_per_weight*ceil(ncols/adcs_per_array) + bias_cols)"
                          " + 6"),
              "synth": []}
    result["chips"] = chip_table([n for n in CHIPS if not args.only or n == args.only])
    if not args.no_synth:
        from hw.synth import format_table, synth
        given = {}
        for f in args.synth_json:
            r = json.loads(Path(f).read_text())
            given[(r["config"], r["target"])] = r
        for name, target in SYNTH:
            if args.only and name != args.only:
                continue
            if (name, target) in given:
                result["synth"].append(given[(name, target)])
                continue
            t = time.time()
            print(f"synthesising {name} for {target} ...", flush=True)
            res = synth(load_hw(name), target)
            res["wall_seconds"] = round(time.time() - t, 1)
            result["synth"].append(res)
        print(format_table(result["synth"]))
        single = next((r["fmax_mhz"] for r in result["synth"] if r["config"] == "fpga-tiny"), None)
        for r in result["synth"]:
            if single and r["config"] in CHIPS:
                r["fmax_ratio"] = round(r["fmax_mhz"] / single, 3)
                print(f"{r['config']}: Fmax {r['fmax_mhz']:.1f} MHz = {r['fmax_ratio']:.3f} x the single tile's "
                      f"{single:.1f} MHz")
    atomic_write_text(args.out, json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
