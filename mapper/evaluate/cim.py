"""Steps 3 and 4 of an end-to-end run: compile the factors for the CIM arrays, then build the model whose mapped
matmuls execute as CIM commands on a golden model (or, for tests, as the same integer arithmetic in torch).

* :func:`compile_cim`: :func:`compiler.program.compile_model`, activation scales and requantisation shifts from
  the calibration activations (:mod:`mapper.evaluate.executor`);
* :func:`build_cim_model`: a golden-model machine (exact, or noisy: :mod:`sw_model.noise`) holding every weight, and
  a copy of the Monarch model whose factored matmuls are :class:`~mapper.evaluate.executor.CimLinear`;
  embeddings, attention scores, softmax, norms, activations and the LM head stay digital torch;
* :func:`build_quantref_model`: the quantised Monarch model in torch, without commands or ADC loss;
* :func:`cost_report`: the cost model's figures for the compiled model.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from cimisa.config import HwConfig
from cimisa.errors import ConfigError
from compiler.cost import cost_of_compiled
from compiler.kinds import AdcMode, AdcRule, Strategy
from compiler.program import compile_model
from compiler.quant import reference_int_product
from compiler.spec import ModelSpec
from mapper.d2s.swap import set_submodule
from mapper.evaluate.executor import (
    CimExecutor,
    CimLinear,
    MatmulQuantInfo,
    QuantRefLinear,
    act_scale,
    choose_requant_shift,
    quantize_act,
)
from mapper.evaluate.prepare import Prepared, RunError
from sw_model.noise import NoiseParams, make_machine

__all__ = ["CimSetup", "compile_cim", "hw_for_adc", "build_cim_model", "build_quantref_model", "cost_report",
           "ADC_CALIB_ROWS", "ACT_PERCENTILE", "REQUANT_PERCENTILE"]

#: Calibration tokens per matmul used to observe column-sum ranges for the ``calib`` ADC rule.
ADC_CALIB_ROWS = 512
#: Percentiles of the calibration magnitudes that set the activation scale and the requant shift (the rare
#: larger values saturate: BERT-style activations have outliers that would waste most codes).
ACT_PERCENTILE = 99.99
REQUANT_PERCENTILE = 99.99


@dataclass(frozen=True)
class CimSetup:
    """A compiled model plus, per matmul, the activation scale, requant shift and output scale."""

    compiled: object
    hw: HwConfig
    infos: dict[str, MatmulQuantInfo]
    strategy: str
    compile_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def _scalar(v) -> float:
    a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
    if a.size != 1:
        raise RunError(f"per-tensor weight scales expected, got shape {a.shape}")
    return float(a.reshape(()))


def _percentile_abs(x: torch.Tensor, pct: float) -> float:
    a = x.detach().abs().flatten()
    if pct >= 100 or a.numel() == 0:
        return float(a.max()) if a.numel() else 1.0
    if a.numel() > 4_000_000:
        a = a[torch.linspace(0, a.numel() - 1, 4_000_000).long()]
    return float(np.percentile(a.double().numpy(), pct))


def compile_cim(prep: Prepared, hw: HwConfig, activations: dict[str, torch.Tensor],
                strategy: Strategy | str = Strategy.AUTO, act_percentile: float = ACT_PERCENTILE,
                requant_percentile: float = REQUANT_PERCENTILE, **compile_kw) -> CimSetup:
    """Compile the factors for ``hw`` and derive the per-matmul quantisation from the calibration activations.

    ``x_scale`` = the ``act_percentile``-th percentile of the calibration |x| over ``2**(input_bits-1)-1``; the
    requant shift is the smallest that keeps the ``requant_percentile``-th percentile of the calibration
    stage-1 magnitudes in range (:func:`~mapper.evaluate.executor.choose_requant_shift`). 100 means the maximum.
    """
    t0 = time.perf_counter()
    compile_kw.setdefault("adc_mode", AdcMode.PAPER)   # the MVMs carry the paper rule's settings (rule "paper")
    compiled = compile_model(prep.spec, prep.factors, hw, strategy=strategy, **compile_kw)
    ib = hw.input_bits
    scales, shifts, calib_xq = {}, {}, {}
    for name in prep.factors:
        x = activations.get(name)
        absmax = _percentile_abs(x, act_percentile) if x is not None and x.numel() else 1.0
        scales[name] = act_scale(absmax, ib)
        q = compiled.quant[name]
        xq = quantize_act(x, scales[name], ib) if x is not None else np.zeros((0, 1), np.int64)
        calib_xq[name] = xq[np.linspace(0, len(xq) - 1, min(len(xq), ADC_CALIB_ROWS)).round().astype(int)] \
            if len(xq) else xq
        if getattr(q, "W", None) is not None:
            continue
        shifts[name] = choose_requant_shift(q.R, xq, ib, requant_percentile)
    compiled = compiled.with_requant_shifts(shifts)
    infos = {}
    for name in prep.factors:
        q = compiled.quant[name]
        prog = compiled.programs[name]
        if prog.depends_on:
            raise RunError(f"{name}: co-located programs (depends_on) are not supported by the batched runner")
        shift = int(prog.requant_shift)
        if getattr(q, "W", None) is not None:       # linear strategy: one dense stage, no REQUANT
            shift = 0
            y_scale = scales[name] * _scalar(q.w_scale)
        else:
            y_scale = scales[name] * _scalar(q.r_scale) * _scalar(q.l_scale) * 2.0 ** shift
        infos[name] = MatmulQuantInfo(name, scales[name], shift, y_scale)
    return CimSetup(compiled, hw, infos, str(strategy), time.perf_counter() - t0, {"calib_xq": calib_xq})


def hw_for_adc(hw: HwConfig, adc_bits) -> HwConfig:
    """Return ``hw`` with ADCs of ``adc_bits`` bits (``"lossless"``: wide enough for every MVM; None: as is)."""
    if adc_bits is None or (not isinstance(adc_bits, str) and adc_bits == hw.adc_bits):
        return hw
    if str(adc_bits).lower() == "lossless":
        return hw.lossless()
    try:
        bits = int(adc_bits)
    except (TypeError, ValueError):
        raise ConfigError(f"--adc-bits must be an integer or 'lossless', not {adc_bits!r}") from None
    if not 1 <= bits <= hw.lossless_adc_bits:
        raise ConfigError(f"--adc-bits must be in 1..{hw.lossless_adc_bits} for {hw.name}, not {bits}")
    return hw.replace(adc_bits=bits, name=f"{hw.name}-adc{bits}")


def build_cim_model(prep: Prepared, setup: CimSetup, adc_bits=None, noise: NoiseParams | None = None,
                    fast: bool = True, adc_rule: AdcRule | str = AdcRule.BOUND, max_error: float | None = None
                    ) -> tuple[torch.nn.Module, CimExecutor]:
    """Return a copy of the Monarch model whose factored matmuls run on a fresh golden model, and its executor.

    ``adc_bits`` (int, ``"lossless"`` or None for the configuration's) sets the machine's ADCs and every MVM's.
    ``adc_rule`` chooses each MVM's ADC step: ``"paper"`` (the compiler's ``ceil(log2(rows))``-bit paper rule),
    ``"bound"`` (no column sum the weights allow can saturate) or
    ``"calib"`` (the column-sum range seen on the calibration activations fits; see
    :mod:`mapper.evaluate.executor`) or ``"accuracy"`` (per MVM the fewest bits keeping the calibration error
    under ``max_error``: :meth:`CimExecutor.plan_accuracy`).
    """
    hw = hw_for_adc(setup.hw, adc_bits)
    if hw.adc_bits > setup.hw.adc_bits:
        raise RunError(f"the model was compiled for {setup.hw.adc_bits}-bit ADCs; cannot run {hw.adc_bits}-bit")
    machine = make_machine(hw, noise, fast=fast)
    if adc_rule in (AdcRule.CALIB, AdcRule.ACCURACY) and not fast and not (noise is not None and noise.active):
        raise RunError(f"the {adc_rule} ADC rule needs the fast (batched) golden model")
    executor = CimExecutor(setup.compiled, machine, adc_bits=hw.adc_bits, adc_rule=adc_rule)
    if adc_rule == AdcRule.CALIB:
        executor.plan_adcs(executor.observe_adcs(setup.extra["calib_xq"]))
    elif adc_rule == AdcRule.ACCURACY:
        if max_error is None:
            raise RunError("the accuracy ADC rule needs a max_error bound")
        executor.plan_accuracy(setup.extra["calib_xq"], max_error)
    model = copy.deepcopy(prep.monarch)
    for name, (_R, _L, bias) in prep.factors.items():
        m = prep.spec.matmul(name)
        info = setup.infos[name]
        info = MatmulQuantInfo(info.name, info.x_scale, info.requant_shift, info.y_scale,
                               executor.adc_shifts.get(name, ()))
        set_submodule(model, name, CimLinear(executor, name, m.in_features, m.out_features, info, bias,
                                             hw.input_bits))
    return model.eval(), executor


def build_quantref_model(prep: Prepared, setup: CimSetup, use_kit_reference: bool = True) -> torch.nn.Module:
    """Return the quantised Monarch model in torch: the CIM integer arithmetic without commands or ADC loss.

    With ``use_kit_reference`` the integer products come from ``compiler.quant.reference_int_product``.
    """
    model = copy.deepcopy(prep.monarch)
    ib = setup.hw.input_bits
    for name, (_R, _L, bias) in prep.factors.items():
        m = prep.spec.matmul(name)
        q = setup.compiled.quant[name]
        info = setup.infos[name]
        fn = None
        if use_kit_reference:
            fn = (lambda xq, q=q, s=info.requant_shift: reference_int_product(q, xq.T, s, ib).T)
        set_submodule(model, name, QuantRefLinear(q.R, q.L, m.in_features, m.out_features, info, bias, ib,
                                                  int_product=fn))
    return model.eval()


def cost_report(setup: CimSetup, spec: ModelSpec, hw: HwConfig) -> dict:
    """Return the cost model's report (:func:`compiler.cost.cost_of_compiled`) for the compiled model."""
    return cost_of_compiled(setup.compiled, hw, spec)
