"""Plots the kit writes: a title, labelled axes with units, legends off the data, one colour per strategy.

Shape-only builds of tiny-bert and bert-large (``mapper.pipeline.build`` with ``BuildOptions(weights=False)``),
the reproduce plots of one model, and the two bench plots on small made-up rows; every figure is drawn with Agg
and inspected.
"""

import sys
from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.colors import to_rgba  # noqa: E402

from compiler.place import STRATEGIES  # noqa: E402
from mapper import plots as P  # noqa: E402
from mapper import plotstyle as S  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UNITS = {"latency": "(ns", "energy per token": "(nJ", "utilisation": "(%)"}


def _data_axes(fig):
    """Axes that hold data (not colour bars or switched-off grid cells)."""
    return [ax for ax in fig.axes if ax.axison and ax.get_label() != "<colorbar>"]


def _legends(fig):
    return [lg for lg in [ax.get_legend() for ax in fig.axes] + list(fig.legends) if lg is not None]


def check_figure(fig, name: str) -> None:
    """The rules every plot of the kit follows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)          # a closed figure keeps a bare canvas
    canvas.draw()
    renderer = canvas.get_renderer()
    axes = _data_axes(fig)
    assert axes, name
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    for ax in axes:
        assert ax.get_title() or suptitle, f"{name}: an axes without title and no suptitle"
    # labels: every data axes has an x label and a y label, or shares the row/column of one that has
    xl = [ax.get_xlabel() for ax in axes]
    yl = [ax.get_ylabel() for ax in axes]
    assert any(xl) and any(yl), f"{name}: axis labels missing"
    for ax in axes:
        ss = ax.get_subplotspec()
        row = [a for a in axes if a.get_subplotspec() and a.get_subplotspec().rowspan == ss.rowspan]
        col = [a for a in axes if a.get_subplotspec() and a.get_subplotspec().colspan == ss.colspan]
        assert ax.get_xlabel() or any(a.get_xlabel() for a in col), f"{name}: no x label in a column"
        assert ax.get_ylabel() or any(a.get_ylabel() for a in row), f"{name}: no y label in a row"
    for lab in xl + yl:
        for word, unit in UNITS.items():
            if word in lab and "vs linear" not in lab:
                assert unit in lab, f"{name}: {lab!r} lacks its unit {unit}"
    # legends lie outside every data axes
    for lg in _legends(fig):
        lb = lg.get_window_extent(renderer)
        for ax in axes:
            ab = ax.get_window_extent(renderer)
            assert not lb.overlaps(ab), f"{name}: legend {lb} overlaps axes {ab}"
    # font sizes readable at the written size
    for ax in axes:
        for t in ax.get_xticklabels() + ax.get_yticklabels():
            if t.get_text():
                assert t.get_fontsize() >= 6.5, f"{name}: tick label {t.get_text()!r} too small"


def strategy_colours(fig) -> dict[str, tuple]:
    """``{strategy: rgba}`` of every line/bar labelled with a strategy name (``auto (...)`` counts as auto)."""
    out: dict[str, set] = {}
    for ax in fig.axes:
        for ln in ax.get_lines():
            st = ln.get_label().split(" ")[0]
            if st in STRATEGIES:
                out.setdefault(st, set()).add(to_rgba(ln.get_color()))
        for c in ax.containers:
            st = c.get_label()
            if st in STRATEGIES:
                out.setdefault(st, set()).update(to_rgba(p.get_facecolor()) for p in c.patches)
    return out


def assert_strategy_colours(fig, name, expect=None):
    cols = strategy_colours(fig)
    assert set(expect or ()) <= set(cols), f"{name}: strategies drawn {sorted(cols)}"
    for st, c in cols.items():
        assert c == {to_rgba(S.STRATEGY_COLORS[st])}, f"{name}: {st} drawn in {c}"


def test_style_covers_every_strategy_and_role():
    from mapper.models import ROLES
    assert tuple(S.STRATEGY_COLORS) == tuple(STRATEGIES)
    assert len(set(S.STRATEGY_COLORS.values())) == len(STRATEGIES)
    assert set(S.ROLE_COLORS) == set(ROLES) and len(set(S.ROLE_COLORS.values())) == len(ROLES)
    assert S.strategy_color("auto (budgets)") == S.STRATEGY_COLORS["auto"]
    t = S.title("what", model="m", hw="h", preset="kit")
    assert "m" in t and "h" in t and "kit" in t


def test_plotstyle_imports_no_torch():
    import subprocess
    code = "import sys, mapper.plotstyle, mapper.plots; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module", params=["tiny-bert", "bert-large"])
def build_figs(request, tmp_path_factory):
    from mapper.pipeline import BuildOptions, build
    result = build(request.param, options=BuildOptions(weights=False))
    folder = tmp_path_factory.mktemp(request.param)
    figs = P.build_plots(result, folder)
    return request.param, result, folder, figs


def test_build_plots_follow_the_style(build_figs):
    model, result, folder, figs = build_figs
    assert set(figs) == {"occupancy.png", "utilization_per_layer.png", "breakdown.png", "pareto.png"}
    for name, fig in figs.items():
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        check_figure(fig, f"{model}/{name}")
        text = fig._suptitle.get_text() if fig._suptitle is not None else fig.axes[0].get_title()
        assert model in text and result.hw.name in text and "kit" in text, (name, text)
    assert_strategy_colours(figs["pareto.png"], "build pareto", expect=STRATEGIES)
    assert_strategy_colours(figs["utilization_per_layer.png"], "utilisation", expect=STRATEGIES)


def test_occupancy_legend_names_roles(build_figs):
    model, result, _, figs = build_figs
    fig = figs["occupancy.png"]
    (lg,) = _legends(fig)
    labels = [t.get_text() for t in lg.get_texts()]
    roles = {g.role for g in result.main.placement.matmuls}
    assert roles <= set(labels) and "empty" in labels
    for h, lab in zip(lg.legend_handles, labels):
        if lab in S.ROLE_COLORS:
            assert to_rgba(h.get_facecolor()) == to_rgba(S.ROLE_COLORS[lab])


def test_large_model_layers_collapse(build_figs):
    model, result, _, figs = build_figs
    ax = _data_axes(figs["utilization_per_layer.png"])[0]
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    n = result.spec.n_layers if hasattr(result.spec, "n_layers") else None
    if model == "bert-large":
        assert len(ticks) == 1 and "x24 identical layers" in ticks[0], ticks
        occ = _data_axes(figs["occupancy.png"])
        assert any("same layout" in ax.get_title() for ax in occ)
    assert len(ticks) <= 24, n


def test_collapse_and_heatmap():
    per = {"linear": {f"encoder.{i}": 1.0 for i in range(40)},
           "auto": {f"encoder.{i}": (0.5 if i % 2 else 0.7) for i in range(40)}}
    groups = P.collapse_layers(per)
    assert len(groups) == 40
    fig = P.utilization_per_layer(per, None, model="m", hw="h", preset="kit")
    check_figure(fig, "heatmap")
    assert any(im for ax in fig.axes for im in ax.get_images())
    same = {"linear": {f"decoder.{i}": 1.0 for i in range(6)}, "auto": {f"decoder.{i}": 0.5 for i in range(6)}}
    assert [len(g[0]) for g in P.collapse_layers(same)] == [6]
    matplotlib.pyplot.close("all")


def test_reproduce_plots_share_the_build_colours(tmp_path):
    from mapper.cli_reproduce import _plots, reproduce
    data = reproduce("paper-256", nblocks=4, models=("tiny-bert",))
    figs = _plots(data, tmp_path, hw="paper-256")
    assert set(figs) == {"arrays_utilization.png", "latency_energy_vs_linear.png", "adc_sweep.png", "pareto.png"}
    for name, fig in figs.items():
        assert (tmp_path / name).is_file()
        check_figure(fig, f"reproduce/{name}")
        assert "paper-256" in fig._suptitle.get_text()
    assert_strategy_colours(figs["pareto.png"], "reproduce pareto", expect=STRATEGIES)
    assert_strategy_colours(figs["adc_sweep.png"], "adc sweep", expect=STRATEGIES)
    assert_strategy_colours(figs["arrays_utilization.png"], "arrays", expect=STRATEGIES)


def _bench(name):
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_e2e_plot_names_each_noise_setting(tmp_path):
    E = _bench("bench_e2e_minilm")
    rows = []
    for src in ("projection", "calibrated"):
        for nb in (2, 4):
            for adc, rule in (("lossless", "-"), ("8", "calib"), ("8", "bound"), ("5", "calib"), ("5", "bound")):
                rows.append({"nblocks": nb, "factors": src, "adc_bits": adc, "adc_rule": rule, "noise": "none",
                             "cosine_mean": 0.5, "monarch_float_cosine_mean": 0.6, "hw": "paper-256",
                             "strategy": "auto"})
            for noise in ("prog=0.01,read=0", "prog=0,read=0.001"):
                rows.append({"nblocks": nb, "factors": src, "adc_bits": "8", "adc_rule": "calib", "noise": noise,
                             "cosine_mean": 0.3, "monarch_float_cosine_mean": 0.6, "hw": "paper-256",
                             "strategy": "auto"})
    fig = E.plot(rows, tmp_path / "e2e.png")
    check_figure(fig, "e2e")
    (lg,) = _legends(fig)
    labels = [t.get_text() for t in lg.get_texts()]
    assert "noise prog=0.01,read=0" in labels and "noise prog=0,read=0.001" in labels
    markers = {h.get_marker() for h, lab in zip(lg.legend_handles, labels) if lab.startswith("noise")}
    assert len(markers) == 2


def test_d2s_plot(tmp_path):
    D = _bench("bench_minilm_d2s")
    rows = [{"nblocks": k, "projection_cosine": 0.5 / k, "calibrated_cosine": 0.9 - 0.05 * k,
             "projection_spearman": 0.6 / k, "calibrated_spearman": 0.9 - 0.04 * k} for k in (2, 4, 8)]
    fig = D._plot(rows, tmp_path / "d2s.png")
    check_figure(fig, "d2s")
    assert (tmp_path / "d2s.png").is_file()
