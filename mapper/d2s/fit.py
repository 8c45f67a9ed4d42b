"""Layer-wise fitting of one matmul: the Monarch factors (and bias) that best map calibration inputs to targets.

The objective depends on the data only through ``C = E[x x^T]`` and ``E[y x^T]`` (bias folded in as a constant
input) and is minimised exactly in alternation: all L blocks and the bias at once (independent least squares per
block), then each R block in turn (a Kronecker-separable least squares, solved in closed form).
"""

from __future__ import annotations

import torch

from mapper.d2s.monarch import monarch_to_dense
from mapper.d2s.project import single_thread

__all__ = ["fit_monarch", "objective"]


def fit_monarch(R: torch.Tensor, L: torch.Tensor, bias: torch.Tensor | None, C: torch.Tensor, Y: torch.Tensor,
                sweeps: int = 12, ridge: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Minimise ``tr(Ma C Ma^T) - 2 tr(Ma Y^T)`` over Monarch ``(R, L)`` and the bias, ``Ma = [M, b]``.

    ``C`` is the ``(in+1, in+1)`` second moment of the inputs with a trailing constant 1, ``Y`` the
    ``(out, in+1)`` cross moment of the targets with the same inputs. Each sweep solves all L blocks plus the
    bias exactly (one small least-squares problem per L block), then each R block in turn: with the rest fixed,
    block ``i`` enters as ``A_i R_i`` (``A_i`` = the stage-2 columns reading it), so its optimum is
    ``(A_i^T A_i)^-1 A_i^T Q_i C_ii^-1`` in closed form. Every solve is damped by ``ridge`` times its mean
    diagonal. Block sparsity is used throughout (no dense ``out x in`` products). A matmul without a bias keeps
    none.
    """
    with single_thread():
        return _fit_monarch(R, L, bias, C, Y, sweeps, ridge)


def _fit_monarch(R, L, bias, C, Y, sweeps, ridge):
    dt = torch.float64
    k, q, p = R.shape
    l, s, r = L.shape
    n = C.shape[0] - 1
    out = Y.shape[0]
    in_ext, out_ext, kq = k * p, l * s, k * q
    has_bias = bias is not None
    C = C.to(dt)
    Y = Y.to(dt)
    Cx = torch.zeros(in_ext, in_ext, dtype=dt)
    Cx[:n, :n] = C[:n, :n]
    mu = torch.zeros(in_ext, dtype=dt)
    mu[:n] = C[n, :n]
    count = C[n, n]
    Yx = torch.zeros(out_ext, in_ext, dtype=dt)
    Yx[:out, :n] = Y[:, :n]
    yb = torch.zeros(out_ext, dtype=dt)
    yb[:out] = Y[:, n]
    R = R.to(dt).clone()
    L = L.to(dt).clone()
    b = torch.zeros(out_ext, dtype=dt)
    if has_bias:
        b[:out] = bias.to(dt)

    def damp(G: torch.Tensor) -> torch.Tensor:
        d = G.diagonal(dim1=-2, dim2=-1).mean(-1)
        d = torch.where(d > 0, d, torch.ones_like(d))
        return G + (ridge * d)[..., None, None] * torch.eye(G.shape[-1], dtype=dt)

    idx_a = torch.arange(kq).reshape(r, l).t()  # (l, r): stage-1 output c*l + a feeds L block a, column c
    rows_a = torch.arange(out_ext).reshape(s, l).t()  # (l, s): output t*l + a comes from L block a, row t
    Cb = Cx.reshape(k, p, in_ext)
    Cii = torch.stack([Cx[i * p:(i + 1) * p, i * p:(i + 1) * p] for i in range(k)])
    Cii_damped = damp(Cii)

    def a_transpose(V: torch.Tensor) -> torch.Tensor:
        """Return ``A^T V`` for ``V (out_ext, w)``; rows indexed by stage-1 output ``c*l + a``."""
        Va = V[rows_a]  # (l, s, w)
        AtV = torch.bmm(L.transpose(1, 2), Va)  # (l, r, w)
        res = torch.empty(kq, V.shape[1], dtype=dt)
        res[idx_a.reshape(-1)] = AtV.reshape(l * r, -1)
        return res

    for _ in range(sweeps):
        RC = torch.bmm(R, Cb).reshape(kq, in_ext)  # Rbig @ Cx
        # L-step (with bias): block a sees h_a = Rbig[idx_a] x.
        S = torch.einsum("fjm,jqm->fjq", RC.reshape(kq, k, p), R).reshape(kq, kq)  # Rbig Cx Rbig^T
        Rmu = torch.einsum("iqp,ip->iq", R, mu.reshape(k, p)).reshape(kq)
        YR = torch.einsum("ojm,jqm->ojq", Yx.reshape(out_ext, k, p), R).reshape(out_ext, kq)
        G = torch.zeros(l, r + 1, r + 1, dtype=dt)
        G[:, :r, :r] = S[idx_a[:, :, None], idx_a[:, None, :]]
        G[:, :r, r] = Rmu[idx_a]
        G[:, r, :r] = Rmu[idx_a]
        G[:, r, r] = count
        T = torch.zeros(l, s, r + 1, dtype=dt)
        T[:, :, :r] = YR[rows_a[:, :, None], idx_a[:, None, :]]
        T[:, :, r] = yb[rows_a]
        if not has_bias:
            G, T = G[:, :r, :r], T[:, :, :r]
        sol = torch.linalg.solve(damp(G), T.transpose(1, 2)).transpose(1, 2)  # (l, s, r[+1])
        L = sol[:, :, :r].contiguous()
        if has_bias:
            b = torch.zeros(out_ext, dtype=dt)
            b[rows_a] = sol[:, :, r]
        # R-step, block by block (Gauss-Seidel).
        LtL = torch.bmm(L.transpose(1, 2), L)  # (l, r, r)
        AtA = torch.zeros(kq, kq, dtype=dt)
        AtA[idx_a[:, :, None], idx_a[:, None, :]] = LtL
        AtY = a_transpose(Yx - b[:, None] * mu[None, :])  # (kq, in_ext)
        AtA_blocks = torch.stack([AtA[i * q:(i + 1) * q, i * q:(i + 1) * q] for i in range(k)])
        AtA_damped = damp(AtA_blocks)
        for i in range(k):
            fi = slice(i * q, (i + 1) * q)
            ci = slice(i * p, (i + 1) * p)
            rhs = AtY[fi, ci] - AtA[fi] @ RC[:, ci] + AtA_blocks[i] @ R[i] @ Cii[i]
            left = torch.linalg.solve(AtA_damped[i], rhs)  # (q, p)
            new = torch.linalg.solve(Cii_damped[i], left.t()).t()  # left @ Cii^-1 (symmetric)
            R[i] = new
            RC[fi] = new @ Cb[i]
    if in_ext > n:  # padded inputs never carry signal: keep their R columns at zero
        Rflat = R.permute(1, 0, 2).reshape(q, in_ext)
        Rflat[:, n:] = 0
        R = Rflat.reshape(q, k, p).permute(1, 0, 2).contiguous()
    new_bias = b[:out].clone() if has_bias else None
    return R, L, new_bias


def objective(R, L, bias, C, Y) -> float:
    """Return ``tr(Ma C Ma^T) - 2 tr(Ma Y^T)`` (for tests and logging)."""
    n = C.shape[0] - 1
    M = monarch_to_dense(R.double(), L.double(), Y.shape[0], n)
    b = bias.double() if bias is not None else torch.zeros(Y.shape[0], dtype=torch.float64)
    Ma = torch.cat([M, b[:, None]], 1)
    return float((Ma @ C * Ma).sum() - 2 * (Ma * Y).sum())
