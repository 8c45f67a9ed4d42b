"""Scheduler: per-array timestamped activations from a placement, correct by construction.

An :class:`Activation` is one MVM: one array, a window of rows (driven together, one input vector) and a window
of columns (each converted by one of the array's ``adcs_per_array`` ADCs, so a window of ``n`` columns takes
``ceil(n / adcs)`` conversion rounds per input bit). Rules:

* a group of tiles (:class:`~compiler.place.Placement`) is one activation, or ``row_steps`` activations over row
  chunks (DenseMap's timestamps t0..t3), later chunks accumulating;
* row pieces of a block that was cut at the shelf height or the array size accumulate into the same outputs:
  the pieces with ``r0 = 0`` are scheduled first (overwriting), the others accumulate;
* the ADC resolution follows from the number of rows that can add into one column in that activation
  (``rows_per_col``: 256 for a Linear tile, one block's 32 rows for SparseMap, 8 rows per DenseMap chunk) and
  the number format (:mod:`cimisa.formats`: what one column sum can be, unsigned or signed):

  - ``adc_mode="paper"``: ``bits = ceil(log2(rows_per_col))`` (the paper's rule: 8 b, 5 b, 3 b), with the ADC
    step ``2**adc_shift`` the smallest that spans the column-sum range of ``rows_per_col`` rows but its top
    value (in the default format ``adc_shift = lossless_bits - bits``; with unsigned 1-bit sums only "every row
    on every set cell" saturates);
  - ``adc_mode="exact"``: ``bits = min(cfg.adc_bits, lossless_bits(rows_per_col))``, exact whenever the
    configuration's ADCs allow (``cfg.lossless()``);
  - ``adc_mode="accuracy"``: starts from the ``exact`` setting (the per-MVM bits are lowered afterwards on
    calibration inputs, in :mod:`mapper`);

  (``lossless_bits`` is :meth:`cimisa.formats.NumberFormat.lossless_adc_bits`; the modes are
  :class:`compiler.kinds.AdcMode`);

* order: matmuls in model order, each R stage (stage 1), then L (stage 2); on each array, activations run in
  this order (timestamp ``t`` = position on the array); arrays run in parallel. Dependencies (R stage ->
  REQUANT -> L stage, matmul after matmul) are the cost model's (:mod:`compiler.cost`) and the program's
  barriers (:mod:`compiler.program`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cimisa.config import HwConfig
from compiler.kinds import AdcMode, choices
from compiler.place import Placement, PlacementError, paused_gc

__all__ = ["Activation", "Schedule", "schedule", "adc_setting"]


def _adc_mode(mode: str) -> AdcMode:
    """Return ``mode`` as an :class:`AdcMode`; a name outside it is a :class:`PlacementError`."""
    try:
        return AdcMode(mode)
    except ValueError:
        raise PlacementError(f"adc mode must be one of {', '.join(choices(AdcMode))}, not {mode!r}") from None


def adc_setting(rows_per_col: int, hw: HwConfig, mode: str) -> tuple[int, int]:
    """Return ``(adc_bits, adc_shift)`` for an activation where ``rows_per_col`` rows can add into a column.

    Through the number format (``hw.fmt``): the bounds of every column sum of ``rows_per_col`` rows
    (:meth:`~cimisa.formats.NumberFormat.sum_bounds`, per unsigned/signed kind) and the smallest step that
    converts them (:meth:`~cimisa.formats.NumberFormat.adc_shift_for`). ``paper``: ``ceil(log2(rows))`` bits,
    the largest sum of each kind may saturate by one (``spare_top``); ``exact`` and ``accuracy`` (whose
    per-MVM bits are lowered later, on calibration inputs): ``min(hw.adc_bits, lossless bits)``. In the default
    format this is ``adc_shift = lossless_bits - bits`` (a test checks every ``rows_per_col`` up to 4096).
    """
    fmt = hw.fmt
    bounds = fmt.sum_bounds(rows_per_col)
    if _adc_mode(mode) is AdcMode.PAPER:
        bits = min(hw.adc_bits, max(1, math.ceil(math.log2(rows_per_col)) if rows_per_col > 1 else 1))
        return bits, fmt.adc_shift_for(bounds, bits, spare_top=True)
    bits = min(hw.adc_bits, fmt.lossless_adc_bits(rows_per_col))
    return bits, fmt.adc_shift_for(bounds, bits)


@dataclass(frozen=True)
class Activation:
    """One MVM on one array: row window ``row0..row0+nrows-1``, logical column window ``col0..col0+ncols-1``.

    ``cells`` counts the physical cells of the window that hold weights of the fired tiles
    (``weights * fmt.cols_per_weight``) and, for ``offset``, the bias column's cells in the driven rows.
    """

    array: int
    t: int
    matmul: int
    factor: str
    group: int
    chunk: int
    row0: int
    nrows: int
    col0: int
    ncols: int
    rows_per_col: int
    cells: int
    adc_bits: int
    adc_shift: int
    accumulate: bool
    matmuls: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class Schedule:
    """Activations in issue order, grouped by matmul stage: ``stages[(matmul, factor)]`` -> indices."""

    placement: Placement
    adc_mode: AdcMode
    activations: tuple[Activation, ...] = field(repr=False)
    stages: dict = field(repr=False)

    def __repr__(self) -> str:
        return (f"Schedule({self.placement.strategy!r}, activations={len(self.activations)}, "
                f"adc_mode={str(self.adc_mode)!r})")

    def adc_bits_histogram(self) -> dict[int, int]:
        """Return ``{adc_bits: activations}``."""
        h: dict[int, int] = {}
        for a in self.activations:
            h[a.adc_bits] = h.get(a.adc_bits, 0) + 1
        return dict(sorted(h.items()))

    def timestamps(self) -> dict[int, int]:
        """Return activations per array."""
        out: dict[int, int] = {}
        for a in self.activations:
            out[a.array] = out.get(a.array, 0) + 1
        return out


def _rows_in(row0: int, rows: int, step: int, lo: int, hi: int) -> int:
    """Count ``rho in range(rows)`` with ``lo <= row0 + rho*step < hi``."""
    first = max(0, -(-(lo - row0) // step))
    last = min(rows - 1, (hi - 1 - row0) // step)
    return max(0, last - first + 1)


def schedule(placement: Placement, hw: HwConfig, adc_mode: str = AdcMode.PAPER) -> Schedule:
    """Turn a placement into activations (see the module docstring for the rules)."""
    adc_mode = _adc_mode(adc_mode)
    with paused_gc():
        return _schedule(placement, hw, adc_mode)


def _schedule(placement: Placement, hw: HwConfig, adc_mode: AdcMode) -> Schedule:
    tiles = placement.tiles
    groups = placement.groups
    steps = max(1, placement.row_steps)
    # One pass over the groups: what each covers (array, row/column window, matmuls, first row piece or not).
    summary: list[tuple] = []
    bad = None                   # first group mixing first and later row pieces or factors
    for g, members in enumerate(groups):
        if len(members) == 1:
            t = tiles[members[0]]
            mats = (t.matmul,)
            summary.append((t.array, t.row0, t.row_end, t.col0, t.col_end, mats, t.r0, t.factor, (t,)))
            continue
        ts = [tiles[i] for i in members]
        t = ts[0]
        factor, later = t.factor, t.r0 > 0
        if bad is None and any(u.factor != factor or (u.r0 > 0) != later for u in ts):
            bad = g
        mats = tuple(sorted({u.matmul for u in ts}))
        summary.append((t.array, min(u.row0 for u in ts), max(u.row_end for u in ts), min(u.col0 for u in ts),
                        max(u.col_end for u in ts), mats, min(u.r0 for u in ts), factor, ts))
    # Co-located matmuls (some group fires tiles of several): all their shared stage-1 activations belong to the
    # first of them, so the row pieces of every block stay in r0 order in one program. Union by smallest index:
    # every set's representative is its smallest matmul.
    head = list(range(len(placement.matmuls)))

    def find(x):
        while head[x] != x:
            head[x] = head[head[x]]
            x = head[x]
        return x

    for s in summary:
        ms = s[5]
        if len(ms) > 1:
            for m in ms[1:]:
                a, b = find(ms[0]), find(m)
                if a != b:
                    head[max(a, b)] = min(a, b)
    if bad is not None:
        raise PlacementError(f"group {bad} mixes first and later row pieces or factors (scheduler bug)")
    # Collect groups per stage key (owner matmul, factor), sorted by r0 then by group index.
    per_stage: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for g, s in enumerate(summary):
        factor = s[7]
        owner = find(s[5][0]) if factor == "R" else s[8][0].matmul
        per_stage.setdefault((owner, factor), []).append((s[6], g))
    order = {"W": 0, "R": 1, "L": 2}
    acts: list[Activation] = []
    stages: dict[tuple[int, str], list[int]] = {}
    t_on: dict[int, int] = {}
    adc: dict[int, tuple[int, int]] = {}
    per_weight, bias = hw.fmt.cols_per_weight, hw.fmt.bias_cols
    for key in sorted(per_stage, key=lambda k: (k[0], order[k[1]])):
        idx = stages.setdefault(key, [])
        owner, factor = key
        for r0, g in sorted(per_stage[key]):
            arr, row_lo, row_hi, col_lo, col_hi, mats, _, _, ts = summary[g]
            nrows = row_hi - row_lo
            if steps == 1 and all(t.rows >= 1 and t.step >= 1 for t in ts):
                # one chunk holding every row of every tile
                windows = ((0, row_lo, row_hi, max(t.rows for t in ts), sum(t.rows * t.cols for t in ts)),)
            elif len(ts) == 1 and ts[0].step == 1 and ts[0].rows >= 1:
                # one tile of contiguous rows: every chunk's rows are all its own
                chunk = -(-nrows // steps)
                cols = ts[0].cols
                windows = [(c, lo, min(row_hi, lo + chunk), min(row_hi, lo + chunk) - lo,
                            (min(row_hi, lo + chunk) - lo) * cols)
                           for c, lo in enumerate(range(row_lo, row_hi, chunk))]
            else:
                chunk = -(-nrows // steps)
                windows = []
                for c, lo in enumerate(range(row_lo, row_hi, chunk)):
                    hi = min(row_hi, lo + chunk)
                    rpc = max(_rows_in(t.row0, t.rows, t.step, lo, hi) for t in ts)
                    if rpc == 0:
                        continue
                    cells = sum(_rows_in(t.row0, t.rows, t.step, lo, hi) * t.cols for t in ts)
                    windows.append((c, lo, hi, rpc, cells))
            for c, lo, hi, rpc, weights in windows:
                cells = weights * per_weight + (hi - lo) * bias
                setting = adc.get(rpc)
                if setting is None:
                    setting = adc[rpc] = adc_setting(rpc, hw, adc_mode)
                tt = t_on.get(arr, 0)
                t_on[arr] = tt + 1
                idx.append(len(acts))
                acts.append(Activation(arr, tt, owner, factor, g, c, lo, hi - lo, col_lo, col_hi - col_lo, rpc,
                                       cells, setting[0], setting[1], (r0 > 0) or c > 0, mats))
    return Schedule(placement, adc_mode, tuple(acts), {k: tuple(v) for k, v in stages.items()})
