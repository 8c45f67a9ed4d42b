"""Enumeration: the weight matmuls of an instantiated Hugging Face base model, as a :class:`ModelSpec`.

Module names are matched against the family's rules (:data:`compiler.families.FAMILY`); the result is in a fixed
order: the token embedding, then per stage and layer attention, cross-attention and FFN, the LM head last.
The embedding is described as a matmul from a one-hot token (``in = vocab``) to ``hidden`` (``out``); decoders get
a synthetic ``lm_head`` entry (``vocab x hidden``). Neither is mapped unless asked for.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from cimisa.errors import ModelError
from compiler.families import FAMILIES, Family, config_int, family_of_model_type
from compiler.spec import MatmulSpec, ModelSpec

if TYPE_CHECKING:
    import torch

__all__ = ["MAX_SEQ_LEN", "family_of", "spec_from_hf_model", "seq_len_of"]

#: The longest default sequence length of a spec (prefill costing).
MAX_SEQ_LEN = 2048
_ROLE_ORDER = {r: i for i, r in enumerate(("q", "k", "v", "qkv", "o", "cross_q", "cross_k", "cross_v", "cross_o",
                                           "ffn_gate", "ffn_up", "ffn_down"))}


def family_of(config) -> Family:
    """Return the :class:`~compiler.families.Family` of a ``transformers`` config (ModelError if unsupported)."""
    model_type = getattr(config, "model_type", None)
    fam = family_of_model_type(model_type)
    if fam is None:
        raise ModelError(f"unsupported model type {model_type!r}; supported: {', '.join(FAMILIES)}")
    return fam


def _linear_shape(module) -> tuple[int, int, bool] | None:
    """Return (out, in, transposed) for nn.Linear / Conv1D modules, None for others."""
    import torch  # noqa: PLC0415
    from transformers.pytorch_utils import Conv1D  # noqa: PLC0415

    from mapper.d2s.monarch import MonarchLinear  # noqa: PLC0415 (torch only when a model is built)
    if isinstance(module, Conv1D):
        return int(module.weight.shape[1]), int(module.weight.shape[0]), True
    if isinstance(module, torch.nn.Linear):
        return int(module.out_features), int(module.in_features), False
    if isinstance(module, MonarchLinear):
        return module.out_features, module.in_features, False
    return None


def _enumerate(model: torch.nn.Module, fam: Family) -> tuple[MatmulSpec, ...]:
    import torch  # noqa: PLC0415
    rules = [(re.compile(r.pattern + r"$"), r.role, r.group) for r in fam.rules]
    modules = dict(model.named_modules())
    found: list[tuple[tuple, MatmulSpec]] = []
    for name, module in modules.items():
        for rx, role, grp in rules:
            mt = rx.match(name)
            if mt is None:
                continue
            shape = _linear_shape(module)
            if shape is None:
                continue
            out_f, in_f, transposed = shape
            layer = int(mt.group("layer"))
            stage = mt.groupdict().get("stage") or fam.default_stage
            group = grp[1:] if grp.startswith("@") else f"{stage}.{layer}.{grp}"
            spec = MatmulSpec(name=name, layer=layer, role=role, out_features=out_f, in_features=in_f,
                              input_group=group, transposed=transposed, mapped_by_default=True, stage=stage)
            found.append(((0 if stage == "encoder" else 1, layer, _ROLE_ORDER[role], name), spec))
            break
    if not found:
        raise ModelError(f"no weight matmuls found in the {fam.name} model")
    found.sort(key=lambda t: t[0])
    matmuls = [s for _, s in found]
    embed = modules.get(fam.embed_name)
    if embed is None or not isinstance(embed, torch.nn.Embedding):
        raise ModelError(f"the {fam.name} model has no token embedding {fam.embed_name!r}")
    vocab, hidden = int(embed.weight.shape[0]), int(embed.weight.shape[1])
    first = MatmulSpec(name=fam.embed_name, layer=-1, role="embed", out_features=hidden, in_features=vocab,
                       input_group="embed.tokens", transposed=False, mapped_by_default=False,
                       stage=fam.default_stage)
    result = [first, *matmuls]
    if fam.lm_head:
        result.append(MatmulSpec(name="lm_head", layer=-1, role="lm_head", out_features=vocab, in_features=hidden,
                                 input_group="lm_head.in", transposed=False, mapped_by_default=False,
                                 stage="decoder"))
    return tuple(result)


def seq_len_of(config) -> int:
    """Return the default sequence length of a config: its longest sequence, at most :data:`MAX_SEQ_LEN`."""
    value = config_int(config, family_of(config).seq_len_keys)
    return min(value, MAX_SEQ_LEN) if value else MAX_SEQ_LEN


def spec_from_hf_model(model: torch.nn.Module, *, name: str, source: str, has_weights: bool,
                       seq_len: int | None = None) -> ModelSpec:
    """Build the :class:`ModelSpec` of an instantiated Hugging Face base model."""
    config = model.config
    fam = family_of(config)
    return ModelSpec(name=name, family=fam.name, hf_config=_config_dict(config), matmuls=_enumerate(model, fam),
                     has_weights=has_weights, source=source,
                     seq_len=int(seq_len if seq_len is not None else seq_len_of(config)))


def _config_dict(config) -> dict:
    d = config.to_dict()
    # Round-trip through JSON so the dict holds plain values only (dtype objects become strings).
    return json.loads(json.dumps(d, default=str))
