"""Dense-to-sparse (D2S): Monarch factors for every weight matmul of a transformer.

* :mod:`mapper.d2s.monarch`: the factor layout (fly's ``MonarchLinear``), :func:`monarch_to_dense`,
  :class:`MonarchLinear`.
* :mod:`mapper.d2s.project`: the optimal (Frobenius) projection, batched (:func:`project`) and per block
  (:func:`project_reference`).
* :mod:`mapper.d2s.convert`: whole-model projection, module replacement, per-layer report.
* :mod:`mapper.d2s.calibrate`: layer-wise fitting and distillation on calibration text, held-out metrics.
* :mod:`mapper.d2s.io`: the output folder (``monarch.safetensors``, ``monarch.json``, ``report.json``).
"""

from mapper.d2s.convert import Factors, layer_report, project_model, replace_with_monarch
from mapper.d2s.io import build_monarch_model, load_monarch_dir, load_monarch_spec, save_monarch_dir
from mapper.d2s.monarch import MonarchLinear, MonarchShape, monarch_forward, monarch_shape, monarch_to_dense
from mapper.d2s.project import project, project_reference, relative_error

__all__ = [
    "Factors", "MonarchLinear", "MonarchShape", "build_monarch_model", "layer_report", "load_monarch_dir",
    "load_monarch_spec", "monarch_forward", "monarch_shape", "monarch_to_dense", "project", "project_model",
    "project_reference", "relative_error", "replace_with_monarch", "save_monarch_dir",
]
