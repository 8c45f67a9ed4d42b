"""Execute Monarch matmuls as CIM command streams on the golden model, batched over tokens.

A compiled matmul (``compiler.program.MatmulProgram``) expects its quantised input vector at input-buffer addresses
``in_addr .. in_addr+in_len-1`` and leaves its integer result at output-buffer addresses
``out_addr .. out_addr+out_len-1``. :class:`CimExecutor` programs every weight once (the compiled model's
``WRITE_W`` commands) and then runs a program for a whole batch of tokens (all tokens of all sentences) in one pass
(:meth:`sw_model.machine.Machine.run_batch`): the machine's buffers hold ``(depth, B)`` arrays and the program's
``MVM`` and ``REQUANT`` commands are executed once each, every MVM as one batched kernel
(:func:`cimisa.semantics.mvm_acc`: float64 BLAS over the bit planes of the whole batch). The results equal those
of running each vector on its own (:meth:`CimExecutor.run_int_per_vector`).

Number formats (per matmul, all per-tensor and symmetric):

* activations: ``x_q = clip(round(x / x_scale), -(2**(b-1)-1), 2**(b-1)-1)`` with ``b = input_bits`` and
  ``x_scale = P(|x|) / (2**(b-1)-1)``, ``P`` the 99.99th percentile of the calibration activations (a static
  scale, as hardware needs; the rare larger values saturate);
* stage 1 (R) accumulates exactly, ``REQUANT`` rounds it right by ``requant_shift`` and saturates to ``b`` bits;
  the shift is the smallest one for which the 99.99th percentile of the stage-1 magnitudes seen on the
  calibration activations does not saturate (:func:`choose_requant_shift`, i.e.
  :func:`compiler.quant.stage1_requant_shift`);
* the result is ``y = x_scale * r_scale * l_scale * 2**requant_shift * y_int + bias``.

The integer reference (:class:`QuantRefLinear`) is :func:`compiler.quant.monarch_int_product`, the kit's one exact
Monarch product; the numeric rules (input range, REQUANT, ADC shifts, lossless bits) are :mod:`cimisa.rules`.
Here tokens are rows (``x_q`` is ``(B, in)``, as torch holds them); the compiler and the machine's buffers hold
them as columns, so the two meet through one transpose.

ADC resolution (:func:`adc_plan`): every ``MVM`` converts at the run's ADC resolution, at most lossless for its
window's rows in the configuration's number format (:meth:`cimisa.formats.NumberFormat.lossless_adc_bits`), and
gets the smallest ``adc_shift`` for which *every* physical column sum its window can produce fits the ADC without
saturating (:meth:`~cimisa.formats.NumberFormat.adc_shift_for`): the sums' range over all inputs is a bound of
the programmed weights' cells (:meth:`~cimisa.formats.NumberFormat.window_bounds`; for the default format
``[sum of the column's negative weights, sum of its positive weights]``), independent of the data (and a shift
of 0 when ``adc_bits`` is lossless for the window). ``rule="calib"`` (:class:`compiler.kinds.AdcRule`) narrows
that range to the one observed on calibration data (:meth:`CimExecutor.observe_adcs`); ``rule="accuracy"``
picks per MVM the fewest bits (at most the run's) that keep the calibration error under a bound
(:func:`mapper.adc_select.select`, :meth:`CimExecutor.plan_accuracy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from cimisa import rules
from cimisa.config import HwConfig
from cimisa.isa import Command, Opcode
from cimisa.rules import adc_shift_for
from compiler import quant
from compiler.kinds import AdcRule, choices
from mapper import adc_select

__all__ = ["act_scale", "quantize_act", "choose_requant_shift", "adc_shift_for", "adc_plan",
           "CimExecutor", "CimLinear", "QuantRefLinear", "MatmulQuantInfo"]


def act_scale(absmax: float, input_bits: int) -> float:
    """Return the per-tensor symmetric scale mapping ``absmax`` to the largest ``input_bits``-bit code."""
    absmax = float(absmax)
    if not math.isfinite(absmax) or absmax <= 0:
        return 1.0
    return absmax / rules.signed_range(input_bits)[1]


def quantize_act(x: torch.Tensor, scale: float, input_bits: int) -> np.ndarray:
    """Return ``clip(round(x / scale))`` as int64 numpy: symmetric, ``-qmax..qmax`` of the ``input_bits``-bit input
    range (:func:`cimisa.rules.signed_range`; its lowest code ``-qmax-1`` is left unused)."""
    q = rules.signed_range(input_bits)[1]
    xq = torch.clamp(torch.round(x.detach().to(torch.float64) / scale), -q, q)
    return xq.to(torch.int64).numpy()


def _as_np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def choose_requant_shift(R_int, x_q: np.ndarray, input_bits: int, percentile: float = 100.0) -> int:
    """Return the smallest shift for which the ``percentile``-th percentile of the calibration stage-1 magnitudes
    does not saturate after rounding (100: no calibration value saturates); ``x_q`` is ``(B, in)``
    (:func:`compiler.quant.stage1_requant_shift` with tokens as rows)."""
    x_q = np.asarray(x_q, dtype=np.int64)
    if x_q.size == 0:
        return 0
    return quant.stage1_requant_shift(_as_np(R_int), x_q.T, input_bits, percentile)


#: The ADC rules of :class:`CimExecutor`, in the order of :class:`compiler.kinds.AdcRule`.
ADC_RULES = choices(AdcRule)
#: Calibration vectors per matmul the accuracy rule measures errors on (evenly spaced over the calibration tokens).
ACCURACY_CALIB_ROWS = 64


def adc_plan(commands, arrays, cfg: HwConfig, adc_bits: int | None = None, rule: str = AdcRule.BOUND,
             observed: dict | None = None) -> tuple[Command, ...]:
    """Return ``commands`` with every MVM's ``adc_bits``/``adc_shift`` set by ``rule`` (module docstring).

    The resolution is ``min(lossless bits of the window's rows, cfg.adc_bits, adc_bits)``. ``rule="bound"``
    takes the shift from the programmed weights (no column sum can saturate); ``rule="calib"`` from the
    column-sum ranges ``observed[i]`` of MVM ``i`` on calibration data (``{unsigned: (lo, hi)}``, as
    :meth:`CimExecutor.observe_adcs` returns; rarer values saturate). The shift is at most what the command's
    ``adc_shift`` field holds. ``rule="paper"`` keeps the compiler's paper-rule setting of each MVM
    (:func:`compiler.schedule.adc_setting`: the model must be compiled with ``adc_mode="paper"``, as
    :func:`mapper.evaluate.cim.compile_cim` does), at most ``adc_bits``. ``arrays(index)`` returns the programmed
    integer weights of an array. The ``accuracy`` rule needs the calibration error, not just ranges:
    :meth:`CimExecutor.plan_accuracy`.
    """
    if rule not in (AdcRule.BOUND, AdcRule.CALIB, AdcRule.PAPER):
        raise ValueError(f"adc_plan's ADC rule must be bound, calib or paper, not {rule!r}")
    cap = cfg.adc_bits if adc_bits is None else min(int(adc_bits), cfg.adc_bits)
    fmt = cfg.fmt
    max_shift = rules.field_max(cfg.lossless_adc_bits)            # the adc_shift field's largest value
    out = []
    k = 0
    for c in commands:
        if c.op is Opcode.MVM:
            a = c.args
            if rule == AdcRule.PAPER:                    # the compiler's setting (compiled in paper mode)
                if a["adc_bits"] > cap:                  # capped: the same rule's step at the cap
                    w = arrays(a["array"])[a["row0"]:a["row0"] + a["nrows"], a["col0"]:a["col0"] + a["ncols"]]
                    a = dict(a, adc_bits=cap, adc_shift=fmt.adc_shift_for(fmt.window_bounds(w), cap, max_shift,
                                                                          spare_top=True))
                out.append(Command(Opcode.MVM, a))
                k += 1
                continue
            bits = max(1, min(fmt.lossless_adc_bits(a["nrows"]), cap))
            w = arrays(a["array"])[a["row0"]:a["row0"] + a["nrows"], a["col0"]:a["col0"] + a["ncols"]]
            bounds = fmt.window_bounds(w)
            if rule == AdcRule.CALIB and observed is not None and k in observed:
                seen = observed[k]
                bounds = {u: (max(lo, seen[u][0]), min(hi, seen[u][1])) if u in seen else (lo, hi)
                          for u, (lo, hi) in bounds.items()}
            shift = fmt.adc_shift_for(bounds, bits, max_shift)
            c = Command(Opcode.MVM, dict(a, adc_bits=bits, adc_shift=shift))
            k += 1
        out.append(c)
    return tuple(out)


@dataclass(frozen=True)
class MatmulQuantInfo:
    """Per-matmul numbers of a CIM run: activation scale, requant shift, output scale, ADC shifts used."""

    name: str
    x_scale: float
    requant_shift: int
    y_scale: float
    adc_shifts: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        """Return JSON-ready data."""
        return {"name": self.name, "x_scale": self.x_scale, "requant_shift": self.requant_shift,
                "y_scale": self.y_scale, "adc_shift_max": max(self.adc_shifts, default=0),
                "adc_shift_mean": (sum(self.adc_shifts) / len(self.adc_shifts)) if self.adc_shifts else 0.0}


class CimExecutor:
    """Run the programs of a compiled model on one golden-model machine, batched over tokens.

    Parameters
    ----------
    compiled : ``compiler.program.CompiledModel`` (``weight_commands``, ``programs``).
    machine : a :class:`sw_model.machine.Machine` (or :class:`sw_model.noise.NoisyMachine`) for the run's
        configuration; its ``adc_bits`` bounds the MVMs' resolution.
    adc_bits : MVM ADC resolution (``None``: the machine configuration's ``adc_bits``).
    """

    def __init__(self, compiled, machine, adc_bits: int | None = None, adc_rule: str = "bound"):
        self.compiled = compiled
        self.machine = machine
        self.cfg = machine.cfg
        self.adc_bits = adc_bits
        self.adc_rule = adc_rule
        for cmd in compiled.weight_commands:
            machine.execute(cmd)
        keep = (Opcode.MVM, Opcode.REQUANT, Opcode.BARRIER)      # a concurrent chip's local barriers too
        self.raw = {name: (prog, tuple(c for c in prog.commands if c.op in keep))
                    for name, prog in compiled.programs.items()}
        self.programs = {}
        self.adc_shifts = {}
        self.adc_choice: adc_select.AdcChoice | None = None
        self.plan_adcs()
        self.calls = 0
        self.tokens = 0
        self.mvms = 0

    def plan_adcs(self, observed: dict | None = None) -> None:
        """(Re)compute every MVM's ADC setting with this executor's rule (``observed``: per matmul, per MVM
        index, the calibration column-sum range, from :meth:`observe_adcs`)."""
        arrays = self.machine.state.array
        rule = AdcRule.BOUND if self.adc_rule == AdcRule.ACCURACY else self.adc_rule   # until plan_accuracy
        for name, (prog, cmds) in self.raw.items():
            planned = adc_plan(cmds, arrays, self.cfg, self.adc_bits, rule, (observed or {}).get(name))
            self.programs[name] = (prog, planned)
            self.adc_shifts[name] = tuple(c.args["adc_shift"] for c in planned if c.op is Opcode.MVM)

    def _progs(self, names) -> list:
        return [adc_select.Prog.of(self.raw[n][0], self.raw[n][1]) for n in names]

    def observe_adcs(self, inputs: dict[str, np.ndarray]) -> dict:
        """Return the column-sum ranges of every MVM on calibration inputs ``{name: x_q (B, in)}``: per matmul,
        per MVM index, ``{unsigned: (lo, hi)}`` of its physical column sums (:func:`mapper.adc_select.observe`).

        The pass runs each program with lossless ADCs outside the command checks (a calibration of the analog
        front end, not part of the stream); the sums are the ideal (noise-free) ones.
        """
        return adc_select.observe(self.machine, self._progs(inputs), inputs)

    def plan_accuracy(self, inputs: dict[str, np.ndarray], max_error: float,
                      max_vectors: int = ACCURACY_CALIB_ROWS) -> adc_select.AdcChoice:
        """Set every MVM's ADC setting by the accuracy rule (:func:`mapper.adc_select.select`) on calibration
        inputs ``{name: x_q (B, in)}`` (at most ``max_vectors`` evenly spaced of them): the fewest bits, at most
        the run's, that keep the mean relative L2 error of the matmul outputs against the float product under
        ``max_error``. Return the choice."""
        names = [n for n in self.raw if n in inputs and len(inputs[n])]
        xs = {}
        for n in names:
            x = np.asarray(inputs[n], dtype=np.int64)
            xs[n] = x[np.linspace(0, len(x) - 1, min(len(x), max_vectors)).round().astype(int)]
        refs = {n: quant.float_product(self.compiled.quant[n], xs[n].T, self.raw[n][0].requant_shift).T
                for n in names}
        choice = adc_select.select(self.machine, self._progs(names), xs, refs, max_error)
        for n in names:
            prog, cmds = self.raw[n]
            planned = tuple(adc_select.apply([adc_select.Prog.of(prog, cmds)], {n: choice.settings[n]})[0].commands)
            self.programs[n] = (prog, planned)
            self.adc_shifts[n] = tuple(c.args["adc_shift"] for c in planned if c.op is Opcode.MVM)
        self.adc_choice = choice
        return choice

    def run_int_per_vector(self, name: str, x_q: np.ndarray) -> np.ndarray:
        """Return :meth:`run_int`'s outputs computed one input vector at a time on 1-D buffers (the unbatched
        machine; slow, for checking that batching changes nothing)."""
        prog, cmds = self.programs[name]
        m, st = self.machine, self.machine.state
        rows = []
        for x in np.asarray(x_q, dtype=np.int64):
            m.set_batch(None)
            st.inbuf[prog.in_addr:prog.in_addr + x.shape[0]] = x
            m.sync.step(Opcode.LOAD_IN, {"addr": prog.in_addr, "count": x.shape[0]})   # as a LOAD_IN would
            for c in cmds:
                m.execute(c)
            rows.append(st.outbuf[prog.out_addr:prog.out_addr + prog.out_len].copy())
        return np.array(rows, dtype=np.int64).reshape(len(rows), prog.out_len)

    def run_int(self, name: str, x_q: np.ndarray) -> np.ndarray:
        """Return the integer outputs ``(B, out_len)`` of matmul ``name`` for quantised inputs ``(B, in)``."""
        prog, cmds = self.programs[name]
        x_q = np.asarray(x_q, dtype=np.int64)
        b, n = x_q.shape
        if n > prog.in_len:
            raise ValueError(f"{name}: {n} inputs, program takes {prog.in_len}")
        y = self.machine.run_batch(cmds, x_q, prog.in_addr, prog.out_addr, prog.out_len)
        self.calls += 1
        self.tokens += b
        self.mvms += b * len(self.adc_shifts[name])
        return y


class CimLinear(nn.Module):
    """A linear layer whose matmul runs as CIM commands; quantisation and dequantisation stay digital.

    ``token_mask`` (a flat bool tensor over the leading dimensions, set by the caller per forward pass)
    restricts the CIM work to real tokens; the rows it excludes (padding) get zeros.
    """

    def __init__(self, executor: CimExecutor, name: str, in_features: int, out_features: int,
                 info: MatmulQuantInfo, bias: torch.Tensor | None, input_bits: int):
        super().__init__()
        self.executor = executor
        self.name = name
        self.in_features = in_features
        self.out_features = out_features
        self.info = info
        self.input_bits = input_bits
        self.register_buffer("bias", None if bias is None else bias.detach().clone().float())
        self.token_mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        mask = self.token_mask
        if mask is not None and mask.numel() == flat.shape[0]:
            rows = flat[mask]
        else:
            mask = None
            rows = flat
        x_q = quantize_act(rows, self.info.x_scale, self.input_bits)
        y_int = self.executor.run_int(self.name, x_q)
        y = torch.from_numpy(y_int.astype(np.float64) * self.info.y_scale).to(x.dtype)
        if mask is not None:
            full = torch.zeros(flat.shape[0], self.out_features, dtype=x.dtype)
            full[mask] = y
            y = full
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.name!r}, in={self.in_features}, out={self.out_features}, shift={self.info.requant_shift}"


class QuantRefLinear(nn.Module):
    """The quantised Monarch layer in torch/numpy: the same integer arithmetic as :class:`CimLinear` with
    lossless ADCs, computed directly from the integer factors (no command stream, no golden model)."""

    def __init__(self, R_int, L_int, in_features: int, out_features: int, info: MatmulQuantInfo,
                 bias: torch.Tensor | None, input_bits: int, int_product=None):
        super().__init__()
        self.R_int = _as_np(R_int).astype(np.int64)
        self.L_int = _as_np(L_int).astype(np.int64)
        self.in_features = in_features
        self.out_features = out_features
        self.info = info
        self.input_bits = input_bits
        self.int_product = int_product
        self.register_buffer("bias", None if bias is None else bias.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        x_q = quantize_act(flat, self.info.x_scale, self.input_bits)
        if self.int_product is not None:
            y_int = np.asarray(self.int_product(x_q))[:, :self.out_features]
        else:
            y_int = quant.monarch_int_product(self.R_int, self.L_int, x_q.T, self.info.requant_shift,
                                              self.input_bits, self.out_features).T
        y = torch.from_numpy(y_int.astype(np.float64) * self.info.y_scale).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


def with_info(info: MatmulQuantInfo, **changes) -> MatmulQuantInfo:
    """Return ``info`` with ``changes`` applied."""
    return replace(info, **changes)
