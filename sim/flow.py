"""The co-simulation flow behind ``python -m sim run``: map a model, run RTL and sw_model, summarise.

:func:`cosim_model` returns the summary as data (the CLI prints it); with ``out_dir`` it also writes
``summary.json``, the simulator's log, job and report files and, with ``waves``, the wave file, all at once
through :func:`cimisa.fsutil.atomic_dir` (nothing is left behind when a step fails).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from cimisa.config import HwConfig
from cimisa.errors import KitError
from cimisa.fsutil import atomic_dir
from sim import runner
from sim.job import JobReport
from sim.model_stream import STRATEGIES, resolve_stream
from sim.streams import illegal_streams, random_stream

__all__ = ["cosim_model", "cosim_check", "summarize"]


def summarize(cfg: HwConfig, report: JobReport, *, model: str, strategies: Sequence[str], build) -> dict:
    """Return the JSON summary of a co-simulation run."""
    return {
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
        "streams": [{"name": c.name, "commands": c.commands, "words": c.words, "cycles": c.cycles,
                     "cycles_per_s": c.sim_cycles / c.wall_s if c.wall_s else 0.0, "results": c.results,
                     "expected_results": c.expected_results, "status": list(c.status),
                     "expected_status": list(c.expected_status), "mismatches": c.mismatches,
                     "timed_out": c.timed_out, "first_mismatches": c.details[:10]} for c in report.cases],
    }


def _check_run_options(simulator: str, gap: float, backpressure: float) -> None:
    """Raise a user error for handshake probabilities outside [0, 1) or a simulator that cannot run here."""
    if not (0.0 <= gap < 1.0 and 0.0 <= backpressure < 1.0):
        raise KitError(f"--gap and --backpressure must be in [0, 1), not {gap} and {backpressure}")
    reason = runner.unavailable_reason(simulator)
    if reason:
        raise runner.SimulatorError(f"cannot use simulator {simulator!r}: {reason}")


def cosim_model(model: str, cfg: HwConfig, *, strategies: Sequence[str] = ("auto",), simulator: str = "verilator",
                waves: bool = False, out_dir: str | os.PathLike | None = None, seed: int = 0, nblocks: int = 4,
                gap: float = 0.0, backpressure: float = 0.0) -> dict:
    """Co-simulate ``model`` (zoo name, checkpoint folder or mapper output folder) on ``cfg``; return a summary.

    Each strategy's stream runs on the RTL in one simulator process (reset between streams) and is checked
    against sw_model. A mapper output folder (``commands.bin``) brings its own stream and ignores
    ``strategies``.
    """
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise KitError(f"unknown strategy {bad[0]!r} (known: {', '.join(STRATEGIES)})")
    _check_run_options(simulator, gap, backpressure)
    streams = []
    for s in strategies:
        st = resolve_stream(model, cfg, s, nblocks=nblocks, seed=seed)
        streams.append(st)
        if not st.name.endswith(f"/{s}"):        # a stream file: one stream, whatever the strategy
            strategies = ["(file)"]
            break
    cases = runner.make_cases(cfg, [(st.name, st.words) for st in streams], gap=gap, backpressure=backpressure,
                              seed=seed)
    build = runner.build(cfg, simulator, waves=waves)
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="cimsim-") as tmp:
            report = runner.run(cfg, cases, simulator=simulator, waves=waves, work_dir=tmp)
            return summarize(cfg, report, model=model, strategies=strategies, build=build)
    with atomic_dir(out_dir) as tmp:
        work = tmp / "sim"
        report = runner.run(cfg, cases, simulator=simulator, waves=waves, work_dir=work)
        summary = summarize(cfg, report, model=model, strategies=strategies, build=build)
        if report.wave_file:
            wave = Path(report.wave_file)
            dest = tmp / f"waves{''.join(wave.suffixes)}"
            shutil.move(str(wave), dest)
            summary["waves"] = str(Path(out_dir) / dest.name)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def cosim_check(cfg: HwConfig, *, n_random: int = 10, length: int = 60, illegal: bool = True,
                simulator: str = "verilator", seed: int = 0, gap: float = 0.0, backpressure: float = 0.0,
                out_dir: str | os.PathLike | None = None) -> dict:
    """Co-simulate ``n_random`` random legal streams of ``length`` commands and (with ``illegal``) one stream per
    illegal-command variant on ``cfg``; return the summary (as :func:`cosim_model`, model ``"(random)"``).
    """
    if n_random < 0 or length < 1:
        raise KitError(f"--random must be >= 0 and --length >= 1, not {n_random} and {length}")
    _check_run_options(simulator, gap, backpressure)
    items = [(st.name, st.words) for st in (random_stream(cfg, seed + k, length) for k in range(n_random))]
    if illegal:
        items += [(st.name, st.words) for st in illegal_streams(cfg, seed=seed)]
    if not items:
        raise KitError("nothing to run: give --random N > 0 or leave illegal streams on")
    cases = runner.make_cases(cfg, items, gap=gap, backpressure=backpressure, seed=seed)
    build = runner.build(cfg, simulator)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(atomic_dir(out_dir) if out_dir is not None
                                       else tempfile.TemporaryDirectory(prefix="cimsim-")))
        report = runner.run(cfg, cases, simulator=simulator, work_dir=tmp / "sim")
        summary = summarize(cfg, report, model="(random)", strategies=[], build=build)
        if out_dir is not None:
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
