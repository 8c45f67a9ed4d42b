"""The co-simulation flow behind ``python -m sim run``: map a model, run RTL and sw_model, summarise.

:func:`cosim_model` returns the summary as data (the CLI prints it), every stream with the cycles the performance
model predicts for it (:mod:`perf.stream`) next to the measured ones; with ``out_dir`` it also writes
``summary.json``, the simulator's log, job and report files and, with ``waves``, the wave file, all at once
through :func:`cimisa.fsutil.atomic_dir` (nothing is left behind when a step fails).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from cimisa.config import HwConfig, load_hw
from cimisa.errors import KitError
from cimisa.fsutil import atomic_dir, check_out_dir
from perf.stream import predict_words
from sim import fast, runner
from sim.cases import make_cases
from sim.job import Case, JobReport
from sim.model_stream import DEFAULT_HW, STRATEGIES, STREAM_SEED, resolve_stream, stream_source
from sim.streams import illegal_streams, random_stream

__all__ = ["cosim_model", "cosim_check", "summarize", "cycle_fields", "MAX_RANDOM", "MAX_LENGTH", "MAX_RANDOM_COMMANDS"]

#: The fast path: the exported Verilog in a plain Verilator C++ harness (:mod:`sim.fast`), no cocotb.
FAST = fast.SIMULATOR
#: ``--simulator`` values: the cocotb simulators, the fast harness, and ``auto`` (see :func:`pick_simulator`).
SIMULATOR_CHOICES = ("auto", *runner.SIMULATORS, FAST)
#: With ``auto``, streams of more words than this (in total) run on the fast harness.
FAST_WORDS = 20_000


def pick_simulator(simulator: str, words: int, *, waves: bool = False) -> str:
    """Resolve ``auto``: the fast harness for long streams (over :data:`FAST_WORDS` words) unless waves are asked
    for or it cannot run here, cocotb + Verilator otherwise; any other name is returned as it is."""
    if simulator != "auto":
        return simulator
    if words > FAST_WORDS and not waves and fast.unavailable_reason() is None:
        return FAST
    return "verilator"


@contextlib.contextmanager
def _engine(cfg: HwConfig, simulator: str, waves: bool):
    """Yield ``(build, run)``: the simulator's build, held for the block, and ``run(cases, work_dir)``."""
    if simulator == FAST:
        b = fast.build(cfg)                                   # fast builds are never pruned
        yield b, lambda cases, work_dir=None: fast.run(cfg, cases, work_dir=work_dir)
        return
    with runner.held_build(cfg, simulator, waves=waves) as b:
        yield b, lambda cases, work_dir=None: runner.run(cfg, cases, simulator=simulator, waves=waves,
                                                         work_dir=work_dir)


#: Why a stream's ``cycle_ratio`` is null (the prediction is still reported).
NOTE_HANDSHAKE = ("--gap/--backpressure: the prediction assumes words offered back to back and results always "
                  "accepted; not comparable")
NOTE_TIMED_OUT = "the run timed out: its measured cycles are not the stream's"


def cycle_fields(cfg: HwConfig, case: Case, measured: int, *, timed_out: bool = False) -> dict:
    """``predicted_cycles`` (:func:`perf.stream.predict_words`), ``measured_cycles``, ``cycle_ratio`` (predicted /
    measured; None with a ``cycle_note`` when the run used a gappy or back-pressured handshake or timed out)."""
    pred = predict_words(cfg, case.words).cycles
    note = NOTE_HANDSHAKE if (case.gap or case.backpressure) else NOTE_TIMED_OUT if timed_out else None
    ratio = round(pred / measured, 6) if note is None and measured > 0 else None
    return {"predicted_cycles": pred, "measured_cycles": measured, "cycle_ratio": ratio, "cycle_note": note}


def _worst(streams: Sequence[dict]) -> tuple[float | None, str | None]:
    """The per-stream ratio farthest from 1 and its stream (None when no ratio is comparable)."""
    rated = [st for st in streams if st.get("cycle_ratio") is not None]
    if not rated:
        return None, None
    w = max(rated, key=lambda st: abs(math.log(st["cycle_ratio"])) if st["cycle_ratio"] > 0 else math.inf)
    return w["cycle_ratio"], w["name"]


