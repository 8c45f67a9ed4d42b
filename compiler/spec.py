"""The model description the compiler works on: a model's weight matmuls, their roles and shapes (no weights).

:class:`ModelSpec` and :class:`MatmulSpec` are plain data (no torch): :mod:`mapper.models` builds them from a
built-in name, a Hugging Face checkpoint or a D2S folder; the compiler (geometry, placement, cost) reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cimisa.errors import ModelError
from compiler.families import FAMILIES, RUN_FAMILIES  # the family table is the one source

__all__ = ["MatmulSpec", "ModelSpec", "ROLES", "FAMILIES", "RUN_FAMILIES"]

ROLES = ("q", "k", "v", "o", "qkv", "ffn_up", "ffn_down", "ffn_gate", "cross_q", "cross_k", "cross_v", "cross_o",
         "embed", "lm_head")


@dataclass(frozen=True)
class MatmulSpec:
    """One weight matmul ``y = W x`` of a transformer.

    ``name`` is the module path in the Hugging Face base model (unique in the model); ``layer`` the transformer
    block index (-1 for embeddings and the LM head); ``role`` one of :data:`ROLES`. Matmuls with the same
    ``input_group`` read the same input vector (Q, K, V of one layer; Llama gate and up; every BART cross K and V
    reads the encoder output). ``transposed`` marks a GPT-2 ``Conv1D`` whose weight is stored as ``(in, out)``.
    """

    name: str
    layer: int
    role: str
    out_features: int
    in_features: int
    input_group: str
    transposed: bool
    mapped_by_default: bool
    stage: str = "encoder"

    @property
    def shape(self) -> tuple[int, int]:
        """The weight shape ``(out_features, in_features)``."""
        return (self.out_features, self.in_features)

    def to_dict(self) -> dict:
        """Return the fields as a JSON-ready dict."""
        return {"name": self.name, "layer": self.layer, "role": self.role, "out_features": self.out_features,
                "in_features": self.in_features, "input_group": self.input_group, "transposed": self.transposed,
                "mapped_by_default": self.mapped_by_default, "stage": self.stage}

    @classmethod
    def from_dict(cls, d: dict) -> MatmulSpec:
        """Build from :meth:`to_dict` output."""
        return cls(name=str(d["name"]), layer=int(d["layer"]), role=str(d["role"]),
                   out_features=int(d["out_features"]), in_features=int(d["in_features"]),
                   input_group=str(d["input_group"]), transposed=bool(d["transposed"]),
                   mapped_by_default=bool(d.get("mapped_by_default", d["role"] not in ("embed", "lm_head"))),
                   stage=str(d.get("stage", "encoder")))


@dataclass(frozen=True)
class ModelSpec:
    """The weight matmuls of one model, plus where it came from.

    ``source`` is the built-in name or the absolute folder path; ``seq_len`` the default sequence length for
    prefill costing; ``has_weights`` is False only for the shape-only built-in models.
    """

    name: str
    family: str
    hf_config: dict = field(hash=False, compare=False, repr=False)
    matmuls: tuple[MatmulSpec, ...] = field(repr=False)
    has_weights: bool
    source: str
    seq_len: int

    def mapped(self, include_embeddings: bool = False) -> tuple[MatmulSpec, ...]:
        """Return the matmuls placed on crossbars: all but embeddings and LM head unless ``include_embeddings``."""
        return tuple(m for m in self.matmuls if m.mapped_by_default or include_embeddings)

    def matmul(self, name: str) -> MatmulSpec:
        """Return the matmul called ``name``."""
        for m in self.matmuls:
            if m.name == name:
                return m
        raise ModelError(f"model {self.name!r} has no matmul {name!r}")

    @property
    def num_layers(self) -> int:
        """The number of transformer blocks (encoder and decoder counted separately for BART)."""
        return len({(m.stage, m.layer) for m in self.matmuls if m.layer >= 0})
