"""cocotb test for ``cim_tile``: runs every case of the job file named by ``$CIMSIM_JOB`` and writes a report.

For each case: reset the tile, drive the stream's words (:class:`~sim.driver.CommandDriver`) while collecting
result words (:class:`~sim.monitor.ResultMonitor`), wait until the status register leaves RUNNING, drain the
result stream, then compare results and status with what sw_model computed on the host
(:func:`sim.checker.check_case`, the one checker of :mod:`cimisa.check`). The test itself passes whenever the job
ran; the verdict (mismatch counts, per case) is in the report file ``$CIMSIM_REPORT``, so expect-fail runs can
assert that mismatches were found.
"""

from __future__ import annotations

import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer, ValueChange

from cimisa.isa import Isa
from sim.checker import check_case
from sim.driver import CommandDriver
from sim.job import JOB_ENV, REPORT_ENV, CaseReport, Job, write_case_reports
from sim.monitor import ResultMonitor, read_status

CLOCK_NS = 10
RESET_CYCLES = 2
#: After the tile stopped, results are collected until the result stream was idle this many cycles in a row
#: (catches words still queued, and words the tile should not emit).
DRAIN_CYCLES = 16


#: A tile that neither accepts a word nor stops for this many cycles in a row is taken to be stuck (the longest
#: legal command, a full-window MVM or a long READ under back-pressure, takes a few thousand cycles).
STALL_CYCLES = 50_000


def default_max_cycles(n_words: int, cfg) -> int:
    """A generous cycle budget for a stream: a full-window MVM per word, at most."""
    full_mvm = (cfg.rows // cfg.rows_per_cycle + 2) * cfg.input_bits * (cfg.cols // cfg.adcs_per_array + 2)
    return 1000 + n_words * (16 + full_mvm)


async def run_case(dut, isa: Isa, case, log) -> CaseReport:
    cfg = isa.cfg
    rng = random.Random(case.seed)
    driver = CommandDriver(dut, isa, period_ns=CLOCK_NS, gap=case.gap, rng=random.Random(rng.random()))
    monitor = ResultMonitor(dut, isa, backpressure=case.backpressure, rng=random.Random(rng.random()))
    max_cycles = case.max_cycles or default_max_cycles(len(case.words), cfg)

    t0 = time.perf_counter()
    dut.rst.value = 1
    driver.idle()
    monitor.idle()
    for _ in range(RESET_CYCLES):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    start = get_sim_time("ns")

    def elapsed() -> int:
        return round((get_sim_time("ns") - start) / CLOCK_NS)

    task = cocotb.start_soon(monitor.run())
    sent_all = await driver.send(case.words, max_cycles, STALL_CYCLES)
    cycles = driver_cycles = driver.cycles
    status = read_status(dut, isa)
    if sent_all:
        while True:                                       # wait until the tile stops
            await ReadOnly()
            status = read_status(dut, isa)
            cycles = elapsed()
            budget = min(max_cycles - cycles, STALL_CYCLES - (cycles - driver_cycles))
            if status[0] != "RUNNING" or budget <= 0:
                break
            await First(ValueChange(dut.status), Timer(budget * CLOCK_NS, "ns"))
        await RisingEdge(dut.clk)                         # leave the read-only phase
    timed_out = not sent_all or status[0] == "RUNNING"
    monitor.backpressure = 0.0                            # drain: always ready, until the stream stays idle
    idle = drained = 0
    while idle < DRAIN_CYCLES and drained < max_cycles:
        n = len(monitor.words)
        await RisingEdge(dut.clk)
        drained += 1
        idle = 0 if len(monitor.words) != n else idle + 1
    task.cancel()
    sim_cycles = elapsed() + RESET_CYCLES
    wall = time.perf_counter() - t0

    if timed_out:
        log.error("%s: gave up after %d cycles (driver sent %d/%d words, status %s)", case.name, cycles,
                  driver.sent, len(case.words), status)
    report = check_case(case, monitor.words, status, cycles=cycles, sim_cycles=sim_cycles, wall_s=wall,
                        timed_out=timed_out, log=log)
    log.info("%s: %d words, %d cycles (%d driving), %d results, status %s, %d mismatches", case.name,
             len(case.words), cycles, driver_cycles, len(monitor.words), status, report.mismatches)
    return report


@cocotb.test()
async def run_job(dut):
    """Run every case of the job file and write the report."""
    job = Job.read(os.environ[JOB_ENV])
    isa = Isa.of(job.cfg)
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    reports = []
    for case in job.cases:
        reports.append(await run_case(dut, isa, case, dut._log))
        write_case_reports(os.environ[REPORT_ENV], reports)   # partial reports survive a crash
    write_case_reports(os.environ[REPORT_ENV], reports)
