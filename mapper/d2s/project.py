"""Optimal (Frobenius) projection of a dense matrix onto the Monarch factors of :mod:`mapper.d2s.monarch`.

With ``R: (k, q, p)`` and ``L: (l, s, r)``, entry ``M[t*l + a, i*p + m]`` of the Monarch matrix is
``sum_c L[a, t, c] * R[i, c*l + a - i*q, m]`` over the stage-2 columns ``c`` that connect L block ``a`` to R block
``i`` (``i*q <= c*l + a < (i+1)*q``). Each ``(a, i)`` slice ``W[{t*l + a}, {i*p + m}]`` is therefore a sum of as
many outer products as there are connecting ``c``, and no factor entry is shared between slices: the best
approximation is a truncated SVD of every slice independently (Eckart-Young), with rank 1 when
``k = sqrt(n)``, a higher rank when ``k`` is smaller, and rank 0 (the slice is forced to zero) when ``k`` is larger.
Padding rows and columns are zero in the target, which keeps the projection optimal on the real entries.

:func:`project` is batched (slices grouped by rank; the top singular pair of rank-1 slices by repeated squaring of
their small Gram matrices (subspace iteration), checked for convergence, with an exact ``eigh`` fallback);
:func:`project_reference` is the plain loop over blocks with a full SVD each, kept for tests and the benchmark.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from cimisa.errors import ShapeError
from mapper.d2s.monarch import MonarchShape, monarch_shape, monarch_to_dense
from mapper.evaluate import metrics

__all__ = ["project", "project_reference", "slice_plan", "relative_error", "single_thread"]


@contextlib.contextmanager
def single_thread():
    """Run the block with one torch thread.

    Small LAPACK calls (solve, eigh) slow down badly with OpenMP threads on a loaded machine (a 384x384 solve
    measured 70x slower with 2 threads than with 1 while other jobs ran) and gain little on an idle one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.lru_cache(maxsize=64)
def slice_plan(out_features: int, in_features: int, nblocks: int) -> tuple[MonarchShape, dict]:
    """Return the shape and, per rank, which ``(a, i)`` slices have that rank and which ``c`` connect them.

    The dict maps ``rank -> (a_idx (B,), i_idx (B,), c_idx (B, rank), j_idx (B, rank))`` where ``j_idx`` is the
    row of R block ``i`` fed by column ``c`` (``j = c*l + a - i*q``). Rank-0 slices are omitted.
    """
    shp = monarch_shape(out_features, in_features, nblocks)
    k, q, _ = shp.r_shape
    l, _, r = shp.l_shape
    conn: dict[tuple[int, int], list[int]] = {}
    for a in range(l):
        for c in range(r):
            i = (c * l + a) // q
            conn.setdefault((a, i), []).append(c)
    by_rank: dict[int, list[tuple[int, int, list[int]]]] = {}
    for (a, i), cs in sorted(conn.items()):
        by_rank.setdefault(len(cs), []).append((a, i, cs))
    plan = {}
    for rank, items in sorted(by_rank.items()):
        a_idx = torch.tensor([a for a, _, _ in items], dtype=torch.long)
        i_idx = torch.tensor([i for _, i, _ in items], dtype=torch.long)
        c_idx = torch.tensor([cs for _, _, cs in items], dtype=torch.long)
        j_idx = c_idx * l + a_idx[:, None] - i_idx[:, None] * q
        plan[rank] = (a_idx, i_idx, c_idx, j_idx)
    return shp, plan


def _check_matrix(W: torch.Tensor) -> None:
    if not isinstance(W, torch.Tensor) or W.dim() != 2:
        raise ShapeError(f"the matrix to project must be a 2-D tensor, not {getattr(W, 'shape', type(W))}")
    if not W.is_floating_point():
        raise ShapeError(f"the matrix to project must be floating point, not {W.dtype}")
    if not torch.isfinite(W.sum()) and not torch.isfinite(W).all():  # cheap test first
        raise ShapeError("the matrix to project contains NaN or infinite values")


def _slices(W: torch.Tensor, shp: MonarchShape) -> torch.Tensor:
    """Return the ``(l, k, s, p)`` view of ``W`` padded to ``(out_ext, in_ext)``: ``[a, i, t, m] = W[t*l+a, i*p+m]``."""
    k, _, p = shp.r_shape
    l, s, _ = shp.l_shape
    Wp = torch.nn.functional.pad(W, (0, shp.in_ext - W.shape[1], 0, shp.out_ext - W.shape[0]))
    return Wp.reshape(s, l, k, p).permute(1, 2, 0, 3)


def _batch_trace(M: torch.Tensor) -> torch.Tensor:
    return M.diagonal(dim1=1, dim2=2).sum(-1)


