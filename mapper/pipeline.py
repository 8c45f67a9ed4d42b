"""The mapper's main job as a library: model -> Monarch geometry -> placement -> schedule -> cost -> chip map
and performance simulation (-> stream).

:func:`build` takes :class:`BuildOptions` and returns a :class:`BuildResult` (data only: one
:class:`StrategyResult` per strategy evaluated, each mapped onto the chip (:func:`compiler.chipmap.chip_map`,
under the options' budget) and simulated (:func:`perf.simulate`), auto's :class:`ParetoPoint` budgets, the
stream and its :class:`~mapper.stream_check.StreamCheck`); :func:`write_build` writes it to a folder (``report.json``,
``mapping.json``, ``commands.bin`` + ``commands.jsonl`` when weights exist, ``plots/*.png``). The factors come
from :mod:`mapper.factors`. ``python -m mapper build`` (:mod:`mapper.cli_build`) is a thin wrapper over both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cimisa.concurrency import is_concurrent
from cimisa.config import CostParams, HwConfig, load_hw
from cimisa.errors import ModelError, ShapeError
from cimisa.isa import Command
from compiler.budget import as_budget
from compiler.chipmap import ChipMap, chip_map
from compiler.cost import CostReport, ModelDims, estimate
from compiler.families import Kind
from compiler.geometry import MatmulGeom, default_nblocks, geometry
from compiler.kinds import AdcMode, Strategy
from compiler.place import DENSE_STEPS, STRATEGIES, Placement, as_strategy, place
from compiler.schedule import Schedule, schedule
from compiler.spec import ModelSpec
from compiler.stream_inputs import STREAM_SEED, stream_inputs
from mapper.adc_select import AdcSelection, check_max_error, select_for_build
from mapper.factors import check_nblocks, folder_nblocks, load_factors, project_factors
from mapper.report import format_report, layer_table, layer_utilization, matmul_spread
from mapper.stream_check import AdcError, StreamCheck, stream_check

__all__ = ["BuildOptions", "BuildResult", "build", "write_build", "StrategyResult", "evaluate", "ParetoPoint",
           "pareto_points", "pareto", "resolve_hw", "layer_utilization", "matmul_spread", "STREAM_SEED",
           "on_chip", "decode_tokens", "DECODE_TOKENS",
           # re-exported from mapper.factors and mapper.stream_check
           "load_factors", "project_factors", "check_nblocks", "folder_nblocks", "AdcError", "StreamCheck",
           "stream_check"]


@dataclass(frozen=True)
class BuildOptions:
    """How ``mapper build`` maps a model (the options of ``python -m mapper build``, same defaults).

    ``nblocks`` None: the d2s folder's own, else :func:`compiler.geometry.default_nblocks`. ``arrays``: an
    array budget. ``weights`` False: shape only (no command stream). ``cost``: a cost preset (None: ``kit``).
    ``with_pareto``: evaluate every strategy and auto's budgets (``auto`` only). ``check``: run the stream on
    ``sw_model`` (:func:`stream_check`). ``row_steps``: DenseMap's row chunks per block (None: 4).

    The chip: ``budget`` (:data:`compiler.budget.BUDGETS`) sizes the chip each strategy runs on, ``reference``
    names the strategy an ``iso-*`` budget equals (None: ``linear``), ``weight_reload`` lets a model larger than
    the chip run in epochs (:mod:`compiler.chipmap`). ``simulate``: run :func:`perf.simulate` on every strategy
    evaluated, over ``prefill_tokens`` (None: the model's sequence length) and ``decode_tokens`` (None:
    :func:`decode_tokens`); ``trace``: keep the main strategy's trace (the timelines of ``plots/``).
    ``max_error``: the bound of ``adc_mode="accuracy"`` (:mod:`mapper.adc_select`; required with it, only with it).
    """

    nblocks: int | None = None
    strategy: Strategy = Strategy.AUTO
    adcs: int | None = None
    arrays: int | None = None
    weights: bool = True
    adc_mode: AdcMode = AdcMode.PAPER
    cost: str | None = None
    colocate: bool = True
    with_pareto: bool = True
    check: bool = True
    row_steps: int | None = None
    budget: str = "fixed"
    reference: Strategy | None = None
    weight_reload: bool = False
    prefill_tokens: int | None = None
    decode_tokens: int | None = None
    simulate: bool = True
    trace: bool = False
    max_error: float | None = None

    def __post_init__(self):
        check_max_error(self.adc_mode, self.max_error, AdcMode.ACCURACY)
        if self.strategy not in STRATEGIES:
            raise ModelError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        object.__setattr__(self, "strategy", Strategy(self.strategy))
        as_budget(self.budget)
        if self.reference is not None:
            object.__setattr__(self, "reference", as_strategy(self.reference))
        for key in ("prefill_tokens", "decode_tokens"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (1 if key[0] == "p" else 0)):
                raise ModelError(f"{key} must be an integer of at least {1 if key[0] == 'p' else 0}, not {v!r}")


#: Tokens decoded by default after the prompt (decoder models; encoder-only models run one pass: 1).
DECODE_TOKENS = 16

#: The simulator's figures copied into ``summary`` (``prefill_latency_ns`` replaces the analytic one, kept as
#: ``analytic_prefill_latency_ns``).
PERF_KEYS = ("prefill_latency_ns", "ttft_ns", "decode_latency_ns", "decode_tokens_per_s", "energy_per_token_nj",
             "dynamic_energy_nj", "static_energy_nj", "area_mm2")


@dataclass(frozen=True, eq=False)
class StrategyResult:
    """Placement, schedule and cost of one strategy; its chip map and simulated performance once
    :func:`on_chip` ran (``perf``: a :class:`perf.PerfReport`)."""

    placement: Placement
    schedule: Schedule
    cost: CostReport
    chip: ChipMap | None = None
    perf: Any = None

    @property
    def arrays(self) -> int:
        return self.placement.n_arrays

    @property
    def latency_ns(self) -> float:
        """Decode latency per token, as reported (rounded to 3 decimals)."""
        return round(self.cost.decode_latency_ns, 3)

    def summary(self, geoms: tuple[MatmulGeom, ...], *, detail: bool = True) -> dict:
        """The ``summary`` object of ``report.json`` for this strategy (``detail``: with the simulator's full
        report ``perf`` and the ``chip`` it ran on)."""
        pl = self.placement
        out = {
            "strategy": str(pl.strategy),
            "arrays": pl.n_arrays,
            "lower_bound_arrays": pl.lower_bound,
            "arrays_over_lower_bound": round(pl.n_arrays / pl.lower_bound, 6) if pl.lower_bound else None,
            "utilization": round(pl.utilization, 6),
            "params_dense": sum(g.dense_cells for g in geoms),
            "params_monarch": sum(g.monarch_cells for g in geoms),
            "macs_dense": sum(g.dense_cells for g in geoms),
            "macs_monarch": sum(g.monarch_cells for g in geoms),
            "latency_ns": self.latency_ns,
            "energy_nj": round(self.cost.decode_energy_nj, 3),
            "matmul_latency_ns": round(self.cost.matmul_latency_ns, 3),
            "matmul_energy_nj": round(self.cost.matmul_energy_nj, 3),
            "prefill_latency_ns": round(self.cost.prefill_latency_ns, 3),
            "prefill_energy_nj": round(self.cost.prefill_energy_nj, 3),
            "activations": self.cost.activations,
            "adc_bits_histogram": {str(k): v for k, v in self.cost.adc_bits_histogram.items()},
        }
        if self.perf is not None:
            out["analytic_prefill_latency_ns"] = out["prefill_latency_ns"]
            figs = self.perf.summary()
            out.update({k: round(float(figs[k]), 3) for k in PERF_KEYS if figs.get(k) is not None})
            if detail:
                out["perf"] = {k: v for k, v in self.perf.to_dict().items() if k != "trace"}
        if self.chip is not None and detail:
            out["chip"] = self.chip.to_dict()
        return out


@dataclass(frozen=True)
class ParetoPoint:
    """One array budget of ``auto``: arrays used, decode figures, and whether no other budget dominates it."""

    arrays: int
    latency_ns: float
    matmul_latency_ns: float
    energy_nj: float
    utilization: float
    on_front: bool = False

    def to_dict(self) -> dict:
        """The ``pareto`` row of ``report.json``."""
        return {"arrays": self.arrays, "latency_ns": self.latency_ns, "matmul_latency_ns": self.matmul_latency_ns,
                "energy_nj": self.energy_nj, "utilization": self.utilization, "on_front": self.on_front}


def evaluate(geoms: tuple[MatmulGeom, ...], hw: HwConfig, strategy: Strategy, dims: ModelDims, *,
             arrays: int | None = None, adc_mode: AdcMode = AdcMode.PAPER, colocate: bool = True,
             validate: bool = True, row_steps: int | None = None) -> StrategyResult:
    """Place, schedule and cost one strategy."""
    pl = place(geoms, hw, strategy, arrays=arrays, colocate=colocate, validate=validate, row_steps=row_steps)
    sc = schedule(pl, hw, adc_mode)
    return StrategyResult(pl, sc, estimate(sc, hw, dims))


def decode_tokens(dims: ModelDims, requested: int | None = None) -> int:
    """Tokens to decode: ``requested``, else 1 for an encoder-only model, :data:`DECODE_TOKENS` otherwise."""
    if requested is not None:
        return requested
    return 1 if dims.rules.kind is Kind.ENCODER else DECODE_TOKENS


def on_chip(r: StrategyResult, hw: HwConfig, dims: ModelDims, o: BuildOptions, *, reference=None,
            trace: bool = False) -> StrategyResult:
    """Map ``r`` onto the chip (``o.budget``, ``o.weight_reload``; ``reference``: the iso budgets' strategy or
    its placement) and, with ``o.simulate``, simulate it (:func:`perf.simulate`)."""
    cm = chip_map(r.placement, hw, budget=o.budget, reference=reference, weight_reload=o.weight_reload)
    # the analytic figures of the chip the strategy runs on (its size, ADCs and tile layout): the simulator's lower
    # bound on the same map (on the flat machine the same figures as before the map)
    r = replace(r, cost=estimate(r.schedule, cm.hw, dims, chipmap=cm))
    if not o.simulate:
        return replace(r, chip=cm)
    import perf  # noqa: PLC0415  (the simulator loads on first use)
    rep = perf.simulate(r.schedule, cm.hw, dims, prefill_tokens=o.prefill_tokens,
                        decode_tokens=decode_tokens(dims, o.decode_tokens), trace=trace, chipmap=cm)
    return replace(r, chip=cm, perf=rep)


def pareto_points(geoms: tuple[MatmulGeom, ...], hw: HwConfig, dims: ModelDims, *,
                  adc_mode: AdcMode = AdcMode.PAPER, extra: tuple[int, ...] = (),
                  points: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 8.0)) -> tuple[ParetoPoint, ...]:
    """Return auto's (arrays, latency, energy) for budgets from the minimum up, plus ``extra`` budgets."""
    base = place(geoms, hw, Strategy.AUTO, validate=False).n_arrays
    budgets = sorted({max(base, int(round(base * f))) for f in points} | {b for b in extra if b >= base})
    out = []
    for b in budgets:
        r = evaluate(geoms, hw, Strategy.AUTO, dims, arrays=b, adc_mode=adc_mode, validate=False)
        out.append(ParetoPoint(arrays=r.arrays, latency_ns=r.latency_ns,
                               matmul_latency_ns=round(r.cost.matmul_latency_ns, 3),
                               energy_nj=round(r.cost.decode_energy_nj, 3),
                               utilization=round(r.placement.utilization, 6)))

    # keep the front: no other point has fewer-or-equal arrays and lower latency
    def dominates(q: ParetoPoint, p: ParetoPoint) -> bool:
        return (q.arrays <= p.arrays and q.latency_ns <= p.latency_ns
                and (q.arrays, q.latency_ns) != (p.arrays, p.latency_ns))

    return tuple(replace(p, on_front=not any(dominates(q, p) for q in out)) for p in out)


