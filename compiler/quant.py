"""Integer Monarch factors and the exact integer product a compiled stream must reproduce.

Weights are quantised symmetrically per factor (one scale for R, one for L): ``R ~= r_scale * R_q`` with
``R_q`` in the signed ``weight_bits`` range. On the tile a Monarch matmul runs in two stages joined by a REQUANT
(:mod:`cimisa.semantics`)::

    h   = stage1(R_q, x_q)                              # int32 accumulators, exact with lossless ADCs
    h_q = clip((h + 2**(shift-1)) >> shift, input range)  # REQUANT (round half up, saturate)
    y   = stage2(L_q, h_q)                              # scattered with stride nblocks, truncated

:func:`monarch_int_product` computes exactly this in numpy (REQUANT and the accumulator wrap are
:mod:`cimisa.rules`), the one exact integer Monarch product of the kit: :func:`reference_int_product` applies it to
a :class:`QuantizedMonarch`, and the end-to-end executor's quantised reference layers call it too. Vectors are
columns: inputs are ``(n,)`` or ``(n, B)`` with the batch on the trailing axis, as in the machine's buffers. The
tests run generated streams on ``sw_model`` and compare bit for bit. The ``linear`` strategy maps the dense matrix
of the Monarch factors (:attr:`QuantizedMonarch.W`, one stage, no REQUANT).

Requantisation shift rule (:func:`default_requant_shift`): the stage-1 accumulator of output ``j`` is
``h_j = sum_m R_q[j, m] x_m``. Inputs are modelled as independent with standard deviation ``qmax / 4``
(``qmax = 2**(input_bits-1) - 1``: a calibrated activation uses about a quarter of the range at one sigma),
so ``std(h_j) = qmax/4 * ||R_q[j, :]||``. The shift is the smallest one that maps ``4 * max_j std(h_j)`` into
``qmax``, so at most ~1 in 16,000 values saturate. :func:`calibrate_requant_shift` instead uses real inputs
(the largest |h| over samples, or a percentile of them: :func:`stage1_requant_shift`, the smallest shift by
:func:`cimisa.rules.requant_shift_for`), and ``mode="worst"`` the guaranteed no-saturation shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cimisa import rules
from cimisa.errors import ShapeError

__all__ = ["QuantizedMonarch", "quantize_monarch", "quantize_dense", "quantize_tensor", "reference_int_product",
           "monarch_int_product", "stage1_int", "stage2_int", "default_requant_shift", "calibrate_requant_shift",
           "stage1_requant_shift", "float_product"]


def quantize_tensor(a: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    """Return ``(q, scale)``: ``a ~= scale * q`` with ``q`` int64 in the symmetric ``bits``-bit range."""
    a = np.asarray(a, dtype=np.float64)
    qmax = rules.signed_range(bits)[1]
    amax = float(np.max(np.abs(a))) if a.size else 0.0
    scale = amax / qmax if amax > 0 else 1.0
    q = np.clip(np.rint(a / scale), -qmax, qmax).astype(np.int64)
    return q, scale


@dataclass(frozen=True, eq=False)
class QuantizedMonarch:
    """Integer factors of one matmul: ``R`` (k, q, p) and ``L`` (k, s, r), int64 in the weight range.

    ``W`` is set only for the ``linear`` strategy: the dense ``(out, in)`` integer matrix (``w_scale``).
    """

    name: str
    in_features: int
    out_features: int
    R: np.ndarray
    L: np.ndarray
    r_scale: float
    l_scale: float
    W: np.ndarray | None = None
    w_scale: float = 1.0

    @property
    def nblocks(self) -> int:
        """The number of blocks ``k``."""
        return int(self.R.shape[0])

    @property
    def in_ext(self) -> int:
        """Padded input width (``k * p``; ``in_features`` for the dense form)."""
        if self.W is not None:
            return self.in_features
        return int(self.R.shape[0] * self.R.shape[2])

    @property
    def mid_len(self) -> int:
        """Length of the stage-1 output (``k * q``)."""
        return int(self.R.shape[0] * self.R.shape[1])

    @property
    def out_ext(self) -> int:
        """Padded output width (``k * s``)."""
        if self.W is not None:
            return self.out_features
        return int(self.L.shape[0] * self.L.shape[1])

    def __repr__(self) -> str:
        dense = f", W={self.W.shape}" if self.W is not None else ""
        return (f"QuantizedMonarch({self.name!r}, out={self.out_features}, in={self.in_features}, "
                f"R={self.R.shape}, L={self.L.shape}{dense})")


def _as_np(t) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64)


def quantize_monarch(name: str, R, L, in_features: int, out_features: int, weight_bits: int) -> QuantizedMonarch:
    """Quantise float Monarch factors (numpy or torch) symmetrically to ``weight_bits`` (one scale per factor)."""
    R = _as_np(R)
    L = _as_np(L)
    if R.ndim != 3 or L.ndim != 3 or L.shape[0] != R.shape[0] or L.shape[0] * L.shape[2] != R.shape[0] * R.shape[1]:
        raise ShapeError(f"{name}: factors R {R.shape} and L {L.shape} do not chain")
    if R.shape[0] * R.shape[2] < in_features or L.shape[0] * L.shape[1] < out_features:
        raise ShapeError(f"{name}: factors R {R.shape}, L {L.shape} too small for {out_features}x{in_features}")
    Rq, rs = quantize_tensor(R, weight_bits)
    Lq, ls = quantize_tensor(L, weight_bits)
    return QuantizedMonarch(name, int(in_features), int(out_features), Rq, Lq, rs, ls)


def quantize_dense(q: QuantizedMonarch, R, L, weight_bits: int) -> QuantizedMonarch:
    """Return ``q`` with the dense matrix of the float factors, quantised, attached as ``W`` (linear baseline)."""
    W = float_dense(_as_np(R), _as_np(L), q.in_features, q.out_features)
    Wq, ws = quantize_tensor(W, weight_bits)
    return QuantizedMonarch(q.name, q.in_features, q.out_features, q.R, q.L, q.r_scale, q.l_scale, Wq, ws)


def stage1_int(R: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return the stage-1 accumulators ``h[i*q + j] = sum_m R[i, j, m] x[i*p + m]`` (x padded to ``k*p``), wrapped.

    ``x`` is ``(n,)`` or ``(n, B)``; the result ``(k*q,)`` or ``(k*q, B)``.
    """
    k, q, p = R.shape
    x = np.asarray(x, dtype=np.int64)
    batch = x.shape[1:]
    xp = np.zeros((k * p,) + batch, dtype=np.int64)
    xp[:min(x.shape[0], k * p)] = x[:k * p]
    xb = xp.reshape((k, p) + batch)
    h = np.einsum("ijm,im...->ij...", np.asarray(R, dtype=np.int64), xb)
    return rules.wrap_acc_inplace(h.reshape((k * q,) + batch))


