"""Dense-to-sparse (D2S): Monarch factors for every weight matmul of a transformer.

* :mod:`compiler.geometry`: the block geometry (:func:`monarch_shape`; plain Python, no torch).
* :mod:`mapper.d2s.monarch`: the factor layout (fly's ``MonarchLinear``), :func:`monarch_to_dense`,
  :class:`MonarchLinear`.
* :mod:`mapper.d2s.project`: the optimal (Frobenius) projection, batched (:func:`project`) and per block
  (:func:`project_reference`).
* :mod:`mapper.d2s.convert`: whole-model projection, module replacement, per-layer report.
* :mod:`mapper.d2s.calibrate`: layer-wise fitting and distillation on calibration text, held-out metrics.
* :mod:`mapper.d2s.io`: the output folder (``monarch.safetensors``, ``monarch.json``, ``report.json``).

The names below are imported on first use, so that ``import compiler.geometry`` (placement, option checks)
does not load torch.
"""

import importlib

_EXPORTS = {
    "Factors": "convert", "layer_report": "convert", "project_model": "convert", "replace_with_monarch": "convert",
    "build_monarch_model": "io", "load_monarch_dir": "io", "load_monarch_spec": "io", "save_monarch_dir": "io",
    "MonarchLinear": "monarch", "monarch_forward": "monarch", "monarch_to_dense": "monarch",
    "project": "project", "project_reference": "project", "relative_error": "project",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mapper.d2s' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mapper.d2s.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
