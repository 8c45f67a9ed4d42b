"""Speed of the performance simulator (perf.simulate) on the issue's targets, and the figures it reports.

BERT-large prefill of 512 tokens and GPT-2-medium decode of 128 tokens after a 512-token prompt (so the context is
long; target <= 30 s each, the time of the whole simulation), auto and linear, on paper-256 (flat), chip-paper
(tiles of 16 arrays sharing one periphery, mesh) and chip-3dsim (3D-SiM's tiles of 128 tiers); llama-2-7b shapes:
map to the chip + simulate a decode of 16 tokens (target <= 60 s); BART-large prefill of 1024 tokens (its KV cache
does not fit on chip all at once, the layers in flight do: docs/perf.md). Models are shapes only (no weights). Run:
``python bench/bench_perf.py [--quick]`` (``--quick``: one strategy and preset per model).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import perf  # noqa: E402
from cimisa.config import load_hw  # noqa: E402
from cimisa.errors import KitError  # noqa: E402
from compiler.chipmap import ChipMap, map_to_chip  # noqa: E402
from compiler.cost import ModelDims, estimate  # noqa: E402
from compiler.geometry import geometry  # noqa: E402
from compiler.place import place  # noqa: E402
from compiler.schedule import schedule  # noqa: E402
from mapper.models import load_model_spec  # noqa: E402

CASES = (("bert-large", 512, 0, 30.0), ("gpt2-medium", 512, 128, 30.0), ("llama-2-7b", 1, 16, 60.0),
         ("bart-large", 1024, 0, 30.0))


def run(model: str, hw_name: str, strategy: str, prefill: int, decode: int) -> dict:
    t0 = time.perf_counter()
    spec = load_model_spec(model)
    hw = load_hw(hw_name)
    dims = ModelDims.of(spec)
    sc = schedule(place(geometry(spec, 32), hw, strategy, validate=False), hw, "paper")
    cm = (ChipMap.identity(sc.placement, hw) if hw.chip.arrays_per_tile == 1
          else map_to_chip(sc.placement, hw, budget="need"))
    t1 = time.perf_counter()
    rep = perf.simulate(sc, cm.hw, dims, chipmap=cm, prefill_tokens=prefill, decode_tokens=decode)
    t2 = time.perf_counter()
    an = estimate(sc, cm.hw, dataclasses.replace(dims, seq_len=prefill), cm)   # the bound at the same context
    return {"map_s": t1 - t0, "sim_s": t2 - t1, "summary": rep.summary(), "analytic": an}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one strategy and preset per model")
    args = ap.parse_args(argv)
    strategies = ("auto",) if args.quick else ("auto", "linear")
    presets = ("paper-256",) if args.quick else ("paper-256", "chip-paper", "chip-3dsim")
    print(f"{'model':<12} {'hw':<10} {'strategy':<7} {'P':>4} {'N':>4} {'map s':>6} {'sim s':>6} {'target':>6} "
          f"{'prefill us':>11} {'LB us':>9} {'decode us':>9} {'LB us':>8} {'tok/s':>8} {'nJ/token':>10} {'mm2':>7}")
    slow = 0
    for model, p, n, target in CASES:
        for hw_name in presets:
            for st in strategies:
                try:
                    r = run(model, hw_name, st, p, n)
                except KitError as exc:
                    print(f"{model:<12} {hw_name:<10} {st:<7} n/a: {exc}")
                    continue
                s, an = r["summary"], r["analytic"]
                total = r["sim_s"] + (r["map_s"] if model.startswith("llama") else 0.0)
                slow += total > target
                print(f"{model:<12} {hw_name:<10} {st:<7} {p:>4} {n:>4} {r['map_s']:>6.1f} {r['sim_s']:>6.1f} "
                      f"{target:>6.0f} {s['prefill_latency_ns'] / 1e3:>11.1f} {an.prefill_latency_ns / 1e3:>9.1f} "
                      f"{s['decode_latency_ns'] / 1e3:>9.2f} {an.decode_latency_ns / 1e3:>8.2f} "
                      f"{s['decode_tokens_per_s']:>8.0f} {s['energy_per_token_nj']:>10.0f} {s['area_mm2']:>7.1f}",
                      flush=True)
    print("every case within its target" if not slow else f"{slow} case(s) over target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
