"""The fast co-simulation path: the exported ``cim_tile`` in a plain Verilator C++ harness (no VPI, no cocotb).

cocotb drives the tile from Python through VPI, which costs ~20-80x in speed; this path compiles the same Verilog
with a small C++ main (:file:`sim/fast/harness.cpp`) that drives the ``cmd`` valid/ready handshake, collects the
``res`` words and reads the ``status`` register cycle by cycle exactly as the cocotb testbench does
(:mod:`sim.driver`, :mod:`sim.monitor`, :mod:`sim.cocotb_tests.test_cim_tile`: same reset, same budgets, same cycle
counts, and with ``gap``/``backpressure`` the same random draws, since the harness replays CPython's Mersenne
Twister from the seeded ``random.Random`` states). The comparison with sw_model stays in Python: the same
:func:`sim.cases.make_cases` references and the same checker (:func:`sim.checker.check_case`).

* :mod:`sim.fast.build` compiles and caches the harness (:func:`build`);
* :mod:`sim.fast.jobfile` writes its job files and reads its output files (:func:`write_job`, :func:`read_output`);
* :func:`run` (here) runs :class:`~sim.job.Case` objects and returns a :class:`~sim.job.JobReport` with
  ``simulator="verilator-fast"``: a drop-in for :func:`sim.runner.run`; :func:`fast_run` does both from
  ``(name, words)`` streams.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import sw_model
from cimisa.config import HwConfig
from sim.cases import MachineFactory, make_cases
from sim.checker import check_case
from sim.fast.build import (
    BINARY,
    HARNESS,
    SIMULATOR,
    FastBuild,
    build,
    fast_cache_dir,
    sha256,
    unavailable_reason,
    verilator_version,
)
from sim.fast.jobfile import FORMAT_VERSION, JOB_MAGIC, OUT_MAGIC, HarnessOutput, read_output, write_job
from sim.job import Case, CaseReport, JobReport
from sim.tools import SimulatorError

__all__ = ["SIMULATOR", "HARNESS", "BINARY", "FORMAT_VERSION", "JOB_MAGIC", "OUT_MAGIC", "FastBuild",
           "HarnessOutput", "unavailable_reason", "build", "run", "fast_run", "write_job", "read_output",
           "verilator_version", "fast_cache_dir", "sha256"]

log = logging.getLogger("sim.fast")


def run(cfg: HwConfig, cases: Sequence[Case], *, work_dir: str | os.PathLike | None = None,
        timeout: float | None = None) -> JobReport:
    """Run ``cases`` on ``cfg``'s tile in the fast harness (one process, reset between cases, memories kept) and
    check them against their expectations with :func:`sim.checker.check_case`; return the report.

    A drop-in for :func:`sim.runner.run` (build the cases with one :func:`sim.cases.make_cases` call). The report's
    ``simulator`` is ``"verilator-fast"``. ``work_dir`` keeps the job and output files (a temporary folder when
    None); ``timeout`` bounds the harness process in seconds (None: no bound; the harness has its own cycle limits).
    """
    if not cases:
        raise ValueError("cases must not be empty")
    b = build(cfg)
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            wd = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cimfast-")))
        else:
            wd = Path(work_dir)
            wd.mkdir(parents=True, exist_ok=True)
        job, out, logfile = wd / "job.bin", wd / "out.bin", wd / "sim.log"
        write_job(job, cfg, cases)
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        with open(logfile, "w") as lf:
            try:
                proc = subprocess.run([str(b.binary), str(job), str(out)], stdout=lf, stderr=subprocess.STDOUT,
                                      timeout=timeout)
            except subprocess.TimeoutExpired:
                raise SimulatorError(f"the fast harness ran longer than {timeout} s") from None
        wall = time.perf_counter() - t0
        tail = " | ".join(x.strip() for x in logfile.read_text(errors="replace").splitlines()[-15:] if x.strip())
        if not out.is_file():
            raise SimulatorError(f"the fast harness wrote no output (exit {proc.returncode}): {tail}")
        outs = read_output(out, cfg)
        if proc.returncode != 0 or len(outs) != len(cases):
            raise SimulatorError(f"the fast harness stopped after {len(outs)} of {len(cases)} cases "
                                 f"(exit {proc.returncode}): {tail}")
    reports = [_check(c, o) for c, o in zip(cases, outs)]
    return JobReport(SIMULATOR, reports, wall_s=wall, build_s=0.0 if b.reused else b.seconds)


def _check(case: Case, o: HarnessOutput) -> CaseReport:
    """Check one case with :func:`sim.checker.check_case`, as the cocotb test does."""
    if o.timed_out:
        log.error("%s: gave up after %d cycles (driver sent %d/%d words, status %s)", case.name, o.cycles, o.sent,
                  len(case.words), o.status)
    return check_case(case, o.results, o.status, cycles=o.cycles, sim_cycles=o.sim_cycles, wall_s=o.wall_s,
                      timed_out=o.timed_out, log=log)


def fast_run(cfg: HwConfig, streams: Sequence, *, machine: MachineFactory = sw_model.Machine, gap: float = 0.0,
             backpressure: float = 0.0, seed: int = 0, work_dir: str | os.PathLike | None = None,
             timeout: float | None = None) -> JobReport:
    """Compute sw_model's references for ``streams`` (``(name, words)`` or ``(name, words, options)`` items, as
    :func:`sim.cases.make_cases`), run them in the fast harness and return the checked :class:`JobReport`."""
    cases = make_cases(cfg, streams, machine=machine, gap=gap, backpressure=backpressure, seed=seed)
    return run(cfg, cases, work_dir=work_dir, timeout=timeout)
