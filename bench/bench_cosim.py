"""Co-simulation speed: simulated clock cycles per wall-clock second, Verilator vs Icarus, on the same stream.

Runs one mapper-generated stream (default tiny-bert, strategy auto, on fpga-tiny) through the cocotb testbench on
each available simulator, checks it against sw_model (a mismatch fails the benchmark), and prints

* cycles/s inside the simulator (the testbench's case loop: what a longer stream would see),
* cycles/s over the whole simulator process (start-up, cocotb import and the job file included),
* the build time of each simulator's model (0 when it came from the cache; ``--fresh`` rebuilds),

and the Verilator/Icarus ratios, measured side by side in one run. Results go to ``bench/results/cosim.json``.
The 1-minute load average is recorded too: on a shared machine it explains slow figures.

    python bench/bench_cosim.py [--model tiny-bert] [--strategy auto] [--hw fpga-tiny] [--repeat 1] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cimisa.config import load_hw  # noqa: E402
from cimisa.fsutil import atomic_write_text  # noqa: E402
from sim import runner  # noqa: E402
from sim.model_stream import model_stream  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-bert")
    ap.add_argument("--strategy", default="auto")
    ap.add_argument("--hw", default="fpga-tiny")
    ap.add_argument("--repeat", type=int, default=1, help="copies of the stream in the job (default: %(default)s)")
    ap.add_argument("--fresh", action="store_true", help="rebuild the simulator models in a new cache folder")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cosim.json"))
    args = ap.parse_args(argv)

    cfg = load_hw(args.hw)
    if args.fresh:
        os.environ["CIMSIM_CACHE"] = tempfile.mkdtemp(prefix="cimsim-bench-")
    stream = model_stream(args.model, cfg, args.strategy)
    cases = runner.make_cases(cfg, [(f"{stream.name}#{i}", stream.words) for i in range(args.repeat)])
    sims = runner.available_simulators()
    results = {}
    for sim in sims:
        t0 = time.perf_counter()
        b = runner.build(cfg, sim)
        build_wall = time.perf_counter() - t0
        rep = runner.run(cfg, cases, simulator=sim)
        if rep.mismatches:
            print(f"error: {sim}: {rep.mismatches} mismatches against sw_model", file=sys.stderr)
            return 1
        results[sim] = {
            "cycles": rep.sim_cycles,
            "cycles_per_s": rep.cycles_per_s,
            "in_sim_wall_s": sum(c.wall_s for c in rep.cases),
            "process_wall_s": rep.wall_s,
            "process_cycles_per_s": rep.sim_cycles / rep.wall_s,
            "build_s": 0.0 if b.reused else b.seconds,
            "build_reused": b.reused,
            "build_call_wall_s": build_wall,
            "mismatches": rep.mismatches,
        }
    for sim in ("verilator", "icarus"):
        if sim not in results:
            print(f"{sim}: skipped ({runner.unavailable_reason(sim)})")
    print(f"stream {stream.name} on {cfg.name}: {stream.commands} commands, {len(stream.words)} words, "
          f"x{args.repeat} per job")
    print(f"{'simulator':<10} {'cycles':>8} {'cycles/s':>10} {'process cycles/s':>17} {'build s':>8}")
    for sim, r in results.items():
        print(f"{sim:<10} {r['cycles']:>8} {r['cycles_per_s']:>10.0f} {r['process_cycles_per_s']:>17.0f} "
              f"{r['build_s']:>8.1f}{' (cached)' if r['build_reused'] else ''}")
    ratio = None
    if "verilator" in results and "icarus" in results:
        ratio = {"cycles_per_s": results["verilator"]["cycles_per_s"] / results["icarus"]["cycles_per_s"],
                 "process_cycles_per_s": results["verilator"]["process_cycles_per_s"]
                 / results["icarus"]["process_cycles_per_s"]}
        print(f"verilator/icarus: {ratio['cycles_per_s']:.2f}x in simulation, "
              f"{ratio['process_cycles_per_s']:.2f}x per process")
    load = os.getloadavg()[0]
    print(f"load average (1 min) {load:.2f} on {os.cpu_count()} cores")
    out = {"stream": stream.name, "hw": cfg.name, "commands": stream.commands, "words": len(stream.words),
           "repeat": args.repeat, "results": results, "ratio_verilator_over_icarus": ratio,
           "loadavg_1min": load, "cpus": os.cpu_count(), "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
