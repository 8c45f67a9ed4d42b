"""Calibration: refine projected Monarch factors against the dense model on calibration text.

Two stages, both bounded and CPU-friendly:

1. **Activation-aware layer-wise fitting**, block by block in forward order. For each group of matmuls that
   read the same input (Q/K/V, O, FFN up/gate, FFN down, BART cross-attention), the calibration text is run
   through the *dense* block and through the *Monarch* block (whose input already carries the error of the
   earlier, already-fitted Monarch blocks); each matmul ``(M, b)`` then minimises
   ``sum_tokens ||y_dense - M x_monarch - b||^2``, so later layers compensate earlier errors. The objective
   depends on the data only through ``C = E[x x^T]`` and ``E[y x^T]`` (bias folded in as a constant input), and
   is minimised exactly in alternation: all L blocks and the bias at once (independent least squares per
   block), then each R block in turn (a Kronecker-separable least squares, solved in closed form).
2. **End-to-end distillation**: Adam on every factor and bias, loss = mean of the per-layer hidden-state MSE
   (normalised by the dense variance) + ``1 - cos`` of the mean-pooled sentence embeddings.

Held-out metrics (:func:`evaluate`): mean cosine between dense and Monarch mean-pooled embeddings, and the
Spearman correlation of all pairwise sentence similarities.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import random
import time
from dataclasses import asdict, dataclass

import torch

from cimisa import progress as kit_progress
from cimisa.errors import ModelError
from mapper.d2s.convert import Factors, replace_with_monarch
from mapper.d2s.monarch import MonarchLinear
from mapper.d2s.project import single_thread
from mapper.models import ModelSpec, resolve_source

__all__ = ["CalibConfig", "Tokenizer", "make_tokenizer", "make_batches", "embed", "evaluate", "calibrate",
           "fit_monarch", "monarch_model_from_factors", "factors_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibConfig:
    """Calibration settings (recorded in ``monarch.json``).

    ``sentences`` calibration sentences feed the layer-wise fit (``sweeps`` alternating passes per matmul,
    ``ridge`` relative damping); distillation runs ``steps`` Adam steps of ``batch`` sentences at learning rate
    ``lr`` (cosine decay), stopping early after ``max_seconds``; the distilled factors are kept only if they
    lower the loss on ``val_sentences`` held-back calibration sentences. ``layerwise`` / ``distill`` switch the
    stages.
    """

    sentences: int = 512
    sweeps: int = 12
    ridge: float = 1e-3
    steps: int = 0
    batch: int = 32
    lr: float = 5e-4
    max_len: int = 64
    seed: int = 0
    layerwise: bool = True
    distill: bool = True
    cos_weight: float = 1.0
    max_seconds: float | None = None
    val_sentences: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------------------
# Text -> token batches

class Tokenizer:
    """Turn sentences into ``input_ids`` lists: the checkpoint's own tokenizer, or UTF-8 bytes for tiny models."""

    def __init__(self, hf_tokenizer=None, vocab_size: int = 256, max_len: int = 64):
        self.hf = hf_tokenizer
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.pad_id = 0
        if hf_tokenizer is not None and hf_tokenizer.pad_token_id is not None:
            self.pad_id = int(hf_tokenizer.pad_token_id)

    def ids(self, sentence: str) -> list[int]:
        if self.hf is not None:
            return list(self.hf(sentence, truncation=True, max_length=self.max_len)["input_ids"])
        return [b % self.vocab_size for b in sentence.encode("utf-8")[: self.max_len]]


def make_tokenizer(spec: ModelSpec, max_len: int = 64) -> Tokenizer:
    """Return the tokenizer of ``spec``'s checkpoint folder, or the byte-level fallback."""
    import os  # noqa: PLC0415
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    vocab = int(spec.hf_config.get("vocab_size") or 256)
    max_pos = int(spec.hf_config.get("max_position_embeddings") or spec.hf_config.get("n_positions") or max_len)
    max_len = min(max_len, max_pos)
    kind, _, folder = resolve_source(spec.source)
    if kind == "hf" and folder is not None and any((folder / f).is_file() for f in
                                                   ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        from transformers import AutoTokenizer  # noqa: PLC0415
        try:
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load the tokenizer of {folder}: {' '.join(str(exc).split())[:200]}") from None
        return Tokenizer(tok, vocab, max_len)
    return Tokenizer(None, vocab, max_len)


def make_batches(tok: Tokenizer, sentences: list[str], batch: int, sort: bool = True) -> list[dict]:
    """Return padded batches ``{"input_ids", "attention_mask"}``; sorted by length to avoid padding waste."""
    ids = [tok.ids(s) for s in sentences]
    order = sorted(range(len(ids)), key=lambda j: (len(ids[j]), j)) if sort else list(range(len(ids)))
    batches = []
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        T = max(len(ids[j]) for j in idx)
        input_ids = torch.full((len(idx), T), tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), T), dtype=torch.long)
        for row, j in enumerate(idx):
            input_ids[row, :len(ids[j])] = torch.tensor(ids[j])
            mask[row, :len(ids[j])] = 1
        batches.append({"input_ids": input_ids, "attention_mask": mask, "index": idx})
    return batches


