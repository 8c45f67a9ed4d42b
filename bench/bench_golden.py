"""Golden-model speed: vectorised numpy vs naive loops on the same MVM workload.

Workload: one 256x256 array of random 8-bit weights (``paper-256``, lossless ADC so no saturation shortcut),
full-window MVMs with 8-bit inputs (8 bit-serial cycles each). Both models execute the same decoded commands
through ``Machine.execute`` (checks included); their outputs are compared. Prints MAC/s of each and the ratio.

    python bench/bench_golden.py [--mvms 40] [--naive-mvms 2] [--json bench/results/golden.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cimisa.config import load_hw  # noqa: E402
from cimisa.fsutil import atomic_write_text  # noqa: E402
from cimisa.isa import Command  # noqa: E402
from sw_model import Machine  # noqa: E402


def workload(cfg, n_mvms: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    W = rng.integers(-128, 128, (cfg.rows, cfg.cols))
    prog = [Command.write_w(0, r, 0, W[r]) for r in range(cfg.rows)]
    mvms = []
    for k in range(n_mvms):
        x = rng.integers(-128, 128, cfg.rows)
        mvms.append([Command.load_in(0, x),
                     Command.mvm(array=0, row0=0, nrows=cfg.rows, col0=0, ncols=cfg.cols, in_addr=0,
                                 out_addr=k * cfg.cols % (cfg.out_depth - cfg.cols), adc_bits=cfg.adc_bits)])
    return prog, mvms


def measure(cfg, impl: str, prog, mvms) -> tuple[float, np.ndarray]:
    m = Machine(cfg, impl=impl)
    for c in prog:
        m.execute(c)
    t0 = time.perf_counter()
    outs = []
    for load, mvm in mvms:
        m.execute(load)
        m.execute(mvm)
        outs.append(m.state.outbuf[mvm.out_addr:mvm.out_addr + cfg.cols].copy())
    dt = time.perf_counter() - t0
    return dt, np.array(outs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mvms", type=int, default=40, help="MVMs for the vectorised model")
    ap.add_argument("--naive-mvms", type=int, default=2, help="MVMs for the naive model (slow)")
    ap.add_argument("--json", type=Path, default=Path("bench/results/golden.json"))
    args = ap.parse_args(argv)
    cfg = load_hw("paper-256").lossless()
    prog, mvms = workload(cfg, max(args.mvms, args.naive_mvms))
    macs = cfg.rows * cfg.cols
    t_fast, y_fast = measure(cfg, "fast", prog, mvms[:args.mvms])
    t_naive, y_naive = measure(cfg, "naive", prog, mvms[:args.naive_mvms])
    if not np.array_equal(y_fast[:args.naive_mvms], y_naive):
        print("error: vectorised and naive models disagree", file=sys.stderr)
        return 1
    fast = macs * args.mvms / t_fast
    naive = macs * args.naive_mvms / t_naive
    res = {"array": f"{cfg.rows}x{cfg.cols}", "input_bits": cfg.input_bits, "weight_bits": cfg.weight_bits,
           "vectorised_mvms": args.mvms, "naive_mvms": args.naive_mvms,
           "vectorised_mac_per_s": fast, "naive_mac_per_s": naive, "ratio": fast / naive}
    print(f"workload: {cfg.rows}x{cfg.cols} array, {cfg.input_bits}-bit bit-serial inputs, full-window MVMs")
    print(f"{'model':<12}{'MVMs':>6}{'seconds':>10}{'MAC/s':>14}")
    print(f"{'vectorised':<12}{args.mvms:>6}{t_fast:>10.3f}{fast:>14.3e}")
    print(f"{'naive':<12}{args.naive_mvms:>6}{t_naive:>10.3f}{naive:>14.3e}")
    print(f"vectorised / naive speed ratio: {fast / naive:.0f}x (outputs identical)")
    atomic_write_text(args.json, json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
