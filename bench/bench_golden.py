"""Golden-model speed on batches: batched MVM kernel vs a float64 matmul, the per-vector path and naive loops.

Workload: one 256x256 array of random 8-bit weights (``paper-256``), full-window MVMs with 8-bit bit-serial inputs,
run through ``Machine.execute`` (checks included) on a batch of ``--batch`` input vectors at once. Three ADC
settings, each taking a different path of :func:`cimisa.semantics.mvm_acc`:

* ``lossless``: 17-bit ADC, step 1 (no code can saturate: one exact product);
* ``adc8-step``: 8-bit ADC with the smallest step that cannot saturate (the mapper's ``bound`` rule);
* ``adc8-sat``: 8-bit ADC, step 1, saturating.

The path each takes is :func:`cimisa.semantics.mvm_path` (``product``, ``packed codes``: several bit planes per
exact float64 product, ADC by integer masks and clips, or ``packed residues``; ``bit planes`` otherwise).
Reference: ``numpy`` float64 ``W.T @ X`` of the same shape and batch, timed in turns with the batched MVM (the
best of each, so both see the same load). Also timed: the same MVMs one vector at a time (1-D buffers), the
pre-batching implementation (int64 per-plane loop with the ADC rule of :mod:`cimisa.rules`, kept below for the
comparison) and the naive model. All outputs are compared. The ADC settings come from :mod:`cimisa.rules`
(``colsum_bounds``, ``adc_shift_for``). Thread count: ``--threads`` (OMP/OpenBLAS/MKL), printed.

Number formats (:mod:`cimisa.kernel_formats`): a row per format and ADC setting on one 256-row window of
``--logical`` (18) logical columns of random 8-bit weights (1-bit differential cells: 252 physical columns, as on
``paper-256``), the same batch, timed in turns with the default format's kernel on the same logical window
(``vs default``: its time over theirs; both with the default engine, and the format kernel again with the numpy
engine) and checked against the naive model (``NumberFormat.mvm_column``) on two vectors. The ``sat`` windows
get one column of weights 127 (every cell 1), so that an 8-bit ADC at step 1 can saturate on them; the path each
takes is :func:`cimisa.kernel.format_path`.

Kernel engines (:mod:`cimisa.kernel_int8`): every ADC setting is timed with the ``int8`` engine (torch's exact int8
product of every bit plane) and the ``numpy`` engine (the packed float64 forms); the last table times both on
windows of 16..256 rows and batches of 1..633 vectors and shows the engine ``auto`` picks against the faster one.

    python bench/bench_golden.py [--batch 64] [--reps 20] [--threads 1] [--no-engine-choice]
                                 [--json bench/results/golden.json]
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv(argv) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(args):
        if a == "--threads" and i + 1 < len(args):
            return int(args[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


if __name__ == "__main__":      # BLAS reads its thread count when numpy is first imported
    _n = str(_threads_from_argv(None))
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_v] = _n

import functools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cimisa import kernel, kernel_int8, rules, semantics  # noqa: E402
from cimisa.config import load_hw  # noqa: E402
from cimisa.formats import NumberFormat  # noqa: E402
from cimisa.fsutil import atomic_write_text  # noqa: E402
from cimisa.isa import Command  # noqa: E402
from sw_model import Machine  # noqa: E402


def legacy_mvm_acc(w, x, input_bits, adc_bits, adc_shift):
    """The MVM arithmetic before batching (int64 numpy, one matrix-vector product per input bit), for timing."""
    acc = np.zeros((w.shape[1],) + x.shape[1:], dtype=np.int64)
    for b, weight in enumerate(rules.plane_weights(input_bits, adc_shift)):
        colsum = w.T @ ((x >> b) & 1)
        acc += rules.adc_code(colsum, adc_bits, adc_shift) * weight
    return acc


def setting(cfg, W, name):
    """Return ``(adc_bits, adc_shift)`` of the ADC setting ``name`` for the window ``W``."""
    if name == "lossless":
        return cfg.lossless_adc_bits, 0
    return 8, (rules.adc_shift_for(*rules.colsum_bounds(W), 8) if name == "adc8-step" else 0)


def timed(fn, reps):
    fn()                                            # warm-up (tables, allocations)
    t0 = time.perf_counter()
    for _ in range(reps):
        out = fn()
    return (time.perf_counter() - t0) / reps, out


def timed_in_turns(fns, reps, rounds=5):
    """Return the best time per call of each of ``fns`` and their last outputs, timed ``reps`` calls at a time
    in turns (``rounds`` turns each), so that a changing machine load hits all of them alike."""
    best, outs = [float("inf")] * len(fns), [None] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t, outs[i] = timed(fn, max(1, reps // rounds))
            best[i] = min(best[i], t)
    return best, outs


def measure(name, engine, cfg, W, X, machine, args, reference) -> dict:
    """Time one ADC setting with one kernel engine on the batched, per-vector, legacy and naive paths; print and
    return its row."""
    with kernel_int8.use(engine):
        return _measure(name, engine, cfg, W, X, machine, args, reference)


def _measure(name, engine, cfg, W, X, machine, args, reference) -> dict:
    macs = cfg.rows * cfg.cols
    adc_bits, shift = setting(cfg, W, name)
    mvm = Command.mvm(array=0, row0=0, nrows=cfg.rows, col0=0, ncols=cfg.cols, in_addr=0, out_addr=0,
                      adc_bits=adc_bits, adc_shift=shift)
    fast = machine["fast"]
    fast.set_batch(args.batch)                      # buffers of (depth, batch); the inputs loaded once
    fast.state.inbuf[:cfg.rows] = X.T

    def batched():
        fast.execute(mvm)
        return fast.state.outbuf[:cfg.cols].T.copy()

    (t_ref, t_b), (_, y_b) = timed_in_turns([reference, batched], args.reps)
    blas = macs * args.batch / t_ref
    assert np.array_equal(y_b, fast.run_batch([mvm], X, 0, 0, cfg.cols))

    def per_vector(n):
        fast.set_batch(None)
        out = []
        for x in X[:n]:
            fast.state.inbuf[:cfg.rows] = x
            fast.execute(mvm)
            out.append(fast.state.outbuf[:cfg.cols].copy())
        return np.array(out)

    nv = min(args.per_vector, args.batch)
    t_v, y_v = timed(lambda: per_vector(nv), 1)
    t_l, y_l = timed(lambda: rules.wrap_acc(legacy_mvm_acc(W, X[:nv].T, cfg.input_bits, adc_bits, shift)).T, 1)
    nn = min(args.naive_mvms, args.batch)
    naive = machine["naive"]
    t0 = time.perf_counter()
    y_n = []
    for x in X[:nn]:
        naive.state.inbuf[:cfg.rows] = x
        naive.execute(mvm)
        y_n.append(naive.state.outbuf[:cfg.cols].copy())
    t_n = time.perf_counter() - t0
    same = (np.array_equal(y_b[:nv], y_v) and np.array_equal(y_v, y_l) and np.array_equal(y_b[:nn], np.array(y_n)))
    path = semantics.mvm_path(W, cfg.input_bits, adc_bits, shift)
    r = {"adc": name, "engine": engine, "adc_bits": adc_bits, "adc_shift": shift, "path": path, "batch": args.batch,
         "batched_mac_per_s": macs * args.batch / t_b, "float64_matmul_mac_per_s": blas,
         "per_vector_mac_per_s": macs * nv / t_v, "legacy_mac_per_s": macs * nv / t_l,
         "naive_mac_per_s": macs * nn / t_n, "outputs_identical": bool(same)}
    r["vs_float64"] = r["batched_mac_per_s"] / blas
    r["batched_vs_legacy"] = r["batched_mac_per_s"] / r["legacy_mac_per_s"]
    r["batched_vs_naive"] = r["batched_mac_per_s"] / r["naive_mac_per_s"]
    print(f"{name:<12}{engine:>7}{path:>14}{r['batched_mac_per_s']:>12.3e}{r['vs_float64']:>11.1%} "
          f"{r['per_vector_mac_per_s']:>12.3e}{r['legacy_mac_per_s']:>12.3e}{r['batched_vs_legacy']:>13.1f}x")
    return r


#: (name, format, ADC bits, step, window with a saturating column)
FORMAT_CASES = [
    ("diff1-lossless", NumberFormat(8, 8, 1, "differential"), 8, 0, False),
    ("diff1-adc8-sat", NumberFormat(8, 8, 1, "differential"), 8, 0, True),
    ("diff1-adc6-sat", NumberFormat(8, 8, 1, "differential"), 6, 0, True),
    ("diff1-adc8-step2", NumberFormat(8, 8, 1, "differential"), 8, 1, True),
    ("twos2-dac2-nearest", NumberFormat(8, 8, 2, "twos", "twos", 2, "nearest"), 8, 2, True),
    ("offset2-sm-dac2", NumberFormat(8, 8, 2, "offset", "sign-magnitude", 2), 8, 1, True),
]


def measure_formats(args, rng) -> list[dict]:
    """Time :func:`cimisa.kernel.mvm_acc_format` per :data:`FORMAT_CASES` against the default kernel."""
    rows, n, b = 256, args.logical, args.batch
    W0 = rng.integers(-128, 128, (rows, n))
    X = rng.integers(-128, 128, (rows, b))
    win0 = kernel.Window.of(W0)
    print(f"number formats: {rows}x{n} logical window, 8-bit weights and inputs, batch {b}")
    print(f"{'format':<20}{'path':>12}{'ms':>9}{'MAC/s':>12}{'default ms':>12}{'vs default':>11}"
          f"{'numpy engine':>18}  exact")
    out = []
    for name, fmt, bits, shift, sat in FORMAT_CASES:
        W = W0.copy()
        if sat:
            W[:, 0] = 127
        win = kernel.Window.of(W)
        kernel.mvm_acc_format(win, X, fmt, bits, shift)            # the window's cells and bounds, cached
        fns = [functools.partial(kernel.mvm_acc_format, win, X, fmt, bits, shift),
               functools.partial(kernel.mvm_acc, W0, X, 8, bits, shift, win0),
               functools.partial(_with_engine, "numpy", kernel.mvm_acc_format, win, X, fmt, bits, shift)]
        (t_f, t_d, t_n), (y, _, y_n) = timed_in_turns(fns, args.reps)
        bias = [fmt.bias_cell] * rows if fmt.bias_cols else None
        want = [[fmt.mvm_column([fmt.cells(int(v)) for v in W[:, c]], bias, X[:, k].tolist(), bits, shift)
                 for k in range(2)] for c in range(n)]
        r = {"format": name, "describe": fmt.describe(), "adc_bits": bits, "adc_shift": shift,
             "path": kernel.format_path(win, fmt, bits, shift, batch=b), "physical_cols": fmt.conversions(n),
             "ms": t_f * 1e3, "mac_per_s": rows * n * b / t_f, "default_ms": t_d * 1e3, "vs_default": t_d / t_f,
             "numpy_engine_ms": t_n * 1e3, "numpy_path": _with_engine("numpy", kernel.format_path, win, fmt, bits,
                                                                         shift),
             "exact": bool(np.array_equal(y[:, :2], np.array(want)) and np.array_equal(y, y_n))}
        print(f"{name:<20}{r['path']:>12}{r['ms']:>9.3f}{r['mac_per_s']:>12.3e}{r['default_ms']:>12.3f}"
              f"{r['vs_default']:>10.2f}x{r['numpy_path']:>9}{r['numpy_engine_ms']:>9.3f}  {r['exact']}")
        out.append(r)
    return out


def _with_engine(engine, fn, *args):
    """``fn(*args)`` with the kernel engine ``engine``."""
    with kernel_int8.use(engine):
        return fn(*args)


def measure_engine_choice(args, rng) -> list[dict]:
    """Time both kernel engines on windows of 16..256 rows of 8-bit weights (96 columns) and batches of 1, 64 and
    633 vectors (MiniLM's token count), 8-bit ADCs with and without a step; report the engine ``auto`` picks
    (:func:`cimisa.kernel._int8_cheaper`, a cost model) and its time against the faster one."""
    print("engine choice: 96-column windows of 8-bit weights, 8-bit inputs; auto's pick against the faster engine")
    print(f"{'rows':>5}{'batch':>6}{'ADC':>6}{'numpy form':>17}{'numpy us':>10}{'int8 us':>9}{'auto':>7}"
          f"{'auto / best':>12}")
    out = []
    for rows in (16, 32, 64, 128, 256):
        W = rng.integers(-128, 128, (rows, 96))
        win = kernel.Window.of(W)
        for b in (1, 64, 633):
            X = rng.integers(-128, 128, (rows, b))
            for adc, (bits, shift) in (("step", (8, rules.adc_shift_for(win.colmin, win.colmax, 8))),
                                       ("sat", (8, 0))):
                with kernel_int8.use("numpy"):
                    form = kernel.mvm_path(win, 8, bits, shift, batch=b)
                fns = [functools.partial(_with_engine, engine, kernel.mvm_acc, W, X, 8, bits, shift, win)
                       for engine in ("numpy", "int8")]
                (t_n, t_i), (y_n, y_i) = timed_in_turns(fns, max(5, args.reps // 2))
                pick = "int8" if kernel.mvm_path(win, 8, bits, shift, batch=b) == "int8 planes" else "numpy"
                r = {"rows": rows, "batch": b, "adc": adc, "numpy_form": form, "numpy_us": t_n * 1e6,
                     "int8_us": t_i * 1e6, "auto": pick, "same": bool(np.array_equal(y_n, y_i))}
                r["auto_vs_best"] = (t_i if pick == "int8" else t_n) / min(t_n, t_i)
                print(f"{rows:>5}{b:>6}{adc:>6}{form:>17}{r['numpy_us']:>10.1f}{r['int8_us']:>9.1f}{pick:>7}"
                      f"{r['auto_vs_best']:>11.2f}x")
                out.append(r)
    worst = max(r["auto_vs_best"] for r in out)
    print(f"auto within 10 % of the faster engine in {sum(r['auto_vs_best'] <= 1.1 for r in out)} of {len(out)} "
          f"cases (worst {worst:.2f}x)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64, help="input vectors per MVM (>= 64 for the target)")
    ap.add_argument("--reps", type=int, default=20, help="timed repetitions of each batched measurement")
    ap.add_argument("--per-vector", type=int, default=16, help="vectors timed one at a time (1-D buffers)")
    ap.add_argument("--naive-mvms", type=int, default=2, help="vectors for the naive model (slow)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (set before numpy loads)")
    ap.add_argument("--logical", type=int, default=18, help="logical columns of the number-format window")
    ap.add_argument("--no-engine-choice", dest="engine_choice", action="store_false",
                    help="skip the table of auto's engine choice (windows of 16..256 rows, batches 1..633)")
    ap.add_argument("--json", type=Path, default=Path("bench/results/golden.json"))
    args = ap.parse_args(argv)
    cfg = load_hw("paper-256").lossless()
    rng = np.random.default_rng(0)
    W = rng.integers(-128, 128, (cfg.rows, cfg.cols))
    X = rng.integers(-128, 128, (args.batch, cfg.rows))
    macs = cfg.rows * cfg.cols
    machine = {impl: Machine(cfg, impl=impl) for impl in ("fast", "naive")}
    for m in machine.values():
        for r in range(cfg.rows):
            m.execute(Command.write_w(0, r, 0, W[r]))
    Wt, Xf = W.T.astype(np.float64), X.T.astype(np.float64)

    def reference():
        return Wt @ Xf
    t_blas, _ = timed(reference, args.reps)
    blas = macs * args.batch / t_blas
    env = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    print(f"threads: {env}")
    print(f"workload: {cfg.rows}x{cfg.cols} array, 8-bit weights, {cfg.input_bits}-bit bit-serial inputs, "
          f"full-window MVMs, batch {args.batch}")
    print(f"reference numpy float64 matmul ({cfg.cols}x{cfg.rows} @ {cfg.rows}x{args.batch}): {blas:.3e} MAC/s")
    engines = [e for e in ("int8", "numpy") if e == "numpy" or kernel_int8.active(load=True) is not None]
    print(f"kernel engines: {', '.join(engines)} (the kit's default, 'auto': int8 once torch is loaded, which "
          f"the model runners do; numpy: the packed float64 forms)")
    print(f"{'ADC setting':<12}{'engine':>7}{'path':>14}{'MAC/s':>12}{'vs float64':>12}{'per-vector':>12}{'legacy':>12}"
          f"{'batch/legacy':>14}")
    rows = [measure(name, engine, cfg, W, X, machine, args, reference)
            for name in ("lossless", "adc8-step", "adc8-sat") for engine in engines]
    formats = measure_formats(args, rng)
    choice = measure_engine_choice(args, rng) if "int8" in engines and args.engine_choice else []
    ok = (all(r["outputs_identical"] for r in rows) and all(r["exact"] for r in formats)
          and all(r["same"] for r in choice))
    for r in rows:
        print(f"{r['adc']:<12}{r['engine']:>6} batched / naive: {r['batched_vs_naive']:.0f}x  (naive "
              f"{r['naive_mac_per_s']:.3e} MAC/s); outputs identical: {r['outputs_identical']}")
    for engine in engines:
        print(f"target ({engine} engine): batched >= 30% of the float64 matmul: "
              + ", ".join(f"{r['adc']} {'met' if r['vs_float64'] >= 0.3 else 'NOT met'} ({r['vs_float64']:.1%})"
                          for r in rows if r["engine"] == engine))
    res = {"array": f"{cfg.rows}x{cfg.cols}", "input_bits": cfg.input_bits, "weight_bits": cfg.weight_bits,
           "threads": env, "rows": rows, "formats": formats, "engine_choice": choice, "load_before": os.getloadavg()}
    atomic_write_text(args.json, json.dumps(res, indent=2) + "\n")
    if not ok:
        print("error: batched, per-vector, legacy and naive outputs (or a format and its definition, or the two "
              "engines) disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