def stage2_int(L: np.ndarray, z: np.ndarray, out_features: int | None = None) -> np.ndarray:
    """Return the stage-2 accumulators ``y[t*l + a] = sum_c L[a, t, c] z[c*l + a]`` (the first ``out_features``;
    all ``l*s`` for ``None``), wrapped. ``z`` is ``(r*l,)`` or ``(r*l, B)``."""
    l, s, r = L.shape
    batch = z.shape[1:]
    zz = z.reshape((r, l) + batch)                      # out1[c*l + a] = zz[c, a]
    out2 = np.einsum("atc,ca...->at...", np.asarray(L, dtype=np.int64), zz)   # (l, s, ...)
    y = np.moveaxis(out2, 0, 1).reshape((s * l,) + batch)          # y[t*l + a] = out2[a, t]
    return rules.wrap_acc(y[:out_features])


def monarch_int_product(R: np.ndarray, L: np.ndarray, x: np.ndarray, shift: int, input_bits: int,
                        out_features: int | None = None, input_range: tuple[int, int] | None = None) -> np.ndarray:
    """Return the exact integer Monarch product a compiled stream computes with lossless ADCs: stage 1, REQUANT
    (:func:`cimisa.rules.requant`), stage 2, every accumulator wrapped (:func:`cimisa.rules.wrap_acc`).

    ``x`` is ``(n,)`` or ``(n, B)`` (zero-padded to ``k*p``); the result has the first ``out_features`` outputs
    (all ``l*s`` for ``None``) on the leading axis. ``input_range``: the format's input range that REQUANT
    saturates to (``hw.fmt.input_range``, symmetric for ``sign-magnitude`` inputs); None: ``input_bits``'s.

    >>> R = np.array([[[1, 2]], [[3, -1]]]); L = np.array([[[2]], [[1]]])   # 2 blocks: R (2, 1, 2), L (2, 1, 1)
    >>> monarch_int_product(R, L, np.array([1, 1, 2, 0]), 0, 8).tolist()    # h = [3, 6]; y = [2*h[0], 1*h[1]]
    [6, 6]
    >>> monarch_int_product(R, L, np.array([1, 1, 2, 0]), 1, 8).tolist()    # REQUANT by 1: h_q = [2, 3]
    [4, 3]
    """
    return stage2_int(L, rules.requant(stage1_int(R, x), shift, input_bits, input_range), out_features)


