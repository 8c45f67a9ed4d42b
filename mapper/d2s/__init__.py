"""Dense-to-sparse (D2S): Monarch factors for every weight matmul of a transformer.

* :mod:`compiler.geometry`: the block geometry (:func:`monarch_shape`; plain Python, no torch).
* :mod:`mapper.d2s.monarch`: the factor layout (fly's ``MonarchLinear``), :func:`monarch_to_dense`,
  :class:`MonarchLinear`.
* :mod:`mapper.d2s.project`: the optimal (Frobenius) projection, batched (:func:`project`) and per block
  (:func:`project_reference`).
* :mod:`mapper.d2s.swap`: module replacement (:func:`replace_with_monarch`).
* :mod:`mapper.d2s.convert`: whole-model projection, per-layer report.
* :mod:`mapper.d2s.calibrate`: the calibration (layer-wise fit of :mod:`mapper.d2s.fit`, distillation of
  :mod:`mapper.d2s.distill`) and held-out metrics (:mod:`mapper.evaluate.metrics`).
* :mod:`mapper.d2s.io`: the output folder (``monarch.safetensors``, ``monarch.json``, ``report.json``);
  :func:`build_monarch_model` (a runnable model of a folder) lives in :mod:`mapper.models.build`.

The names below are imported on first use, so that ``import compiler.geometry`` (placement, option checks)
does not load torch.
"""

import importlib

_EXPORTS = {
    "Factors": "mapper.d2s.swap", "replace_with_monarch": "mapper.d2s.swap",
    "layer_report": "mapper.d2s.convert", "project_model": "mapper.d2s.convert",
    "build_monarch_model": "mapper.models.build", "load_monarch_dir": "mapper.d2s.io",
    "load_monarch_spec": "mapper.d2s.io", "save_monarch_dir": "mapper.d2s.io",
    "MonarchLinear": "mapper.d2s.monarch", "monarch_forward": "mapper.d2s.monarch",
    "monarch_to_dense": "mapper.d2s.monarch",
    "project": "mapper.d2s.project", "project_reference": "mapper.d2s.project",
    "relative_error": "mapper.d2s.project",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mapper.d2s' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
