"""The scoreboard of co-simulation: the one checker (:func:`cimisa.check.check`) applied to a :class:`~sim.job.Case`.

Both engines (the cocotb testbench, :mod:`sim.cocotb_tests.test_cim_tile`, and the fast Verilator harness,
:mod:`sim.fast`) hand what the RTL did to :func:`check_case`, which compares it with the case's expectations,
logs each mismatch (``result[3]: Expected 5, Actual 6``; at most ``log_limit``) and returns the
:class:`~sim.job.CaseReport` (at most :data:`KEEP` mismatches kept in its ``details``, all counted).

Plain Python (no cocotb), so it is also used and tested outside the simulator.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cimisa.check import Mismatch, Verdict, check
from sim.job import Case, CaseReport

__all__ = ["Mismatch", "Verdict", "KEEP", "LOG_LIMIT", "check_case", "log_verdict"]

#: Mismatches kept in a case report's ``details`` (all are counted).
KEEP = 50
#: Mismatches logged per case.
LOG_LIMIT = 20

_LOG = logging.getLogger("sim.checker")


def log_verdict(verdict: Verdict, log: logging.Logger | None = None, *, limit: int = LOG_LIMIT) -> None:
    """Log each mismatch of ``verdict`` as an error (the first ``limit``; then one line saying more were found)."""
    log = log or _LOG
    name = verdict.name or "checker"
    for m in verdict.mismatches[:limit]:
        log.error("%s: mismatch %s", name, m)
    if verdict.count > limit:
        log.error("%s: further mismatches counted but not logged", name)
    if verdict.expected_results != verdict.actual_results:
        log.error("%s: %d result words expected, %d received", name, verdict.expected_results,
                  verdict.actual_results)


def check_case(case: Case, results: Sequence, status: Sequence, *, cycles: int, sim_cycles: int, wall_s: float,
               timed_out: bool, log: logging.Logger | None = None) -> CaseReport:
    """Compare what the RTL did with ``case`` (result words and ``(state, error, index)``), log the mismatches and
    return the case's report."""
    verdict = check(case.expected_results, case.expected_status, results, status, name=case.name)
    log_verdict(verdict, log)
    return CaseReport(name=case.name, words=len(case.words), commands=case.commands, cycles=cycles,
                      sim_cycles=sim_cycles, wall_s=wall_s, status=tuple(status),
                      expected_status=tuple(case.expected_status), results=len(results),
                      expected_results=len(case.expected_results), mismatches=verdict.count,
                      details=[m.to_json() for m in verdict.mismatches[:KEEP]], timed_out=timed_out)
