"""A build report's per-layer and per-matmul data (``report.json`` ``layers``, ``matmuls``,
``utilization_per_layer``) and its console tables: summary, strategies, layers."""

from __future__ import annotations

from compiler.kinds import Strategy, choices
from compiler.place import Placement

__all__ = ["summary_table", "strategies_table", "layers_table", "chip_line", "layer_utilization", "matmul_spread",
           "layer_table", "format_report", "format_line", "selection_line"]


def summary_table(report: dict):
    """Return a rich Table of the summary against the linear baseline."""
    from rich.markup import escape
    from rich.table import Table
    s, b = report["summary"], report["summary"]["baseline"]
    t = Table(title=escape(f"{report['model']} on {report['hw']['name']} ({report['strategy']}, "
                           f"nblocks {report['nblocks']})"))
    t.add_column("metric", no_wrap=True, min_width=18)
    t.add_column(report["strategy"], justify="right")
    t.add_column(Strategy.LINEAR.value, justify="right")
    for key, fmt in (("arrays", "{:,}"), ("lower_bound_arrays", "{:,}"), ("utilization", "{:.1%}"),
                     ("params_monarch", "{:,}"), ("params_dense", "{:,}"), ("latency_ns", "{:,.0f}"),
                     ("matmul_latency_ns", "{:,.0f}"), ("energy_nj", "{:,.0f}"), ("prefill_latency_ns", "{:,.0f}"),
                     ("activations", "{:,}")) + _PERF_ROWS:
        if key in s and key in b and s[key] is not None and b[key] is not None:
            t.add_row(key, fmt.format(s[key]), fmt.format(b[key]))
    return t


#: The simulator's figures in the summary table (``prefill_latency_ns`` is the simulator's when it ran).
_PERF_ROWS = (("ttft_ns", "{:,.0f}"), ("decode_tokens_per_s", "{:,.1f}"), ("energy_per_token_nj", "{:,.1f}"),
              ("static_energy_nj", "{:,.1f}"), ("area_mm2", "{:,.2f}"))


def chip_line(chip: dict) -> str:
    """One line describing the chip a strategy ran on (``summary.chip`` of ``report.json``)."""
    tiles = f"{chip['tiles']:,} tile" + ("s" if chip["tiles"] != 1 else "")
    line = (f"chip: {tiles} x {chip['arrays_per_tile']} arrays ({chip['arrays_used']:,} of "
            f"{chip['arrays']:,} used), {chip['adcs_total']:,} ADCs, {chip['topology']} network, budget "
            f"{chip['budget']}")
    if chip.get("reference"):
        line += f" vs {chip['reference']}"
        for key, what in (("adc_ratio", "ADCs"), ("area_ratio", "area")):
            if chip.get(key) is not None:
                line += f", {what} x{chip[key]:.3f}"
    if chip.get("epochs", 1) > 1:
        line += f", {chip['epochs']} weight epochs ({sum(chip['reload_rows']):,} rows reprogrammed per pass)"
    return line


def format_report(hw) -> dict:
    """The ``format`` object of ``report.json`` and ``run.json``: the number formats of the configuration ``hw``
    and the columns they take."""
    f = hw.fmt
    return {"describe": f.describe(), "cells_per_weight": f.cols_per_weight, "bias_cols": f.bias_cols,
            "physical_cols": hw.cols, "logical_cols": hw.logical_cols, "digits": f.digits}


def format_line(fmt: dict) -> str:
    """One line on the number formats (``format`` of ``report.json``)."""
    return (f"format: {fmt['describe']}; {fmt['cells_per_weight']} cell(s) per weight, {fmt['physical_cols']} "
            f"physical / {fmt['logical_cols']} logical columns per array")


def selection_line(sel: dict) -> str:
    """One line on the accuracy ADC rule's choice (``adc_selection`` of ``report.json``)."""
    hist = " ".join(f"{n} x {b} b" for b, n in sel["adc_bits_histogram"].items())
    met = "met" if sel["met_on_heldout"] else "NOT met"
    return (f"accuracy ADC rule (max error {sel['max_error']:g}): error {sel['calib_error']:.4f} on calibration, "
            f"{sel['heldout_error']:.4f} held out ({met}); lossless-ADC error {sel['lossless_error']:.4f}; "
            f"ADC bits {sel['adc_bits_sum']:,} (exact rule {sel['lossless_adc_bits_sum']:,}): {hist}")