def _top_eigvec_psd(G: torch.Tensor, squarings: int = 5, width: int = 8, tol: float = 2e-4) -> torch.Tensor:
    """Return the top eigenvector (B, d) of each PSD matrix in ``G`` (B, d, d).

    Subspace iteration: ``G`` is squared ``squarings`` times (trace-normalised, so ``G^(2^squarings)``), applied
    to a fixed random block of ``width`` vectors, and the top Ritz vector of ``G`` in that subspace is taken.
    Matrices whose eigen-residual ``||G w - lambda w|| / lambda`` stays above ``tol`` (nearly tied top
    eigenvalues) are solved exactly with ``eigh`` in float64.
    """
    B, d, _ = G.shape
    tiny = torch.finfo(G.dtype).tiny
    M = G / _batch_trace(G).clamp_min(tiny)[:, None, None]
    for _ in range(squarings):
        M = torch.bmm(M, M)
        M = M / _batch_trace(M).clamp_min(tiny)[:, None, None]
    b = min(d, width)
    omega = torch.randn(d, b, generator=torch.Generator().manual_seed(0)).to(G.dtype)
    Q, _ = torch.linalg.qr(torch.matmul(M, omega))
    H = torch.bmm(Q.transpose(1, 2), torch.bmm(G, Q))
    with single_thread():
        _, vecs = torch.linalg.eigh(H.double())
    w = torch.bmm(Q, vecs[:, :, -1:].to(G.dtype))[:, :, 0]
    Gw = torch.bmm(G, w[:, :, None])[:, :, 0]
    lam = (w * Gw).sum(1)
    scale = _batch_trace(G).clamp_min(tiny)
    res = (Gw - lam[:, None] * w).norm(dim=1) / lam.clamp_min(tiny)
    bad = (res > tol) & (lam > 1e-12 * scale)
    if bad.any():
        with single_thread():
            _, vecs = torch.linalg.eigh(G[bad].double())
        w = w.clone()
        w[bad] = vecs[:, :, -1].to(w.dtype)
    return w


def _top_r(A: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(left (B, s, rank), right (B, p, rank))`` with ``left @ right^T`` the best rank-``rank`` fit.

    The singular values are split evenly (``sqrt`` on each side), which keeps both factors equally scaled.
    """
    B, s, p = A.shape
    flip = p > s  # work with the smaller Gram matrix
    X = A.transpose(1, 2) if flip else A  # (B, big, d)
    d = X.shape[2]
    rank_eff = min(rank, d)
    if rank_eff == 1:
        G = torch.bmm(X.transpose(1, 2), X)
        W = _top_eigvec_psd(G)[:, :, None]  # (B, d, 1)
    else:
        G = torch.bmm(X.transpose(1, 2).double(), X.double())
        with single_thread():
            _, vecs = torch.linalg.eigh(G)
        W = vecs[:, :, -rank_eff:].flip(-1).to(A.dtype)  # (B, d, rank_eff), descending
    Y = torch.bmm(X, W)  # (B, big, rank_eff) = U * sigma
    sigma = Y.norm(dim=1)  # (B, rank_eff)
    root = sigma.sqrt()
    big_side = Y / root.clamp_min(torch.finfo(A.dtype).tiny)[:, None, :]
    big_side = torch.where(root[:, None, :] > 0, big_side, torch.zeros_like(big_side))
    small_side = W * root[:, None, :]
    if rank_eff < rank:  # more connections than the slice has dimensions: the extra ones stay zero
        big_side = torch.nn.functional.pad(big_side, (0, rank - rank_eff))
        small_side = torch.nn.functional.pad(small_side, (0, rank - rank_eff))
    return (small_side, big_side) if flip else (big_side, small_side)


def project(W: torch.Tensor, nblocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the Monarch factors ``(R, L)`` closest to ``W`` (out, in) in Frobenius norm, batched.

    The factors have ``W``'s dtype (float32 or float64) and the shapes of :func:`monarch_shape`.
    """
    _check_matrix(W)
    out_f, in_f = W.shape
    shp, plan = slice_plan(int(out_f), int(in_f), int(nblocks))
    W = W.detach()
    S = _slices(W, shp)
    R = W.new_zeros(shp.r_shape)
    L = W.new_zeros(shp.l_shape)
    # Repeated squaring drives small entries into float denormals, which are very slow on CPUs.
    flush = torch.set_flush_denormal(True)
    try:
        for rank, (a_idx, i_idx, c_idx, j_idx) in plan.items():
            A = S[a_idx, i_idx]  # (B, s, p)
            left, right = _top_r(A, rank)
            L[a_idx[:, None], :, c_idx] = left.transpose(1, 2)
            R[i_idx[:, None], j_idx, :] = right.transpose(1, 2)
    finally:
        if flush:
            torch.set_flush_denormal(False)
    return R, L


def project_reference(W: torch.Tensor, nblocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the same factors as :func:`project` with a plain loop over ``(a, i)`` blocks and a full SVD each."""
    _check_matrix(W)
    out_f, in_f = W.shape
    shp = monarch_shape(int(out_f), int(in_f), int(nblocks))
    k, q, p = shp.r_shape
    l, s, r = shp.l_shape
    Wp = torch.zeros(shp.out_ext, shp.in_ext, dtype=W.dtype)
    Wp[:out_f, :in_f] = W.detach()
    R = torch.zeros(shp.r_shape, dtype=W.dtype)
    L = torch.zeros(shp.l_shape, dtype=W.dtype)
    for a in range(l):
        rows = Wp[a::l]  # rows t*l + a, t = 0..s-1
        for i in range(k):
            cs = [c for c in range(r) if i * q <= c * l + a < (i + 1) * q]
            if not cs:
                continue
            block = rows[:, i * p:(i + 1) * p]
            U, sig, Vh = torch.linalg.svd(block, full_matrices=False)
            for n, c in enumerate(cs):
                if n >= sig.numel():
                    break
                root = sig[n].sqrt()
                L[a, :, c] = U[:, n] * root
                R[i, c * l + a - i * q, :] = Vh[n] * root
    return R, L


def relative_error(W: torch.Tensor, R: torch.Tensor, L: torch.Tensor) -> float:
    """Return ``||W - M||_F / ||W||_F`` for the Monarch matrix ``M`` of ``(R, L)`` (0 for a zero ``W``)."""
    return metrics.relative_error(W, monarch_to_dense(R, L, W.shape[0], W.shape[1]))
