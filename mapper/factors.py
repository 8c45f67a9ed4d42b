"""The Monarch factors a build compiles: a d2s folder's as stored, or a checkpoint's projected; and their nblocks.

Shared by :func:`mapper.pipeline.build` and ``python -m sim`` (:mod:`sim.model_stream`), so that both derive the
same factors and block count from the same ``--model``.
"""

from __future__ import annotations

from cimisa.errors import ShapeError
from compiler.geometry import monarch_shape

__all__ = ["folder_nblocks", "load_factors", "project_factors", "check_nblocks"]


def folder_nblocks(model: str) -> int | None:
    """Return the nblocks a d2s output folder was built with, or None for any other model."""
    from mapper.models import resolve_source  # noqa: PLC0415
    kind, _, folder = resolve_source(model)
    if kind != "d2s":
        return None
    from mapper.d2s.io import read_monarch_json  # noqa: PLC0415
    return int(read_monarch_json(folder)["nblocks"])      # checked: a ModelError names what is wrong


def load_factors(model: str, spec, nblocks: int, show_progress: bool = False) -> dict:
    """Return ``{name: (R, L, bias)}`` for a d2s folder (as stored) or a model with weights (projected)."""
    from mapper.models import load_hf_model, resolve_source  # noqa: PLC0415
    kind, _, folder = resolve_source(model)
    if kind == "d2s":
        from mapper.d2s.io import load_monarch_dir  # noqa: PLC0415
        _, factors = load_monarch_dir(folder)
        nbs = {int(f[0].shape[0]) for f in factors.values()}
        if nbs != {nblocks}:
            raise ShapeError(f"the d2s folder holds factors with nblocks {sorted(nbs)}, not {nblocks} "
                             f"(omit --nblocks or pass the folder's value)")
        return factors
    return project_factors(spec, load_hf_model(model), nblocks)


def project_factors(spec, model, nblocks: int) -> dict:
    """Return ``{name: (R, L, bias)}``: the Monarch projection of every mapped matmul of a loaded model."""
    from mapper.d2s.project import project  # noqa: PLC0415
    from mapper.models import get_weight  # noqa: PLC0415
    check_nblocks(spec, nblocks)
    out = {}
    for m in spec.mapped():
        R, L = project(get_weight(model, m), nblocks)
        bias = getattr(model.get_submodule(m.name), "bias", None)
        out[m.name] = (R, L, None if bias is None else bias.detach().float().clone())
    return out


def check_nblocks(spec, nblocks: int) -> None:
    """Raise :class:`ShapeError` naming the matmuls that ``nblocks`` cannot split."""
    bad = []
    for m in spec.mapped():
        try:
            monarch_shape(m.out_features, m.in_features, nblocks)
        except ShapeError as exc:
            bad.append(f"{m.name}: {exc}")
    if bad:
        raise ShapeError(f"nblocks {nblocks} does not fit {len(bad)} matmul(s): {bad[0]}"
                         + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
