"""The D2S output folder: ``monarch.safetensors`` + ``monarch.json`` + ``report.json``.

``monarch.safetensors`` holds ``<matmul name>.R``, ``<matmul name>.L`` and ``<matmul name>.bias`` (when the
matmul has one; calibration may change it). ``monarch.json`` describes the source model and every matmul, so
``mapper build --model DIR`` needs nothing else; the weights of the unfactored parts (embeddings, norms) come
from the source model when a runnable model is built (:func:`build_monarch_model`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from cimisa.errors import ModelError, ShapeError
from cimisa.fsutil import atomic_dir
from mapper.d2s.convert import Factors, replace_with_monarch
from mapper.d2s.monarch import monarch_shape
from mapper.models import MatmulSpec, ModelSpec, load_hf_model, load_model_spec

__all__ = ["FORMAT", "FORMAT_VERSION", "save_monarch_dir", "load_monarch_spec", "load_monarch_dir",
           "read_monarch_json", "build_monarch_model"]

FORMAT = "cimkit-monarch"
FORMAT_VERSION = 1


def _json_dumps(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"


def save_monarch_dir(out: str | os.PathLike, spec: ModelSpec, nblocks: int, factors: Factors, report: dict,
                     calibration: dict | None = None) -> Path:
    """Write the D2S folder ``out`` atomically (all files appear at once or none); return its path."""
    from safetensors.torch import save_file  # noqa: PLC0415
    tensors: dict[str, torch.Tensor] = {}
    entries = []
    for m in spec.matmuls:
        entry = m.to_dict()
        if m.name in factors:
            R, L, bias = factors[m.name]
            tensors[f"{m.name}.R"] = R.detach().to(torch.float32).contiguous()
            tensors[f"{m.name}.L"] = L.detach().to(torch.float32).contiguous()
            if bias is not None:
                tensors[f"{m.name}.bias"] = bias.detach().to(torch.float32).contiguous()
            entry.update(factored=True, R_shape=list(R.shape), L_shape=list(L.shape), has_bias=bias is not None)
        else:
            entry.update(factored=False)
        entries.append(entry)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": spec.source,
        "model_name": spec.name,
        "family": spec.family,
        "nblocks": int(nblocks),
        "seq_len": spec.seq_len,
        "calibrated": calibration is not None,
        "calibration": calibration,
        "hf_config": spec.hf_config,
        "matmuls": entries,
    }
    out = Path(out)
    with atomic_dir(out) as tmp:
        save_file(tensors, str(tmp / "monarch.safetensors"), metadata={"format": FORMAT,
                                                                       "format_version": str(FORMAT_VERSION)})
        (tmp / "monarch.json").write_text(_json_dumps(meta), encoding="utf-8")
        (tmp / "report.json").write_text(_json_dumps(report), encoding="utf-8")
    return out.resolve()


def read_monarch_json(folder: str | os.PathLike) -> dict:
    """Return the parsed and checked ``monarch.json`` of a D2S folder."""
    path = Path(folder) / "monarch.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{folder} is not a d2s output folder (no monarch.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"corrupt {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{path} is not a {FORMAT} file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path} has format version {meta.get('format_version')!r}; this kit reads "
                         f"version {FORMAT_VERSION}")
    missing = [k for k in ("source", "family", "nblocks", "hf_config", "matmuls") if k not in meta]
    if missing:
        raise ModelError(f"{path} lacks {', '.join(missing)}")
    return meta


def _matmuls_of(meta: dict, path: Path) -> tuple[MatmulSpec, ...]:
    try:
        return tuple(MatmulSpec.from_dict(e) for e in meta["matmuls"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path / 'monarch.json'}: bad matmul entry ({exc})") from None


def load_monarch_spec(folder: str | os.PathLike) -> ModelSpec:
    """Return the :class:`ModelSpec` of a D2S folder (``source`` is the folder, ``has_weights`` True)."""
    folder = Path(folder).resolve()
    meta = read_monarch_json(folder)
    return ModelSpec(name=folder.name, family=str(meta["family"]), hf_config=meta["hf_config"],
                     matmuls=_matmuls_of(meta, folder), has_weights=True, source=str(folder),
                     seq_len=int(meta.get("seq_len") or 2048))


def load_monarch_dir(folder: str | os.PathLike) -> tuple[ModelSpec, Factors]:
    """Return ``(spec, {name: (R, L, bias)})`` of a D2S folder, checking every factor's shape."""
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415
    folder = Path(folder).resolve()
    spec = load_monarch_spec(folder)
    meta = read_monarch_json(folder)
    st = folder / "monarch.safetensors"
    if not st.is_file():
        raise ModelError(f"{folder} has no monarch.safetensors")
    try:
        tensors = load_file(str(st))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"corrupt {st}: {' '.join(str(exc).split())[:200]}") from None
    nblocks = int(meta["nblocks"])
    factors: Factors = {}
    for entry, m in zip(meta["matmuls"], spec.matmuls):
        if not entry.get("factored"):
            continue
        R, L = tensors.get(f"{m.name}.R"), tensors.get(f"{m.name}.L")
        if R is None or L is None:
            raise ModelError(f"{st} lacks the factors of {m.name!r}")
        try:
            shp = monarch_shape(m.out_features, m.in_features, nblocks)
        except ShapeError as exc:
            raise ModelError(f"{folder}: {m.name}: {exc}") from None
        if tuple(R.shape) != shp.r_shape or tuple(L.shape) != shp.l_shape:
            raise ModelError(f"{st}: {m.name} has R {tuple(R.shape)}, L {tuple(L.shape)}; nblocks {nblocks} "
                             f"needs R {shp.r_shape}, L {shp.l_shape}")
        bias = tensors.get(f"{m.name}.bias")
        if bias is not None and tuple(bias.shape) != (m.out_features,):
            raise ModelError(f"{st}: {m.name}.bias has shape {tuple(bias.shape)}, not ({m.out_features},)")
        factors[m.name] = (R, L, bias)
    return spec, factors


def build_monarch_model(dir_or_spec, factors: Factors | None = None) -> torch.nn.Module:
    """Return the source Hugging Face model with every factored matmul replaced by a ``MonarchLinear``.

    ``dir_or_spec`` is a D2S folder (factors read from it unless given), or a :class:`ModelSpec` (of the source
    model, or of a D2S folder) together with ``factors``.
    """
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
        if (Path(source) / "monarch.json").is_file():
            raise ModelError(f"d2s folder {spec.source} names another d2s folder as its source")
    try:
        model = load_hf_model(source)
    except ModelError as exc:
        raise ModelError(f"cannot load the source model of {spec.source}: {exc.one_line()}") from None
    source_spec = load_model_spec(source)
    if [m.name for m in source_spec.matmuls] != [m.name for m in spec.matmuls]:
        raise ModelError(f"the source model {source} no longer matches the matmuls in {spec.source}")
    replace_with_monarch(model, source_spec, factors)
    return model.eval()
