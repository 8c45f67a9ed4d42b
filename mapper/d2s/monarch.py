"""The Monarch factorisation ``M = P L P R P`` in the layout of HazyResearch fly's ``MonarchLinear``.

For an ``(out_features, in_features)`` matrix and ``nblocks = k``::

    in_blk  = ceil(in_features / k),   in_ext  = k * in_blk
    out_blk = ceil(out_features / k),  out_ext = k * out_blk
    in_ext <  out_ext:  R (k, in_blk, in_blk),   L (k, out_blk, in_blk)
    in_ext >= out_ext:  R (k, out_blk, in_blk),  L (k, out_blk, out_blk)

With ``R: (k, q, p)`` and ``L: (l, s, r)`` (``l == k``, ``l * r == k * q``), the input ``x`` padded with zeros
to ``in_ext`` is multiplied as (fly's ``blockdiag_butterfly_multiply``)::

    out1[i*q + j] = sum_m R[i, j, m] * x[i*p + m]          # stage 1: contiguous blocks
    out2[a, t]    = sum_c L[a, t, c] * out1[c*l + a]       # stage 2: input read with stride l
    y[t*l + a]    = out2[a, t]                             # output written with stride l, truncated to out

Padding rule: inputs beyond ``in_features`` are zero and outputs beyond ``out_features`` are dropped, so the
factors seen by the hardware always have the full ``(k, ., .)`` block shapes above.
"""

from __future__ import annotations

import torch
from torch import nn

from cimisa.errors import ShapeError
from compiler.geometry import MonarchShape, monarch_shape

__all__ = ["MonarchShape", "monarch_shape", "monarch_forward", "monarch_to_dense", "MonarchLinear"]


def _check_factors(R: torch.Tensor, L: torch.Tensor, out_features: int, in_features: int) -> None:
    if R.dim() != 3 or L.dim() != 3:
        raise ShapeError(f"R and L must be 3-D (nblocks, rows, cols), not {tuple(R.shape)} and {tuple(L.shape)}")
    k, q, p = R.shape
    l, s, r = L.shape
    if l != k or l * r != k * q:
        raise ShapeError(f"R {tuple(R.shape)} and L {tuple(L.shape)} do not chain (need L.shape[0] == "
                         f"R.shape[0] and L.shape[0] * L.shape[2] == R.shape[0] * R.shape[1])")
    if k * p < in_features or l * s < out_features:
        raise ShapeError(f"factors R {tuple(R.shape)}, L {tuple(L.shape)} are too small for a "
                         f"{out_features}x{in_features} matrix")


def monarch_forward(x: torch.Tensor, R: torch.Tensor, L: torch.Tensor, out_features: int) -> torch.Tensor:
    """Multiply ``x`` (any batch shape, last dimension ``in_features <= k * p``) by the Monarch matrix ``(R, L)``."""
    k, q, p = R.shape
    l, s, r = L.shape
    batch_shape = x.shape[:-1]
    n = x.shape[-1]
    x = x.reshape(-1, n)
    if n < k * p:
        x = nn.functional.pad(x, (0, k * p - n))
    b = x.shape[0]
    xb = x.reshape(b, k, p).transpose(0, 1)                       # (k, b, p)
    out1 = torch.bmm(xb, R.transpose(1, 2))                       # (k, b, q)
    out1 = out1.transpose(0, 1).reshape(b, r, l).permute(2, 0, 1)  # (l, b, r): out1[c*l + a] -> [a, :, c]
    out2 = torch.bmm(out1, L.transpose(1, 2))                     # (l, b, s)
    y = out2.permute(1, 2, 0).reshape(b, s * l)                   # y[t*l + a] = out2[a, t]
    return y[:, :out_features].reshape(*batch_shape, out_features)


