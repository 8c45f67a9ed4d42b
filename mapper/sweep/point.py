"""The sweep's one adapter to the build pipeline: a point in, its figures out (runs on a Dask worker).

:func:`evaluate_point` calls :func:`mapper.pipeline.build` and flattens :meth:`BuildResult.report` into one
row of scalars (lists such as per-layer tables are left out; they belong to ``mapper build``'s report). When the
pipeline's API changes, this module is the only one of the sweep that changes.

``extra`` build options (``evaluate_point(point, extra)``, e.g. through :func:`functools.partial`) are passed on
when :class:`mapper.pipeline.BuildOptions` has them (``budget``, ``row_steps``, ``prefill_tokens``, ...): what
``mapper reproduce`` sets for a whole sweep that the grid file cannot name. They are not part of a point's
hash, so a sweep run with extras needs a folder of its own.

:func:`run_point` wraps any point function for the engine: it never raises, so a failing point becomes a row
with a one-line error and the sweep goes on.
"""

from __future__ import annotations

from typing import Any

from cimisa.errors import KitError

__all__ = ["evaluate_point", "build_options", "run_point", "figures"]

# Summary figures the row leaves out: the strategy is an input, the histogram becomes one text column.
_SKIP = ("strategy", "baseline")
# The report's cost block holds the summary's figures too (less rounded); the row takes only what is new.
_COST_KEYS = ("seq_len", "conversions_per_token", "weight_programming_energy_nj", "latency_components_ns",
              "energy_components_nj", "prefill_latency_components_ns", "prefill_energy_components_nj")


def _flat(prefix: str, data: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            if k.endswith("histogram") or k == "adc_bits":
                out[prefix + k] = " ".join(f"{b}:{n}" for b, n in v.items())
            else:
                out.update(_flat(f"{prefix}{k}.", v))
        elif not isinstance(v, (list, tuple)):
            out[prefix + k] = v
    return out


def figures(report: dict) -> dict[str, Any]:
    """One row of figures from a build report (``BuildResult.report()``): scalars only, dotted names."""
    s = report["summary"]
    row: dict[str, Any] = {"family": report["family"], "nblocks_used": report["nblocks"]}
    row.update(_flat("", {k: v for k, v in s.items() if k not in _SKIP}))
    row.update(_flat("baseline.", {k: v for k, v in s["baseline"].items() if k != "strategy"}))
    row.update(_flat("", {k: v for k, v in report["cost"].items() if k in _COST_KEYS}))
    if report.get("stream"):
        row.update(_flat("stream.", report["stream"]))
    return row


def build_options(options: dict, extra: dict | None = None):
    """The :class:`mapper.pipeline.BuildOptions` of a point's ``options`` and ``extra`` build options (those
    the pipeline knows; None values keep the default). No auto budget front: the sweep is the design space."""
    import dataclasses  # noqa: PLC0415

    from compiler.kinds import AdcMode, Strategy  # noqa: PLC0415
    from mapper.pipeline import BuildOptions  # noqa: PLC0415
    o = {**options, **(extra or {})}
    known = {f.name for f in dataclasses.fields(BuildOptions)}
    kw = {k: v for k, v in o.items() if k in known and k not in ("strategy", "adc_mode", "cost", "adcs")
          and v is not None}
    return BuildOptions(**{**kw, "strategy": Strategy(o["strategy"]), "adc_mode": AdcMode(o["adc_mode"]),
                           "with_pareto": False})


def evaluate_point(point, extra: dict | None = None) -> dict[str, Any]:
    """Build one point (a :class:`mapper.sweep.grid.Point`) and return its figures (:func:`figures`).

    Shape-only: no per-build budget sweep (the sweep is the design space); with weights the stream is compiled
    and checked, giving the accuracy figures ``stream.*``. ``extra``: build options the grid does not set.
    """
    from mapper.pipeline import build  # noqa: PLC0415
    return figures(build(point.model, point.hw, build_options(point.options, extra)).report())


def run_point(func, point) -> dict[str, Any]:
    """Return ``{"figures": ..., "error": None}``, or the point's one-line error; never raises.

    ``cache`` says whether the outcome may be kept: figures and the kit's own errors (bad input, the same on
    every run) may; anything else (a bug, no memory) is recorded but computed again on the next run.
    """
    try:
        return {"figures": func(point), "error": None, "cache": True}
    except KitError as exc:
        return {"figures": {}, "error": exc.one_line(), "cache": True}
    except Exception as exc:  # noqa: BLE001 - recorded as the point's error; the sweep goes on
        text = " ".join(str(exc).split()) or "no message"
        return {"figures": {}, "error": f"{type(exc).__name__}: {text}", "cache": False}
