"""Console tables of a build report (``report.json`` content): summary, strategies, layers."""

from __future__ import annotations

from compiler.kinds import Strategy, choices

__all__ = ["summary_table", "strategies_table", "layers_table"]


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
                     ("activations", "{:,}")):
        t.add_row(key, fmt.format(s[key]), fmt.format(b[key]))
    return t


def strategies_table(report: dict):
    """Return a rich Table comparing the strategies evaluated in the build (None if only one)."""
    from rich.table import Table
    rows = report.get("strategies") or {}
    if len(rows) < 3:
        return None
    t = Table(title="strategies (decode, per token)")
    for c in ("strategy", "arrays", "arrays / LB", "utilisation", "latency ns", "energy nJ"):
        t.add_column(c, justify="right", no_wrap=True)
    order = choices(Strategy)
    for name in sorted(rows, key=lambda k: order.index(k) if k in order else 9):
        r = rows[name]
        lb = r["lower_bound_arrays"] or 1
        t.add_row(name, f"{r['arrays']:,}", f"{r['arrays'] / lb:.2f}", f"{r['utilization']:.1%}",
                  f"{r['latency_ns']:,.0f}", f"{r['energy_nj']:,.0f}")
    return t


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
