"""``mapper d2s`` end to end: project a model, optionally evaluate and calibrate it, write the D2S folder.

The command line (:mod:`mapper.cli_d2s`) checks its options and calls :func:`convert`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cimisa import progress
from compiler.geometry import default_nblocks
from mapper.d2s.calibrate import CalibConfig, default_heldout_batches, embed, evaluate, monarch_model_from_factors
from mapper.d2s.calibrate import calibrate as run_calibration
from mapper.d2s.convert import check_nblocks, layer_report, project_model
from mapper.d2s.io import save_monarch_dir
from mapper.models import load_hf_model, load_model_spec

__all__ = ["convert"]


def convert(model: str, nblocks: int | None, out: str | Path, *, calibrate: bool = False, steps: int | None = None,
            sentences: int | None = None, seed: int = 0, include_embeddings: bool = False,
            evaluate_heldout: bool = False, show_progress: bool = True, force: bool = False) -> dict:
    """Convert ``model`` and write the D2S folder ``out``; return the report dict (see
    :func:`mapper.cli_d2s.run_d2s`, which checks the options first)."""
    spec = load_model_spec(model)
    if nblocks is None:
        nblocks = default_nblocks(spec)
    check_nblocks(spec, nblocks, include_embeddings)
    dense = load_hf_model(model)
    with progress.stage("d2s: projection", show=show_progress):
        factors = project_model(spec, dense, nblocks, include_embeddings, show_progress=show_progress)
    report = layer_report(spec, dense, factors)
    report["model"] = spec.source
    report["nblocks"] = nblocks
    calib_record = None
    metrics: dict = {}
    if calibrate or evaluate_heldout:
        with progress.stage("d2s: held-out evaluation", show=show_progress):
            heldout = default_heldout_batches(spec)
            dense_emb = embed(dense, heldout)
            metrics["projection"] = evaluate(dense, monarch_model_from_factors(dense, spec, factors), heldout,
                                             dense_emb)
    if calibrate:
        cfg = CalibConfig(seed=seed, **({"steps": steps} if steps is not None else {}),
                          **({"sentences": sentences} if sentences is not None else {}))
        torch.manual_seed(seed)
        factors, calib_record = run_calibration(spec, dense, factors, cfg, show_progress=show_progress)
        with progress.stage("d2s: held-out evaluation", show=show_progress):
            metrics["calibrated"] = evaluate(dense, monarch_model_from_factors(dense, spec, factors), heldout,
                                             dense_emb)
        report = {**layer_report(spec, dense, factors), "model": spec.source, "nblocks": nblocks,
                  "projection_totals": report["totals"]}
        calib_record["heldout_sentences"] = sum(len(b["index"]) for b in heldout)
    if metrics:
        report["heldout_metrics"] = metrics
    if calib_record is not None:
        report["calibration"] = calib_record
    save_monarch_dir(out, spec, nblocks, factors, report, calib_record, force=force)
    return report
