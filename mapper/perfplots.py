"""Plots of the chip performance simulator (:mod:`perf`): timelines, breakdowns, Pareto plots, sensitivity map.

Every plot follows :mod:`mapper.plotstyle` (one colour per strategy and per component, a title naming model,
hardware and preset, legends outside the data, Agg, fixed dpi, atomic PNG writes) and returns its Figure
(closed, still drawable) so tests can inspect it. Inputs are plain data (``PerfReport.to_dict()``, trace
intervals, rows of dicts), so the module imports neither :mod:`perf` nor the build pipeline.

- :func:`gantt` -- resource occupancy per tile over time (one layer, or a whole token), from trace intervals.
- :func:`breakdown_bars` -- energy per token and chip area by component, one stacked bar per strategy.
- :func:`pareto_strategies` -- arrays vs latency and latency vs energy, every strategy's points and its front.
- :func:`sensitivity_heatmap` -- each assumption set against each paper figure (ratio to the paper's value).
- :func:`perf_plots` -- what ``mapper build`` draws from one report: both timelines and the breakdown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mapper import plotstyle as S

__all__ = ["TRACE_FIELDS", "intervals", "gantt", "breakdown_bars", "pareto_strategies", "sensitivity_heatmap",
           "perf_plots", "energy_components", "area_components"]

#: Fields of one trace interval (a dict, a tuple in this order, or an object with these attributes).
TRACE_FIELDS = ("resource", "tile", "start_ns", "end_ns", "kind", "layer", "token")
#: Most lanes one timeline draws (the busiest tiles first; the title says how many are left out).
MAX_LANES = 28


def intervals(trace: Iterable) -> list[dict]:
    """Return the trace as dicts of :data:`TRACE_FIELDS` (missing fields None), in start order."""
    out = []
    for iv in trace or ():
        if isinstance(iv, Mapping):
            d = {k: iv.get(k) for k in TRACE_FIELDS}
        elif isinstance(iv, (tuple, list)):
            d = dict(zip(TRACE_FIELDS, list(iv) + [None] * (len(TRACE_FIELDS) - len(iv)), strict=False))
        else:
            d = {k: getattr(iv, k, None) for k in TRACE_FIELDS}
        if d["start_ns"] is None or d["end_ns"] is None:
            continue
        d["start_ns"], d["end_ns"] = float(d["start_ns"]), float(d["end_ns"])
        out.append(d)
    out.sort(key=lambda d: (d["start_ns"], d["end_ns"]))
    return out


def _lane(d: dict) -> str:
    res = str(d["resource"] if d["resource"] is not None else d["kind"])
    return f"tile {d['tile']}: {res}" if d["tile"] is not None else f"chip: {res}"


def _lane_key(lane: str) -> tuple:
    head, _, res = lane.partition(": ")
    if head.startswith("tile "):
        return (0, int(head[5:]) if head[5:].isdigit() else 0, res)
    return (1, 0, res)


def _time_unit(span_ns: float) -> tuple[float, str]:
    for scale, unit in ((1e6, "ms"), (1e3, "us")):
        if span_ns >= 5 * scale:
            return scale, unit
    return 1.0, "ns"


def gantt(trace: Iterable, path: Path | None, *, scope: str = "token", layer: Any = None, token: Any = None,
          model: str | None = None, hw: str | None = None, preset: str | None = None, strategy: str | None = None,
          max_lanes: int = MAX_LANES):
    """Draw resource occupancy over time, one lane per (tile, resource), bars coloured by kind; return the Figure.

    ``scope`` ``"layer"``: only the intervals of ``layer`` (default: the first layer in the trace) of ``token``
    (default: the first token); ``"token"``: every layer of ``token``. At most ``max_lanes`` lanes are drawn (the
    busiest; chip-wide resources first). None when the trace holds no interval of that scope.
    """
    ivs = intervals(trace)
    if token is None and ivs:
        token = next((d["token"] for d in ivs if d["token"] is not None), None)
    ivs = [d for d in ivs if token is None or d["token"] in (None, token)]
    if scope == "layer":
        if layer is None:
            layer = next((d["layer"] for d in ivs if d["layer"] is not None), None)
        ivs = [d for d in ivs if layer is None or d["layer"] == layer]
    if not ivs:
        return None
    busy: dict[str, float] = {}
    for d in ivs:
        lane = _lane(d)
        busy[lane] = busy.get(lane, 0.0) + d["end_ns"] - d["start_ns"]
    lanes = sorted(busy, key=lambda ln: (_lane_key(ln)[0] != 1, -busy[ln], _lane_key(ln)))[:max_lanes]
    lanes = sorted(lanes, key=_lane_key)
    left_out = len(busy) - len(lanes)
    t0 = min(d["start_ns"] for d in ivs)
    span = max(d["end_ns"] for d in ivs) - t0
    scale, unit = _time_unit(span)
    kinds = list(dict.fromkeys(str(d["kind"]) for d in ivs))
    plt = S.pyplot()
    fig, ax = plt.subplots(figsize=(8.6, 0.9 + 0.26 * len(lanes)))
    row = {ln: i for i, ln in enumerate(lanes)}
    handles = {}
    for kind in kinds:
        by_lane: dict[str, list] = {}
        for d in ivs:
            ln = _lane(d)
            if str(d["kind"]) == kind and ln in row:
                by_lane.setdefault(ln, []).append(((d["start_ns"] - t0) / scale,
                                                   max((d["end_ns"] - d["start_ns"]) / scale, span / scale * 1e-4)))
        for ln, bars in by_lane.items():
            h = ax.broken_barh(bars, (row[ln] - 0.4, 0.8), facecolors=S.step_color(kind), edgecolor="none",
                               label=kind)
            handles.setdefault(kind, h)
    ax.set_yticks(range(len(lanes)), lanes)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlim(0, span / scale * 1.01 or 1)
    ax.set_xlabel(f"time since the first interval ({unit})")
    ax.set_ylabel("resource (tile: port / unit)")
    ax.grid(alpha=0.3, axis="x")
    what = (f"Resource occupancy, layer {layer}" if scope == "layer" else "Resource occupancy, one token")
    what += f" (token {token})" if token is not None else ""
    what += f", {strategy}" if strategy else ""
    extra = f"{len(lanes)} of {len(busy)} lanes (busiest)" if left_out > 0 else None
    fig.suptitle(S.title(what, model=model, hw=hw, preset=preset, extra=extra))
    fig.tight_layout()
    S.legend_outside(ax, list(handles.values()), list(handles), where="right", title="kind")
    if path is not None:
        S.save(fig, path)
    return fig


def _components(block: Any) -> dict[str, float]:
    """A ``{component: value}`` dict from a breakdown (a dict, or a list of ``{"component", "value"}`` rows)."""
    if isinstance(block, Mapping):
        return {str(k): float(v) for k, v in block.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {}


def energy_components(report: Mapping) -> dict[str, float]:
    """Energy per token by component (nJ) from a ``PerfReport.to_dict()``: its energy breakdown per token, with
    static energy as one component."""
    bd = report.get("breakdown", {}) if isinstance(report.get("breakdown"), Mapping) else {}
    for key in ("energy_per_token_nj", "energy_nj", "energy"):
        if key in bd:
            return _components(bd[key])
    for key in ("energy_per_token_components_nj", "energy_components_nj"):
        if key in report:
            return _components(report[key])
    return {}


def area_components(report: Mapping) -> dict[str, float]:
    """Chip area by component (mm^2) from a ``PerfReport.to_dict()``."""
    bd = report.get("breakdown", {}) if isinstance(report.get("breakdown"), Mapping) else {}
    for key in ("area_mm2", "area"):
        if key in bd:
            return _components(bd[key])
    for key in ("area_breakdown_mm2", "area_components_mm2", "area_breakdown"):
        if key in report:
            return _components(report[key])
    return {}


def breakdown_bars(per_strategy: Mapping[str, Mapping], path: Path | None, *, model: str | None = None,
                   hw: str | None = None, preset: str | None = None, note: str | None = None):
    """Stacked bars of energy per token (nJ) and chip area (mm^2) by component, one bar per strategy.

    ``per_strategy``: ``{strategy: {"energy": {component: nJ}, "area": {component: mm2}}}`` (or a
    ``PerfReport.to_dict()`` per strategy). Returns the Figure.
    """
    plt = S.pyplot()
    names = [st for st in S.STRATEGY_COLORS if st in per_strategy] + [st for st in per_strategy
                                                                      if st not in S.STRATEGY_COLORS]
    parts = {}
    for st in names:
        r = per_strategy[st]
        parts[st] = {"energy": _components(r["energy"]) if "energy" in r else energy_components(r),
                     "area": _components(r["area"]) if "area" in r else area_components(r)}
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 2.6 + 1.1 * len(names)), 3.8))
    seen: dict = {}
    for ax, key, label in ((axes[0], "energy", "energy per token (nJ)"), (axes[1], "area", "chip area (mm^2)")):
        comps = list(dict.fromkeys(c for st in names for c, v in parts[st][key].items() if v))
        S.stacked_bars(ax, names, comps, lambda st, c, key=key: parts[st][key].get(c, 0.0), seen, fmt=",.3g",
                       headroom=1.14)
        ax.set_ylabel(label)
        ax.set_title(key)
        for lab in ax.get_xticklabels():
            lab.set_color(S.strategy_color(lab.get_text()))
    fig.suptitle(S.title("Energy per token and chip area by component", model=model, hw=hw, preset=preset,
                         extra=note))
    fig.tight_layout()
    order = list(seen)[::-1]
    S.legend_outside(axes[1], [seen[c] for c in order], order, where="right", title="component")
    if path is not None:
        S.save(fig, path)
    return fig


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats in both coordinates (both minimised), by x."""
    out, best = [], None
    for x, y in sorted(points):
        if best is None or y < best:
            out.append((x, y))
            best = y
    return out


