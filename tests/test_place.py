"""Placement strategies: the paper's geometry, the targets, the validator (and that it can fail)."""

import pytest

from cimisa.config import load_hw
from compiler.geometry import monarch_shape
from compiler.place import MatmulGeom, Piece, Placement, PlacementError, Tile, geometry, lower_bound, place
from compiler.place.auto import Shelves, Stripes, array_count, bundles
from compiler.place.builder import Builder
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


# ---- the steps of auto (compiler.place.auto) --------------------------------------------------------------------
def test_auto_bundles_colocate_same_input_r_pieces_only():
    g = (square(64, 4, name="q"), square(64, 4, name="k"), square(64, 4, name="v"))    # R blocks 16 x 16
    bds = bundles(g, 8, 32, colocate=True)
    r = [bd for bd in bds if bd[0].factor == "R"]
    assert len(r) == 4 * 2                                    # 4 blocks x 2 row pieces of the 8-row shelves
    assert all([p.matmul for p in bd] == [0, 1, 2] for bd in r)
    assert r[0][0] == Piece(0, "R", 0, 0, 0, 8, 16) and r[1][0] == Piece(0, "R", 0, 8, 0, 8, 16)
    ls = [bd for bd in bds if bd[0].factor == "L"]
    assert len(ls) == 3 * 4 * 2 and all(len(bd) == 1 for bd in ls)
    assert all(len(bd) == 1 for bd in bundles(g, 8, 32, colocate=False))
    assert sum(p.rows * p.cols for bd in bds for p in bd) == sum(x.monarch_cells for x in g)


def test_auto_bundles_cut_columns_at_the_array_width():
    bds = bundles((square(64, 4),), 16, 10, colocate=True)
    assert [(p.c0, p.cols) for p in bds[0]] == [(0, 10), (10, 6)]


def test_auto_array_count_is_the_fewest_or_the_budget():
    hw = load_hw("fpga-tiny")
    assert array_count(10, 4, None, hw, 8) == 3 and array_count(8, 4, None, hw, 8) == 2
    assert array_count(10, 4, 5, hw, 8) == 5
    with pytest.raises(PlacementError, match="at least 3 arrays of 32x32 .shelves of 8 rows., budget 2"):
        array_count(10, 4, 2, hw, 8)


def test_auto_stripes_spread_a_stage_over_distinct_arrays():
    fill = [0, 0, 0]
    s = Stripes(fill, 100)
    picks = [s.pick((0, "R")) for _ in range(3)]
    assert sorted(picks) == [0, 1, 2]                         # one stage: every array once
    fill[:] = [30, 10, 20]
    s.release(picks)
    assert s.pick((0, "L")) == 1                              # new stage: the emptiest first
    assert s.pick((0, "L")) == 2
    fill[0] = 100                                             # full arrays are never picked
    s.release([0])
    assert s.pick((1, "R")) in (1, 2)


def test_auto_shelves_cut_a_piece_at_the_shelf_end():
    b = Builder(load_hw("fpga-tiny"))                         # 32 x 32; shelves of 16 rows: 64 columns per array
    sh = Shelves(b, 16, 2, 128)
    assert sh.lay([Piece(0, "R", 0, 0, 0, 16, 40)], 0) == [0]
    assert [(t.row0, t.col0, t.c0, t.cols, t.group) for t in b.tiles] == [(0, 0, 0, 32, 0), (16, 0, 32, 8, 1)]
    assert sh.fill == [40, 0]


def test_auto_shelves_start_a_fresh_shelf_when_there_is_room():
    b = Builder(load_hw("fpga-tiny"))
    sh = Shelves(b, 16, 2, 20)                                # 20 columns to lay on 2 arrays of 64: spare room
    sh.fill[0] = 20
    sh.lay([Piece(0, "L", 0, 0, 0, 16, 20)], 0)
    assert [(t.row0, t.col0, t.cols) for t in b.tiles] == [(16, 0, 20)]    # not cut at column 32
    assert sh.fill[0] == 52


