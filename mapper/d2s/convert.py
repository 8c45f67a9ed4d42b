"""Whole-model dense-to-sparse: project every mapped matmul, swap in :class:`MonarchLinear`
(:mod:`mapper.d2s.swap`), report errors."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from cimisa.errors import ModelError, ShapeError
from compiler.spec import MatmulSpec, ModelSpec
from mapper.d2s.monarch import monarch_shape, monarch_to_dense
from mapper.d2s.project import project
from mapper.d2s.swap import Factors, replace_with_monarch, set_submodule
from mapper.evaluate.metrics import relative_error
from mapper.models.weights import get_weight

__all__ = ["Factors", "project_model", "get_bias", "replace_with_monarch", "layer_report", "check_nblocks",
           "progress", "set_submodule"]

_set_submodule = set_submodule      # the former private name


def progress(iterable, total: int | None = None, desc: str = "", enabled: bool = True):
    """Wrap ``iterable`` in a tqdm progress bar on stderr (plain iteration when disabled or not a terminal)."""
    if not enabled:
        return iterable
    from tqdm import tqdm  # noqa: PLC0415
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=None)


def check_nblocks(spec: ModelSpec, nblocks: int, include_embeddings: bool = False) -> None:
    """Raise :class:`ShapeError` naming every matmul shape that ``nblocks`` cannot split."""
    if not isinstance(nblocks, int) or isinstance(nblocks, bool) or nblocks < 1:
        raise ShapeError(f"nblocks must be a positive integer, not {nblocks!r}")
    todo = spec.mapped(include_embeddings)
    bad: dict[tuple[int, int], str] = {}
    count = 0
    for m in todo:
        try:
            monarch_shape(m.out_features, m.in_features, nblocks)
        except ShapeError as exc:
            bad.setdefault((m.out_features, m.in_features), str(exc))
            count += 1
    if bad:
        reasons = "; ".join(dict.fromkeys(bad.values()))
        raise ShapeError(f"nblocks {nblocks} cannot split {count} of the {len(todo)} matmuls of "
                         f"{spec.name!r}: {reasons}")


def get_bias(model: torch.nn.Module, m: MatmulSpec) -> torch.Tensor | None:
    """Return the bias of matmul ``m`` as float32 (None if it has none; embeddings have none)."""
    if m.role in ("embed", "lm_head"):
        return None
    module = model.get_submodule(m.name)
    bias = getattr(module, "bias", None)
    if bias is None or bias.is_meta:
        return None
    return bias.detach().to(torch.float32).clone()


def project_model(spec: ModelSpec, model: torch.nn.Module, nblocks: int, include_embeddings: bool = False,
                  show_progress: bool = True) -> Factors:
    """Return the projected Monarch factors (and the unchanged biases) of every mapped matmul."""
    if not spec.has_weights:
        raise ModelError(f"model {spec.name!r} is shape-only (no weights to project); use a tiny-* model, "
                         f"'minilm' or a local checkpoint folder")
    check_nblocks(spec, nblocks, include_embeddings)
    factors: Factors = {}
    todo = spec.mapped(include_embeddings)
    for m in progress(todo, total=len(todo), desc=f"project nblocks={nblocks}", enabled=show_progress):
        W = get_weight(model, m)
        R, L = project(W, nblocks)
        factors[m.name] = (R, L, get_bias(model, m))
    return factors


@dataclass(frozen=True)
class LayerRow:
    """One row of the D2S report."""

    name: str
    layer: int
    role: str
    out_features: int
    in_features: int
    rel_error: float
    dense_params: int
    monarch_params: int

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["dense_macs"] = self.dense_params
        d["monarch_macs"] = self.monarch_params
        return d


def layer_report(spec: ModelSpec, model: torch.nn.Module, factors: Factors) -> dict:
    """Return the per-matmul report: relative Frobenius error, params and MACs dense vs Monarch, totals.

    MACs are per token (one input vector); Monarch counts include padding (what the crossbars store).
    """
    rows = []
    for m in spec.matmuls:
        if m.name not in factors:
            continue
        R, L, _ = factors[m.name]
        W = get_weight(model, m)
        err = relative_error(W, monarch_to_dense(R.float(), L.float(), m.out_features, m.in_features))
        rows.append(LayerRow(m.name, m.layer, m.role, m.out_features, m.in_features, err,
                             m.out_features * m.in_features, R.numel() + L.numel()))
    dense = sum(r.dense_params for r in rows)
    mon = sum(r.monarch_params for r in rows)
    sq = sum((r.rel_error ** 2) * r.dense_params for r in rows)
    return {
        "layers": [r.to_dict() for r in rows],
        "totals": {
            "matmuls": len(rows), "dense_params": dense, "monarch_params": mon, "dense_macs": dense,
            "monarch_macs": mon, "compression": (dense / mon) if mon else None,
            "mean_rel_error": (sum(r.rel_error for r in rows) / len(rows)) if rows else None,
            "param_weighted_rel_error": (sq / dense) ** 0.5 if dense else None,
        },
    }
