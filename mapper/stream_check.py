"""The check of a build's command stream on ``sw_model``: exact against the integer product, and the ADC error.

:func:`stream_check` compiles the model three times (lossless ADCs, the paper's ADCs, the configuration's own)
and returns a :class:`StreamCheck`, the ``stream`` object of ``report.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimisa.config import HwConfig
from cimisa.errors import StreamError
from compiler.kinds import AdcMode, Strategy
from compiler.stream_inputs import STREAM_SEED, stream_inputs

__all__ = ["AdcError", "StreamCheck", "stream_check"]


def _stream_inputs(compiled) -> dict[str, np.ndarray]:
    """Seeded test inputs (:func:`compiler.stream_inputs.stream_inputs`, shared with ``python -m sim run``)."""
    return stream_inputs(compiled, STREAM_SEED)


@dataclass(frozen=True)
class AdcError:
    """Relative L2 error of a stream's outputs against the float product of the same integer factors."""

    mode: str
    mean_rel_l2: float
    max_rel_l2: float
    adc_bits: dict[str, int]

    def to_dict(self) -> dict:
        return {"mode": self.mode, "mean_rel_l2": self.mean_rel_l2, "max_rel_l2": self.max_rel_l2,
                "adc_bits": dict(self.adc_bits)}


@dataclass(frozen=True)
class StreamCheck:
    """The ``stream`` object of ``report.json`` (:func:`stream_check`)."""

    exact: bool
    matmuls: int
    adc_error: AdcError
    adc_error_configured: AdcError

    def to_dict(self) -> dict:
        return {"exact": self.exact, "matmuls": self.matmuls, "adc_error": self.adc_error.to_dict(),
                "adc_error_configured": self.adc_error_configured.to_dict()}


def stream_check(spec, factors, hw: HwConfig, strategy: Strategy, *, colocate: bool = True,
                 arrays: int | None = None, placement=None) -> StreamCheck:
    """Run compiled streams on sw_model: exact check (lossless ADCs) and the paper-ADC error vs float.

    ``placement``: the placement the build streams (e.g. with DenseMap row steps other than the default); None
    places again with ``strategy``, ``arrays`` and ``colocate``.

    ``exact``: every output equals the exact integer product (lossless ADCs); ``adc_error``: the relative L2
    error of the stream's output against the float product of the same integer factors with the paper's ADC
    resolutions (``log2`` of the rows per column); ``adc_error_configured``: the same with the configuration's
    own ADCs (``exact`` mode: as many bits as the configuration has, the step covering the full column-sum range).
    On a concurrent chip the streams are the chip's (:func:`compiler.program.for_chip`); a stream the golden
    model stops (e.g. a HAZARD) is a :class:`~cimisa.errors.StreamError` naming the command.
    """
    from compiler.program import compile_model  # noqa: PLC0415
    from compiler.quant import float_product, reference_int_product  # noqa: PLC0415
    from sw_model import run_commands  # noqa: PLC0415
    from sw_model.errors import CimError  # noqa: PLC0415
    big = hw.replace(n_arrays=max(hw.n_arrays, 1))
    exact_hw = big.lossless()
    ok, matmuls, errors = True, 0, {}
    for mode, cfg in (("exact", exact_hw), ("paper", big), ("configured", big)):
        cm = compile_model(spec, factors, cfg, strategy=strategy, arrays=arrays,
                           adc_mode=AdcMode.PAPER if mode == "paper" else AdcMode.EXACT, colocate=colocate,
                           placement=placement)
        inputs = _stream_inputs(cm)
        try:
            out = run_commands(cfg, cm.full_stream(inputs)).results
        except CimError as exc:        # HAZARD on a concurrent chip, or any other stop: the compiler's fault
            raise StreamError(f"the {strategy} stream compiled for {cfg.name} does not run on the golden model "
                              f"({exc}); this is a compiler bug, please report it") from None
        pos = 0
        errs = []
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
            matmuls = len(cm.programs)
        else:
            errors[mode] = AdcError(mode=mode, mean_rel_l2=round(float(np.mean(errs)), 6),
                                    max_rel_l2=round(float(np.max(errs)), 6),
                                    adc_bits={str(k): v for k, v in cm.schedule.adc_bits_histogram().items()})
    return StreamCheck(exact=ok, matmuls=matmuls, adc_error=errors["paper"],
                       adc_error_configured=errors["configured"])
