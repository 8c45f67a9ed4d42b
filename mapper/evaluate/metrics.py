"""Text-model metrics, defined once: pooling, cosine, Spearman, relative error, next-token agreement and perplexity.

Used by ``mapper run`` (:mod:`mapper.evaluate.run`) and by the D2S calibration and held-out evaluation
(:mod:`mapper.d2s.calibrate`), so both commands report the same "cosine" for the same embeddings.

Conventions (one each):

* mean pooling divides by the number of real tokens, clamped to at least 1 (a row without tokens pools to zero;
  every real sentence has a token, so the clamp never changes a value);
* cosines and pairwise similarities are computed in float64;
* Spearman's rho is the Pearson correlation of the ranks (ties get distinct ranks in sort order), NaN for fewer
  than two values.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["mean_pool", "cosine", "spearman", "pairwise_spearman", "relative_error", "encoder_metrics",
           "compare_embeddings", "decoder_metrics"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return the attention-mask-weighted mean over tokens ``(B, T, H) -> (B, H)`` (sentence-transformers
    pooling)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return the row-wise cosine similarity of ``a`` and ``b`` ``(B, H)``, in float64."""
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def spearman(a, b) -> float:
    """Return Spearman's rank correlation of two equally long vectors (ties ranked in sort order; NaN for fewer
    than two values)."""
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def pairwise_spearman(ref: torch.Tensor, emb: torch.Tensor) -> float:
    """Return the Spearman correlation of all pairwise cosine similarities of ``ref`` and of ``emb`` rows: how
    well ``emb`` ranks sentence pairs as ``ref`` does."""
    rn = torch.nn.functional.normalize(ref.double(), dim=-1)
    en = torch.nn.functional.normalize(emb.double(), dim=-1)
    iu = torch.triu_indices(ref.shape[0], ref.shape[0], 1)
    return spearman((rn @ rn.T)[iu[0], iu[1]], (en @ en.T)[iu[0], iu[1]])


def relative_error(ref: torch.Tensor, approx: torch.Tensor) -> float:
    """Return ``||approx - ref|| / ||ref||`` (Frobenius; ``||approx||`` when ``ref`` is zero)."""
    denom = float(ref.norm())
    return float((ref - approx).norm()) / denom if denom > 0 else float(approx.norm())


def encoder_metrics(ref: torch.Tensor, emb: torch.Tensor) -> dict:
    """Return cosine statistics of embeddings ``emb`` against ``ref`` and (3 sentences or more) the Spearman
    correlation of their pairwise similarities (``mapper run``'s report)."""
    cos = cosine(ref, emb)
    # torch's median of an even count is the lower middle value (of two values: the minimum); use the mean of
    # the two middle values, as numpy does.
    out = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
           "cosine_median": float(np.median(cos.detach().cpu().numpy())), "n": int(cos.numel())}
    if ref.shape[0] >= 3:
        out["pair_spearman"] = pairwise_spearman(ref, emb)
    return out


def compare_embeddings(dense: torch.Tensor, other: torch.Tensor) -> dict:
    """Return ``{"cosine", "spearman"}``: the mean cosine and the pairwise Spearman (the D2S held-out report)."""
    return {"cosine": float(cosine(dense, other).mean()), "spearman": pairwise_spearman(dense, other)}


def decoder_metrics(dense_logits: torch.Tensor, logits: torch.Tensor, ids: torch.Tensor) -> dict:
    """Return top-1 next-token agreement with the dense model and the perplexity of the text under both."""
    agree = (dense_logits.argmax(-1) == logits.argmax(-1)).double().mean()

    def ppl(lg):
        if ids.shape[1] < 2:
            return float("nan")
        nll = torch.nn.functional.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]).double(),
                                                ids[:, 1:].reshape(-1))
        return float(torch.exp(nll.detach()))

    p_dense, p = ppl(dense_logits), ppl(logits)
    return {"top1_agreement": float(agree), "ppl_dense": p_dense, "ppl": p,
            "ppl_change": (p / p_dense - 1.0) if p_dense and math.isfinite(p_dense) else float("nan")}
