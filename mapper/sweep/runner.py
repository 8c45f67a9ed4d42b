"""One sweep from grid to rows: open the folder, hash the points, run what the cache lacks, write the tables.

:func:`run_sweep` is what ``python -m mapper sweep`` (and ``mapper reproduce``, through its shipped grid) calls;
plots and the console summary are the command's.
"""

from __future__ import annotations

from cimisa import progress
from mapper.sweep import engine, store
from mapper.sweep.grid import config_keys, points
from mapper.sweep.point import evaluate_point
from mapper.sweep.results import make_rows, write_tables

__all__ = ["run_sweep"]


def run_sweep(grid, out, *, workers: int = 0, scheduler: str | None = None, force: bool = False,
              func=None, say=None) -> dict:
    """Run ``grid`` into the folder ``out`` (created or resumed); return ``{"rows", "points", "cached",
    "computed", "failed", "folder"}``. ``func``: the point function (default
    :func:`mapper.sweep.point.evaluate_point`); the rows come from the cache only."""
    folder, _ = store.open_sweep(out, grid, force=force)
    keys = {m: store.model_key(m) for m in grid.values("model")}
    pts = points(grid, keys)
    unique = list({p.id: p for p in pts if p.error is None}.values())
    records = store.read_points(folder, [p.id for p in unique])
    todo = [p for p in unique if p.id not in records]
    stats = {"points": len(pts), "cached": len(records), "computed": 0}
    with progress.stage("sweep: evaluate", total=len(todo), unit="point") as st:
        def on_result(p, outcome):
            rec = {"id": p.id, "figures": outcome["figures"], "error": outcome["error"]}
            if outcome["cache"]:
                rec = store.write_point(folder, p.id, outcome["figures"], outcome["error"])
            records[p.id] = rec
            stats["computed"] += 1
            st.update(1)
        kw = {"say": say} if say else {}
        engine.run_points(todo, on_result, workers=workers, scheduler=scheduler, func=func or evaluate_point, **kw)
    rows = make_rows(pts, records, config_keys())
    write_tables(rows, folder)
    stats.update(rows=rows, failed=sum(r["error"] is not None for r in rows), folder=folder)
    return stats
