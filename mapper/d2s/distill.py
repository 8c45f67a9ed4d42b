"""Stage 2 of the calibration: end-to-end distillation of every Monarch factor and bias.

Adam on all factors, loss = mean of the per-layer hidden-state MSE (normalised by the dense variance) +
``cos_weight * (1 - cos)`` of the mean-pooled sentence embeddings; the result is kept only if it lowers the loss
on held-back calibration batches.
"""

from __future__ import annotations

import math
import random
import time

import torch

from cimisa import progress as kit_progress
from mapper.d2s.batches import all_hidden, forward
from mapper.d2s.monarch import MonarchLinear
from mapper.evaluate.metrics import mean_pool

__all__ = ["distill"]


def _distill_loss(sparse, b, target, scales, cos_weight):
    out = forward(sparse, b, hidden=True)
    hs = all_hidden(out)
    mask = b["attention_mask"].bool()
    th, tp = target
    mse = sum(((h[mask] - t) ** 2).mean() / sc for h, t, sc in zip(hs, th, scales)) / len(hs)
    pooled = mean_pool(out.last_hidden_state, b["attention_mask"])
    cos = torch.nn.functional.cosine_similarity(pooled, tp, dim=1).mean()
    return mse + cos_weight * (1 - cos)


def _targets(dense, batches):
    targets = []
    with torch.no_grad():
        for b in batches:
            out = forward(dense, b, hidden=True)
            mask = b["attention_mask"].bool()
            targets.append(([h[mask] for h in all_hidden(out)], mean_pool(out.last_hidden_state, b["attention_mask"])))
    return targets


def distill(dense, sparse, batches: list[dict], val: list[dict], *, steps: int, lr: float, seed: int,
            cos_weight: float, max_seconds: float | None, show_progress: bool) -> dict:
    """Distil ``sparse`` (in place) towards ``dense`` for ``steps`` Adam steps; return a record of the run."""
    params = [p for mod in sparse.modules() if isinstance(mod, MonarchLinear) for p in mod.parameters()]
    if not params or steps <= 0:
        return {"steps": 0}
    for p in sparse.parameters():
        p.requires_grad_(False)
    targets = _targets(dense, batches)  # dense targets computed once per batch and reused
    val_targets = _targets(dense, val)
    scales = [float(h.var()) + 1e-12 for h in targets[0][0]]

    def val_loss() -> float:
        with torch.no_grad():
            return sum(float(_distill_loss(sparse, b, t, scales, cos_weight)) for b, t in zip(val, val_targets))

    before = val_loss()
    saved = [p.detach().clone() for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    rng = random.Random(seed)
    order: list[int] = []
    losses = []
    t0 = time.perf_counter()
    done = 0
    for _ in kit_progress.bar(range(steps), desc="calibration: distillation", unit="step", show=show_progress):
        if not order:
            order = list(range(len(batches)))
            rng.shuffle(order)
        bi = order.pop()
        loss = _distill_loss(sparse, batches[bi], targets[bi], scales, cos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        done += 1
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    for p in params:
        p.requires_grad_(False)
    sparse.eval()
    after = val_loss()
    kept = after <= before
    if not kept:  # distillation made the held-back calibration loss worse: keep the layer-wise result
        with torch.no_grad():
            for p, old in zip(params, saved):
                p.copy_(old)
    tail = losses[-20:]
    return {"steps": done, "final_train_loss": sum(tail) / len(tail), "val_loss_before": before,
            "val_loss_after": after, "kept": kept}
