"""The mapper's main job as a library: model -> Monarch geometry -> placement -> schedule -> cost (-> stream).

:func:`build` returns a :class:`BuildResult` (data only); :func:`write_build` writes it to a folder
(``report.json``, ``mapping.json``, ``commands.bin`` + ``commands.jsonl`` when weights exist, ``plots/*.png``).
``python -m mapper build`` (:mod:`mapper.cli_build`) is a thin wrapper over both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cimisa.config import CostParams, HwConfig, load_hw
from cimisa.errors import ModelError, ShapeError
from compiler.cost import CostReport, ModelDims, estimate
from compiler.place import STRATEGIES, Placement, default_nblocks, geometry, place
from compiler.schedule import Schedule, schedule
from compiler.stream_inputs import STREAM_SEED, stream_inputs

__all__ = ["BuildResult", "build", "write_build", "load_factors", "StrategyResult", "evaluate", "pareto",
           "stream_check", "STREAM_SEED", "project_factors", "check_nblocks"]


@dataclass(frozen=True, eq=False)
class StrategyResult:
    """Placement, schedule and cost of one strategy."""

    placement: Placement
    schedule: Schedule
    cost: CostReport

    def summary(self, geoms) -> dict:
        pl = self.placement
        return {
            "strategy": pl.strategy,
            "arrays": pl.n_arrays,
            "lower_bound_arrays": pl.lower_bound,
            "arrays_over_lower_bound": round(pl.n_arrays / pl.lower_bound, 6) if pl.lower_bound else None,
            "utilization": round(pl.utilization, 6),
            "params_dense": sum(g.dense_cells for g in geoms),
            "params_monarch": sum(g.monarch_cells for g in geoms),
            "macs_dense": sum(g.dense_cells for g in geoms),
            "macs_monarch": sum(g.monarch_cells for g in geoms),
            "latency_ns": round(self.cost.decode_latency_ns, 3),
            "energy_nj": round(self.cost.decode_energy_nj, 3),
            "matmul_latency_ns": round(self.cost.matmul_latency_ns, 3),
            "matmul_energy_nj": round(self.cost.matmul_energy_nj, 3),
            "prefill_latency_ns": round(self.cost.prefill_latency_ns, 3),
            "prefill_energy_nj": round(self.cost.prefill_energy_nj, 3),
            "activations": self.cost.activations,
            "adc_bits_histogram": {str(k): v for k, v in self.cost.adc_bits_histogram.items()},
        }


def evaluate(geoms, hw: HwConfig, strategy: str, dims: ModelDims, *, arrays: int | None = None,
             adc_mode: str = "paper", colocate: bool = True, validate: bool = True) -> StrategyResult:
    """Place, schedule and cost one strategy."""
    pl = place(geoms, hw, strategy, arrays=arrays, colocate=colocate, validate=validate)
    sc = schedule(pl, hw, adc_mode)
    return StrategyResult(pl, sc, estimate(sc, hw, dims))


def pareto(geoms, hw: HwConfig, dims: ModelDims, *, adc_mode: str = "paper", extra: tuple[int, ...] = (),
           points: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 8.0)) -> list[dict]:
    """Return auto's (arrays, latency, energy) for budgets from the minimum up, plus ``extra`` budgets."""
    base = place(geoms, hw, "auto", validate=False).n_arrays
    budgets = sorted({max(base, int(round(base * f))) for f in points} | {b for b in extra if b >= base})
    out = []
    for b in budgets:
        r = evaluate(geoms, hw, "auto", dims, arrays=b, adc_mode=adc_mode, validate=False)
        out.append({"arrays": r.placement.n_arrays, "latency_ns": round(r.cost.decode_latency_ns, 3),
                    "matmul_latency_ns": round(r.cost.matmul_latency_ns, 3),
                    "energy_nj": round(r.cost.decode_energy_nj, 3),
                    "utilization": round(r.placement.utilization, 6)})
    # keep the front: no other point has fewer-or-equal arrays and lower latency
    def dominates(q, p):
        return (q["arrays"] <= p["arrays"] and q["latency_ns"] <= p["latency_ns"]
                and (q["arrays"], q["latency_ns"]) != (p["arrays"], p["latency_ns"]))

    front = [p for p in out if not any(dominates(q, p) for q in out)]
    for p in out:
        p["on_front"] = p in front
    return out


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
    from compiler.geometry import monarch_shape  # noqa: PLC0415
    bad = []
    for m in spec.mapped():
        try:
            monarch_shape(m.out_features, m.in_features, nblocks)
        except ShapeError as exc:
            bad.append(f"{m.name}: {exc}")
    if bad:
        raise ShapeError(f"nblocks {nblocks} does not fit {len(bad)} matmul(s): {bad[0]}"
                         + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))


