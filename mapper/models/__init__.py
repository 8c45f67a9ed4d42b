"""Model import: every weight matmul of a transformer, with its role and shape, and (when available) weights.

A model is named by a built-in name (:data:`ZOO`), a local Hugging Face checkpoint folder (``config.json`` +
``*.safetensors``) or a D2S output folder (``monarch.json``, written by ``python -m mapper d2s``).

* :mod:`mapper.models.resolve`: names and folders (:func:`resolve_source`, :func:`source_family`; no torch);
* :mod:`mapper.models.checkpoint`: ``config.json`` and weight-file checks;
* :mod:`mapper.models.matmuls`: the weight matmuls of a built model (:func:`spec_from_hf_model`), by the family
  rules of :mod:`compiler.families`;
* :mod:`mapper.models.build`: :func:`load_model_spec` (meta device: even Llama-2-7B costs no memory) and
  :func:`load_hf_model` (the ``transformers`` base model with real or seeded weights);
* :mod:`mapper.models.weights`: :func:`get_weight`, one matmul's weight as an ``(out, in)`` float32 matrix.

The base model (no task head) is used for every family, so module names are those of ``AutoModel``
(``encoder.layer.0.attention.self.query``, ``h.0.attn.c_attn``, ``layers.0.mlp.gate_proj``, ...).
This package only re-exports; torch is imported when a model is built, not on import.
"""

from __future__ import annotations

from compiler.families import FAMILIES, RUN_FAMILIES
from compiler.spec import ROLES, MatmulSpec, ModelSpec
from mapper.models.build import build_monarch_model, load_hf_model, load_model_spec, load_source_spec
from mapper.models.matmuls import MAX_SEQ_LEN, spec_from_hf_model
from mapper.models.resolve import list_models, resolve_source, source_family
from mapper.models.weights import get_weight
from mapper.models.zoo import TINY_SEED, ZOO, ZooEntry, minilm_dir

__all__ = [
    "MatmulSpec", "ModelSpec", "ZOO", "ROLES", "FAMILIES", "list_models", "load_model_spec", "load_hf_model",
    "get_weight", "resolve_source", "source_family", "spec_from_hf_model", "RUN_FAMILIES", "MAX_SEQ_LEN",
    "TINY_SEED", "ZooEntry", "minilm_dir", "load_source_spec", "build_monarch_model",
]
