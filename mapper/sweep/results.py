"""A sweep's results: one row per point, Pareto fronts, the Parquet and CSV files, the console summary.

A row holds the point's number and hash, its axis values and build options as given, the configuration it
resolved to (``config.<key>``), every figure of its build (:func:`mapper.sweep.point.figures`), whether it lies on
each Pareto front (``front.<x>_<y>``) and its one-line ``error`` (null when it succeeded). Rows are in grid order,
built from the cache only, so a serial run, a Dask run and a resumed run give equal rows.

``mapper reproduce``'s chip tables come from rows too: :func:`chip_table` (one budget's strategies against
linear) and :func:`sensitivity_table` / :func:`sensitivity_markdown` (the paper's headline figures under each
assumption set).
"""

from __future__ import annotations

import io
from pathlib import Path

from cimisa.fsutil import atomic_write_bytes

__all__ = ["OBJECTIVES", "FRONTS", "make_rows", "front", "fronts", "front_column", "write_tables", "read_table",
           "summary_table", "PERF_COLUMNS", "CHIP_COLUMNS", "chip_table", "sensitivity_table", "sensitivity_markdown",
           "set_label"]

#: Figures a design wants low, with their axis labels.
OBJECTIVES = {
    "latency_ns": "decode latency per token (ns)",
    "energy_nj": "decode energy per token (nJ)",
    "arrays": "arrays used (count)",
    "stream.adc_error.mean_rel_l2": "ADC error, mean relative L2 (accuracy)",
    "area_mm2": "chip area (mm^2)",
}
#: Pareto fronts: (x, y) pairs of :data:`OBJECTIVES`; a front is drawn only when its figures exist. Area joins
#: when the build reports one (a top-level figure named ``area*``: the chip's, not a component's or baseline's).
FRONTS = (("latency_ns", "energy_nj"), ("latency_ns", "arrays"), ("latency_ns", "stream.adc_error.mean_rel_l2"))


def front(pairs: list[tuple[float, float] | None]) -> list[bool]:
    """For each ``(x, y)`` (None: not a candidate) whether no other pair is at most as large in both and smaller
    in one (both minimised)."""
    order = sorted((p[0], p[1], i) for i, p in enumerate(pairs) if p is not None)
    on = [False] * len(pairs)
    best = None
    k = 0
    while k < len(order):          # equal x: only the smallest y of the group can be on the front
        x, y, _ = order[k]
        group = [g for g in order[k:] if g[0] == x]
        k += len(group)
        if best is None or y < best:
            for _gx, gy, i in group:
                on[i] = gy == y
            best = y
    return on


def fronts(rows: list[dict]) -> list[tuple[str, str]]:
    """The fronts that apply to these rows (both figures present in some successful row)."""
    have = {k for r in rows if r.get("error") is None for k, v in r.items() if v is not None}
    area = sorted(k for k in have if k.split(".")[-1].startswith("area") and "." not in k)
    pairs = list(FRONTS) + [("latency_ns", a) for a in area]
    return [(x, y) for x, y in pairs if x in have and y in have]


def make_rows(points, records: dict[str, dict], config_keys) -> list[dict]:
    """One row per point (grid order) from the cached ``records`` (id -> ``{"figures", "error"}``)."""
    rows = []
    for p in points:
        rec = records.get(p.id, {"figures": {}, "error": "not computed"})
        cfg = p.hw.to_dict() if p.hw is not None else {}
        row = {"point": p.index, "id": p.id, **p.inputs}
        row["config.name"] = cfg.get("name")
        for key in config_keys:
            table, _, sub = key.partition(".")
            row[f"config.{key}"] = cfg.get(table, {}).get(sub) if sub else cfg.get(key)
        row.update(rec["figures"])
        row["error"] = p.error or rec["error"]
        rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r if k != "error")) + ["error"]
    rows = [{c: r.get(c) for c in columns} for r in rows]
    for x, y in fronts(rows):
        flags = front([(r[x], r[y]) if r["error"] is None and r[x] is not None and r[y] is not None else None
                       for r in rows])
        for r, f in zip(rows, flags, strict=True):
            r[front_column(x, y)] = f
    return rows


def front_column(x: str, y: str) -> str:
    """The row column flagging the front of figures ``x`` and ``y`` (``front.latency_energy``)."""
    return f"front.{_short(x)}_{_short(y)}"


def _short(name: str) -> str:
    """A figure's name in a front's column: ``latency``, ``energy``, ``arrays``, ``accuracy``, ``area...``."""
    if name.startswith("stream.adc_error"):
        return "accuracy"
    return name.split(".")[-1].removesuffix("_ns").removesuffix("_nj")


def _table(rows: list[dict]):
    import json  # noqa: PLC0415

    import pyarrow as pa  # noqa: PLC0415
    cols = {}
    for c in (rows[0] if rows else {}):
        values = [r[c] for r in rows]
        try:
            cols[c] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):   # mixed types (a bad value of one point): as text
            cols[c] = pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v)
                                for v in values], pa.string())
    return pa.table(cols)