def pareto_strategies(rows: list[Mapping], path: Path | None, *, latency: str = "prefill_latency_ns",
                      energy: str = "energy_per_token_nj", arrays: str = "arrays", model: str | None = None,
                      hw: str | None = None, preset: str | None = None, title: str | None = None):
    """Arrays vs latency and latency vs energy: every row a dot in its strategy's colour, each strategy's front
    a step line. Rows lacking a figure are skipped; returns the Figure (None when no row has all three)."""
    keys = (latency, energy, arrays)
    ok = [r for r in rows if all(isinstance(r.get(k), (int, float)) and r.get(k) > 0 for k in keys)]
    if not ok:
        return None
    plt = S.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.4, 3.8))
    strategies = [st for st in S.STRATEGY_COLORS if any(r.get("strategy") == st for r in ok)]
    lab = {latency: _label(latency), energy: _label(energy), arrays: "arrays on the chip (count, log scale)"}
    for ax, (x, y) in zip(axes, ((arrays, latency), (latency, energy)), strict=True):
        for st in strategies:
            pts = [(float(r[x]), float(r[y])) for r in ok if r.get("strategy") == st]
            col = S.strategy_color(st)
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=col, alpha=0.8, linewidths=0, label=st)
            fr = _front(pts)
            if len(fr) > 1:
                ax.step([p[0] for p in fr], [p[1] for p in fr], where="post", color=col, lw=1.0)
        S.log_axis(ax, "xy")
        ax.tick_params(axis="x", labelrotation=35)        # 1-2-5 labels of several decades do not touch
        ax.grid(alpha=0.3)
        ax.set_xlabel(lab[x])
        ax.set_ylabel(lab[y])
    axes[0].set_title("arrays vs latency")
    axes[1].set_title("latency vs energy")
    fig.suptitle(S.title(title or "Latency, arrays and energy per strategy (lower is better; lines: fronts)",
                         model=model, hw=hw, preset=preset))
    fig.tight_layout()
    S.legend_outside(axes[1], where="right", title="strategy")
    if path is not None:
        S.save(fig, path)
    return fig


