"""One look for every plot the kit writes: colours, titles, legends, font sizes and the PNG writer.

numpy and matplotlib only (no torch), the Agg backend, fixed dpi and no timestamps, so a PNG is reproducible.

- :data:`STRATEGY_COLORS` -- one fixed colour per placement strategy (:class:`compiler.kinds.Strategy`); the
  same strategy has the same colour in ``mapper build``'s and ``mapper reproduce``'s plots.
- :data:`ROLE_COLORS` -- one fixed colour per matmul role (:data:`mapper.models.ROLES`).
- :data:`COMPONENT_COLORS` -- one fixed colour per latency/energy component of the cost model.
- :func:`pyplot` -- ``matplotlib.pyplot`` with the Agg backend and the kit's font sizes.
- :func:`title` -- "what -- model, hardware, preset" in one place.
- :func:`legend_outside` -- a legend right of (or below) the axes, never over the data.
- :func:`save` -- write a figure as PNG atomically (``bbox_inches="tight"``, :data:`DPI`), then close it.
"""

from __future__ import annotations

import io
from pathlib import Path

from compiler.kinds import Strategy

__all__ = ["STRATEGY_COLORS", "ROLE_COLORS", "COMPONENT_COLORS", "STEP_COLORS", "step_color", "PRESET_HATCH",
           "NOISE_MARKERS", "DPI", "FONT", "strategy_color", "role_color", "component_color", "noise_marker",
           "pyplot", "title", "legend_outside", "log_axis", "save", "render_png"]

#: Dots per inch of every PNG the kit writes.
DPI = 110
#: Font sizes (points) that stay readable at the written size.
FONT = {"base": 9, "title": 10, "suptitle": 11, "label": 9, "tick": 8, "legend": 8, "note": 8}
_META = {"Software": "cim-monarch-kit mapper.plotstyle"}


def _roles() -> tuple[str, ...]:
    from mapper.models import ROLES  # noqa: PLC0415  (torch is imported lazily there)
    return tuple(ROLES)


# Colour-blind-friendly (Okabe-Ito / Tableau) picks: linear is the grey baseline.
_STRATEGY_PALETTE = {Strategy.LINEAR: "#7f7f7f", Strategy.SPARSE: "#0072b2", Strategy.DENSE: "#e69f00",
                     Strategy.AUTO: "#009e73"}
_SPARE = ("#cc79a7", "#d55e00", "#56b4e9", "#f0e442", "#000000")
#: Fixed colour per strategy, keyed by the :class:`~compiler.kinds.Strategy` names (in that order).
STRATEGY_COLORS: dict[str, str] = {
    st.value: _STRATEGY_PALETTE.get(st, _SPARE[i % len(_SPARE)]) for i, st in enumerate(Strategy)}

_ROLE_PALETTE = {
    "q": "#1f77b4", "k": "#aec7e8", "v": "#17becf", "o": "#9edae5", "qkv": "#393b79",
    "ffn_up": "#ff7f0e", "ffn_down": "#d62728", "ffn_gate": "#ffbb78",
    "cross_q": "#2ca02c", "cross_k": "#98df8a", "cross_v": "#bcbd22", "cross_o": "#dbdb8d",
    "embed": "#9467bd", "lm_head": "#8c564b",
}
#: Fixed colour per matmul role, keyed by :data:`mapper.models.ROLES`.
ROLE_COLORS: dict[str, str] = {r: _ROLE_PALETTE.get(r, "#e377c2") for r in _roles()}

#: Fixed colour per cost component (``CostReport.latency_components_ns`` / ``energy_components_nj`` keys).
COMPONENT_COLORS: dict[str, str] = {
    "mvm_fixed": "#c7c7c7", "dac_array": "#1f77b4", "adc": "#ff7f0e", "shift_add": "#2ca02c",
    "requant_buffer": "#9467bd", "digital": "#8c564b", "comm": "#e377c2",
}
#: Hatch per cost preset (bars of the same strategy under the ``kit`` and ``paper`` presets).
PRESET_HATCH = {"kit": "", "paper": "///"}
#: Marker per analog-noise setting kind in the e2e plot (``none`` is the clean run).
NOISE_MARKERS = ("x", "+", "^", "v", "D", "*", "P", "s")


def strategy_color(name: str) -> str:
    """Return the fixed colour of a strategy (``auto (budgets)`` and the like map to their first word)."""
    key = str(name).split()[0] if str(name).split() else str(name)
    return STRATEGY_COLORS.get(key, "#000000")


def role_color(role: str) -> str:
    """Return the fixed colour of a matmul role (unknown roles: pink)."""
    return ROLE_COLORS.get(role, "#e377c2")


def component_color(name: str) -> str:
    """Return the fixed colour of a latency/energy component (unknown ones: a stable pick from tab10)."""
    if name in COMPONENT_COLORS:
        return COMPONENT_COLORS[name]
    import zlib  # noqa: PLC0415
    return f"C{zlib.crc32(name.encode()) % 10}"


#: One fixed, distinct colour per step kind of the performance simulator (``perf.workload.STEP_KINDS``): the
#: timelines (Gantt charts) of ``mapper build`` and ``mapper reproduce``.
STEP_COLORS = {"stage1": "#1f77b4", "requant": "#ff7f0e", "shuffle": "#9467bd", "stage2": "#2ca02c",
               "comm": "#8c564b", "attention": "#17becf", "add_norm": "#e377c2", "activation": "#bcbd22",
               "reload": "#d62728"}