def _forward(model, batch, hidden: bool = False):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                 output_hidden_states=hidden)


def _last_hidden(out) -> torch.Tensor:
    return out.last_hidden_state


def _all_hidden(out) -> list[torch.Tensor]:
    hs = []
    for key in ("encoder_hidden_states", "hidden_states", "decoder_hidden_states"):
        value = getattr(out, key, None)
        if value is not None:
            hs.extend(value[1:])  # the embedding output is not changed by D2S
    if not hs:
        hs = [out.last_hidden_state]
    return hs


def _pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(h.dtype)[:, :, None]
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


@torch.no_grad()
def embed(model, batches: list[dict]) -> torch.Tensor:
    """Return the mean-pooled last hidden states of all sentences, in their original order."""
    n = sum(len(b["index"]) for b in batches)
    out = None
    for b in batches:
        e = _pool(_last_hidden(_forward(model, b)), b["attention_mask"])
        if out is None:
            out = torch.zeros(n, e.shape[1])
        out[torch.tensor(b["index"])] = e.float()
    return out


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    def ranks(x):
        r = torch.empty_like(x)
        r[x.argsort()] = torch.arange(len(x), dtype=x.dtype)
        return r
    ra, rb = ranks(a.double()), ranks(b.double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def compare_embeddings(dense: torch.Tensor, other: torch.Tensor) -> dict:
    """Return ``{"cosine", "spearman"}``: mean dense-vs-other cosine, Spearman of pairwise similarities."""
    cos = torch.nn.functional.cosine_similarity(dense, other, dim=1)
    dn = torch.nn.functional.normalize(dense, dim=1)
    on = torch.nn.functional.normalize(other, dim=1)
    iu = torch.triu_indices(len(dense), len(dense), offset=1)
    sd = (dn @ dn.t())[iu[0], iu[1]]
    so = (on @ on.t())[iu[0], iu[1]]
    return {"cosine": float(cos.mean()), "spearman": _spearman(sd, so)}


def evaluate(dense_model, model, batches: list[dict], dense_emb: torch.Tensor | None = None) -> dict:
    """Return the held-out metrics of ``model`` against ``dense_model`` on ``batches``."""
    if dense_emb is None:
        dense_emb = embed(dense_model, batches)
    return compare_embeddings(dense_emb, embed(model, batches))


# --------------------------------------------------------------------------------------------------------------
# Layer-wise fitting of one matmul

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


def _objective(R, L, bias, C, Y) -> float:
    """Return ``tr(Ma C Ma^T) - 2 tr(Ma Y^T)`` (for tests and logging)."""
    from mapper.d2s.monarch import monarch_to_dense  # noqa: PLC0415
    n = C.shape[0] - 1
    M = monarch_to_dense(R.double(), L.double(), Y.shape[0], n)
    b = bias.double() if bias is not None else torch.zeros(Y.shape[0], dtype=torch.float64)
    Ma = torch.cat([M, b[:, None]], 1)
    return float((Ma @ C * Ma).sum() - 2 * (Ma * Y).sum())


# --------------------------------------------------------------------------------------------------------------
# Model plumbing

def _blocks(model, family: str) -> list[tuple[str, str, torch.nn.Module]]:
    """Return ``(stage, prefix, block)`` for every transformer block in forward order."""
    if family == "bert":
        lists = [("encoder", "encoder.layer", model.encoder.layer)]
    elif family == "gpt2":
        lists = [("decoder", "h", model.h)]
    elif family == "opt":
        lists = [("decoder", "decoder.layers", model.decoder.layers)]
    elif family == "llama":
        lists = [("decoder", "layers", model.layers)]
    elif family == "bart":
        lists = [("encoder", "encoder.layers", model.encoder.layers),
                 ("decoder", "decoder.layers", model.decoder.layers)]
    else:  # pragma: no cover - families are checked on load
        raise ModelError(f"no calibration support for family {family!r}")
    return [(stage, f"{prefix}.{j}", blk) for stage, prefix, lst in lists for j, blk in enumerate(lst)]


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


class _BlockInputs:
    """Captured ``(args, kwargs)`` of every block call of one forward pass."""

    def __init__(self, blocks):
        self.calls: dict[int, tuple] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self._handles = []
        for j, (_, _, blk) in enumerate(blocks):
            self._handles.append(blk.register_forward_pre_hook(self._pre(j), with_kwargs=True))
            self._handles.append(blk.register_forward_hook(self._post(j)))

    def _pre(self, j):
        def hook(module, args, kwargs):
            self.calls[j] = (args, dict(kwargs))
        return hook

    def _post(self, j):
        def hook(module, args, out):
            self.outputs[j] = _first(out).detach()
        return hook

    def remove(self):
        for h in self._handles:
            h.remove()


def _hidden_of(args, kwargs) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _call_block(block, args, kwargs, hidden: torch.Tensor, encoder_out: torch.Tensor | None):
    if args:
        args = (hidden, *args[1:])
    else:
        kwargs = dict(kwargs, hidden_states=hidden)
    if encoder_out is not None:
        sig = inspect.signature(block.forward)
        bound = sig.bind_partial(*args, **kwargs)
        if "encoder_hidden_states" in bound.arguments and bound.arguments["encoder_hidden_states"] is not None:
            bound.arguments["encoder_hidden_states"] = encoder_out
            return _first(block(*bound.args, **bound.kwargs))
        if "encoder_hidden_states" in kwargs and kwargs["encoder_hidden_states"] is not None:
            kwargs = dict(kwargs, encoder_hidden_states=encoder_out)
    return _first(block(*args, **kwargs))


class _Capture:
    """Forward hooks that record the valid-token inputs (and outputs) of some modules."""

    def __init__(self, model, names, keep_out: bool):
        self.x: dict[str, torch.Tensor] = {}
        self.y: dict[str, torch.Tensor] = {}
        self.mask: torch.Tensor | None = None
        self._handles = [model.get_submodule(nm).register_forward_hook(self._hook(nm, keep_out)) for nm in names]

    def _hook(self, name, keep_out):
        def hook(module, args, out):
            x = args[0]
            sel = self.mask.reshape(-1) if (self.mask is not None and x.shape[:2] == self.mask.shape) else None
            x2 = x.reshape(-1, x.shape[-1])
            self.x[name] = (x2[sel] if sel is not None else x2).detach().float()
            if keep_out:
                y2 = out.reshape(-1, out.shape[-1])
                self.y[name] = (y2[sel] if sel is not None else y2).detach().float()
        return hook

    def remove(self):
        for h in self._handles:
            h.remove()


def monarch_model_from_factors(dense_model, spec: ModelSpec, factors: Factors):
    """Return a deep copy of ``dense_model`` with the factored matmuls replaced by ``MonarchLinear``."""
    model = copy.deepcopy(dense_model)
    replace_with_monarch(model, spec, factors)
    for mod in model.modules():
        if isinstance(mod, MonarchLinear):
            mod.dense_kernel = True  # same product, faster on CPU
    return model.eval()


def factors_of(model, spec: ModelSpec, names) -> Factors:
    """Return the current ``(R, L, bias)`` of the ``MonarchLinear`` modules called ``names``."""
    out: Factors = {}
    for name in names:
        mod = model.get_submodule(name)
        if not isinstance(mod, MonarchLinear):
            continue
        out[name] = (mod.R.detach().clone(), mod.L.detach().clone(),
                     mod.bias.detach().clone() if mod.bias is not None else None)
    return out


def _layerwise(dense, sparse, spec: ModelSpec, batches: list[dict], cfg: CalibConfig, show_progress: bool):
    blocks_d = _blocks(dense, spec.family)
    blocks_s = _blocks(sparse, spec.family)
    # One dense pass and one Monarch pass capture every block's call arguments and outputs.
    dense_calls, sparse_in = [], []
    for b in batches:
        cap_d = _BlockInputs(blocks_d)
        cap_s = _BlockInputs(blocks_s)
        with torch.no_grad():
            _forward(dense, b)
            _forward(sparse, b)
        cap_d.remove()
        cap_s.remove()
        dense_calls.append(cap_d)
        sparse_in.append({j: _hidden_of(*cap_s.calls[j]) for j in cap_s.calls})
    groups_by_block: dict[str, list[list]] = {}
    for m in spec.matmuls:
        if not isinstance(_safe_get(sparse, m.name), MonarchLinear):
            continue
        for stage, prefix, _ in blocks_s:
            if m.name.startswith(prefix + "."):
                grp = groups_by_block.setdefault(prefix, [])
                for g in grp:
                    if g[0].input_group == m.input_group:
                        g.append(m)
                        break
                else:
                    grp.append([m])
    encoder_out: list[torch.Tensor | None] = [None] * len(batches)
    todo = sum(len(g) for g in groups_by_block.values())
    with kit_progress.stage("calibration: layer-wise fit", total=todo, unit="group", show=show_progress) as bar:
        _layerwise_fit(dense, dense_calls, sparse_in, batches, blocks_s, blocks_d, groups_by_block, encoder_out,
                       sparse, spec, cfg, bar)


def _layerwise_fit(dense, dense_calls, sparse_in, batches, blocks_s, blocks_d, groups_by_block, encoder_out, sparse,
                   spec, cfg, bar) -> None:
    last_encoder = max((j for j, (st, _, _) in enumerate(blocks_s) if st == "encoder"), default=None)
    for j, (stage, prefix, blk_s) in enumerate(blocks_s):
        blk_d = blocks_d[j][2]
        use_enc = stage == "decoder" and spec.family == "bart"
        for group in groups_by_block.get(prefix, []):
            names = [m.name for m in group]
            n_in = group[0].in_features
            C = torch.zeros(n_in + 1, n_in + 1, dtype=torch.float64)
            Ys = {m.name: torch.zeros(m.out_features, n_in + 1, dtype=torch.float64) for m in group}
            for bi, b in enumerate(batches):
                args, kwargs = dense_calls[bi].calls[j]
                mask = b["attention_mask"].bool()
                cd = _Capture(dense, names, keep_out=True)
                cs = _Capture(sparse, names, keep_out=False)
                cd.mask = cs.mask = mask
                with torch.no_grad():
                    _call_block(blk_d, args, kwargs, _hidden_of(args, kwargs), None)
                    _call_block(blk_s, args, kwargs, sparse_in[bi][j], encoder_out[bi] if use_enc else None)
                cd.remove()
                cs.remove()
                x = cs.x[names[0]]
                xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
                C += (xa.t() @ xa).double()
                for nm in names:
                    if cd.y[nm].shape[0] != xa.shape[0]:
                        raise ModelError(f"calibration: token count mismatch at {nm}")
                    Ys[nm] += (cd.y[nm].t() @ xa).double()
            for m in group:
                mod = sparse.get_submodule(m.name)
                R, L, bias = fit_monarch(mod.R.detach(), mod.L.detach(), mod.bias.detach() if mod.bias is not None
                                         else None, C, Ys[m.name], sweeps=cfg.sweeps, ridge=cfg.ridge)
                with torch.no_grad():
                    mod.R.copy_(R.to(mod.R.dtype))
                    mod.L.copy_(L.to(mod.L.dtype))
                    if bias is not None:
                        mod.bias.copy_(bias.to(mod.bias.dtype))
                bar.update(1)
        # Propagate the Monarch hidden states through the fitted block.
        for bi, _ in enumerate(batches):
            args, kwargs = dense_calls[bi].calls[j]
            with torch.no_grad():
                h = _call_block(blk_s, args, kwargs, sparse_in[bi][j], encoder_out[bi] if use_enc else None)
            if j + 1 < len(blocks_s) and blocks_s[j + 1][0] == stage:
                sparse_in[bi][j + 1] = h
            if j == last_encoder:
                encoder_out[bi] = _encoder_final(sparse, h)


def _encoder_final(model, h):
    ln = getattr(getattr(model, "encoder", None), "layer_norm", None)
    return ln(h) if ln is not None else h


def _safe_get(model, name):
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _distill_loss(sparse, b, target, scales, cos_weight):
    out = _forward(sparse, b, hidden=True)
    hs = _all_hidden(out)
    mask = b["attention_mask"].bool()
    th, tp = target
    mse = sum(((h[mask] - t) ** 2).mean() / sc for h, t, sc in zip(hs, th, scales)) / len(hs)
    pooled = _pool(out.last_hidden_state, b["attention_mask"])
    cos = torch.nn.functional.cosine_similarity(pooled, tp, dim=1).mean()
    return mse + cos_weight * (1 - cos)


def _targets(dense, batches):
    targets = []
    with torch.no_grad():
        for b in batches:
            out = _forward(dense, b, hidden=True)
            mask = b["attention_mask"].bool()
            targets.append(([h[mask] for h in _all_hidden(out)], _pool(out.last_hidden_state, b["attention_mask"])))
    return targets


def _distill(dense, sparse, batches: list[dict], val: list[dict], cfg: CalibConfig, show_progress: bool) -> dict:
    params = [p for mod in sparse.modules() if isinstance(mod, MonarchLinear) for p in mod.parameters()]
    if not params or cfg.steps <= 0:
        return {"steps": 0}
    for p in sparse.parameters():
        p.requires_grad_(False)
    targets = _targets(dense, batches)  # dense targets computed once per batch and reused
    val_targets = _targets(dense, val)
    scales = [float(h.var()) + 1e-12 for h in targets[0][0]]

    def val_loss() -> float:
        with torch.no_grad():
            return sum(float(_distill_loss(sparse, b, t, scales, cfg.cos_weight)) for b, t in zip(val, val_targets))

    before = val_loss()
    saved = [p.detach().clone() for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    rng = random.Random(cfg.seed)
    order: list[int] = []
    losses = []
    t0 = time.perf_counter()
    done = 0
    for _ in kit_progress.bar(range(cfg.steps), desc="calibration: distillation", unit="step", show=show_progress):
        if not order:
            order = list(range(len(batches)))
            rng.shuffle(order)
        bi = order.pop()
        loss = _distill_loss(sparse, batches[bi], targets[bi], scales, cfg.cos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        done += 1
        if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
            break
    for p in params:
        p.requires_grad_(False)
    sparse.eval()
    after = val_loss()
    kept = after <= before
    if not kept:  # distillation made the held-back calibration loss worse: keep the layer-wise result
        with torch.no_grad():
            for p, old in zip(params, saved):
                p.copy_(old)
    tail = losses[-20:]
    return {"steps": done, "final_train_loss": sum(tail) / len(tail), "val_loss_before": before,
            "val_loss_after": after, "kept": kept}


def calibrate(spec: ModelSpec, dense_model, factors: Factors, cfg: CalibConfig = CalibConfig(),
              sentences: list[str] | None = None, show_progress: bool = True) -> tuple[Factors, dict]:
    """Return refined factors and a record of the run (settings, wall times, losses).

    ``sentences`` defaults to :func:`mapper.evaluate.textdata.calibration_sentences` (the first ``cfg.sentences`` of a
    seeded shuffle).
    """
    from mapper.evaluate.textdata import calibration_sentences  # noqa: PLC0415
    torch.manual_seed(cfg.seed)
    if sentences is None:
        pool = calibration_sentences()
        random.Random(cfg.seed).shuffle(pool)
        val_sents = pool[-cfg.val_sentences:] if cfg.val_sentences else []
        sentences = pool[: min(cfg.sentences, len(pool) - len(val_sents))]
    else:
        val_sents = sentences[-cfg.val_sentences:] if 0 < cfg.val_sentences < len(sentences) else []
        sentences = sentences[: len(sentences) - len(val_sents)]
    tok = make_tokenizer(spec, cfg.max_len)
    dense_model.eval()
    sparse = monarch_model_from_factors(dense_model, spec, factors)
    record: dict = {"settings": cfg.to_dict(), "sentences": len(sentences)}
    t0 = time.perf_counter()
    if cfg.layerwise:
        lw_batches = make_batches(tok, sentences, 64)
        _layerwise(dense_model, sparse, spec, lw_batches, cfg, show_progress)
    t1 = time.perf_counter()
    record["layerwise_seconds"] = round(t1 - t0, 2)
    if cfg.distill:
        batches = make_batches(tok, sentences, cfg.batch)
        val = make_batches(tok, val_sents, cfg.batch) if val_sents else batches[:2]
        record["distill"] = _distill(dense_model, sparse, batches, val, cfg, show_progress)
    record["distill_seconds"] = round(time.perf_counter() - t1, 2)
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return factors_of(sparse, spec, list(factors)), record


def default_heldout_batches(spec: ModelSpec, n: int = 256, max_len: int = 64) -> list[dict]:
    """Return the held-out sentences of :mod:`mapper.evaluate.textdata` as batches for :func:`evaluate`."""
    from mapper.evaluate.textdata import heldout_sentences  # noqa: PLC0415
    return make_batches(make_tokenizer(spec, max_len), heldout_sentences(n), 64)