def pareto(geoms: tuple[MatmulGeom, ...], hw: HwConfig, dims: ModelDims, *, adc_mode: AdcMode = AdcMode.PAPER,
           extra: tuple[int, ...] = ()) -> list[dict]:
    """Return :func:`pareto_points` as ``report.json`` rows (``mapper reproduce``'s table)."""
    return [p.to_dict() for p in pareto_points(geoms, hw, dims, adc_mode=adc_mode, extra=extra)]


@dataclass(frozen=True, eq=False)
class BuildResult:
    """Everything ``mapper build`` produces, as data: :meth:`report` is ``report.json``.

    ``compare`` holds every strategy evaluated (linear, the chosen one, and with the Pareto sweep sparse and
    dense); ``per_strategy_layers`` the utilisation per layer of every strategy.
    """

    model: str
    spec: ModelSpec
    hw: HwConfig
    nblocks: int
    options: BuildOptions
    main: StrategyResult
    baseline: StrategyResult
    per_strategy_layers: dict[Strategy, dict[str, float]]
    compare: dict[Strategy, StrategyResult]
    pareto: tuple[ParetoPoint, ...] = ()
    commands: tuple[Command, ...] | None = None
    check: StreamCheck | None = None
    adc_selection: AdcSelection | None = None

    @property
    def strategy(self) -> Strategy:
        return self.options.strategy

    @property
    def cost_preset(self) -> str:
        return self.options.cost or "kit"

    def report_options(self) -> dict:
        """The ``options`` object of ``report.json``."""
        o = self.options
        dims = ModelDims.of(self.spec)
        return {"adc_mode": str(o.adc_mode), "cost_preset": self.cost_preset, "colocate": o.colocate,
                "arrays_budget": o.arrays, "weights": bool(self.commands is not None), "stream_seed": STREAM_SEED,
                "row_steps": DENSE_STEPS if o.row_steps is None else o.row_steps, "budget": o.budget,
                "reference": str(o.reference or Strategy.LINEAR) if o.budget.startswith("iso") else None,
                "weight_reload": o.weight_reload, "simulate": o.simulate,
                "prefill_tokens": o.prefill_tokens or dims.seq_len,
                "decode_tokens": decode_tokens(dims, o.decode_tokens), "max_error": o.max_error}

    def report(self) -> dict:
        """Return ``report.json`` content."""
        geoms = self.main.placement.matmuls
        s = self.main.summary(geoms)
        b = self.baseline.summary(geoms, detail=False)
        s["baseline"] = b
        s["speedup_vs_linear"] = round(b["latency_ns"] / s["latency_ns"], 6) if s["latency_ns"] else None
        s["energy_gain_vs_linear"] = round(b["energy_nj"] / s["energy_nj"], 6) if s["energy_nj"] else None
        s["array_reduction_vs_linear"] = round(1 - s["arrays"] / b["arrays"], 6) if b["arrays"] else None
        compare = {str(k): v.summary(geoms, detail=False) for k, v in self.compare.items()}
        return {
            "model": self.model, "family": self.spec.family, "hw": self.hw.to_dict(), "nblocks": self.nblocks,
            "strategy": str(self.strategy), "options": self.report_options(),
            "summary": s,
            "cost": self.main.cost.to_dict(),
            "baseline_cost": self.baseline.cost.to_dict(),
            "layers": layer_table(self.main, self.baseline),
            "matmuls": matmul_spread(self.main.placement),
            "utilization_per_layer": {str(k): v for k, v in self.per_strategy_layers.items()},
            "pareto": [p.to_dict() for p in self.pareto],
            "strategies": {k: {x: v[x] for x in ("arrays", "lower_bound_arrays", "utilization", "latency_ns",
                                                  "energy_nj", "matmul_latency_ns", "matmul_energy_nj", *PERF_KEYS)
                               if x in v}
                           for k, v in sorted(compare.items())},
            "stream": None if self.check is None else self.check.to_dict(),
            "format": format_report(self.hw),
            "adc_selection": None if self.adc_selection is None else self.adc_selection.to_dict(),
        }


