"""Chip placement (compiler.chipmap): spread of each stage over tiles, a permutation, deterministic, the fit error,
weight-reload epochs, the mesh order, and the map checker (it can fail)."""

import dataclasses

import numpy as np
import pytest

from cimisa.chip import ChipParams
from cimisa.config import load_hw
from compiler.chipmap import ArrayFacts, ChipMap, map_to_chip, network_order, serialisation
from compiler.geometry import monarch_shape
from compiler.place import MatmulGeom, PlacementError, place
from compiler.schedule import schedule

BASE = load_hw("paper-256")


def model(n_matmuls=4, n=1024, k=32):
    """``n_matmuls`` square matmuls in model order (layer i, distinct inputs): linear needs 16 arrays each."""
    s = monarch_shape(n, n, k)
    return tuple(MatmulGeom(f"m{i}", i, "q", "encoder", f"g{i}", n, n, k, s.r_shape, s.l_shape)
                 for i in range(n_matmuls))


def chip(n_arrays=64, apt=8, mvms=1, topology="mesh", mesh_cols=0):
    return BASE.replace(n_arrays=n_arrays, chip=ChipParams(arrays_per_tile=apt, mvms_per_tile=mvms,
                                                           topology=topology, mesh_cols=mesh_cols))


def worst_spread(cm: ChipMap, sched) -> list[tuple[int, int]]:
    """Per schedule stage: (most arrays of the stage on one tile, the least possible ceil(arrays / tiles))."""
    out = []
    for idx in sched.stages.values():
        arrays = {sched.activations[i].array for i in idx}
        per_tile: dict[int, int] = {}
        for a in arrays:
            t = cm.hw.chip.tile_of(cm.physical[a])
            per_tile[t] = per_tile.get(t, 0) + 1
        out.append((max(per_tile.values()), -(-len(arrays) // cm.hw.n_tiles)))
    return out


@pytest.mark.parametrize("strategy", ["linear", "sparse", "dense"])
@pytest.mark.parametrize("hw", [chip(), chip(64, 4, 2, "ring"), chip(128, 16, 1, "mesh", 2), chip(64, 1, 1, "ideal")],
                         ids=["8x8-mesh", "16x4-ring", "8x16-mesh", "flat"])
def test_each_stage_spreads_over_distinct_tiles(strategy, hw):
    pl = place(model(), hw, strategy)
    cm = map_to_chip(pl, hw)
    assert cm.violations(pl) == []
    assert sorted(cm.physical) == sorted(set(cm.physical)) and len(cm.physical) == pl.n_arrays
    assert all(0 <= p < hw.n_arrays for p in cm.physical)
    for worst, best in worst_spread(cm, schedule(pl, hw)):
        assert worst == best


def test_spread_check_can_fail():
    """The identity keeps a linear stage's 16 arrays on two tiles of 8: the check above sees it."""
    hw = chip()
    pl = place(model(), hw, "linear")
    ident = ChipMap.identity(pl, hw)
    assert any(w > b for w, b in worst_spread(ident, schedule(pl, hw)))
    facts = ArrayFacts.of(pl)
    assert serialisation(facts, np.asarray(map_to_chip(pl, hw).physical), hw) < serialisation(
        facts, np.asarray(ident.physical), hw)


def test_auto_serialises_no_more_than_the_identity():
    hw = chip(64, 16)
    pl = place(model(8), hw, "auto", arrays=48)
    cm = map_to_chip(pl, hw)
    facts = ArrayFacts.of(pl)
    assert cm.violations(pl) == []
    assert serialisation(facts, np.asarray(cm.physical), hw) <= serialisation(facts, np.arange(pl.n_arrays), hw)


def test_deterministic():
    hw = chip()
    a = map_to_chip(place(model(), hw, "sparse"), hw)
    b = map_to_chip(place(model(), hw, "sparse"), hw)
    assert a.physical == b.physical and a.epochs == b.epochs


def test_mesh_order_walks_neighbouring_tiles():
    for hw in (chip(64, 1, 1, "mesh"), chip(96, 8, 1, "mesh", 5), chip(64, 4, 1, "mesh", 3)):
        order = network_order(hw).tolist()
        rows, cols = hw.chip.grid(hw.n_arrays)
        assert sorted(order) == list(range(hw.n_tiles))
        steps = [abs(divmod(a, cols)[0] - divmod(b, cols)[0]) + abs(divmod(a, cols)[1] - divmod(b, cols)[1])
                 for a, b in zip(order, order[1:])]
        full = (hw.n_tiles // cols) * cols             # a partial last row may end away from its neighbour
        assert all(s == 1 for s in steps[:full - 1])
    assert network_order(chip(64, 8, 1, "ring")).tolist() == list(range(8))


def test_too_small_chip_is_one_clear_error():
    hw = chip(32, 8)
    with pytest.raises(PlacementError) as e:
        map_to_chip(place(model(), hw, "linear"), hw)
    msg = str(e.value)
    assert "\n" not in msg and "needs 64 arrays" in msg and "has 32" in msg and "--weight-reload" in msg


def test_weight_reload_epochs_cover_every_matmul_once_and_fit():
    hw = chip(32, 8)
    pl = place(model(5), hw, "linear")                  # 16 arrays per matmul, two fit
    cm = map_to_chip(pl, hw, weight_reload=True)
    assert cm.violations(pl) == []
    assert [m for e in cm.epochs for m in e] == list(range(5))
    assert [len(e) for e in cm.epochs] == [2, 2, 1]
    per = pl.per_matmul()
    for e in cm.epochs:
        arrays = set().union(*(per[m]["arrays"] for m in e))
        assert len(arrays) <= hw.n_arrays
        assert len({cm.physical[a] for a in arrays}) == len(arrays)
    # every linear array is full (256 rows): reprogramming an epoch writes 256 rows on each array it uses
    assert cm.reload_rows == (0, 32 * 256, 16 * 256)
    assert cm.wrap_rows == 32 * 256
    assert map_to_chip(pl, chip(128, 8), weight_reload=True).epochs == (tuple(range(5)),)


def test_weight_reload_cannot_split_matmuls_sharing_arrays():
    hw = chip(2, 1, 1, "ideal")
    pl = place(model(4), hw, "auto")                   # auto stripes every matmul over all its arrays
    assert pl.n_arrays > 2
    with pytest.raises(PlacementError, match="share arrays"):
        map_to_chip(pl, hw, weight_reload=True)


def test_map_checker_can_fail():
    hw = chip(32, 8)
    pl = place(model(4), hw, "linear")
    cm = map_to_chip(pl, hw, weight_reload=True)
    assert cm.violations(pl) == []
    phys = list(cm.physical)
    bad = {
        "share a physical": dataclasses.replace(cm, physical=tuple([phys[1]] + phys[1:])),
        "outside": dataclasses.replace(cm, physical=tuple([hw.n_arrays] + phys[1:])),
        "every matmul once": dataclasses.replace(cm, epochs=cm.epochs[:1]),
        "share a physical array": dataclasses.replace(cm, epochs=((0, 1, 2, 3),), reload_rows=(0,)),  # no fit
        "reload_rows": dataclasses.replace(cm, reload_rows=(5,) + cm.reload_rows[1:]),
        "logical arrays": dataclasses.replace(cm, physical=tuple(phys[:-1])),
    }
    for what, wrong in bad.items():
        assert any(what in v for v in wrong.violations(pl)), what
    shared = place(model(4), hw, "auto")                # auto's arrays hold pieces of every matmul
    split = dataclasses.replace(map_to_chip(shared, hw), epochs=((0,), (1, 2, 3)), reload_rows=(0, 1))
    assert any("two epochs" in v for v in split.violations(shared))


def test_identity_is_the_flat_machine():
    hw = BASE.replace(n_arrays=16)
    pl = place(model(2), hw, "linear")
    cm = ChipMap.identity(pl, hw)
    assert cm.physical == tuple(range(32)) and cm.epochs == ((0, 1),) and cm.reload_rows == (0,)
    assert cm.hw.n_arrays == 32 and cm.violations(pl) == []     # grown to what the strategy needs
    assert ChipMap.identity(pl, BASE).hw is BASE