def reference_int_product(q: QuantizedMonarch, x_q: np.ndarray, shift: int, input_bits: int,
                          input_range: tuple[int, int] | None = None) -> np.ndarray:
    """Return the exact integer output the compiled stream produces with lossless ADCs.

    ``x_q`` has shape ``(n,)`` or ``(n, B)`` with ``n <= in_ext`` (zero-padded). For a linear-strategy
    :class:`QuantizedMonarch` (``W`` set) this is ``W @ x`` and ``shift`` is ignored. ``input_range``: as
    :func:`monarch_int_product`.
    """
    x = np.asarray(x_q, dtype=np.int64)
    if q.W is not None:
        xp = np.zeros((q.in_features,) + x.shape[1:], dtype=np.int64)
        xp[:min(x.shape[0], q.in_features)] = x[:q.in_features]
        return rules.wrap_acc(np.tensordot(q.W.astype(np.int64), xp, axes=(1, 0)))
    return monarch_int_product(q.R, q.L, x, shift, input_bits, q.out_features, input_range)


def float_dense(R: np.ndarray, L: np.ndarray, in_features: int, out_features: int) -> np.ndarray:
    """Return the dense float ``(out, in)`` matrix of Monarch factors (numpy)."""
    k, q, p = R.shape
    eye = np.eye(k * p)
    h = np.einsum("ijm,im...->ij...", R, eye.reshape(k, p, k * p)).reshape(k * q, k * p)
    l, s, r = L.shape
    out2 = np.einsum("atc,ca...->at...", L, h.reshape(r, l, k * p))
    y = np.moveaxis(out2, 0, 1).reshape(s * l, k * p)
    return y[:out_features, :in_features]


def float_product(q: QuantizedMonarch, x_q: np.ndarray, shift: int) -> np.ndarray:
    """Return the ideal (no ADC loss, no rounding) product in the integer output's units.

    The stream's ``y`` approximates ``L_q @ (R_q @ x) / 2**shift`` (Monarch) or ``W_q @ x`` (linear); this is that
    value in float64, the yardstick for the ADC-resolution error study.
    """
    x = np.asarray(x_q, dtype=np.float64)
    if q.W is not None:
        xp = np.zeros((q.in_features,) + x.shape[1:])
        xp[:min(x.shape[0], q.in_features)] = x[:q.in_features]
        return np.tensordot(q.W.astype(np.float64), xp, axes=(1, 0))
    k, qq, p = q.R.shape
    xp = np.zeros((k * p,) + x.shape[1:])
    xp[:min(x.shape[0], k * p)] = x[:k * p]
    h = np.einsum("ijm,im...->ij...", q.R.astype(np.float64), xp.reshape((k, p) + x.shape[1:]))
    h = h.reshape((k * qq,) + x.shape[1:]) / float(1 << shift)
    l, s, r = q.L.shape
    out2 = np.einsum("atc,ca...->at...", q.L.astype(np.float64), h.reshape((r, l) + x.shape[1:]))
    return np.moveaxis(out2, 0, 1).reshape((s * l,) + x.shape[1:])[:q.out_features]


def default_requant_shift(q: QuantizedMonarch, input_bits: int, mode: str = "estimate") -> int:
    """Return the REQUANT shift for ``q`` by the documented rule (module docstring).

    ``mode="estimate"``: ``4 * (qmax/4) * max_j ||R_q[j, :]||`` fits ``qmax``; ``mode="worst"``: the largest
    possible ``|h|`` (``max_j sum_m |R_q[j, m]| * 2**(input_bits-1)``) fits. Linear (dense) matmuls return 0.
    """
    if q.W is not None:
        return 0
    qmax = rules.signed_range(input_bits)[1]
    R = q.R.astype(np.float64)
    if mode == "estimate":
        need = qmax * float(np.sqrt((R ** 2).sum(axis=2)).max())
    elif mode == "worst":
        need = float(np.abs(R).sum(axis=2).max()) * (1 << (input_bits - 1))
    else:
        raise ValueError(f"mode must be 'estimate' or 'worst', not {mode!r}")
    if need <= qmax:
        return 0
    return max(0, math.ceil(math.log2(need / qmax)))


def stage1_requant_shift(R: np.ndarray, x_samples: np.ndarray, input_bits: int, percentile: float = 100.0) -> int:
    """Return the smallest REQUANT shift with which the ``percentile``-th percentile of the stage-1 magnitudes of
    ``x_samples`` (n,) or (n, B) does not saturate after rounding (100: no sample saturates; no samples: 0)."""
    h = np.abs(stage1_int(R, x_samples))
    if not h.size:
        return 0
    amax = int(h.max()) if percentile >= 100 else int(math.ceil(np.percentile(h, percentile)))
    return rules.requant_shift_for(amax, input_bits)


def calibrate_requant_shift(q: QuantizedMonarch, x_samples: np.ndarray, input_bits: int,
                            percentile: float = 100.0) -> int:
    """Return the smallest shift with which no stage-1 accumulator of ``x_samples`` (n,) or (n, B) saturates
    (:func:`stage1_requant_shift`; ``percentile`` < 100 lets the rarer ones saturate). Linear matmuls: 0."""
    if q.W is not None:
        return 0
    return stage1_requant_shift(q.R, x_samples, input_bits, percentile)
