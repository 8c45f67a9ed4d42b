"""What crosses the process boundary: cocotb runs the test module inside the simulator's process, so the host writes
a *job* file (configuration + cases: stream words and sw_model's expected outputs) and the test writes a *report*
file back. Both are JSON (stream words are arbitrary-width integers).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cimisa.config import HwConfig
from cimisa.fsutil import atomic_write_text

__all__ = ["Case", "Job", "CaseReport", "JobReport", "JOB_ENV", "REPORT_ENV", "write_case_reports", "read_case_reports"]

#: Environment variables naming the job file and the report file inside the simulator process.
JOB_ENV = "CIMSIM_JOB"
REPORT_ENV = "CIMSIM_REPORT"


@dataclass(frozen=True)
class Case:
    """One stream to run on a freshly reset tile, with the outputs sw_model expects.

    ``gap`` is the probability of idling ``cmd.valid`` on a cycle, ``backpressure`` of dropping ``res.ready``;
    ``seed`` seeds both. ``max_cycles`` bounds the run (0: derived from the stream length).
    """

    name: str
    words: tuple[int, ...]
    expected_results: tuple[int, ...]
    expected_status: tuple[str, str, int]
    commands: int = 0
    gap: float = 0.0
    backpressure: float = 0.0
    seed: int = 0
    max_cycles: int = 0

    def __repr__(self) -> str:
        return (f"Case({self.name!r}, words={len(self.words)}, results={len(self.expected_results)}, "
                f"status={self.expected_status})")

    def to_json(self) -> dict:
        d = asdict(self)
        d["words"] = list(self.words)
        d["expected_results"] = list(self.expected_results)
        d["expected_status"] = list(self.expected_status)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Case:
        d = dict(d)
        d["words"] = tuple(d["words"])
        d["expected_results"] = tuple(d["expected_results"])
        d["expected_status"] = tuple(d["expected_status"])
        return cls(**d)


@dataclass(frozen=True)
class Job:
    """A configuration and the cases to run on it, in order, in one simulator process."""

    cfg: HwConfig
    cases: tuple[Case, ...]

    def write(self, path: str | os.PathLike) -> None:
        """Write the job as JSON."""
        atomic_write_text(path, json.dumps({"cfg": self.cfg.to_dict(), "cases": [c.to_json() for c in self.cases]}))

    @classmethod
    def read(cls, path: str | os.PathLike) -> Job:
        """Read a job written by :meth:`write`."""
        d = json.loads(Path(path).read_text())
        return cls(HwConfig.from_dict(d["cfg"], origin=str(path)), tuple(Case.from_json(c) for c in d["cases"]))


@dataclass
class CaseReport:
    """What one case did on the RTL: status, results, cycles, wall time and the checker's verdict."""

    name: str
    words: int
    commands: int
    cycles: int                     # clock cycles from the end of reset until the tile stopped (or gave up)
    sim_cycles: int                 # all cycles simulated for the case, including reset and drain
    wall_s: float                   # wall-clock seconds spent simulating the case
    status: tuple[str, str, int]
    expected_status: tuple[str, str, int]
    results: int
    expected_results: int
    mismatches: int
    details: list[dict] = field(default_factory=list)
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """Whether the case matched sw_model exactly."""
        return self.mismatches == 0

    def __repr__(self) -> str:
        return (f"CaseReport({self.name!r}, cycles={self.cycles}, status={self.status}, "
                f"mismatches={self.mismatches}{', timed_out' if self.timed_out else ''})")

    @classmethod
    def from_json(cls, d: dict) -> CaseReport:
        d = dict(d)
        d["status"] = tuple(d["status"])
        d["expected_status"] = tuple(d["expected_status"])
        return cls(**d)


@dataclass
class JobReport:
    """All case reports of one simulator run, plus the simulator's name and the process wall time."""

    simulator: str
    cases: list[CaseReport]
    wall_s: float = 0.0             # the whole simulator process, start-up included (set by the host)
    build_s: float = 0.0            # the build this run used (0 when reused from the cache)
    wave_file: str | None = None

    @property
    def mismatches(self) -> int:
        """Total mismatches over every case."""
        return sum(c.mismatches for c in self.cases)

    @property
    def cycles(self) -> int:
        return sum(c.cycles for c in self.cases)

    @property
    def sim_cycles(self) -> int:
        return sum(c.sim_cycles for c in self.cases)

    @property
    def cycles_per_s(self) -> float:
        """Simulated clock cycles per wall-clock second inside the simulator (start-up excluded)."""
        wall = sum(c.wall_s for c in self.cases)
        return self.sim_cycles / wall if wall > 0 else 0.0

    def by_name(self) -> dict[str, CaseReport]:
        return {c.name: c for c in self.cases}

    def __repr__(self) -> str:
        return (f"JobReport({self.simulator!r}, cases={len(self.cases)}, cycles={self.cycles}, "
                f"mismatches={self.mismatches})")

    def to_json(self) -> dict:
        return {"simulator": self.simulator, "wall_s": self.wall_s, "build_s": self.build_s,
                "cycles": self.cycles, "sim_cycles": self.sim_cycles, "cycles_per_s": self.cycles_per_s,
                "mismatches": self.mismatches, "wave_file": self.wave_file,
                "cases": [asdict(c) for c in self.cases]}


def write_case_reports(path: str | os.PathLike, reports: Sequence[CaseReport]) -> None:
    """Write the simulator side's case reports (used by the cocotb test)."""
    atomic_write_text(path, json.dumps([asdict(r) for r in reports]))


def read_case_reports(path: str | os.PathLike) -> list[CaseReport]:
    """Read what :func:`write_case_reports` wrote."""
    return [CaseReport.from_json(d) for d in json.loads(Path(path).read_text())]
