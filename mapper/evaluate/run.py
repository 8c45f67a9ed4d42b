"""End-to-end runs: a transformer whose every mapped matmul executes as CIM commands, compared with dense.

:func:`run` (``mapper run``) takes :class:`RunOptions` and returns a :class:`RunResult`; the steps are modules of
their own:

1. :mod:`mapper.evaluate.prepare`: the dense model, its Monarch factors and the float Monarch model;
2. :mod:`mapper.evaluate.forward`: the inputs of every mapped matmul on calibration text;
3. and 4. :mod:`mapper.evaluate.cim`: compilation for the hardware configuration, activation scales and requant
   shifts; the model whose mapped matmuls run on the golden model;
5. :mod:`mapper.evaluate.metrics` against the dense model: cosine similarity of mean-pooled embeddings
   (encoders) or next-token agreement and perplexity with greedy generation (:mod:`mapper.evaluate.decode`),
   as the family's :class:`~compiler.families.RunMode` says.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cimisa import progress as kit_progress
from cimisa.config import HwConfig, load_hw
from cimisa.fsutil import atomic_dir
from cimisa.isa import Opcode
from compiler.kinds import AdcRule, Strategy, choices
from mapper.adc_select import check_max_error, schedule_with
from mapper.evaluate.cim import (
    CimSetup,
    build_cim_model,
    build_quantref_model,
    compile_cim,
    cost_report,
    hw_for_adc,
)
from mapper.evaluate.decode import greedy_generate, teacher_forced
from mapper.evaluate.forward import collect_activations, embed, layer_progress
from mapper.evaluate.metrics import decoder_metrics, encoder_metrics, mean_pool
from mapper.evaluate.prepare import Prepared, RunError, calibration_texts, detokenize, prepare, tokenize
from mapper.report import format_report
from sw_model.noise import NoiseParams

__all__ = ["RunOptions", "RunResult", "run", "save_report", "RunError",
           # the steps, re-exported under their former home
           "Prepared", "CimSetup", "prepare", "tokenize", "detokenize", "collect_activations", "compile_cim",
           "build_cim_model", "build_quantref_model", "hw_for_adc", "embed", "layer_progress", "mean_pool",
           "encoder_metrics", "decoder_metrics", "greedy_generate", "calibration_texts"]


@dataclass(frozen=True)
class RunOptions:
    """What ``mapper run`` does: the model, the text, the Monarch factors, the hardware and how MVMs run.

    ``texts``: encoders embed every text, decoders use the first. ``nblocks`` None: the model's default (or a D2S
    folder's own). ``adc_bits``: an int, ``"lossless"`` or None (the configuration's). ``calib_texts`` None: the
    kit's calibration sentences (for activation scales and requant shifts).
    """

    model: str
    texts: tuple[str, ...]
    nblocks: int | None = None
    calibrate: bool = False
    hw: str | HwConfig = "paper-256"
    strategy: Strategy | str = Strategy.AUTO
    adc_bits: int | str | None = None
    adc_rule: AdcRule | str = AdcRule.BOUND
    noise: NoiseParams | None = None
    gen_tokens: int = 8
    show_progress: bool = True
    calib_texts: tuple[str, ...] | None = None
    max_error: float | None = None

    def check(self) -> None:
        """Raise :class:`RunError` for options no run can use (before any model is loaded)."""
        if not self.texts or not all(isinstance(t, str) and t.strip() for t in self.texts):
            raise RunError("--text must be a non-empty string")
        for t in self.texts:
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise RunError("--text is not valid UTF-8 text") from None
        if self.strategy not in choices(Strategy):
            raise RunError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(choices(Strategy))}")
        if self.adc_rule not in choices(AdcRule):
            raise RunError(f"--adc-rule must be one of {', '.join(choices(AdcRule))}, not {self.adc_rule!r}")
        check_max_error(self.adc_rule, self.max_error, AdcRule.ACCURACY)


@dataclass(frozen=True)
class Execution:
    """How much the golden model executed, and the wall times (seconds)."""

    matmul_calls: int
    token_matmuls: int
    mvm_token_commands: int
    exec_seconds: float
    total_seconds: float
    compile_seconds: float


@dataclass(frozen=True)
class RunResult:
    """The outcome of :func:`run`: settings, metrics against the dense model, execution counts, per-matmul
    quantisation and the cost report. :meth:`to_json` gives the report (``run.json``)."""

    model: str
    source: str
    family: str
    nblocks: int
    calibrated: bool
    hw: str
    adc_bits: int
    adc_lossless: bool
    input_bits: int
    weight_bits: int
    strategy: str
    adc_rule: str
    noise: dict
    texts: list[str]
    metrics: dict
    execution: Execution
    matmuls: list[dict]
    cost: dict | None
    format: dict | None = None
    adc_selection: dict | None = None

    def to_json(self) -> dict:
        """Return the report as a JSON-ready dict (the keys and order of ``run.json``)."""
        return {**{k: getattr(self, k) for k in ("model", "source", "family", "nblocks", "calibrated", "hw",
                                                 "adc_bits", "adc_lossless", "input_bits", "weight_bits",
                                                 "strategy", "adc_rule", "noise", "texts", "metrics")},
                "execution": asdict(self.execution), "matmuls": self.matmuls, "cost": self.cost,
                "format": self.format, "adc_selection": self.adc_selection}


def _decoder_metrics(prep: Prepared, cim_model, texts: list[str], gen_tokens: int, show: bool) -> dict:
    ids = tokenize(prep, texts[:1])["input_ids"]
    dl = teacher_forced(prep.dense, ids)
    with layer_progress(cim_model, "run: CIM forward", enabled=show):
        cl = teacher_forced(cim_model, ids)
    ml = teacher_forced(prep.monarch, ids)
    n_new = max(0, min(gen_tokens, prep.max_len - ids.shape[1]))
    gen_dense = greedy_generate(prep.dense, ids, n_new)
    with layer_progress(cim_model, "run: CIM decode", enabled=show, passes=max(1, n_new)):
        gen_cim = greedy_generate(cim_model, ids, n_new)
    return {
        "cim_vs_dense": decoder_metrics(dl, cl, ids),
        "monarch_float_vs_dense": decoder_metrics(dl, ml, ids),
        "tokens": int(ids.shape[1]),
        "generated_dense": gen_dense, "generated_cim": gen_cim,
        "generated_dense_text": detokenize(prep, gen_dense), "generated_cim_text": detokenize(prep, gen_cim),
        "generated_agreement": (sum(a == b for a, b in zip(gen_dense, gen_cim)) / n_new) if n_new else None,
    }


def _encoder_metrics(prep: Prepared, cim_model, texts: list[str], show: bool) -> dict:
    batch = tokenize(prep, texts)
    ref = embed(prep.dense, batch)
    mon = embed(prep.monarch, batch)
    cim = embed(cim_model, batch, progress=show, desc="run: CIM forward")
    return {
        "cim_vs_dense": encoder_metrics(ref, cim),
        "monarch_float_vs_dense": encoder_metrics(ref, mon),
        "cim_vs_monarch_float": encoder_metrics(mon, cim),
        "tokens": int(batch["attention_mask"].sum()),
    }


def run(opts: RunOptions) -> RunResult:
    """Run ``opts.texts`` through the dense, float Monarch and CIM-executed Monarch models; return the result."""
    t_start = time.perf_counter()
    opts.check()
    texts = list(opts.texts)
    show = opts.show_progress
    run_hw = hw_for_adc(load_hw(opts.hw), opts.adc_bits)
    with kit_progress.stage("run: model and Monarch factors", show=show):
        prep = prepare(opts.model, opts.nblocks, opts.calibrate, show)
    with kit_progress.stage("run: compile for the CIM arrays", show=show):
        calib = list(opts.calib_texts) if opts.calib_texts is not None else calibration_texts()
        acts = collect_activations(prep, calib, max_len=min(128, prep.max_len))
        setup = compile_cim(prep, run_hw, acts, strategy=opts.strategy)
        cim_model, executor = build_cim_model(prep, setup, adc_bits=run_hw.adc_bits, noise=opts.noise,
                                              adc_rule=opts.adc_rule, max_error=opts.max_error)
    t_exec = time.perf_counter()
    if prep.is_decoder:
        metrics = _decoder_metrics(prep, cim_model, texts, opts.gen_tokens, show)
    else:
        metrics = _encoder_metrics(prep, cim_model, texts, show)
    execution = Execution(executor.calls, executor.tokens, executor.mvms, time.perf_counter() - t_exec,
                          time.perf_counter() - t_start, setup.compile_seconds)
    matmuls = [dict(setup.infos[n].to_dict(), adc_shifts=list(executor.adc_shifts.get(n, ()))) for n in prep.factors]
    return RunResult(
        model=opts.model, source=prep.source, family=prep.family, nblocks=prep.nblocks, calibrated=prep.calibrated,
        hw=run_hw.name, adc_bits=run_hw.adc_bits, adc_lossless=run_hw.adc_bits >= run_hw.lossless_adc_bits,
        input_bits=run_hw.input_bits, weight_bits=run_hw.weight_bits, strategy=str(opts.strategy),
        adc_rule=str(opts.adc_rule), noise=(opts.noise or NoiseParams()).to_dict(), texts=texts, metrics=metrics,
        execution=execution, matmuls=matmuls, cost=cost_report(priced_setup(setup, executor), prep.spec, run_hw),
        format=format_report(run_hw),
        adc_selection=None if executor.adc_choice is None else executor.adc_choice.to_dict())


def priced_setup(setup: CimSetup, executor) -> CimSetup:
    """``setup`` with its schedule at the ADC settings the executor runs (its rule's bits and steps per MVM), so
    the cost model prices what ran, whatever the rule."""
    settings = {n: tuple((c.args["adc_bits"], c.args["adc_shift"]) for c in cmds if c.op is Opcode.MVM)
                for n, (_prog, cmds) in executor.programs.items()}
    sched = schedule_with(setup.compiled, settings)
    return replace(setup, compiled=replace(setup.compiled, schedule=sched))


def save_report(report: dict, out: str | Path, *, force: bool = False) -> Path:
    """Write ``report`` (:meth:`RunResult.to_json`) as ``run.json`` in the folder ``out``; return the file path.

    ``out`` is a kit output folder like ``mapper build``'s: written atomically with the kit's marker file, an
    existing folder replaced as a whole only if the kit wrote it (or with ``force``).
    """
    with atomic_dir(out, force=force) as tmp:
        (tmp / "run.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return Path(out) / "run.json"
