"""Thread count vs speed of D2S calibration: tiny-bert and MiniLM at 1 and 2 threads and the kit's default.

Run: ``python bench/bench_threads.py [--minilm-sentences 32] [--steps 4] [--repeat 3] [--busy N]``.

Each (model, setting) runs in a fresh interpreter (torch fixes its thread pools at the first parallel work), set
up exactly as a command sets it up (:func:`cimisa.threads.set_threads`): ``1`` and ``2`` pass ``--threads``,
``default`` passes nothing; ``torch`` (for the record, not in the ratio) sets nothing at all, as the
kit did before (torch's own thread count, spinning OpenMP workers). The timed part is the library call behind
``mapper d2s --calibrate``
(:func:`mapper.d2s.calibrate.calibrate`, layer-wise fit plus a few distillation steps); model loading and the
projection are not timed. Prints one row per run and, per model, the ratio default / best (target: at most 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("1", "2", "default", "torch")

CHILD = r"""
import json, sys, time
if sys.argv[1] != "torch":               # "torch": nothing set, the kit before cimisa.threads
    from cimisa.threads import set_threads
    used = set_threads(None if sys.argv[1] == "default" else int(sys.argv[1]))
import torch
if sys.argv[1] == "torch":
    used = torch.get_num_threads()
from mapper.d2s.calibrate import CalibConfig, calibrate
from mapper.d2s.convert import project_model
from mapper.models import load_hf_model, load_model_spec
from compiler.place import default_nblocks
model, sentences, steps = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
spec = load_model_spec(model)
dense = load_hf_model(model)
nb = default_nblocks(spec)
factors = project_model(spec, dense, nb, show_progress=False)
cfg = CalibConfig(sentences=sentences, steps=steps, val_sentences=min(16, sentences // 4))
t0 = time.perf_counter()
calibrate(spec, dense, factors, cfg, show_progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "threads": used, "torch_threads": torch.get_num_threads(),
                  "nblocks": nb}))
"""


def run_one(model: str, setting: str, sentences: int, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CIM_KIT_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.run([sys.executable, "-c", CHILD, setting, model, str(sentences), str(steps)], env=env,
                       capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"{model} threads={setting} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny-sentences", type=int, default=512, help="tiny-bert calibration sentences")
    ap.add_argument("--minilm-sentences", type=int, default=32, help="MiniLM calibration sentences")
    ap.add_argument("--steps", type=int, default=4, help="distillation steps")
    ap.add_argument("--repeat", type=int, default=3, help="runs per setting, interleaved (the fastest counts: "
                    "other work on the machine only ever slows a run down)")
    ap.add_argument("--models", default="tiny-bert,minilm")
    ap.add_argument("--busy", type=int, default=0, help="also run N busy-looping processes (a loaded machine)")
    args = ap.parse_args(argv)
    from cimisa.threads import available_cpus, default_threads
    print(f"{available_cpus()} usable cores, load average {os.getloadavg()[0]:.2f}; default threads "
          f"{default_threads()}")
    results = {}
    t_all = time.perf_counter()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        return _measure(args, results, t_all)
    finally:
        for p in busy:
            p.kill()
            p.wait()


def _measure(args, results, t_all) -> int:
    for model in args.models.split(","):
        sents = args.tiny_sentences if model.startswith("tiny") else args.minilm_sentences
        row = {}
        for rep in range(args.repeat):
            for setting in SETTINGS:            # interleaved, so a load change hits every setting alike
                if setting == "torch" and rep:  # the reference before the fix: slow, once is enough
                    continue
                r = run_one(model, setting, sents, args.steps)
                print(f"{model:10s} threads={setting:8s} (torch {r['torch_threads']}) {r['seconds']:8.2f} s",
                      flush=True)
                row[setting] = min(row.get(setting, float("inf")), r["seconds"])
                if setting == "default":
                    default_used = r["threads"]
        best = min(v for k, v in row.items() if k != "torch")
        ratio = row["default"] / best
        results[model] = {**row, "ratio_default_over_best": ratio, "default_threads": default_used}
        print(f"{model:10s} default / best = {ratio:.2f} ({'ok' if ratio <= 1.2 else 'ABOVE'} the 1.2 target)",
              flush=True)
    print(json.dumps(results, indent=1))
    print(f"total {time.perf_counter() - t_all:.0f} s")
    return 0 if all(r["ratio_default_over_best"] <= 1.2 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