def write_tables(rows: list[dict], folder: Path) -> None:
    """Write ``results.parquet`` and ``results.csv`` (same columns and values) atomically."""
    import pyarrow.csv as pcsv  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    table = _table(rows)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(folder / "results.parquet", buf.getvalue())
    buf = io.BytesIO()
    pcsv.write_csv(table, buf)
    atomic_write_bytes(folder / "results.csv", buf.getvalue())


def read_table(path: Path) -> list[dict]:
    """Rows of a results file (``.parquet`` or ``.csv``; empty CSV cells read as null)."""
    if Path(path).suffix == ".parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415
        return pq.read_table(path).to_pylist()
    import pyarrow.csv as pcsv  # noqa: PLC0415
    opts = pcsv.ConvertOptions(strings_can_be_null=True)
    return pcsv.read_csv(path, convert_options=opts).to_pylist()


def summary_table(rows: list[dict], axes: list[str], title: str, limit: int = 20):
    """A rich Table: the latency-energy Pareto front (at most ``limit`` rows), each with its axis values."""
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    on = [r for r in rows if r.get("front.latency_energy")]
    t = Table(title=title + (f" (first {limit})" if len(on) > limit else ""))
    figs = [("arrays", "arrays", "{:,}"), ("utilization", "util", "{:.1%}"), ("latency_ns", "latency ns", "{:,.1f}"),
            ("energy_nj", "energy nJ", "{:,.1f}")]
    t.add_column("point", justify="right")
    for a in axes:
        t.add_column(escape(a), no_wrap=True)
    for _, head, _ in figs:
        t.add_column(head, justify="right", no_wrap=True)
    for r in on[:limit]:
        t.add_row(str(r["point"]), *(escape(str(r.get(a))) for a in axes),
                  *(fmt.format(r[k]) if r.get(k) is not None else "-" for k, _, fmt in figs))
    return t


# ------------------------------------------------------------------------------------- reproduce's chip tables

#: Figures of a chip row: column -> the sweep row's column (``mapper build``'s report ``summary``, flattened).
PERF_COLUMNS = {"prefill_tokens": "options.prefill_tokens", "prefill_latency_ns": "prefill_latency_ns",
                "ttft_ns": "ttft_ns", "decode_tokens_per_s": "decode_tokens_per_s",
                "energy_per_token_nj": "energy_per_token_nj", "static_energy_per_token_nj":
                "perf.energy_per_token_nj.static", "area_mm2": "area_mm2"}
#: The chip a budget gave: column -> the sweep row's column (the report's ``chip`` block).
CHIP_COLUMNS = {"chip_arrays": "chip.arrays", "tiles": "chip.tiles", "adcs_per_array": "chip.adcs_per_array",
                "total_adcs": "chip.adcs_total", "adc_ratio": "chip.adc_ratio", "area_ratio": "chip.area_ratio"}


def _ratio(a, b) -> float | None:
    return round(a / b, 4) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def chip_table(rows: list[dict], budget: str) -> list[dict]:
    """One row per model and strategy of a ``reproduce-chip`` sweep run under ``budget``: the chip it got, its
    figures, and speed-up and energy gain against linear under the same budget (ratios above 1: better).
    ``_parts``: energy per token and area by component (for plots; not a table column)."""
    lin = {r["model"]: r for r in rows if r["strategy"] == "linear"}
    out = []
    for r in rows:
        b = lin.get(r["model"], {})
        row = {"model": r["model"], "budget": budget, "reference": "linear", "strategy": r["strategy"],
               "arrays": r["arrays"], "utilization": round(r["utilization"], 4)}
        row.update({k: r.get(c) for k, c in CHIP_COLUMNS.items()})
        row.update({k: r.get(c) for k, c in PERF_COLUMNS.items()})
        row["prefill_speedup_vs_linear"] = _ratio(b.get(PERF_COLUMNS["prefill_latency_ns"]),
                                                  r.get(PERF_COLUMNS["prefill_latency_ns"]))
        row["decode_speedup_vs_linear"] = _ratio(r.get(PERF_COLUMNS["decode_tokens_per_s"]),
                                                 b.get(PERF_COLUMNS["decode_tokens_per_s"]))
        row["energy_gain_vs_linear"] = _ratio(b.get(PERF_COLUMNS["energy_per_token_nj"]),
                                              r.get(PERF_COLUMNS["energy_per_token_nj"]))
        row["_parts"] = {part: {k.removeprefix(f"perf.{name}."): v for k, v in r.items()
                                if k.startswith(f"perf.{name}.") and isinstance(v, (int, float))}
                         for part, name in (("energy", "energy_per_token_nj"), ("area", "area_mm2"))}
        out.append(row)
    return out


