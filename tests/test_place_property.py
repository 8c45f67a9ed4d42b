"""Property tests: random shapes, block counts and array sizes give valid placements and exact streams."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cimisa.config import HwConfig
from cimisa.errors import ShapeError
from compiler.place import MatmulGeom, lower_bound, place
from compiler.program import compile_model
from compiler.quant import reference_int_product
from mapper.d2s.monarch import monarch_shape
from sw_model import Machine


class _Spec:
    """A minimal ModelSpec stand-in: ``mapped()`` returns the matmuls."""

    def __init__(self, mats):
        self._m = mats

    def mapped(self):
        return self._m


class _M:
    def __init__(self, name, out_f, in_f, group, layer=0):
        self.name, self.out_features, self.in_features = name, out_f, in_f
        self.layer, self.role, self.stage, self.input_group = layer, "q", "encoder", group


shapes = st.tuples(st.integers(4, 48), st.integers(4, 48), st.integers(1, 8))


def _geoms(specs):
    out = []
    for i, (o, n, k, grp) in enumerate(specs):
        s = monarch_shape(o, n, k)
        out.append(MatmulGeom(f"m{i}", 0, "q", "encoder", grp, o, n, k, s.r_shape, s.l_shape))
    return tuple(out)


def _hw(rows, cols):
    return HwConfig(name="prop", rows=rows, cols=cols, n_arrays=4096, weight_bits=4, input_bits=6,
                    adc_bits=HwConfig(name="x", rows=rows, cols=cols, weight_bits=4, adc_bits=1,
                                      rows_per_cycle=1).lossless_adc_bits,
                    adcs_per_array=2, in_depth=4096, out_depth=4096, rows_per_cycle=1)


@settings(max_examples=40, deadline=None)
@given(st.lists(shapes, min_size=1, max_size=4), st.sampled_from([(8, 8), (16, 16), (16, 8), (12, 20)]),
       st.integers(0, 3))
def test_random_placements_are_valid(mats, arr, seed):
    k = mats[0][2]
    specs = []
    for o, n, _ in mats:
        try:
            monarch_shape(o, n, k)
        except ShapeError:
            continue
        specs.append((o, n, k, f"g{(o + n + seed) % 2}"))
    if not specs:
        return
    geoms = _geoms(specs)
    hw = _hw(*arr)
    for strategy in ("linear", "sparse", "dense", "auto"):
        p = place(geoms, hw, strategy)
        assert p.violations() == []
        want = sum(g.dense_cells for g in geoms) if strategy == "linear" else sum(g.monarch_cells for g in geoms)
        assert p.weight_cells == want
        assert p.n_arrays >= p.lower_bound
        cpa = hw.rows * hw.cols                              # the bound is the ceiling, exactly
        assert (p.lower_bound - 1) * cpa < p.weight_cells <= p.lower_bound * cpa
        assert p.utilization == p.weight_cells / (p.n_arrays * cpa) <= 1
        if strategy != "linear":
            assert lower_bound(geoms, hw) == p.lower_bound


@settings(max_examples=25, deadline=None)
@given(shapes, st.sampled_from([(8, 8), (16, 16), (12, 20)]), st.sampled_from(["sparse", "dense", "auto"]),
       st.integers(0, 2**16))
def test_random_streams_are_exact(shape, arr, strategy, seed):
    o, n, k = shape
    try:
        monarch_shape(o, n, k)
    except ShapeError:
        return
    hw = _hw(*arr)
    mats = [_M("a", o, n, "g"), _M("b", o, n, "g")]
    rng = np.random.default_rng(seed)
    g = _geoms([(o, n, k, "g")])[0]
    factors = {m.name: (rng.standard_normal(g.r_shape), rng.standard_normal(g.l_shape), None) for m in mats}
    cm = compile_model(_Spec(mats), factors, hw, strategy=strategy, colocate=True)
    m = Machine(hw)
    for c in cm.weight_commands:
        m.execute(c)
    x = rng.integers(-32, 32, size=n)
    for name, p in cm.programs.items():
        m.state.inbuf[p.in_addr:p.in_addr + p.in_len] = 0
        m.state.inbuf[p.in_addr:p.in_addr + n] = x
        for c in p.commands:
            m.execute(c)
        y = m.state.outbuf[p.out_addr:p.out_addr + p.out_len]
        np.testing.assert_array_equal(y, reference_int_product(cm.quant[name], x, p.requant_shift, hw.input_bits))
