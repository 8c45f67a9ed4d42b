"""Cycle validation: the performance model's predicted cycles of each stream against the RTL's measured cycles.

For every model (default: the zoo's tiny-bert and a local 2-layer BERT checkpoint this script makes with
``transformers``: BertConfig, random weights, ``save_pretrained`` into a temporary folder, no download), every
configuration (default fpga-tiny, fpga-tiny-2t, fpga-tiny-4t) and every placement strategy, the mapper's stream
runs on the RTL in the fast Verilator harness (``python -m sim run --simulator verilator-fast``, checked against
sw_model) and through :func:`perf.stream.predict_words`. Printed and written to ``bench/results/cycles.json``:

* measured cycles, predicted cycles, their ratio (predicted / measured), mismatches, per stream;
* the spread speed-up of each multi-tile configuration: measured cycles on the first configuration (one tile)
  over measured on it, against the same ratio of the predictions (their quotient should be 1 within 2 %).

    python bench/bench_cycles.py [--hw fpga-tiny fpga-tiny-2t fpga-tiny-4t] [--model tiny-bert local-bert]
                                 [--strategy linear sparse dense auto] [--predict-only] [--out PATH]

``local-bert`` names the checkpoint this script makes; any other ``--model`` is passed to the mapper as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cimisa.config import load_hw  # noqa: E402
from cimisa.fsutil import atomic_write_text  # noqa: E402
from perf.stream import predict_words  # noqa: E402
from sim.model_stream import STRATEGIES, resolve_stream  # noqa: E402

LOCAL = "local-bert"


def make_local_bert(folder: Path) -> Path:
    """Save a 2-layer BERT (hidden 64, FFN 256, 2 heads; seeded random weights) into ``folder``; return it."""
    import torch  # noqa: PLC0415
    from transformers import BertConfig, BertModel  # noqa: PLC0415
    cfg = BertConfig(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=256, max_position_embeddings=64)
    torch.manual_seed(1)
    BertModel(cfg).save_pretrained(folder)
    return folder


def run(models: dict[str, str], hws: list[str], strategies: list[str], *, measure: bool) -> dict:
    """Return ``{"rows": [...], "speedup": [...]}`` (see the module docstring)."""
    from sim.flow import cosim_model  # noqa: PLC0415
    rows = []
    for label, model in models.items():
        for hw in hws:
            cfg = load_hw(hw)
            t0 = time.perf_counter()
            if measure:
                s = cosim_model(model, cfg, strategies=strategies, simulator="verilator-fast")
                for strat, st in zip(strategies, s["streams"]):
                    rows.append({"model": label, "hw": hw, "strategy": strat, "commands": st["commands"],
                                 "words": st["words"], "measured_cycles": st["measured_cycles"],
                                 "predicted_cycles": st["predicted_cycles"], "cycle_ratio": st["cycle_ratio"],
                                 "mismatches": st["mismatches"], "status": st["status"][0]})
            else:
                for strat in strategies:
                    ms = resolve_stream(model, cfg, strat)
                    p = predict_words(cfg, ms.words)
                    rows.append({"model": label, "hw": hw, "strategy": strat, "commands": ms.commands,
                                 "words": len(ms.words), "measured_cycles": None, "predicted_cycles": p.cycles,
                                 "cycle_ratio": None, "mismatches": None, "status": p.state})
            print(f"  {label} on {hw}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    base = hws[0]
    speed = []
    key = {(r["model"], r["hw"], r["strategy"]): r for r in rows}
    for r in rows:
        if r["hw"] == base:
            continue
        one = key.get((r["model"], base, r["strategy"]))
        if one is None:
            continue
        ps = one["predicted_cycles"] / r["predicted_cycles"]
        ms = one["measured_cycles"] / r["measured_cycles"] if measure else None
        speed.append({"model": r["model"], "hw": r["hw"], "base": base, "strategy": r["strategy"],
                      "measured_speedup": ms, "predicted_speedup": ps,
                      "speedup_ratio": ps / ms if ms else None})
    return {"rows": rows, "speedup": speed}


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def show(res: dict) -> None:
    print(f"{'model':<10} {'hw':<13} {'strategy':<8} {'commands':>8} {'measured':>9} {'predicted':>9} {'ratio':>7} "
          f"{'mismatches':>10}")
    for r in res["rows"]:
        print(f"{r['model']:<10} {r['hw']:<13} {r['strategy']:<8} {r['commands']:>8} "
              f"{_f(r['measured_cycles'], 'd'):>9} {r['predicted_cycles']:>9} {_f(r['cycle_ratio'], '.4f'):>7} "
              f"{_f(r['mismatches'], 'd'):>10}")
    rated = [r["cycle_ratio"] for r in res["rows"] if r["cycle_ratio"] is not None]
    if rated:
        print(f"predicted/measured: {min(rated):.4f} .. {max(rated):.4f} over {len(rated)} streams")
    print()
    print(f"{'model':<10} {'hw':<13} {'strategy':<8} {'speed-up measured':>17} {'predicted':>9} {'pred/meas':>9}")
    for s in res["speedup"]:
        print(f"{s['model']:<10} {s['hw']:<13} {s['strategy']:<8} {_f(s['measured_speedup'], '.3f'):>17} "
              f"{s['predicted_speedup']:>9.3f} {_f(s['speedup_ratio'], '.4f'):>9}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", nargs="+", default=["fpga-tiny", "fpga-tiny-2t", "fpga-tiny-4t"],
                    help="configurations; the first is the base of the speed-ups (default: %(default)s)")
    ap.add_argument("--model", nargs="+", default=["tiny-bert", LOCAL])
    ap.add_argument("--strategy", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    ap.add_argument("--predict-only", action="store_true", help="no RTL runs: predictions only")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cycles.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-cycles-") as tmp:
        models = {m: (str(make_local_bert(Path(tmp) / m)) if m == LOCAL else m) for m in args.model}
        res = run(models, args.hw, args.strategy, measure=not args.predict_only)
    show(res)
    bad = [r for r in res["rows"] if r["mismatches"]]
    res.update(hw=args.hw, models=args.model, strategies=args.strategy, measured=not args.predict_only)
    atomic_write_text(args.out, json.dumps(res, indent=2) + "\n")
    print(f"-> {args.out}")
    if bad:
        print(f"error: {len(bad)} streams mismatched sw_model", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
