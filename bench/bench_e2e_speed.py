"""End-to-end speed of ``mapper run`` (library calls) on MiniLM: sentences per second through the command stream.

all-MiniLM-L6-v2 (the ``minilm`` wheel), Monarch ``--nblocks`` blocks, hardware ``paper-256`` with 8-bit ADCs
(``bound`` ADC rule), ``--sentences`` held-out sentences in one batch: every mapped matmul of all 6 layers runs as
CIM commands on the golden model, once per matmul for all tokens of all sentences. Timed (side by side, same
process, same thread setting): the CIM forward pass (``mapper.evaluate.run.embed``) on

* ``Machine`` (``cimisa.kernel.mvm_acc``: the batched kernel) with its default engine (``auto``: torch's exact
  int8 product of every bit plane, :mod:`cimisa.kernel_int8`, torch being loaded here) and with the ``numpy``
  engine (bit planes packed into exact float64 products),
* ``NoisyMachine`` without noise (``mapper run``'s default fast machine, its own float path),

and the embeddings are compared (they must be identical). Model preparation, compilation and one warm-up pass per
machine are not timed; the timed passes alternate between the machines (best of ``--reps`` each).

    python bench/bench_e2e_speed.py [--sentences 32] [--nblocks 4] [--threads 1] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv() -> int:
    args = sys.argv[1:]
    for i, a in enumerate(args):
        if a == "--threads" and i + 1 < len(args):
            return int(args[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


if __name__ == "__main__":      # BLAS reads its thread count when numpy is first imported
    _n = str(_threads_from_argv())
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_v] = _n

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from cimisa import kernel_int8  # noqa: E402
from cimisa.config import load_hw  # noqa: E402
from cimisa.fsutil import atomic_write_text  # noqa: E402
from mapper.evaluate import run as R  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=32)
    ap.add_argument("--nblocks", type=int, default=4)
    ap.add_argument("--adc-bits", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="BLAS and torch threads")
    ap.add_argument("--reps", type=int, default=3, help="timed forward passes per machine (best is reported)")
    ap.add_argument("--json", type=Path, default=Path("bench/results/e2e_speed.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from mapper.evaluate.textdata import heldout_sentences  # noqa: PLC0415
    texts = heldout_sentences(args.sentences)
    t0 = time.perf_counter()
    prep = R.prepare("minilm", args.nblocks, show_progress=False)
    batch = R.tokenize(prep, texts, max_len=128)
    acts = R.collect_activations(prep, R.calibration_texts(64), max_len=128)
    setup = R.compile_cim(prep, load_hw("paper-256").lossless(), acts, strategy="auto")
    t_prep = time.perf_counter() - t0
    env = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    print(f"threads: {env}, torch {torch.get_num_threads()}")
    tokens = int(batch["attention_mask"].sum())
    print(f"MiniLM nblocks {args.nblocks}, paper-256, {args.adc_bits}-bit ADCs (bound rule), {len(texts)} sentences, "
          f"{tokens} tokens; preparation + compilation {t_prep:.1f} s (not timed below)")
    res, embs, runs = {}, {}, {}
    machines = (("Machine (batched kernel)", False, "auto"), ("Machine, numpy engine", False, "numpy"),
                ("NoisyMachine (no noise)", True, "auto"))
    for label, fast, engine in machines:
        model, ex = R.build_cim_model(prep, setup, adc_bits=args.adc_bits, fast=fast)
        with kernel_int8.use(engine):
            R.embed(model, batch)                  # warm-up: window data, work arrays (not timed)
        runs[label] = (model, ex, ex.calls, ex.mvms, [float("inf")], engine)
    for _ in range(args.reps):                     # in turns, so that a changing load hits all alike
        for label, (model, _ex, _c, _m, best, engine) in runs.items():
            with kernel_int8.use(engine):
                t1 = time.perf_counter()
                embs[label] = R.embed(model, batch)
                best[0] = min(best[0], time.perf_counter() - t1)
    for label, (_model, ex, calls0, mvms0, (best,), _engine) in runs.items():
        calls, mvms = (ex.calls - calls0) // args.reps, (ex.mvms - mvms0) // args.reps
        res[label] = {"seconds": best, "sentences_per_s": len(texts) / best, "tokens_per_s": tokens / best,
                      "matmul_calls_per_pass": calls, "mvm_token_commands_per_pass": mvms}
        print(f"{label:<26} {best:7.2f} s  {len(texts) / best:7.1f} sentences/s  {tokens / best:8.0f} tokens/s  "
              f"({calls} matmul programs, {mvms} MVM x token per pass)")
    a, an, b = embs.values()
    same = bool(torch.equal(a, b) and torch.equal(a, an))
    ra, rn, rb = res.values()
    print(f"Machine / NoisyMachine speed: {ra['sentences_per_s'] / rb['sentences_per_s']:.2f}x; default engine / "
          f"numpy engine: {ra['sentences_per_s'] / rn['sentences_per_s']:.2f}x; embeddings identical: {same}")
    print(f"target >= 30 sentences/s: {'met' if ra['sentences_per_s'] >= 30 else 'NOT met'} "
          f"({ra['sentences_per_s']:.1f})")
    atomic_write_text(args.json, json.dumps({"threads": env, "torch_threads": torch.get_num_threads(),
                                             "sentences": len(texts), "tokens": tokens, "nblocks": args.nblocks,
                                             "adc_bits": args.adc_bits, "machines": res,
                                             "embeddings_identical": same}, indent=2) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