def _assumptions(r: dict) -> dict:
    """The unstated assumptions of a sensitivity row, as short readable values."""
    ramp = r["config.cost.adc_ramp_fraction"]
    adc = "SAR" if ramp == 0 else "ramp" if ramp == 1 else f"ramp {ramp:g}"
    if r["config.cost.t_adc_ns"] != 1.0:
        adc += f" {r['config.cost.t_adc_ns']:g} ns"
    net = r["config.chip.topology"]
    if net != "ideal":
        net += f" {r['config.chip.link_bytes_per_ns']:g} B/ns {r['config.chip.hop_latency_ns']:g} ns/hop"
    return {"tiers_per_tile": r["config.chip.arrays_per_tile"], "adc_time": adc, "network": net}


def _energy(r: dict, scale: float) -> float:
    """Energy per token with every static power times ``scale``: the static part of a token's energy is static
    power x time (the simulator's ``energy_per_token_nj`` breakdown, ``static``), so it scales exactly."""
    static = r.get("perf.energy_per_token_nj.static") or 0.0
    return r[PERF_COLUMNS["energy_per_token_nj"]] + (scale - 1.0) * static


def sensitivity_table(rows: list[dict], headlines: dict[str, float], *, scales=(0.0, 1.0, 10.0),
                      row_steps=(4, 1), tolerance: float = 0.10) -> list[dict]:
    """The sensitivity map: one row per assumption set (tiers, ADC time, network, DenseMap row steps, static
    power scale) with the headline figures as the kit computes them (prefill latency and energy per token
    against linear: ``sparse_speedup``, ``dense_speedup``, ``dense_energy_gain``, ``sparse_energy_gain``) and,
    for each figure of ``headlines`` (name -> the paper's value), whether it is within ``tolerance`` of it.

    ``rows``: sweep rows of linear, sparse and dense on each set; a DenseMap row's ``row_steps`` (default 4)
    says which. Static power is scaled from each row's own figures (static energy = static power x time).
    """
    sets: dict[tuple, dict] = {}
    for r in rows:
        a = _assumptions(r)
        strat = r["strategy"] if r["strategy"] != "dense" else f"dense/{r.get('row_steps') or 4}"
        sets.setdefault(tuple(a.values()), {"a": a})[strat] = r
    lat = PERF_COLUMNS["prefill_latency_ns"]
    out = []
    for group in sets.values():
        lin, sp = group["linear"], group["sparse"]
        for steps in row_steps:
            de = group.get(f"dense/{steps}")
            if de is None:
                continue
            for k in scales:
                row = {**group["a"], "row_steps": steps, "static_scale": k,
                       "linear_prefill_ns": round(lin[lat], 1), "sparse_prefill_ns": round(sp[lat], 1),
                       "dense_prefill_ns": round(de[lat], 1), "sparse_speedup": _ratio(lin[lat], sp[lat]),
                       "dense_speedup": _ratio(lin[lat], de[lat]),
                       "dense_energy_gain": _ratio(_energy(lin, k), _energy(de, k)),
                       "sparse_energy_gain": _ratio(_energy(lin, k), _energy(sp, k))}
                for h, paper in headlines.items():
                    row[f"{h}_within"] = row[h] is not None and abs(row[h] / paper - 1) <= tolerance
                row["matches"] = sum(row[f"{h}_within"] for h in headlines)
                out.append(row)
    return out


def _set_label(r: dict) -> str:
    return (f"{r['tiers_per_tile']} tiers/tile | {r['adc_time']} | {r['network']} | {r['row_steps']} row steps | "
            f"static x{r['static_scale']:g}")


def set_label(r: dict) -> str:
    """One line naming a sensitivity row's assumption set."""
    return _set_label(r)


def sensitivity_markdown(rows: list[dict], headlines: dict[str, float], tolerance: float = 0.10) -> str:
    """The sensitivity map as Markdown: per headline figure, the range over all assumption sets and the sets
    within ``tolerance`` of the paper's value; then every set (best first)."""
    lines = [f"# Sensitivity: which assumptions reproduce the paper's figures (within {tolerance:.0%})", ""]
    for h, paper in headlines.items():
        vals = [r[h] for r in rows]
        hits = [r for r in rows if r[f"{h}_within"]]
        lines.append(f"## {h}: paper {paper}x; kit {min(vals):.2f}x .. {max(vals):.2f}x over {len(rows)} sets, "
                     f"{len(hits)} within {tolerance:.0%}")
        lines.append("")
        lines += [f"- {r[h]:.2f}x: {_set_label(r)}" for r in hits] or ["- none"]
        lines.append("")
    cols = ["tiers_per_tile", "adc_time", "network", "row_steps", "static_scale", *headlines, "sparse_energy_gain"]
    lines += ["## Every set", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in sorted(rows, key=lambda r: -r["matches"]):
        cells = [f"**{r[c]:.2f}**" if c in headlines and r[f"{c}_within"] else
                 f"{r[c]:.2f}" if isinstance(r[c], float) and c != "static_scale" else f"{r[c]:g}"
                 if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
