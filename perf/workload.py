"""The simulator's workload: the per-token steps of every phase, from the analytic model's phases.

:func:`steps` turns :func:`compiler.phases.phases` (one implementation of the per-phase work) into the chain of
:class:`Step` s one token goes through: stage 1 on its tiles -> REQUANT on a digital unit -> shuffle to the
stage-2 tiles -> stage 2 -> transfer to the next phase -> attention (attention unit + KV-cache read) / add+norm /
activation on a digital unit. A tile's stage work is the makespan of its arrays' per-token work on the tile's
``mvms_per_tile`` ports (longest first), during which the tile is held.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from cimisa.config import HwConfig
from compiler.phases import ACT_KEYS, ModelDims, Phase, digital_ops

__all__ = ["Step", "steps", "tile_spans", "STEP_KINDS"]

#: Kinds of steps, in chain order; ``kind`` of the trace intervals and of the critical path.
STEP_KINDS = ("stage1", "requant", "shuffle", "stage2", "comm", "attention", "add_norm", "activation", "reload")


@dataclass(frozen=True, eq=False)
class Step:
    """One step of a token's chain: ``res`` is ``tile`` (``units``/``spans``: tiles and their busy time),
    ``link`` (source tiles' injection links), ``digital``, ``attention``, ``bus`` or ``delay``; ``energy``:
    component -> nJ per token (attention's is computed per context)."""

    kind: str
    res: str
    dur: float
    phase: int
    layer: str
    energy: dict
    units: np.ndarray | None = None
    spans: np.ndarray | None = None
    roles: frozenset = frozenset()
    barrier: bool = False
    causal: bool = False
    epoch: int = 0
    busy: float = 0.0


def tile_spans(tiles: np.ndarray, busy: np.ndarray, ports: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tiles, makespan)``: each tile's arrays' work on ``ports`` ports, longest first (exact when the arrays
    fit the ports: the longest one)."""
    ut, inv = np.unique(tiles, return_inverse=True)
    count = np.bincount(inv, minlength=len(ut))
    span = np.zeros(len(ut))
    np.maximum.at(span, inv, busy)
    for j in np.flatnonzero(count > ports):
        loads = [0.0] * ports
        for b in sorted(busy[inv == j].tolist(), reverse=True):
            heapq.heapreplace(loads, loads[0] + b)
        span[j] = max(loads)
    return ut, span


def steps(ps: list[Phase], hw: HwConfig, dims: ModelDims, tiles: np.ndarray) -> list[Step]:
    """The chain of steps of one token through the phases ``ps`` (``tiles``: tile of every logical array).

    The phase's analog energy is booked on its first stage step, the REQUANT and buffer energy on REQUANT.
    """
    ch = hw.chip
    net = "delay" if ch.topology == "ideal" else "bus" if ch.topology == "bus" else "link"
    out: list[Step] = []
    for ph in ps:
        base = dict(phase=ph.index, layer=f"{ph.stage}.{ph.layer}", epoch=ph.epoch)
        stage_tiles = [None, None]
        act_energy = {k: ph.energy[k] for k in ACT_KEYS}
        for si in (0, 1):
            a = ph.arrays[si]
            if len(a):
                ut, sp = tile_spans(tiles[a], ph.busy[si], ch.mvms_per_tile)
                stage_tiles[si] = ut
                out.append(Step(f"stage{si + 1}", "tile", float(sp.max()), units=ut, spans=sp, energy=act_energy,
                                busy=float(ph.busy[si].sum()), **base))
                act_energy = {}
            if si == 0:
                out.append(Step("requant", "digital", ph.rq_ns, energy={"requant_buffer": ph.energy["requant_buffer"]},
                                **base))
                if ph.shuffle[0] > 0:
                    out.append(_net("shuffle", net, ph.shuffle, stage_tiles[0], base))
        src = stage_tiles[1] if stage_tiles[1] is not None else stage_tiles[0]
        if ph.comm[0] > 0:
            out.append(_net("comm", net, ph.comm, src, base))
        for kind, (t, e) in digital_ops(dims, ph.roles, 1.0, hw).items():
            if kind == "attention":
                out.append(Step("attention", "attention", t, energy={}, roles=ph.roles, causal=ph.causal,
                                barrier=ph.barrier, **base))
            else:
                out.append(Step(kind, "digital", t, energy={"digital": e}, **base))
    return out


def _net(kind: str, net: str, cost: tuple, src, base: dict) -> Step:
    """A transfer step: a delay (ideal), the bus, or the source tiles' injection links."""
    units = src if net == "link" and src is not None else None
    res = "delay" if net == "link" and src is None else net
    return Step(kind, res, cost[0], energy={"network": cost[1]}, units=units,
                spans=None if units is None else np.full(len(units), cost[0]), **base)