def _stream_inputs(compiled) -> dict[str, np.ndarray]:
    """Seeded test inputs (:func:`compiler.stream_inputs.stream_inputs`, shared with ``python -m sim run``)."""
    return stream_inputs(compiled, STREAM_SEED)


def stream_check(spec, factors, hw: HwConfig, strategy: str, nblocks: int, *, colocate: bool = True,
                 arrays: int | None = None) -> dict:
    """Run compiled streams on sw_model: exact check (lossless ADCs) and the paper-ADC error vs float.

    Returns ``{"exact": bool, "matmuls": n, "adc_error": {...}, "adc_error_configured": {...}}``: the relative
    L2 error of the stream's output against the float product of the same integer factors, with the paper's ADC
    resolutions (``log2`` of the rows per column) and with the configuration's own ADCs (``exact`` mode: as many
    bits as the configuration has, the step covering the full column-sum range).
    """
    from compiler.program import compile_model  # noqa: PLC0415
    from compiler.quant import float_product, reference_int_product  # noqa: PLC0415
    from sw_model import run_commands  # noqa: PLC0415
    big = hw.replace(n_arrays=max(hw.n_arrays, 1))
    exact_hw = big.lossless()
    res: dict = {}
    for mode, cfg in (("exact", exact_hw), ("paper", big), ("configured", big)):
        cm = compile_model(spec, factors, cfg, strategy=strategy, arrays=arrays,
                           adc_mode="paper" if mode == "paper" else "exact", colocate=colocate)
        inputs = _stream_inputs(cm)
        out = run_commands(cfg, cm.full_stream(inputs)).results
        pos = 0
        errs = []
        ok = True
        for name in cm.program_order(inputs):
            p = cm.programs[name]
            y = out[pos:pos + p.out_len]
            pos += p.out_len
            q = cm.quant[name]
            if mode == "exact":
                ok &= bool(np.array_equal(y, reference_int_product(q, inputs[name], p.requant_shift,
                                                                   cfg.input_bits)))
            else:
                ref = float_product(q, inputs[name], p.requant_shift)
                den = float(np.linalg.norm(ref)) or 1.0
                errs.append(float(np.linalg.norm(y - ref)) / den)
        if mode == "exact":
            res["exact"] = ok
            res["matmuls"] = len(cm.programs)
        else:
            res["adc_error" if mode == "paper" else "adc_error_configured"] = {
                                "mode": mode, "mean_rel_l2": round(float(np.mean(errs)), 6),
                                "max_rel_l2": round(float(np.max(errs)), 6),
                                "adc_bits": {str(k): v for k, v in cm.schedule.adc_bits_histogram().items()}}
    return res


@dataclass(eq=False)
class BuildResult:
    """Everything ``mapper build`` produces, as data."""

    model: str
    spec: object
    hw: HwConfig
    nblocks: int
    strategy: str
    main: StrategyResult
    baseline: StrategyResult
    per_strategy_layers: dict = field(default_factory=dict)
    pareto: list = field(default_factory=list)
    commands: list | None = None
    check: dict | None = None
    options: dict = field(default_factory=dict)
    compare: dict = field(default_factory=dict)

    def report(self) -> dict:
        geoms = self.main.placement.matmuls
        s = self.main.summary(geoms)
        b = self.baseline.summary(geoms)
        s["baseline"] = b
        s["speedup_vs_linear"] = round(b["latency_ns"] / s["latency_ns"], 6) if s["latency_ns"] else None
        s["energy_gain_vs_linear"] = round(b["energy_nj"] / s["energy_nj"], 6) if s["energy_nj"] else None
        s["array_reduction_vs_linear"] = round(1 - s["arrays"] / b["arrays"], 6) if b["arrays"] else None
        spec = self.spec
        return {
            "model": self.model, "family": spec.family, "hw": self.hw.to_dict(), "nblocks": self.nblocks,
            "strategy": self.strategy, "options": self.options,
            "summary": s,
            "cost": self.main.cost.to_dict(),
            "baseline_cost": self.baseline.cost.to_dict(),
            "layers": _layer_table(self.main, self.baseline),
            "matmuls": matmul_spread(self.main.placement),
            "utilization_per_layer": self.per_strategy_layers,
            "pareto": self.pareto,
            "strategies": {k: {x: v[x] for x in ("arrays", "lower_bound_arrays", "utilization", "latency_ns",
                                                  "energy_nj", "matmul_latency_ns", "matmul_energy_nj")}
                           for k, v in sorted(self.compare.items())},
            "stream": self.check,
        }


