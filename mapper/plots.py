"""Plots of a build: array occupancy, utilisation per layer per strategy, latency/energy breakdown, Pareto front.

Every plot uses :mod:`mapper.plotstyle` (fixed colour per strategy, role and cost component; a title naming the
model, hardware and cost preset; legends outside the data; Agg, fixed dpi, no timestamps, atomic writes) and
returns its matplotlib Figure (closed, still drawable) so that tests can inspect it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compiler.kinds import Strategy
from mapper import plotstyle as S

__all__ = ["occupancy", "utilization_per_layer", "breakdown", "pareto_plot", "build_plots", "save",
           "collapse_layers", "array_layouts"]


def _plt():
    return S.pyplot()


def save(fig, path: Path) -> None:
    """Write ``fig`` (:func:`mapper.plotstyle.save`)."""
    S.save(fig, path)


def _meta(model, hw, preset) -> dict:
    return {"model": model, "hw": getattr(hw, "name", hw), "preset": preset}


# --------------------------------------------------------------------------------------------------- occupancy

def array_layouts(pl) -> list[tuple[int, list[int]]]:
    """Group the arrays by layout (tile rectangles and their matmul roles), in order of first use.

    Returns ``[(representative array, [arrays with that layout]), ...]``: arrays whose tiles have the same
    positions, sizes and roles look the same in the occupancy plot (they hold different layers).
    """
    roles = [g.role for g in pl.matmuls]
    sig: dict[int, list] = {a: [] for a in range(pl.n_arrays)}
    for t in pl.tiles:
        sig.setdefault(t.array, []).append((t.row0, t.rows, t.col0, t.cols, t.step, roles[t.matmul], t.factor))
    groups: dict[tuple, list[int]] = {}
    for a in sorted(sig):
        groups.setdefault(tuple(sorted(sig[a])), []).append(a)
    return [(arrs[0], arrs) for arrs in groups.values()]


def _array_range(arrs: list[int]) -> str:
    if len(arrs) == 1:
        return f"array {arrs[0]}"
    if arrs[-1] - arrs[0] + 1 == len(arrs):
        return f"arrays {arrs[0]}-{arrs[-1]}"
    return f"arrays {arrs[0]}, {arrs[1]}, ... {arrs[-1]}"


def _role_image(pl, array: int, roles_present: list[str]) -> tuple[np.ndarray, float]:
    """RGB image of one array (white: empty; colour: role; dark lines between different matmuls)."""
    from matplotlib.colors import to_rgb  # noqa: PLC0415
    occ = np.zeros((pl.rows, pl.cols), dtype=np.int32)
    for t in pl.tiles:
        if t.array == array:
            occ[t.row0:t.row_end:t.step, t.col0:t.col_end:t.step] = t.matmul + 1
    img = np.ones(occ.shape + (3,))
    used = occ > 0
    ids = np.unique(occ[used])
    for mid in ids:
        role = pl.matmuls[mid - 1].role
        if role not in roles_present:
            roles_present.append(role)
        img[occ == mid] = to_rgb(S.role_color(role))
    edge = np.zeros_like(used)
    edge[:-1, :] |= (occ[:-1, :] != occ[1:, :]) & (occ[:-1, :] > 0) & (occ[1:, :] > 0)
    edge[:, :-1] |= (occ[:, :-1] != occ[:, 1:]) & (occ[:, :-1] > 0) & (occ[:, 1:] > 0)
    img[edge] = img[edge] * 0.45
    return img, float(used.mean())


def occupancy(pl, path: Path | None, max_arrays: int = 8, *, model: str | None = None, hw=None,
              preset: str | None = None):
    """Draw the distinct array layouts cell by cell, coloured by matmul role (white: empty); return the Figure.

    Arrays with the same layout (same tile rectangles and roles, other layers) are drawn once, titled with how
    many arrays share it; at most ``max_arrays`` layouts are drawn.
    """
    from matplotlib.patches import Patch  # noqa: PLC0415
    plt = _plt()
    layouts = array_layouts(pl)
    shown = layouts[:max_arrays]
    n = len(shown)
    cols = min(4, n) or 1
    rows = -(-n // cols) or 1
    size = 2.6 if n > 1 else 3.2
    fig, axes = plt.subplots(rows, cols, figsize=(max(size * cols, 4.2), (size + 0.55) * rows + 0.4),
                             squeeze=False)
    roles_present: list[str] = []
    for i in range(rows * cols):
        ax = axes[i // cols][i % cols]
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        rep, arrs = shown[i]
        img, frac = _role_image(pl, rep, roles_present)
        ax.imshow(img, interpolation="nearest", extent=(0, pl.cols, pl.rows, 0))
        same = f" (x{len(arrs)} same layout)" if len(arrs) > 1 else ""
        ax.set_title(f"{_array_range(arrs)}{same}\n{frac:.0%} of cells used", fontsize=S.FONT["tick"])
        if i // cols == rows - 1 or i + cols >= n:
            ax.set_xlabel(f"column (0-{pl.cols - 1})", fontsize=S.FONT["tick"])
        if i % cols == 0:
            ax.set_ylabel(f"row (0-{pl.rows - 1})", fontsize=S.FONT["tick"])
    order = [r for r in S.ROLE_COLORS if r in roles_present] + [r for r in roles_present if r not in S.ROLE_COLORS]
    handles = [Patch(facecolor=S.role_color(r), edgecolor="none", label=r) for r in order]
    handles.append(Patch(facecolor="white", edgecolor="#555555", label="empty"))
    more = len(layouts) - n
    what = (f"Array occupancy, strategy {pl.strategy}: {pl.n_arrays} array{'s' if pl.n_arrays != 1 else ''}, "
            f"{len(layouts)} distinct layout{'s' if len(layouts) != 1 else ''}"
            + (f" (first {n} drawn)" if more > 0 else ""))
    fig.suptitle(S.title(what, **_meta(model, hw, preset)))
    fig.tight_layout(h_pad=1.2)
    S.legend_outside(axes[0][cols - 1], handles, where="right", title="matmul role")
    fig.text(0.5, 0.0, "colour = matmul role; dark lines separate different matmuls", ha="center", va="top",
             fontsize=S.FONT["note"])
    if path is not None:
        S.save(fig, path)
    return fig


# ----------------------------------------------------------------------------------------- utilisation / layer

def collapse_layers(per: dict) -> list[tuple[list[str], dict[str, float]]]:
    """Merge runs of consecutive layers (same stage) whose utilisation is equal for every strategy.

    Returns ``[(layer names, {strategy: utilisation}), ...]`` in layer order.
    """
    strategies = list(per)
    layers = list(dict.fromkeys(k for st in strategies for k in per[st]))
    out: list[tuple[list[str], dict[str, float]]] = []
    for k in layers:
        vals = {st: float(per[st].get(k, 0.0)) for st in strategies}
        stage = k.rsplit(".", 1)[0]
        if out and out[-1][0][-1].rsplit(".", 1)[0] == stage and all(
                abs(out[-1][1][st] - vals[st]) < 1e-9 for st in strategies):
            out[-1][0].append(k)
        else:
            out.append(([k], vals))
    return out


def _group_label(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    stage = names[0].rsplit(".", 1)[0]
    return f"{stage}.{names[0].rsplit('.', 1)[1]}-{names[-1].rsplit('.', 1)[1]}\n(x{len(names)} identical layers)"


def utilization_per_layer(per: dict, path: Path | None, *, model: str | None = None, hw=None,
                          preset: str | None = None, max_groups: int = 24):
    """Utilisation per layer and strategy; identical consecutive layers are drawn once. Return the Figure.

    Bars (one group per distinct run of layers, one bar per strategy in its fixed colour) while there are at
    most ``max_groups`` groups, else a heatmap (strategies x layers).
    """
    plt = _plt()
    strategies = [st for st in S.STRATEGY_COLORS if st in per] + [st for st in per if st not in S.STRATEGY_COLORS]
    groups = collapse_layers({st: per[st] for st in strategies})
    n_layers = sum(len(g[0]) for g in groups)
    ttl = S.title(f"Array utilisation per layer ({n_layers} layers)", **_meta(model, hw, preset))
    if len(groups) <= max_groups:
        fig, ax = plt.subplots(figsize=(max(5.0, 0.9 + 0.32 * len(groups) * max(1, len(strategies))), 3.6))
        w = 0.8 / max(1, len(strategies))
        x = np.arange(len(groups))
        for i, st in enumerate(strategies):
            vals = [g[1][st] * 100 for g in groups]
            bars = ax.bar(x + (i - (len(strategies) - 1) / 2) * w, vals, w, label=st, color=S.strategy_color(st))
            if len(groups) <= 6:
                ax.bar_label(bars, labels=[f"{v:.0f}" for v in vals], fontsize=S.FONT["note"] - 1, padding=1)
        ax.set_xticks(x)
        labels = [_group_label(g[0]) for g in groups]
        rot = 0 if len(groups) <= 6 else 60
        ax.set_xticklabels(labels, rotation=rot, ha="center" if rot == 0 else "right")
        ax.set_ylabel("utilisation (%)")
        ax.set_xlabel("layer (stage.index)")
        ax.set_ylim(0, 112)
        ax.set_title(ttl)
        S.legend_outside(ax, where="right", title="strategy")
    else:
        layer_names = [k for g in groups for k in g[0]]
        data = np.array([[per[st].get(k, 0.0) * 100 for k in layer_names] for st in strategies])
        fig, ax = plt.subplots(figsize=(min(14, max(6, 0.08 * len(layer_names) + 2)), 0.45 * len(strategies) + 1.8))
        im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
        ax.set_yticks(range(len(strategies)), strategies)
        for lab in ax.get_yticklabels():
            lab.set_color(S.strategy_color(lab.get_text()))
        step = max(1, len(layer_names) // 16)
        ax.set_xticks(range(0, len(layer_names), step), [layer_names[j] for j in range(0, len(layer_names), step)],
                      rotation=60, ha="right")
        ax.set_xlabel("layer (stage.index)")
        ax.set_ylabel("strategy")
        ax.set_title(ttl)
        fig.colorbar(im, ax=ax, label="utilisation (%)", pad=0.02)
    if path is not None:
        S.save(fig, path)
    return fig


# --------------------------------------------------------------------------------------------------- breakdown

def breakdown(main, base, strategy: str, path: Path | None, *, model: str | None = None, hw=None,
              preset: str | None = None):
    """Stacked bars of decode latency and energy by component, the strategy against linear. Return the Figure."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(7.4, 3.6))
    linear = Strategy.LINEAR.value
    names = [linear, str(strategy)] if strategy != linear else [linear]
    reports = [base, main] if strategy != linear else [main]
    seen: dict = {}
    by_name = dict(zip(names, reports))
    for ax, attr, unit in ((axes[0], "latency_components_ns", "decode latency per token (ns)"),
                           (axes[1], "energy_components_nj", "decode energy per token (nJ)")):
        comps = [c for c in getattr(main, attr) if any(getattr(r, attr).get(c, 0.0) for r in reports)]
        S.stacked_bars(ax, names, comps, lambda n, c, attr=attr: getattr(by_name[n], attr).get(c, 0.0), seen)
        ax.set_ylabel(unit)
        for lab in ax.get_xticklabels():
            lab.set_color(S.strategy_color(lab.get_text()))
    axes[0].set_title("latency")
    axes[1].set_title("energy")
    fig.suptitle(S.title(f"Decode cost per token by component: {strategy} vs linear", **_meta(model, hw, preset)))
    fig.tight_layout()
    order = [c for c in main.latency_components_ns if c in seen] + [c for c in seen if c not in
                                                                              main.latency_components_ns]
    order = order[::-1]             # top of the stack first
    S.legend_outside(axes[1], [seen[c] for c in order], order, where="right", title="component")
    if path is not None:
        S.save(fig, path)
    return fig


