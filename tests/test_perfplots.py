"""Plots of the performance simulator (:mod:`mapper.perfplots`): timelines, breakdowns, Pareto, sensitivity map.

Made-up traces and rows with known content: each figure follows the kit's plot rules (``test_plots.check_figure``)
and shows what it was given (bars where the intervals are, one colour per kind and strategy, the boxes of the
sensitivity map exactly where a value is within 10 % of the paper's).
"""

from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.colors import to_rgba  # noqa: E402
from test_plots import check_figure  # noqa: E402

from mapper import perfplots as PP  # noqa: E402
from mapper import plotstyle as S  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _trace():
    """Two tokens x two layers on three tiles: MVMs on tile ports, a REQUANT on the digital unit, a transfer."""
    out = []
    t = 0.0
    for token in (0, 1):
        for layer in ("encoder.0", "encoder.1"):
            for tile in (0, 1, 2):
                out.append({"resource": "port0", "tile": tile, "start_ns": t, "end_ns": t + 100, "kind": "mvm",
                            "layer": layer, "token": token})
            out.append(("digital0", None, t + 100, t + 130, "requant", layer, token))
            out.append({"resource": "link", "tile": None, "start_ns": t + 130, "end_ns": t + 140, "kind": "network",
                        "layer": layer, "token": token})
            t += 150
    return out


def _png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG, path


def test_intervals_accepts_dicts_tuples_and_objects():
    class Iv:
        resource, tile, start_ns, end_ns, kind, layer, token = "p", 3, 5, 9, "mvm", "L", 0
    got = PP.intervals([{"start_ns": 7, "end_ns": 8, "kind": "x"}, ("r", 1, 1.0, 2.0, "k"), Iv()])
    assert [d["start_ns"] for d in got] == [1.0, 5.0, 7.0]
    assert got[0]["layer"] is None and got[1]["tile"] == 3 and got[2]["resource"] is None


def test_gantt_layer_and_token(tmp_path):
    tr = _trace()
    fig = PP.gantt(tr, tmp_path / "layer.png", scope="layer", model="m", hw="h", preset="kit")
    _png(tmp_path / "layer.png")
    check_figure(fig, "gantt layer")
    ax = fig.axes[0]
    lanes = [t.get_text() for t in ax.get_yticklabels()]
    assert lanes == ["tile 0: port0", "tile 1: port0", "tile 2: port0", "chip: digital0", "chip: link"]
    # one layer of one token: 3 MVMs + 1 requant + 1 transfer, all inside 0..140 ns
    bars = [p for c in ax.collections for p in c.get_paths()]
    assert len(bars) == 5
    assert ax.get_xlim()[1] == pytest.approx(140 * 1.01)
    kinds = {c.get_label(): to_rgba(c.get_facecolor()[0]) for c in ax.collections}
    assert kinds == {k: to_rgba(S.step_color(k)) for k in ("mvm", "requant", "network")}
    fig = PP.gantt(tr, tmp_path / "token.png", scope="token")
    assert sum(len(c.get_paths()) for c in fig.axes[0].collections) == 10          # both layers of token 0
    assert PP.gantt([], None) is None


def test_gantt_keeps_the_busiest_lanes():
    tr = [{"resource": "port", "tile": k, "start_ns": 0, "end_ns": k + 1, "kind": "mvm", "layer": 0, "token": 0}
          for k in range(40)]
    fig = PP.gantt(tr, None, max_lanes=5)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [f"tile {k}: port" for k in range(35, 40)]
    assert "5 of 40 lanes" in fig._suptitle.get_text()


