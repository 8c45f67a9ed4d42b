"""Calibration: refine projected Monarch factors against the dense model on calibration text.

Two stages, both bounded and CPU-friendly:

1. **Activation-aware layer-wise fitting** (:mod:`mapper.d2s.layerwise`, one matmul: :mod:`mapper.d2s.fit`),
   block by block in forward order, so later layers compensate earlier errors;
2. **End-to-end distillation** (:mod:`mapper.d2s.distill`), kept only if it lowers the held-back loss.

Held-out metrics (:func:`evaluate`): mean cosine between dense and Monarch mean-pooled embeddings, and the
Spearman correlation of all pairwise sentence similarities (:func:`mapper.evaluate.metrics.compare_embeddings`,
the same definitions as ``mapper run``).
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import asdict, dataclass

import torch

from compiler.spec import ModelSpec
from mapper.d2s.batches import Tokenizer, embed, make_batches, make_tokenizer
from mapper.d2s.distill import distill
from mapper.d2s.fit import fit_monarch
from mapper.d2s.layerwise import layerwise_fit
from mapper.d2s.monarch import MonarchLinear
from mapper.d2s.swap import Factors, replace_with_monarch
from mapper.evaluate.metrics import compare_embeddings
from mapper.evaluate.textdata import calibration_sentences, heldout_sentences

__all__ = ["CalibConfig", "Tokenizer", "make_tokenizer", "make_batches", "embed", "evaluate", "calibrate",
           "fit_monarch", "monarch_model_from_factors", "factors_of", "compare_embeddings",
           "default_heldout_batches"]


@dataclass(frozen=True)
class CalibConfig:
    """Calibration settings (recorded in ``monarch.json``).

    ``sentences`` calibration sentences feed the layer-wise fit (``sweeps`` alternating passes per matmul,
    ``ridge`` relative damping); distillation runs ``steps`` Adam steps of ``batch`` sentences at learning rate
    ``lr`` (cosine decay), stopping early after ``max_seconds``; the distilled factors are kept only if they
    lower the loss on ``val_sentences`` held-back calibration sentences. ``layerwise`` / ``distill`` switch the
    stages.
    """

    sentences: int = 512
    sweeps: int = 12
    ridge: float = 1e-3
    steps: int = 0
    batch: int = 32
    lr: float = 5e-4
    max_len: int = 64
    seed: int = 0
    layerwise: bool = True
    distill: bool = True
    cos_weight: float = 1.0
    max_seconds: float | None = None
    val_sentences: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(dense_model, model, batches: list[dict], dense_emb: torch.Tensor | None = None) -> dict:
    """Return the held-out metrics ``{"cosine", "spearman"}`` of ``model`` against ``dense_model`` on ``batches``."""
    if dense_emb is None:
        dense_emb = embed(dense_model, batches)
    return compare_embeddings(dense_emb, embed(model, batches))


def monarch_model_from_factors(dense_model, spec: ModelSpec, factors: Factors):
    """Return a deep copy of ``dense_model`` with the factored matmuls replaced by ``MonarchLinear``."""
    model = copy.deepcopy(dense_model)
    replace_with_monarch(model, spec, factors)
    for mod in model.modules():
        if isinstance(mod, MonarchLinear):
            mod.dense_kernel = True  # same product, faster on CPU
    return model.eval()


def factors_of(model, spec: ModelSpec, names) -> Factors:
    """Return the current ``(R, L, bias)`` of the ``MonarchLinear`` modules called ``names``."""
    out: Factors = {}
    for name in names:
        mod = model.get_submodule(name)
        if not isinstance(mod, MonarchLinear):
            continue
        out[name] = (mod.R.detach().clone(), mod.L.detach().clone(),
                     mod.bias.detach().clone() if mod.bias is not None else None)
    return out


def calibrate(spec: ModelSpec, dense_model, factors: Factors, cfg: CalibConfig = CalibConfig(),
              sentences: list[str] | None = None, show_progress: bool = True) -> tuple[Factors, dict]:
    """Return refined factors and a record of the run (settings, wall times, losses).

    ``sentences`` defaults to :func:`mapper.evaluate.textdata.calibration_sentences` (the first ``cfg.sentences``
    of a seeded shuffle).
    """
    torch.manual_seed(cfg.seed)
    if sentences is None:
        pool = calibration_sentences()
        random.Random(cfg.seed).shuffle(pool)
        val_sents = pool[-cfg.val_sentences:] if cfg.val_sentences else []
        sentences = pool[: min(cfg.sentences, len(pool) - len(val_sents))]
    else:
        val_sents = sentences[-cfg.val_sentences:] if 0 < cfg.val_sentences < len(sentences) else []
        sentences = sentences[: len(sentences) - len(val_sents)]
    tok = make_tokenizer(spec, cfg.max_len)
    dense_model.eval()
    sparse = monarch_model_from_factors(dense_model, spec, factors)
    record: dict = {"settings": cfg.to_dict(), "sentences": len(sentences)}
    t0 = time.perf_counter()
    if cfg.layerwise:
        lw_batches = make_batches(tok, sentences, 64)
        layerwise_fit(dense_model, sparse, spec, lw_batches, cfg.sweeps, cfg.ridge, show_progress)
    t1 = time.perf_counter()
    record["layerwise_seconds"] = round(t1 - t0, 2)
    if cfg.distill:
        batches = make_batches(tok, sentences, cfg.batch)
        val = make_batches(tok, val_sents, cfg.batch) if val_sents else batches[:2]
        record["distill"] = distill(dense_model, sparse, batches, val, steps=cfg.steps, lr=cfg.lr, seed=cfg.seed,
                                    cos_weight=cfg.cos_weight, max_seconds=cfg.max_seconds,
                                    show_progress=show_progress)
    record["distill_seconds"] = round(time.perf_counter() - t1, 2)
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return factors_of(sparse, spec, list(factors)), record


def default_heldout_batches(spec: ModelSpec, n: int = 256, max_len: int = 64) -> list[dict]:
    """Return the held-out sentences of :mod:`mapper.evaluate.textdata` as batches for :func:`evaluate`."""
    return make_batches(make_tokenizer(spec, max_len), heldout_sentences(n), 64)