# ------------------------------------------------------------------------------------------------------ Pareto

def pareto_axes(ax, points: list[dict], others: dict, *, ykey: str = "latency_ns") -> None:
    """Draw auto's budgets (front filled, dominated hollow) and the fixed strategies on ``ax``."""
    col = S.strategy_color(Strategy.AUTO)
    pts = sorted(points, key=lambda p: p["arrays"])
    ax.plot([p["arrays"] for p in pts], [p[ykey] for p in pts], "-", color=col, lw=1.2, zorder=2)
    front = [p for p in pts if p.get("on_front", True)]
    off = [p for p in pts if not p.get("on_front", True)]
    ax.plot([p["arrays"] for p in front], [p[ykey] for p in front], "o", color=col, ms=5, zorder=3,
            label="auto (array budgets, Pareto front)")
    if off:
        ax.plot([p["arrays"] for p in off], [p[ykey] for p in off], "o", color=col, mfc="white", mec=col, ms=5,
                zorder=3, label="auto (dominated budget)")
    for name in S.STRATEGY_COLORS:
        if name in others:
            a, lat = others[name]
            ax.plot([a], [lat], "X" if name == Strategy.LINEAR else "s", color=S.strategy_color(name), ms=7, zorder=4,
                    label=name)
    S.log_axis(ax, "xy")
    ax.grid(alpha=0.3, which="major")
    ax.set_xlabel("arrays used (count, log scale)")


