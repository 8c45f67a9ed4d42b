"""The seeded test input vectors of a compiled model's command stream, in one place.

``mapper build`` writes ``commands.bin`` with these inputs (:data:`STREAM_SEED`), and ``python -m sim run
--model M`` co-simulates the stream of the same function, so that the same model, configuration, strategy,
nblocks and seed give the same words everywhere.

One vector is drawn per input group (matmuls that read the same activations, such as the query, key and value
projections of a layer, share it), in placement order, uniformly over the command set's input range. Programs
that fire together (``depends_on``) therefore always get the input of the program they depend on.
"""

from __future__ import annotations

import numpy as np

__all__ = ["STREAM_SEED", "stream_inputs"]

#: Default seed of the test inputs (``mapper build`` and ``python -m sim run``).
STREAM_SEED = 1234


def stream_inputs(compiled, seed: int = STREAM_SEED) -> dict[str, np.ndarray]:
    """Return ``{matmul name: int64 vector}`` for :meth:`~compiler.program.CompiledModel.full_stream`.

    ``compiled`` is a :class:`~compiler.program.CompiledModel`; ``seed`` is a non-negative integer.
    """
    from cimisa.isa import Isa  # noqa: PLC0415
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    rng = np.random.default_rng(int(seed))
    lo, hi = Isa.of(compiled.hw).elem_range("input")
    by_group: dict[tuple, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for g in compiled.placement.matmuls:
        key = (g.input_group, g.stage, g.layer)
        if key not in by_group:
            by_group[key] = rng.integers(lo, hi + 1, size=g.in_features)
        out[g.name] = by_group[key]
    for name, p in compiled.programs.items():       # co-located programs read their dependency's input
        if p.depends_on and p.depends_on[0] in out:
            out[name] = out[p.depends_on[0]]
    return out
