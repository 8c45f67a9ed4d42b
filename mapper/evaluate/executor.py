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
  calibration activations does not saturate (:func:`choose_requant_shift`);
* the result is ``y = x_scale * r_scale * l_scale * 2**requant_shift * y_int + bias``.

ADC resolution (:func:`adc_plan`): every ``MVM`` keeps the compiler's ``adc_bits`` capped at the run's ADC
resolution (never above the configuration's) and gets the smallest ``adc_shift`` for which *every* column sum its window can produce fits the ADC without saturating:
with binary inputs a column sum lies in ``[sum of the column's negative weights, sum of its positive
weights]``, so the rule is a bound computed from the programmed weights, independent of the data (and equal to
0 when ``adc_bits`` is lossless for the window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from cimisa.config import HwConfig
from cimisa.isa import Command, Opcode

__all__ = ["act_scale", "quantize_act", "stage1_int", "choose_requant_shift", "adc_shift_for", "adc_plan",
           "CimExecutor", "CimLinear", "QuantRefLinear", "int_monarch_product", "MatmulQuantInfo"]


def _qmax(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def act_scale(absmax: float, input_bits: int) -> float:
    """Return the per-tensor symmetric scale mapping ``absmax`` to the largest ``input_bits``-bit code."""
    absmax = float(absmax)
    if not math.isfinite(absmax) or absmax <= 0:
        return 1.0
    return absmax / _qmax(input_bits)


def quantize_act(x: torch.Tensor, scale: float, input_bits: int) -> np.ndarray:
    """Return ``clip(round(x / scale))`` as int64 numpy (symmetric, ``input_bits`` bits, -qmax..qmax)."""
    q = _qmax(input_bits)
    xq = torch.clamp(torch.round(x.detach().to(torch.float64) / scale), -q, q)
    return xq.to(torch.int64).numpy()


def _as_np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def stage1_int(R_int: np.ndarray, x_q: np.ndarray) -> np.ndarray:
    """Return the exact stage-1 (R) integer product ``(B, k*q)`` of inputs ``x_q`` ``(B, in)``, fly layout."""
    R = _as_np(R_int).astype(np.int64)
    k, q, p = R.shape
    x = np.asarray(x_q, dtype=np.int64)
    b = x.shape[0]
    xp = np.zeros((b, k * p), dtype=np.int64)
    xp[:, :x.shape[1]] = x
    return np.einsum("kqp,bkp->bkq", R, xp.reshape(b, k, p)).reshape(b, k * q)


def int_monarch_product(R_int, L_int, x_q: np.ndarray, shift: int, input_bits: int) -> np.ndarray:
    """Return the exact integer Monarch product the CIM program computes, ``(B, l*s)`` (untruncated).

    Stage 1 exact, requantised (round half up, right by ``shift``, saturate to ``input_bits``), stage 2 exact.
    """
    L = _as_np(L_int).astype(np.int64)
    l, s, r = L.shape
    out1 = stage1_int(R_int, x_q)
    if shift:
        out1 = (out1 + (1 << (shift - 1))) >> shift
    q = _qmax(input_bits)
    out1 = np.clip(out1, -q - 1, q)
    b = out1.shape[0]
    o = out1.reshape(b, r, l).transpose(0, 2, 1)            # [b, a, c] = out1[c*l + a]
    out2 = np.einsum("atc,bac->bat", L, o)                  # (B, l, s)
    return out2.transpose(0, 2, 1).reshape(b, s * l)        # y[t*l + a] = out2[a, t]


def choose_requant_shift(R_int, x_q: np.ndarray, input_bits: int, percentile: float = 100.0) -> int:
    """Return the smallest shift for which the ``percentile``-th percentile of the calibration stage-1 magnitudes
    does not saturate after rounding (100: no calibration value saturates)."""
    x_q = np.asarray(x_q)
    if x_q.size == 0:
        return 0
    h = np.abs(stage1_int(R_int, x_q))
    m = int(h.max()) if percentile >= 100 else int(math.ceil(np.percentile(h, percentile)))
    q = _qmax(input_bits)
    s = 0
    while s < 31 and ((m + ((1 << (s - 1)) if s else 0)) >> s) > q:
        s += 1
    return s


def adc_shift_for(colmin: int, colmax: int, adc_bits: int, max_shift: int = 31) -> int:
    """Return the smallest ``adc_shift`` with ``floor(v / 2**shift)`` in the ADC range for ``colmin..colmax``."""
    lo, hi = -(1 << (adc_bits - 1)), (1 << (adc_bits - 1)) - 1
    s = 0
    while s < max_shift and ((colmax >> s) > hi or (colmin >> s) < lo):
        s += 1
    return s


def _lossless_bits(nrows: int, weight_bits: int) -> int:
    lo, hi = -(1 << (weight_bits - 1)) * nrows, ((1 << (weight_bits - 1)) - 1) * nrows
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


ADC_RULES = ("bound", "calib")


def adc_plan(commands, arrays, cfg: HwConfig, adc_bits: int | None = None, rule: str = "bound",
             observed: dict | None = None) -> tuple[Command, ...]:
    """Return ``commands`` with every MVM's ``adc_bits``/``adc_shift`` set by ``rule`` (module docstring).

    The resolution is ``min(lossless bits of the window's rows, cfg.adc_bits, adc_bits)``. ``rule="bound"``
    takes the shift from the programmed weights (no column sum can saturate); ``rule="calib"`` from the
    column-sum range ``observed[i]`` of MVM ``i`` on calibration data (rarer values saturate).
    ``arrays(index)`` returns the programmed integer weights of an array.
    """
    if rule not in ADC_RULES:
        raise ValueError(f"ADC rule must be one of {ADC_RULES}, not {rule!r}")
    cap = cfg.adc_bits if adc_bits is None else min(int(adc_bits), cfg.adc_bits)
    max_shift = (1 << max(1, cfg.lossless_adc_bits.bit_length())) - 1
    out = []
    for i, c in enumerate(commands):
        if c.op is Opcode.MVM:
            a = c.args
            bits = max(1, min(_lossless_bits(a["nrows"], cfg.weight_bits), cap))
            w = arrays(a["array"])[a["row0"]:a["row0"] + a["nrows"], a["col0"]:a["col0"] + a["ncols"]]
            colmax = int(np.clip(w, 0, None).sum(axis=0).max(initial=0))
            colmin = int(np.clip(w, None, 0).sum(axis=0).min(initial=0))
            if rule == "calib" and observed is not None and i in observed:
                lo_o, hi_o = observed[i]
                colmin, colmax = max(colmin, math.floor(lo_o)), min(colmax, math.ceil(hi_o))
            shift = adc_shift_for(colmin, colmax, bits, max_shift)
            c = Command(Opcode.MVM, dict(a, adc_bits=bits, adc_shift=shift))
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
        self.raw = {name: (prog, tuple(c for c in prog.commands if c.op in (Opcode.MVM, Opcode.REQUANT)))
                    for name, prog in compiled.programs.items()}
        self.programs = {}
        self.adc_shifts = {}
        self.plan_adcs()
        self.calls = 0
        self.tokens = 0
        self.mvms = 0

    def plan_adcs(self, observed: dict | None = None) -> None:
        """(Re)compute every MVM's ADC setting with this executor's rule (``observed``: per matmul, per MVM
        index, the calibration column-sum range, from :meth:`observe_adcs`)."""
        arrays = self.machine.state.array
        for name, (prog, cmds) in self.raw.items():
            planned = adc_plan(cmds, arrays, self.cfg, self.adc_bits, self.adc_rule,
                               (observed or {}).get(name))
            self.programs[name] = (prog, planned)
            self.adc_shifts[name] = tuple(c.args["adc_shift"] for c in planned if c.op is Opcode.MVM)

    def observe_adcs(self, inputs: dict[str, np.ndarray]) -> dict:
        """Return the column-sum range of every MVM on calibration inputs ``{name: x_q (B, in)}``.

        The pass runs each program with lossless ADCs outside the command checks (a calibration of the analog
        front end, not part of the stream); it needs a machine with ``observe`` support
        (:class:`sw_model.noise.NoisyMachine`).
        """
        m = self.machine
        if not hasattr(m, "observe"):
            raise TypeError("ADC calibration needs a sw_model.noise.NoisyMachine")
        mvm = m.actions[Opcode.MVM]
        rq = m.actions[Opcode.REQUANT]
        observed: dict = {}
        m.observe = {}
        try:
            for name, x_q in inputs.items():
                prog, cmds = self.raw[name]
                x_q = np.asarray(x_q, dtype=np.int64)
                st = m.state
                m.set_batch(x_q.shape[0])
                st.inbuf[prog.in_addr:prog.in_addr + x_q.shape[1]] = x_q.T
                m.observe = {}
                for i, c in enumerate(cmds):
                    if c.op is Opcode.MVM:
                        m.observe_key = i
                        mvm(st, **dict(c.args, adc_bits=_lossless_bits(c.args["nrows"], self.cfg.weight_bits),
                                       adc_shift=0))
                    else:
                        rq(st, **c.args)
                observed[name] = dict(m.observe)
        finally:
            m.observe = None
            m.observe_key = None
        return observed

    def run_int_per_vector(self, name: str, x_q: np.ndarray) -> np.ndarray:
        """Return :meth:`run_int`'s outputs computed one input vector at a time on 1-D buffers (the unbatched
        machine; slow, for checking that batching changes nothing)."""
        prog, cmds = self.programs[name]
        m, st = self.machine, self.machine.state
        rows = []
        for x in np.asarray(x_q, dtype=np.int64):
            m.set_batch(None)
            st.inbuf[prog.in_addr:prog.in_addr + x.shape[0]] = x
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
            y_int = int_monarch_product(self.R_int, self.L_int, x_q, self.info.requant_shift,
                                        self.input_bits)[:, :self.out_features]
        y = torch.from_numpy(y_int.astype(np.float64) * self.info.y_scale).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


def with_info(info: MatmulQuantInfo, **changes) -> MatmulQuantInfo:
    """Return ``info`` with ``changes`` applied."""
    return replace(info, **changes)