def layer_utilization(pl: Placement) -> dict[str, float]:
    """Return utilisation per layer: the layer's cells over its share of the arrays it touches."""
    geoms = pl.matmuls
    on_array: dict[int, int] = {}
    for t in pl.tiles:
        on_array[t.array] = on_array.get(t.array, 0) + t.cells
    cells: dict[str, float] = {}
    share: dict[str, float] = {}
    for t in pl.tiles:
        g = geoms[t.matmul]
        key = f"{g.stage}.{g.layer}"
        cells[key] = cells.get(key, 0) + t.cells
        share[key] = share.get(key, 0.0) + t.cells / on_array[t.array] * pl.cells_per_array
    return {k: round(cells[k] / share[k], 6) for k in cells}


def matmul_spread(pl: Placement) -> list[dict]:
    """Return per matmul and factor: arrays holding its blocks and the most blocks (pieces) on one array.

    This is how many block diagonals of each matrix share an array, the quantity ``auto`` chooses per matrix
    (implicitly, through the array budget and the striping).
    """
    per: dict[tuple[int, str], dict[int, int]] = {}
    for t in pl.tiles:
        d = per.setdefault((t.matmul, t.factor), {})
        d[t.array] = d.get(t.array, 0) + 1
    out = []
    for mi, g in enumerate(pl.matmuls):
        row = {"name": g.name}
        for f in ("W", "R", "L"):
            d = per.get((mi, f))
            if d:
                row[f"arrays_{f}"] = len(d)
                row[f"max_pieces_per_array_{f}"] = max(d.values())
        out.append(row)
    return out


def _layer_table(main: StrategyResult, base: StrategyResult) -> list[dict]:
    util = layer_utilization(main.placement)
    butil = layer_utilization(base.placement)
    brows = {(r["stage"], r["layer"]): r for r in base.cost.per_layer}
    rows = []
    for r in main.cost.per_layer:
        key = f"{r['stage']}.{r['layer']}"
        b = brows.get((r["stage"], r["layer"]), {})
        rows.append({"stage": r["stage"], "layer": r["layer"], "arrays": r["arrays"],
                     "utilization": util.get(key, 0.0), "latency_ns": round(r["latency_ns"], 3),
                     "energy_nj": round(r["energy_nj"], 3),
                     "prefill_latency_ns": round(r["prefill_latency_ns"], 3),
                     "baseline_arrays": b.get("arrays"), "baseline_utilization": butil.get(key),
                     "baseline_latency_ns": round(b.get("latency_ns", 0.0), 3),
                     "baseline_energy_nj": round(b.get("energy_nj", 0.0), 3)})
    return rows


def resolve_hw(hw: str | HwConfig, adcs: int | None = None, cost: str | None = None) -> HwConfig:
    """Return the configuration with ``--adcs`` and a cost preset applied."""
    cfg = load_hw(hw, adcs_per_array=adcs)
    if cost:
        cfg = cfg.replace(cost=CostParams.preset(cost))
    return cfg


