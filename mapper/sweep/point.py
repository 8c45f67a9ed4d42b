"""The sweep's one adapter to the build pipeline: a point in, its figures out (runs on a Dask worker).

:func:`evaluate_point` calls :func:`mapper.pipeline.build` and flattens :meth:`BuildResult.report` into one
row of scalars (lists such as per-layer tables are left out; they belong to ``mapper build``'s report). When the
pipeline's API changes, this module is the only one of the sweep that changes.

``extra`` build options (``evaluate_point(point, extra)``, e.g. through :func:`functools.partial`) are passed on
to :class:`mapper.pipeline.BuildOptions` (``budget``, ``row_steps``, ``prefill_tokens``, ...): what
``mapper reproduce`` sets for a whole sweep that the grid file cannot name. They are not part of a point's
hash, so a sweep run with extras needs a folder of its own.

:func:`run_point` wraps any point function for the engine: it never raises, so a failing point becomes a row
with a one-line error and the sweep goes on.
"""

from __future__ import annotations

from typing import Any

from cimisa.errors import KitError

__all__ = ["evaluate_point", "evaluate_chip_point", "build_options", "run_point", "figures"]

# Build options the row repeats (``options.*``): what a point's grid inputs may not show (set as extras).
_OPTION_KEYS = ("budget", "reference", "row_steps", "weight_reload", "prefill_tokens", "decode_tokens")
# The simulator's breakdowns the row keeps (``perf.<name>.<component>``); per layer and over time: report only.
_PERF_BREAKDOWNS = ("energy_per_token_nj", "area_mm2", "static_power_mw", "critical_path_ns_by_kind")
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
    row.update(_flat("", {k: v for k, v in s.items() if k not in _SKIP + ("perf",)}))
    perf = s.get("perf") or {}
    row.update(_flat("perf.", {k: v for k, v in perf.get("breakdown", {}).items() if k in _PERF_BREAKDOWNS}))
    row.update(_flat("baseline.", {k: v for k, v in s["baseline"].items() if k != "strategy"}))
    row.update(_flat("", {k: v for k, v in report["cost"].items() if k in _COST_KEYS}))
    row.update(_flat("options.", {k: v for k, v in report.get("options", {}).items() if k in _OPTION_KEYS}))
    if report.get("stream"):
        row.update(_flat("stream.", report["stream"]))
    if report.get("adc_selection"):
        row.update(_flat("adc_selection.", report["adc_selection"]))
    return row


def build_options(options: dict, extra: dict | None = None):
    """The :class:`mapper.pipeline.BuildOptions` of a point's ``options`` (those the pipeline knows) and
    ``extra`` build options (each must be one; None keeps the default). No auto budget front: the sweep is the
    design space."""
    import dataclasses  # noqa: PLC0415

    from compiler.kinds import AdcMode, Strategy  # noqa: PLC0415
    from mapper.pipeline import BuildOptions  # noqa: PLC0415
    o = {**options, **(extra or {})}
    known = {f.name for f in dataclasses.fields(BuildOptions)}
    if set(extra or {}) - known:
        raise TypeError(f"BuildOptions has no option {sorted(set(extra) - known)[0]!r}")
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


def evaluate_chip_point(point, extra: dict | None = None) -> dict[str, Any]:
    """Map one point's strategy alone onto its chip and simulate it: :func:`evaluate_point`'s figures of the
    strategy itself (no linear baseline, no other strategy, no stream), about half a build's time.

    Shape only; uses the pipeline's own steps (:func:`mapper.pipeline.evaluate`, :func:`mapper.pipeline.on_chip`).
    ``mapper reproduce`` runs its chip tables and sensitivity map with it (the ratios against linear come from
    the linear point of the same sweep).
    """
    from compiler.cost import ModelDims  # noqa: PLC0415
    from compiler.geometry import default_nblocks, geometry  # noqa: PLC0415
    from compiler.place import DENSE_STEPS  # noqa: PLC0415
    from mapper.models import load_model_spec  # noqa: PLC0415
    from mapper.pipeline import check_nblocks, decode_tokens, evaluate, on_chip  # noqa: PLC0415
    o = build_options(point.options, extra)
    spec = load_model_spec(point.model)
    nb = o.nblocks if o.nblocks is not None else default_nblocks(spec)
    check_nblocks(spec, nb)
    geoms = geometry(spec, nb)
    dims = ModelDims.of(spec)
    r = evaluate(geoms, point.hw, o.strategy, dims, arrays=o.arrays, adc_mode=o.adc_mode, colocate=o.colocate,
                 row_steps=o.row_steps)
    r = on_chip(r, point.hw, dims, o, reference=o.reference)
    s = r.summary(geoms)
    options = {"budget": o.budget, "reference": str(o.reference) if o.reference is not None else None,
               "row_steps": DENSE_STEPS if o.row_steps is None else o.row_steps, "weight_reload": o.weight_reload,
               "prefill_tokens": o.prefill_tokens or dims.seq_len,
               "decode_tokens": decode_tokens(dims, o.decode_tokens)}
    return figures({"family": spec.family, "nblocks": nb, "summary": {**s, "baseline": {}}, "cost": {},
                    "options": options})


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