def _label(key: str) -> str:
    labels = {"prefill_latency_ns": "prefill latency per sequence (ns, log scale)",
              "ttft_ns": "time to first token (ns, log scale)",
              "decode_latency_ns": "decode latency per token (ns, log scale)",
              "energy_per_token_nj": "energy per token (nJ, log scale)",
              "latency_ns": "decode latency per token (ns, log scale)",
              "energy_nj": "decode energy per token (nJ, log scale)"}
    return labels.get(key, key)


def sensitivity_heatmap(rows: list[Mapping], figures: Mapping[str, float], path: Path | None, *,
                        label: str = "assumptions", tolerance: float = 0.10, model: str | None = None,
                        hw: str | None = None, max_rows: int = 60):
    """Each assumption set (a row, named by ``row[label]``) against each paper figure: colour = log2 of the
    kit's value over the paper's, text = the kit's value, a box where it is within ``tolerance``.

    ``figures``: ``{column: paper value}``; a row's ``column`` holds the kit's value (None: not computed).
    Returns the Figure.
    """
    plt = S.pyplot()
    cols = list(figures)
    shown = rows[:max_rows]
    data = np.full((len(shown), len(cols)), np.nan)
    for i, r in enumerate(shown):
        for j, c in enumerate(cols):
            v = r.get(c)
            if isinstance(v, (int, float)) and v > 0:
                data[i, j] = np.log2(v / figures[c])
    fig, ax = plt.subplots(figsize=(2.4 + 1.5 * len(cols) + 2.2, 1.3 + 0.24 * len(shown)))
    lim = max(1.0, float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0)
    im = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                   interpolation="nearest")
    for i, r in enumerate(shown):
        for j, c in enumerate(cols):
            v = r.get(c)
            if not isinstance(v, (int, float)):
                continue
            hit = abs(v / figures[c] - 1) <= tolerance
            ax.text(j, i, f"{v:.2f}x", ha="center", va="center", fontsize=S.FONT["note"] - 1,
                    fontweight="bold" if hit else "normal", color="k")
            if hit:
                ax.add_patch(plt.Rectangle((j - 0.48, i - 0.46), 0.96, 0.92, fill=False, lw=1.4, ec="k"))
    ax.set_xticks(range(len(cols)), [f"{c}\n(paper {figures[c]:g}x)" for c in cols])
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(shown)), [str(r.get(label)) for r in shown])
    ax.set_xlabel("paper headline figure (kit value; box: within "
                  f"{tolerance:.0%} of the paper)")
    ax.set_ylabel("assumption set")
    fig.colorbar(im, ax=ax, label="log2(kit / paper)", pad=0.02)
    more = f"first {len(shown)} of {len(rows)} sets" if len(rows) > len(shown) else None
    fig.suptitle(S.title("Sensitivity: which assumptions reproduce the paper's figures", model=model, hw=hw,
                         extra=more))
    fig.tight_layout()
    if path is not None:
        S.save(fig, path)
    return fig


def perf_plots(report_dict: Mapping, trace: Iterable | None, out_dir: Path, *, model: str | None = None,
               hw: str | None = None, preset: str | None = None, strategy: str | None = None) -> list[Path]:
    """Draw what ``mapper build`` shows of one simulated strategy into ``out_dir``; return the files written.

    ``timeline_layer.png`` and ``timeline_token.png`` (from ``trace``, when it holds intervals) and
    ``perf_breakdown.png`` (energy per token and area by component, from ``report_dict``:
    ``PerfReport.to_dict()``).
    """
    out_dir = Path(out_dir)
    written = []
    ivs = intervals(trace or ())
    meta = {"model": model, "hw": hw, "preset": preset}
    for scope, name in (("layer", "timeline_layer.png"), ("token", "timeline_token.png")):
        fig = gantt(ivs, out_dir / name, scope=scope, strategy=strategy, **meta) if ivs else None
        if fig is not None:
            written.append(out_dir / name)
    parts = {"energy": energy_components(report_dict), "area": area_components(report_dict)}
    if parts["energy"] or parts["area"]:
        breakdown_bars({strategy or "strategy": parts}, out_dir / "perf_breakdown.png", **meta)
        written.append(out_dir / "perf_breakdown.png")
    return written
