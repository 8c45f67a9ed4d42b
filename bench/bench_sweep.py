"""Sweep engine speed: the shipped 200-point BERT-large grid serially, on 1 Dask worker and on 2.

Run: ``python bench/bench_sweep.py [--grid bert-large-200] [--workers 0,1,2] [--out bench/results/sweep.json]``.

Each setting is the real command (``python -m mapper sweep --grid G --workers N --threads 1 --no-plots``) in a
fresh interpreter writing a fresh folder, so every run pays the same imports (torch, transformers) and, with
Dask, the cluster's start and the workers' imports; ``0`` is serial in-process. The rows of every run must
equal the serial run's (exit status 1 otherwise). Prints the wall times, the speed-up of 2 workers over 1
(target: at least 1.6 on an idle 2-core machine) and the machine's parallel capacity before and after (how much more
pure-Python work 2 processes do than 1: 2.0 when idle; on a shared machine the speed-up cannot exceed it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(grid: str, workers: int, folder: Path) -> float:
    """Time one sweep command; return its wall time in seconds."""
    cmd = [sys.executable, "-m", "mapper", "sweep", "--grid", grid, "--out", str(folder), "--workers",
           str(workers), "--threads", "1", "--no-plots", "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder.parent, text=True, capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"workers={workers}: exit {proc.returncode}\n{proc.stderr}")
    print(f"  workers={workers}: {dt:.1f} s  ({proc.stdout.strip().splitlines()[-2]})", flush=True)
    return dt


def _burn(seconds: float) -> int:
    """Pure-Python work for ``seconds`` of wall time; return the loop count."""
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        n += 1
    return n


def capacity(seconds: float = 4.0) -> float:
    """How much more work 2 CPU-bound processes do than 1 right now (2.0 on an idle 2-core machine)."""
    import multiprocessing  # noqa: PLC0415
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        one = sum(pool.map(_burn, [seconds]))
    with ctx.Pool(2) as pool:
        two = sum(pool.map(_burn, [seconds, seconds]))
    return two / one


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="bert-large-200", help="shipped grid name or .toml file")
    ap.add_argument("--workers", default="0,1,2", help="comma-separated settings of --workers (0: serial)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sweep.json"), help="JSON results file")
    args = ap.parse_args()
    from mapper.sweep.grid import grid_path, load_grid
    from mapper.sweep.results import read_table
    grid = args.grid if not Path(args.grid).exists() else str(Path(args.grid).resolve())
    size = load_grid(grid_path(grid)).size
    settings = [int(w) for w in args.workers.split(",")]
    print(f"sweep bench: grid {args.grid} ({size} points), workers {settings}, {os.cpu_count()} cores", flush=True)
    before = capacity()
    print(f"parallel capacity before: {before:.2f} (2 CPU-bound processes vs 1; 2.00 when idle)", flush=True)
    times, tables = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for w in settings:
            folder = Path(tmp) / f"w{w}"
            times[w] = run(grid, w, folder)
            tables[w] = read_table(folder / "results.parquet")
    ref = tables[settings[0]]
    equal = all(t == ref for t in tables.values())
    failed = sum(r["error"] is not None for r in ref)
    print(f"rows equal across runs: {equal}; {len(ref)} rows, {failed} failed")
    for w in settings:
        print(f"{'serial' if w == 0 else f'{w} worker(s)':>12}: {times[w]:7.1f} s  "
              f"{size / times[w]:6.2f} points/s")
    speedup = times[1] / times[2] if 1 in times and 2 in times else None
    cap = (before, capacity())
    if speedup is not None:
        print(f"2 workers vs 1: {speedup:.2f}x (target >= 1.6 on an idle machine)")
    print(f"parallel capacity before / after: {cap[0]:.2f} / {cap[1]:.2f} (2 CPU-bound processes do that many "
          "times the work of 1; 2.00 when idle; the speed-up cannot exceed it)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"grid": args.grid, "points": size, "seconds": times,
                                          "speedup_2_vs_1": speedup, "rows_equal": equal,
                                          "parallel_capacity": cap,
                                          "load_average": os.getloadavg()}, indent=1) + "\n")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
