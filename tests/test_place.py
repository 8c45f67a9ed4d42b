"""Placement strategies: the paper's geometry, the targets, the validator (and that it can fail)."""

import pytest

from cimisa.config import load_hw
from compiler.place import MatmulGeom, Placement, PlacementError, Tile, geometry, lower_bound, place
from mapper.d2s.monarch import monarch_shape
from mapper.models import load_model_spec

HW = load_hw("paper-256")


def square(n=1024, k=32, name="w", group="g"):
    s = monarch_shape(n, n, k)
    return MatmulGeom(name, 0, "q", "encoder", group, n, n, k, s.r_shape, s.l_shape)


def test_paper_geometry_one_square_factor_pair():
    g = (square(),)
    assert place(g, HW, "linear").n_arrays == 16
    sp = place(g, HW, "sparse")
    assert sp.n_arrays == 8 and sp.utilization == pytest.approx(0.125)     # the paper's 12.5 %
    de = place(g, HW, "dense")
    assert de.n_arrays == 2 and 1 - de.n_arrays / 16 >= 0.875             # 87.5 % fewer than linear
    au = place(g, HW, "auto")
    assert au.n_arrays == au.lower_bound == 1 and au.utilization == pytest.approx(1.0)


@pytest.fixture(scope="module")
def paper_geoms():
    return {m: geometry(load_model_spec(m), 32) for m in ("bert-large", "bart-large", "gpt2-medium")}


def test_dense_fewer_arrays_than_linear_on_bert_large(paper_geoms):
    g = paper_geoms["bert-large"]
    lin = place(g, HW, "linear", validate=False).n_arrays
    den = place(g, HW, "dense").n_arrays
    assert 1 - den / lin >= 0.87


@pytest.mark.parametrize("model", ["bert-large", "bart-large", "gpt2-medium"])
def test_auto_targets(paper_geoms, model):
    p = place(paper_geoms[model], HW, "auto")
    assert p.utilization >= 0.95
    assert p.n_arrays <= 1.05 * p.lower_bound


def test_sparse_utilisation_on_paper_models(paper_geoms):
    p = place(paper_geoms["bert-large"], HW, "sparse")
    assert p.utilization == pytest.approx(0.125)


def test_validator_can_fail():
    g = (square(64, 8),)
    hw = load_hw("fpga-tiny")
    ok = place(g, hw, "dense")
    assert ok.violations() == []
    t = ok.tiles
    # move the second tile onto the first one: the validator must report the overlap
    bad_tiles = (t[0], Tile(**{**t[1].__dict__, "array": t[0].array, "row0": t[0].row0, "col0": t[0].col0}),
                 *t[2:])
    bad = Placement(ok.strategy, ok.rows, ok.cols, ok.nblocks, ok.matmuls, bad_tiles, ok.groups, ok.n_arrays)
    assert any("more than one tile" in v for v in bad.violations())
    with pytest.raises(PlacementError, match="more than one tile"):
        bad.validate()
    off = Placement(ok.strategy, ok.rows, ok.cols, ok.nblocks, ok.matmuls,
                    (Tile(**{**t[0].__dict__, "row0": 30}),) + t[1:], ok.groups, ok.n_arrays)
    assert any("outside" in v for v in off.violations())


def test_blocks_larger_than_the_array_are_tiled_and_waste_shows():
    hw = load_hw("fpga-tiny")                      # 32 x 32 arrays
    g = (square(128, 2),)                           # 64 x 64 blocks: 4 tiles each
    for st in ("sparse", "dense", "auto"):
        p = place(g, hw, st)
        assert p.weight_cells == g[0].monarch_cells
        assert max(t.rows for t in p.tiles) <= 32 and max(t.cols for t in p.tiles) <= 32
    # 48 x 48 blocks on 64-row arrays: one block per array, the rest is visible waste
    hw64 = hw.replace(rows=64, cols=64, rows_per_cycle=8)
    g48 = (square(96, 2),)
    p = place(g48, hw64, "sparse")
    assert p.utilization == pytest.approx(48 * 48 / (64 * 64))
    assert place(g48, hw64, "auto").utilization > p.utilization


def test_budget_and_errors():
    g = (square(),)
    with pytest.raises(PlacementError, match="budget too small"):
        place(g, HW, "sparse", arrays=4)
    with pytest.raises(PlacementError, match="budget too small"):
        place((square(), square(name="x")), HW, "auto", arrays=1)
    with pytest.raises(PlacementError, match="unknown strategy"):
        place(g, HW, "best")
    p = place(g, HW, "auto", arrays=8)
    assert p.n_arrays == 8 and p.violations() == []


def test_colocation_groups_same_input_blocks():
    g = (square(name="q"), square(name="k"), square(name="v"))
    p = place(g, HW, "auto", arrays=32)
    multi = [grp for grp in p.groups if len({p.tiles[i].matmul for i in grp}) == 3]
    assert len(multi) == 32          # one activation per R block serves Q, K and V
    p2 = place(g, HW, "auto", arrays=32, colocate=False)
    assert all(len({p2.tiles[i].matmul for i in grp}) == 1 for grp in p2.groups)


@pytest.mark.parametrize("n,k,monarch_lb,dense_lb", [(16, 2, 1, 1), (40, 4, 1, 2), (48, 4, 2, 3), (72, 4, 3, 6),
                                                     (96, 4, 5, 9), (64, 4, 2, 4)])
def test_lower_bound_is_ceil(n, k, monarch_lb, dense_lb):
    """ceil(cells / cells per array), for cell counts below one array, between multiples, and on a multiple."""
    hw = load_hw("fpga-tiny")                                 # 32 x 32 = 1024 cells per array
    g = (square(n, k),)
    cells = g[0].monarch_cells
    assert lower_bound(g, hw) == monarch_lb == -(-cells // 1024)
    assert (monarch_lb - 1) * 1024 < cells <= monarch_lb * 1024
    for st in ("sparse", "dense", "auto"):
        p = place(g, hw, st)
        assert p.lower_bound == monarch_lb <= p.n_arrays
        assert p.utilization == pytest.approx(cells / (p.n_arrays * 1024), rel=1e-12)
    lin = place(g, hw, "linear")
    assert lin.lower_bound == dense_lb and (dense_lb - 1) * 1024 < n * n <= dense_lb * 1024
    assert lin.utilization == pytest.approx(n * n / (lin.n_arrays * 1024), rel=1e-12)
    assert place(g, hw, "auto").n_arrays == monarch_lb          # auto reaches the bound on a single matmul