def summarize(cfg: HwConfig, report: JobReport, *, model: str, strategies: Sequence[str], build,
              cases: Sequence[Case] | None = None) -> dict:
    """Return the JSON summary of a co-simulation run; with ``cases`` (the job's, in order) each stream also gets
    the performance model's prediction (:func:`cycle_fields`) and the summary the total and the worst ratio."""
    streams = [{"name": c.name, "commands": c.commands, "words": c.words, "cycles": c.cycles,
                "cycles_per_s": c.sim_cycles / c.wall_s if c.wall_s else 0.0, "results": c.results,
                "expected_results": c.expected_results, "status": list(c.status),
                "expected_status": list(c.expected_status), "mismatches": c.mismatches,
                "timed_out": c.timed_out, "first_mismatches": c.details[:10]} for c in report.cases]
    out = {
        "model": model,
        "hw": cfg.name,
        "hw_tag": cfg.tag,
        "arch_hash": cfg.arch_hash,
        "strategies": list(strategies),
        "simulator": report.simulator,
        "build": {"directory": str(build.directory), "verilog": str(build.verilog), "seconds": build.seconds,
                  "reused": build.reused},
        "commands": sum(c.commands for c in report.cases),
        "words": sum(c.words for c in report.cases),
        "cycles": report.cycles,
        "sim_cycles": report.sim_cycles,
        "cycles_per_s": report.cycles_per_s,
        "process_wall_s": report.wall_s,
        "mismatches": report.mismatches,
        "ok": report.mismatches == 0,
        "streams": streams,
    }
    if cases is not None:
        if [c.name for c in cases] != [c.name for c in report.cases]:
            raise KitError("the simulator's report does not list the job's streams in order")
        for st, case, rc in zip(streams, cases, report.cases):
            st.update(cycle_fields(cfg, case, rc.cycles, timed_out=rc.timed_out))
        worst, where = _worst(streams)
        notes = sorted({st["cycle_note"] for st in streams if st["cycle_note"]})
        out.update(predicted_cycles=sum(st["predicted_cycles"] for st in streams),
                   measured_cycles=report.cycles, cycle_ratio_worst=worst, cycle_ratio_worst_stream=where,
                   cycle_note="; ".join(notes) or None)
    return out


#: Bounds of ``python -m sim check``: random streams, commands per stream, and commands in all.
MAX_RANDOM = 1000
MAX_LENGTH = 10_000
MAX_RANDOM_COMMANDS = 200_000


