"""``python -m mapper sweep``: evaluate a grid of build options and configuration keys, one Dask task per point.

Writes ``results.parquet`` + ``results.csv`` (one row per point), ``pareto.png`` and a console summary; points
are cached in the sweep folder, so a re-run (or a run after an interruption) computes only what is missing.
The user guide is ``docs/sweep.md``.

Exit status: 0 when at least one point succeeded (failed points are rows with their error, counted on the
summary line), 1 when every point failed, 2 for bad input (the grid, a model or configuration name, the output
folder), 130 when interrupted (finished points stay cached).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from cimisa import progress
from mapper.cli_args import add_out_options, check_out, default_out, nonneg_int, path_text

__all__ = ["register", "run"]


def _scheduler(text: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9+]*://[^\s/]+", text):
        raise argparse.ArgumentTypeError(f"must be a scheduler address such as tcp://HOST:PORT, not {text!r}")
    return text


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def register(subparsers) -> None:
    from mapper.sweep.grid import shipped_grids  # noqa: PLC0415
    p = subparsers.add_parser(
        "sweep", help="evaluate a grid of design points on Dask (Parquet/CSV rows, Pareto plots)",
        description="Evaluate every point of a grid (build options x configuration keys) as one Dask task: on a "
                    "local cluster by default, on a running scheduler with --scheduler. Writes results.parquet, "
                    "results.csv and pareto.png; finished points are cached in the folder, so a re-run computes "
                    "only what is missing. Grid format: docs/sweep.md.")
    p.add_argument("--grid", required=True, type=path_text,
                   help=f"grid file (.toml) or a shipped grid: {', '.join(shipped_grids())}")
    add_out_options(p, "sweep folder (default: sweep-<grid name> in the current folder); resumed when it holds "
                       "a sweep of the same grid")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=nonneg_int, default=None, metavar="N",
                       help="worker processes of a local Dask cluster; 0: one point after the other in this "
                            f"process (default: the usable cores, {_cores()} here)")
    where.add_argument("--scheduler", type=_scheduler, default=None, metavar="tcp://HOST:PORT",
                       help="run on this Dask scheduler's workers instead of a local cluster")
    p.add_argument("--no-plots", action="store_true", help="skip pareto.png")
    progress.add_common_options(p)
    p.set_defaults(func=run)


def _check_inputs(grid) -> tuple[list[str], list[str]]:
    """Every model and configuration the grid names must exist (one error before any work)."""
    from cimisa.config import load_hw  # noqa: PLC0415
    from mapper.models import resolve_source  # noqa: PLC0415
    models, hws = grid.values("model"), grid.values("hw")
    for m in models:
        resolve_source(m)
    for h in hws:
        load_hw(h)
    return models, [h for h in hws if os.path.exists(h)]


def run(args: argparse.Namespace) -> int:
    from rich.console import Console  # noqa: PLC0415

    from mapper.sweep.grid import COLUMN, grid_path, load_grid  # noqa: PLC0415
    from mapper.sweep.results import summary_table  # noqa: PLC0415
    from mapper.sweep.runner import run_sweep  # noqa: PLC0415
    path = grid_path(args.grid)
    grid = load_grid(path)
    models, hw_files = _check_inputs(grid)
    out = args.out or default_out("sweep", grid.name)
    check_out(out, args.force, models=models, files=[str(path), *hw_files])      # before any work
    workers = _cores() if args.workers is None else args.workers
    res = run_sweep(grid, out, workers=workers, scheduler=args.scheduler, force=args.force)
    rows = res["rows"]
    if not args.no_plots:
        from mapper.sweep.plots import pareto_plot  # noqa: PLC0415
        with progress.stage("sweep: plots"):
            if pareto_plot(rows, res["folder"] / "pareto.png", grid.name) is None:
                (res["folder"] / "pareto.png").unlink(missing_ok=True)      # no point succeeded: no stale plot
    axes = [COLUMN.get(a.name, a.name) for a in grid.axes]
    console = Console(width=max(120, Console().width))
    if len(rows) > res["failed"]:
        console.print(summary_table(rows, axes, f"sweep {grid.name}: latency-energy Pareto front"))
    print(f"{res['points']} points: {res['cached']} from the cache, {res['computed']} computed, "
          f"{res['failed']} failed")
    errors: dict[str, int] = {}
    for r in rows:
        if r["error"] is not None:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    for text, n in list(errors.items())[:3]:
        print(f"failed ({n} point{'s' * (n != 1)}): {text}")
    if len(errors) > 3:
        print(f"failed: {len(errors) - 3} more distinct errors (column error of results.csv)")
    print(f"wrote {out}/")
    sys.stdout.flush()
    return 1 if rows and res["failed"] == len(rows) else 0
