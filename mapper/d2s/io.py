"""The D2S output folder: ``monarch.safetensors`` + ``monarch.json`` + ``report.json``.

``monarch.safetensors`` holds ``<matmul name>.R``, ``<matmul name>.L`` and ``<matmul name>.bias`` (when the
matmul has one; calibration may change it). ``monarch.json`` describes the source model and every matmul, so
``mapper build --model DIR`` needs nothing else; the weights of the unfactored parts (embeddings, norms) come
from the source model when a runnable model is built (:func:`mapper.models.build.build_monarch_model`).

This module reads and writes the folder only: it imports nothing of :mod:`mapper.models`, which reads D2S folders
through it (one direction, no import cycle).
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from cimisa.errors import ModelError, ShapeError
from cimisa.fsutil import atomic_dir, read_json_object
from compiler.families import FAMILIES, FAMILY
from compiler.geometry import monarch_shape
from compiler.spec import ROLES, MatmulSpec, ModelSpec

if TYPE_CHECKING:
    from mapper.d2s.swap import Factors

__all__ = ["FORMAT", "FORMAT_VERSION", "save_monarch_dir", "load_monarch_spec", "load_monarch_dir",
           "read_monarch_json", "check_monarch_meta"]

FORMAT = "cimkit-monarch"
FORMAT_VERSION = 1
#: Problems listed in one error message at most (the count of the rest follows).
MAX_LISTED = 20
#: ``hf_config`` entries the kit reads (cost model, calibration: the width, heads and sequence-length keys of every
#: family, and the vocabulary size); each, when present, is a positive integer.
CONFIG_INT_KEYS = (*dict.fromkeys(k for f in FAMILY.values() for k in f.hidden_keys),
                   *dict.fromkeys(k for f in FAMILY.values() for k in f.heads_keys), "vocab_size",
                   *dict.fromkeys(k for f in FAMILY.values() for k in f.seq_len_keys))


def _json_dumps(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"


def save_monarch_dir(out: str | os.PathLike, spec: ModelSpec, nblocks: int, factors: Factors, report: dict,
                     calibration: dict | None = None, *, force: bool = False) -> Path:
    """Write the D2S folder ``out`` atomically (all files appear at once or none); return its path.

    An existing ``out`` is replaced only if the kit wrote it, or with ``force``.
    """
    import torch  # noqa: PLC0415
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
    with atomic_dir(out, force=force) as tmp:
        (tmp / "monarch.json").write_text(_json_dumps(meta), encoding="utf-8")
        (tmp / "report.json").write_text(_json_dumps(report), encoding="utf-8")
        st = tmp / "monarch.safetensors"
        save_file(tensors, str(st), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        # safetensors writes through a private temporary file (mode 0600): give it the mode of every other
        # output file (the umask default), read off the JSON file just written.
        os.chmod(st, stat.S_IMODE((tmp / "monarch.json").stat().st_mode))
    return out.resolve()


def read_monarch_json(folder: str | os.PathLike) -> dict:
    """Return the parsed ``monarch.json`` of a D2S folder, checked (:func:`check_monarch_meta`).

    Raises :class:`ModelError` listing every problem (types, unknown family or role, shapes that do not fit
    ``nblocks``, no matmuls).
    """
    path = Path(folder) / "monarch.json"
    meta = read_json_object(path, ModelError, missing=f"{folder} is not a d2s output folder (no monarch.json)")
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path} is not a {FORMAT} file (no \"format\": \"{FORMAT}\")")
    if meta.get("format_version") != FORMAT_VERSION or isinstance(meta.get("format_version"), bool):
        raise ModelError(f"{path} has format version {_show(meta.get('format_version'))}; this kit reads "
                         f"version {FORMAT_VERSION}")
    problems = check_monarch_meta(meta)
    if problems:
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise ModelError(f"{path} is invalid ({len(problems)} problem{'s' if len(problems) > 1 else ''}): "
                         + "; ".join(problems[:MAX_LISTED]) + more)
    return meta


def _show(v) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, float) or math.isfinite(v) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pos_int(v) -> bool:
    return _is_int(v) and v >= 1


def _nonempty_str(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def check_monarch_meta(meta: dict) -> list[str]:
    """Return every problem of a parsed ``monarch.json`` (empty if it is usable), as ``"key: problem"``."""
    problems: list[str] = []

    def check(where: str, obj: dict, key: str, ok, what: str, optional: bool = False) -> bool:
        if key not in obj:
            if not optional:
                problems.append(f"{where}{key}: missing")
            return False
        if not ok(obj[key]):
            problems.append(f"{where}{key}: must be {what}, not {_show(obj[key])}")
            return False
        return True

    check("", meta, "source", _nonempty_str, "a model name or folder")
    check("", meta, "model_name", lambda v: isinstance(v, str), "a string", optional=True)
    check("", meta, "family", lambda v: v in FAMILIES, f"one of {', '.join(FAMILIES)}")
    nb_ok = check("", meta, "nblocks", _pos_int, "a positive integer")
    check("", meta, "seq_len", _pos_int, "a positive integer", optional=True)
    check("", meta, "calibrated", lambda v: isinstance(v, bool), "true or false", optional=True)
    check("", meta, "calibration", lambda v: v is None or isinstance(v, dict), "an object or null", optional=True)
    if check("", meta, "hf_config", lambda v: isinstance(v, dict), "an object"):
        cfg = meta["hf_config"]
        for key in CONFIG_INT_KEYS:
            check("hf_config.", cfg, key, lambda v: v is None or _pos_int(v), "a positive integer or null",
                  optional=True)
    if not check("", meta, "matmuls", lambda v: isinstance(v, list), "a list of matmul entries"):
        return problems
    entries = meta["matmuls"]
    if not entries:
        problems.append("matmuls: the folder has no matmuls (an empty list)")
        return problems
    names: set[str] = set()
    misfits: list[str] = []
    factored = 0
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            problems.append(f"matmuls[{i}]: must be an object, not {_show(e)}")
            continue
        where = f"matmuls[{i}]" + (f" ({e['name']})" if isinstance(e.get("name"), str) else "") + "."
        if check(where, e, "name", _nonempty_str, "a module name"):
            if e["name"] in names:
                problems.append(f"{where}name: duplicate {_show(e['name'])}")
            names.add(e["name"])
        check(where, e, "layer", lambda v: _is_int(v) and v >= -1, "an integer >= -1")
        role_ok = check(where, e, "role", lambda v: v in ROLES, f"one of {', '.join(ROLES)}")
        out_ok = check(where, e, "out_features", _pos_int, "a positive integer")
        in_ok = check(where, e, "in_features", _pos_int, "a positive integer")
        check(where, e, "input_group", lambda v: isinstance(v, str), "a string")
        check(where, e, "transposed", lambda v: isinstance(v, bool), "true or false")
        mapped_ok = check(where, e, "mapped_by_default", lambda v: isinstance(v, bool), "true or false",
                          optional=True)
        check(where, e, "stage", lambda v: v in ("encoder", "decoder"), "encoder or decoder", optional=True)
        if not check(where, e, "factored", lambda v: isinstance(v, bool), "true or false"):
            continue
        mapped = e["mapped_by_default"] if mapped_ok else (role_ok and e["role"] not in ("embed", "lm_head"))
        if not e["factored"]:
            if mapped:
                problems.append(f"{where}factored: false, but the matmul is mapped (mapped_by_default)")
            continue
        factored += 1
        check(where, e, "has_bias", lambda v: isinstance(v, bool), "true or false")
        shape_ok = [check(where, e, key, lambda v: isinstance(v, list) and len(v) == 3 and all(map(_pos_int, v)),
                          "a list of 3 positive integers") for key in ("R_shape", "L_shape")]
        if nb_ok and out_ok and in_ok:
            try:
                shp = monarch_shape(e["out_features"], e["in_features"], meta["nblocks"])
            except ShapeError as exc:
                problems.append(f"{where[:-1]}: {exc}")
                continue
            for key, want, ok in (("R_shape", shp.r_shape, shape_ok[0]), ("L_shape", shp.l_shape, shape_ok[1])):
                if ok and tuple(e[key]) != want:
                    misfits.append(f"{where}{key} {e[key]} (a {e['out_features']}x{e['in_features']} matrix "
                                   f"needs {list(want)})")
    if misfits:     # typically nblocks edited: one problem, not one per factor
        problems.append(f"{len(misfits)} factor shape{'s' if len(misfits) > 1 else ''} do not fit nblocks "
                        f"{meta['nblocks']}: {misfits[0]}" + (f" and {len(misfits) - 1} more" if len(misfits) > 1
                                                             else ""))
    if factored == 0 and not problems:
        problems.append("matmuls: no matmul is factored")
    return problems


def _matmuls_of(meta: dict) -> tuple[MatmulSpec, ...]:
    return tuple(MatmulSpec.from_dict(e) for e in meta["matmuls"])      # checked by read_monarch_json


def load_monarch_spec(folder: str | os.PathLike) -> ModelSpec:
    """Return the :class:`ModelSpec` of a D2S folder (``source`` is the folder, ``has_weights`` True)."""
    folder = Path(folder).resolve()
    return _spec_of(folder, read_monarch_json(folder))


def _spec_of(folder: Path, meta: dict) -> ModelSpec:
    return ModelSpec(name=folder.name, family=str(meta["family"]), hf_config=meta["hf_config"],
                     matmuls=_matmuls_of(meta), has_weights=True, source=str(folder),
                     seq_len=int(meta.get("seq_len") or 2048))


def load_monarch_dir(folder: str | os.PathLike) -> tuple[ModelSpec, Factors]:
    """Return ``(spec, {name: (R, L, bias)})`` of a D2S folder.

    Every factor must be present, of a floating-point type, of the shape ``nblocks`` gives, and finite; a
    :class:`ModelError` lists the tensors that are not.
    """
    import torch  # noqa: PLC0415
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415
    folder = Path(folder).resolve()
    meta = read_monarch_json(folder)
    spec = _spec_of(folder, meta)
    st = folder / "monarch.safetensors"
    if not st.is_file():
        raise ModelError(f"{folder} has no monarch.safetensors")
    try:
        tensors = load_file(str(st))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"corrupt {st}: {' '.join(str(exc).split())[:200]}") from None
    nblocks = int(meta["nblocks"])
    factors: Factors = {}
    problems: list[str] = []
    for entry, m in zip(meta["matmuls"], spec.matmuls):
        if not entry["factored"]:
            continue
        shp = monarch_shape(m.out_features, m.in_features, nblocks)       # checked by read_monarch_json
        want = {"R": shp.r_shape, "L": shp.l_shape}
        if entry["has_bias"]:
            want["bias"] = (m.out_features,)
        got = {}
        for part, shape in want.items():
            key = f"{m.name}.{part}"
            t = tensors.get(key)
            if t is None:
                problems.append(f"{key}: missing")
            elif not t.is_floating_point():
                problems.append(f"{key}: {str(t.dtype).removeprefix('torch.')} values, not floating point")
            elif tuple(t.shape) != shape:
                problems.append(f"{key}: shape {list(t.shape)}, nblocks {nblocks} needs {list(shape)}")
            elif not bool(torch.isfinite(t).all()):
                n = int((~torch.isfinite(t)).sum())
                problems.append(f"{key}: {n} NaN or infinite value{'s' if n > 1 else ''}")
            else:
                got[part] = t.to(torch.float32)
        if len(got) == len(want):
            factors[m.name] = (got["R"], got["L"], got.get("bias"))
    if problems:
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise ModelError(f"{st}: {len(problems)} unusable tensor{'s' if len(problems) > 1 else ''}: "
                         + "; ".join(problems[:MAX_LISTED]) + more)
    return spec, factors
