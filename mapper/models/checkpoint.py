"""Checkpoint folders: ``config.json`` and ``*.safetensors`` checked before (and after) a model is built from them.

Every problem is a :class:`~cimisa.errors.ModelError` naming the file and what is wrong: unreadable or invalid
``config.json``, an unsupported ``model_type``, missing or truncated weight files, tensors of the wrong shape,
far fewer transformer layers than ``config.json`` describes, missing tensors or NaN/infinite values.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cimisa.errors import ModelError
from cimisa.fsutil import read_json_object
from compiler.families import MODEL_TYPES, Family
from mapper.models.hf import quiet_transformers, short

__all__ = ["read_config_json", "hf_config", "checkpoint_shapes", "check_shapes", "check_layers", "check_loaded"]

#: Tensor names listed in one error message at most.
_MAX_NAMES = 5
_HEADER_LIMIT = 100 * 2**20      # a safetensors header larger than this is not a real one
#: Missing layers from which a checkpoint is refused before the model is built (building thousands of layers
#: only to list their missing tensors would take minutes).
_MANY_LAYERS = 16
_BLOCK_KEY = re.compile(r"(?:^|\.)(encoder\.|decoder\.)?(?:layer|layers|h)\.(\d+)\.")


def read_config_json(folder: Path) -> dict:
    """Return ``config.json`` of a checkpoint folder, checked without transformers (quick, precise messages)."""
    path = folder / "config.json"
    data = read_json_object(path, ModelError, encoding="utf-8-sig")
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
        what = "has no model_type" if model_type is None else f"has the unsupported model_type {model_type!r}"
        raise ModelError(f"{path} {what}; supported: {', '.join(sorted(MODEL_TYPES))}")
    return data


def hf_config(folder: Path):
    """Return the ``transformers`` config of a checkpoint folder (``config.json`` checked first)."""
    read_config_json(folder)
    from transformers import AutoConfig  # noqa: PLC0415
    quiet_transformers()
    try:
        return AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here is a bad folder
        raise ModelError(f"cannot read {folder / 'config.json'}: {short(exc)}") from None


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


def checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Return ``{tensor name: shape}`` over every ``*.safetensors`` file of a checkpoint folder."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in _weight_files(folder):
        shapes.update(_safetensors_header(path))
    return shapes


def check_shapes(folder: Path, model, shapes: dict[str, tuple[int, ...]]) -> None:
    """Raise :class:`ModelError` if a checkpoint tensor has another shape than the model built from config.json.

    Names are matched as stored or behind the base model's prefix (``bert.``, ``transformer.``, ``model.``);
    a tensor stored under another name is judged when the weights load (:func:`check_loaded`).
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


def check_layers(folder: Path, config, family: Family, shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a config.json that describes many more transformer blocks than the checkpoint holds weights for.

    Checked before the model is built: a config with thousands of layers over a small checkpoint would
    otherwise take minutes to fail.
    """
    want = 0
    for key in family.layer_keys:
        value = getattr(config, key, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ModelError(f"{folder / 'config.json'}: {key} must be an integer >= 0, not {value!r}")
        want += value
    found = {mt.groups() for mt in map(_BLOCK_KEY.search, shapes) if mt is not None}
    if want - len(found) >= _MANY_LAYERS:     # fewer missing: the exact list of tensors comes after loading
        raise ModelError(f"checkpoint {folder} lacks the tensors of {want - len(found)} of the {want} transformer "
                         f"layers config.json describes (the weights hold {len(found)})")


def check_loaded(folder: Path, family: Family, model, info: dict) -> None:
    """Raise :class:`ModelError` unless the checkpoint gave every tensor the kit uses, each finite."""
    import torch  # noqa: PLC0415
    unused = family.unused_prefixes
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith(unused)]
    if missing:
        raise ModelError(f"checkpoint {folder} lacks {len(missing)} tensor{'s' if len(missing) > 1 else ''} the "
                         f"{family.name} model needs: {_names(missing)}")
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
