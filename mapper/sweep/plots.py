"""Plots of sweep rows (:mod:`mapper.plotstyle`: the same strategy colours as ``mapper build``).

``pareto.png`` (:func:`pareto_plot`): one panel per front of :func:`mapper.sweep.results.fronts` (latency against
energy, against arrays, against accuracy when weights were given, against area when the configuration reports
one). Every successful point is a dot coloured by its strategy; the front is a black step line through its
points. :func:`reproduce_plots`: ``mapper reproduce``'s tables of the flat machine (arrays and utilisation,
latency and energy against linear, the ADC sweep, auto's budget front).
"""

from __future__ import annotations

from pathlib import Path

from mapper.sweep.results import OBJECTIVES, front_column, fronts

__all__ = ["pareto_plot", "reproduce_plots"]


def _names(rows: list[dict], key: str) -> str | None:
    vals = list(dict.fromkeys(str(r[key]) for r in rows if r.get(key) is not None))
    if not vals:
        return None
    return ", ".join(vals[:3]) + (f" (+{len(vals) - 3})" if len(vals) > 3 else "")


def pareto_plot(rows: list[dict], path: Path, grid_name: str):
    """Write ``path`` (PNG) and return the closed Figure; None when no point succeeded."""
    from mapper import plotstyle as S  # noqa: PLC0415
    ok = [r for r in rows if r["error"] is None]
    pairs = fronts(rows)
    if not ok or not pairs:
        return None
    plt = S.pyplot()
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.9 * len(pairs) + 0.8, 3.6), squeeze=False)
    strategies = [st for st in S.STRATEGY_COLORS if any(r["strategy"] == st for r in ok)]
    for ax, (x, y) in zip(axes[0], pairs, strict=True):
        pts = [r for r in ok if r.get(x) is not None and r.get(y) is not None]
        for st in strategies:
            sel = [r for r in pts if r["strategy"] == st]
            ax.scatter([r[x] for r in sel], [r[y] for r in sel], s=14, alpha=0.75, color=S.strategy_color(st),
                       label=st, linewidths=0)
        col = front_column(x, y)
        on = sorted((r[x], r[y]) for r in pts if r[col])
        if on:
            ax.step([p[0] for p in on], [p[1] for p in on], where="post", color="k", lw=0.9, label="Pareto front")
            ax.scatter([p[0] for p in on], [p[1] for p in on], s=26, facecolors="none", edgecolors="k", lw=0.8)
        for w, key in (("x", x), ("y", y)):
            vals = [r[key] for r in pts]
            if min(vals) > 0 and max(vals) / min(vals) > 20:
                S.log_axis(ax, w)
                if w == "x":                  # 1-2-5 labels of several decades: tilted so they do not touch
                    ax.tick_params(axis="x", labelrotation=35)
        ax.set_xlabel(OBJECTIVES.get(x, x))
        ax.set_ylabel(OBJECTIVES.get(y, y))
        ax.grid(alpha=0.3)
    extra = f"{len(ok)} of {len(rows)} points"
    fig.suptitle(S.title(f"Sweep {grid_name}: Pareto fronts (lower is better)", model=_names(ok, "model"),
                         hw=_names(ok, "config.name"), preset=_names(ok, "cost"), extra=extra))
    fig.tight_layout()
    S.legend_outside(fig, where="right", title="strategy")
    S.save(fig, path)
    return fig


