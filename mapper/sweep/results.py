"""A sweep's results: one row per point, Pareto fronts, the Parquet and CSV files, the console summary.

A row holds the point's number and hash, its axis values and build options as given, the configuration it
resolved to (``config.<key>``), every figure of its build (:func:`mapper.sweep.point.figures`), whether it lies on
each Pareto front (``front.<x>_<y>``) and its one-line ``error`` (null when it succeeded). Rows are in grid order,
built from the cache only, so a serial run, a Dask run and a resumed run give equal rows.
"""

from __future__ import annotations

import io
from pathlib import Path

from cimisa.fsutil import atomic_write_bytes

__all__ = ["OBJECTIVES", "FRONTS", "make_rows", "front", "fronts", "front_column", "write_tables", "read_table",
           "summary_table"]

#: Figures a design wants low, with their axis labels.
OBJECTIVES = {
    "latency_ns": "decode latency per token (ns)",
    "energy_nj": "decode energy per token (nJ)",
    "arrays": "arrays used (count)",
    "stream.adc_error.mean_rel_l2": "ADC error, mean relative L2 (accuracy)",
}
#: Pareto fronts: (x, y) pairs of :data:`OBJECTIVES`; a front is drawn only when its figures exist. Area joins
#: when the configuration reports one (any figure named ``area*``).
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
    area = sorted(k for k in have if k.split(".")[-1].startswith("area"))
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
