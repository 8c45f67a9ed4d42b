"""Module replacement: put :class:`MonarchLinear` layers (or any module) in place of a model's dense matmuls.

Kept apart from the projection (:mod:`mapper.d2s.convert`) because model loading uses it too
(:func:`mapper.models.build.build_monarch_model`): it imports nothing of :mod:`mapper.models`.
"""

from __future__ import annotations

import torch

from cimisa.errors import ModelError
from compiler.spec import ModelSpec
from mapper.d2s.monarch import MonarchLinear, monarch_to_dense

__all__ = ["Factors", "replace_with_monarch", "set_submodule"]

#: Monarch factors of a model: matmul name -> (R, L, bias or None).
Factors = dict[str, tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]]


def set_submodule(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    """Replace the submodule called ``name`` (a dotted path) of ``model`` by ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def replace_with_monarch(model: torch.nn.Module, spec: ModelSpec, factors: Factors) -> torch.nn.Module:
    """Swap each factored matmul of ``model`` (in place) for a :class:`MonarchLinear`; return ``model``.

    A factored embedding gets the dense product of its factors as its table (a lookup is a one-hot matmul);
    a synthetic ``lm_head`` (absent from the base model) is skipped.
    """
    by_name = {m.name: m for m in spec.matmuls}
    for name, (R, L, bias) in factors.items():
        m = by_name.get(name)
        if m is None:
            raise ModelError(f"factor {name!r} matches no matmul of model {spec.name!r}")
        if m.role == "lm_head":
            try:
                model.get_submodule(name)
            except AttributeError:
                continue
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ModelError(f"the model has no module {name!r}") from None
        if m.role == "embed":
            with torch.no_grad():
                module.weight.copy_(monarch_to_dense(R, L, m.out_features, m.in_features).t())
            continue
        set_submodule(model, name, MonarchLinear(R, L, m.out_features, m.in_features, bias))
    return model