def test_dense_row_steps_is_a_parameter_four_by_default():
    from compiler.place import DENSE_STEPS
    from compiler.schedule import schedule
    g = tuple(square(1024, 32, name=f"w{i}") for i in range(2))     # 32-row blocks, every one fits an array
    default = place(g, HW, "dense")
    assert DENSE_STEPS == 4 and default.row_steps == 4 and place(g, HW, "dense", row_steps=4).row_steps == 4
    acts = {s: len(schedule(place(g, HW, "dense", row_steps=s), HW).activations) for s in (1, 2, 4)}
    assert acts[4] == len(schedule(default, HW).activations)
    blocks = sum(2 * m.nblocks for m in g)                           # R and L blocks, each its own group
    assert acts == {1: blocks, 2: 2 * blocks, 4: 4 * blocks}          # one MVM per row chunk of each block
    rpc = {a.rows_per_col for a in schedule(place(g, HW, "dense", row_steps=1), HW).activations}
    assert rpc == {32}                                               # one step: the whole block adds up
    assert place(g, HW, "sparse", row_steps=2).row_steps == 1         # only DenseMap fires in row chunks


@pytest.mark.parametrize("bad", [0, 3, 64, -4, 2.0, True])
def test_dense_row_steps_must_divide_the_block_rows(bad):
    with pytest.raises(PlacementError, match="row steps must divide the rows of every block"):
        place((square(),), HW, "dense", row_steps=bad)


# ---- number formats: logical columns, cells (cimisa.formats) ------------------------------------------------
SLICED = load_hw("fpga-tiny-sliced")      # fpga-tiny's 32 x 32 weights as 1-bit differential cells (3 + 3 each)


@pytest.mark.parametrize("strategy", ["linear", "sparse", "dense", "auto"])
def test_sliced_placement_in_logical_columns(strategy):
    """The same 32 weights per row as fpga-tiny: the same tiles, every one inside the 32 logical columns, and
    each weight 6 cells (4-bit weights: 3 magnitude bits in 1-bit cells, a + and a - pair)."""
    g = geometry(load_model_spec("tiny-bert"), 8)
    p, ref = place(g, SLICED, strategy), place(g, load_hw("fpga-tiny"), strategy)
    assert p.violations() == [] and p.cols == 32 and p.array_cols == 192
    assert all(t.col_end <= 32 and t.row_end <= 32 for t in p.tiles)
    assert p.tiles == ref.tiles and p.n_arrays == ref.n_arrays
    want = sum(x.dense_cells if strategy == "linear" else x.monarch_cells for x in g)
    assert p.weights == want and p.weight_cells == 6 * want
    assert p.cells_per_weight == 6 and p.cells_per_array == 32 * 192
    assert p.utilization == pytest.approx(ref.utilization, rel=1e-12)     # 192 = 32 * 6: no column spare
    assert p.per_matmul()[0]["cells"] == 6 * p.per_matmul()[0]["weights"]


def test_offset_lower_bound_and_utilisation_count_cells():
    """Offset 2-bit cells (2 per 4-bit weight) and one bias column in 66 columns: 32 weights per row, 64 weight
    cells, the bias column and one spare column unused. The bound divides weight cells by the 32 * 64 cells that
    can hold weights; the utilisation by every physical cell of the arrays used."""
    hw = load_hw("fpga-tiny", cols=66, cell_bits=2, weight_encoding="offset", adc_bits=7)
    assert hw.logical_cols == 32
    for n, k in ((48, 4), (96, 4), (64, 4)):
        g = (square(n, k),)
        w = g[0].monarch_cells
        assert lower_bound(g, hw) == -(-(2 * w) // (32 * 64)) == -(-w // 1024)
        for st in ("sparse", "dense", "auto"):
            p = place(g, hw, st)
            assert p.violations() == [] and p.lower_bound == lower_bound(g, hw) <= p.n_arrays
            assert p.weight_cells == 2 * w and p.bias_cells == p.n_arrays * 32
            assert p.utilization == pytest.approx(2 * w / (p.n_arrays * 32 * 66), rel=1e-12)
