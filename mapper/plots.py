"""Plots of a build: array occupancy, utilisation per layer per strategy, latency/energy breakdown, Pareto front.

Matplotlib with the Agg backend, fixed sizes and no timestamps in the files, so the PNGs are reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["occupancy", "utilization_per_layer", "breakdown", "pareto_plot", "save"]

_META = {"Software": "cim-monarch-kit mapper.plots"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["svg.hashsalt"] = "kit"
    return plt


def save(fig, path: Path) -> None:
    fig.savefig(path, dpi=100, metadata=_META)
    _plt().close(fig)


def occupancy(pl, path: Path, max_arrays: int = 16) -> None:
    """Draw the first arrays cell by cell, coloured by the matmul that owns each cell (white: empty)."""
    plt = _plt()
    n = min(pl.n_arrays, max_arrays)
    cols = min(4, n) or 1
    rows = -(-n // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    cmap = plt.get_cmap("tab20")
    for i in range(rows * cols):
        ax = axes[i // cols][i % cols]
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        occ = pl.occupancy(i)
        img = np.ones(occ.shape + (3,))
        used = occ > 0
        colors = np.array([cmap(k % 20)[:3] for k in range(20)])
        img[used] = colors[(occ[used] - 1) % 20]
        ax.imshow(img, interpolation="nearest")
        ax.set_title(f"array {i}: {used.mean():.0%}", fontsize=8)
    fig.suptitle(f"{pl.strategy}: occupancy of the first {n} of {pl.n_arrays} arrays (colour = matmul)",
                 fontsize=9)
    fig.tight_layout()
    save(fig, path)


def utilization_per_layer(per: dict, path: Path) -> None:
    """Bar chart: utilisation per layer, one bar group per layer, one bar per strategy."""
    plt = _plt()
    strategies = list(per)
    layers = list(next(iter(per.values())).keys()) if per else []
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(layers) * len(strategies) / 2), 3.5))
    w = 0.8 / max(1, len(strategies))
    x = np.arange(len(layers))
    for i, st in enumerate(strategies):
        ax.bar(x + i * w, [per[st].get(k, 0.0) * 100 for k in layers], w, label=st)
    ax.set_xticks(x + 0.4 - w / 2)
    ax.set_xticklabels(layers, rotation=90, fontsize=6)
    ax.set_ylabel("utilisation (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=len(strategies))
    ax.set_title("array utilisation per layer")
    fig.tight_layout()
    save(fig, path)


def breakdown(main, base, strategy: str, path: Path) -> None:
    """Stacked bars of decode latency and energy by component, for the strategy and the linear baseline."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    for ax, attr, unit in ((axes[0], "latency_components_ns", "latency per token (ns)"),
                           (axes[1], "energy_components_nj", "energy per token (nJ)")):
        comps = list(getattr(main, attr))
        bottom = np.zeros(2)
        for c in comps:
            vals = np.array([getattr(base, attr)[c], getattr(main, attr)[c]])
            ax.bar(["linear", strategy], vals, bottom=bottom, label=c)
            bottom += vals
        ax.set_ylabel(unit)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def pareto_plot(points: list[dict], summary: dict, path: Path, others: dict | None = None) -> None:
    """Arrays against decode latency: auto's budgets (front highlighted) and the fixed strategies."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p["arrays"] for p in points]
    ys = [p["latency_ns"] for p in points]
    ax.plot(xs, ys, "o-", label="auto (budgets)")
    for name, (a, lat) in (others or {}).items():
        ax.plot([a], [lat], "s", label=name)
    b = summary.get("baseline")
    if b:
        ax.plot([b["arrays"]], [b["latency_ns"]], "x", label="linear")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("arrays")
    ax.set_ylabel("decode latency per token (ns)")
    ax.legend(fontsize=7)
    ax.set_title("auto: arrays vs latency")
    fig.tight_layout()
    save(fig, path)