def reproduce_plots(data: dict, out: Path, hw_name: str | None = None) -> dict:
    """Write ``mapper reproduce``'s PNGs of the flat tables (strategies, ADC sweep, auto's front) into ``out``.

    ``data``: :func:`mapper.cli_reproduce.reproduce`'s tables. Returns ``{file name: Figure}`` (closed, still
    drawable).
    """
    import numpy as np  # noqa: PLC0415
    from matplotlib.patches import Patch  # noqa: PLC0415

    from compiler.kinds import Strategy  # noqa: PLC0415
    from mapper import plotstyle as S  # noqa: PLC0415
    from mapper.plots import pareto_axes  # noqa: PLC0415
    plt = S.pyplot()
    adc_sweep = sorted({r["adcs_per_array"] for r in data["adc_sweep"]})
    rows = [r for r in data["strategies"] if r["cost_preset"] == "kit"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    strats = [st for st in S.STRATEGY_COLORS if st in tuple(Strategy)]
    model_text = ", ".join(models)
    figs = {}

    def row(m, st, preset="kit"):
        return next(r for r in data["strategies"] if r["model"] == m and r["strategy"] == st
                    and r["cost_preset"] == preset)

    def finish(fig, name, what, preset, legend_ax, handles=None, labels=None, legend_title="strategy"):
        fig.suptitle(S.title(what, model=model_text, hw=hw_name, preset=preset))
        fig.tight_layout()
        S.legend_outside(legend_ax, handles, labels, where="right", title=legend_title)
        S.save(fig, out / name)
        figs[name] = fig

    # arrays and utilisation per strategy
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    w = 0.8 / len(strats)
    x = np.arange(len(models))
    for i, st in enumerate(strats):
        sel = [row(m, st) for m in models]
        off = x + (i - (len(strats) - 1) / 2) * w
        axes[0].bar(off, [r["arrays"] for r in sel], w, label=st, color=S.strategy_color(st))
        axes[1].bar(off, [100 * r["utilization"] for r in sel], w, label=st, color=S.strategy_color(st))
    for ax, lab in ((axes[0], "arrays used (count, log scale)"), (axes[1], "utilisation (%)")):
        ax.set_xticks(x, models)
        ax.set_xlabel("model")
        ax.set_ylabel(lab)
    S.log_axis(axes[0], "y")
    axes[0].set_title("arrays")
    axes[1].set_ylim(0, 105)
    axes[1].set_title("utilisation")
    finish(fig, "arrays_utilization.png", "Arrays and utilisation per strategy", "kit", axes[1])
    # latency and energy vs linear, both presets
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8))
    shown = [st for st in strats if st != Strategy.LINEAR]
    presets = ("kit", "paper")
    w = 0.8 / (len(shown) * len(presets))
    for k, (key, lab) in enumerate((("speedup_vs_linear", "decode speed-up vs linear (x, log scale)"),
                                    ("energy_gain_vs_linear", "decode energy gain vs linear (x, log scale)"))):
        ax = axes[k]
        for i, st in enumerate(shown):
            for pi, preset in enumerate(presets):
                sel = [row(m, st, preset) for m in models]
                j = i * len(presets) + pi
                ax.bar(x + (j - (len(shown) * len(presets) - 1) / 2) * w, [r[key] for r in sel], w,
                       color=S.strategy_color(st), hatch=S.PRESET_HATCH[preset], edgecolor="white", lw=0.4)
        ax.axhline(1.0, color="k", lw=0.6, ls="--")
        ax.set_xticks(x, models)
        ax.set_xlabel("model")
        ax.set_ylabel(lab)
        S.log_axis(ax, "y")
        ax.set_title("latency" if k == 0 else "energy")
    handles = [Patch(facecolor=S.strategy_color(st), label=st) for st in shown]
    handles += [Patch(facecolor="#dddddd", hatch=S.PRESET_HATCH[p], edgecolor="#555555", label=f"{p} preset")
                for p in presets]
    handles.append(plt.Line2D([], [], color="k", lw=0.6, ls="--", label="linear (= 1)"))
    finish(fig, "latency_energy_vs_linear.png", "Decode latency and energy against linear", "kit and paper",
           axes[1], handles, [h.get_label() for h in handles], legend_title="strategy / preset")
    # ADC sweep
    fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models) + 0.6, 3.4), squeeze=False)
    for j, m in enumerate(models):
        ax = axes[0][j]
        for st in strats:
            sel = [r for r in data["adc_sweep"] if r["model"] == m and r["strategy"] == st]
            ax.plot([r["adcs_per_array"] for r in sel], [r["matmul_latency_ns"] for r in sel], "o-", ms=4,
                    label=st, color=S.strategy_color(st))
        ax.set_xscale("log", base=2)
        ax.set_xticks(adc_sweep, [str(a) for a in adc_sweep])
        S.log_axis(ax, "y")
        ax.grid(alpha=0.3)
        ax.set_xlabel("ADCs per array (count)")
        ax.set_ylabel("matmul latency per token (ns)" if j == 0 else "")
        ax.set_title(m)
    finish(fig, "adc_sweep.png", "Matmul latency against ADCs per array", "kit", axes[0][-1])
    # Pareto
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models) + 0.6, 3.5), squeeze=False)
    for j, m in enumerate(models):
        ax = axes[0][j]
        sel = [r for r in data["pareto"] if r["model"] == m]
        others = {st: (row(m, st)["arrays"], row(m, st)["matmul_latency_ns"]) for st in strats if st != Strategy.AUTO}
        pareto_axes(ax, sel, others, ykey="matmul_latency_ns")
        ax.set_ylabel("matmul latency per token (ns, log)" if j == 0 else "")
        ax.set_title(m)
    finish(fig, "pareto.png", "auto: arrays vs matmul latency (budgets from the minimum up)", "kit", axes[0][-1])
    return figs
