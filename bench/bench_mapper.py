"""Benchmark: wall time to map and schedule Llama-2-7B shapes (no weights) with each strategy.

Run: ``python bench/bench_mapper.py [--model llama-2-7b] [--hw paper-256]``. Prints one table row per strategy:
place (with validation), schedule, cost-model time, arrays, utilisation and activations. Target: place + schedule
<= 10 s per strategy. The configuration's array count is raised to fit Linear (a capacity, not a constraint here).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cimisa.config import load_hw  # noqa: E402
from mapper.cost import ModelDims, estimate  # noqa: E402
from mapper.models import load_model_spec  # noqa: E402
from mapper.place import STRATEGIES, default_nblocks, geometry, place  # noqa: E402
from mapper.schedule import schedule  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-2-7b")
    ap.add_argument("--hw", default="paper-256")
    ap.add_argument("--nblocks", type=int, default=None)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    args = ap.parse_args(argv)
    hw = load_hw(args.hw, n_arrays=1 << 20)
    spec = load_model_spec(args.model)
    nb = args.nblocks or default_nblocks(spec)
    geoms = geometry(spec, nb)
    dims = ModelDims.of(spec)
    print(f"{args.model}: {len(geoms)} matmuls, nblocks {nb}, {hw.rows}x{hw.cols} arrays")
    print(f"{'strategy':>8} {'place s':>8} {'sched s':>8} {'map+sched':>9} {'cost s':>7} {'arrays':>8} "
          f"{'LB':>7} {'util':>6} {'activations':>11}")
    worst = 0.0
    for st in args.strategies.split(","):
        t0 = time.perf_counter()
        pl = place(geoms, hw, st)
        t1 = time.perf_counter()
        sc = schedule(pl, hw, "paper")
        t2 = time.perf_counter()
        estimate(sc, hw, dims)
        t3 = time.perf_counter()
        worst = max(worst, t2 - t0)
        print(f"{st:>8} {t1 - t0:8.2f} {t2 - t1:8.2f} {t2 - t0:9.2f} {t3 - t2:7.2f} {pl.n_arrays:8d} "
              f"{pl.lower_bound:7d} {pl.utilization:6.1%} {len(sc.activations):11d}")
    print(f"worst map+schedule: {worst:.2f} s (target <= 10 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
