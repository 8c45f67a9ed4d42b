"""Chip placement: the logical arrays of a :class:`~compiler.place.Placement` onto the physical arrays of a chip.

A placement strategy numbers its arrays ``0..n-1`` (logical arrays; the schedule's ``Activation.array``). A chip
(:class:`cimisa.chip.ChipParams`) groups ``hw.n_arrays`` physical arrays into tiles of ``arrays_per_tile`` tiers
that share one periphery: at most ``mvms_per_tile`` arrays of a tile run an MVM at once. :func:`map_to_chip`
returns a :class:`ChipMap` (logical -> physical array, and the weight-reload epochs):

* **spread**: the arrays of one stage (one matmul's R, L or W activations, which fire together) go to different
  tiles, so the shared periphery serialises as little as possible. Arrays are ranked (by logical index, or by
  the first stage they serve: whichever serialises less, see :func:`serialisation`) and rank ``r`` goes to tier
  ``r // T`` of the ``r % T``-th tile (``T`` tiles): any ``m`` consecutive ranks put at most ``ceil(m / T)``
  arrays on one tile;
* **close**: tiles are taken in network order (a snake through the rows of a ``mesh``, ``tile = row * cols +
  col``; the natural order on a ``ring``), so consecutive stages, whose data flow into each other, sit on
  neighbouring tiles. The order costs nothing: the spread is the same;
* **fit**: a placement needing more arrays than the chip has is a :class:`~compiler.place.PlacementError`,
  or, with ``weight_reload``, runs in *epochs*: runs of whole matmuls in model order whose arrays fit, each
  epoch's weights programmed before it runs. Matmuls that share an array (``auto`` packs several on one
  array) stay in one epoch. ``reload_rows[e]`` counts the array rows programmed before epoch ``e`` (0 for the
  first): on every physical array epoch ``e`` uses, the rows holding its weights or stale weights of the
  previous occupant, which must be cleared (a SparseMap array relies on zero padding); ``wrap_rows`` is the
  same count for programming epoch 0 again after the last (the next token).

The chip comes from a budget (:func:`compiler.budget.size_chip`: ``fixed``, ``need``, ``iso-adc``,
``iso-area``). :meth:`ChipMap.identity` is the flat machine of before: logical == physical, one epoch.
Everything is vectorised with numpy (a million arrays map in seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cimisa.config import HwConfig
from compiler.budget import Sizing, size_chip, whole_tiles
from compiler.place import Placement, PlacementError

__all__ = ["ChipMap", "map_to_chip", "chip_map", "is_flat", "identity", "network_order", "serialisation",
           "ArrayFacts"]

_FACTOR_ORDER = {"W": 0, "R": 1, "L": 2}


@dataclass(frozen=True, eq=False)
class ChipMap:
    """Where each logical array of a placement sits on the chip ``hw``, and the weight-reload epochs.

    ``physical[a]`` is the physical array (``0..hw.n_arrays-1``) of logical array ``a``; within an epoch no two
    logical arrays share one. ``epochs[e]`` lists the matmul indices resident together (in model order);
    ``reload_rows[e]`` the array rows programmed before epoch ``e`` (0 for the first); ``wrap_rows`` those
    programmed to bring back epoch 0 after the last (0 with one epoch). ``budget`` names the sizing rule and
    ``sizing`` (None for :meth:`identity`) its details.
    """

    hw: HwConfig
    physical: tuple[int, ...] = field(repr=False)
    epochs: tuple[tuple[int, ...], ...] = field(repr=False)
    reload_rows: tuple[int, ...]
    budget: str = "fixed"
    wrap_rows: int = 0
    sizing: Sizing | None = field(default=None, repr=False)

    @classmethod
    def identity(cls, placement: Placement, hw: HwConfig) -> ChipMap:
        """The flat machine: logical == physical, one epoch. A placement needing more arrays than ``hw`` has
        gets ``hw`` grown to whole tiles holding them (the kit's machine before the chip had as many arrays as a
        strategy needed)."""
        n = placement.n_arrays
        if n > hw.n_arrays:
            hw = hw.replace(n_arrays=whole_tiles(n, hw))
        return cls(hw=hw, physical=tuple(range(n)), epochs=(tuple(range(len(placement.matmuls))),),
                   reload_rows=(0,), budget="fixed")

    def tile_of(self, array: int) -> int:
        """The tile of logical array ``array``."""
        return self.hw.chip.tile_of(self.physical[array])

    def tiles_of(self) -> np.ndarray:
        """The tile of every logical array (int64 vector)."""
        return np.asarray(self.physical, dtype=np.int64) // self.hw.chip.arrays_per_tile

    def epoch_of_matmul(self) -> dict[int, int]:
        """Matmul index -> its epoch."""
        return {m: e for e, ms in enumerate(self.epochs) for m in ms}

    def violations(self, placement: Placement) -> list[str]:
        """Return every rule this map breaks for ``placement`` (empty when valid): one physical array per
        logical array, in range, no two logical arrays of one epoch on the same physical array, every matmul in
        exactly one epoch in model order, one reload count per epoch (0 for the first)."""
        out: list[str] = []
        n, cap = placement.n_arrays, self.hw.n_arrays
        phys = np.asarray(self.physical, dtype=np.int64)
        if len(phys) != n:
            return [f"{len(phys)} physical arrays for {n} logical arrays"]
        if n and (phys.min() < 0 or phys.max() >= cap):
            out.append(f"physical arrays outside 0..{cap - 1}")
        flat = [m for e in self.epochs for m in e]
        if flat != list(range(len(placement.matmuls))):
            out.append("the epochs do not list every matmul once, in model order")
        if len(self.reload_rows) != len(self.epochs) or (self.reload_rows and self.reload_rows[0] != 0):
            out.append("reload_rows needs one count per epoch, 0 for the first")
        epoch = np.full(len(placement.matmuls), -1, dtype=np.int64)
        for e, ms in enumerate(self.epochs):
            epoch[[m for m in ms if 0 <= m < len(epoch)]] = e
        facts = ArrayFacts.of(placement)
        used = facts.hi_matmul >= 0
        if flat == list(range(len(placement.matmuls))):
            lo_e, hi_e = epoch[facts.lo_matmul[used]], epoch[facts.hi_matmul[used]]
            if np.any(lo_e != hi_e):
                out.append("an array holds matmuls of two epochs")
            key = lo_e * max(cap, 1) + phys[used]
            if len(np.unique(key)) != len(key):
                out.append("two logical arrays of one epoch share a physical array")
        return out

    def to_dict(self) -> dict:
        """The ``chip`` object of ``report.json``: the chip's size, the budget and the epochs."""
        hw = self.hw
        used = len(set(self.physical))
        s = self.sizing.to_dict() if self.sizing is not None else {"budget": self.budget, "reference": None}
        return {**s, "tiles": hw.n_tiles, "arrays_per_tile": hw.chip.arrays_per_tile,
                "mvms_per_tile": hw.chip.mvms_per_tile, "arrays": hw.n_arrays, "arrays_used": used,
                "tiles_used": len(set(int(p) // hw.chip.arrays_per_tile for p in set(self.physical))),
                "adcs_per_array": hw.adcs_per_array, "adcs_total": hw.total_adcs, "topology": hw.chip.topology,
                "epochs": len(self.epochs), "reload_rows": list(self.reload_rows), "wrap_rows": self.wrap_rows}


def identity(placement: Placement, hw: HwConfig) -> ChipMap:
    """:meth:`ChipMap.identity`."""
    return ChipMap.identity(placement, hw)


@dataclass(frozen=True)
class ArrayFacts:
    """Per logical array of a placement (numpy vectors, index = logical array): the first stage it serves
    (``matmul * 3 + factor``, W 0, R 1, L 2), its first and last matmul, the array rows its weights reach; and
    the distinct ``(stage, array)`` pairs (``pair_stage``, ``pair_array``)."""

    first_stage: np.ndarray
    lo_matmul: np.ndarray
    hi_matmul: np.ndarray
    rows_used: np.ndarray
    pair_stage: np.ndarray
    pair_array: np.ndarray

    @classmethod
    def of(cls, placement: Placement) -> ArrayFacts:
        tiles, n = placement.tiles, placement.n_arrays
        arr = np.fromiter((t.array for t in tiles), dtype=np.int64, count=len(tiles))
        mat = np.fromiter((t.matmul for t in tiles), dtype=np.int64, count=len(tiles))
        fac = np.fromiter((_FACTOR_ORDER[t.factor] for t in tiles), dtype=np.int64, count=len(tiles))
        end = np.fromiter((t.row_end for t in tiles), dtype=np.int64, count=len(tiles))
        stage = mat * 3 + fac
        big = np.iinfo(np.int64).max
        first = np.full(n, big, dtype=np.int64)
        lo = np.full(n, big, dtype=np.int64)
        hi = np.full(n, -1, dtype=np.int64)
        rows = np.zeros(n, dtype=np.int64)
        np.minimum.at(first, arr, stage)
        np.minimum.at(lo, arr, mat)
        np.maximum.at(hi, arr, mat)
        np.maximum.at(rows, arr, end)
        empty = hi < 0                       # an array a budget left unused
        first[empty], lo[empty], hi[empty] = big, -1, -1
        pairs = np.unique(stage * max(n, 1) + arr)
        return cls(first, lo, hi, rows, pairs // max(n, 1), pairs % max(n, 1))


def network_order(hw: HwConfig) -> np.ndarray:
    """The tiles of ``hw`` in network order: a snake through the rows of a ``mesh`` (each tile next to the one
    before it), else ``0..T-1``."""
    t = hw.n_tiles
    if hw.chip.topology != "mesh" or t <= 1:
        return np.arange(t, dtype=np.int64)
    rows, cols = hw.chip.grid(hw.n_arrays)
    grid = np.arange(rows * cols, dtype=np.int64).reshape(rows, cols)
    grid[1::2] = grid[1::2, ::-1]
    order = grid.ravel()
    return order[order < t]


def _stripe(ranked: np.ndarray, hw: HwConfig, order: np.ndarray, n: int) -> np.ndarray:
    """Physical array of each logical array in ``ranked`` (rank ``r``: tier ``r // T`` of tile ``order[r % T]``)
    as a length-``n`` vector (-1 for arrays not in ``ranked``)."""
    t, apt = len(order), hw.chip.arrays_per_tile
    r = np.arange(len(ranked), dtype=np.int64)
    out = np.full(n, -1, dtype=np.int64)
    out[ranked] = order[r % t] * apt + r // t
    return out


def serialisation(facts: ArrayFacts, physical: np.ndarray, hw: HwConfig, arrays: np.ndarray | None = None) -> int:
    """Sum over stages of the MVM rounds its busiest tile needs (``ceil(arrays of the stage on that tile /
    mvms_per_tile)``): the periphery's serialisation of a mapping (lower is better; one per stage when every
    stage's arrays sit on distinct tiles). ``arrays`` restricts it to those logical arrays."""
    ps, pa = facts.pair_stage, facts.pair_array
    if arrays is not None:
        keep = np.zeros(len(physical), dtype=bool)
        keep[arrays] = True
        sel = keep[pa]
        ps, pa = ps[sel], pa[sel]
    if len(ps) == 0:
        return 0
    tiles = physical[pa] // hw.chip.arrays_per_tile
    keys, counts = np.unique(ps * max(hw.n_tiles, 1) + tiles, return_counts=True)
    stage = keys // max(hw.n_tiles, 1)
    starts = np.flatnonzero(np.r_[True, stage[1:] != stage[:-1]])
    worst = np.maximum.reduceat(counts, starts)
    return int((-(-worst // hw.chip.mvms_per_tile)).sum())


def _assign(facts: ArrayFacts, arrays: np.ndarray, hw: HwConfig, order: np.ndarray) -> np.ndarray:
    """Physical arrays for logical ``arrays`` (sorted): the better of the two rankings (ties: logical order)."""
    n = len(facts.first_stage)
    by_index = _stripe(arrays, hw, order, n)
    by_stage = _stripe(arrays[np.argsort(facts.first_stage[arrays], kind="stable")], hw, order, n)
    if np.array_equal(by_index, by_stage):
        return by_index
    a, b = serialisation(facts, by_index, hw, arrays), serialisation(facts, by_stage, hw, arrays)
    return by_stage if b < a else by_index


def map_to_chip(placement: Placement, hw: HwConfig, *, budget: str = "fixed", reference=None,
                weight_reload: bool = False) -> ChipMap:
    """Map ``placement`` onto the chip ``budget`` gives it on ``hw`` (see the module docstring).

    ``reference`` (iso budgets): the strategy (name or placement) whose chip to equal, default ``linear``.
    """
    sizing = size_chip(placement, hw, budget, reference)
    cfg = sizing.hw
    facts = ArrayFacts.of(placement)
    order = network_order(cfg)
    n, cap = placement.n_arrays, cfg.n_arrays
    matmuls = len(placement.matmuls)
    if n <= cap:
        phys = _assign(facts, np.arange(n, dtype=np.int64), cfg, order)
        return ChipMap(hw=cfg, physical=tuple(phys.tolist()), epochs=(tuple(range(matmuls)),), reload_rows=(0,),
                       budget=sizing.budget, sizing=sizing)
    if not weight_reload:
        raise PlacementError(
            f"{placement.strategy} needs {n} arrays but the chip {cfg.name} has {cap} ({cfg.n_tiles} tiles of "
            f"{cfg.chip.arrays_per_tile}); use a bigger chip (--chip/--hw, or --budget need) or --weight-reload")
    epochs, members = _epochs(facts, placement, cfg)
    phys = np.full(n, -1, dtype=np.int64)
    for arrays in members:
        phys[arrays] = _assign(facts, arrays, cfg, order)[arrays]
    reload, wrap = _reload_rows(facts, phys, members, cap)
    return ChipMap(hw=cfg, physical=tuple(phys.tolist()), epochs=epochs, reload_rows=reload, budget=sizing.budget,
                   wrap_rows=wrap, sizing=sizing)


def _epochs(facts: ArrayFacts, placement: Placement, hw: HwConfig) -> tuple[tuple[tuple[int, ...], ...],
                                                                             list[np.ndarray]]:
    """Split the matmuls, in model order, into epochs whose arrays fit ``hw``; return the epochs and each
    epoch's logical arrays. Matmuls sharing an array form one unit that is never split."""
    m, cap = len(placement.matmuls), hw.n_arrays
    used = facts.hi_matmul >= 0
    lo, hi = facts.lo_matmul[used], facts.hi_matmul[used]
    # boundary after matmul i is forbidden when an array spans i and i+1 (lo <= i < hi)
    span = np.cumsum(np.bincount(lo, minlength=m + 1)[:m] - np.bincount(hi, minlength=m + 1)[:m])
    unit_of = np.r_[0, np.cumsum(span[:-1] == 0)] if m else np.zeros(0, dtype=np.int64)
    array_unit = np.full(len(facts.lo_matmul), -1, dtype=np.int64)
    array_unit[used] = unit_of[lo]
    sizes = np.bincount(array_unit[used], minlength=int(unit_of[-1]) + 1 if m else 0)
    epochs: list[list[int]] = []
    units: list[list[int]] = []
    fill = cap + 1
    for u, size in enumerate(sizes.tolist()):
        ms = np.flatnonzero(unit_of == u)
        if size > cap:
            names = f"matmul {ms[0]}" if len(ms) == 1 else f"matmuls {ms[0]}..{ms[-1]} (they share arrays)"
            raise PlacementError(f"{names} of the {placement.strategy} placement need {size} arrays, more than the "
                                 f"{cap} of the chip {hw.name}: weight reload cannot split them; use a bigger chip"
                                 + (" or another strategy" if len(ms) > 1 else ""))
        if fill + size > cap:
            epochs.append([])
            units.append([])
            fill = 0
        epochs[-1] += ms.tolist()
        units[-1].append(u)
        fill += size
    members = [np.flatnonzero(np.isin(array_unit, us)) for us in units]
    return tuple(tuple(e) for e in epochs), members


def _reload_rows(facts: ArrayFacts, phys: np.ndarray, members: list[np.ndarray], cap: int) -> tuple[
        tuple[int, ...], int]:
    """Rows programmed before each epoch (0 for the first) and to bring back epoch 0 after the last: on each
    physical array an epoch uses, ``max(rows of its new weights, rows of the weights there before)``."""
    held = np.zeros(cap, dtype=np.int64)          # rows of the weights on each physical array
    owner = np.full(cap, -1, dtype=np.int64)      # the logical array whose weights they are
    out = []
    for e, arrays in enumerate(members + members[:1]):
        p, new = phys[arrays], facts.rows_used[arrays]
        rows = np.where(owner[p] == arrays, 0, np.maximum(new, held[p]))
        out.append(0 if e == 0 else int(rows.sum()))
        held[p], owner[p] = new, arrays
    return tuple(out[:len(members)]), (out[-1] if len(members) > 1 else 0)


def is_flat(hw: HwConfig) -> bool:
    """Whether ``hw`` is the flat machine of before the chip: one array per tile on the ``ideal`` network."""
    return hw.chip.arrays_per_tile == 1 and hw.chip.topology == "ideal"


def chip_map(placement: Placement, hw: HwConfig, *, budget: str = "fixed", reference=None,
             weight_reload: bool = False) -> ChipMap:
    """The map ``mapper build`` uses: :meth:`ChipMap.identity` on a flat machine with the ``fixed`` budget and
    no weight reload (as before the chip: as many arrays as the strategy needs), else :func:`map_to_chip`."""
    if is_flat(hw) and budget == "fixed" and not weight_reload:
        return ChipMap.identity(placement, hw)
    return map_to_chip(placement, hw, budget=budget, reference=reference, weight_reload=weight_reload)
