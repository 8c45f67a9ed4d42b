"""The one checker: what a run produced against what the golden model expects, as a typed verdict.

Every tier compares with :func:`check` (or :func:`check_runs` for two run objects): the golden model's naive
and vectorised implementations (``tests/test_sw_model.py``), the Amaranth simulation against sw_model
(:mod:`hw.pysim`), and co-simulation (:mod:`sim.checker`, used by the cocotb testbench and the fast Verilator
harness). It lives in :mod:`cimisa` so that none of them imports another tier.

Result words are compared index by index over the longer of the two sequences (a missing or extra word is a
mismatch whose other side is ``None``); the final ``(state, error, index)`` status field by field; cycles
only when an expected count is given. Each difference is one :class:`Mismatch`, printed one way:
``result[3]: Expected 5, Actual 6``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Mismatch", "Verdict", "check", "check_runs", "STATUS_FIELDS"]

#: The fields of a status tuple, in order.
STATUS_FIELDS = ("state", "error", "index")


@dataclass(frozen=True)
class Mismatch:
    """One difference: ``field`` (``"result"``, ``"status.<name>"`` or ``"cycles"``), the result word's
    ``index`` (None for the others), the expected and the actual value (None where one side has no word)."""

    field: str
    index: int | None
    expected: object
    actual: object

    @property
    def what(self) -> str:
        """``"result[i]"`` for a result word, else the field's name."""
        return self.field if self.index is None else f"{self.field}[{self.index}]"

    def __str__(self) -> str:
        return f"{self.what}: Expected {self.expected!r}, Actual {self.actual!r}"

    def to_json(self) -> dict:
        """The form co-simulation reports keep: ``{"what", "expected", "actual"}``."""
        return {"what": self.what, "expected": self.expected, "actual": self.actual}


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison: every mismatch in order (results, then status, then cycles), how many
    values were compared, the two result counts, and whether the status tuples are equal."""

    mismatches: tuple[Mismatch, ...]
    checked: int
    expected_results: int
    actual_results: int
    status_equal: bool
    name: str = ""

    @property
    def ok(self) -> bool:
        """Whether nothing mismatched."""
        return not self.mismatches

    @property
    def count(self) -> int:
        """Number of mismatches."""
        return len(self.mismatches)

    def lines(self, limit: int | None = None) -> list[str]:
        """The mismatches as text (the first ``limit`` when given), each prefixed by the name if there is one."""
        shown = self.mismatches if limit is None else self.mismatches[:limit]
        prefix = f"{self.name}: " if self.name else ""
        return [f"{prefix}{m}" for m in shown]

    def __str__(self) -> str:
        head = f"{self.name}: " if self.name else ""
        if self.ok:
            return f"{head}{self.checked} values match"
        return "\n".join([f"{head}{self.count} mismatches of {self.checked} values "
                          f"({self.expected_results} result words expected, {self.actual_results} received)",
                          *self.lines(20)])


def _word(v):
    """An integer result word as ``int``; anything else (e.g. a simulator's ``"X:..."`` text) as it is."""
    if v is None:
        return None
    return int(v) if isinstance(v, int) or hasattr(v, "__index__") else v


def check(expected_results: Sequence, expected_status: Sequence, actual_results: Sequence,
          actual_status: Sequence, *, expected_cycles: int | None = None, actual_cycles: int | None = None,
          name: str = "") -> Verdict:
    """Compare a run's result words and status (and, with ``expected_cycles``, cycles) with the golden model's.

    Results are compared index by index over the longer sequence; status ``(state, error, index)`` field by
    field. Returns a :class:`Verdict`.
    """
    exp = [_word(v) for v in expected_results]
    act = [_word(v) for v in actual_results]
    out: list[Mismatch] = []
    if exp != act:
        for i in range(max(len(exp), len(act))):
            e = exp[i] if i < len(exp) else None
            a = act[i] if i < len(act) else None
            if e != a:
                out.append(Mismatch("result", i, e, a))
    checked = max(len(exp), len(act))
    es, as_ = tuple(expected_status), tuple(actual_status)
    for fname, e, a in zip(STATUS_FIELDS, es, as_):
        checked += 1
        if e != a:
            out.append(Mismatch(f"status.{fname}", None, e, a))
    if expected_cycles is not None:
        checked += 1
        if expected_cycles != actual_cycles:
            out.append(Mismatch("cycles", None, expected_cycles, actual_cycles))
    return Verdict(tuple(out), checked, len(exp), len(act), es == as_, name)


def check_runs(expected, actual, *, expected_cycles: int | None = None, name: str = "") -> Verdict:
    """:func:`check` on two run objects with ``results`` and ``status_tuple()`` (sw_model's ``RunResult``,
    :class:`hw.pysim.TileRun`); ``actual.cycles`` is compared when ``expected_cycles`` is given."""
    cycles = getattr(actual, "cycles", None) if expected_cycles is not None else None
    return check(_seq(expected.results), expected.status_tuple(), _seq(actual.results), actual.status_tuple(),
                 expected_cycles=expected_cycles, actual_cycles=cycles, name=name)


def _seq(results) -> list:
    return results.tolist() if hasattr(results, "tolist") else list(results)
