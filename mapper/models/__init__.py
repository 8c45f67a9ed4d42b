"""Model import: every weight matmul of a transformer, with its role and shape, and (when available) weights.

A model is named by a built-in name (:data:`ZOO`), a local Hugging Face checkpoint folder (``config.json`` +
``*.safetensors``) or a D2S output folder (``monarch.json``, written by ``python -m mapper d2s``).

* :func:`load_model_spec` returns a :class:`ModelSpec`: the list of weight matmuls (:class:`MatmulSpec`) in a
  fixed order (embeddings, then per stage and layer: attention, cross-attention, FFN; LM head last). Built-in
  names are built on the meta device, so even Llama-2-7B costs no memory and no download.
* :func:`load_hf_model` returns the ``transformers`` base model (``AutoModel``) with real or seeded weights.
* :func:`get_weight` returns one matmul's weight as an ``(out, in)`` float32 matrix.

The base model (no task head) is used for every family, so module names are those of ``AutoModel``
(``encoder.layer.0.attention.self.query``, ``h.0.attn.c_attn``, ``layers.0.mlp.gate_proj``, ...). Decoders get a
synthetic ``lm_head`` entry (``vocab x hidden``, tied to the input embedding, as GPT-2, OPT and BART tie it; for
Llama-2 the real head is untied but has the same shape). The embedding is described as a matmul from a one-hot
token (``in = vocab``) to ``hidden`` (``out``). Neither is mapped unless asked for.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

# Nothing in the kit may download at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from cimisa.errors import ModelError  # noqa: E402
from compiler.spec import FAMILIES, ROLES, RUN_FAMILIES, MatmulSpec, ModelSpec  # noqa: E402
from mapper.models.zoo import TINY_SEED, ZOO, ZooEntry, minilm_dir  # noqa: E402

__all__ = [
    "MatmulSpec", "ModelSpec", "ZOO", "ROLES", "FAMILIES", "list_models", "load_model_spec", "load_hf_model",
    "get_weight", "resolve_source", "source_family", "spec_from_hf_model", "RUN_FAMILIES",
]

MAX_SEQ_LEN = 2048


def list_models() -> list[str]:
    """Return the built-in model names."""
    return list(ZOO)


# --------------------------------------------------------------------------------------------------------------
# Enumeration: module-name patterns per family -> (role, input group suffix)

# (regex over the module name, role, input-group suffix). Group "layer" is the block index, "stage" (BART only)
# is encoder/decoder.
_RULES: dict[str, list[tuple[str, str, str]]] = {
    "bert": [
        (r"encoder\.layer\.(?P<layer>\d+)\.attention\.self\.query", "q", "attn_in"),
        (r"encoder\.layer\.(?P<layer>\d+)\.attention\.self\.key", "k", "attn_in"),
        (r"encoder\.layer\.(?P<layer>\d+)\.attention\.self\.value", "v", "attn_in"),
        (r"encoder\.layer\.(?P<layer>\d+)\.attention\.output\.dense", "o", "attn_ctx"),
        (r"encoder\.layer\.(?P<layer>\d+)\.intermediate\.dense", "ffn_up", "ffn_in"),
        (r"encoder\.layer\.(?P<layer>\d+)\.output\.dense", "ffn_down", "ffn_hidden"),
    ],
    "gpt2": [
        (r"h\.(?P<layer>\d+)\.attn\.c_attn", "qkv", "attn_in"),
        (r"h\.(?P<layer>\d+)\.attn\.c_proj", "o", "attn_ctx"),
        (r"h\.(?P<layer>\d+)\.mlp\.c_fc", "ffn_up", "ffn_in"),
        (r"h\.(?P<layer>\d+)\.mlp\.c_proj", "ffn_down", "ffn_hidden"),
    ],
    "bart": [
        (r"(?P<stage>encoder|decoder)\.layers\.(?P<layer>\d+)\.self_attn\.q_proj", "q", "attn_in"),
        (r"(?P<stage>encoder|decoder)\.layers\.(?P<layer>\d+)\.self_attn\.k_proj", "k", "attn_in"),
        (r"(?P<stage>encoder|decoder)\.layers\.(?P<layer>\d+)\.self_attn\.v_proj", "v", "attn_in"),
        (r"(?P<stage>encoder|decoder)\.layers\.(?P<layer>\d+)\.self_attn\.out_proj", "o", "attn_ctx"),
        (r"(?P<stage>decoder)\.layers\.(?P<layer>\d+)\.encoder_attn\.q_proj", "cross_q", "cross_in"),
        (r"(?P<stage>decoder)\.layers\.(?P<layer>\d+)\.encoder_attn\.k_proj", "cross_k", "@encoder.output"),
        (r"(?P<stage>decoder)\.layers\.(?P<layer>\d+)\.encoder_attn\.v_proj", "cross_v", "@encoder.output"),
        (r"(?P<stage>decoder)\.layers\.(?P<layer>\d+)\.encoder_attn\.out_proj", "cross_o", "cross_ctx"),
        (r"(?P<stage>encoder|decoder)\.layers\.(?P<layer>\d+)\.fc1", "ffn_up", "ffn_in"),
        (r"(?P<stage>encoder|decoder)\.layers\.(?P<layer>\d+)\.fc2", "ffn_down", "ffn_hidden"),
    ],
    "opt": [
        (r"decoder\.layers\.(?P<layer>\d+)\.self_attn\.q_proj", "q", "attn_in"),
        (r"decoder\.layers\.(?P<layer>\d+)\.self_attn\.k_proj", "k", "attn_in"),
        (r"decoder\.layers\.(?P<layer>\d+)\.self_attn\.v_proj", "v", "attn_in"),
        (r"decoder\.layers\.(?P<layer>\d+)\.self_attn\.out_proj", "o", "attn_ctx"),
        (r"decoder\.layers\.(?P<layer>\d+)\.fc1", "ffn_up", "ffn_in"),
        (r"decoder\.layers\.(?P<layer>\d+)\.fc2", "ffn_down", "ffn_hidden"),
    ],
    "llama": [
        (r"layers\.(?P<layer>\d+)\.self_attn\.q_proj", "q", "attn_in"),
        (r"layers\.(?P<layer>\d+)\.self_attn\.k_proj", "k", "attn_in"),
        (r"layers\.(?P<layer>\d+)\.self_attn\.v_proj", "v", "attn_in"),
        (r"layers\.(?P<layer>\d+)\.self_attn\.o_proj", "o", "attn_ctx"),
        (r"layers\.(?P<layer>\d+)\.mlp\.gate_proj", "ffn_gate", "ffn_in"),
        (r"layers\.(?P<layer>\d+)\.mlp\.up_proj", "ffn_up", "ffn_in"),
        (r"layers\.(?P<layer>\d+)\.mlp\.down_proj", "ffn_down", "ffn_hidden"),
    ],
}
_EMBED_NAME = {"bert": "embeddings.word_embeddings", "gpt2": "wte", "bart": "shared",
               "opt": "decoder.embed_tokens", "llama": "embed_tokens"}
_DEFAULT_STAGE = {"bert": "encoder", "gpt2": "decoder", "bart": "encoder", "opt": "decoder", "llama": "decoder"}
_HAS_LM_HEAD = {"bert": False, "gpt2": True, "bart": True, "opt": True, "llama": True}
_ROLE_ORDER = {r: i for i, r in enumerate(("q", "k", "v", "qkv", "o", "cross_q", "cross_k", "cross_v", "cross_o",
                                           "ffn_gate", "ffn_up", "ffn_down"))}
_MODEL_TYPE_FAMILY = {"bert": "bert", "gpt2": "gpt2", "bart": "bart", "opt": "opt", "llama": "llama"}


def _family_of(config) -> str:
    model_type = getattr(config, "model_type", None)
    family = _MODEL_TYPE_FAMILY.get(model_type)
    if family is None:
        raise ModelError(f"unsupported model type {model_type!r}; supported: {', '.join(FAMILIES)}")
    return family


def _linear_shape(module) -> tuple[int, int, bool] | None:
    """Return (out, in, transposed) for nn.Linear / Conv1D modules, None for others."""
    import torch  # noqa: PLC0415
    from transformers.pytorch_utils import Conv1D
    if isinstance(module, Conv1D):
        return int(module.weight.shape[1]), int(module.weight.shape[0]), True
    if isinstance(module, torch.nn.Linear):
        return int(module.out_features), int(module.in_features), False
    from mapper.d2s.monarch import MonarchLinear  # noqa: PLC0415 (cycle-free lazy import)
    if isinstance(module, MonarchLinear):
        return module.out_features, module.in_features, False
    return None


def _enumerate(model: torch.nn.Module, family: str) -> tuple[MatmulSpec, ...]:
    import torch  # noqa: PLC0415
    rules = [(re.compile(rx + r"$"), role, grp) for rx, role, grp in _RULES[family]]
    modules = dict(model.named_modules())
    found: list[tuple[tuple, MatmulSpec]] = []
    default_stage = _DEFAULT_STAGE[family]
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
            stage = mt.groupdict().get("stage") or default_stage
            group = grp[1:] if grp.startswith("@") else f"{stage}.{layer}.{grp}"
            spec = MatmulSpec(name=name, layer=layer, role=role, out_features=out_f, in_features=in_f,
                              input_group=group, transposed=transposed, mapped_by_default=True, stage=stage)
            found.append(((0 if stage == "encoder" else 1, layer, _ROLE_ORDER[role], name), spec))
            break
    if not found:
        raise ModelError(f"no weight matmuls found in the {family} model")
    found.sort(key=lambda t: t[0])
    matmuls = [s for _, s in found]
    embed = modules.get(_EMBED_NAME[family])
    if embed is None or not isinstance(embed, torch.nn.Embedding):
        raise ModelError(f"the {family} model has no token embedding {_EMBED_NAME[family]!r}")
    vocab, hidden = int(embed.weight.shape[0]), int(embed.weight.shape[1])
    first = MatmulSpec(name=_EMBED_NAME[family], layer=-1, role="embed", out_features=hidden, in_features=vocab,
                       input_group="embed.tokens", transposed=False, mapped_by_default=False,
                       stage="encoder" if family in ("bert", "bart") else "decoder")
    result = [first, *matmuls]
    if _HAS_LM_HEAD[family]:
        result.append(MatmulSpec(name="lm_head", layer=-1, role="lm_head", out_features=vocab, in_features=hidden,
                                 input_group="lm_head.in", transposed=False, mapped_by_default=False,
                                 stage="decoder"))
    return tuple(result)


def _seq_len_of(config) -> int:
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return min(value, MAX_SEQ_LEN)
    return MAX_SEQ_LEN


def spec_from_hf_model(model: torch.nn.Module, *, name: str, source: str, has_weights: bool,
                       seq_len: int | None = None) -> ModelSpec:
    """Build the :class:`ModelSpec` of an instantiated Hugging Face base model."""
    config = model.config
    family = _family_of(config)
    return ModelSpec(name=name, family=family, hf_config=_config_dict(config), matmuls=_enumerate(model, family),
                     has_weights=has_weights, source=source,
                     seq_len=int(seq_len if seq_len is not None else _seq_len_of(config)))


def _config_dict(config) -> dict:
    d = config.to_dict()
    # Round-trip through JSON so the dict holds plain values only (dtype objects become strings).
    return json.loads(json.dumps(d, default=str))


# --------------------------------------------------------------------------------------------------------------
# Sources

def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    try:
        hf_logging.disable_progress_bar()
    except AttributeError:  # pragma: no cover - older transformers
        pass


def resolve_source(name_or_dir: str) -> tuple[str, ZooEntry | None, Path | None]:
    """Classify a ``--model`` argument: return ``(kind, zoo entry, folder)``.

    ``kind`` is ``"shape"``, ``"tiny"``, ``"hf"`` (checkpoint folder, also ``minilm``) or ``"d2s"``.
    """
    name_or_dir = str(name_or_dir)
    entry = ZOO.get(name_or_dir)
    if entry is not None:
        if entry.kind == "package":
            return "hf", entry, minilm_dir()
        return entry.kind, entry, None
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        path = path.resolve()
        if (path / "monarch.json").is_file():
            return "d2s", None, path
        if not (path / "config.json").is_file():
            raise ModelError(f"folder {path} has neither config.json (Hugging Face checkpoint) "
                             f"nor monarch.json (d2s output)")
        return "hf", None, path
    if path.exists():
        raise ModelError(f"{name_or_dir!r} is a file; give a built-in model name or a checkpoint folder")
    looks_like_path = os.sep in name_or_dir or name_or_dir.startswith(".")
    if looks_like_path:
        raise ModelError(f"model folder {name_or_dir!r} does not exist")
    raise ModelError(f"unknown model {name_or_dir!r}; built-in names: {', '.join(ZOO)} "
                     f"(or give a Hugging Face checkpoint folder)")


def _read_config_json(folder: Path) -> dict:
    """Return ``config.json`` of a checkpoint folder, checked without transformers (quick, precise messages)."""
    path = folder / "config.json"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
                         ) from None
    except RecursionError:
        raise ModelError(f"{path} is not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object, not {type(data).__name__}")
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in _MODEL_TYPE_FAMILY:
        what = "has no model_type" if model_type is None else f"has the unsupported model_type {model_type!r}"
        raise ModelError(f"{path} {what}; supported: {', '.join(sorted(_MODEL_TYPE_FAMILY))}")
    return data


def source_family(name_or_dir: str) -> tuple[str, str]:
    """Return ``(kind, family)`` of a ``--model`` argument without building the model (no torch, quick).

    ``kind`` is as for :func:`resolve_source`; a d2s folder's ``monarch.json`` and a checkpoint folder's
    ``config.json`` are read and checked.
    """
    kind, entry, folder = resolve_source(name_or_dir)
    if entry is not None:
        return kind, entry.family
    if kind == "d2s":
        from mapper.d2s.io import read_monarch_json  # noqa: PLC0415
        return kind, read_monarch_json(folder)["family"]
    return kind, _MODEL_TYPE_FAMILY[_read_config_json(folder)["model_type"]]


def _hf_config(folder: Path):
    _read_config_json(folder)
    from transformers import AutoConfig
    _quiet_transformers()
    try:
        return AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here is a bad folder
        raise ModelError(f"cannot read {folder / 'config.json'}: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _meta_model(config):
    import torch  # noqa: PLC0415
    from transformers import AutoModel
    _quiet_transformers()
    try:
        with torch.device("meta"):
            return AutoModel.from_config(config)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot build a {getattr(config, 'model_type', '?')} model from its config: "
                         f"{_short(exc)}") from None


#: Parameters of the base models that no part of the kit uses (BERT's pooler: runs mean-pool the last hidden
#: state); a checkpoint may lack them.
_UNUSED_PREFIXES = {"bert": ("pooler.",)}
#: Tensor names listed in one error message at most.
_MAX_NAMES = 5
_HEADER_LIMIT = 100 * 2**20      # a safetensors header larger than this is not a real one


def _names(keys) -> str:
    keys = sorted(keys)
    more = f" (and {len(keys) - _MAX_NAMES} more)" if len(keys) > _MAX_NAMES else ""
    return ", ".join(keys[:_MAX_NAMES]) + more


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    if not files:
        raise ModelError(f"checkpoint folder {folder} has no *.safetensors weights")
    return files


def _safetensors_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Return ``{tensor name: shape}`` from a safetensors file's header, checking that the file is whole."""
    def bad(why):
        return ModelError(f"cannot load weights from {path}: {why}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise bad(f"not a safetensors file ({size} bytes)")
            n = int.from_bytes(head, "little")
            if n > min(size - 8, _HEADER_LIMIT):
                raise bad("not a safetensors file, or truncated (header length beyond the end of the file)")
            header = json.loads(f.read(n).decode("utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise bad("corrupt header (not a safetensors file)") from None
    if not isinstance(header, dict):
        raise bad("corrupt header (not a safetensors file)")
    shapes: dict[str, tuple[int, ...]] = {}
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            shape = tuple(int(d) for d in info["shape"])
            lo, hi = (int(v) for v in info["data_offsets"])
            str(info["dtype"])
        except (TypeError, KeyError, ValueError):
            raise bad(f"corrupt header entry for {key!r}") from None
        if not 0 <= lo <= hi or any(d < 0 for d in shape):
            raise bad(f"corrupt header entry for {key!r}")
        shapes[key] = shape
        end = max(end, hi)
    if 8 + n + end > size:
        raise bad(f"truncated ({size} bytes; the header describes {8 + n + end})")
    return shapes


def _checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for path in _weight_files(folder):
        shapes.update(_safetensors_header(path))
    return shapes


def _check_shapes(folder: Path, model, shapes: dict[str, tuple[int, ...]]) -> None:
    """Raise :class:`ModelError` if a checkpoint tensor has another shape than the model built from config.json.

    Names are matched as stored or behind the base model's prefix (``bert.``, ``transformer.``, ``model.``);
    a tensor stored under another name is judged when the weights load (:func:`_check_loaded`).
    """
    prefix = getattr(model, "base_model_prefix", "") or ""
    bad = []
    for name, param in model.state_dict(keep_vars=True).items():
        want = tuple(param.shape)
        got = shapes.get(name, shapes.get(f"{prefix}.{name}") if prefix else None)
        if got is not None and got != want:
            bad.append(f"{name} {list(got)} (config.json needs {list(want)})")
    if bad:
        raise ModelError(f"checkpoint {folder}: {len(bad)} tensor{'s' if len(bad) > 1 else ''} of the wrong "
                         f"shape: {_names(bad)}")


#: config.json entries giving the number of transformer blocks, per family.
_LAYER_KEYS = {"bert": ("num_hidden_layers",), "gpt2": ("n_layer",), "bart": ("encoder_layers", "decoder_layers"),
               "opt": ("num_hidden_layers",), "llama": ("num_hidden_layers",)}
#: Missing layers from which a checkpoint is refused before the model is built (building thousands of layers
#: only to list their missing tensors would take minutes).
_MANY_LAYERS = 16
_BLOCK_KEY = re.compile(r"(?:^|\.)(encoder\.|decoder\.)?(?:layer|layers|h)\.(\d+)\.")


def _check_layers(folder: Path, config, family: str, shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a config.json that describes many more transformer blocks than the checkpoint holds weights for.

    Checked before the model is built: a config with thousands of layers over a small checkpoint would
    otherwise take minutes to fail.
    """
    want = 0
    for key in _LAYER_KEYS[family]:
        value = getattr(config, key, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ModelError(f"{folder / 'config.json'}: {key} must be an integer >= 0, not {value!r}")
        want += value
    found = {mt.groups() for mt in map(_BLOCK_KEY.search, shapes) if mt is not None}
    if want - len(found) >= _MANY_LAYERS:     # fewer missing: the exact list of tensors comes after loading
        raise ModelError(f"checkpoint {folder} lacks the tensors of {want - len(found)} of the {want} transformer "
                         f"layers config.json describes (the weights hold {len(found)})")


def load_model_spec(name_or_dir: str) -> ModelSpec:
    """Return the :class:`ModelSpec` of a built-in name, checkpoint folder or d2s output folder.

    Built-in names and checkpoint folders are enumerated on the meta device (no weights are read); a checkpoint
    folder's ``config.json`` and the headers of its ``*.safetensors`` files are checked (shapes included).
    """
    kind, entry, folder = resolve_source(name_or_dir)
    if kind == "d2s":
        from mapper.d2s.io import load_monarch_spec  # noqa: PLC0415
        return load_monarch_spec(folder)
    if kind in ("shape", "tiny"):
        config = entry.make_config()
        model = _meta_model(config)
        return spec_from_hf_model(model, name=entry.name, source=entry.name, has_weights=(kind == "tiny"),
                                  seq_len=entry.seq_len)
    shapes = _checkpoint_shapes(folder)
    config = _hf_config(folder)
    _check_layers(folder, config, _family_of(config), shapes)
    model = _meta_model(config)
    _check_shapes(folder, model, shapes)
    if entry is not None:
        return spec_from_hf_model(model, name=entry.name, source=entry.name, has_weights=True,
                                  seq_len=entry.seq_len)
    return spec_from_hf_model(model, name=folder.name, source=str(folder), has_weights=True)


def _check_loaded(folder: Path, family: str, model, info: dict) -> None:
    """Raise :class:`ModelError` unless the checkpoint gave every tensor the kit uses, each finite."""
    import torch  # noqa: PLC0415
    unused = _UNUSED_PREFIXES.get(family, ())
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith(unused)]
    if missing:
        raise ModelError(f"checkpoint {folder} lacks {len(missing)} tensor{'s' if len(missing) > 1 else ''} the "
                         f"{family} model needs: {_names(missing)}")
    mismatched = [f"{k} {list(got)} (config.json needs {list(want)})"
                  for k, got, want in info.get("mismatched_keys", ())]
    if mismatched:
        raise ModelError(f"checkpoint {folder}: {len(mismatched)} tensor{'s' if len(mismatched) > 1 else ''} of "
                         f"the wrong shape: {_names(mismatched)}")
    bad = [name for name, t in model.state_dict().items()
           if t.is_floating_point() and not name.startswith(unused) and not bool(torch.isfinite(t).all())]
    if bad:
        raise ModelError(f"checkpoint {folder}: {len(bad)} tensor{'s' if len(bad) > 1 else ''} with NaN or "
                         f"infinite values: {_names(bad)}")


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
        from mapper.d2s.io import build_monarch_model  # noqa: PLC0415
        return build_monarch_model(folder)
    from transformers import AutoModel
    _quiet_transformers()
    if kind == "tiny":
        config = entry.make_config()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            model = AutoModel.from_config(config)
        return model.float().eval()
    shapes = _checkpoint_shapes(folder)
    config = _hf_config(folder)
    family = _family_of(config)
    _check_layers(folder, config, family, shapes)
    _check_shapes(folder, _meta_model(config), shapes)
    # Anything the checkpoint lacks is refused below; the seed only keeps unused parts (pooler) reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        try:
            model, info = AutoModel.from_pretrained(str(folder), config=config, local_files_only=True,
                                                    dtype=torch.float32, output_loading_info=True,
                                                    ignore_mismatched_sizes=True)
        except Exception as exc:  # noqa: BLE001 - corrupt or mismatched weights
            raise ModelError(f"cannot load weights from {folder}: {_short(exc)}") from None
    _check_loaded(folder, family, model, info)
    return model.float().eval()


def get_weight(model: torch.nn.Module, m: MatmulSpec) -> torch.Tensor:
    """Return the weight of matmul ``m`` as an ``(out, in)`` float32 tensor (a copy).

    Conv1D weights are transposed back, the embedding is returned as ``(hidden, vocab)``, a synthetic
    ``lm_head`` is the tied input embedding ``(vocab, hidden)``, a :class:`~mapper.d2s.MonarchLinear` gives
    the dense product of its factors.
    """
    import torch  # noqa: PLC0415

    from mapper.d2s.monarch import MonarchLinear  # noqa: PLC0415
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