def resolve_hw(hw: str | HwConfig, adcs: int | None = None, cost: str | None = None) -> HwConfig:
    """Return the configuration with ``--adcs`` and a cost preset applied."""
    cfg = load_hw(hw, adcs_per_array=adcs)
    if cost:
        cfg = cfg.replace(cost=CostParams.preset(cost))
    return cfg


def build(model: str, hw: str | HwConfig = "paper-256", options: BuildOptions = BuildOptions(), *,
          progress=None) -> BuildResult:
    """Map ``model`` on ``hw`` as ``options`` say and return a :class:`BuildResult` (nothing is written)."""
    from mapper.models import load_model_spec  # noqa: PLC0415
    step = progress or (lambda msg: None)
    o = options
    cfg = resolve_hw(hw, o.adcs, o.cost)
    step("model")
    spec = load_model_spec(model)
    nblocks = _build_nblocks(model, spec, o.nblocks)
    factors = None
    if o.weights and spec.has_weights:
        if o.arrays is not None and o.arrays > cfg.n_arrays:
            raise ShapeError(f"an array budget of {o.arrays} exceeds the {cfg.n_arrays} arrays of {cfg.name} (use "
                             f"--no-weights for a shape-only report, or a configuration with more arrays)")
        step("weights")       # before placement: a checkpoint that cannot be used fails fast
        factors = load_factors(model, spec, nblocks)
    if o.adc_mode == AdcMode.ACCURACY and factors is None:
        raise ModelError(f"the accuracy ADC rule measures the stream's error: {model} needs its weights "
                         "(not --no-weights, not a shape-only model)")
    geoms = geometry(spec, nblocks)
    dims = ModelDims.of(spec)
    step("place")
    main = evaluate(geoms, cfg, o.strategy, dims, arrays=o.arrays, adc_mode=o.adc_mode, colocate=o.colocate,
                    row_steps=o.row_steps)
    step("baseline")
    base = main if o.strategy is Strategy.LINEAR else evaluate(geoms, cfg, Strategy.LINEAR, dims,
                                                                 adc_mode=o.adc_mode)
    per = {}
    for st in Strategy:
        pl = {Strategy.LINEAR: base.placement, o.strategy: main.placement}.get(st) or place(
            geoms, cfg, st, validate=False, row_steps=o.row_steps)
        per[st] = layer_utilization(pl)
    par: tuple[ParetoPoint, ...] = ()
    compare = {Strategy.LINEAR: base, o.strategy: main}
    if o.with_pareto and o.strategy is Strategy.AUTO:
        step("pareto")
        for st in (Strategy.SPARSE, Strategy.DENSE):
            compare[st] = evaluate(geoms, cfg, st, dims, adc_mode=o.adc_mode, validate=False,
                                   row_steps=o.row_steps)
        others = tuple(compare[st].arrays for st in (Strategy.SPARSE, Strategy.DENSE))
        par = pareto_points(geoms, cfg, dims, adc_mode=o.adc_mode, extra=others)
    selection = None
    if o.adc_mode == AdcMode.ACCURACY:
        step("adc")
        # on the sequential twin of a concurrent chip (logical arrays, the schedule's numbering), then for_chip
        seq = cfg.replace(chip={"queue_depth": 0}) if is_concurrent(cfg) else cfg
        selection = select_for_build(_compile(spec, factors, seq, o, main.placement), o.max_error)
        compare[o.strategy] = main = replace(main, schedule=selection.schedule)
    step("chip")
    ref_st = o.reference or Strategy.LINEAR
    ref = compare[ref_st].placement if ref_st in compare and compare[ref_st].placement.budget is None else ref_st
    compare = {st: on_chip(r, cfg, dims, o, reference=ref, trace=o.trace and r is main)
               for st, r in compare.items()}
    main, base = compare[o.strategy], compare[Strategy.LINEAR]
    commands = checked = None
    if factors is not None:
        step("stream")
        from compiler.program import for_chip  # noqa: PLC0415
        cm = for_chip(selection.compiled, cfg) if selection else _compile(spec, factors, cfg, o, main.placement)
        commands = tuple(cm.full_stream(stream_inputs(cm, STREAM_SEED)))
        step("check")
        if o.check:
            checked = stream_check(spec, factors, cfg, o.strategy, colocate=o.colocate, arrays=o.arrays,
                                   placement=main.placement)
    return BuildResult(model=str(model), spec=spec, hw=cfg, nblocks=nblocks, options=o, main=main, baseline=base,
                       per_strategy_layers=per, compare=compare, pareto=par, commands=commands, check=checked,
                       adc_selection=selection)