def build(model: str, hw: str | HwConfig = "paper-256", *, nblocks: int | None = None, strategy: str = "auto",
          adcs: int | None = None, arrays: int | None = None, weights: bool = True, adc_mode: str = "paper",
          cost: str | None = None, colocate: bool = True, with_pareto: bool = True, check: bool = True,
          progress=None) -> BuildResult:
    """Map ``model`` and return a :class:`BuildResult` (nothing is written)."""
    from mapper.models import load_model_spec  # noqa: PLC0415
    step = progress or (lambda msg: None)
    if strategy not in STRATEGIES:
        raise ModelError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    cfg = resolve_hw(hw, adcs, cost)
    step("model")
    spec = load_model_spec(model)
    own = folder_nblocks(model)
    if nblocks is None:
        nblocks = own or default_nblocks(spec)
    elif own is not None and nblocks != own:
        raise ShapeError(f"the d2s folder {model} holds factors with nblocks {own}, not {nblocks} "
                         f"(omit --nblocks or pass the folder's value)")
    check_nblocks(spec, nblocks)
    factors = None
    if weights and spec.has_weights:
        if arrays is not None and arrays > cfg.n_arrays:
            raise ShapeError(f"an array budget of {arrays} exceeds the {cfg.n_arrays} arrays of {cfg.name} (use "
                             f"--no-weights for a shape-only report, or a configuration with more arrays)")
        step("weights")       # before placement: a checkpoint that cannot be used fails fast
        factors = load_factors(model, spec, nblocks)
    geoms = geometry(spec, nblocks)
    dims = ModelDims.of(spec)
    step("place")
    main = evaluate(geoms, cfg, strategy, dims, arrays=arrays, adc_mode=adc_mode, colocate=colocate)
    step("baseline")
    base = main if strategy == "linear" else evaluate(geoms, cfg, "linear", dims, adc_mode=adc_mode)
    per = {}
    for st in STRATEGIES:
        pl = {"linear": base.placement, strategy: main.placement}.get(st) or place(geoms, cfg, st, validate=False)
        per[st] = layer_utilization(pl)
    par: list = []
    compare = {"linear": base, strategy: main}
    if with_pareto and strategy == "auto":
        step("pareto")
        for st in ("sparse", "dense"):
            compare[st] = evaluate(geoms, cfg, st, dims, adc_mode=adc_mode, validate=False)
        others = tuple(compare[st].placement.n_arrays for st in ("sparse", "dense"))
        par = pareto(geoms, cfg, dims, adc_mode=adc_mode, extra=others)
    commands = checked = None
    if factors is not None:
        from compiler.program import compile_model  # noqa: PLC0415
        step("stream")
        if main.placement.n_arrays > cfg.n_arrays:
            raise ShapeError(f"{strategy} needs {main.placement.n_arrays} arrays; {cfg.name} has {cfg.n_arrays} "
                             f"(use --no-weights for a shape-only report, or a configuration with more arrays)")
        cm = compile_model(spec, factors, cfg, strategy=strategy, adc_mode=adc_mode, colocate=colocate,
                           placement=main.placement)
        commands = cm.full_stream(_stream_inputs(cm))
        step("check")
        if check:
            checked = stream_check(spec, factors, cfg, strategy, nblocks, colocate=colocate, arrays=arrays)
    opts = {"adc_mode": adc_mode, "cost_preset": cost or "kit", "colocate": colocate, "arrays_budget": arrays,
            "weights": bool(commands is not None), "stream_seed": STREAM_SEED}
    return BuildResult(model=str(model), spec=spec, hw=cfg, nblocks=nblocks, strategy=strategy, main=main,
                       baseline=base, per_strategy_layers=per, pareto=par, commands=commands, check=checked,
                       options=opts, compare={k: v.summary(geoms) for k, v in compare.items()})


def write_build(result: BuildResult, out: str | Path, *, plots: bool = True, force: bool = False) -> Path:
    """Write a build into ``out`` atomically (no partial folder on error); return the path.

    An existing ``out`` is replaced only if the kit wrote it, or with ``force``
    (:func:`cimisa.fsutil.atomic_dir`).
    """
    import json  # noqa: PLC0415

    from cimisa.fsutil import atomic_dir  # noqa: PLC0415
    from cimisa.stream import write_jsonl, write_stream  # noqa: PLC0415
    out = Path(out)
    with atomic_dir(out, force=force) as tmp:
        (tmp / "report.json").write_text(json.dumps(result.report(), indent=1, sort_keys=True) + "\n")
        (tmp / "mapping.json").write_text(json.dumps(result.main.placement.to_json(), separators=(",", ":"))
                                          + "\n")
        if result.commands is not None:
            write_stream(tmp / "commands.bin", result.hw, result.commands)
            write_jsonl(tmp / "commands.jsonl", result.hw, result.commands)
        if plots:
            from mapper import plots as P  # noqa: PLC0415
            (tmp / "plots").mkdir()
            P.build_plots(result, tmp / "plots")
    return out
