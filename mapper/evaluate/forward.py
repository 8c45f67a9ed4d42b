"""Running text through a model: per-layer progress, the inputs of every mapped matmul, pooled embeddings.

Step 2 of an end-to-end run (:func:`collect_activations`: the calibration inputs that set the activation scales)
and the encoder forward pass whose mean-pooled output ``mapper run`` compares (:func:`embed`).
"""

from __future__ import annotations

import contextlib

import torch

from cimisa import progress as kit_progress
from compiler.families import family_of_model_type
from mapper.evaluate.executor import CimLinear
from mapper.evaluate.metrics import mean_pool
from mapper.evaluate.prepare import Prepared, tokenize

__all__ = ["layer_progress", "collect_activations", "embed"]


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of ``model`` in forward order (its family's block lists), [] if unknown."""
    fam = family_of_model_type(getattr(getattr(model, "config", None), "model_type", None))
    if fam is None:
        return []
    return [blk for blocks in fam.blocks for blk in model.get_submodule(blocks.path)]


@contextlib.contextmanager
def layer_progress(model: torch.nn.Module, desc: str, enabled: bool = True, passes: int = 1):
    """Report the step ``desc`` (:func:`cimisa.progress.stage`), advancing once per transformer layer run."""
    layers = _layers(model)
    with kit_progress.stage(desc, total=len(layers) * passes or None, unit="layer", show=enabled) as bar:
        def tick(*_):
            bar.update(1)      # returns None: a forward hook's return value would replace the layer's output

        handles = [m.register_forward_hook(tick) for m in layers]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


def collect_activations(prep: Prepared, texts: list[str], max_len: int = 128,
                        max_rows: int = 4096) -> dict[str, torch.Tensor]:
    """Return the inputs ``(tokens, in)`` of every factored matmul of the float Monarch model on ``texts``.

    Only real tokens (not padding) are kept, at most ``max_rows`` per matmul (an even spread).
    """
    batch = tokenize(prep, texts, max_len)
    mask = batch["attention_mask"].reshape(-1).bool()
    store: dict[str, torch.Tensor] = {}
    handles = []
    for name in prep.factors:
        def hook(_m, args, _out, name=name):
            x = args[0].detach().reshape(-1, args[0].shape[-1])
            if x.shape[0] == mask.numel():
                x = x[mask]
            store[name] = x
        handles.append(prep.monarch.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            prep.monarch(**batch)
    finally:
        for h in handles:
            h.remove()
    for name, x in store.items():
        if x.shape[0] > max_rows:
            idx = torch.linspace(0, x.shape[0] - 1, max_rows).round().long()
            store[name] = x[idx]
    return store


def _set_token_mask(model: torch.nn.Module, mask: torch.Tensor | None) -> None:
    for mod in model.modules():
        if isinstance(mod, CimLinear):
            mod.token_mask = mask


def embed(model: torch.nn.Module, batch: dict, progress: bool = False, desc: str = "") -> torch.Tensor:
    """Return mean-pooled sentence embeddings ``(B, hidden)`` (CIM layers skip padding tokens)."""
    _set_token_mask(model, batch["attention_mask"].reshape(-1).bool())
    try:
        with torch.no_grad(), layer_progress(model, desc, enabled=progress):
            out = model(**batch)
    finally:
        _set_token_mask(model, None)
    return mean_pool(out.last_hidden_state, batch["attention_mask"])
