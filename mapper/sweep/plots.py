"""Pareto plots of a sweep (:mod:`mapper.plotstyle`: the same strategy colours as ``mapper build``).

``pareto.png``: one panel per front of :func:`mapper.sweep.results.fronts` (latency against energy, against
arrays, against accuracy when weights were given, against area when the configuration reports one). Every
successful point is a dot coloured by its strategy; the front is a black step line through its points.
"""

from __future__ import annotations

from pathlib import Path

from mapper.sweep.results import OBJECTIVES, front_column, fronts

__all__ = ["pareto_plot"]


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

