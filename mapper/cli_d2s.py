"""``python -m mapper d2s``: dense-to-sparse (Monarch) conversion of a model, optionally calibrated."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cimisa import progress
from mapper.cli_args import (
    add_nblocks_option,
    add_out_options,
    check_out,
    default_out,
    nonneg_int,
    path_text,
    positive_int,
    seed_int,
)

__all__ = ["register", "run_d2s"]


def register(subparsers) -> None:
    """Add the ``d2s`` sub-command."""
    p = subparsers.add_parser(
        "d2s", help="project a model's weight matmuls onto Monarch factors (optionally calibrate)",
        description="Project every weight matmul of a model onto Monarch (block-diagonal) factors and write "
                    "monarch.safetensors, monarch.json and report.json into --out.")
    p.add_argument("--model", required=True, type=path_text,
                   help="built-in name (tiny-bert, minilm, ...) or a Hugging Face checkpoint folder")
    add_nblocks_option(p)
    add_out_options(p, "output folder (default: d2s-<model>-<nblocks> in the current folder); created or replaced "
                       "as a whole")
    p.add_argument("--calibrate", action="store_true", help="refine the factors on calibration text")
    p.add_argument("--steps", type=nonneg_int, default=None, help="end-to-end distillation steps after the "
                                                                  "layer-wise fit (default: 0)")
    p.add_argument("--sentences", type=positive_int, default=None,
                   help="calibration sentences for the layer-wise fit")
    p.add_argument("--seed", type=seed_int, default=0, help="calibration seed (default: %(default)s)")
    p.add_argument("--include-embeddings", action="store_true", help="also project the token embedding "
                                                                     "and LM head")
    p.add_argument("--eval", action="store_true", help="measure held-out embedding cosine/Spearman (also on "
                                                       "with --calibrate)")
    progress.add_common_options(p)
    p.set_defaults(func=_main)


def run_d2s(model: str, nblocks: int | None, out: str | Path, calibrate: bool = False, steps: int | None = None,
            sentences: int | None = None, seed: int = 0, include_embeddings: bool = False,
            evaluate_heldout: bool = False, show_progress: bool = True, force: bool = False,
            threads: int | None = None) -> dict:
    """Convert ``model`` and write the D2S folder ``out``; return the report dict.

    ``nblocks`` None: :func:`compiler.place.default_nblocks`, as in every command. ``threads``: torch threads
    (:func:`cimisa.threads.set_threads`; None keeps the current setting).

    ``out`` is checked first (:func:`cimisa.fsutil.check_out_dir`); an existing folder is replaced only if the
    kit wrote it, or with ``force``.
    """
    from cimisa.errors import KitError, ModelError  # noqa: PLC0415
    from cimisa.fsutil import check_out_dir  # noqa: PLC0415
    from mapper.models import resolve_source  # noqa: PLC0415
    check_out_dir(out, force=force)
    if not calibrate and (steps is not None or sentences is not None):
        raise KitError("--steps and --sentences only apply with --calibrate")
    kind, entry, _ = resolve_source(model)            # quick refusals before torch is loaded
    if kind == "d2s":
        raise ModelError(f"{model} is already a d2s output folder; give the dense source model")
    if kind == "shape":
        raise ModelError(f"model {entry.name!r} is shape-only (no weights to project); use a tiny-* model, "
                         f"'minilm' or a local checkpoint folder")
    if threads is not None:
        from cimisa.threads import set_threads  # noqa: PLC0415
        set_threads(threads)
    from mapper.d2s.run import convert  # noqa: PLC0415 (torch loads here)
    return convert(model, nblocks, out, calibrate=calibrate, steps=steps, sentences=sentences, seed=seed,
                   include_embeddings=include_embeddings, evaluate_heldout=evaluate_heldout,
                   show_progress=show_progress, force=force)


def print_report(report: dict, file=sys.stdout) -> None:
    """Print the per-matmul table and totals with rich."""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    console = Console(file=file, width=max(140, Console(file=file).width))
    from rich.markup import escape  # noqa: PLC0415
    table = Table(title=escape(f"D2S {report.get('model')}  nblocks={report.get('nblocks')}"))
    for col in ("matmul", "layer", "role", "shape", "rel. error", "dense params", "monarch params", "ratio"):
        if col == "matmul":    # the longest names fold onto a second line, never truncate
            table.add_column(col, overflow="fold", min_width=min(60, max(len(r["name"]) for r in report["layers"])))
        else:
            table.add_column(col, justify="left" if col == "role" else "right", no_wrap=True)
    for row in report["layers"]:
        table.add_row(row["name"], str(row["layer"]), row["role"], f"{row['out_features']}x{row['in_features']}",
                      f"{row['rel_error']:.4f}", f"{row['dense_params']:,}", f"{row['monarch_params']:,}",
                      f"{row['dense_params'] / row['monarch_params']:.2f}x")
    t = report["totals"]
    table.add_section()
    table.add_row("total", "", "", f"{t['matmuls']} matmuls", f"{t['param_weighted_rel_error']:.4f}",
                  f"{t['dense_params']:,}", f"{t['monarch_params']:,}", f"{t['compression']:.2f}x")
    console.print(table)
    console.print("MACs per token equal the parameter counts (dense vs Monarch, padding included).")
    for stage, m in report.get("heldout_metrics", {}).items():
        console.print(f"held-out {stage}: embedding cosine {m['cosine']:.4f}, pairwise Spearman "
                      f"{m['spearman']:.4f}")
    cal = report.get("calibration")
    if cal:
        console.print(f"calibration: {cal['seconds']:.1f} s (layer-wise {cal['layerwise_seconds']:.1f} s, "
                      f"distillation {cal['distill_seconds']:.1f} s)")


def _main(args: argparse.Namespace) -> int:
    if args.out is None:
        args.out = default_out("d2s", args.model, args.nblocks if args.nblocks is not None else _nblocks_of(args.model))
    check_out(args.out, args.force, models=[args.model])          # before any work
    report = run_d2s(args.model, args.nblocks, args.out, calibrate=args.calibrate, steps=args.steps,
                     sentences=args.sentences, seed=args.seed, include_embeddings=args.include_embeddings,
                     evaluate_heldout=args.eval, show_progress=progress.enabled(), force=args.force)
    print_report(report)
    print(f"wrote {Path(args.out).resolve()}")
    return 0


def _nblocks_of(model: str):
    """The default ``--nblocks`` of ``model`` for the default folder name (None when the model cannot be read:
    the command then reports the problem)."""
    from cimisa.errors import KitError  # noqa: PLC0415
    try:
        from compiler.place import default_nblocks  # noqa: PLC0415
        from mapper.models import load_model_spec  # noqa: PLC0415
        return default_nblocks(load_model_spec(model))
    except KitError:
        return None
