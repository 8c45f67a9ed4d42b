"""Fast co-simulation path vs cocotb: simulated clock cycles per second on the same stream, and a >= 1M-cycle run.

In one run, on one configuration (default fpga-tiny) and one mapper stream (default tiny-bert, strategy auto):

1. the stream once through the cocotb testbench (sim.runner.run) and through the fast C++ harness (sim.fast.run):
   cycles/s of each and their ratio; the two must count the same cycles and match sw_model (0 mismatches);
2. a long legal stream, the model's stream repeated (weight programming, programs and READs, its HALT only at the
   end) until it runs >= ``--min-cycles`` cycles, through the fast harness only: the harness's own rate, the rate
   over its process, and the end-to-end rate with sw_model's reference, the job file and the checker included.

Any mismatch fails the benchmark. Results go to ``bench/results/fastsim.json``; the 1-minute load average is
recorded (on a shared machine it explains slow figures). The first call in a process also exports the RTL
(Amaranth + Yosys, a few seconds, as sim.runner does): reported as "export + build lookup".

    python bench/bench_fastsim.py [--model tiny-bert] [--strategy auto] [--hw fpga-tiny] [--min-cycles 1000000]
"""

from __future__ import annotations

import argparse
import json
import math
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
from cimisa.isa import Isa, Opcode  # noqa: E402
from sim import fast, runner  # noqa: E402
from sim.model_stream import model_commands  # noqa: E402


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-bert")
    ap.add_argument("--strategy", default="auto")
    ap.add_argument("--hw", default="fpga-tiny")
    ap.add_argument("--min-cycles", type=int, default=1_000_000, help="length of the long run (default: %(default)s)")
    ap.add_argument("--no-cocotb", action="store_true", help="skip the cocotb run (fast path only)")
    ap.add_argument("--fresh", action="store_true", help="build in a new cache folder (measures the build time)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fastsim.json"))
    args = ap.parse_args(argv)

    cfg = load_hw(args.hw)
    if args.fresh:
        os.environ["CIMSIM_CACHE"] = tempfile.mkdtemp(prefix="cimsim-bench-")
    reason = fast.unavailable_reason()
    if reason:
        return _fail(f"the fast path cannot run here: {reason}")
    isa = Isa.of(cfg)
    cmds = model_commands(args.model, cfg, args.strategy)
    if cmds[-1].op is not Opcode.HALT:
        return _fail("the model stream does not end with HALT")
    name = f"{args.model}/{args.strategy}"
    words = isa.encode(cmds)

    t0 = time.perf_counter()
    fb = fast.build(cfg)
    fast_build_wall = time.perf_counter() - t0
    rows, out = [], {}

    # ---- 1. the same stream on both paths -------------------------------------------------------------------
    cases = runner.make_cases(cfg, [(name, words)])
    fr = fast.run(cfg, cases)
    if fr.mismatches:
        return _fail(f"fast path: {fr.mismatches} mismatches against sw_model: {fr.cases[0].details[:3]}")
    out["fast_short"] = _summary(fr)
    rows.append(("fast harness", name, fr))
    if not args.no_cocotb and runner.unavailable_reason("verilator") is None:
        t0 = time.perf_counter()
        cb = runner.build(cfg, "verilator")
        cocotb_build_wall = time.perf_counter() - t0
        cr = runner.run(cfg, cases)
        if cr.mismatches:
            return _fail(f"cocotb: {cr.mismatches} mismatches against sw_model")
        if (cr.cases[0].cycles, cr.cases[0].sim_cycles) != (fr.cases[0].cycles, fr.cases[0].sim_cycles):
            return _fail(f"cycle counts differ: cocotb {cr.cases[0].cycles}/{cr.cases[0].sim_cycles}, fast "
                         f"{fr.cases[0].cycles}/{fr.cases[0].sim_cycles}")
        out["cocotb_short"] = {**_summary(cr), "build_reused": cb.reused, "build_call_wall_s": cocotb_build_wall}
        rows.insert(0, ("cocotb + Verilator", name, cr))

    # ---- 2. a >= min-cycles legal stream on the fast path ----------------------------------------------------
    per_copy = max(1, fr.cases[0].cycles)
    reps = max(1, math.ceil(args.min_cycles * 1.01 / per_copy))
    t0 = time.perf_counter()
    long_words = isa.encode(cmds[:-1] * reps + cmds[-1:])
    t_encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    long_cases = runner.make_cases(cfg, [(f"{name} x{reps}", long_words)])
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    lr = fast.run(cfg, long_cases)
    t_run = time.perf_counter() - t0
    lc = lr.cases[0]
    if lr.mismatches or lc.timed_out or lc.status != long_cases[0].expected_status:
        return _fail(f"long run: {lr.mismatches} mismatches, status {lc.status}, timed out {lc.timed_out}")
    if lc.cycles < args.min_cycles:
        return _fail(f"long run: {lc.cycles} cycles < {args.min_cycles}")
    e2e = t_ref + t_run
    out["fast_long"] = {**_summary(lr), "repeats": reps, "words": len(long_words),
                        "commands": len(cmds[:-1]) * reps + 1,
                        "results": lc.results, "encode_s": t_encode, "sw_model_s": t_ref,
                        "sw_model_cycles_per_s": lc.sim_cycles / t_ref, "run_call_s": t_run,
                        "host_overhead_s": t_run - lr.wall_s, "end_to_end_s": e2e,
                        "end_to_end_cycles_per_s": lc.sim_cycles / e2e}

    # ---- table --------------------------------------------------------------------------------------------------
    print(f"{cfg.name} ({cfg.tag}), stream {name}: {len(cmds)} commands, {len(words)} words, "
          f"{isa.cmd_layout.size}-bit command payload")
    print(f"fast harness build: {'cached' if fb.reused else f'{fb.seconds:.1f} s'} "
          f"(export + build lookup {fast_build_wall:.1f} s)")
    hdr = f"{'path':<34} {'stream':<26} {'cycles':>9} {'sim s':>8} {'cycles/s':>11} {'process cycles/s':>17}"
    print(hdr)
    print("-" * len(hdr))
    for path, sname, rep in rows:
        c = rep.cases[0]
        print(f"{path:<34} {sname:<26} {c.sim_cycles:>9} {c.wall_s:>8.3f} {rep.cycles_per_s:>11.0f} "
              f"{c.sim_cycles / rep.wall_s:>17.0f}")
    lname = f"{name} x{reps}"
    print(f"{'fast harness (long)':<34} {lname:<26} {lc.sim_cycles:>9} {lc.wall_s:>8.3f} {lr.cycles_per_s:>11.0f} "
          f"{lc.sim_cycles / lr.wall_s:>17.0f}")
    print(f"{'  sw_model reference (long)':<34} {'':<26} {lc.sim_cycles:>9} {t_ref:>8.3f} "
          f"{lc.sim_cycles / t_ref:>11.0f}")
    print(f"{'  end to end (sw_model+files+check)':<34} {'':<26} {lc.sim_cycles:>9} {e2e:>8.3f} "
          f"{lc.sim_cycles / e2e:>11.0f}")
    ratios = {}
    if "cocotb_short" in out:
        ratios["fast_over_cocotb_same_stream"] = out["fast_short"]["cycles_per_s"] / out["cocotb_short"]["cycles_per_s"]
        ratios["fast_over_cocotb_process"] = (out["fast_short"]["process_cycles_per_s"]
                                              / out["cocotb_short"]["process_cycles_per_s"])
        ratios["fast_long_over_cocotb"] = lr.cycles_per_s / out["cocotb_short"]["cycles_per_s"]
        ratios["fast_long_end_to_end_over_cocotb"] = (out["fast_long"]["end_to_end_cycles_per_s"]
                                                      / out["cocotb_short"]["cycles_per_s"])
        print(f"ratios: fast/cocotb on the same stream {ratios['fast_over_cocotb_same_stream']:.0f}x in simulation "
              f"({ratios['fast_over_cocotb_process']:.0f}x per process); long fast run/cocotb "
              f"{ratios['fast_long_over_cocotb']:.0f}x (end to end {ratios['fast_long_end_to_end_over_cocotb']:.0f}x)")
    target = 100_000
    print(f"target >= {target} cycles/s on >= {args.min_cycles} cycles: harness {lr.cycles_per_s:.0f}, end to end "
          f"{out['fast_long']['end_to_end_cycles_per_s']:.0f} -> "
          f"{'met' if lr.cycles_per_s >= target else 'NOT met'}; 0 mismatches")
    load = os.getloadavg()[0]
    print(f"load average (1 min) {load:.2f} on {os.cpu_count()} cores")
    doc = {"hw": cfg.name, "stream": name, "commands": len(cmds), "words": len(words), **out, "ratios": ratios,
           "fast_build": {"reused": fb.reused, "seconds": fb.seconds, "call_wall_s": fast_build_wall,
                          "directory": str(fb.directory)},
           "loadavg_1min": load, "cpus": os.cpu_count(), "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


def _summary(rep) -> dict:
    c = rep.cases[0]
    return {"simulator": rep.simulator, "cycles": c.cycles, "sim_cycles": c.sim_cycles, "in_sim_wall_s": c.wall_s,
            "cycles_per_s": rep.cycles_per_s, "process_wall_s": rep.wall_s,
            "process_cycles_per_s": c.sim_cycles / rep.wall_s if rep.wall_s else 0.0,
            "mismatches": rep.mismatches}


if __name__ == "__main__":
    sys.exit(main())
