"""Benchmark: wall time to place and schedule zoo model shapes (no weights) with each strategy, over nblocks.

Run: ``python bench/bench_mapper.py [--models bert-large,gpt2] [--nblocks 16,32,64,128] [--strategies auto]
[--repeat 3] [--hw paper-256]``. Default: the six shape-only zoo models (bert-large, bart-large, gpt2-medium, gpt2,
opt-1.3b, llama-2-7b) at nblocks 16, 32, 64 and 128, every strategy. One row per (model, nblocks): per strategy
``place s`` (with validation) and ``sched s`` (``paper`` ADC mode), and auto's arrays against the lower bound.
A cell that cannot be built (an nblocks the model's dimensions do not accept, a placement error) reads
``n/a (reason)``; it is not an error. The last lines give the worst place + schedule per strategy and overall,
against the target of 10 s. ``--repeat N`` keeps the fastest of N runs (the machine may be shared).
The configuration's array count is raised to fit Linear (a capacity, not a constraint here).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cimisa.config import load_hw  # noqa: E402
from cimisa.errors import KitError  # noqa: E402
from compiler.geometry import geometry  # noqa: E402
from compiler.kinds import Strategy  # noqa: E402
from compiler.place import STRATEGIES, place  # noqa: E402
from compiler.schedule import schedule  # noqa: E402
from mapper.models import ZOO, load_model_spec  # noqa: E402

TARGET_S = 10.0
DEFAULT_MODELS = tuple(n for n, e in ZOO.items() if e.kind == "shape")
DEFAULT_NBLOCKS = (16, 32, 64, 128)


def _csv(text: str, what: str, conv=str) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{what}: empty list")
    try:
        return [conv(t) for t in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: not a comma-separated list of integers: {text!r}") from None


def _reason(exc: BaseException, width: int = 60) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return msg if len(msg) <= width else msg[:width - 3] + "..."


def time_cell(geoms, hw, strategy: str, repeat: int) -> dict:
    """Place (validated) and schedule ``repeat`` times; return the fastest times and the placement's figures."""
    best_p = best_s = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        pl = place(geoms, hw, strategy)
        t1 = time.perf_counter()
        sc = schedule(pl, hw, "paper")
        t2 = time.perf_counter()
        best_p, best_s = min(best_p, t1 - t0), min(best_s, t2 - t1)
    return {"place": best_p, "sched": best_s, "arrays": pl.n_arrays, "lb": pl.lower_bound,
            "util": pl.utilization, "activations": len(sc.activations)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", "--model", default=",".join(DEFAULT_MODELS),
                    type=lambda s: _csv(s, "--models"),
                    help=f"comma-separated model names (default: {','.join(DEFAULT_MODELS)})")
    ap.add_argument("--nblocks", default=",".join(map(str, DEFAULT_NBLOCKS)),
                    type=lambda s: _csv(s, "--nblocks", int), help="comma-separated block counts")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), type=lambda s: _csv(s, "--strategies"))
    ap.add_argument("--hw", default="paper-256")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell; the fastest is kept")
    args = ap.parse_args(argv)
    bad = [s for s in args.strategies if s not in STRATEGIES]
    if bad:
        ap.error(f"unknown strategy {bad[0]!r}; choose from {', '.join(STRATEGIES)}")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    hw = load_hw(args.hw, n_arrays=1 << 20)
    strategies = args.strategies
    print(f"{hw.rows}x{hw.cols} arrays ({args.hw}); per strategy: place s (validated) / sched s; "
          f"fastest of {args.repeat}")
    cw = 13
    head = f"{'model':<12} {'nblk':>4} " + " ".join(f"{s:>{cw}}" for s in strategies)
    if Strategy.AUTO in strategies:
        head += f" {'auto arrays/LB':>15} {'util':>7}"
    print(head)
    worst: dict[str, tuple[float, str]] = {}
    na = 0
    for model in args.models:
        try:
            spec = load_model_spec(model)
        except KitError as exc:
            print(f"{model:<12} {'':>4} n/a ({_reason(exc, 100)})")
            na += 1
            continue
        for nb in args.nblocks:
            try:
                geoms = geometry(spec, nb)
            except KitError as exc:
                print(f"{model:<12} {nb:>4} n/a ({_reason(exc, 100)})")
                na += 1
                continue
            cells, notes, auto = [], [], None
            for st in strategies:
                try:
                    r = time_cell(geoms, hw, st, args.repeat)
                except KitError as exc:
                    cells.append(f"{'n/a (' + str(len(notes) + 1) + ')':>{cw}}")
                    notes.append(f"    ({len(notes) + 1}) {st}: n/a ({_reason(exc, 100)})")
                    na += 1
                    continue
                total = r["place"] + r["sched"]
                if total > worst.get(st, (-1.0, ""))[0]:
                    worst[st] = (total, f"{model} nblocks {nb}")
                cells.append(f"{r['place']:6.2f}/{r['sched']:<6.2f}")
                if st == Strategy.AUTO:
                    auto = r
            line = f"{model:<12} {nb:>4} " + " ".join(f"{c:>{cw}}" for c in cells)
            if Strategy.AUTO in strategies:
                line += (f" {auto['arrays']:>7d}/{auto['lb']:<7d} {auto['util']:7.2%}" if auto
                         else f" {'n/a':>15} {'':>7}")
            print(line, flush=True)
            for n in notes:
                print(n)
    print()
    overall = (0.0, "none")
    for st in strategies:
        if st in worst:
            t, where = worst[st]
            print(f"worst place+schedule {st:>6}: {t:6.2f} s ({where})")
            if t > overall[0]:
                overall = (t, f"{st}, {where}")
    verdict = "meets" if overall[0] <= TARGET_S else "MISSES"
    print(f"worst place+schedule overall: {overall[0]:.2f} s ({overall[1]}) -- {verdict} the target of "
          f"<= {TARGET_S:g} s" + (f"; {na} cell(s) n/a" if na else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
