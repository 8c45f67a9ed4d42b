"""The golden model's expectations for a co-simulation job: one :class:`~sim.job.Case` per stream.

:func:`make_cases` runs sw_model (the reference) on the streams of a job, in job order, with the memory contents
chaining from case to case as they do on the RTL (reset clears control state, not RAMs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sw_model
from cimisa.config import HwConfig
from sim.job import Case

__all__ = ["MachineFactory", "make_cases", "make_case"]

#: Builds the reference machine for a configuration: sw_model's :class:`~sw_model.Machine` (a test may pass a
#: deliberately wrong subclass to prove that the checker fails).
MachineFactory = Callable[[HwConfig], "sw_model.Machine"]


def make_cases(cfg: HwConfig, streams: Sequence, *, machine: MachineFactory = sw_model.Machine, gap: float = 0.0,
               backpressure: float = 0.0, seed: int = 0) -> list[Case]:
    """Return one :class:`Case` per stream, with the results and status sw_model computes, in job order.

    ``streams`` holds ``(name, words)`` or ``(name, words, options)`` items; ``options`` override ``gap``,
    ``backpressure``, ``seed`` and ``max_cycles`` per case.

    The cases of a job run one after another on one tile, reset in between. Reset clears the tile's control
    state but not its memories (weights, input and output buffers are RAMs, zero only at power-up), so each
    case's reference machine starts from the memory contents the previous case left, with a fresh status.
    """
    cases: list[Case] = []
    state = None
    for k, item in enumerate(streams):
        name, words, opts = (tuple(item) + ({},))[:3]
        words = tuple(int(w) for w in words)
        m = machine(cfg)
        if state is not None:
            state.results = []
            m.state = state
        try:
            m.run_words(words)
        except sw_model.CimError:
            pass
        res = m.result()
        state = m.state
        o = {"gap": gap, "backpressure": backpressure, "seed": seed + k, "max_cycles": 0, **opts}
        cases.append(Case(name=name, words=words, expected_results=tuple(int(v) for v in res.results),
                          expected_status=res.status_tuple(), commands=int(res.commands), **o))
    return cases


def make_case(cfg: HwConfig, name: str, words: Sequence[int], **kw) -> Case:
    """Return a single :class:`Case` (the first of a job) for ``words``; see :func:`make_cases`."""
    return make_cases(cfg, [(name, words)], **kw)[0]