def _check_run_options(simulator: str, gap: float, backpressure: float, seed: int) -> None:
    """Raise a user error for handshake probabilities outside [0, 1), a negative seed, or a simulator that
    cannot run here."""
    for opt, v in (("--gap", gap), ("--backpressure", backpressure)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0.0 <= v < 1.0):
            raise KitError(f"{opt} must be a probability in [0, 1), not {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise KitError(f"--seed must be a non-negative integer, not {seed!r}")
    if simulator not in SIMULATOR_CHOICES:
        raise KitError(f"unknown simulator {simulator!r} (choose from {', '.join(SIMULATOR_CHOICES)})")
    if simulator == "auto":
        simulator = "verilator"                              # auto falls back to it: it must be usable
    reason = fast.unavailable_reason() if simulator == FAST else runner.unavailable_reason(simulator)
    if reason:
        raise runner.SimulatorError(f"cannot use simulator {simulator!r}: {reason}")
    runner.keep_builds()                                     # a bad $CIMSIM_KEEP_BUILDS, before any work


def _write_out(tmp: Path, summary: dict, report: JobReport, out: Path) -> None:
    """Move the wave file next to the summary (named in it by its final path) and write ``summary.json``."""
    if report.wave_file:
        wave = Path(report.wave_file)
        dest = tmp / f"waves{''.join(wave.suffixes)}"
        shutil.move(str(wave), dest)
        summary["waves"] = str(out / dest.name)
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _simulate(cfg: HwConfig, cases: Sequence[Case], simulator: str, *, waves: bool, out: Path | None, force: bool,
              model: str, strategies: Sequence[str]) -> dict:
    """Run ``cases`` on the simulator :func:`pick_simulator` resolves and return the summary; with ``out``, write
    it, the simulator's files and the waves there all at once."""
    simulator = pick_simulator(simulator, sum(len(c.words) for c in cases), waves=waves)
    with _engine(cfg, simulator, waves) as (build, run_cases):
        if out is None:
            report = run_cases(cases)
            return summarize(cfg, report, model=model, strategies=strategies, build=build, cases=cases)
        with atomic_dir(out, force=force) as tmp:
            report = run_cases(cases, work_dir=tmp / "sim")
            summary = summarize(cfg, report, model=model, strategies=strategies, build=build, cases=cases)
            _write_out(tmp, summary, report, out)
    return summary


def cosim_model(model: str, cfg: HwConfig | None = None, *, strategies: Sequence[str] = ("auto",),
                simulator: str = "auto", waves: bool = False, out_dir: str | os.PathLike | None = None,
                seed: int = STREAM_SEED, nblocks: int | None = None, gap: float = 0.0, backpressure: float = 0.0,
                force: bool = False) -> dict:
    """Co-simulate ``model`` (zoo name, checkpoint folder, mapper output folder or ``.bin`` stream) on ``cfg``;
    return a summary.

    Each strategy's stream runs on the RTL in one simulator process (reset between streams) and is checked
    against sw_model. A model is mapped as ``mapper build`` maps it (:mod:`sim.model_stream`; ``cfg`` None:
    fpga-tiny). A mapper output folder (``commands.bin``) brings its own stream and configuration (``cfg``, if
    given, must match) and ignores ``strategies``. ``out_dir`` is checked before any work (an existing folder
    the kit did not write is replaced only with ``force``) and written all at once.
    """
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise KitError(f"unknown strategy {bad[0]!r} (known: {', '.join(STRATEGIES)})")
    if not strategies:
        raise KitError("no strategy given")
    if nblocks is not None and (isinstance(nblocks, bool) or not isinstance(nblocks, int) or nblocks < 1):
        raise KitError(f"--nblocks must be a positive integer, not {nblocks!r}")
    _check_run_options(simulator, gap, backpressure, seed)
    out = check_out_dir(out_dir, force=force) if out_dir is not None else None
    if stream_source(model) is not None:                     # a stream file: one stream, whatever the strategy
        streams = [resolve_stream(model, cfg)]
        strategies = ["(file)"]
    else:
        cfg = cfg if cfg is not None else load_hw(DEFAULT_HW)
        streams = [resolve_stream(model, cfg, s, nblocks=nblocks, seed=seed) for s in strategies]
    cfg = streams[0].cfg
    cases = make_cases(cfg, [(st.name, st.words) for st in streams], gap=gap, backpressure=backpressure,
                              seed=seed)
    if simulator == FAST and waves:
        raise KitError(f"--waves needs a cocotb simulator ({', '.join(runner.SIMULATORS)}), not {FAST}")
    return _simulate(cfg, cases, simulator, waves=waves, out=out, force=force, model=model, strategies=strategies)


def cosim_check(cfg: HwConfig, *, n_random: int = 10, length: int = 60, illegal: bool = True,
                simulator: str = "auto", seed: int = 0, gap: float = 0.0, backpressure: float = 0.0,
                out_dir: str | os.PathLike | None = None, force: bool = False) -> dict:
    """Co-simulate ``n_random`` random legal streams of ``length`` commands and (with ``illegal``) one stream per
    illegal-command variant on ``cfg``; return the summary (as :func:`cosim_model`, model ``"(random)"``).

    Bounds: ``0 <= n_random <= MAX_RANDOM``, ``1 <= length <= MAX_LENGTH``, ``n_random * length <=
    MAX_RANDOM_COMMANDS``.
    """
    for opt, v in (("--random", n_random), ("--length", length)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise KitError(f"{opt} must be an integer, not {v!r}")
    if not 0 <= n_random <= MAX_RANDOM:
        raise KitError(f"--random must be from 0 to {MAX_RANDOM}, not {n_random}")
    if not 1 <= length <= MAX_LENGTH:
        raise KitError(f"--length must be from 1 to {MAX_LENGTH}, not {length}")
    if n_random * length > MAX_RANDOM_COMMANDS:
        raise KitError(f"--random {n_random} x --length {length} is {n_random * length} commands; at most "
                       f"{MAX_RANDOM_COMMANDS} per run")
    _check_run_options(simulator, gap, backpressure, seed)
    if not n_random and not illegal:
        raise KitError("nothing to run: give --random N > 0 or leave illegal streams on")
    out = check_out_dir(out_dir, force=force) if out_dir is not None else None
    items = [(st.name, st.words) for st in (random_stream(cfg, seed + k, length) for k in range(n_random))]
    if illegal:
        items += [(st.name, st.words) for st in illegal_streams(cfg, seed=seed)]
    cases = make_cases(cfg, items, gap=gap, backpressure=backpressure, seed=seed)
    return _simulate(cfg, cases, simulator, waves=False, out=out, force=force, model="(random)", strategies=[])