def pareto_plot(points: list[dict], summary: dict, path: Path | None, others: dict | None = None, *,
                model: str | None = None, hw=None, preset: str | None = None):
    """Arrays against decode latency: auto's budgets (front highlighted) and the fixed strategies. Return the Figure."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    o = dict(others or {})
    b = summary.get("baseline")
    if b and Strategy.LINEAR.value not in o:
        o[Strategy.LINEAR.value] = (b["arrays"], b["latency_ns"])
    pareto_axes(ax, points, o)
    ax.set_ylabel("decode latency per token (ns, log scale)")
    ax.set_title(S.title("auto: arrays vs decode latency", **_meta(model, hw, preset)))
    S.legend_outside(ax, where="right", title="strategy")
    if path is not None:
        S.save(fig, path)
    return fig


# ------------------------------------------------------------------------------------------------------- build

def build_plots(result, folder: Path | None) -> dict:
    """Draw every plot of a :class:`mapper.pipeline.BuildResult` into ``folder`` (None: draw only).

    Returns ``{file name: Figure}``.
    """
    meta = {"model": result.model, "hw": result.hw.name, "preset": result.cost_preset}
    folder = None if folder is None else Path(folder)

    def at(name):
        return None if folder is None else folder / name

    figs = {
        "occupancy.png": occupancy(result.main.placement, at("occupancy.png"), **meta),
        "utilization_per_layer.png": utilization_per_layer(result.per_strategy_layers,
                                                           at("utilization_per_layer.png"), **meta),
        "breakdown.png": breakdown(result.main.cost, result.baseline.cost, result.strategy, at("breakdown.png"),
                                   **meta),
    }
    if result.pareto:
        others = {str(k): (v.arrays, v.latency_ns) for k, v in sorted(result.compare.items())
                  if k in (Strategy.SPARSE, Strategy.DENSE)}
        figs["pareto.png"] = pareto_plot([p.to_dict() for p in result.pareto], result.report()["summary"],
                                         at("pareto.png"), others, **meta)
    return figs
