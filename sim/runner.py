"""Run co-simulation jobs on the exported tile under cocotb, and the co-simulation library's one import point.

:func:`run` hands a job's cases (from :func:`make_cases`: sw_model's expectations) to the cocotb test
(:mod:`sim.cocotb_tests.test_cim_tile`) through a job file, in one simulator process, and reads its report back.
Every path handed to the simulator is absolute (it runs in the job's folder, not in the caller's).

The other jobs live in their own modules and are re-exported here: finding the simulators
(:mod:`sim.tools`), the shared build cache and its locks (:mod:`sim.cache`), exporting and compiling the tile
(:mod:`sim.builds`), and the reference cases (:mod:`sim.cases`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cimisa import progress
from cimisa.config import HwConfig
from sim.builds import (
    ICARUS_ARGS,
    RECIPE,
    TIMESCALE,
    TOPLEVEL,
    VERILATOR_ARGS,
    Build,
    build,
    check_ports,
    expected_ports,
    export,
    held_build,
)
from sim.cache import KEEP_BUILDS, KEEP_LOGS, cache_dir, keep_builds, keep_log
from sim.cases import MachineFactory, make_case, make_cases
from sim.job import JOB_ENV, REPORT_ENV, Case, Job, JobReport, read_case_reports
from sim.tools import (
    SIMULATORS,
    VERILATOR_MAKE_VARS,
    SimulatorError,
    available_simulators,
    failure_reason,
    quiet,
    tool_env,
    unavailable_reason,
    verilator_root,
)

__all__ = ["SimulatorError", "Build", "SIMULATORS", "verilator_root", "available_simulators", "unavailable_reason",
           "cache_dir", "keep_builds", "export", "build", "held_build", "make_cases", "make_case", "run", "TOPLEVEL",
           "TEST_MODULE", "MachineFactory", "expected_ports", "check_ports", "KEEP_BUILDS", "KEEP_LOGS", "RECIPE",
           "TIMESCALE", "VERILATOR_ARGS", "VERILATOR_MAKE_VARS", "ICARUS_ARGS"]

TEST_MODULE = "sim.cocotb_tests.test_cim_tile"


def run(cfg: HwConfig, cases: Sequence[Case], *, simulator: str = "verilator", waves: bool = False,
        work_dir: str | os.PathLike | None = None) -> JobReport:
    """Run ``cases`` on ``cfg``'s tile in one simulator process and return the report.

    The cases run in order on one tile, reset in between but with memories kept: build them with one
    :func:`make_cases` call over the whole job, in this order, so that each expectation starts from the memory
    contents the RTL will have.

    ``work_dir`` (relative to the current folder) receives the job, report, log (and wave) files; a temporary
    folder (removed afterwards) when None. The build is held for the whole simulation, so no other process can
    prune it meanwhile. Raises :class:`SimulatorError` if the simulator fails or writes no report; the message
    names a copy of the simulator's log in ``<cache>/logs``.
    """
    if not cases:
        raise ValueError("cases must not be empty")
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            wd = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cimsim-"))).resolve()
        else:
            wd = Path(os.path.abspath(os.fspath(work_dir)))
            wd.mkdir(parents=True, exist_ok=True)
        b = stack.enter_context(held_build(cfg, simulator, waves=waves))
        job_file, report_file, logfile = wd / "job.json", wd / "report.json", wd / "sim.log"
        Job(cfg, tuple(cases)).write(job_file)
        report_file.unlink(missing_ok=True)
        plusargs = []
        if waves and simulator == "icarus":
            plusargs.append(f"+dumpfile_path={wd / (TOPLEVEL + '.fst')}")

        def failed(what: str) -> SimulatorError:
            kept = keep_log(logfile, f"{simulator}-{cfg.tag}")
            return SimulatorError(f"{simulator} simulation {what}; log: {kept or logfile}")

        t0 = time.perf_counter()
        with progress.stage(f"sim: {simulator} simulation ({len(cases)} streams)"), tool_env():
            from cocotb_tools.runner import get_runner
            r = get_runner(simulator)
            quiet(r)
            # test() reads a few attributes that build() sets; the build came from the cache, so set them here.
            r.build_dir = b.directory
            r.hdl_toplevel = TOPLEVEL
            r.timescale = TIMESCALE
            try:
                r.test(test_module=TEST_MODULE, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                       build_dir=b.directory, test_dir=wd,
                       extra_env={JOB_ENV: str(job_file), REPORT_ENV: str(report_file),
                                  "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "INFO")},
                       results_xml=str(wd / "results.xml"), waves=waves, plusargs=plusargs, log_file=logfile,
                       timescale=TIMESCALE)
            except (SystemExit, RuntimeError) as exc:
                raise failed(f"failed ({failure_reason(logfile, str(exc) or 'no reason given')})") from None
        wall = time.perf_counter() - t0
        if not report_file.is_file():
            raise failed(f"wrote no report ({failure_reason(logfile, 'the test did not run')})")
        reports = read_case_reports(report_file)
        if len(reports) != len(cases):
            raise failed(f"stopped after {len(reports)} of {len(cases)} cases")
        wave = None
        if waves:
            cand = [wd / "dump.vcd", wd / "dump.fst", wd / f"{TOPLEVEL}.fst"]
            found = [p for p in cand if p.is_file()]
            wave = str(found[0]) if found else None
        return JobReport(simulator, reports, wall_s=wall, build_s=0.0 if b.reused else b.seconds, wave_file=wave)