def strategies_table(report: dict):
    """Return a rich Table comparing the strategies evaluated in the build (None if only one)."""
    from rich.table import Table
    rows = report.get("strategies") or {}
    if len(rows) < 3:
        return None
    perf = all("prefill_latency_ns" in r and "energy_per_token_nj" in r for r in rows.values())
    t = Table(title="strategies (decode, per token" + ("; simulated prefill, tokens/s, energy per token, area)"
                                                       if perf else ")"))
    cols = ["strategy", "arrays", "arrays / LB", "utilisation", "latency ns", "energy nJ"]
    cols += ["prefill ns", "tokens/s", "nJ/token", "mm^2"] if perf else []
    for c in cols:
        t.add_column(c, justify="right", no_wrap=True)
    order = choices(Strategy)
    for name in sorted(rows, key=lambda k: order.index(k) if k in order else 9):
        r = rows[name]
        lb = r["lower_bound_arrays"] or 1
        cells = [name, f"{r['arrays']:,}", f"{r['arrays'] / lb:.2f}", f"{r['utilization']:.1%}",
                 f"{r['latency_ns']:,.0f}", f"{r['energy_nj']:,.0f}"]
        if perf:
            cells += [_num(r.get("prefill_latency_ns"), "{:,.0f}"), _num(r.get("decode_tokens_per_s"), "{:,.1f}"),
                      _num(r.get("energy_per_token_nj"), "{:,.1f}"), _num(r.get("area_mm2"), "{:,.2f}")]
        t.add_row(*cells)
    return t


def _num(v, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def layers_table(report: dict, limit: int = 6):
    """Return a rich Table of the first and last layers (arrays, utilisation, latency, energy vs linear)."""
    from rich.table import Table
    rows = report["layers"]
    if len(rows) > limit:
        rows = rows[:limit // 2] + [None] + rows[-(limit // 2):]
    t = Table(title="per layer")
    # Layer names never truncate: a narrow terminal folds them onto a second line instead.
    t.add_column("layer", justify="left", overflow="fold", min_width=max([5] + [len(f"{r['stage']}.{r['layer']}")
                                                                                for r in rows if r is not None]))
    for c in ("arrays", "util", "latency ns", "energy nJ", "linear latency", "linear energy"):
        t.add_column(c, justify="right", no_wrap=True)
    for r in rows:
        if r is None:
            t.add_row("...", "", "", "", "", "", "")
            continue
        t.add_row(f"{r['stage']}.{r['layer']}", f"{r['arrays']:,}", f"{r['utilization']:.1%}",
                  f"{r['latency_ns']:,.0f}", f"{r['energy_nj']:,.1f}", f"{r['baseline_latency_ns']:,.0f}",
                  f"{r['baseline_energy_nj']:,.1f}")
    return t


def layer_utilization(pl: Placement) -> dict[str, float]:
    """Return utilisation per layer: the layer's cells over its share of the arrays it touches."""
    geoms = pl.matmuls
    on_array: dict[int, int] = {}
    for t in pl.tiles:
        on_array[t.array] = on_array.get(t.array, 0) + t.cells
    cells: dict[str, float] = {}
    share: dict[str, float] = {}
    for t in pl.tiles:
        g = geoms[t.matmul]
        key = f"{g.stage}.{g.layer}"
        cells[key] = cells.get(key, 0) + t.cells
        share[key] = share.get(key, 0.0) + t.cells / on_array[t.array] * pl.cells_per_array
    return {k: round(cells[k] / share[k], 6) for k in cells}


def matmul_spread(pl: Placement) -> list[dict]:
    """Return per matmul and factor: arrays holding its blocks and the most blocks (pieces) on one array.

    This is how many block diagonals of each matrix share an array, the quantity ``auto`` chooses per matrix
    (implicitly, through the array budget and the striping).
    """
    per: dict[tuple[int, str], dict[int, int]] = {}
    for t in pl.tiles:
        d = per.setdefault((t.matmul, t.factor), {})
        d[t.array] = d.get(t.array, 0) + 1
    out = []
    for mi, g in enumerate(pl.matmuls):
        row = {"name": g.name}
        for f in ("W", "R", "L"):
            d = per.get((mi, f))
            if d:
                row[f"arrays_{f}"] = len(d)
                row[f"max_pieces_per_array_{f}"] = max(d.values())
        out.append(row)
    return out


def layer_table(main, base) -> list[dict]:
    """Return the ``layers`` rows of ``report.json``: per layer of ``main`` (a ``StrategyResult``) its arrays,
    utilisation, decode and prefill figures, and those of the baseline ``base``."""
    util = layer_utilization(main.placement)
    butil = layer_utilization(base.placement)
    brows = {(r["stage"], r["layer"]): r for r in base.cost.per_layer}
    rows = []
    for r in main.cost.per_layer:
        key = f"{r['stage']}.{r['layer']}"
        b = brows.get((r["stage"], r["layer"]), {})
        rows.append({"stage": r["stage"], "layer": r["layer"], "arrays": r["arrays"],
                     "utilization": util.get(key, 0.0), "latency_ns": round(r["latency_ns"], 3),
                     "energy_nj": round(r["energy_nj"], 3),
                     "prefill_latency_ns": round(r["prefill_latency_ns"], 3),
                     "baseline_arrays": b.get("arrays"), "baseline_utilization": butil.get(key),
                     "baseline_latency_ns": round(b.get("latency_ns", 0.0), 3),
                     "baseline_energy_nj": round(b.get("energy_nj", 0.0), 3)})
    return rows