def _build_nblocks(model: str, spec: ModelSpec, nblocks: int | None) -> int:
    """The block count of a build: ``nblocks``, else a d2s folder's own, else the default; checked to fit."""
    own = folder_nblocks(model)
    if nblocks is None:
        nblocks = own or default_nblocks(spec)
    elif own is not None and nblocks != own:
        raise ShapeError(f"the d2s folder {model} holds factors with nblocks {own}, not {nblocks} "
                         f"(omit --nblocks or pass the folder's value)")
    check_nblocks(spec, nblocks)
    return nblocks


def _compile(spec: ModelSpec, factors: dict, cfg: HwConfig, o: BuildOptions, placement: Placement):
    """The compiled model of a build's stream (weights, programs) on ``placement``; on a concurrent chip
    (:func:`cimisa.concurrency.is_concurrent`) the chip's stream: the physical arrays of the ``fixed`` chip map
    (the build's own under the default budget), MVMs ordered over the tiles, local barriers
    (:func:`compiler.program.for_chip`)."""
    from compiler.program import compile_model  # noqa: PLC0415
    if placement.n_arrays > cfg.n_arrays:
        raise ShapeError(f"{o.strategy} needs {placement.n_arrays} arrays; {cfg.name} has {cfg.n_arrays} "
                         f"(use --no-weights for a shape-only report, or a configuration with more arrays)")
    return compile_model(spec, factors, cfg, strategy=o.strategy, adc_mode=o.adc_mode, colocate=o.colocate,
                         placement=placement)


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
            if result.main.perf is not None:
                from mapper.perfplots import perf_plots  # noqa: PLC0415
                perf_plots(result.main.perf.to_dict(), result.main.perf.trace, tmp / "plots",
                           model=result.model, hw=result.hw.name, preset=result.cost_preset,
                           strategy=str(result.strategy))
    return out