def step_color(kind: str) -> str:
    """Return the fixed colour of a simulator step kind (unknown ones: grey)."""
    return STEP_COLORS.get(kind, "#7f7f7f")


def noise_marker(index: int) -> str:
    """Return the marker of the ``index``-th noise setting."""
    return NOISE_MARKERS[index % len(NOISE_MARKERS)]


def pyplot():
    """Return ``matplotlib.pyplot`` on the Agg backend with the kit's font sizes."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    plt.rcParams.update({
        "svg.hashsalt": "kit", "font.size": FONT["base"], "axes.titlesize": FONT["title"],
        "axes.labelsize": FONT["label"], "xtick.labelsize": FONT["tick"], "ytick.labelsize": FONT["tick"],
        "legend.fontsize": FONT["legend"], "figure.titlesize": FONT["suptitle"], "axes.grid": False,
        "legend.frameon": False,
    })
    return plt


def title(what: str, model: str | None = None, hw: str | None = None, preset: str | None = None,
          extra: str | None = None) -> str:
    """Return ``"what\\nmodel: M | hardware: H | cost preset: P"`` (parts that are None are left out)."""
    parts = []
    if model:
        parts.append(f"model: {model}")
    if hw:
        parts.append(f"hardware: {hw}")
    if preset:
        parts.append(f"cost preset: {preset}")
    if extra:
        parts.append(extra)
    return what + ("\n" + " | ".join(parts) if parts else "")


def legend_outside(target, handles=None, labels=None, *, where: str = "right", title: str | None = None,
                   ncol: int | None = None, **kwargs):
    """Put a legend right of the axes (``where="right"``) or below them (``"below"``), outside the data.

    ``target`` is an Axes (the legend anchors to it) or a Figure (anchored to the right edge of the last axes'
    row). Returns the Legend, or None when there is nothing to show.
    """
    import matplotlib.figure  # noqa: PLC0415
    if isinstance(target, matplotlib.figure.Figure):
        axes = target.axes
        ax = axes[-1] if axes else None
        owner = target
        if handles is None:
            handles, labels = _collect(axes)
    else:
        ax = owner = target
        if handles is None:
            handles, labels = target.get_legend_handles_labels()
    if not handles:
        return None
    if labels is None:
        labels = [h.get_label() for h in handles]
    kw = {"title": title, "fontsize": FONT["legend"], "title_fontsize": FONT["legend"], "frameon": False, **kwargs}
    if where == "below":
        ncol = ncol or min(len(handles), 4)
        loc, anchor = "upper center", (0.5, -0.18)
    else:
        ncol = ncol or 1
        loc, anchor = "upper left", (1.02, 1.0)
    if owner is ax or ax is None:
        return owner.legend(handles, labels, loc=loc, bbox_to_anchor=anchor, ncol=ncol, borderaxespad=0.0, **kw)
    # a figure legend anchored in the last axes' coordinates
    return owner.legend(handles, labels, loc=loc, bbox_to_anchor=anchor, bbox_transform=ax.transAxes,
                        ncol=ncol, borderaxespad=0.0, **kw)


def stacked_bars(ax, names, comps, value, seen: dict, *, fmt: str = ",.0f", headroom: float = 1.12):
    """Bars of ``names`` stacked by component (``value(name, comp)``), each total written on top; the first
    handle of each component goes into ``seen`` (for one legend over several axes). Returns the totals."""
    import numpy as np  # noqa: PLC0415
    bottom = np.zeros(len(names))
    for c in comps:
        vals = np.array([value(n, c) for n in names], dtype=float)
        h = ax.bar(names, vals, 0.6, bottom=bottom, label=c, color=component_color(c), edgecolor="white",
                   linewidth=0.5)
        seen.setdefault(c, h)
        bottom += vals
    for j, tot in enumerate(bottom):
        ax.text(j, tot, f"{tot:{fmt}}", ha="center", va="bottom", fontsize=FONT["note"])
    ax.set_ylim(0, max(float(bottom.max()) if len(bottom) else 0.0, 1e-9) * headroom)
    ax.set_xlabel("strategy")
    return bottom


def _plain(v, _pos=None) -> str:
    return f"{v:,.0f}" if v >= 1 else f"{v:g}"


def log_axis(ax, which: str = "y", base: int = 10) -> None:
    """Log scale on ``which`` ("x", "y" or "xy") with plain tick labels at 1, 2, 5 x 10^k (no 6x10^2 clutter)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415
    for w in which:
        axis = ax.xaxis if w == "x" else ax.yaxis
        (ax.set_xscale if w == "x" else ax.set_yscale)("log", base=base)
        if base == 10:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(_plain))
        axis.set_minor_formatter(NullFormatter())


def _collect(axes):
    seen: dict = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_") and lab not in seen:
                seen[lab] = h
    return list(seen.values()), list(seen)


def render_png(fig) -> bytes:
    """Return the PNG bytes of ``fig`` (tight bounding box, :data:`DPI`, no timestamp)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.12, metadata=_META)
    return buf.getvalue()


def save(fig, path: str | Path, *, close: bool = True) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (:func:`cimisa.fsutil.atomic_write_bytes`); return the path.

    The figure is closed afterwards unless ``close`` is False (tests keep it to inspect its artists).
    """
    from cimisa.fsutil import atomic_write_bytes  # noqa: PLC0415
    data = render_png(fig)
    if close:
        pyplot().close(fig)
    path = Path(path)
    atomic_write_bytes(path, data)
    return path