def monarch_to_dense(R: torch.Tensor, L: torch.Tensor, out_features: int, in_features: int) -> torch.Tensor:
    """Return the dense ``(out_features, in_features)`` matrix of the Monarch factors ``(R, L)``.

    ``M[t*l + a, :] = sum_c L[a, t, c] * Rbig[c*l + a, :]`` with ``Rbig`` the block-diagonal stage-1 matrix.
    """
    _check_factors(R, L, out_features, in_features)
    k, q, p = R.shape
    l, s, r = L.shape
    rbig = torch.block_diag(*R.unbind(0))  # (k*q, k*p)
    rsel = rbig.reshape(r, l, k * p).transpose(0, 1)  # [a, c, :] = Rbig[c*l + a, :]
    out = torch.bmm(L, rsel)  # (l, s, k*p): out[a, t] = row t*l + a
    return out.transpose(0, 1).reshape(l * s, k * p)[:out_features, :in_features]


def _monarch_to_dense_via_forward(R: torch.Tensor, L: torch.Tensor, out_features: int,
                                  in_features: int) -> torch.Tensor:
    """Return the dense matrix by multiplying the identity (the definition; used by tests)."""
    _check_factors(R, L, out_features, in_features)
    eye = torch.eye(in_features, dtype=R.dtype, device=R.device)
    return monarch_forward(eye, R, L, out_features).t().contiguous()


class MonarchLinear(nn.Module):
    """A linear layer ``y = M x + bias`` whose weight ``M`` is the Monarch product of ``R`` and ``L``.

    Parameters
    ----------
    R, L : the factors, shaped as :func:`monarch_shape` gives them.
    out_features, in_features : the logical (unpadded) shape.
    bias : optional ``(out_features,)`` bias.

    ``dense_kernel`` (attribute, default False) computes the same product through the dense weight
    (``F.linear``), which is faster on CPUs for few blocks and many tokens (used during calibration).
    """

    dense_kernel: bool = False

    def __init__(self, R: torch.Tensor, L: torch.Tensor, out_features: int, in_features: int,
                 bias: torch.Tensor | None = None):
        super().__init__()
        _check_factors(R, L, out_features, in_features)
        self.out_features = int(out_features)
        self.in_features = int(in_features)
        self.nblocks = int(R.shape[0])
        self.R = nn.Parameter(R.detach().clone())
        self.L = nn.Parameter(L.detach().clone())
        if bias is not None:
            if tuple(bias.shape) != (out_features,):
                raise ShapeError(f"bias must have shape ({out_features},), not {tuple(bias.shape)}")
            self.bias = nn.Parameter(bias.detach().clone())
        else:
            self.register_parameter("bias", None)

    @classmethod
    def empty(cls, out_features: int, in_features: int, nblocks: int, bias: bool = True,
              dtype: torch.dtype = torch.float32) -> MonarchLinear:
        """Return a zero-initialised layer with the shapes of :func:`monarch_shape`."""
        shp = monarch_shape(out_features, in_features, nblocks)
        return cls(torch.zeros(shp.r_shape, dtype=dtype), torch.zeros(shp.l_shape, dtype=dtype), out_features,
                   in_features, torch.zeros(out_features, dtype=dtype) if bias else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense_kernel:
            if torch.is_grad_enabled():
                return nn.functional.linear(x, self.dense_weight(), self.bias)
            key = (self.R._version, self.L._version, self.R.data_ptr(), self.L.data_ptr())
            cache = self.__dict__.get("_dense_cache")
            if cache is None or cache[0] != key:
                cache = (key, self.dense_weight().detach())
                self.__dict__["_dense_cache"] = cache
            return nn.functional.linear(x, cache[1], self.bias)
        y = monarch_forward(x, self.R, self.L, self.out_features)
        if self.bias is not None:
            y = y + self.bias
        return y

    def dense_weight(self) -> torch.Tensor:
        """Return the dense ``(out_features, in_features)`` weight (the product of the factors)."""
        return monarch_to_dense(self.R, self.L, self.out_features, self.in_features)

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight, for code that reads ``.weight`` (e.g. dtype or device checks)."""
        return self.dense_weight()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, nblocks={self.nblocks}, "
                f"R={tuple(self.R.shape)}, L={tuple(self.L.shape)}, bias={self.bias is not None}")
