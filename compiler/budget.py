"""Chip sizing for comparisons between strategies: the ``--budget`` of ``mapper build``.

A strategy's :class:`~compiler.place.Placement` needs ``n`` arrays (logical arrays ``0..n-1``). The budget says
which chip it runs on (:func:`size_chip`, the :class:`Sizing` it returns holds the resized
:class:`~cimisa.config.HwConfig`):

* ``fixed`` (default): the chip as given;
* ``need``: the chip the strategy needs: ``n`` rounded up to whole tiles of ``chip.arrays_per_tile``
  (:func:`whole_tiles`), every other per-tile resource as configured;
* ``iso-adc``: the strategy's ``need`` chip with ADCs per array (and so each tile's bank of
  ``mvms_per_tile * adcs_per_array``) set so that the chip's total ADC count equals the reference chip's
  (the chip the reference strategy, ``linear`` unless named, needs on the same configuration). ADCs per array
  are an integer ``1..cols``: rounded down, the achieved ratio is reported (``adc_ratio``);
* ``iso-area``: the strategy's ``need`` chip with the largest ADCs per array whose total area
  (:func:`compiler.components.area_mm2`) does not exceed the reference chip's; the achieved ratio is reported
  (``area_ratio``; above 1 only when even one ADC per array is larger than the reference).
"""

from __future__ import annotations

from dataclasses import dataclass

from cimisa.config import HwConfig
from compiler.kinds import Strategy
from compiler.place import Placement, PlacementError, as_strategy, place

__all__ = ["BUDGETS", "Sizing", "size_chip", "whole_tiles", "need_chip", "reference_chip", "as_budget"]

#: The budgets, in order (``fixed`` is the default).
BUDGETS = ("fixed", "need", "iso-adc", "iso-area")


def as_budget(name: str) -> str:
    """Return ``name`` if it is one of :data:`BUDGETS`; :class:`PlacementError` otherwise."""
    if name not in BUDGETS:
        raise PlacementError(f"budget must be one of {', '.join(BUDGETS)}, not {name!r}")
    return name


@dataclass(frozen=True)
class Sizing:
    """The chip a budget gives one strategy, and how close an iso comparison came.

    ``reference_*`` describe the reference chip (iso budgets only); ``adc_ratio`` and ``area_ratio`` are this
    chip's total ADCs and area over the reference's (the one the budget equalises is within one ADC step).
    """

    hw: HwConfig
    budget: str
    arrays_needed: int
    reference: str | None = None
    reference_arrays: int | None = None
    reference_adcs: int | None = None
    reference_area_mm2: float | None = None
    adc_ratio: float | None = None
    area_ratio: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready summary (``report.json`` ``chip``)."""
        return {"budget": self.budget, "arrays_needed": self.arrays_needed, "reference": self.reference,
                "reference_arrays": self.reference_arrays, "reference_adcs": self.reference_adcs,
                "reference_area_mm2": self.reference_area_mm2, "adc_ratio": self.adc_ratio,
                "area_ratio": self.area_ratio}


def whole_tiles(n_arrays: int, hw: HwConfig) -> int:
    """``n_arrays`` rounded up to whole tiles of ``hw.chip.arrays_per_tile`` (at least one tile)."""
    apt = hw.chip.arrays_per_tile
    return max(1, -(-n_arrays // apt)) * apt


def need_chip(n_arrays: int, hw: HwConfig) -> HwConfig:
    """The smallest whole-tile chip holding ``n_arrays`` arrays, every other setting of ``hw`` kept."""
    return hw.replace(n_arrays=whole_tiles(n_arrays, hw))


def reference_chip(placement: Placement, hw: HwConfig, reference: Strategy | str | Placement | None) -> tuple[
        str, HwConfig]:
    """Return ``(name, chip)`` of the reference: the ``need`` chip of ``reference`` (a strategy placed on the
    same matmuls and ``hw``, or a placement; None: ``linear``)."""
    if isinstance(reference, Placement):
        ref = reference
    else:
        st = as_strategy(reference if reference is not None else Strategy.LINEAR)
        ref = placement if st is placement.strategy and placement.budget is None else place(
            placement.matmuls, hw, st, validate=False)          # row steps do not change the arrays
    return str(ref.strategy), need_chip(ref.n_arrays, hw)


def size_chip(placement: Placement, hw: HwConfig, budget: str = "fixed",
              reference: Strategy | str | Placement | None = None) -> Sizing:
    """Return the chip ``budget`` gives ``placement`` on ``hw`` (see the module docstring)."""
    budget = as_budget(budget)
    n = placement.n_arrays
    if budget == "fixed":
        return Sizing(hw=hw, budget=budget, arrays_needed=n)
    own = need_chip(n, hw)
    if budget == "need":
        return Sizing(hw=own, budget=budget, arrays_needed=n)
    ref_name, ref = reference_chip(placement, hw, reference)
    if budget == "iso-adc":
        per_port = own.n_tiles * own.chip.mvms_per_tile
        adcs = min(hw.cols, max(1, ref.total_adcs // per_port))
        cfg = own.replace(adcs_per_array=adcs)
    else:
        cfg = _iso_area(own, _area(ref))
    return _iso(cfg, budget, n, ref_name, ref)


def _area(hw: HwConfig) -> float:
    from compiler.components import area_mm2  # noqa: PLC0415  (only the iso budgets need the component models)
    return float(area_mm2(hw))


def _iso_area(own: HwConfig, target: float) -> HwConfig:
    """``own`` with the largest ADCs per array (1..cols) whose area is at most ``target`` (1 if none is)."""
    lo, hi = 1, own.cols
    if _area(own.replace(adcs_per_array=lo)) > target:
        return own.replace(adcs_per_array=lo)
    while lo < hi:               # invariant: area(lo) <= target; the area grows with the ADCs
        mid = (lo + hi + 1) // 2
        if _area(own.replace(adcs_per_array=mid)) <= target:
            lo = mid
        else:
            hi = mid - 1
    return own.replace(adcs_per_array=lo)


def _iso(cfg: HwConfig, budget: str, n: int, ref_name: str, ref: HwConfig) -> Sizing:
    ref_area, area = _area(ref), _area(cfg)
    return Sizing(hw=cfg, budget=budget, arrays_needed=n, reference=ref_name, reference_arrays=ref.n_arrays,
                  reference_adcs=ref.total_adcs, reference_area_mm2=round(ref_area, 6),
                  adc_ratio=round(cfg.total_adcs / ref.total_adcs, 6),
                  area_ratio=round(area / ref_area, 6) if ref_area else None)
