"""Benchmark: Monarch projection time, batched (``project``) vs the per-block loop (``project_reference``).

Run: ``python bench/bench_d2s.py [--threads 2] [--repeat 3] [--loop-repeat 1]``. Prints seconds for each shape
(batched: best of ``--repeat`` runs; loop: best of ``--loop-repeat`` runs, one by default because it takes seconds
per shape and varies little), the ratio, and the relative Frobenius error of both (they must agree). Random Gaussian
matrices (the hardest case for the batched solver's convergence check: nearly tied singular values).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mapper.d2s.project import project, project_reference, relative_error  # noqa: E402

CASES = [(1024, 1024, 32), (4096, 4096, 64), (4096, 11008, 64), (11008, 4096, 64)]


def best_time(fn, args: tuple, repeat: int) -> tuple[float, object]:
    """The fastest of ``repeat`` calls ``fn(*args)`` and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of the batched projection, the fastest counts (default: %(default)s)")
    ap.add_argument("--loop-repeat", type=int, default=1,
                    help="runs of the per-block loop, the fastest counts (default: %(default)s)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.loop_repeat < 1:
        ap.error("--repeat and --loop-repeat must be at least 1")
    torch.set_num_threads(args.threads)
    rows = []
    print(f"batched: best of {args.repeat} run(s); per-block loop: best of {args.loop_repeat} run(s)")
    print(f"{'shape (out x in)':>18} {'nblocks':>7} {'batched s':>10} {'loop s':>9} {'speed-up':>9} "
          f"{'rel err batched':>16} {'rel err loop':>13}")
    for out_f, in_f, k in CASES:
        W = torch.randn(out_f, in_f, generator=torch.Generator().manual_seed(0))
        project(W[:256, :256].contiguous(), 16)  # warm-up
        tb, (Rb, Lb) = best_time(project, (W, k), args.repeat)
        tl, (Rl, Ll) = best_time(project_reference, (W, k), args.loop_repeat)
        eb, el = relative_error(W, Rb, Lb), relative_error(W, Rl, Ll)
        rows.append({"out": out_f, "in": in_f, "nblocks": k, "batched_s": tb, "loop_s": tl, "speedup": tl / tb,
                     "rel_err_batched": eb, "rel_err_loop": el})
        print(f"{f'{out_f}x{in_f}':>18} {k:>7} {tb:>10.3f} {tl:>9.3f} {tl / tb:>8.1f}x {eb:>16.6f} {el:>13.6f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
