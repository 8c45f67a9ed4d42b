"""Chip budgets (compiler.budget): need = the smallest whole-tile chip, iso-adc = the reference's ADC total
(rounded down, ratio reported), iso-area = the reference's area within one ADC step; bad names fail."""

import pytest

from cimisa.chip import ChipParams
from cimisa.config import load_hw
from compiler.budget import BUDGETS, size_chip, whole_tiles
from compiler.chipmap import map_to_chip
from compiler.components import area_mm2
from compiler.geometry import monarch_shape
from compiler.place import MatmulGeom, PlacementError, place

HW = load_hw("paper-256").replace(n_arrays=64, chip=ChipParams(arrays_per_tile=8, topology="mesh"))


def model(n_matmuls=3, n=1024, k=32):
    s = monarch_shape(n, n, k)
    return tuple(MatmulGeom(f"m{i}", i, "q", "encoder", f"g{i}", n, n, k, s.r_shape, s.l_shape)
                 for i in range(n_matmuls))


@pytest.fixture(scope="module")
def placements():
    return {st: place(model(), HW, st, validate=False) for st in ("linear", "sparse", "dense", "auto")}


def test_fixed_is_the_chip_as_given(placements):
    assert size_chip(placements["sparse"], HW).hw is HW


def smallest_whole_tile(n_arrays: int, n_chip: int, apt: int) -> bool:
    """Whether ``n_chip`` arrays are the smallest whole-tile chip holding ``n_arrays``."""
    return n_chip % apt == 0 and n_chip >= n_arrays > n_chip - apt


@pytest.mark.parametrize("strategy", ["linear", "sparse", "dense", "auto"])
def test_need_is_the_smallest_whole_tile_chip(placements, strategy):
    pl = placements[strategy]
    cfg = size_chip(pl, HW, "need").hw
    assert smallest_whole_tile(pl.n_arrays, cfg.n_arrays, HW.chip.arrays_per_tile)
    assert cfg.adcs_per_array == HW.adcs_per_array and cfg.chip == HW.chip
    assert map_to_chip(pl, HW, budget="need").violations(pl) == []


def test_need_check_can_fail():
    assert smallest_whole_tile(17, 24, 8)
    assert not smallest_whole_tile(17, 32, 8)      # a tile too many
    assert not smallest_whole_tile(17, 20, 8)      # not whole tiles
    assert not smallest_whole_tile(17, 16, 8)      # too small


@pytest.mark.parametrize("strategy", ["sparse", "dense", "auto"])
def test_iso_adc_equals_the_reference_total_within_rounding(placements, strategy):
    s = size_chip(placements[strategy], HW, "iso-adc")
    ref = size_chip(placements["linear"], HW, "need").hw
    ports = s.hw.n_tiles * s.hw.chip.mvms_per_tile
    assert s.reference == "linear" and s.reference_adcs == ref.total_adcs
    assert s.hw.total_adcs <= ref.total_adcs
    assert s.hw.adcs_per_array == s.hw.cols or s.hw.total_adcs + ports > ref.total_adcs   # one step more: over
    assert s.adc_ratio == pytest.approx(s.hw.total_adcs / ref.total_adcs, abs=1e-6)
    assert s.hw.n_arrays == whole_tiles(placements[strategy].n_arrays, HW)


@pytest.mark.parametrize("strategy", ["sparse", "dense", "auto"])
def test_iso_area_within_one_adc_step(placements, strategy):
    s = size_chip(placements[strategy], HW, "iso-area")
    target = area_mm2(size_chip(placements["linear"], HW, "need").hw)
    assert s.reference_area_mm2 == pytest.approx(target, rel=1e-6)
    a = area_mm2(s.hw)
    assert a <= target
    if s.hw.adcs_per_array < s.hw.cols:
        assert area_mm2(s.hw.replace(adcs_per_array=s.hw.adcs_per_array + 1)) > target
    assert s.area_ratio == pytest.approx(a / target, abs=1e-6)


def test_the_reference_is_linear_unless_named(placements):
    same = size_chip(placements["linear"], HW, "iso-adc")
    assert same.hw.adcs_per_array == HW.adcs_per_array and same.adc_ratio == 1.0
    s = size_chip(placements["dense"], HW, "iso-adc", reference="sparse")
    assert s.reference == "sparse" and s.reference_arrays == whole_tiles(placements["sparse"].n_arrays, HW)
    by_placement = size_chip(placements["dense"], HW, "iso-adc", reference=placements["sparse"])
    assert by_placement.hw == s.hw


def test_bad_budget_or_reference():
    pl = place(model(), HW, "sparse")
    with pytest.raises(PlacementError, match="budget must be one of"):
        size_chip(pl, HW, "bogus")
    with pytest.raises(PlacementError, match="unknown strategy"):
        size_chip(pl, HW, "iso-adc", reference="bogus")
    assert BUDGETS[0] == "fixed"
