"""Model names: classify a ``--model`` argument (built-in name, checkpoint folder, D2S folder) and its family.

Quick and torch-free: a checkpoint folder's ``config.json`` and a D2S folder's ``monarch.json`` are read and
checked, nothing is built.
"""

from __future__ import annotations

import os
from pathlib import Path

from cimisa.errors import ModelError
from compiler.families import MODEL_TYPES
from mapper.d2s.io import read_monarch_json
from mapper.models.checkpoint import read_config_json
from mapper.models.zoo import ZOO, ZooEntry, minilm_dir

__all__ = ["list_models", "resolve_source", "source_family"]


def list_models() -> list[str]:
    """Return the built-in model names."""
    return list(ZOO)


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


def source_family(name_or_dir: str) -> tuple[str, str]:
    """Return ``(kind, family)`` of a ``--model`` argument without building the model (no torch, quick).

    ``kind`` is as for :func:`resolve_source`; a d2s folder's ``monarch.json`` and a checkpoint folder's
    ``config.json`` are read and checked.
    """
    kind, entry, folder = resolve_source(name_or_dir)
    if entry is not None:
        return kind, entry.family
    if kind == "d2s":
        return kind, read_monarch_json(folder)["family"]
    return kind, MODEL_TYPES[read_config_json(folder)["model_type"]]
