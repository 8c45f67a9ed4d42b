"""The scoreboard: compares what the RTL produced with what sw_model expects, counting every mismatch.

Plain Python (no cocotb), so it is also used and tested outside the simulator. Each mismatch is logged as
``Expected/Actual`` (like cocotb's example checkers) and kept, up to ``keep`` of them, for the run report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Mismatch", "Checker"]


@dataclass(frozen=True)
class Mismatch:
    """One difference: ``what`` (``"result[i]"`` or ``"status.<field>"``), expected and actual values."""

    what: str
    expected: object
    actual: object

    def __str__(self) -> str:
        return f"{self.what}: Expected {self.expected!r}, Actual {self.actual!r}"

    def to_json(self) -> dict:
        return {"what": self.what, "expected": self.expected, "actual": self.actual}


@dataclass
class Checker:
    """Counts mismatches between expected and actual result words and status; logs each one.

    ``keep`` bounds the mismatches stored (all are counted); ``log_limit`` bounds the ones logged.
    """

    name: str = "checker"
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("sim.checker"))
    keep: int = 50
    log_limit: int = 20
    mismatches: int = 0
    checked: int = 0
    details: list[Mismatch] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Checker({self.name!r}, checked={self.checked}, mismatches={self.mismatches})"

    def _report(self, m: Mismatch) -> None:
        self.mismatches += 1
        if len(self.details) < self.keep:
            self.details.append(m)
        if self.mismatches <= self.log_limit:
            self.log.error("%s: mismatch %s", self.name, m)
        elif self.mismatches == self.log_limit + 1:
            self.log.error("%s: further mismatches counted but not logged", self.name)

    def compare(self, what: str, expected, actual) -> bool:
        """Compare one value; return whether it matched."""
        self.checked += 1
        if expected != actual:
            self._report(Mismatch(what, expected, actual))
            return False
        return True

    def compare_results(self, expected: Sequence[int], actual: Sequence[int]) -> int:
        """Compare result word sequences element by element (missing or extra words count); return mismatches."""
        before = self.mismatches
        for i in range(max(len(expected), len(actual))):
            e = int(expected[i]) if i < len(expected) else None
            a = actual[i] if i < len(actual) else None
            a = int(a) if isinstance(a, int) or hasattr(a, "__index__") else a     # e.g. "X:..." stays text
            self.compare(f"result[{i}]", e, a)
        if len(expected) != len(actual):
            self.log.error("%s: %d result words expected, %d received", self.name, len(expected), len(actual))
        return self.mismatches - before

    def compare_status(self, expected: Sequence, actual: Sequence) -> int:
        """Compare ``(state, error, index)`` tuples field by field; return mismatches."""
        before = self.mismatches
        for name, e, a in zip(("state", "error", "index"), expected, actual):
            self.compare(f"status.{name}", e, a)
        return self.mismatches - before

    @property
    def passed(self) -> bool:
        """Whether nothing mismatched."""
        return self.mismatches == 0
