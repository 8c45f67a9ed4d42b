"""Accuracy of D2S on the real all-MiniLM-L6-v2: projection only vs calibrated, for several nblocks.

Run: ``python bench/bench_minilm_d2s.py [--nblocks 2 4 8 16] [--out bench/results] [--baseline]``.

Metrics on the held-out sentences of :mod:`mapper.evaluate.textdata` (disjoint from the calibration text): the mean
cosine between dense and Monarch mean-pooled sentence embeddings, and the Spearman correlation between the
dense and Monarch pairwise sentence similarities. Writes ``minilm_d2s.csv``, ``minilm_d2s.json`` and
``minilm_d2s.png`` into ``--out`` (after every nblocks, so a partial run keeps its rows). ``--baseline`` adds
plain end-to-end distillation (no layer-wise fit) at nblocks 4 for comparison at similar CPU time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from cimisa.fsutil import atomic_write_text  # noqa: E402
from mapper.d2s.calibrate import (  # noqa: E402
    CalibConfig,
    calibrate,
    default_heldout_batches,
    embed,
    evaluate,
    monarch_model_from_factors,
)
from mapper.d2s.convert import layer_report, project_model  # noqa: E402
from mapper.models import load_hf_model, load_model_spec  # noqa: E402


def _plot(rows: list[dict], path: Path | None):
    """Cosine and Spearman against nblocks, projection only vs calibrated; return the Figure."""
    from mapper import plotstyle as S
    plt = S.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.5))
    ks = [r["nblocks"] for r in rows]
    for ax, metric in zip(axes, ("cosine", "spearman")):
        ax.plot(ks, [r[f"projection_{metric}"] for r in rows], "o--", color="C0", label="projection only")
        ax.plot(ks, [r[f"calibrated_{metric}"] for r in rows], "o-", color="C1", label="projection + calibration")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("nblocks (Monarch blocks per matrix)")
        ax.set_ylabel("embedding cosine vs dense (mean)" if metric == "cosine"
                      else "pairwise-similarity Spearman vs dense")
        ax.set_title("sentence embeddings" if metric == "cosine" else "pairwise similarities")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    fig.suptitle(S.title("Monarch D2S accuracy on held-out sentences", model="all-MiniLM-L6-v2"))
    fig.tight_layout()
    S.legend_outside(axes[1], where="right", title="factors")
    if path is not None:
        S.save(fig, path)
    return fig


def _write(rows: list[dict], extra: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0])
    lines = [",".join(fields)] + [",".join(str(r[f]) for f in fields) for r in rows]
    atomic_write_text(out / "minilm_d2s.csv", "\n".join(lines) + "\n")
    atomic_write_text(out / "minilm_d2s.json", json.dumps({"rows": rows, **extra}, indent=2) + "\n")
    _plot(rows, out / "minilm_d2s.png")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nblocks", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="distillation steps (default: CalibConfig)")
    ap.add_argument("--sentences", type=int, default=None, help="layer-wise calibration sentences")
    ap.add_argument("--baseline", action="store_true", help="also run plain distillation at nblocks 4")
    ap.add_argument("--baseline-steps", type=int, default=600)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    spec = load_model_spec("minilm")
    dense = load_hf_model("minilm")
    held = default_heldout_batches(spec)
    n_held = sum(len(b["index"]) for b in held)
    dense_emb = embed(dense, held)
    overrides = {k: v for k, v in (("steps", args.steps), ("sentences", args.sentences)) if v is not None}
    cfg = CalibConfig(**overrides)
    rows: list[dict] = []
    extra = {"model": "sentence-transformers/all-MiniLM-L6-v2", "heldout_sentences": n_held,
             "calibration": cfg.to_dict(), "threads": args.threads}
    print(f"held-out sentences: {n_held}; calibration: {cfg}")
    print(f"{'nblocks':>7} {'compr.':>7} {'proj cos':>9} {'proj rho':>9} {'cal cos':>8} {'cal rho':>8} "
          f"{'cal s':>7}")
    for k in args.nblocks:
        factors = project_model(spec, dense, k, show_progress=not args.no_progress)
        rep = layer_report(spec, dense, factors)["totals"]
        proj = evaluate(dense, monarch_model_from_factors(dense, spec, factors), held, dense_emb)
        t0 = time.perf_counter()
        cal_factors, record = calibrate(spec, dense, factors, cfg, show_progress=not args.no_progress)
        seconds = time.perf_counter() - t0
        cal = evaluate(dense, monarch_model_from_factors(dense, spec, cal_factors), held, dense_emb)
        rows.append({"nblocks": k, "compression": round(rep["compression"], 3),
                     "projection_cosine": round(proj["cosine"], 4), "projection_spearman": round(proj["spearman"], 4),
                     "calibrated_cosine": round(cal["cosine"], 4), "calibrated_spearman": round(cal["spearman"], 4),
                     "calibration_seconds": round(seconds, 1),
                     "layerwise_seconds": record["layerwise_seconds"], "distill_seconds": record["distill_seconds"],
                     "distill_kept": record.get("distill", {}).get("kept")})
        r = rows[-1]
        print(f"{k:>7} {r['compression']:>6.2f}x {r['projection_cosine']:>9.4f} {r['projection_spearman']:>9.4f} "
              f"{r['calibrated_cosine']:>8.4f} {r['calibrated_spearman']:>8.4f} {seconds:>7.1f}", flush=True)
        _write(rows, extra, out)
    if args.baseline:
        factors = project_model(spec, dense, 4, show_progress=False)
        base_cfg = CalibConfig(layerwise=False, steps=args.baseline_steps, val_sentences=0)
        t0 = time.perf_counter()
        base_factors, _ = calibrate(spec, dense, factors, base_cfg, show_progress=not args.no_progress)
        seconds = time.perf_counter() - t0
        base = evaluate(dense, monarch_model_from_factors(dense, spec, base_factors), held, dense_emb)
        extra["baseline_plain_distillation_nblocks4"] = {"steps": args.baseline_steps, "seconds": round(seconds, 1),
                                                         **{m: round(v, 4) for m, v in base.items()}}
        print(f"plain distillation, nblocks 4, {args.baseline_steps} steps: cosine {base['cosine']:.4f}, "
              f"Spearman {base['spearman']:.4f}, {seconds:.1f} s")
        _write(rows, extra, out)
    print(f"wrote {out / 'minilm_d2s.csv'}, .json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
