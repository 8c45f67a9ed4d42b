"""Model construction: the :class:`ModelSpec` and the runnable ``transformers`` model of any ``--model`` argument.

* :func:`load_model_spec`: built-in names and checkpoint folders are enumerated on the meta device (even
  Llama-2-7B costs no memory and no download); a D2S folder's spec is its ``monarch.json``.
* :func:`load_hf_model`: the base model (``AutoModel``) with seeded (tiny built-ins) or checkpoint weights, or a
  D2S folder's source model with its Monarch layers (:func:`build_monarch_model`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cimisa.errors import ModelError
from compiler.spec import ModelSpec
from mapper.d2s.io import load_monarch_dir, load_monarch_spec, read_monarch_json
from mapper.models.checkpoint import check_layers, check_loaded, check_shapes, checkpoint_shapes, hf_config
from mapper.models.hf import quiet_transformers, short
from mapper.models.matmuls import family_of, spec_from_hf_model
from mapper.models.resolve import resolve_source
from mapper.models.zoo import TINY_SEED

if TYPE_CHECKING:
    import torch

    from mapper.d2s.swap import Factors

__all__ = ["load_model_spec", "load_hf_model", "load_source_spec", "build_monarch_model"]


def _meta_model(config):
    import torch  # noqa: PLC0415
    from transformers import AutoModel  # noqa: PLC0415
    quiet_transformers()
    try:
        with torch.device("meta"):
            return AutoModel.from_config(config)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot build a {getattr(config, 'model_type', '?')} model from its config: "
                         f"{short(exc)}") from None


def load_model_spec(name_or_dir: str) -> ModelSpec:
    """Return the :class:`ModelSpec` of a built-in name, checkpoint folder or d2s output folder.

    Built-in names and checkpoint folders are enumerated on the meta device (no weights are read); a checkpoint
    folder's ``config.json`` and the headers of its ``*.safetensors`` files are checked (shapes included).
    """
    kind, entry, folder = resolve_source(name_or_dir)
    if kind == "d2s":
        return load_monarch_spec(folder)
    if kind in ("shape", "tiny"):
        config = entry.make_config()
        model = _meta_model(config)
        return spec_from_hf_model(model, name=entry.name, source=entry.name, has_weights=(kind == "tiny"),
                                  seq_len=entry.seq_len)
    shapes = checkpoint_shapes(folder)
    config = hf_config(folder)
    check_layers(folder, config, family_of(config), shapes)
    model = _meta_model(config)
    check_shapes(folder, model, shapes)
    if entry is not None:
        return spec_from_hf_model(model, name=entry.name, source=entry.name, has_weights=True,
                                  seq_len=entry.seq_len)
    return spec_from_hf_model(model, name=folder.name, source=str(folder), has_weights=True)


def load_hf_model(name_or_dir: str):
    """Return the Hugging Face base model (a ``torch.nn.Module``) with weights, in eval mode and float32.

    Tiny built-in models get seeded random weights (the same on every call); checkpoint folders and ``minilm``
    load through ``transformers`` and must provide every tensor the model uses, with the right shape and finite
    values (only BERT's unused pooler may be absent); a d2s output folder gives the model with its Monarch
    layers. Shape-only names and unusable checkpoints raise :class:`~cimisa.errors.ModelError`.
    """
    import torch  # noqa: PLC0415
    kind, entry, folder = resolve_source(name_or_dir)
    if kind == "shape":
        raise ModelError(f"model {entry.name!r} is shape-only (no weights); use a tiny-* model, 'minilm' "
                         f"or a local Hugging Face checkpoint folder")
    if kind == "d2s":
        return build_monarch_model(folder)
    from transformers import AutoModel  # noqa: PLC0415
    quiet_transformers()
    if kind == "tiny":
        config = entry.make_config()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            model = AutoModel.from_config(config)
        return model.float().eval()
    shapes = checkpoint_shapes(folder)
    config = hf_config(folder)
    fam = family_of(config)
    check_layers(folder, config, fam, shapes)
    check_shapes(folder, _meta_model(config), shapes)
    # Anything the checkpoint lacks is refused below; the seed only keeps unused parts (pooler) reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        try:
            model, info = AutoModel.from_pretrained(str(folder), config=config, local_files_only=True,
                                                    dtype=torch.float32, output_loading_info=True,
                                                    ignore_mismatched_sizes=True)
        except Exception as exc:  # noqa: BLE001 - corrupt or mismatched weights
            raise ModelError(f"cannot load weights from {folder}: {short(exc)}") from None
    check_loaded(folder, fam, model, info)
    return model.float().eval()


def load_source_spec(spec: ModelSpec, source: str) -> ModelSpec:
    """Return the spec of the source model of a D2S folder's ``spec``, checking that the two still match."""
    if (Path(source) / "monarch.json").is_file():
        raise ModelError(f"d2s folder {spec.source} names another d2s folder as its source")
    try:
        source_spec = load_model_spec(source)
    except ModelError as exc:
        raise ModelError(f"cannot load the source model of {spec.source}: {exc.one_line()}") from None
    if source_spec.family != spec.family:
        raise ModelError(f"d2s folder {spec.source} says family {spec.family!r}, but its source model {source} "
                         f"is a {source_spec.family} model")
    ours = [(m.name, m.out_features, m.in_features) for m in spec.matmuls]
    theirs = [(m.name, m.out_features, m.in_features) for m in source_spec.matmuls]
    if ours != theirs:
        diff = next((f"{a[0]} {a[1]}x{a[2]}" for a in ours if a not in theirs), None)
        raise ModelError(f"the source model {source} no longer matches the matmuls in {spec.source}"
                         + (f" (it has no {diff})" if diff else ""))
    return source_spec


def build_monarch_model(dir_or_spec, factors: Factors | None = None) -> torch.nn.Module:
    """Return the source Hugging Face model with every factored matmul replaced by a ``MonarchLinear``.

    ``dir_or_spec`` is a D2S folder (factors read from it unless given), or a :class:`ModelSpec` (of the source
    model, or of a D2S folder) together with ``factors``.
    """
    from mapper.d2s.swap import replace_with_monarch  # noqa: PLC0415 (torch only when a model is built)
    if isinstance(dir_or_spec, ModelSpec):
        spec = dir_or_spec
        if factors is None:
            raise ModelError("build_monarch_model needs factors when given a ModelSpec")
    else:
        spec, loaded = load_monarch_dir(dir_or_spec)
        factors = loaded if factors is None else factors
    source = spec.source
    if (Path(source) / "monarch.json").is_file():
        source = str(read_monarch_json(source)["source"])
        source_spec = load_source_spec(spec, source)
    else:
        source_spec = spec
    try:
        model = load_hf_model(source)
    except ModelError as exc:
        raise ModelError(f"cannot load the source model of {spec.source}: {exc.one_line()}") from None
    replace_with_monarch(model, source_spec, factors)
    return model.eval()