def test_breakdown_bars(tmp_path):
    per = {"linear": {"energy": {"adc": 30.0, "static": 10.0}, "area": {"arrays": 2.0, "adc": 1.0}},
           "auto": {"energy": {"adc": 5.0, "static": 5.0, "network": 1.0}, "area": {"arrays": 0.5, "adc": 0.25}}}
    fig = PP.breakdown_bars(per, tmp_path / "b.png", model="m", hw="h")
    _png(tmp_path / "b.png")
    check_figure(fig, "breakdown")
    energy, area = fig.axes[0], fig.axes[1]
    assert [t.get_text() for t in energy.get_xticklabels()] == ["linear", "auto"]      # strategy order
    tops = {}
    for c in energy.containers:
        for j, rect in enumerate(c.patches):
            tops[j] = max(tops.get(j, 0.0), rect.get_y() + rect.get_height())
    assert tops == {0: pytest.approx(40.0), 1: pytest.approx(11.0)}
    assert {c.get_label() for c in area.containers} == {"arrays", "adc"}


def test_pareto_strategies(tmp_path):
    rows = [{"strategy": "linear", "arrays": 4608, "prefill_latency_ns": 1e6, "energy_per_token_nj": 900.0},
            {"strategy": "auto", "arrays": 216, "prefill_latency_ns": 2e6, "energy_per_token_nj": 200.0},
            {"strategy": "auto", "arrays": 432, "prefill_latency_ns": 1.5e6, "energy_per_token_nj": 210.0},
            {"strategy": "auto", "arrays": 864, "prefill_latency_ns": 1.6e6, "energy_per_token_nj": 220.0},
            {"strategy": "sparse", "arrays": 1728, "prefill_latency_ns": None, "energy_per_token_nj": 1.0}]
    fig = PP.pareto_strategies(rows, tmp_path / "p.png")
    _png(tmp_path / "p.png")
    check_figure(fig, "pareto strategies")
    ax = fig.axes[0]
    labels = [c.get_label() for c in ax.collections]
    assert labels == ["linear", "auto"]                      # the row without latency is left out
    step = [ln for ln in ax.get_lines() if to_rgba(ln.get_color()) == to_rgba(S.strategy_color("auto"))]
    assert len(step) == 1 and list(step[0].get_xdata()) == [216, 432]         # 864 arrays is dominated
    assert PP.pareto_strategies(rows[-1:], None) is None


def test_sensitivity_heatmap_boxes_exactly_the_matches(tmp_path):
    figures = {"sparse_speedup": 1.59, "dense_speedup": 1.73}
    rows = [{"assumptions": "a", "sparse_speedup": 1.59 * 1.09, "dense_speedup": 0.5},
            {"assumptions": "b", "sparse_speedup": 1.59 * 0.89, "dense_speedup": 1.73},
            {"assumptions": "c", "sparse_speedup": None, "dense_speedup": 1.73 * 1.11}]
    fig = PP.sensitivity_heatmap(rows, figures, tmp_path / "s.png")
    _png(tmp_path / "s.png")
    check_figure(fig, "sensitivity")
    ax = fig.axes[0]
    boxes = sorted((round(p.get_x() + 0.48), round(p.get_y() + 0.46)) for p in ax.patches)
    assert boxes == [(0, 0), (1, 1)]                 # (column, row): a's sparse and b's dense only
    assert len([t for t in ax.texts if t.get_text().endswith("x")]) == 5


def test_perf_plots_writes_non_empty_pngs(tmp_path):
    report = {"breakdown": {"energy_per_token_nj": {"adc": 3.0, "static": 1.0}, "area_mm2": {"arrays": 1.0}}}
    files = PP.perf_plots(report, _trace(), tmp_path, model="m", hw="h", strategy="auto")
    assert [f.name for f in files] == ["timeline_layer.png", "timeline_token.png", "perf_breakdown.png"]
    for f in files:
        _png(f)
    assert PP.perf_plots({}, None, tmp_path / "none") == []


def test_every_simulator_step_kind_has_its_own_colour():
    """Timelines tell steps apart: each kind of perf.workload has a fixed colour, no two alike."""
    from mapper import plotstyle as S
    from perf.workload import STEP_KINDS
    assert set(STEP_KINDS) <= set(S.STEP_COLORS)
    colours = [S.step_color(k) for k in STEP_KINDS]
    assert len(set(colours)) == len(colours)
