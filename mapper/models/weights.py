"""Weight access: one matmul's weight as an ``(out, in)`` float32 matrix, whatever module holds it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cimisa.errors import ModelError
from compiler.spec import MatmulSpec

if TYPE_CHECKING:
    import torch

__all__ = ["get_weight"]


def get_weight(model: torch.nn.Module, m: MatmulSpec) -> torch.Tensor:
    """Return the weight of matmul ``m`` as an ``(out, in)`` float32 tensor (a copy).

    Conv1D weights are transposed back, the embedding is returned as ``(hidden, vocab)``, a synthetic
    ``lm_head`` is the tied input embedding ``(vocab, hidden)``, a :class:`~mapper.d2s.MonarchLinear` gives
    the dense product of its factors.
    """
    import torch  # noqa: PLC0415

    from mapper.d2s.monarch import MonarchLinear  # noqa: PLC0415 (torch only when weights are read)
    try:
        module = model.get_submodule(m.name)
    except AttributeError:
        module = None
    if module is None and m.role == "lm_head":
        module = model.get_input_embeddings()
        w = module.weight
    elif module is None:
        raise ModelError(f"the model has no module {m.name!r}")
    elif isinstance(module, MonarchLinear):
        w = module.dense_weight()
    elif isinstance(module, torch.nn.Embedding):
        w = module.weight.t() if m.role == "embed" else module.weight
    elif m.transposed:
        w = module.weight.t()
    else:
        w = module.weight
    if w.is_meta:
        raise ModelError(f"matmul {m.name!r} has no weights (shape-only model)")
    w = w.detach().to(torch.float32).clone()
    if tuple(w.shape) != (m.out_features, m.in_features):
        raise ModelError(f"matmul {m.name!r}: weight shape {tuple(w.shape)} does not match the spec "
                         f"{(m.out_features, m.in_features)}")
    return w
